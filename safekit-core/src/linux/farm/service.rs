//! A farm module's traffic on one node: [`FarmTraffic`] is its
//! [`VirtualIp`] (the engine opens it just before `start_both` and closes
//! it just after `stop_both`) and [`MembershipNet::run`] the membership
//! task that beats on the `<farm><lan>` networks and applies the owned
//! buckets to the data path while the traffic is open.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::rules::{Buckets, Delivery, FarmRules};
use crate::engine::LogLevel;
use crate::farm::wire::{decode, encode, MAX_DATAGRAM};
use crate::farm::{Event, FarmGroup, FarmReport, Membership};
use crate::key::ClusterKey;
use crate::linux::vip::NetlinkVip;
use crate::services::{LogSink, ServiceError, VirtualIp};

/// Opens and closes a farm module's traffic: the interface made ready
/// (promiscuous, ARP only for its own addresses), the nf_tables rules,
/// the VIP on every node, and the membership told it is UP.
pub struct FarmTraffic {
    rules: FarmRules,
    vip: NetlinkVip,
    up: watch::Sender<bool>,
    report: Arc<Mutex<FarmReport>>,
}

impl FarmTraffic {
    /// The traffic of `rules` with the VIP aliases `vip`; `up` is read by
    /// the membership task, which keeps `report` current.
    pub fn new(rules: FarmRules, vip: NetlinkVip, up: watch::Sender<bool>, report: Arc<Mutex<FarmReport>>) -> Self {
        Self { rules, vip, up, report }
    }

    /// Removes what a crashed daemon left (the tables); nothing if there is none.
    pub async fn clean(&self) {
        let r = self.rules.clone();
        let _ = tokio::task::spawn_blocking(move || r.remove()).await;
    }
}

fn sysctl(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{path}: {e}"))
}

/// ARP requests sent from the node's own addresses only (never the VIP as
/// a source) and answered only on the interface that has the address; for
/// vmac_invisible, promiscuous mode (frames to the virtual MAC come in).
fn prepare(device: &str, delivery: Delivery) -> Result<(), String> {
    for k in ["all", device] {
        sysctl(&format!("/proc/sys/net/ipv4/conf/{k}/arp_announce"), "2")?;
        sysctl(&format!("/proc/sys/net/ipv4/conf/{k}/arp_ignore"), "1")?;
    }
    if delivery == Delivery::Directed {
        return Ok(());
    }
    let out = std::process::Command::new("ip")
        .args(["link", "set", "dev", device, "promisc", "on"])
        .output()
        .map_err(|e| format!("cannot run ip (apt-get install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("promiscuous mode on {device}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[async_trait]
impl VirtualIp for FarmTraffic {
    async fn set(&self) -> Result<(), ServiceError> {
        let r = self.rules.clone();
        tokio::task::spawn_blocking(move || {
            prepare(&r.device, r.delivery)?;
            r.install(&[])
        })
        .await
        .map_err(|e| ServiceError::Failed(e.to_string()))?
        .map_err(ServiceError::Failed)?;
        self.vip.set().await?;
        self.up.send_replace(true);
        Ok(())
    }

    async fn remove(&self) -> Result<(), ServiceError> {
        // Not UP any more: the membership releases every bucket and stops
        // touching the rules, which go with the addresses.
        self.up.send_replace(false);
        let r = self.rules.clone();
        let removed = tokio::task::spawn_blocking(move || r.remove()).await.map_err(|e| ServiceError::Failed(e.to_string()))?;
        let vip = self.vip.remove().await;
        removed.map_err(ServiceError::Failed)?;
        vip
    }

    fn addresses(&self) -> Vec<IpAddr> {
        self.rules.vips.clone()
    }

    fn farm(&self) -> Option<FarmReport> {
        let mut r = self.report.lock().ok()?.clone();
        r.open = *self.up.borrow();
        Some(r)
    }
}

/// Where a farm module's membership beats go.
pub struct MembershipNet {
    /// The cluster key beats are authenticated with.
    pub key: ClusterKey,
    /// The module id (beats of other modules are refused).
    pub module: u16,
    /// This node's address on each farm network (with the port).
    pub local: Vec<SocketAddr>,
    /// The other nodes' addresses on the same networks, with their names.
    pub peers: Vec<(String, SocketAddr)>,
    /// The groups' names, for the log lines and resources.
    pub groups: Vec<String>,
    /// Kept current for the module report.
    pub report: Arc<Mutex<FarmReport>>,
}

impl MembershipNet {
    /// vmac_directed: the address of each bucket's claimant in group
    /// `group`, per family (the first of the claimant's addresses of that family).
    fn forward(&self, m: &Membership, group: usize) -> Vec<(u8, IpAddr)> {
        let mut out = Vec::new();
        for (b, who) in m.claims(group) {
            for v6 in [false, true] {
                if let Some((_, a)) = self.peers.iter().find(|(n, a)| n == who && a.is_ipv6() == v6) {
                    out.push((b, a.ip()));
                }
            }
        }
        out
    }

    /// Updates the report; whether the view, anyone's buckets or (now and
    /// then) the count of dropped datagrams changed.
    fn publish(&self, m: &Membership, dropped: u64) -> bool {
        let Ok(mut r) = self.report.lock() else { return false };
        let members = m.members().to_vec();
        let groups: Vec<FarmGroup> =
            self.groups.iter().enumerate().map(|(g, name)| FarmGroup { name: name.clone(), nodes: m.nodes(g) }).collect();
        // A count of dropped datagrams refreshes the report only at powers of
        // two: a flood must not wake the engine once per datagram.
        let dropped_news = dropped != r.datagrams_dropped && dropped.is_power_of_two();
        let changed = r.members != members || r.groups != groups || dropped_news;
        r.members = members;
        r.groups = groups;
        r.datagrams_dropped = dropped;
        changed
    }
}

impl MembershipNet {
    /// Runs `m` until the task is aborted: beats sent every pulse and at
    /// each change, beats received (forged or malformed ones dropped and
    /// counted in the log, at the 1st, 2nd, 4th, … one), owned buckets applied to
    /// `rules` while `up` says the traffic is open.
    pub async fn run(
        self,
        mut m: Membership,
        rules: FarmRules,
        mut up: watch::Receiver<bool>,
        log: Arc<dyn LogSink>,
        inputs: tokio::sync::mpsc::Sender<crate::engine::Input>,
    ) {
        let mut sockets = Vec::new();
        for a in &self.local {
            match UdpSocket::bind(a).await {
                Ok(s) => sockets.push(Arc::new(s)),
                Err(e) => log.write("farm", LogLevel::C, &format!("farm membership: cannot listen on {a}: {e}")),
            }
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
        let mut readers = Vec::new();
        for s in &sockets {
            let (s, tx) = (s.clone(), tx.clone());
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM + 1];
                while let Ok((n, _)) = s.recv_from(&mut buf).await {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }));
        }
        let mut dropped: u64 = 0;
        let mut applied: Option<Vec<Buckets>> = None;
        let directed = rules.delivery == Delivery::Directed;
        loop {
            let now = tokio::time::Instant::now().into_std();
            m.handle_timeout(now);
            while let Some(beat) = m.poll_transmit() {
                let bytes = encode(&self.key, self.module, &beat);
                for s in &sockets {
                    for (_, p) in self.peers.iter().filter(|(_, p)| p.is_ipv4() == s.local_addr().is_ok_and(|l| l.is_ipv4())) {
                        let _ = s.send_to(&bytes, p).await;
                    }
                }
            }
            while let Some(e) = m.poll_event() {
                match e {
                    Event::Members(names) => {
                        for group in &self.groups {
                            log.write("farm", LogLevel::E, &format!("farm membership: {} (group {group})", names.join(" ")));
                        }
                    }
                    Event::Owned(g, owned) => {
                        let group = self.groups.get(g).map_or("?", String::as_str);
                        log.write("farm", LogLevel::I, &format!("farm load: {}/256 (group {group})", owned.len()));
                    }
                }
            }
            if self.publish(&m, dropped) {
                // The load share to the engine; and the module's report,
                // refreshed when the engine hears something, shows the change.
                for (g, group) in self.groups.iter().enumerate() {
                    let owned = u16::try_from(m.owned(g).len()).unwrap_or(256);
                    let _ = inputs.try_send(crate::engine::Input::FarmLoad { group: group.clone(), owned });
                }
            }
            // The rules follow the membership while the traffic is open.
            let want: Vec<Buckets> = (0..self.groups.len())
                .map(|g| Buckets { owned: m.owned(g).to_vec(), forward: if directed { self.forward(&m, g) } else { Vec::new() } })
                .collect();
            if !*up.borrow() {
                applied = None;
            } else if applied.as_ref() != Some(&want) {
                let (r, done) = (rules.clone(), want.clone());
                match tokio::task::spawn_blocking(move || r.set_owned(&want)).await {
                    Ok(Ok(())) => applied = Some(done),
                    Ok(Err(e)) => log.write("farm", LogLevel::E, &format!("farm buckets not applied: {e}")),
                    Err(e) => log.write("farm", LogLevel::E, &format!("farm buckets not applied: {e}")),
                }
            }
            let wake = tokio::time::Instant::from_std(m.poll_timeout()).max(tokio::time::Instant::now() + Duration::from_millis(1));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                changed = up.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let now = tokio::time::Instant::now().into_std();
                    m.set_up(now, *up.borrow());
                }
                got = rx.recv() => {
                    let Some(data) = got else { break };
                    match decode(&self.key, self.module, &data) {
                        Ok(beat) => m.receive(tokio::time::Instant::now().into_std(), beat),
                        Err(e) => {
                            dropped += 1;
                            // At the 1st, 2nd, 4th, 8th... only: a flood must not fill the log.
                            if dropped.is_power_of_two() {
                                log.write("farm", LogLevel::E, &format!("farm membership datagram dropped ({dropped} so far): {e}"));
                            }
                        }
                    }
                }
            }
        }
        for r in readers {
            r.abort();
        }
    }
}

/// The powers of a group's `<host>` list (empty: every node has power 1).
pub fn powers(hosts: &[crate::config::LbHost]) -> BTreeMap<String, u32> {
    hosts.iter().map(|h| (h.name.clone(), h.power)).collect()
}
