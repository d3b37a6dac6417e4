//! How the simulated world carries out the engines' actions (fake scripts,
//! replication, VIP, network) and checks the invariants after each event.

use crate::engine::Automaton as _;
use std::collections::BTreeSet;
use std::time::Duration;

use super::{Event, SimCluster};
use crate::engine::{Action, Input, Readiness, ReplicaRole, ReplicationEvent, ResourceState, State, Status, UnreplicatedWrites};

impl SimCluster {
    pub(super) fn app_running(&self, n: usize) -> bool {
        self.nodes[n].vip
            && self.nodes[n].engine.as_ref().is_some_and(|e| {
                let s = e.status();
                s.readiness == Readiness::Ready && matches!(s.state, State::Alone | State::Prim)
            })
    }

    pub(super) fn write(&mut self) {
        let running: Vec<usize> = (0..2).filter(|&n| self.app_running(n) && self.clients.is_none_or(|c| c == n)).collect();
        // Writes made while both run, or while the nodes are cut from each
        // other, may legitimately be lost by split-brain recovery (without a
        // witness that is SafeKit's documented behaviour).
        let partitioned = self.cut.iter().any(|side| side.iter().all(|c| *c)) && self.nodes.iter().all(|n| n.engine.is_some());
        let split = running.len() == 2 || partitioned || self.diverged;
        for n in running {
            let prim = self.nodes[n].engine.as_ref().is_some_and(|e| e.status().state == State::Prim);
            if prim && !self.session {
                continue; // blocked until the secondary is dropped
            }
            if !self.session && self.nodes[n].gate != UnreplicatedWrites::Admit {
                continue; // held (or refused) by the engine
            }
            if self.nodes[n].stalled_until.is_some() {
                continue; // a paused node answers nobody
            }
            let id = self.next_write;
            self.next_write += 1;
            self.nodes[n].data.insert(id);
            let p = 1 - n;
            if self.session && self.nodes[p].repl == Some(ReplicaRole::Secondary) && !self.cut[n][0] {
                self.nodes[p].data.insert(id);
            }
            if !split {
                self.required.insert(id);
            }
            self.trace.push(format!("{:?} {} write {id}{}", self.elapsed(), self.nodes[n].name, if split { " (split)" } else { "" }));
            if !self.session {
                self.at_risk.push(id);
                self.nodes[n].alone_writes.insert(id);
                if !self.nodes[n].reported {
                    self.nodes[n].reported = true;
                    self.input(n, Input::Replication(ReplicationEvent::WroteAlone));
                }
            }
        }
    }

    /// A running checker reports what it finds, a moment later.
    pub(super) fn report_check(&mut self, n: usize, check: usize) {
        if !self.cfg.checkers || !self.nodes[n].classes.contains(&super::CHECKERS[check].1) {
            return;
        }
        let state = if self.nodes[n].checks[check] { ResourceState::Up } else { ResourceState::Down };
        let inc = self.nodes[n].incarnation;
        // A fixed delay keeps one checker's reports in order, as a real one's are.
        self.schedule(Duration::from_millis(20), Event::Resource { node: n, incarnation: inc, check, state });
    }

    pub(super) fn action(&mut self, n: usize, a: Action) {
        let inc = self.nodes[n].incarnation;
        match a {
            Action::RunScript(r) => {
                self.trace.push(format!("{:?} {} script {:?}", self.elapsed(), self.nodes[n].name, r.args()));
                let max = u64::try_from(self.cfg.max_script.as_millis()).unwrap_or(100);
                let d = Duration::from_millis(self.rng.range(1, max.max(1)));
                self.schedule(d, Event::Script { node: n, incarnation: inc, run: r.run });
            }
            Action::CancelScript(_) => {}
            Action::EnableCheckers(c) => {
                self.nodes[n].classes.insert(c);
                for (i, _) in super::CHECKERS.iter().enumerate().filter(|(_, (_, class))| *class == c) {
                    self.report_check(n, i);
                }
            }
            Action::DisableCheckers(c) => {
                self.nodes[n].classes.remove(&c);
                for (i, _) in super::CHECKERS.iter().enumerate().filter(|(_, (_, class))| *class == c) {
                    self.schedule(
                        Duration::from_millis(20),
                        Event::Resource { node: n, incarnation: inc, check: i, state: ResourceState::Init },
                    );
                }
            }
            Action::QuarantineLocalChanges(run) => {
                self.trace.push(format!("{:?} {} quarantine", self.elapsed(), self.nodes[n].name));
                self.schedule(Duration::from_millis(5), Event::Effect { node: n, incarnation: inc, run, off: false });
            }
            Action::SetVip(run) | Action::RemoveVip(run) => {
                let off = matches!(a, Action::RemoveVip(_));
                if !off {
                    self.nodes[n].vip = true;
                }
                let max = u64::try_from(self.cfg.max_script.as_millis()).unwrap_or(100);
                let d = Duration::from_millis(self.rng.range(1, max.max(1)));
                self.schedule(d, Event::Effect { node: n, incarnation: inc, run, off });
            }
            Action::StartReplication(role) => self.nodes[n].repl = Some(role),
            Action::StopReplication => {
                self.nodes[n].repl = None;
                self.nodes[n].reint = None;
                self.break_session();
            }
            Action::DropSecondary => self.session = false,
            Action::UnreplicatedWrites(w) => {
                if w == UnreplicatedWrites::Admit {
                    self.nodes[n].reported = false;
                }
                self.nodes[n].gate = w;
            }
            Action::StartReintegration(_) => {
                let p = 1 - n;
                if self.nodes[p].repl == Some(ReplicaRole::Primary) && !self.cut[p][0] && !self.cut[n][0] {
                    self.session = true;
                    self.at_risk.clear();
                }
                self.token += 1;
                self.nodes[n].reint = Some(self.token);
                let t = self.token;
                let d = self.cfg.reintegration;
                self.schedule(d, Event::Reintegrated { node: n, token: t });
            }
            Action::CheckWitness(run) => self.schedule(Duration::from_millis(50), Event::Witness { node: n, incarnation: inc, run }),
            Action::Persist(p) => {
                self.trace.push(format!(
                    "{:?} {} persist gen={} uptodate={} partial={} last_role={:?} running={}",
                    self.elapsed(),
                    self.nodes[n].name,
                    p.gen,
                    p.uptodate,
                    p.partial,
                    p.last_role,
                    p.running
                ));
                self.nodes[n].persisted = p;
            }
            Action::SendHeartbeat(hb) => {
                let to = 1 - n;
                for lan in 0..self.cfg.lans {
                    if self.cut[n][lan] || self.rng.chance(self.cfg.loss_ppm) {
                        continue;
                    }
                    let d = Duration::from_millis(self.rng.range(1, 5));
                    self.schedule(d, Event::Deliver { to, lan, incarnation: inc, hb: Box::new(hb.clone()) });
                }
            }
            Action::Log { level, message } => self.trace.push(format!("{:?} {} {level:?} {message}", self.elapsed(), self.nodes[n].name)),
            Action::StateChanged { from, to } => {
                self.trace.push(format!("{:?} {} {from} -> {to}", self.elapsed(), self.nodes[n].name));
                let promoted = matches!(to.state, State::Alone | State::Prim) && !matches!(from.state, State::Alone | State::Prim);
                let other_primary = self.nodes[1 - n].vip || self.nodes[1 - n].repl == Some(ReplicaRole::Primary);
                if promoted && self.nodes[n].forced {
                    // The administrator chose this node's data (once: the
                    // forced start is over when the node is primary). Forcing
                    // it while the other node is primary makes a split brain
                    // that the engine resolves in favour of the forced data.
                    self.nodes[n].forced = false;
                    if other_primary && self.nodes[1 - n].forced_primary {
                        // Both nodes were forced: the administrator chose twice.
                        self.diverged = true;
                    } else {
                        self.required = self.nodes[n].data.clone();
                        // If the other node is still primary, what it writes
                        // until it notices is outside the chosen history; if it
                        // is powered off, it cannot learn of this choice, so
                        // the two histories stand until the pair re-forms.
                        self.diverged = other_primary || self.nodes[1 - n].engine.is_none();
                    }
                    self.nodes[n].forced_primary = true;
                    self.episode_exempt = true;
                    return;
                }
                if promoted && other_primary {
                    let risk: BTreeSet<u64> = self.at_risk.iter().copied().collect();
                    self.required.retain(|w| !risk.contains(w));
                    self.diverged = true;
                }
                if promoted && !other_primary && !self.diverged {
                    let missing: Vec<u64> = self.required.difference(&self.nodes[n].data).copied().take(5).collect();
                    if !missing.is_empty() {
                        self.violations.push(format!(
                            "{:?}: {} became {to} without acknowledged writes {missing:?} (invariant b: stale primary)",
                            self.elapsed(),
                            self.nodes[n].name
                        ));
                    }
                }
                if to.state == State::Stop {
                    self.nodes[n].forced = false;
                }
                if to.state != State::Alone {
                    // Leaving the primary role, or PRIM: a secondary synchronised
                    // from it, so the forced choice is settled.
                    self.nodes[n].forced_primary = false;
                }
            }
        }
    }

    pub(super) fn check(&mut self) {
        if self.is_pair() {
            // (e) When only one side acknowledged writes without its peer,
            // the pair that forms again keeps them all.
            let p = usize::from(self.status(1).is_some_and(|s| s.state == State::Prim));
            let wrote: Vec<usize> = (0..2).filter(|&n| !self.nodes[n].alone_writes.is_empty()).collect();
            if !self.episode_exempt && wrote.len() == 1 {
                let w = wrote[0];
                let lost: Vec<u64> = self.nodes[w].alone_writes.difference(&self.nodes[p].data).copied().take(5).collect();
                if !lost.is_empty() {
                    self.violations.push(format!(
                        "{:?}: {} alone acknowledged writes {lost:?} and the other node wrote nothing, yet they are lost (invariant e)",
                        self.elapsed(),
                        self.nodes[w].name
                    ));
                }
            }
            for n in &mut self.nodes {
                n.alone_writes.clear();
            }
            self.episode_exempt = false;
        }
        if self.diverged && self.is_pair() {
            // Converged again: what the primary holds is the history now.
            self.diverged = false;
            let p = usize::from(self.status(1).is_some_and(|s| s.state == State::Prim));
            self.required = self.nodes[p].data.clone();
        }
        let settle = self.cfg.timeout * 2 + self.cfg.max_script * 30 + self.cfg.reintegration;
        let flowing = self.cut.iter().all(|side| side.iter().any(|c| !c)) && self.nodes.iter().all(|n| n.engine.is_some());
        if flowing && self.now - self.disturbed > settle && self.nodes[0].vip && self.nodes[1].vip {
            self.violations.push(format!("{:?}: both nodes hold the VIP while heartbeats flow (invariant a)", self.elapsed()));
        }
        // Both serving as ALONE (Ready). With a ping witness the loser's stop
        // and the winner's start can overlap while their scripts run; a lease
        // witness (issue 5) closes that window too.
        let alone = (0..2).all(|i| self.status(i) == Some(Status::new(State::Alone, Readiness::Ready)));
        let since = *self.both_alone_since.get_or_insert(self.now);
        if !alone {
            self.both_alone_since = None;
        }
        // The two nodes detect the loss up to a pulse (plus packets in flight)
        // apart, and the loser stops its application while the winner starts
        // its own: a ping witness cannot remove that overlap (a lease can,
        // issue 5), so what is checked is that it never outlasts the settle
        // time (detection skew, witness check, stop scripts).
        if alone && self.nodes[0].witness != self.nodes[1].witness && self.now - since > settle {
            self.witness_one_sided = true;
        }
        self.violations.dedup();
    }
}
