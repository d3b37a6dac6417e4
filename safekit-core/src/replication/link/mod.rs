//! The primary's connection to its secondary: an ordered, pipelined stream
//! of sealed frames, acknowledgements coming back, and the waits that make a
//! sync point (fsync, O_SYNC write, close) return only once the secondary
//! holds every earlier mutation.
//!
//! The protocol state (sequence numbers, window, what a loss or a timeout
//! means) is [`flow::Flow`], pure and unit-tested; this file adds the
//! socket, the threads and the waiting.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod flow;

use flow::{Flow, Wait};
pub(crate) use flow::{Sent, StreamStats};

use super::dirty::DirtyMap;
use super::tree::split;
use super::wire::{Entry, Sealer, ToPrimary, ToSecondary};
use super::Hooks;

struct Conn {
    sealer: Sealer,
    stream: TcpStream,
    buf: Vec<u8>,
}

struct State {
    flow: Flow,
    /// The current connection's socket (`Some` exactly while `flow` is connected).
    conn: Option<Conn>,
    listings: HashMap<u64, Option<Vec<Entry>>>,
    /// What the secondary last failed to apply during a reintegration
    /// (path, error), for the reintegration to decide whether to go on.
    divergence: Option<(Vec<u8>, String)>,
}

/// See the module documentation.
pub(crate) struct Link {
    st: Mutex<State>,
    cv: Condvar,
    dirty: Arc<Mutex<DirtyMap>>,
    hooks: Hooks,
    /// How long a sync point waits for the secondary (locktimeout).
    pub lock_timeout: Duration,
    /// How long a writer waits for room in the window (sendtimeout).
    pub send_timeout: Duration,
}

impl Link {
    /// What the secondary last failed to apply during the reintegration.
    pub(crate) fn take_divergence(&self) -> Option<(Vec<u8>, String)> {
        self.lock().divergence.take()
    }

    /// A link with no secondary yet.
    pub(crate) fn new(dirty: Arc<Mutex<DirtyMap>>, hooks: Hooks, lock_timeout: Duration, send_timeout: Duration) -> Self {
        Self {
            st: Mutex::new(State { flow: Flow::default(), conn: None, listings: HashMap::new(), divergence: None }),
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
    pub(crate) fn connected(&self) -> bool {
        self.lock().flow.connected()
    }

    /// The secondary is a complete mirror (its reintegration finished).
    pub(crate) fn mirror(&self) -> bool {
        self.lock().flow.mirror()
    }

    /// Marks the secondary as a complete mirror.
    pub(crate) fn set_mirror(&self, epoch: u64) {
        self.lock().flow.set_mirror(epoch);
    }

    /// The sequence number the next frame will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.lock().flow.next_seq()
    }

    /// The last frame queued on the current connection.
    pub(crate) fn last_sent(&self) -> Option<Sent> {
        self.lock().flow.last_sent()
    }

    /// Queues `msg`; `None` when no secondary is connected.
    pub(crate) fn send(&self, msg: &ToSecondary) -> Option<Sent> {
        let deadline = Instant::now() + self.send_timeout;
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            match st.flow.window_wait(now, deadline) {
                Wait::Done | Wait::Gone => break,
                Wait::Expired => {
                    let epoch = st.flow.epoch();
                    drop(st);
                    self.lose(epoch, "sendtimeout: the secondary does not read the replication stream");
                    return None;
                }
                Wait::Pending => {
                    st = self.cv.wait_timeout(st, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
                }
            }
        }
        let st = &mut *st;
        let conn = st.conn.as_mut()?;
        let before = conn.buf.len();
        conn.sealer.seal(msg, &mut conn.buf);
        let sent = st.flow.queued((conn.buf.len() - before) as u64, Instant::now());
        self.cv.notify_all();
        sent
    }

    /// Waits until the secondary applied `sent`. Returns false if the
    /// secondary was lost meanwhile (the caller goes on: the application
    /// must never hang on a dead secondary).
    pub(crate) fn wait_applied(&self, sent: Sent) -> bool {
        let deadline = Instant::now() + self.lock_timeout;
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            match st.flow.applied_wait(sent, now, deadline) {
                Wait::Done => return true,
                Wait::Gone => return false,
                Wait::Expired => {
                    drop(st);
                    self.lose(sent.epoch, "locktimeout: the secondary did not acknowledge a replicated write in time");
                    return false;
                }
                Wait::Pending => {
                    st = self.cv.wait_timeout(st, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
                }
            }
        }
    }

    /// Sends `List` and waits for the listing (reintegration).
    pub(crate) fn list(&self, id: u64, path: &[u8], timeout: Duration) -> Result<Option<Vec<Entry>>, String> {
        let sent = self.send(&ToSecondary::List { id, path: path.to_vec() }).ok_or("the secondary is gone")?;
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if !st.flow.current(sent.epoch) {
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
    pub(crate) fn install(
        self: &Arc<Self>,
        stream: TcpStream,
        session: (Sealer, Sealer),
        reader: BufReader<TcpStream>,
    ) -> std::io::Result<u64> {
        let old = self.lock().flow.epoch();
        self.lose(old, "replaced by a new connection");
        let write_half = stream.try_clone()?;
        let epoch = {
            let mut st = self.lock();
            st.listings.clear();
            st.conn = Some(Conn { sealer: session.0, stream, buf: Vec::new() });
            st.flow.connect()
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
                    if !st.flow.current(epoch) {
                        return;
                    }
                    if let Some(c) = st.conn.as_mut().filter(|c| !c.buf.is_empty()) {
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
            if st.flow.epoch() != epoch {
                return;
            }
            match msg {
                ToPrimary::Applied { seq } => {
                    st.flow.applied(seq);
                }
                ToPrimary::Durable { seq } => {
                    let g = st.flow.durable(seq);
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
                    let mirror = st.flow.mirror();
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
    pub(crate) fn lose(&self, epoch: u64, reason: &str) {
        let lost = {
            let mut st = self.lock();
            let Some(lost) = st.flow.lose(epoch, reason) else { return };
            if let Some(c) = st.conn.take() {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
            self.cv.notify_all();
            lost
        };
        self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).secondary_gone();
        (self.hooks.log)(crate::engine::LogLevel::E, format!("Secondary disconnected: {}", lost.reason));
        if lost.secondary_lost {
            (self.hooks.event)(crate::engine::ReplicationEvent::SecondaryLost { reason: lost.reason });
        }
    }

    /// Drops whatever secondary is connected.
    pub(crate) fn drop_current(&self, reason: &str) {
        let e = self.lock().flow.epoch();
        self.lose(e, reason);
    }

    /// The current connection generation.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().flow.epoch()
    }

    /// The stream's counters now, for monitoring.
    pub(crate) fn stats(&self) -> StreamStats {
        self.lock().flow.stats(Instant::now())
    }
}
