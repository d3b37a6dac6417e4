//! The replication link's protocol state, without sockets, threads or
//! clocks: which connection is current, the global sequence numbers of what
//! was queued, applied and made durable by the secondary, the send window,
//! and what a lost connection or an expired wait means. [`super::Link`]
//! wraps it with the I/O and the waiting; everything it decides is here,
//! where a unit test can reach it.
//!
//! Sequence numbers are global across connections (the dirty map compares
//! "last touched" with "durable on the secondary"); a secondary counts
//! frames from the start of its own connection, so its acknowledgements
//! are translated by the connection's base, and clamped: an acknowledgement
//! of a frame never sent counts only up to what was sent.

use std::collections::VecDeque;
use std::time::Instant;

/// Most bytes sent and not yet applied by the secondary before writers wait.
pub(crate) const WINDOW: u64 = 64 << 20;

/// A point in the stream: the connection it was sent on and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Connection generation.
    pub epoch: u64,
    /// Global sequence number.
    pub seq: u64,
}

/// Where a wait for the secondary stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// What was waited for happened.
    Done,
    /// Not yet; wait on.
    Pending,
    /// The connection it was sent on is gone: stop waiting.
    Gone,
    /// The deadline passed: the secondary must be dropped.
    Expired,
}

/// A connection that ended: why, and whether the engine must hear of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    /// For the module log ("Secondary disconnected: …").
    pub reason: String,
    /// The secondary was a complete mirror: the engine gets
    /// `SecondaryLost` (a secondary still reintegrating was not one).
    pub secondary_lost: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    epoch: u64,
    connected: bool,
    /// Last sequence number queued.
    seq: u64,
    applied: u64,
    durable: u64,
    /// `seq` when the current connection began.
    base: u64,
    /// Frames queued on the current connection.
    frames: u64,
    /// (seq, bytes sent up to and including it, when it was queued) not yet applied.
    inflight: VecDeque<(u64, u64, Instant)>,
    sent_bytes: u64,
    /// `sent_bytes` up to the last frame applied.
    applied_bytes: u64,
    mirror: bool,
}

impl Flow {
    /// A new connection replaces any old one; everything before it counts
    /// as applied and durable (the reintegration brings the secondary there).
    pub(crate) fn connect(&mut self) -> u64 {
        self.epoch += 1;
        self.connected = true;
        self.applied = self.seq;
        self.durable = self.seq;
        self.base = self.seq;
        self.frames = 0;
        self.inflight.clear();
        self.applied_bytes = self.sent_bytes;
        self.mirror = false;
        self.epoch
    }

    /// Ends connection `epoch` if it is the current one.
    pub(crate) fn lose(&mut self, epoch: u64, reason: &str) -> Option<Lost> {
        if epoch != self.epoch || !self.connected {
            return None;
        }
        self.connected = false;
        let secondary_lost = std::mem::take(&mut self.mirror);
        Some(Lost { reason: reason.to_string(), secondary_lost })
    }

    /// The reintegration of connection `epoch` completed: the secondary is
    /// now a mirror, whose loss the engine must hear of.
    pub(crate) fn set_mirror(&mut self, epoch: u64) {
        if self.epoch == epoch && self.connected {
            self.mirror = true;
        }
    }

    /// Bytes sent and not yet applied (every frame after the last one the
    /// secondary applied, in full).
    pub(crate) fn in_flight(&self) -> u64 {
        self.sent_bytes - self.applied_bytes
    }

    /// A writer may queue now; else it waits (or, past its deadline, the
    /// secondary is dropped: see [`Flow::window_wait`]).
    pub(crate) fn has_room(&self) -> bool {
        !self.connected || self.in_flight() < WINDOW
    }

    /// A writer waiting for room at `now`, until `deadline`.
    pub(crate) fn window_wait(&self, now: Instant, deadline: Instant) -> Wait {
        if self.has_room() {
            Wait::Done
        } else if now >= deadline {
            Wait::Expired
        } else {
            Wait::Pending
        }
    }

    /// A frame of `bytes` was queued at `now` on the current connection;
    /// `None` without one.
    pub(crate) fn queued(&mut self, bytes: u64, now: Instant) -> Option<Sent> {
        if !self.connected {
            return None;
        }
        self.frames += 1;
        self.seq += 1;
        self.sent_bytes += bytes;
        self.inflight.push_back((self.seq, self.sent_bytes, now));
        Some(Sent { epoch: self.epoch, seq: self.seq })
    }

    /// The secondary applied its frame `relative` (counted on its
    /// connection); returns the global sequence number it stands for.
    pub(crate) fn applied(&mut self, relative: u64) -> u64 {
        let g = self.global(relative);
        self.applied = self.applied.max(g);
        while let Some(&(_, bytes, _)) = self.inflight.front().filter(|f| f.0 <= g) {
            self.inflight.pop_front();
            self.applied_bytes = bytes;
        }
        g
    }

    /// The secondary made its frame `relative` durable; returns the global
    /// sequence number for the dirty map.
    pub(crate) fn durable(&mut self, relative: u64) -> u64 {
        let g = self.global(relative);
        self.durable = self.durable.max(g);
        g
    }

    fn global(&self, relative: u64) -> u64 {
        self.base.saturating_add(relative).min(self.seq)
    }

    /// A sync point waiting at `now` (until `deadline`) for `sent` to be applied.
    pub(crate) fn applied_wait(&self, sent: Sent, now: Instant, deadline: Instant) -> Wait {
        if sent.epoch != self.epoch || !self.connected {
            Wait::Gone
        } else if self.applied >= sent.seq {
            Wait::Done
        } else if now >= deadline {
            Wait::Expired
        } else {
            Wait::Pending
        }
    }

    /// A reply on connection `epoch` can still come.
    pub(crate) fn current(&self, epoch: u64) -> bool {
        epoch == self.epoch && self.connected
    }

    /// The current connection generation.
    pub(crate) const fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A secondary is receiving the stream.
    pub(crate) const fn connected(&self) -> bool {
        self.connected
    }

    /// The secondary is a complete mirror.
    pub(crate) const fn mirror(&self) -> bool {
        self.mirror
    }

    /// The sequence number the next frame will get.
    pub(crate) const fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// The last frame queued on the current connection.
    pub(crate) fn last_sent(&self) -> Option<Sent> {
        (self.connected && self.frames > 0).then_some(Sent { epoch: self.epoch, seq: self.seq })
    }

    /// The stream's counters at `now`, for monitoring.
    pub(crate) fn stats(&self, now: Instant) -> StreamStats {
        StreamStats {
            bytes: self.sent_bytes,
            frames: self.seq,
            in_flight: self.in_flight(),
            lag: self.inflight.front().map_or(std::time::Duration::ZERO, |f| now.saturating_duration_since(f.2)),
        }
    }
}

/// What the primary's stream did so far (every connection since the
/// replicator started) and where it stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamStats {
    /// Bytes queued for secondaries.
    pub bytes: u64,
    /// Frames (replicated operations, checkpoints, reintegration messages) queued.
    pub frames: u64,
    /// Bytes sent and not yet applied by the secondary.
    pub in_flight: u64,
    /// Age of the oldest frame the secondary has not applied yet (zero
    /// when it applied everything): how far behind the secondary is.
    pub lag: std::time::Duration,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn without_a_connection_nothing_is_queued_and_waits_end() {
        let mut f = Flow::default();
        assert_eq!(f.queued(10, Instant::now()), None);
        assert!(f.has_room(), "writers never wait for a secondary that is not there");
        let now = Instant::now();
        assert_eq!(f.applied_wait(Sent { epoch: 0, seq: 1 }, now, now + Duration::from_secs(1)), Wait::Gone);
        assert_eq!(f.last_sent(), None);
    }

    #[test]
    fn acknowledgements_are_counted_from_the_connection_start_and_clamped() {
        let mut f = Flow::default();
        let e1 = f.connect();
        for _ in 0..3 {
            f.queued(100, Instant::now());
        }
        assert_eq!(f.lose(e1, "cut").map(|l| l.secondary_lost), Some(false), "a secondary that never finished is not a mirror");
        let e2 = f.connect();
        assert_eq!(e2, e1 + 1);
        let s = f.queued(100, Instant::now()).unwrap();
        assert_eq!(s, Sent { epoch: e2, seq: 4 }, "sequence numbers go on across connections");
        assert_eq!(f.applied(1), 4, "the new secondary's first frame is global 4");
        assert_eq!(f.durable(1_000), 4, "an acknowledgement beyond what was sent counts up to what was sent");
        let now = Instant::now();
        assert_eq!(f.applied_wait(s, now, now), Wait::Done);
    }

    #[test]
    fn a_wait_on_an_old_connection_is_gone_and_a_late_one_expires() {
        let mut f = Flow::default();
        let e = f.connect();
        let s = f.queued(10, Instant::now()).unwrap();
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        assert_eq!(f.applied_wait(s, now, later), Wait::Pending);
        assert_eq!(f.applied_wait(s, later, later), Wait::Expired, "locktimeout: the secondary is dropped");
        f.lose(e, "locktimeout");
        f.connect();
        assert_eq!(f.applied_wait(s, now, later), Wait::Gone, "a frame of a dropped connection is never acknowledged");
        assert_eq!(f.lose(e, "late"), None, "losing an old connection again does nothing");
    }

    #[test]
    fn the_window_holds_writers_until_the_secondary_applies() {
        let mut f = Flow::default();
        f.connect();
        let big = WINDOW / 2;
        let first = f.queued(big, Instant::now()).unwrap();
        f.queued(big, Instant::now()).unwrap();
        assert_eq!(f.in_flight(), WINDOW);
        let now = Instant::now();
        assert!(!f.has_room());
        assert_eq!(f.window_wait(now, now + Duration::from_secs(1)), Wait::Pending);
        assert_eq!(f.window_wait(now, now), Wait::Expired, "sendtimeout: the secondary does not read");
        f.applied(first.seq);
        assert_eq!(f.in_flight(), big);
        assert_eq!(f.window_wait(now, now), Wait::Done);
    }

    #[test]
    fn only_the_loss_of_a_mirror_reaches_the_engine_and_only_once() {
        let mut f = Flow::default();
        let e = f.connect();
        f.set_mirror(e + 1);
        assert!(!f.mirror(), "a completion of another connection does not count");
        f.set_mirror(e);
        assert!(f.mirror());
        let lost = f.lose(e, "replication stream: reset").unwrap();
        assert!(lost.secondary_lost);
        assert_eq!(lost.reason, "replication stream: reset");
        assert_eq!(f.lose(e, "again"), None);
        assert!(!f.mirror());
        f.set_mirror(e);
        assert!(!f.mirror(), "a lost connection cannot become a mirror");
    }

    #[test]
    fn the_stats_count_every_frame_and_the_lag_is_the_oldest_unapplied_one() {
        let mut f = Flow::default();
        let t0 = Instant::now();
        f.connect();
        let first = f.queued(100, t0).unwrap();
        f.queued(50, t0 + Duration::from_millis(30)).unwrap();
        let at = t0 + Duration::from_millis(100);
        let s = f.stats(at);
        assert_eq!((s.bytes, s.frames, s.in_flight), (150, 2, 150));
        assert_eq!(s.lag, Duration::from_millis(100), "the first frame waits since t0");
        f.applied(first.seq);
        assert_eq!(f.stats(at).lag, Duration::from_millis(70), "now the second one is the oldest");
        assert_eq!(f.stats(at).in_flight, 50);
        f.applied(2);
        let s = f.stats(at);
        assert_eq!((s.lag, s.in_flight, s.bytes, s.frames), (Duration::ZERO, 0, 150, 2), "totals stay, nothing waits");
    }
}
