//! Virtual IP addresses through netlink (rtnetlink), announced on takeover
//! (gratuitous ARP, unsolicited IPv6 neighbour advertisement; see
//! [`super::announce`]). `where="one_side"` also makes the VIP the preferred
//! source of the interface's routes, so that connections the
//! application opens leave from the VIP (SafeKit: "the VIP becomes the
//! primary address of the NIC"); `tcpreset="on"` resets the connections
//! sourced from the VIP before it is removed, so that clients reconnect to
//! the new primary at once instead of waiting for a TCP timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, CacheInfo};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

use super::announce::{gratuitous_arp, unsolicited_na};
use crate::services::{ServiceError, VirtualIp};

/// One address as the configuration asks for it.
#[derive(Debug, Clone)]
pub struct VipRequest {
    /// The virtual address.
    pub ip: IpAddr,
    /// `interface name=`, if given.
    pub ifname: Option<String>,
    /// `arpreroute="on"`: announce every `.0` during `.1` after takeover.
    pub reroute: Option<(Duration, Duration)>,
    /// `where="one_side"`: the VIP becomes the preferred source address.
    pub one_side: bool,
}

/// One address to manage.
#[derive(Debug, Clone)]
pub struct VipSpec {
    /// The virtual address.
    pub ip: IpAddr,
    /// Its prefix length (that of the interface's subnet).
    pub prefix: u8,
    /// The interface it goes on.
    pub ifname: String,
    /// `arpreroute="on"`: gratuitous ARP every `.0` during `.1` after takeover.
    pub reroute: Option<(Duration, Duration)>,
    /// `where="one_side"`.
    pub one_side: bool,
}

fn same_subnet(a: &if_addrs::IfAddr, ip: IpAddr) -> Option<(bool, u8)> {
    match (a, ip) {
        (if_addrs::IfAddr::V4(a), IpAddr::V4(v)) => {
            let mask = u32::from(a.netmask);
            Some((u32::from(a.ip) & mask == u32::from(v) & mask, u8::try_from(mask.count_ones()).unwrap_or(32)))
        }
        (if_addrs::IfAddr::V6(a), IpAddr::V6(v)) => {
            let mask = u128::from(a.netmask);
            Some((u128::from(a.ip) & mask == u128::from(v) & mask, u8::try_from(mask.count_ones()).unwrap_or(128)))
        }
        _ => None,
    }
}

/// Resolves where each VIP goes: `interface name=` if given (the prefix of
/// its address on the VIP's subnet, else of its first address of the same
/// family), else the interface whose subnet contains the address.
pub fn resolve(reqs: &[VipRequest]) -> Result<Vec<VipSpec>, String> {
    let ifs = if_addrs::get_if_addrs().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    let mut out = Vec::new();
    for r in reqs {
        let on_subnet = ifs.iter().find_map(|i| {
            let (same, prefix) = same_subnet(&i.addr, r.ip)?;
            (same && r.ifname.as_ref().is_none_or(|n| *n == i.name)).then(|| (i.name.clone(), prefix))
        });
        let named = || {
            let n = r.ifname.as_ref()?;
            ifs.iter().filter(|i| i.name == *n).find_map(|i| same_subnet(&i.addr, r.ip).map(|(_, p)| (n.clone(), p)))
        };
        let Some((ifname, prefix)) = on_subnet.or_else(named) else {
            return Err(match &r.ifname {
                Some(n) => format!("interface {n} of virtual address {} has no address of that family", r.ip),
                None => format!("no local interface is on the subnet of virtual address {}", r.ip),
            });
        };
        out.push(VipSpec { ip: r.ip, prefix, ifname, reroute: r.reroute, one_side: r.one_side });
    }
    Ok(out)
}

/// VIPs managed through rtnetlink.
pub struct NetlinkVip {
    specs: Vec<VipSpec>,
    /// `<vip tcpreset="on">`.
    tcpreset: bool,
    /// Announcement tasks running since the last `set`; aborted by `remove`.
    announcers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// one_side: the routes as they were before the VIP became their source.
    saved_routes: Mutex<Vec<RouteMessage>>,
    /// Announce the addresses with this node's MAC (not for a farm VIP,
    /// which every node carries and which must stay on the virtual MAC).
    announce: bool,
}

impl NetlinkVip {
    /// Manages `specs`; `tcpreset` resets VIP-sourced connections on removal.
    pub const fn new(specs: Vec<VipSpec>, tcpreset: bool) -> Self {
        Self { specs, tcpreset, announcers: Mutex::new(Vec::new()), saved_routes: Mutex::new(Vec::new()), announce: true }
    }

    /// A farm VIP, carried by every node: not announced when set (only
    /// every `arpinterval` with arpreroute), and an IPv6 one never chosen as
    /// a source address (preferred lifetime 0, "deprecated"), so that a
    /// node's own connections do not leave from an address its peers answer for.
    pub fn shared(mut self) -> Self {
        self.announce = false;
        self
    }

    /// The main table's routes of `vip`'s family leaving through interface `index`.
    async fn routes_via(handle: &rtnetlink::Handle, index: u32, vip: IpAddr) -> Result<Vec<RouteMessage>, String> {
        let query = match vip {
            IpAddr::V4(_) => rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build(),
            IpAddr::V6(_) => rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let all: Vec<RouteMessage> =
            handle.route().get(query).execute().try_collect().await.map_err(|e| format!("cannot list routes: {e}"))?;
        Ok(all
            .into_iter()
            .filter(|r| r.header.table == rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN)
            .filter(|r| r.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index)))
            .collect())
    }

    /// one_side: every route of the VIP's family through its interface gets
    /// the VIP as preferred source (link-local and multicast ones excepted);
    /// the originals are kept for [`Self::unprefer`].
    async fn prefer(&self, handle: &rtnetlink::Handle, index: u32, vip: IpAddr) -> Result<(), String> {
        for r in Self::routes_via(handle, index, vip).await? {
            let link_local = r.attributes.iter().any(|a| {
                matches!(a, RouteAttribute::Destination(RouteAddress::Inet6(d)) if d.segments()[0] & 0xffc0 == 0xfe80 || d.segments()[0] & 0xff00 == 0xff00)
            });
            if link_local {
                continue;
            }
            let mut m = r.clone();
            m.attributes.retain(|a| !matches!(a, RouteAttribute::PrefSource(_) | RouteAttribute::CacheInfo(_)));
            m.attributes.push(RouteAttribute::PrefSource(address(vip)));
            handle.route().add(m).replace().execute().await.map_err(|e| format!("cannot make {vip} the source of a route: {e}"))?;
            if let Ok(mut saved) = self.saved_routes.lock() {
                saved.push(r);
            }
        }
        Ok(())
    }

    /// Gives the routes their former source back; routes still naming the
    /// VIP with no saved original (a daemon that crashed) lose the
    /// preference. Must precede the VIP's removal: the kernel deletes the
    /// routes whose preferred source disappears.
    async fn unprefer(&self, handle: &rtnetlink::Handle, index: u32, vip: IpAddr) {
        let mut saved = self.saved_routes.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default();
        for m in &mut saved {
            m.attributes.retain(|a| !matches!(a, RouteAttribute::CacheInfo(_)));
        }
        let Ok(now) = Self::routes_via(handle, index, vip).await else { return };
        let names_vip = |r: &RouteMessage| r.attributes.iter().any(|a| matches!(a, RouteAttribute::PrefSource(a) if *a == address(vip)));
        let key = |r: &RouteMessage| {
            let dst = r.attributes.iter().find_map(|a| if let RouteAttribute::Destination(d) = a { Some(d.clone()) } else { None });
            (r.header.destination_prefix_length, dst)
        };
        for r in now.into_iter().filter(names_vip) {
            let original = saved.iter().find(|o| key(o) == key(&r)).cloned().unwrap_or_else(|| {
                let mut m = r.clone();
                m.attributes.retain(|a| !matches!(a, RouteAttribute::PrefSource(_) | RouteAttribute::CacheInfo(_)));
                m
            });
            if let Err(e) = handle.route().add(original).replace().execute().await {
                tracing::warn!(%e, "route source not restored");
            }
        }
    }

    async fn index(handle: &rtnetlink::Handle, ifname: &str) -> Result<u32, String> {
        let mut links = handle.link().get().match_name(ifname.to_string()).execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(l.header.index),
            Ok(None) => Err(format!("no interface {ifname}")),
            Err(e) => Err(format!("interface {ifname}: {e}")),
        }
    }
}

fn connect() -> Result<rtnetlink::Handle, String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    tokio::spawn(conn);
    Ok(handle)
}

#[async_trait]
impl VirtualIp for NetlinkVip {
    async fn set(&self) -> Result<(), ServiceError> {
        let handle = connect()?;
        for s in &self.specs {
            let index = Self::index(&handle, &s.ifname).await?;
            let mut add = handle.address().add(index, s.ip, s.prefix);
            if s.ip.is_ipv6() {
                // No duplicate address detection: a tentative address could
                // neither be announced nor used for a second or more.
                add.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                if !self.announce {
                    let mut life = CacheInfo::default();
                    life.ifa_valid = u32::MAX; // forever
                    add.message_mut().attributes.push(AddressAttribute::CacheInfo(life));
                }
            }
            match add.execute().await {
                Ok(()) => {}
                // Already there (e.g. set before a daemon restart): fine.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                Err(e) => return Err(ServiceError::Failed(format!("cannot add {}/{} on {}: {e}", s.ip, s.prefix, s.ifname))),
            }
            if s.one_side {
                self.prefer(&handle, index, s.ip).await?;
            }
            if !self.announce && s.reroute.is_none() {
                continue;
            }
            let (ifname, reroute, ip, burst) = (s.ifname.clone(), s.reroute, s.ip, self.announce);
            let task = tokio::spawn(async move {
                // A burst, so that a lost packet does not leave a stale cache.
                for _ in 0..if burst { 3 } else { 0 } {
                    if let Err(e) = announce(&ifname, ip) {
                        tracing::warn!(%e, "virtual IP not announced");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // arpreroute: keep announcing every arpinterval during arpelapse.
                if let Some((every, during)) = reroute {
                    let end = tokio::time::Instant::now() + during;
                    while tokio::time::Instant::now() + every <= end {
                        tokio::time::sleep(every.max(Duration::from_millis(100))).await;
                        let _ = announce(&ifname, ip);
                    }
                }
            });
            if let Ok(mut a) = self.announcers.lock() {
                a.push(task);
            }
        }
        Ok(())
    }

    async fn remove(&self) -> Result<(), ServiceError> {
        if let Ok(mut a) = self.announcers.lock() {
            for t in a.drain(..) {
                t.abort();
            }
        }
        let handle = connect()?;
        let mut first_err = None;
        for s in &self.specs {
            if self.tcpreset {
                reset_connections(s.ip).await;
            }
            let Ok(index) = Self::index(&handle, &s.ifname).await else {
                continue;
            };
            if s.one_side {
                self.unprefer(&handle, index, s.ip).await;
            }
            let msg = match s.ip {
                IpAddr::V4(a) => rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new().index(index).address(a, s.prefix).build(),
                IpAddr::V6(a) => rtnetlink::AddressMessageBuilder::<Ipv6Addr>::new().index(index).address(a, s.prefix).build(),
            };
            match handle.address().del(msg).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL || e.raw_code() == -libc::ENOENT => {}
                Err(e) => {
                    first_err.get_or_insert(format!("cannot remove {} from {}: {e}", s.ip, s.ifname));
                }
            }
        }
        first_err.map_or(Ok(()), |e| Err(ServiceError::Failed(e)))
    }

    fn addresses(&self) -> Vec<IpAddr> {
        self.specs.iter().map(|s| s.ip).collect()
    }
}

const fn address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn announce(ifname: &str, ip: IpAddr) -> Result<(), String> {
    match ip {
        IpAddr::V4(v4) => gratuitous_arp(ifname, v4),
        IpAddr::V6(v6) => unsolicited_na(ifname, v6),
    }
}

/// tcpreset: aborts every TCP connection whose local address is `ip`
/// (`ss -K`, the kernel's SOCK_DESTROY): the peer gets a reset and
/// reconnects, reaching the new primary.
async fn reset_connections(ip: IpAddr) {
    let filter = match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let out = tokio::process::Command::new("ss").args(["-K", "-t", "-n", "src", &filter]).output().await;
    match out {
        Ok(o) if o.status.success() => {
            let n = String::from_utf8_lossy(&o.stdout).lines().skip(1).filter(|l| !l.trim().is_empty()).count();
            tracing::info!(%ip, connections = n, "TCP connections reset");
        }
        Ok(o) => tracing::warn!(%ip, err = %String::from_utf8_lossy(&o.stderr).trim(), "tcpreset: ss -K failed"),
        Err(e) => tracing::warn!(%ip, %e, "tcpreset: cannot run ss (install iproute2)"),
    }
}
