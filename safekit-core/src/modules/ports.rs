//! The ports a node and its modules use (`safekit module getports`, and
//! `firewallcfg`): one place for the numbers the daemon derives from a
//! module id, so what is printed is what is listened on.

use crate::config::{Mode, UserConfig};

/// A module's heartbeat port (UDP) when `<heart port>` is not set: 8888 + id − 1.
pub fn heartbeat(id: u16) -> u16 {
    8888u16.saturating_add(id.saturating_sub(1))
}

/// A farm module's membership port (UDP) when `<farm port>` is not set: 4803 + (id − 1) × 3.
pub fn farm(id: u16) -> u16 {
    4803u16.saturating_add(id.saturating_sub(1).saturating_mul(3))
}

/// One port in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortUse {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// The port.
    pub port: u16,
    /// What listens there, in SafeKit's words.
    pub what: &'static str,
}

/// The ports module `cfg` (id `id`) listens on, on every node it runs on.
pub fn of_module(cfg: &UserConfig, id: u16) -> Vec<PortUse> {
    let mut out = Vec::new();
    match cfg.service.mode {
        Mode::Mirror => {
            let port = cfg.service.heart.as_ref().and_then(|h| h.port).unwrap_or_else(|| heartbeat(id));
            out.push(PortUse { proto: "udp", port, what: "heart (heartbeats)" });
            if cfg.service.rfs.is_some() {
                out.push(PortUse { proto: "tcp", port: crate::replication::port(id), what: "rfs (replication and reintegration)" });
            }
        }
        Mode::Farm => {
            let port = cfg.service.farm.as_ref().and_then(|f| f.port).unwrap_or_else(|| farm(id));
            out.push(PortUse { proto: "udp", port, what: "farm (membership)" });
        }
        Mode::Light => {}
    }
    out
}

/// The ports of the node itself: the web service (console, API, CLI
/// across nodes, `<module>` checkers), HTTP or, with certificates, HTTPS
/// (9010 then only redirects and serves the health check).
pub fn of_node(https: bool) -> Vec<PortUse> {
    let mut out = vec![PortUse { proto: "tcp", port: crate::daemon::web::PORT, what: "webconsole (HTTP: console, API, health check)" }];
    if https {
        out.push(PortUse { proto: "tcp", port: crate::daemon::web::tls::HTTPS_PORT, what: "webconsole (HTTPS)" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ports_are_safekits_numbers() {
        // SafeKit's example: mirror id 1 → heart UDP 8888, rfs TCP 5600; farm id 2 → UDP 4806.
        assert_eq!((heartbeat(1), crate::replication::port(1), farm(2)), (8888, 5600, 4806));
        assert_eq!((heartbeat(3), crate::replication::port(3), farm(3)), (8890, 5608, 4809));
    }
}
