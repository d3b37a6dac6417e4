//! The engine's word on writes the secondary will not have.
//!
//! A primary whose replication link is up never consults this gate: its
//! writes are on the secondary before they are acknowledged. Once the link
//! is gone, a write is this node's alone, and acknowledging it is safe only
//! if no other node has taken over meanwhile. The replication layer sees the
//! link drop first, the engine decides later (a fresh heartbeat from the
//! peer, the witness, or the loss of every heartbeat): until then such a
//! write waits here ([`UnreplicatedWrites::Hold`]); then it goes on
//! ([`UnreplicatedWrites::Admit`], the node is ALONE) or fails with EIO
//! ([`UnreplicatedWrites::Refuse`], the other node took over, so the
//! application's stop does not wait for writes that cannot count), or the
//! secondary comes back meanwhile and the write goes the replicated way
//! (a swap's new primary starts its application before its secondary
//! connects: its first writes waited here for good before that was
//! checked).

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::engine::{ReplicationEvent, UnreplicatedWrites};

#[derive(Debug)]
struct State {
    word: UnreplicatedWrites,
    /// Replication stopped on this node: waiting writes fail.
    closed: bool,
    /// `WroteAlone` was sent for the current ALONE episode.
    reported: bool,
}

/// What became of a write that waited at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// It may proceed without the secondary (ALONE).
    Alone,
    /// It fails (EIO): the other node took over, or replication stopped.
    Refused,
    /// The secondary is back: the caller goes the replicated way again.
    LinkUp,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct WriteGate {
    state: Mutex<State>,
    cv: Condvar,
}

impl Default for WriteGate {
    /// Admits: a replicator that no engine drives behaves like a plain mirror.
    fn default() -> Self {
        Self { state: Mutex::new(State { word: UnreplicatedWrites::Admit, closed: false, reported: true }), cv: Condvar::new() }
    }
}

impl WriteGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The engine's decision.
    pub(crate) fn set(&self, word: UnreplicatedWrites) {
        let mut s = self.lock();
        if word == UnreplicatedWrites::Admit {
            // The engine admits once per ALONE episode: its first write is
            // reported again.
            s.reported = false;
        }
        s.word = word;
        self.cv.notify_all();
    }

    /// Replication stops (`closed`) or starts again on this node.
    pub(crate) fn set_closed(&self, closed: bool) {
        self.lock().closed = closed;
        self.cv.notify_all();
    }

    /// Blocks while the engine holds unreplicated writes and `link_up`
    /// (polled every 100 ms) is false. `report` receives `WroteAlone` for
    /// the first admitted write of an ALONE episode.
    pub(crate) fn admit(&self, report: &dyn Fn(ReplicationEvent), link_up: &dyn Fn() -> bool) -> Admission {
        let mut s = self.lock();
        loop {
            if s.closed {
                return Admission::Refused;
            }
            match s.word {
                UnreplicatedWrites::Refuse => return Admission::Refused,
                UnreplicatedWrites::Admit => {
                    if !s.reported {
                        s.reported = true;
                        drop(s);
                        report(ReplicationEvent::WroteAlone);
                    }
                    return Admission::Alone;
                }
                UnreplicatedWrites::Hold => {
                    drop(s);
                    // The link's lock is never taken under the gate's.
                    if link_up() {
                        return Admission::LinkUp;
                    }
                    s = self.lock();
                    if s.word == UnreplicatedWrites::Hold && !s.closed {
                        s = self.cv.wait_timeout(s, Duration::from_millis(100)).map_or_else(|e| e.into_inner().0, |(g, _)| g);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn held_writes_wait_for_the_decision_and_the_first_alone_write_is_reported_once() {
        let g = Arc::new(WriteGate::default());
        let reports = Arc::new(AtomicUsize::new(0));
        g.set(UnreplicatedWrites::Hold);
        let (g2, r2) = (g.clone(), reports.clone());
        let waiter = std::thread::spawn(move || {
            g2.admit(
                &|_| {
                    r2.fetch_add(1, Ordering::SeqCst);
                },
                &|| false,
            )
        });
        std::thread::sleep(Duration::from_millis(150));
        assert!(!waiter.is_finished(), "a held write waits");
        g.set(UnreplicatedWrites::Admit);
        assert_eq!(waiter.join().ok(), Some(Admission::Alone), "admitted once the engine says ALONE");
        let again = g.admit(
            &|_| {
                reports.fetch_add(1, Ordering::SeqCst);
            },
            &|| false,
        );
        assert_eq!(again, Admission::Alone);
        assert_eq!(reports.load(Ordering::SeqCst), 1, "one report per ALONE episode");
    }

    #[test]
    fn refused_or_closed_writes_fail_at_once_even_while_waiting() {
        let g = Arc::new(WriteGate::default());
        g.set(UnreplicatedWrites::Hold);
        let g2 = g.clone();
        let waiter = std::thread::spawn(move || g2.admit(&|_| {}, &|| false));
        std::thread::sleep(Duration::from_millis(50));
        g.set(UnreplicatedWrites::Refuse);
        assert_eq!(waiter.join().ok(), Some(Admission::Refused), "a waiting write fails when the node lost");
        g.set(UnreplicatedWrites::Admit);
        g.set_closed(true);
        assert_eq!(g.admit(&|_| {}, &|| true), Admission::Refused, "no write once replication stopped");
        g.set_closed(false);
        assert_eq!(g.admit(&|_| {}, &|| false), Admission::Alone);
    }

    #[test]
    fn a_held_write_goes_on_when_the_secondary_comes_back() {
        let g = Arc::new(WriteGate::default());
        g.set(UnreplicatedWrites::Hold);
        let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g2, up2) = (g.clone(), up.clone());
        let waiter = std::thread::spawn(move || g2.admit(&|_| {}, &|| up2.load(Ordering::SeqCst)));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!waiter.is_finished(), "held while neither the engine nor the link says anything");
        up.store(true, Ordering::SeqCst);
        assert_eq!(waiter.join().ok(), Some(Admission::LinkUp), "the write takes the replicated way again");
    }
}
