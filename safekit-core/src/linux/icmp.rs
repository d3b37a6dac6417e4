//! ICMP echo (the `ping` checker and the split-brain witness) through
//! surge-ping: no `ping` binary needed, IPv4 and IPv6.

use std::net::IpAddr;
use std::time::Duration;

use surge_ping::{Client, Config, PingIdentifier, PingSequence, ICMP};

/// True when `ip` answers one echo request within `timeout`.
pub async fn echo(ip: IpAddr, timeout: Duration) -> bool {
    let config = match ip {
        IpAddr::V4(_) => Config::default(),
        IpAddr::V6(_) => Config::builder().kind(ICMP::V6).build(),
    };
    let Ok(client) = Client::new(&config) else {
        tracing::warn!(%ip, "cannot open an ICMP socket");
        return false;
    };
    let mut id = [0u8; 2];
    let _ = getrandom::fill(&mut id);
    let mut pinger = client.pinger(ip, PingIdentifier(u16::from_ne_bytes(id))).await;
    pinger.timeout(timeout);
    pinger.ping(PingSequence(0), b"safekit").await.is_ok()
}

/// SafeKit's ping witness: a node may go on alone if any of `targets`
/// answers an echo within a second.
pub struct PingWitness {
    /// The `<splitbrain arg>` addresses.
    pub targets: Vec<IpAddr>,
}

#[async_trait::async_trait]
impl crate::services::Witness for PingWitness {
    async fn allow_alone(&self, _version: (u64, u64)) -> Result<(), crate::services::ServiceError> {
        for w in &self.targets {
            if echo(*w, Duration::from_secs(1)).await {
                return Ok(());
            }
        }
        let list: Vec<String> = self.targets.iter().map(ToString::to_string).collect();
        Err(crate::services::ServiceError::Unreachable(format!("Split-brain witness: no answer from {}", list.join(" "))))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn loopback_answers() {
        // Loopback always exists; a socket may be refused to non-root users
        // without ping_group_range, which is then the only acceptable failure.
        let ok = super::echo("127.0.0.1".parse().unwrap(), std::time::Duration::from_secs(2)).await;
        assert!(ok || !nix::unistd::geteuid().is_root(), "root could not ping loopback");
    }
}
