//! Heartbeats over UDP: one socket per network of the module, datagrams
//! authenticated with the cluster key. Forged, replayed, malformed or
//! foreign datagrams are dropped and counted; nothing a peer sends can stop
//! the receiver.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Mutex};

use crate::engine::Heartbeat as HeartbeatMsg;
use crate::heartbeat::wire::{decode, encode, ReplayGuard, MAX_DATAGRAM};
use crate::key::ClusterKey;
use crate::services::{Heartbeat, LanStats};

/// One network: where this node listens and where the peer listens.
#[derive(Debug, Clone, Copy)]
pub struct LanEndpoints {
    /// Local address and port to bind.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub peer: SocketAddr,
}

/// UDP heartbeats of one module.
pub struct UdpHeartbeat {
    socks: Vec<(Arc<UdpSocket>, SocketAddr)>,
    key: ClusterKey,
    module: u16,
    rx: Mutex<mpsc::Receiver<(usize, HeartbeatMsg)>>,
    dropped: Arc<AtomicU64>,
    /// Per network: heartbeats received, heartbeats lost.
    counts: Vec<Arc<[AtomicU64; 2]>>,
    /// The receiving tasks: they hold the sockets, so they end with `self`
    /// (`safekit config` rebinds the same ports).
    receivers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for UdpHeartbeat {
    fn drop(&mut self) {
        for r in &self.receivers {
            r.abort();
        }
    }
}

impl UdpHeartbeat {
    /// Binds every network and starts receiving. Only datagrams from the
    /// peer's address, authentic, of this module, from the expected node and
    /// newer than the last accepted one on that network get through.
    pub async fn bind(key: ClusterKey, module: u16, peer_name: &str, lans: &[LanEndpoints]) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(256);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut socks = Vec::new();
        let mut receivers = Vec::new();
        let mut counts = Vec::new();
        for (i, lan) in lans.iter().enumerate() {
            let count = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
            counts.push(count.clone());
            let sock = Arc::new(bind_retrying(lan.local).await?);
            socks.push((sock.clone(), lan.peer));
            let (tx, key, dropped, peer_name, peer) = (tx.clone(), key.clone(), dropped.clone(), peer_name.to_string(), lan.peer);
            receivers.push(tokio::spawn(async move {
                let mut guard = ReplayGuard::default();
                // One byte more than the largest heartbeat: longer datagrams are detected.
                let mut buf = vec![0u8; MAX_DATAGRAM + 1];
                loop {
                    let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                        continue;
                    };
                    let ok = from.ip() == peer.ip()
                        && match decode(&key, module, &buf[..n]) {
                            Ok(hb) if hb.node == peer_name => match guard.accept(&hb) {
                                Some(missed) => {
                                    count[0].fetch_add(1, Ordering::Relaxed);
                                    count[1].fetch_add(missed, Ordering::Relaxed);
                                    tx.send((i, hb)).await.is_ok()
                                }
                                None => false,
                            },
                            _ => false,
                        };
                    if !ok {
                        let total = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        if total.is_power_of_two() {
                            tracing::warn!(module, from = %from, total, "heartbeat datagram dropped (forged, replayed, malformed or foreign)");
                        }
                    }
                }
            }));
        }
        Ok(Self { socks, key, module, rx: Mutex::new(rx), dropped, counts, receivers })
    }
}

/// Binds `addr`, retrying for up to two seconds while the port is still
/// held by the runtime being replaced (an aborted task releases its socket
/// when its executor drops it, a moment after the abort).
async fn bind_retrying(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    for _ in 0..40 {
        match UdpSocket::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            r => return r,
        }
    }
    UdpSocket::bind(addr).await
}

#[async_trait]
impl Heartbeat for UdpHeartbeat {
    async fn send(&self, msg: &HeartbeatMsg) {
        let data = encode(&self.key, self.module, msg);
        for (sock, peer) in &self.socks {
            // A network that is down fails here; the peer notices by the timeout.
            let _ = sock.send_to(&data, peer).await;
        }
    }

    async fn recv(&self) -> (usize, HeartbeatMsg) {
        let mut rx = self.rx.lock().await;
        match rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lan_stats(&self) -> Vec<LanStats> {
        self.counts.iter().map(|c| LanStats { received: c[0].load(Ordering::Relaxed), lost: c[1].load(Ordering::Relaxed) }).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn free_udp() -> SocketAddr {
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free UDP port")
    }

    /// Over real loopback sockets: heartbeats are counted per network as
    /// received, the gaps in the sender's sequence as lost, and a forged
    /// datagram as dropped (never delivered).
    #[tokio::test]
    async fn each_network_counts_what_it_received_and_what_was_lost() {
        let key = ClusterKey::new([7; 32]);
        let (a, b) = (free_udp(), free_udp());
        let sender = UdpHeartbeat::bind(key.clone(), 3, "node2", &[LanEndpoints { local: a, peer: b }]).await.unwrap();
        let receiver = UdpHeartbeat::bind(key, 3, "node1", &[LanEndpoints { local: b, peer: a }]).await.unwrap();
        let mut msg = crate::heartbeat::wire::tests::hb();
        msg.node = "node1".into();
        for seq in [1, 2, 6] {
            msg.seq = seq;
            sender.send(&msg).await;
            let (lan, got) = tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await.expect("a heartbeat");
            assert_eq!((lan, got.seq), (0, seq));
        }
        assert_eq!(receiver.lan_stats(), [LanStats { received: 3, lost: 3 }], "3, 4 and 5 never arrived");
        // Forged (another key), from the peer's own address: dropped, counted, not delivered.
        let forged = encode(&ClusterKey::new([8; 32]), 3, &msg);
        sender.socks[0].0.send_to(&forged, b).await.unwrap();
        for _ in 0..100 {
            if receiver.dropped() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(receiver.dropped(), 1);
        assert_eq!(receiver.lan_stats(), [LanStats { received: 3, lost: 3 }]);
    }
}
