//! Checkers the daemon generates from the configuration (reference §1.4):
//! `<interface check="on">` gives `intf.<network>` (link up and a local
//! address on the VIP's subnet; rule `interface_failure` → wait) and
//! `<virtual_addr check="on">` gives `ip.<vip>` (the VIP is still configured
//! here; rule `ip_failure` → stopstart). Each sets its resource through the
//! engine's input queue, only while its class is enabled and checkers are on.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::engine::{CheckerClass, Input, ResourceState};

use super::ModuleReport;

/// What a generated checker tests.
#[derive(Debug, Clone)]
pub enum Probe {
    /// The interface is up and holds a local address in `net`/`prefix`.
    Interface {
        /// Interface name.
        ifname: String,
        /// Network address of the VIP's subnet.
        net: IpAddr,
        /// Prefix length.
        prefix: u8,
    },
    /// `ip` is configured on a local interface.
    Address {
        /// The virtual address.
        ip: IpAddr,
    },
}

fn in_subnet(a: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// The network address of `ip`/`prefix` (the `intf.` resource's identifier).
pub fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)))
        }
        IpAddr::V6(a) => {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0)))
        }
    }
}

impl Probe {
    /// One test.
    pub fn test(&self) -> bool {
        let addrs = if_addrs::get_if_addrs().unwrap_or_default();
        match self {
            Self::Interface { ifname, net, prefix } => {
                let up = std::fs::read_to_string(format!("/sys/class/net/{ifname}/carrier")).is_ok_and(|c| c.trim() == "1");
                up && addrs.iter().any(|i| i.name == *ifname && in_subnet(i.ip(), *net, *prefix))
            }
            Self::Address { ip } => addrs.iter().any(|i| i.ip() == *ip),
        }
    }
}

/// Runs a checker for `resource` every `period` while `class` is enabled.
pub fn spawn(
    resource: String,
    probe: Probe,
    class: CheckerClass,
    period: Duration,
    classes: Arc<Mutex<BTreeSet<CheckerClass>>>,
    report: watch::Receiver<ModuleReport>,
    inputs: mpsc::Sender<Input>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        let mut last = None;
        loop {
            tick.tick().await;
            let enabled = classes.lock().is_ok_and(|c| c.contains(&class));
            let off = report.borrow().resources.get("usersetting.checker").is_some_and(|v| v == "off");
            if !enabled || off {
                if last.take().is_some() {
                    let _ = inputs.send(Input::Resource { name: resource.clone(), state: ResourceState::Init }).await;
                }
                continue;
            }
            let p = probe.clone();
            let up = tokio::task::spawn_blocking(move || p.test()).await.unwrap_or(false);
            if last != Some(up) {
                last = Some(up);
                let state = if up { ResourceState::Up } else { ResourceState::Down };
                if inputs.send(Input::Resource { name: resource.clone(), state }).await.is_err() {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_subnets() {
        let ip: IpAddr = "192.168.1.77".parse().unwrap();
        assert_eq!(network(ip, 24), "192.168.1.0".parse::<IpAddr>().unwrap());
        assert!(in_subnet(ip, "192.168.1.0".parse().unwrap(), 24));
        assert!(!in_subnet(ip, "192.168.2.0".parse().unwrap(), 24));
        assert_eq!(network("fd00::1:2".parse().unwrap(), 64), "fd00::".parse::<IpAddr>().unwrap());
        assert!(Probe::Address { ip: "127.0.0.1".parse().unwrap() }.test(), "loopback is configured");
    }
}
