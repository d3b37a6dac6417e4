//! The secondary's side: connect to the primary, hand over this node's own
//! dirty map, then apply the stream in order and acknowledge it. A frame is
//! acknowledged once applied (async="second"); `Fsync` operations and
//! checkpoints reach the disk first.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::replica::Replica;
use super::wire::{client_handshake, Sealer, ToPrimary, ToSecondary};
use crate::engine::{LogLevel, ReplicationEvent};
use crate::key::ClusterKey;

/// Where and how to reach the primary.
#[derive(Clone)]
pub(crate) struct Upstream {
    /// The primary's replication address.
    pub addr: SocketAddr,
    /// Cluster key.
    pub key: ClusterKey,
    /// Module id × 32 + index of the replicated directory.
    pub channel: u16,
    /// This node's name.
    pub node: String,
}

type Tx = Arc<Mutex<(Sealer, TcpStream)>>;

fn send(tx: &Tx, msg: &ToPrimary) -> std::io::Result<()> {
    let mut g = tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut buf = Vec::new();
    g.0.seal(msg, &mut buf);
    g.1.write_all(&buf)
}

/// Connects (retrying until `patience` runs out) and authenticates.
pub(crate) fn connect(up: &Upstream, patience: Duration) -> Result<(TcpStream, (Sealer, Sealer)), String> {
    let deadline = Instant::now() + patience;
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&up.addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                match client_handshake(&mut s, &up.key, up.channel) {
                    Ok(sess) => {
                        let _ = s.set_read_timeout(None);
                        return Ok((s, sess));
                    }
                    Err(e) => last = format!("handshake with {}: {e}", up.addr),
                }
            }
            Err(e) => last = format!("connect to {}: {e}", up.addr),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last)
}

/// Runs one connection to the primary until it ends. `done` gets the
/// outcome of the reintegration (the statistics line, or why it failed);
/// the connection then goes on as a mirror until the primary or `stop`
/// closes it.
pub(crate) fn serve(
    r: Arc<Replica>,
    up: Upstream,
    full: bool,
    patience: Duration,
    done: mpsc::Sender<Result<String, String>>,
    register: impl FnOnce(TcpStream),
) {
    let (stream, (sealer, mut open)) = match connect(&up, patience) {
        Ok(x) => x,
        Err(e) => {
            let _ = done.send(Err(e));
            return;
        }
    };
    // Registered at once, so that a stop during the reintegration closes
    // this connection (an orphan would keep replacing the next one).
    if let Ok(c) = stream.try_clone() {
        register(c);
    }
    let read_half = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            let _ = done.send(Err(e.to_string()));
            return;
        }
    };
    let tx: Tx = Arc::new(Mutex::new((sealer, stream)));
    let mine = r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).export();
    if let Err(e) = send(&tx, &ToPrimary::Hello { node: up.node.clone(), full, dirty: mine }) {
        let _ = done.send(Err(e.to_string()));
        return;
    }
    let mut reader = BufReader::with_capacity(4 << 20, read_half);
    let (sync_tx, sync_rx) = mpsc::channel::<u64>();
    {
        let (r, tx) = (r.clone(), tx.clone());
        let _ = std::thread::Builder::new().name("rfs-durable".into()).spawn(move || {
            while let Ok(mut seq) = sync_rx.recv() {
                while let Ok(s) = sync_rx.try_recv() {
                    seq = s;
                }
                if r.tree.syncfs().is_ok() && send(&tx, &ToPrimary::Durable { seq }).is_err() {
                    return;
                }
            }
        });
    }
    let mut seq = 0u64;
    let mut acked = 0u64;
    let mut reported = false;
    let result: Result<(), String> = loop {
        let msg = match open.open::<ToSecondary>(&mut reader) {
            Ok(m) => m,
            Err(e) => break Err(format!("replication stream from the primary: {e}")),
        };
        seq += 1;
        let sent = match msg {
            ToSecondary::Welcome => {
                let r2 = r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
                if let Err(e) = r2 {
                    (r.hooks.log)(LogLevel::C, format!("dirty map: {e}"));
                }
                Ok(())
            }
            ToSecondary::Op(op) => match r.tree.apply(&op) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let path = super::replica::op_paths(&op).last().map(|p| p.to_vec()).unwrap_or_default();
                    send(&tx, &ToPrimary::Diverged { path, error: e.desc().to_string() })
                }
            },
            ToSecondary::List { id, path } => send(&tx, &ToPrimary::Listing { id, entries: r.tree.list(&path).ok() }),
            ToSecondary::Checkpoint => {
                let _ = sync_tx.send(seq);
                Ok(())
            }
            ToSecondary::Progress { done, total, eta_secs } => {
                (r.hooks.event)(ReplicationEvent::ReintegrationProgress { done, total, eta_secs });
                Ok(())
            }
            ToSecondary::Reintegrated { stats } => {
                // The copy is complete only once it is on this node's disk.
                let synced = r.tree.syncfs();
                if !reported {
                    reported = true;
                    let _ = done.send(synced.map(|()| stats).map_err(|e| format!("syncfs: {e}")));
                }
                Ok(())
            }
            ToSecondary::ReintegrationFailed { reason } => {
                if !reported {
                    reported = true;
                    let _ = done.send(Err(reason));
                }
                Ok(())
            }
            ToSecondary::Digests { .. } => Ok(()),
        };
        if let Err(e) = sent {
            break Err(e.to_string());
        }
        r.applied_frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Acknowledge when the stream pauses, and at least every 32 frames
        // so that a continuous stream never fills the primary's window.
        if reader.buffer().is_empty() || seq - acked >= 32 {
            acked = seq;
            if let Err(e) = send(&tx, &ToPrimary::Applied { seq }) {
                break Err(e.to_string());
            }
        }
    };
    if let Err(e) = result {
        if !reported {
            let _ = done.send(Err(e.clone()));
        }
        (r.hooks.log)(LogLevel::E, format!("Replication from the primary ended: {e}"));
    }
}
