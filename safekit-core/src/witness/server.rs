//! `safekit witness`: answers lease requests on one UDP socket until
//! `shutdown`. Anything that does not authenticate is dropped and counted.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::{open, seal, LeaseBook, Request, MAX_DATAGRAM};
use crate::key::ClusterKey;

/// Serves on `listen` with `key` until `shutdown` resolves.
pub async fn serve(listen: SocketAddr, key: ClusterKey, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    let sock = UdpSocket::bind(listen).await.map_err(|e| format!("witness: cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, "safekit witness running");
    let mut book = LeaseBook::new(Duration::from_millis(50));
    let mut dropped = 0u64;
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    tokio::pin!(shutdown);
    loop {
        let (n, from) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let now = tokio::time::Instant::now().into_std();
        let answer = open::<Request>(&key, &buf[..n]).ok().and_then(|req| {
            let a = book.decide(now, &req)?;
            tracing::debug!(module = req.module, node = %req.node, verdict = ?a.verdict, "lease request");
            Some(a)
        });
        match answer {
            Some(a) => {
                let _ = sock.send_to(&seal(&key, &a), from).await;
            }
            None => {
                dropped += 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(%from, dropped, "witness datagram dropped (forged, replayed or malformed)");
                }
            }
        }
    }
}
