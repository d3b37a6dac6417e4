//! Default Linux implementations of the [services](crate::services): UDP
//! heartbeats, netlink VIPs with gratuitous ARP, process scripts.

pub mod clock;
pub mod heartbeat;
pub mod scripts;
pub mod announce;
pub mod vip;
