//! The primary's connection to its secondary: an ordered, pipelined stream
//! of sealed frames, acknowledgements coming back, and the waits that make a
//! sync point (fsync, O_SYNC write, close) return only once the secondary
//! holds every earlier mutation.
//!
//! Sequence numbers are global across connections, so the dirty map can
//! compare "last touched" with "durable on the secondary" without caring
//! which connection carried what.

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::dirty::DirtyMap;
use super::tree::split;
use super::wire::{Entry, Sealer, ToPrimary, ToSecondary};
use super::Hooks;

/// Most bytes sent and not yet applied by the secondary before writers wait.
const WINDOW: u64 = 64 << 20;

struct Conn {
    sealer: Sealer,
    stream: TcpStream,
    buf: Vec<u8>,
    base: u64,
    frames: u64,
}

struct State {
    epoch: u64,
    conn: Option<Conn>,
    seq: u64,
    applied: u64,
    durable: u64,
    inflight: VecDeque<(u64, u64)>,
    sent_bytes: u64,
    listings: HashMap<u64, Option<Vec<Entry>>>,
    mirror: bool,
    /// What the secondary last failed to apply during a reintegration
    /// (path, error), for the reintegration to decide whether to go on.
    divergence: Option<(Vec<u8>, String)>,
}

/// See the module documentation.
pub struct Link {
    st: Mutex<State>,
    cv: Condvar,
    dirty: Arc<Mutex<DirtyMap>>,
    hooks: Hooks,
    /// How long a sync point waits for the secondary (locktimeout).
    pub lock_timeout: Duration,
    /// How long a writer waits for room in the window (sendtimeout).
    pub send_timeout: Duration,
}

/// A point in the stream: the connection it was sent on and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Connection generation.
    pub epoch: u64,
    /// Global sequence number.
    pub seq: u64,
}

impl Link {
    /// What the secondary last failed to apply during the reintegration.
    pub fn take_divergence(&self) -> Option<(Vec<u8>, String)> {
        self.lock().divergence.take()
    }

    /// A link with no secondary yet.
    pub fn new(dirty: Arc<Mutex<DirtyMap>>, hooks: Hooks, lock_timeout: Duration, send_timeout: Duration) -> Self {
        Self {
            st: Mutex::new(State {
                epoch: 0,
                conn: None,
                seq: 0,
                applied: 0,
                durable: 0,
                inflight: VecDeque::new(),
                sent_bytes: 0,
                listings: HashMap::new(),
                mirror: false,
                divergence: None,
            }),
            cv: Condvar::new(),
            dirty,
            hooks,
            lock_timeout,
            send_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A secondary is receiving the stream.
    pub fn connected(&self) -> bool {
        self.lock().conn.is_some()
    }

    /// Marks the secondary as a complete mirror.
    pub fn set_mirror(&self, epoch: u64) {
        let mut st = self.lock();
        if st.epoch == epoch {
            st.mirror = true;
        }
    }

    /// The sequence number the next frame will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().seq + 1
    }

    /// The last frame queued on the current connection.
    pub fn last_sent(&self) -> Option<Sent> {
        let st = self.lock();
        st.conn.as_ref().filter(|c| c.frames > 0).map(|_| Sent { epoch: st.epoch, seq: st.seq })
    }

    /// Queues `msg`; `None` when no secondary is connected.
    pub fn send(&self, msg: &ToSecondary) -> Option<Sent> {
        let deadline = Instant::now() + self.send_timeout;
        let mut st = self.lock();
        loop {
            let epoch = st.epoch;
            let in_flight = st.sent_bytes - st.inflight.front().map_or(st.sent_bytes, |f| f.1);
            if st.conn.is_none() || in_flight < WINDOW {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                self.lose(epoch, "sendtimeout: the secondary does not read the replication stream");
                return None;
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        let st = &mut *st;
        let conn = st.conn.as_mut()?;
        let before = conn.buf.len();
        conn.sealer.seal(msg, &mut conn.buf);
        conn.frames += 1;
        st.seq += 1;
        st.sent_bytes += (conn.buf.len() - before) as u64;
        st.inflight.push_back((st.seq, st.sent_bytes));
        self.cv.notify_all();
        Some(Sent { epoch: st.epoch, seq: st.seq })
    }

    /// Waits until the secondary applied `sent`. Returns false if the
    /// secondary was lost meanwhile (the caller goes on: the application
    /// must never hang on a dead secondary).
    pub fn wait_applied(&self, sent: Sent) -> bool {
        let deadline = Instant::now() + self.lock_timeout;
        let mut st = self.lock();
        loop {
            if st.epoch != sent.epoch || st.conn.is_none() {
                return false;
            }
            if st.applied >= sent.seq {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                self.lose(sent.epoch, "locktimeout: the secondary did not acknowledge a replicated write in time");
                return false;
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    }

    /// Sends `List` and waits for the listing (reintegration).
    pub fn list(&self, id: u64, path: &[u8], timeout: Duration) -> Result<Option<Vec<Entry>>, String> {
        let sent = self.send(&ToSecondary::List { id, path: path.to_vec() }).ok_or("the secondary is gone")?;
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.epoch != sent.epoch || st.conn.is_none() {
                return Err("the secondary is gone".into());
            }
            if let Some(l) = st.listings.remove(&id) {
                return Ok(l);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err("reitimeout: no answer to a directory listing".into());
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    }

    /// Installs a new secondary connection (replacing any old one) and
    /// starts its writer and reader threads. Call under the order lock.
    pub fn install(self: &Arc<Self>, stream: TcpStream, session: (Sealer, Sealer), reader: BufReader<TcpStream>) -> std::io::Result<u64> {
        let old = self.lock().epoch;
        self.lose(old, "replaced by a new connection");
        let write_half = stream.try_clone()?;
        let epoch = {
            let mut st = self.lock();
            st.epoch += 1;
            st.applied = st.seq;
            st.durable = st.seq;
            st.inflight.clear();
            st.mirror = false;
            st.listings.clear();
            st.conn = Some(Conn { sealer: session.0, stream, buf: Vec::new(), base: st.seq, frames: 0 });
            st.epoch
        };
        self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).alone = false;
        let me = self.clone();
        std::thread::Builder::new().name("rfs-send".into()).spawn(move || me.writer(epoch, write_half))?;
        let me = self.clone();
        let mut open = session.1;
        std::thread::Builder::new().name("rfs-acks".into()).spawn(move || me.reader(epoch, reader, &mut open))?;
        Ok(epoch)
    }

    fn writer(&self, epoch: u64, mut stream: TcpStream) {
        loop {
            let buf = {
                let mut st = self.lock();
                loop {
                    if st.epoch != epoch || st.conn.is_none() {
                        return;
                    }
                    let c = st.conn.as_mut().expect("checked");
                    if !c.buf.is_empty() {
                        break std::mem::take(&mut c.buf);
                    }
                    st = self.cv.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            if let Err(e) = stream.write_all(&buf) {
                self.lose(epoch, &format!("replication stream: {e}"));
                return;
            }
        }
    }

    fn reader(&self, epoch: u64, mut r: BufReader<TcpStream>, open: &mut Sealer) {
        loop {
            let msg = match open.open::<ToPrimary>(&mut r) {
                Ok(m) => m,
                Err(e) => {
                    self.lose(epoch, &format!("replication stream: {e}"));
                    return;
                }
            };
            let mut st = self.lock();
            if st.epoch != epoch {
                return;
            }
            let base = st.conn.as_ref().map_or(0, |c| c.base);
            match msg {
                ToPrimary::Applied { seq } => {
                    let g = base.saturating_add(seq).min(st.seq);
                    st.applied = st.applied.max(g);
                    while st.inflight.front().is_some_and(|f| f.0 <= g) {
                        st.inflight.pop_front();
                    }
                }
                ToPrimary::Durable { seq } => {
                    let g = base.saturating_add(seq).min(st.seq);
                    st.durable = st.durable.max(g);
                    drop(st);
                    let r = self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).durable(g);
                    if let Err(e) = r {
                        (self.hooks.log)(crate::engine::LogLevel::C, format!("dirty map: {e}"));
                    }
                    st = self.lock();
                }
                ToPrimary::Listing { id, entries } => {
                    st.listings.insert(id, entries);
                }
                ToPrimary::Diverged { path, error } => {
                    let mirror = st.mirror;
                    drop(st);
                    {
                        let mut dm = self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        let seq = self.next_seq();
                        let _ = dm.mark_whole(&path, seq);
                        let _ = dm.mark_dir(split(&path).0, seq);
                        dm.make_pending(split(&path).0);
                    }
                    if !mirror {
                        self.lock().divergence = Some((path.clone(), error.clone()));
                    }
                    if mirror {
                        (self.hooks.log)(
                            crate::engine::LogLevel::C,
                            format!("the secondary could not apply a change to {}: {error}", String::from_utf8_lossy(&path)),
                        );
                        self.lose(epoch, "the secondary diverged");
                        return;
                    }
                    st = self.lock();
                }
                ToPrimary::Hello { .. } | ToPrimary::Verify => {
                    drop(st);
                    self.lose(epoch, "unexpected message from the secondary");
                    return;
                }
            }
            self.cv.notify_all();
            drop(st);
        }
    }

    /// Drops the connection of generation `epoch` (if still current).
    pub fn lose(&self, epoch: u64, reason: &str) {
        let was_mirror;
        {
            let mut st = self.lock();
            if st.epoch != epoch || st.conn.is_none() {
                return;
            }
            if let Some(c) = st.conn.take() {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
            was_mirror = st.mirror;
            st.mirror = false;
            self.cv.notify_all();
        }
        self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).secondary_gone();
        (self.hooks.log)(crate::engine::LogLevel::E, format!("Secondary disconnected: {reason}"));
        if was_mirror {
            (self.hooks.event)(crate::engine::ReplicationEvent::SecondaryLost { reason: reason.to_string() });
        }
    }

    /// Drops whatever secondary is connected.
    pub fn drop_current(&self, reason: &str) {
        let e = self.lock().epoch;
        self.lose(e, reason);
    }

    /// The current connection generation.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }
}
