//! Virtual IP addresses through netlink (rtnetlink), announced with
//! gratuitous ARP sent on a packet socket so that neighbours update their
//! caches at once on takeover.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;

use crate::services::VirtualIp;

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
}

/// Resolves where each VIP goes: `interface name=` if given, else the
/// interface whose subnet contains the address.
pub fn resolve(addrs: &[(IpAddr, Option<String>, Option<(Duration, Duration)>)]) -> Result<Vec<VipSpec>, String> {
    let ifs = if_addrs::get_if_addrs().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    let mut out = Vec::new();
    for (ip, name, reroute) in addrs {
        let found = ifs.iter().find_map(|i| match (&i.addr, ip) {
            (if_addrs::IfAddr::V4(a), IpAddr::V4(v)) => {
                let mask = u32::from(a.netmask);
                let same = u32::from(a.ip) & mask == u32::from(*v) & mask;
                (name.as_ref().map_or(same, |n| *n == i.name)).then(|| (i.name.clone(), u8::try_from(mask.count_ones()).unwrap_or(32)))
            }
            (if_addrs::IfAddr::V6(a), IpAddr::V6(v)) => {
                let mask = u128::from(a.netmask);
                let same = u128::from(a.ip) & mask == u128::from(*v) & mask;
                (name.as_ref().map_or(same, |n| *n == i.name)).then(|| (i.name.clone(), u8::try_from(mask.count_ones()).unwrap_or(128)))
            }
            _ => None,
        });
        let Some((ifname, prefix)) = found else {
            return Err(format!("no local interface is on the subnet of virtual address {ip}"));
        };
        out.push(VipSpec { ip: *ip, prefix, ifname, reroute: *reroute });
    }
    Ok(out)
}

/// VIPs managed through rtnetlink.
pub struct NetlinkVip {
    specs: Vec<VipSpec>,
    /// Gratuitous ARP tasks running since the last `set`; aborted by `remove`.
    announcers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl NetlinkVip {
    /// Manages `specs`.
    pub const fn new(specs: Vec<VipSpec>) -> Self {
        Self { specs, announcers: std::sync::Mutex::new(Vec::new()) }
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
    async fn set(&self) -> Result<(), String> {
        let handle = connect()?;
        for s in &self.specs {
            let index = Self::index(&handle, &s.ifname).await?;
            match handle.address().add(index, s.ip, s.prefix).execute().await {
                Ok(()) => {}
                // Already there (e.g. set before a daemon restart): fine.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                Err(e) => return Err(format!("cannot add {}/{} on {}: {e}", s.ip, s.prefix, s.ifname)),
            }
            if let IpAddr::V4(v4) = s.ip {
                let (ifname, reroute) = (s.ifname.clone(), s.reroute);
                let task = tokio::spawn(async move {
                    // A burst, so that a lost packet does not leave a stale cache.
                    for _ in 0..3 {
                        if let Err(e) = gratuitous_arp(&ifname, v4) {
                            tracing::warn!(%e, "gratuitous ARP not sent");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    // arpreroute: keep announcing every arpinterval during arpelapse.
                    if let Some((every, during)) = reroute {
                        let end = tokio::time::Instant::now() + during;
                        while tokio::time::Instant::now() + every <= end {
                            tokio::time::sleep(every.max(Duration::from_millis(100))).await;
                            let _ = gratuitous_arp(&ifname, v4);
                        }
                    }
                });
                if let Ok(mut a) = self.announcers.lock() {
                    a.push(task);
                }
            }
        }
        Ok(())
    }

    async fn remove(&self) -> Result<(), String> {
        if let Ok(mut a) = self.announcers.lock() {
            for t in a.drain(..) {
                t.abort();
            }
        }
        let handle = connect()?;
        let mut first_err = None;
        for s in &self.specs {
            let Ok(index) = Self::index(&handle, &s.ifname).await else {
                continue;
            };
            let msg = match s.ip {
                IpAddr::V4(a) => rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new().index(index).address(a, s.prefix).build(),
                IpAddr::V6(a) => rtnetlink::AddressMessageBuilder::<std::net::Ipv6Addr>::new().index(index).address(a, s.prefix).build(),
            };
            match handle.address().del(msg).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL || e.raw_code() == -libc::ENOENT => {}
                Err(e) => {
                    first_err.get_or_insert(format!("cannot remove {} from {}: {e}", s.ip, s.ifname));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn addresses(&self) -> Vec<IpAddr> {
        self.specs.iter().map(|s| s.ip).collect()
    }
}

/// Sends one gratuitous ARP request for `ip` from `ifname`'s MAC, so that
/// neighbours (the client, the switch) map the VIP to this node at once.
pub fn gratuitous_arp(ifname: &str, ip: Ipv4Addr) -> Result<(), String> {
    let mac_text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).map_err(|e| format!("{ifname}: {e}"))?;
    let mac: Vec<u8> = mac_text.trim().split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    let mac: [u8; 6] = mac.try_into().map_err(|_| format!("{ifname}: bad MAC address {mac_text}"))?;
    let ifindex: i32 = std::fs::read_to_string(format!("/sys/class/net/{ifname}/ifindex"))
        .map_err(|e| format!("{ifname}: {e}"))?
        .trim()
        .parse()
        .map_err(|_| format!("{ifname}: bad ifindex"))?;
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]); // broadcast
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&0x0806u16.to_be_bytes()); // ARP
    frame.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    frame.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    frame.extend_from_slice(&[6, 4]);
    frame.extend_from_slice(&1u16.to_be_bytes()); // request
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&ip.octets());
    let proto = u16::to_be(0x0806);
    let sock = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, Some(socket2::Protocol::from(i32::from(proto))))
        .map_err(|e| format!("packet socket: {e}"))?;
    // SAFETY: sockaddr_ll is plain data, fully initialised below, and the
    // length passed is its size; the socket is a valid AF_PACKET socket.
    let rc = unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::addr_of!(sll).cast(),
            u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(20),
        )
    };
    if rc < 0 {
        return Err(format!("gratuitous ARP on {ifname}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
