//! Handling of the engine's inputs: heartbeats, network loss, resources,
//! replication events, witness answers, and the ALONE generation tick.

use std::time::Instant;

use super::super::rules::{RuleVerb, View};
use super::marks::{self, StopThen};
use super::{Intent, MirrorEngine, Phase, SecondPhase, WaitReason, WitnessFor};
use crate::engine::{
    Action, Command, CommandKind, Heartbeat, LogLevel, Readiness, ReplicationEvent, ResourceState, RunId, State, SwapKind,
};

impl MirrorEngine {
    pub(super) fn on_heartbeat(&mut self, lan: usize, hb: Heartbeat) {
        if lan >= self.lans.len() || hb.node != self.core.cfg.peer {
            self.core.log(LogLevel::D, format!("heartbeat from unexpected node '{}' on network {lan} dropped", hb.node));
            return;
        }
        let newer =
            self.peer.as_ref().is_none_or(|p| hb.incarnation > p.incarnation || (hb.incarnation == p.incarnation && hb.seq > p.seq));
        let was_live = self.any_lan_up();
        let l = &mut self.lans[lan];
        l.last_rx = Some(self.core.now);
        if !l.up {
            l.up = true;
            self.witness_asked = false;
            self.witness_cleared = false;
            let ident = self.core.cfg.lans.get(lan).map_or_else(|| "default".to_string(), |c| c.ident.clone());
            self.core.log(LogLevel::E, format!("Resource heartbeat.{ident} set to up by heart"));
        }
        if !was_live {
            // Heard again after a loss: what arrives first may have been
            // queued during the cut. Decisions wait for a report that
            // answers a heartbeat we send from now on.
            self.require_fresh();
        }
        if newer && hb.data.version() > self.p.version() && self.p.uptodate && !self.primary_active() {
            // The peer wrote data we do not have: ours is no longer the newest,
            // even if the peer stops before we start again.
            self.p.uptodate = false;
            self.core.emit(Action::Persist(self.p.clone()));
        }
        if newer {
            if hb.hears_peer {
                self.trust.peer_deaf_since = None;
            } else if self.trust.peer_deaf_since.is_none() {
                self.trust.peer_deaf_since = Some(self.core.now);
            }
            let changed = !was_live || self.peer.as_ref().is_none_or(|p| p.status != hb.status);
            if changed {
                self.core.log(LogLevel::E, format!("Remote state {}", hb.status));
            }
            // What `remote.` resources read: the peer's list, or unknown when it stops.
            let resources_changed = changed || self.peer.as_ref().is_none_or(|p| p.resources != hb.resources);
            self.reannounce_if_released(&hb, was_live);
            self.peer = Some(hb);
            if resources_changed {
                self.evaluate_rules(true);
            }
        }
    }

    /// Neighbours may still send to the other node's MAC: after a heal, and
    /// whenever the peer stops holding primary resources, a node holding the
    /// VIP announces it again (gratuitous ARP / unsolicited NA).
    fn reannounce_if_released(&mut self, hb: &Heartbeat, was_live: bool) {
        let serving = matches!(self.phase, Phase::Alone { .. } | Phase::Prim | Phase::AskingWitness { .. });
        // Heard again after a loss (not a first contact), or it stopped holding them.
        let released = !hb.primary_active && ((!was_live && self.peer.is_some()) || self.trust.peer_was_primary);
        self.trust.peer_was_primary = hb.primary_active;
        if serving && self.held.vip && released {
            let why = if was_live { "the other node released it" } else { "the other node is heard again" };
            self.core.log(LogLevel::E, format!("Virtual IP announced again: {why}"));
            self.change_vip(true, false);
        }
    }

    /// The runtime could not run for `lag`: heartbeat deadlines that expired
    /// meanwhile say nothing about the peer (its heartbeats may be waiting
    /// in our socket). Every network heard before the stall gets a whole
    /// timeout again, and decisions wait for a report sent after it.
    pub(super) fn on_stall(&mut self, lag: std::time::Duration) {
        self.core.log(LogLevel::E, format!("Local stall of {} ms detected: heartbeat deadlines restarted", lag.as_millis()));
        for l in &mut self.lans {
            if l.up {
                l.last_rx = Some(self.core.now);
            }
        }
        if self.start.listen_until.is_some() {
            self.start.listen_until = Some(self.core.now + self.listen_window());
        }
        self.trust.peer_deaf_since = None;
        self.require_fresh();
        let timeout = self.core.cfg.lans.iter().map(|l| l.timeout).max().unwrap_or_default();
        self.trust.stall_hold = self.any_lan_up().then_some(self.core.now + timeout);
        // Our next heartbeat is what a fresh report must have heard.
        self.send_heartbeat();
    }

    pub(super) fn lan_down(&mut self, lan: usize) {
        if !self.lans[lan].up {
            return;
        }
        self.lans[lan].up = false;
        let ident = self.core.cfg.lans.get(lan).map_or_else(|| "default".to_string(), |c| c.ident.clone());
        self.core.log(LogLevel::E, format!("Resource heartbeat.{ident} set to down by heart"));
        if !self.any_lan_up() {
            self.trust.peer_deaf_since = None;
            self.core.log(LogLevel::E, "Remote state UNKNOWN Unknown");
            // Every remote. resource is unknown now.
            self.evaluate_rules(true);
        }
    }

    /// An effect ended. A VIP that could not be set is a local failure:
    /// this node must not go on as primary believing it serves the address.
    /// It stops and starts again (the peer, if it is SECOND, takes over),
    /// counted by the loop guard, so a node that keeps failing ends STOP
    /// (maxloop). A VIP that could not be removed is logged; the stop goes on
    /// and removing it is tried again at the next stop.
    pub(super) fn on_effect_done(&mut self, run: RunId, result: Result<(), String>) {
        if self.held.quarantine_run == Some(run) {
            self.held.quarantine_run = None;
            let awaited = self.core.seq.complete(run);
            match result {
                Ok(()) => {
                    self.p.quarantine = false;
                    self.core.emit(Action::Persist(self.p.clone()));
                }
                // The copy would overwrite what this node wrote alone:
                // stop instead, still owing the quarantine to the next start.
                Err(why) if awaited => {
                    self.core.log(LogLevel::C, format!("Local changes not kept aside: {why}; not reintegrating over them"));
                    let _ = self.apply_command(Command::by(CommandKind::Stop, "rfs"));
                }
                Err(why) => self.core.log(LogLevel::C, format!("Local changes not kept aside: {why}")),
            }
            return;
        }
        let vip = self.held.vip_run.filter(|(r, _)| *r == run).map(|(_, on)| on);
        if vip.is_some() {
            self.held.vip_run = None;
        }
        let awaited = self.core.seq.complete(run);
        let Err(why) = result else { return };
        let what = match vip {
            Some(true) => "set",
            Some(false) => "removed",
            None => "announced again",
        };
        self.core.log(LogLevel::C, format!("Virtual IP not {what}: {why}"));
        // A late answer (after a forcestop took the wait away) decides nothing.
        if vip == Some(true) && awaited {
            let _ = self.apply_command(Command::by(CommandKind::Stopstart, "vip"));
        }
    }

    /// The module stops: a role this node could not remember after a crash
    /// is not one it may hold (its peer takes over if it can). A failure
    /// while stopping only adds a log line.
    pub(super) fn on_persist_failed(&mut self, reason: &str) {
        self.core.log(LogLevel::C, format!("State not saved: {reason}"));
        if self.phase != Phase::Stopped && !self.held.stop_in_progress {
            let _ = self.apply_command(Command::by(CommandKind::Stop, "heart"));
        }
    }

    pub(super) fn on_resource(&mut self, name: String, state: ResourceState, by: &str) {
        if self.core.record_resource(name, state, by) {
            self.evaluate_rules(true);
        }
    }

    /// Runs the failover machine (see [`super::super::rules`]) and queues
    /// what its rules fire.
    pub(super) fn evaluate_rules(&mut self, changed: bool) {
        if self.phase == Phase::Stopped {
            return;
        }
        let remote = self.live_peer().filter(|h| h.status.state != State::Stop).map(|h| h.resources.clone());
        let view = View { local: &self.core.resources, remote: remote.as_ref() };
        for (label, verb) in self.core.rules.evaluate(self.core.now, &view, &self.held.checkers, changed) {
            let kind = match verb {
                RuleVerb::Wait => {
                    self.pending.push_back(Intent::RuleWait(label));
                    continue;
                }
                RuleVerb::Restart => CommandKind::Restart,
                RuleVerb::Stopstart => CommandKind::Stopstart,
                RuleVerb::Stop => CommandKind::Stop,
                RuleVerb::Swap => CommandKind::Swap(SwapKind::Sync),
            };
            self.pending.push_back(Intent::Command(Command::by_rule(kind, &label)));
        }
    }

    pub(super) fn on_replication(&mut self, ev: ReplicationEvent) {
        match ev {
            ReplicationEvent::ReintegrationProgress { done, total, eta_secs } => {
                let at = self.core.now;
                // A retried reintegration starts counting again from zero.
                let first = match self.progress {
                    Some(p) if done >= p.done => p.first,
                    _ => (at, done),
                };
                self.progress = Some(super::Progress { done, total, eta: eta_secs, first, at });
            }
            ReplicationEvent::ReintegrationDone => {
                if self.phase == Phase::Second(SecondPhase::Reintegrating) {
                    self.progress = None;
                    self.reint_failures = 0;
                    self.reint_retry_at = None;
                    self.core.log(LogLevel::E, "Reintegration ended (synchronize)");
                    self.core.seq.extend(marks::second_ready_plan(self.peer_version()));
                    self.phase = Phase::Busy;
                }
            }
            ReplicationEvent::ReintegrationFailed { reason } => {
                if self.phase == Phase::Second(SecondPhase::Reintegrating) {
                    self.core.log(LogLevel::C, format!("Reintegration failed: {reason}"));
                    // Retried after a wait that doubles with each failure in a
                    // row: a cause that lasts (a full disk) costs one attempt
                    // every few minutes, not a copy loop.
                    self.reint_failures = self.reint_failures.saturating_add(1);
                    let wait =
                        std::time::Duration::from_secs(2u64 << (self.reint_failures - 1).min(8)).min(std::time::Duration::from_secs(300));
                    self.reint_retry_at = Some(self.core.now + wait);
                    self.core.log(
                        LogLevel::E,
                        format!("Next reintegration attempt in {} s ({} failed in a row)", wait.as_secs(), self.reint_failures),
                    );
                    let _ = self.apply_command(Command::by(CommandKind::Stopstart, "rfs"));
                }
            }
            ReplicationEvent::Degraded { reason } => {
                if matches!(self.phase, Phase::Prim | Phase::Alone { .. }) {
                    self.core.log(LogLevel::C, format!("Replication failure: {reason}"));
                    self.core.log(LogLevel::E, "Resource rfs.degraded set to up by nfsadmin");
                    self.degraded = true;
                    let via = matches!(self.phase, Phase::Alone { via_failover: true, .. });
                    if self.phase == Phase::Prim {
                        self.core.seq.extend(marks::prim_to_alone_plan(true, "degraded replication"));
                        self.phase = Phase::Busy;
                    } else {
                        self.phase = Phase::Alone { via_failover: via, degraded: true };
                        self.send_heartbeat();
                    }
                }
            }
            ReplicationEvent::SecondaryLost { reason } => {
                if self.phase == Phase::Prim {
                    self.core.log(LogLevel::C, format!("Secondary dropped: {reason}"));
                    if self.core.cfg.splitbrain {
                        // The replication link may be the first sign of a
                        // partition: only the witness may let us go on alone.
                        self.ask_witness(WitnessFor::PrimLostReplication);
                    } else if self.any_lan_up() {
                        // The peer may have taken over while this node could
                        // not reach it (a pause, a cut): writes the secondary
                        // lacks wait until a heartbeat sent after this one
                        // says the peer is not primary (see eval_prim).
                        self.core.log(LogLevel::E, "Waiting for the other node's answer before continuing alone");
                        self.secondary_lost = true;
                        self.require_fresh();
                        self.send_heartbeat();
                    } else {
                        self.core.seq.extend(marks::prim_to_alone_plan(false, "replication timeout"));
                        self.phase = Phase::Busy;
                    }
                }
            }
            ReplicationEvent::WroteAlone => {
                if self.primary_active() && !self.p.wrote_alone {
                    self.p.wrote_alone = true;
                    self.core.emit(Action::Persist(self.p.clone()));
                    self.send_heartbeat();
                }
            }
        }
    }

    pub(super) fn peer_version(&self) -> (u64, u64) {
        self.peer.as_ref().map_or(self.p.version(), |h| h.data.version())
    }

    pub(super) fn on_witness(&mut self, run: RunId, reachable: bool) {
        let Phase::AskingWitness { run: asked, why, resume } = self.phase.clone() else {
            return;
        };
        if asked != run {
            return;
        }
        if self.any_lan_up() && why != WitnessFor::PrimLostReplication {
            // The peer came back while we asked: nothing to decide.
            self.phase = *resume;
            return;
        }
        if reachable
            && matches!(why, WitnessFor::PrimLostPeer | WitnessFor::PrimLostReplication)
            && self.live_peer().is_some_and(|p| self.peer_wrote_newer(p))
        {
            // The witness says this node may go on, but the peer is heard
            // and holds writes this node lacks: the data decides.
            self.phase = *resume;
            self.yield_to_newer_data();
            return;
        }
        if reachable {
            self.core.log(LogLevel::E, "Resource splitbrain.uptodate set to up by splitbraincheck");
            match why {
                WitnessFor::PrimLostPeer => self.core.seq.extend(marks::prim_to_alone_plan(false, "no heartbeat")),
                WitnessFor::PrimLostReplication => self.core.seq.extend(marks::prim_to_alone_plan(false, "replication timeout")),
                WitnessFor::SecondLostPeer => self.core.seq.extend(marks::failover_plan("no heartbeat")),
                WitnessFor::AloneLostPeer => {
                    self.phase = *resume;
                    return;
                }
                WitnessFor::StartAlone => {
                    // Decide again, now allowed to go ALONE.
                    self.witness_cleared = true;
                    self.phase = *resume;
                    return;
                }
            }
        } else if why == WitnessFor::StartAlone {
            self.core.log(LogLevel::E, "Resource splitbrain.uptodate set to down by splitbraincheck");
            self.core.log(LogLevel::E, "Action wait from failover rule splitbrain_failure");
            self.core.seq.extend(marks::wait_plan(WaitReason::SplitBrain));
        } else {
            self.core.log(LogLevel::E, "Resource splitbrain.uptodate set to down by splitbraincheck");
            self.core.log(LogLevel::E, "Action wait from failover rule splitbrain_failure");
            self.p.uptodate = false;
            self.core.emit(Action::Persist(self.p.clone()));
            self.core.seq.extend(marks::lose_plan(crate::engine::ScriptAction::Stopwait, StopThen::Wait(WaitReason::SplitBrain)));
        }
        self.phase = Phase::Busy;
    }

    pub(super) fn tick_generation(&mut self, now: Instant) {
        let alone_ready = matches!(self.phase, Phase::Alone { .. }) && self.core.status.readiness == Readiness::Ready;
        let peer_following = self.live_peer().is_some_and(|h| h.status.state == State::Second);
        if !alone_ready || peer_following {
            self.next_gen_tick = None;
            return;
        }
        match self.next_gen_tick {
            None => self.next_gen_tick = Some(now + self.alone_tick()),
            Some(t) if now >= t => {
                self.p.gen += 1;
                self.core.emit(Action::Persist(self.p.clone()));
                self.next_gen_tick = Some(now + self.alone_tick());
            }
            Some(_) => {}
        }
    }
}
