//! Default Linux implementations of the [services](crate::services): UDP
//! heartbeats, netlink VIPs with gratuitous ARP, process scripts, checkers.

pub mod announce;
pub mod checkers;
pub mod farm;
pub mod firewall;
pub mod heartbeat;
pub mod icmp;
pub mod scripts;
pub mod vip;
