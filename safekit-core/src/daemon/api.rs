//! The node's network API for other nodes (SafeKit's web service plays
//! this part): a module checker on another node asks a module's status on
//! TCP port [`PORT`] of this node's cluster addresses. Read-only; each
//! answer is authenticated with HMAC-SHA256 under the cluster key over the
//! asker's nonce, so a checker cannot be fed a forged or replayed status
//! (modules of clusters sharing a key can watch each other, as SafeKit's
//! do when their web-service passwords match).

use std::net::SocketAddr;
use std::time::Duration;

use hmac::Mac;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::engine::Status;
use crate::key::ClusterKey;

/// SafeKit's web-service port.
pub const PORT: u16 = 9010;

/// Connections served at once (each lives at most about two seconds).
pub const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
struct Ask {
    module: String,
    nonce: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    status: Option<Status>,
    mac: String,
}

fn mac(key: &ClusterKey, nonce: &str, module: &str, status: Option<Status>) -> String {
    let mut m = key.mac();
    m.update(nonce.as_bytes());
    m.update(b"\0");
    m.update(module.as_bytes());
    m.update(b"\0");
    m.update(serde_json::to_string(&status).unwrap_or_default().as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Answers on `listen` with `status_of(module)` until the task is aborted.
pub async fn serve(
    listen: SocketAddr,
    key: ClusterKey,
    status_of: impl Fn(&str) -> Option<Status> + Send + Sync + Clone + 'static,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let l = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("node API on {listen}: {e}"))?;
    // At most MAX_CONNECTIONS answered at once: a flood waits in the
    // kernel's backlog instead of taking the daemon's file descriptors.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let stream = match l.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors (or a reset): do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (key, status_of) = (key.clone(), status_of.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                // One short line, read within a second: anything else is dropped.
                let read = tokio::time::timeout(Duration::from_secs(1), BufReader::new(r.take(512)).read_line(&mut line)).await;
                let Ok(Ok(_)) = read else { return };
                let Ok(ask) = serde_json::from_str::<Ask>(&line) else { return };
                let status = status_of(&ask.module);
                let answer = Answer { status, mac: mac(&key, &ask.nonce, &ask.module, status) };
                let mut out = serde_json::to_string(&answer).unwrap_or_default();
                out.push('\n');
                let _ = tokio::time::timeout(Duration::from_secs(1), w.write_all(out.as_bytes())).await;
            });
        }
    }))
}

/// Asks node `addr` for `module`'s status: `Ok(None)` if it has no such
/// module; `Err` if it does not answer in `timeout` or the answer is not
/// authentic.
pub async fn ask(addr: SocketAddr, key: &ClusterKey, module: &str, timeout: Duration) -> Result<Option<Status>, String> {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).map_err(|e| e.to_string())?;
    let nonce = hex::encode(n);
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut req = serde_json::to_string(&Ask { module: module.to_string(), nonce: nonce.clone() }).map_err(|e| e.to_string())?;
        req.push('\n');
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(s.take(4096)).read_line(&mut line).await.map_err(|e| e.to_string())?;
        let a: Answer = serde_json::from_str(&line).map_err(|e| format!("malformed answer: {e}"))?;
        if a.mac != mac(key, &nonce, module, a.status) {
            return Err("the answer is not authentic (another cluster key?)".to_string());
        }
        Ok(a.status)
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| format!("no answer from {addr}"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Readiness, State};

    #[tokio::test]
    async fn authentic_answers_only() {
        let key = ClusterKey::new([9; 32]);
        let status = Status::new(State::Alone, Readiness::Ready);
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let server = serve(addr, key.clone(), move |m| (m == "other").then_some(status)).await.unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(ask(addr, &key, "other", t).await, Ok(Some(status)));
        assert_eq!(ask(addr, &key, "nosuch", t).await, Ok(None));
        let err = ask(addr, &ClusterKey::new([1; 32]), "other", t).await.unwrap_err();
        assert!(err.contains("not authentic"), "{err}");
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_idle_connections_does_not_stop_the_answers() {
        let key = ClusterKey::new([9; 32]);
        let status = Status::new(State::Alone, Readiness::Ready);
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let server = serve(addr, key.clone(), move |_| Some(status)).await.unwrap();
        // Five times the slots, all silent: each is dropped after its second.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS * 5 {
            if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
                idle.push(c);
            }
        }
        assert_eq!(ask(addr, &key, "m", Duration::from_secs(30)).await, Ok(Some(status)), "answered once the idle ones timed out");
        drop(idle);
        server.abort();
    }
}
