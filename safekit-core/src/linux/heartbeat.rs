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
use crate::services::Heartbeat;

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
        for (i, lan) in lans.iter().enumerate() {
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
                            Ok(hb) if hb.node == peer_name && guard.accept(&hb) => tx.send((i, hb)).await.is_ok(),
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
        Ok(Self { socks, key, module, rx: Mutex::new(rx), dropped, receivers })
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
}
