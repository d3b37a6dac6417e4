//! The simulation's clock: the event loop that advances simulated time, and
//! the stalls that hold a node's inputs and release them in a burst (as a
//! paused runtime reads its socket backlog when it wakes).

use crate::engine::Automaton as _;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::{Event, Queued, SimCluster};
use crate::engine::{Input, MirrorEngine, Readiness, State, Status};

impl SimCluster {
    /// When node `n`'s engine may next be called: its deadline, or the end
    /// of its stall, whichever is later.
    pub(super) fn engine_due(&self, i: usize) -> Option<Instant> {
        let t = self.nodes[i].engine.as_ref().and_then(MirrorEngine::poll_timeout)?;
        Some(self.nodes[i].stalled_until.map_or(t, |u| t.max(u)))
    }

    /// A stalled node whose stall is over wakes as the runtime does: the
    /// engine hears of the stall, then every heartbeat that waited.
    pub(super) fn wake_if_stalled(&mut self, n: usize) -> bool {
        let Some(until) = self.nodes[n].stalled_until else { return false };
        if self.now < until {
            return false;
        }
        self.nodes[n].stalled_until = None;
        // The engine only logs the lag; the real runtime measures it.
        let lag = self.cfg.timeout;
        self.trace.push(format!("{:?} {} wakes from a stall", self.elapsed(), self.nodes[n].name));
        self.input(n, Input::Stalled { lag });
        let mut kept = BinaryHeap::new();
        let mut burst = Vec::new();
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.0 <= self.now && matches!(&q.2, Event::Deliver { to, .. } if *to == n) {
                burst.push(q.2);
            } else {
                kept.push(Reverse(q));
            }
        }
        self.queue = kept;
        for ev in burst {
            self.event(ev);
        }
        true
    }

    /// True if `ev` is for a node that is stalled now (it waits).
    pub(super) fn held_by_stall(&self, ev: &Event) -> bool {
        let node = match ev {
            Event::Deliver { to, .. } => *to,
            Event::Script { node, .. }
            | Event::Effect { node, .. }
            | Event::Witness { node, .. }
            | Event::Reintegrated { node, .. }
            | Event::Resource { node, .. }
            | Event::SecondaryLost { node, .. }
            | Event::Admin { node, .. } => *node,
            Event::Write => return false,
        };
        self.nodes[node].stalled_until.is_some_and(|u| self.now < u)
    }

    /// Runs the simulation for `d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1_000_000 {
            let stall_end = self.nodes.iter().filter_map(|n| n.stalled_until).min();
            let next_q = self.queue.peek().map(|Reverse(q)| q.0);
            let next_e = (0..2).filter_map(|i| self.engine_due(i)).chain(stall_end).min();
            let next = [next_q, next_e].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let woke = self.wake_if_stalled(0) | self.wake_if_stalled(1);
                    if woke {
                        continue;
                    }
                    if next_q == Some(t) {
                        let Some(Reverse(Queued(at, q, ev))) = self.queue.pop() else {
                            break;
                        };
                        if self.held_by_stall(&ev) {
                            // Re-queued at the end of the stall, in order.
                            let until = match &ev {
                                Event::Deliver { to, .. } => self.nodes[*to].stalled_until,
                                _ => self.engine_due_stall(&ev),
                            };
                            self.queue.push(Reverse(Queued(until.unwrap_or(at).max(at), q, ev)));
                            continue;
                        }
                        self.event(ev);
                    } else {
                        for i in 0..2 {
                            let due = self.engine_due(i).is_some_and(|x| x <= self.now);
                            if due {
                                let now = self.now;
                                if let Some(e) = self.nodes[i].engine.as_mut() {
                                    e.handle_timeout(now);
                                }
                                self.drain(i);
                            }
                        }
                    }
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        self.violations.push("simulation did not advance (event storm)".into());
    }

    /// Runs until the pair is PRIM Ready + SECOND Ready (true) or `limit` passes.
    pub fn run_until_pair(&mut self, limit: Duration) -> bool {
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < limit {
            if self.is_pair() {
                return true;
            }
            self.run_for(step);
            waited += step;
        }
        self.is_pair()
    }

    pub(super) fn is_pair(&self) -> bool {
        let s: Vec<Option<Status>> = (0..2).map(|i| self.status(i)).collect();
        let prim = Some(Status::new(State::Prim, Readiness::Ready));
        let second = Some(Status::new(State::Second, Readiness::Ready));
        (s[0] == prim && s[1] == second) || (s[0] == second && s[1] == prim)
    }

    pub(super) fn engine_due_stall(&self, ev: &Event) -> Option<Instant> {
        match ev {
            Event::Script { node, .. }
            | Event::Effect { node, .. }
            | Event::Witness { node, .. }
            | Event::Reintegrated { node, .. }
            | Event::Resource { node, .. }
            | Event::SecondaryLost { node, .. }
            | Event::Admin { node, .. } => self.nodes[*node].stalled_until,
            _ => None,
        }
    }
}
