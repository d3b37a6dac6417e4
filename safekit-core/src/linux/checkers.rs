//! The built-in checkers of `<check>` and of `check="on"` (reference §1.9,
//! §6) as [`Checker`]s: an interface with carrier and an address of its
//! subnet, a NIC, a configured address, a TCP connect, an ICMP echo. The
//! runtime schedules them ([`crate::runtime::checkers`]); the engine's
//! failover rules decide what a down resource triggers.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

use crate::services::{Checker, Observation};

/// What a checker tests.
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
    /// `<intf><to local_addr>`: the NIC holding `local` exists and has carrier.
    Nic {
        /// The NIC's physical address.
        local: IpAddr,
    },
    /// `ip` is configured on a local interface.
    Address {
        /// The virtual address.
        ip: IpAddr,
    },
    /// A TCP connection to `host`:`port` opens within `timeout`.
    Tcp {
        /// Address or name.
        host: String,
        /// Port.
        port: u16,
        /// Connect timeout.
        timeout: Duration,
    },
    /// `host` answers an ICMP echo within `timeout`.
    Ping {
        /// Address or name.
        host: String,
        /// Answer timeout.
        timeout: Duration,
    },
}

/// A [`Probe`] tested every `period`, setting resource `resource`.
#[derive(Debug, Clone)]
pub struct ProbeChecker {
    /// `<kind>.<ident>`.
    pub resource: String,
    /// The test.
    pub probe: Probe,
    /// Test period.
    pub period: Duration,
}

#[async_trait]
impl Checker for ProbeChecker {
    fn resource(&self) -> &str {
        &self.resource
    }
    fn component(&self) -> &str {
        self.probe.component()
    }
    fn period(&self) -> Duration {
        self.period
    }
    async fn check(&self) -> Observation {
        if self.probe.test().await {
            Observation::Up
        } else {
            Observation::Down
        }
    }
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

async fn lookup(host: &str, port: u16) -> Option<std::net::SocketAddr> {
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

fn carrier(ifname: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/carrier")).is_ok_and(|c| c.trim() == "1")
}

impl Probe {
    /// Who sets the resource, in SafeKit's log wording.
    pub const fn component(&self) -> &'static str {
        match self {
            Self::Interface { .. } | Self::Nic { .. } => "intfcheck",
            Self::Address { .. } => "ipcheck",
            Self::Tcp { .. } => "tcpcheck",
            Self::Ping { .. } => "pingcheck",
        }
    }

    /// One test: true if the resource is up.
    pub async fn test(&self) -> bool {
        match self {
            Self::Interface { ifname, net, prefix } => {
                let addrs = if_addrs::get_if_addrs().unwrap_or_default();
                carrier(ifname) && addrs.iter().any(|i| i.name == *ifname && in_subnet(i.ip(), *net, *prefix))
            }
            Self::Nic { local } => {
                let addrs = if_addrs::get_if_addrs().unwrap_or_default();
                addrs.iter().find(|i| i.ip() == *local).is_some_and(|i| carrier(&i.name))
            }
            Self::Address { ip } => if_addrs::get_if_addrs().unwrap_or_default().iter().any(|i| i.ip() == *ip),
            Self::Tcp { host, port, timeout } => {
                let Some(addr) = lookup(host, *port).await else { return false };
                matches!(tokio::time::timeout(*timeout, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
            }
            Self::Ping { host, timeout } => {
                let Some(addr) = lookup(host, 0).await else { return false };
                crate::linux::icmp::echo(addr.ip(), *timeout).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let ip: IpAddr = "192.168.1.77".parse().unwrap();
        assert!(in_subnet(ip, "192.168.1.0".parse().unwrap(), 24));
        assert!(!in_subnet(ip, "192.168.2.0".parse().unwrap(), 24));
    }

    #[tokio::test]
    async fn probes_see_loopback() {
        assert!(Probe::Address { ip: "127.0.0.1".parse().unwrap() }.test().await, "loopback is configured");
        assert!(!Probe::Address { ip: "192.0.2.77".parse().unwrap() }.test().await, "TEST-NET-1 is not configured here");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let tcp = |port| Probe::Tcp { host: "127.0.0.1".into(), port, timeout: Duration::from_secs(2) };
        assert!(tcp(port).test().await, "a listening port answers");
        drop(l);
        assert!(!tcp(port).test().await, "a closed port does not");
    }
}
