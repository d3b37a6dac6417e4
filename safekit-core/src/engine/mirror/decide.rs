//! Level-triggered decisions of the mirror automaton and command checks.

use std::cmp::Ordering;

use super::super::rules::View;
use super::super::{Heartbeat, LogLevel, Readiness, Role, ScriptAction, State, Status, SwapKind, SyncMode};
use super::marks::{self, StopThen};
use super::{Force, MirrorEngine, Phase, SecondPhase, WaitReason, WitnessFor};
use crate::engine::DefaultPrim;

/// Who should become primary when both nodes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leader {
    Me,
    Peer,
    /// Nobody knows: first start, or both partially synchronised.
    Nobody,
}

/// Compares data currency: newer generation first, then the node that was
/// primary, then the one that believes it is uptodate, then the lower name.
pub(crate) fn leader(me: &str, mine: &super::DataStatus, peer: &str, theirs: &super::DataStatus) -> Leader {
    match (mine.partial, theirs.partial) {
        (true, true) => return Leader::Nobody,
        (true, false) => return Leader::Peer,
        (false, true) => return Leader::Me,
        _ => {}
    }
    if mine.version() == (0, 0) && theirs.version() == (0, 0) {
        return Leader::Nobody;
    }
    if mine.epoch == theirs.epoch && mine.wrote_alone != theirs.wrote_alone {
        // Only one of them acknowledged writes the other lacks since it
        // last went ALONE: its data is the newer, however long the other
        // stayed ALONE (generations tick with time, not with writes).
        return if mine.wrote_alone { Leader::Me } else { Leader::Peer };
    }
    let rank = |d: &super::DataStatus| {
        (d.version(), d.last_role.is_some_and(Role::is_primary), d.last_role == Some(Role::AloneAfterFailover), d.uptodate)
    };
    match rank(mine).cmp(&rank(theirs)) {
        Ordering::Greater => Leader::Me,
        Ordering::Less => Leader::Peer,
        Ordering::Equal => {
            if me < peer {
                Leader::Me
            } else {
                Leader::Peer
            }
        }
    }
}

/// What a starting node does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Keep listening (WAIT Transient).
    Hold,
    Alone {
        full_sync_required: bool,
        forced: bool,
    },
    PrimResume,
    Second(SyncMode),
    Wait(WaitReason),
    Abort(&'static str),
    /// Ask the witness before going ALONE without having heard the peer.
    AskWitness,
}

impl MirrorEngine {
    /// One decision once no plan runs; true if something was queued.
    pub(super) fn decide(&mut self) -> bool {
        if let Some(until) = self.trust.stall_hold {
            if self.core.now < until && self.any_lan_up() && !self.peer_fresh() {
                return false;
            }
            self.trust.stall_hold = None;
        }
        if let Some(intent) = self.pending.pop_front() {
            self.run_intent(intent);
            return true;
        }
        match self.phase.clone() {
            Phase::Stopped | Phase::Busy | Phase::AskingWitness { .. } => false,
            Phase::Starting { force } => {
                let mut d = self.decide_start(force);
                if matches!(d, Decision::Second(_)) && self.reint_retry_at.is_some_and(|t| self.core.now < t) {
                    // The last reintegrations failed: wait before the next.
                    d = Decision::Hold;
                }
                if matches!(d, Decision::Wait(WaitReason::Rule(_))) {
                    self.start.rule_held_force = force;
                }
                self.apply_decision(d, false)
            }
            Phase::Waiting(reason) => self.recheck_wait(&reason),
            Phase::Alone { degraded, .. } => self.eval_alone(degraded, self.p.last_role == Some(Role::AloneAfterFailover)),
            Phase::Prim => self.eval_prim(),
            Phase::Second(s) => self.eval_second(s),
        }
    }

    pub(super) fn queue(&mut self, steps: Vec<marks::Step>) -> bool {
        self.core.seq.extend(steps);
        self.phase = Phase::Busy;
        true
    }

    fn wait_rules(&self) -> (bool, Option<String>) {
        let remote = self.live_peer().filter(|h| h.status.state != State::Stop).map(|h| &h.resources);
        self.core.rules.waiting(&View { local: &self.core.resources, remote }, &self.held.checkers)
    }

    fn can_start_alone(&self) -> bool {
        self.p.uptodate && !self.p.partial && self.p.gen > 0 && (!self.unclean || self.p.last_role.is_some_and(Role::is_alone))
    }

    fn sync_mode(&self, peer: &Heartbeat, fullsync: bool) -> SyncMode {
        if fullsync || peer.full_sync_required || self.p.need_full_sync || self.p.gen == 0 {
            SyncMode::Full
        } else {
            SyncMode::Zones
        }
    }

    fn decide_start(&self, force: Option<Force>) -> Decision {
        let (init, down) = self.wait_rules();
        if let Some(label) = down {
            return Decision::Wait(WaitReason::Rule(label));
        }
        if init {
            return Decision::Hold;
        }
        let peer = self.live_peer().cloned();
        let listening = self.start.listen_until.is_some();
        match force {
            Some(Force::Prim { fullsync }) => {
                if self.peer_primary() {
                    return Decision::Abort("Requested prim start aborted: the other node is primary");
                }
                return Decision::Alone { full_sync_required: fullsync, forced: true };
            }
            Some(Force::Primforce) => {
                if self.peer_primary() {
                    return Decision::Abort("Requested primforce start aborted: the other node is primary");
                }
                return Decision::Alone { full_sync_required: true, forced: true };
            }
            Some(Force::Second { fullsync }) => {
                return match peer {
                    Some(p) if p.primary_active => Decision::Second(self.sync_mode(&p, fullsync)),
                    _ if listening => Decision::Hold,
                    _ => Decision::Abort("Requested second start aborted: the other node is not primary"),
                };
            }
            None => {}
        }
        let Some(p) = peer else {
            if listening {
                return Decision::Hold;
            }
            if !self.p.failover && self.p.last_role == Some(Role::Second) {
                return Decision::Wait(WaitReason::FailoverOff);
            }
            if self.can_start_alone() {
                // Beyond SafeKit: going ALONE without hearing the peer could
                // be the other side of a partition; with a witness
                // configured, it must answer first.
                if self.core.cfg.splitbrain && !self.witness_cleared {
                    return Decision::AskWitness;
                }
                return Decision::Alone { full_sync_required: false, forced: false };
            }
            return Decision::Wait(if self.p.gen == 0 { WaitReason::FirstStart } else { WaitReason::NotUptodate });
        };
        if p.primary_active {
            return if matches!(p.status.state, State::Alone | State::Prim) {
                Decision::Second(self.sync_mode(&p, false))
            } else {
                Decision::Hold
            };
        }
        match p.status.state {
            State::Stop => {
                if !self.p.failover && self.p.last_role == Some(Role::Second) {
                    Decision::Wait(WaitReason::FailoverOff)
                } else if self.can_start_alone() {
                    Decision::Alone { full_sync_required: false, forced: false }
                } else {
                    Decision::Wait(if self.p.gen == 0 { WaitReason::FirstStart } else { WaitReason::NotUptodate })
                }
            }
            State::Wait => match leader(&self.core.cfg.node, &self.data_status(), &self.core.cfg.peer, &p.data) {
                Leader::Me => {
                    let resume = p.data.version() == self.p.version()
                        && self.p.last_role == Some(Role::Prim)
                        && p.data.last_role == Some(Role::Second)
                        && self.unclean
                        && p.data.unclean;
                    if resume {
                        Decision::PrimResume
                    } else {
                        Decision::Alone { full_sync_required: false, forced: false }
                    }
                }
                Leader::Peer => Decision::Wait(WaitReason::PeerLeads),
                Leader::Nobody => {
                    Decision::Wait(if self.p.gen == 0 && p.data.gen == 0 { WaitReason::FirstStart } else { WaitReason::NotUptodate })
                }
            },
            // A peer that is SECOND without being primary-active is handing
            // over in a swap or restarting: its next heartbeat will tell.
            _ => Decision::Hold,
        }
    }

    /// Applies a start decision; from WAIT (NotReady) a repeated wait changes nothing.
    fn apply_decision(&mut self, d: Decision, from_wait: bool) -> bool {
        match d {
            Decision::Hold => false,
            Decision::Wait(reason) => {
                if from_wait {
                    self.phase = Phase::Waiting(reason);
                    return false;
                }
                self.queue(marks::wait_plan(reason))
            }
            Decision::Alone { full_sync_required, forced } => {
                if from_wait {
                    self.core.log(LogLevel::E, "Action wakeup from failover rule Implicit_wakeup");
                }
                self.queue(marks::alone_from_wait(full_sync_required, forced))
            }
            Decision::PrimResume => self.queue(marks::prim_from_wait()),
            Decision::Second(mode) => self.queue(marks::second_from_wait(mode)),
            Decision::Abort(msg) => {
                self.core.log(LogLevel::E, msg);
                self.queue(marks::stop_plan(ScriptAction::Stop, StopThen::Stop, false))
            }
            Decision::AskWitness => self.ask_witness(WitnessFor::StartAlone),
        }
    }

    fn recheck_wait(&mut self, reason: &WaitReason) -> bool {
        match reason {
            WaitReason::Rule(_) => {
                if self.wait_rules().1.is_none() {
                    self.core.log(LogLevel::E, "Action wakeup from failover rule Implicit_wakeup");
                    self.phase = Phase::Starting { force: self.start.rule_held_force.take() };
                    self.set_status(Status::new(State::Wait, Readiness::Transient));
                    return true;
                }
                false
            }
            WaitReason::SplitBrain if !self.any_lan_up() => false,
            WaitReason::PeerDegraded if self.live_peer().is_some_and(|p| p.degraded) => false,
            _ => {
                let d = self.decide_start(None);
                if matches!(d, Decision::Hold) {
                    return false;
                }
                if matches!(d, Decision::Wait(ref r) if r == reason) {
                    return false;
                }
                self.apply_decision(d, true)
            }
        }
    }

    fn eval_prim(&mut self) -> bool {
        let Some(p) = self.live_peer().cloned() else {
            if self.core.cfg.splitbrain {
                return self.ask_witness(WitnessFor::PrimLostPeer);
            }
            return self.queue(marks::prim_to_alone_plan(false, "no heartbeat"));
        };
        // A peer in WAIT (Transient) is starting towards SECOND (after a dual
        // power loss both resume) or stopping: hold until it is one or the
        // other; the replication layer drops a secondary that stops answering.
        let in_transition = p.status == Status::new(State::Wait, Readiness::Transient);
        if p.primary_active
            && p.status.state == State::Alone
            && p.data.epoch == self.p.epoch
            && (p.alone_after_failover || self.secondary_lost)
        {
            // The peer failed over while this node could not reach it (a
            // pause, a one-way cut): its clients wrote there, and nothing
            // this node wrote since was acknowledged (see secondary_lost).
            // Yield: VIP first, then stop, then come back as its secondary.
            self.core.log(LogLevel::E, "The other node became primary while this node was unreachable: restarting as secondary");
            self.p.uptodate = false;
            self.core.emit(super::super::Action::Persist(self.p.clone()));
            return self.queue(marks::lose_plan(ScriptAction::Stopstart, StopThen::Start));
        }
        if self.peer_wrote_newer(&p) {
            return self.yield_to_newer_data();
        }
        if self.secondary_lost {
            if !self.peer_fresh() {
                return false;
            }
            if !p.primary_active {
                return self.queue(marks::prim_to_alone_plan(false, "replication timeout"));
            }
        }
        if p.status.state != State::Second && !in_transition {
            return self.queue(marks::prim_to_alone_plan(false, "remote stop"));
        }
        if let (Some(kind), Status { state: State::Second, readiness: Readiness::Ready }) = (p.swap_request, p.status) {
            return self.queue(marks::swap_yield(kind));
        }
        false
    }

    fn eval_alone(&mut self, degraded: bool, via_failover: bool) -> bool {
        let Some(p) = self.live_peer().cloned() else {
            // Every heartbeat is lost: with a witness configured, a primary
            // stays ALONE only if it answers. SafeKit asks on PRIM->ALONE; this
            // also covers a node already ALONE, whose peer, unheard, may be
            // failing over or starting on the other side of a partition.
            if self.core.cfg.splitbrain && self.peer.is_some() && !self.witness_asked {
                return self.ask_witness(WitnessFor::AloneLostPeer);
            }
            return false;
        };
        if self.peer_wrote_newer(&p) {
            return self.yield_to_newer_data();
        }
        if !p.primary_active && p.status.state != State::Second && p.data.version() >= self.p.version() {
            // The active primary must stay ahead of every idle copy it hears of
            // (a Lamport clock), or a peer that was ALONE longer in the past
            // would look newer than the writes made here since.
            self.p.epoch = self.p.epoch.max(p.data.epoch);
            self.p.gen = self.p.gen.max(p.data.gen) + 1;
            self.core.emit(super::super::Action::Persist(self.p.clone()));
            self.send_heartbeat();
        }
        if p.primary_active && p.status.state == State::Alone {
            // Split brain: both are primary. Decided by data: the side that
            // alone acknowledged writes is kept when the other wrote nothing;
            // when both wrote, SafeKit's rule sacrifices the former SECOND.
            // Ties are broken by name, not by generation: generations tick
            // while ALONE, and the choice must not flip back and forth.
            let (mine, theirs) = (self.p.wrote_alone, p.data.wrote_alone);
            let exit = match (via_failover, p.alone_after_failover) {
                // An administrator's prim/primforce is the final word.
                _ if p.data.epoch != self.p.epoch => p.data.epoch > self.p.epoch,
                // The peer cannot hear us, so it will never learn of the split:
                // only this node can end it.
                _ if self.peer_deaf_for_long() => true,
                // A report queued during the cut (or our pause) may show a
                // state the peer has left and writes it has since made: wait
                // for one that answers a heartbeat sent after the heal.
                _ if !self.peer_fresh() => return false,
                _ if mine != theirs => theirs,
                (true, false) => true,
                (false, true) => false,
                _ => self.core.cfg.node > self.core.cfg.peer,
            };
            if exit {
                self.core.log(LogLevel::E, "Split brain recovery: exiting alone");
                // A loser that wrote nothing alone has nothing to keep aside,
                // and the zones both dirty maps name are all that differ.
                let diverged = mine || p.data.epoch != self.p.epoch;
                self.p.wrote_alone = false;
                self.p.uptodate = false;
                self.p.need_full_sync |= diverged;
                self.p.quarantine |= diverged;
                self.core.emit(super::super::Action::Persist(self.p.clone()));
                return self.queue(marks::lose_plan(ScriptAction::Stopstart, StopThen::Start));
            }
            if !self.split_logged {
                self.split_logged = true;
                self.core.log(LogLevel::E, "Split brain recovery: staying alone");
            }
            return false;
        }
        if !degraded && p.status == Status::new(State::Second, Readiness::Ready) && !p.handing_over && p.data.version() == self.p.version()
        {
            return self.queue(marks::alone_to_prim());
        }
        false
    }

    fn eval_second(&mut self, s: SecondPhase) -> bool {
        let peer = self.live_peer().cloned();
        match s {
            SecondPhase::Reintegrating => {
                if !peer.as_ref().is_some_and(|p| p.primary_active) {
                    self.core.log(LogLevel::E, "Reintegration interrupted: the primary is gone");
                    return self.queue(marks::stop_plan(ScriptAction::Stopwait, StopThen::Wait(WaitReason::NotUptodate), false));
                }
                false
            }
            SecondPhase::AwaitingPrimary(kind) => match peer {
                // The peer took over (PRIM), or failed over on its own (ALONE):
                // either way it is primary and this node follows.
                Some(p) if p.primary_active && matches!(p.status.state, State::Prim | State::Alone) => self.queue(marks::swap_finish(kind)),
                Some(p) if matches!(p.status.state, State::Prim | State::Second | State::Alone) => false,
                // The peer did not take over: this node has the data, it goes on
                // alone (asking the witness first if the peer is unheard).
                None => self.failover("swap abandoned by the other node", true),
                Some(_) => self.failover("swap abandoned by the other node", false),
            },
            SecondPhase::Ready => {
                let Some(p) = peer else {
                    if !self.p.uptodate {
                        // The primary wrote data this node never received.
                        self.core.log(LogLevel::E, "The primary was lost after it continued without this node: no failover");
                        return self.queue(marks::stop_plan(ScriptAction::Stopwait, StopThen::Wait(WaitReason::NotUptodate), false));
                    }
                    return self.failover("no heartbeat", true);
                };
                if p.degraded {
                    self.p.uptodate = false;
                    self.core.emit(super::super::Action::Persist(self.p.clone()));
                    return self.queue(marks::stop_plan(ScriptAction::Stopwait, StopThen::Wait(WaitReason::PeerDegraded), false));
                }
                if !p.primary_active && matches!(p.status.state, State::Stop | State::Wait) {
                    if !self.p.uptodate {
                        return self.queue(marks::stop_plan(ScriptAction::Stopwait, StopThen::Wait(WaitReason::NotUptodate), false));
                    }
                    return self.failover("remote stop", false);
                }
                if p.status.state == State::Second && p.handing_over && !p.primary_active {
                    return self.queue(marks::swap_takeover());
                }
                if p.primary_active && p.data.version() > self.p.version() {
                    // The primary dropped us and wrote alone: catch up.
                    self.core.log(LogLevel::E, "The primary continued without this node: resynchronising");
                    self.core.seq.extend([
                        marks::StepKind::Mark(marks::Mark::Status(State::Second, Readiness::Transient)),
                        marks::StepKind::Mark(marks::Mark::Persist(marks::Edit {
                            uptodate: Some(false),
                            partial: Some(true),
                            ..marks::Edit::default()
                        })),
                        marks::StepKind::Mark(marks::Mark::Act(super::super::Action::StartReintegration(SyncMode::Zones))),
                        marks::StepKind::Mark(marks::Mark::Enter(Phase::Second(SecondPhase::Reintegrating))),
                    ]);
                    self.phase = Phase::Busy;
                    return true;
                }
                if !self.start.defaultprim_done && p.status == Status::new(State::Prim, Readiness::Ready) && self.wants_primary() {
                    self.start.defaultprim_done = true;
                    self.core.log(LogLevel::E, "Transition SWAP from defaultprim");
                    self.swap_request = Some(SwapKind::Sync);
                    self.send_heartbeat();
                }
                false
            }
        }
    }

    /// The peer, not primary now, acknowledged writes alone that this node
    /// does not have (it took over while this node was paused or cut, then
    /// stopped), and this node wrote nothing alone since: its data is the
    /// newer one.
    pub(super) fn peer_wrote_newer(&self, p: &Heartbeat) -> bool {
        !p.primary_active
            && p.data.wrote_alone
            && !self.p.wrote_alone
            && p.data.epoch == self.p.epoch
            && p.data.version() > self.p.version()
    }

    /// Gives the primary role up to the node with the newer data: VIP
    /// first, stop, start again (the peer leads, see [`leader`]).
    pub(super) fn yield_to_newer_data(&mut self) -> bool {
        self.core.log(LogLevel::E, "The other node wrote data this node does not have: restarting to let it lead");
        self.p.uptodate = false;
        self.core.emit(super::super::Action::Persist(self.p.clone()));
        self.queue(marks::lose_plan(ScriptAction::Stopstart, StopThen::Start))
    }

    /// The peer has not heard us for a whole heartbeat timeout while we
    /// hear it: the link is one-way, not merely healing (right after a heal
    /// the first heartbeats to cross still say "not heard").
    fn peer_deaf_for_long(&self) -> bool {
        let timeout = self.core.cfg.lans.iter().map(|l| l.timeout).max().unwrap_or_default();
        self.trust.peer_deaf_since.is_some_and(|t| self.core.now.saturating_duration_since(t) >= timeout)
    }

    fn wants_primary(&self) -> bool {
        match &self.core.cfg.defaultprim {
            DefaultPrim::Node(n) => *n == self.core.cfg.node,
            DefaultPrim::LastPrim => self.start.role_before_start.is_some_and(Role::is_primary),
            DefaultPrim::Alone => false,
        }
    }

    fn failover(&mut self, cause: &'static str, heartbeats_lost: bool) -> bool {
        if !self.p.failover {
            self.core.log(LogLevel::E, "Failover-off configured");
            self.core.log(LogLevel::E, "Action stopstart called by failover-off");
            self.core.log(LogLevel::E, "Transition STOPSTART from failover-off");
            return self.queue(marks::stop_plan(ScriptAction::Stopstart, StopThen::Start, false));
        }
        if heartbeats_lost && self.core.cfg.splitbrain {
            return self.ask_witness(WitnessFor::SecondLostPeer);
        }
        self.queue(marks::failover_plan(cause))
    }

    pub(super) fn ask_witness(&mut self, why: WitnessFor) -> bool {
        let run = self.core.seq.new_run();
        self.witness_asked = true;
        let resume = Box::new(self.phase.clone());
        self.phase = Phase::AskingWitness { run, why, resume };
        self.core.emit(super::super::Action::CheckWitness(run));
        false
    }
}
