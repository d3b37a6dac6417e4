//! Transition plans of the mirror automaton and how each step applies.
//!
//! Script order follows the reference's §3.2 table. Two steps are expanded
//! lazily, when reached, from what the node holds at that moment:
//! [`Mark::Become`] (stop the parts of the old role the new one does not
//! keep, switch VIP and replication, run `transition`, start the missing
//! parts) and [`Mark::StopAll`] (graceful pass, `transition`, forced pass,
//! release, then `poststop` or WAIT). So a stop that preempts a half-done
//! start stops exactly what was started.

use super::super::plan::script;
use super::super::{
    Action, CheckerClass, LogLevel, Readiness, Role, ScriptAction, ScriptKind, State, Status, SyncMode, UnreplicatedWrites,
};
use super::{Force, MirrorEngine, Phase, SecondPhase, WaitReason};

/// Engine-specific plan steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::engine) enum Mark {
    /// Emit an action (and track what it holds).
    Act(Action),
    /// Set (`true`) or remove the VIP, and wait until the runtime says it
    /// is done: the next step (start_prim, the stop scripts) runs only
    /// once the address is really there or really gone.
    Vip(bool),
    /// Keep aside what this node wrote alone, and wait: the next step is
    /// the reintegration that overwrites it.
    Quarantine,
    /// Change the visible status.
    Status(State, Readiness),
    /// Enter a phase.
    Enter(Phase),
    /// Enter WAIT (NotReady) with its log lines.
    EnterWait(WaitReason),
    /// Change and persist the persistent state.
    Persist(Edit),
    /// Move to another role (expanded when reached).
    Become { to: State, from: State, action: ScriptAction, transition: bool, starts: bool },
    /// Stop everything (expanded when reached).
    StopAll { action: ScriptAction, then: StopThen, force_only: bool },
    /// stop_xx + start_xx of the current role (expanded when reached).
    Restart,
    /// Begin a start (after a stopstart).
    Start(Option<Force>),
    /// A log line.
    Log(LogLevel, String),
    /// The forced pass ran: nothing of the application is left.
    ForgetApp,
    /// The module reached STOP cleanly.
    CleanStop,
    /// Remove the VIP now if held: a node that lost (split brain, the peer
    /// took over) stops answering for the address before its stop scripts.
    ReleaseVip,
    /// Last check before a failing-over SECOND sets the VIP: if the primary
    /// is heard again meanwhile, the failover is cancelled.
    ConfirmTakeover,
}

/// What follows a [`Mark::StopAll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::engine) enum StopThen {
    Stop,
    Start,
    Wait(WaitReason),
}

/// A change of the persistent state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(in crate::engine) struct Edit {
    pub(super) gen: Option<GenEdit>,
    pub(super) uptodate: Option<bool>,
    pub(super) partial: Option<bool>,
    pub(super) last_role: Option<Role>,
    pub(super) running: Option<bool>,
    pub(super) full_sync_required: Option<bool>,
    pub(super) need_full_sync: Option<bool>,
    pub(super) wrote_alone: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::engine) enum GenEdit {
    /// New writes without a secondary: a generation no one else has.
    Bump,
    /// End of reintegration: same data as the primary (epoch, generation).
    Adopt((u64, u64)),
    /// An administrator forced this node primary: a new epoch.
    Force,
}

pub(super) use super::super::plan::Step as PlanStep;
pub(super) type Step = PlanStep<Mark>;
pub(super) use PlanStep as StepKind;

pub(super) const fn m(mark: Mark) -> Step {
    StepKind::Mark(mark)
}

pub(super) fn status(state: State, r: Readiness) -> Step {
    m(Mark::Status(state, r))
}

pub(super) fn start_plan(force: Option<Force>) -> Vec<Step> {
    vec![
        status(State::Wait, Readiness::Transient),
        m(Mark::Persist(Edit { running: Some(true), ..Edit::default() })),
        script(ScriptKind::Transition, State::Stop, State::Wait, ScriptAction::Start),
        script(ScriptKind::Prestart, State::Stop, State::Wait, ScriptAction::Start),
        m(Mark::Act(Action::EnableCheckers(CheckerClass::Pre))),
        m(Mark::Enter(Phase::Starting { force })),
    ]
}

fn become_(to: State, from: State, action: ScriptAction, transition: bool, starts: bool) -> Step {
    m(Mark::Become { to, from, action, transition, starts })
}

pub(super) fn alone_from_wait(full_sync_required: bool, forced: bool) -> Vec<Step> {
    vec![
        status(State::Alone, Readiness::Transient),
        m(Mark::Persist(Edit {
            gen: Some(if forced { GenEdit::Force } else { GenEdit::Bump }),
            uptodate: Some(true),
            partial: Some(false),
            last_role: Some(Role::Alone),
            need_full_sync: Some(false),
            full_sync_required: full_sync_required.then_some(true),
            wrote_alone: Some(false),
            ..Edit::default()
        })),
        m(Mark::Act(Action::UnreplicatedWrites(UnreplicatedWrites::Admit))),
        become_(State::Alone, State::Wait, ScriptAction::Start, true, true),
        m(Mark::Enter(Phase::Alone { via_failover: false, degraded: false })),
        status(State::Alone, Readiness::Ready),
    ]
}

/// Both nodes restart after a dual power loss: resume PRIM without a new generation.
pub(super) fn prim_from_wait() -> Vec<Step> {
    vec![
        status(State::Prim, Readiness::Transient),
        m(Mark::Persist(Edit { uptodate: Some(true), last_role: Some(Role::Prim), ..Edit::default() })),
        m(Mark::Act(Action::UnreplicatedWrites(UnreplicatedWrites::Hold))),
        become_(State::Prim, State::Wait, ScriptAction::Start, true, true),
        m(Mark::Enter(Phase::Prim)),
        status(State::Prim, Readiness::Ready),
    ]
}

pub(super) fn second_from_wait(mode: SyncMode) -> Vec<Step> {
    vec![
        status(State::Second, Readiness::Transient),
        m(Mark::Persist(Edit { uptodate: Some(false), partial: Some(true), ..Edit::default() })),
        become_(State::Second, State::Wait, ScriptAction::Start, true, false),
        m(Mark::Log(LogLevel::E, format!("Begin of reintegration ({})", if mode == SyncMode::Full { "full" } else { "modified zones" }))),
        m(Mark::Act(Action::StartReintegration(mode))),
        m(Mark::Enter(Phase::Second(SecondPhase::Reintegrating))),
    ]
}

pub(super) fn second_ready_plan(peer_version: (u64, u64)) -> Vec<Step> {
    vec![
        m(Mark::Persist(Edit {
            gen: Some(GenEdit::Adopt(peer_version)),
            uptodate: Some(true),
            partial: Some(false),
            last_role: Some(Role::Second),
            need_full_sync: Some(false),
            wrote_alone: Some(false),
            ..Edit::default()
        })),
        become_(State::Second, State::Second, ScriptAction::Start, false, true),
        m(Mark::Enter(Phase::Second(SecondPhase::Ready))),
        status(State::Second, Readiness::Ready),
    ]
}

pub(super) fn alone_to_prim() -> Vec<Step> {
    vec![
        status(State::Prim, Readiness::Transient),
        m(Mark::Persist(Edit {
            last_role: Some(Role::Prim),
            full_sync_required: Some(false),
            wrote_alone: Some(false),
            ..Edit::default()
        })),
        m(Mark::Act(Action::UnreplicatedWrites(UnreplicatedWrites::Hold))),
        become_(State::Prim, State::Alone, ScriptAction::Start, true, true),
        m(Mark::Enter(Phase::Prim)),
        status(State::Prim, Readiness::Ready),
    ]
}

pub(super) fn prim_to_alone_plan(degraded: bool, cause: &str) -> Vec<Step> {
    vec![
        m(Mark::Log(LogLevel::E, format!("Secondary lost ({cause}): continuing ALONE"))),
        status(State::Alone, Readiness::Transient),
        m(Mark::Act(Action::DropSecondary)),
        m(Mark::Persist(Edit { gen: Some(GenEdit::Bump), last_role: Some(Role::Alone), wrote_alone: Some(false), ..Edit::default() })),
        m(Mark::Act(Action::UnreplicatedWrites(UnreplicatedWrites::Admit))),
        become_(State::Alone, State::Prim, ScriptAction::Start, true, true),
        m(Mark::Enter(Phase::Alone { via_failover: false, degraded })),
        status(State::Alone, Readiness::Ready),
    ]
}

/// SECOND takes over: "Action alone called by heart: <cause>".
pub(super) fn failover_plan(cause: &str) -> Vec<Step> {
    vec![
        m(Mark::Log(LogLevel::E, format!("Action alone called by heart: {cause}"))),
        status(State::Alone, Readiness::Transient),
        m(Mark::Persist(Edit {
            gen: Some(GenEdit::Bump),
            uptodate: Some(true),
            partial: Some(false),
            last_role: Some(Role::AloneAfterFailover),
            wrote_alone: Some(false),
            ..Edit::default()
        })),
        m(Mark::Act(Action::UnreplicatedWrites(UnreplicatedWrites::Admit))),
        become_(State::Alone, State::Second, ScriptAction::Start, true, true),
        m(Mark::Enter(Phase::Alone { via_failover: true, degraded: false })),
        status(State::Alone, Readiness::Ready),
    ]
}

pub(super) fn swap_yield(kind: super::SwapKind) -> Vec<Step> {
    vec![
        m(Mark::Log(LogLevel::E, "Begin of Swap".into())),
        status(State::Prim, Readiness::Transient),
        become_(State::Second, State::Prim, ScriptAction::Swap, true, false),
        m(Mark::Persist(Edit { last_role: Some(Role::Second), uptodate: Some(true), ..Edit::default() })),
        m(Mark::Enter(Phase::Second(SecondPhase::AwaitingPrimary(kind)))),
        status(State::Second, Readiness::Transient),
    ]
}

pub(super) fn swap_takeover() -> Vec<Step> {
    vec![
        m(Mark::Log(LogLevel::E, "Swap: taking over as primary".into())),
        status(State::Prim, Readiness::Transient),
        m(Mark::Persist(Edit { last_role: Some(Role::Prim), uptodate: Some(true), ..Edit::default() })),
        m(Mark::Act(Action::UnreplicatedWrites(UnreplicatedWrites::Hold))),
        become_(State::Prim, State::Second, ScriptAction::Swap, true, true),
        m(Mark::Enter(Phase::Prim)),
        status(State::Prim, Readiness::Ready),
    ]
}

pub(super) fn swap_finish(kind: super::SwapKind) -> Vec<Step> {
    match kind {
        super::SwapKind::NoSync => vec![
            become_(State::Second, State::Second, ScriptAction::Swap, false, true),
            m(Mark::Enter(Phase::Second(SecondPhase::Ready))),
            status(State::Second, Readiness::Ready),
            m(Mark::Log(LogLevel::E, "End of Swap".into())),
        ],
        super::SwapKind::Sync => vec![
            m(Mark::Persist(Edit { uptodate: Some(false), partial: Some(true), ..Edit::default() })),
            m(Mark::Act(Action::StartReintegration(SyncMode::Zones))),
            m(Mark::Enter(Phase::Second(SecondPhase::Reintegrating))),
            m(Mark::Log(LogLevel::E, "End of Swap".into())),
        ],
    }
}

pub(super) fn stop_plan(action: ScriptAction, then: StopThen, force_only: bool) -> Vec<Step> {
    vec![m(Mark::StopAll { action, then, force_only })]
}

/// The stop of a node that lost the primary role to the other one: the VIP
/// goes first, so clients stop reaching it while its stop scripts run.
pub(super) fn lose_plan(action: ScriptAction, then: StopThen) -> Vec<Step> {
    vec![
        m(Mark::Act(Action::UnreplicatedWrites(UnreplicatedWrites::Refuse))),
        m(Mark::ReleaseVip),
        m(Mark::StopAll { action, then, force_only: false }),
    ]
}

pub(super) fn restart_plan() -> Vec<Step> {
    vec![m(Mark::Restart)]
}

pub(super) fn wait_plan(reason: WaitReason) -> Vec<Step> {
    vec![m(Mark::EnterWait(reason))]
}

pub(super) const fn start_script(c: CheckerClass) -> ScriptKind {
    match c {
        CheckerClass::Prim => ScriptKind::StartPrim,
        CheckerClass::Second => ScriptKind::StartSecond,
        CheckerClass::Sec => ScriptKind::StartSec,
        _ => ScriptKind::StartBoth,
    }
}

pub(super) const fn stop_script(c: CheckerClass) -> ScriptKind {
    match c {
        CheckerClass::Prim => ScriptKind::StopPrim,
        CheckerClass::Second => ScriptKind::StopSecond,
        CheckerClass::Sec => ScriptKind::StopSec,
        _ => ScriptKind::StopBoth,
    }
}

/// Application parts each running state keeps.
pub(super) fn parts_of(state: State) -> &'static [CheckerClass] {
    match state {
        State::Alone => &[CheckerClass::Both, CheckerClass::Prim, CheckerClass::Sec],
        State::Prim => &[CheckerClass::Both, CheckerClass::Prim],
        State::Second => &[CheckerClass::Both, CheckerClass::Second, CheckerClass::Sec],
        _ => &[],
    }
}

impl MirrorEngine {
    pub(super) fn apply_mark(&mut self, mark: Mark) {
        match mark {
            Mark::Act(a) => self.act(a),
            Mark::Status(s, r) => self.set_status(Status::new(s, r)),
            Mark::Enter(ph) => {
                self.witness_cleared = false;
                self.secondary_lost = false;
                if matches!(ph, Phase::Alone { .. }) {
                    // A split brain is decided only on reports that know we are ALONE.
                    self.require_fresh();
                }
                if !matches!(ph, Phase::Alone { .. }) {
                    self.split_logged = false;
                }
                if ph != Phase::Second(SecondPhase::Ready) {
                    self.swap_request = None;
                }
                if !matches!(ph, Phase::Alone { .. } | Phase::Busy) {
                    self.degraded = false;
                }
                self.phase = ph;
                self.send_heartbeat();
            }
            Mark::EnterWait(reason) => self.enter_wait(reason),
            Mark::Persist(e) => self.persist(&e),
            Mark::Become { to, from, action, transition, starts } => {
                let steps = self.expand_become(to, from, action, transition, starts);
                self.core.seq.prepend(steps);
            }
            Mark::StopAll { action, then, force_only } => {
                self.held.stop_in_progress = true;
                let steps = self.expand_stop(action, then, force_only);
                self.core.seq.prepend(steps);
            }
            Mark::Restart => {
                let steps = self.expand_restart();
                self.core.seq.prepend(steps);
            }
            Mark::Start(force) => {
                if self.unclean && self.p.uptodate && matches!(self.p.last_role, Some(Role::Prim | Role::Second)) {
                    // The last run ended in a crash while the peer was in sync:
                    // it may have gone on alone since. Only the peer can tell,
                    // so this node no longer claims to be uptodate (SafeKit:
                    // after a power loss the first node back waits), even if
                    // an administrator now stops and starts it cleanly.
                    self.p.uptodate = false;
                    self.core.emit(Action::Persist(self.p.clone()));
                }
                self.start.listen_until = Some(self.core.now + self.listen_window());
                self.start.role_before_start = self.p.last_role;
                self.start.defaultprim_done = false;
                self.core.seq.prepend(start_plan(force));
            }
            Mark::Log(l, s) => self.core.log(l, s),
            Mark::ForgetApp => {
                self.held.app.clear();
                self.held.stopping.clear();
                self.held.stop_in_progress = false;
            }
            Mark::CleanStop => self.unclean = false,
            Mark::Vip(on) => self.change_vip(on, true),
            Mark::Quarantine => {
                let run = self.core.seq.new_run();
                self.core.seq.awaiting = Some(run);
                self.held.quarantine_run = Some(run);
                self.core.emit(Action::QuarantineLocalChanges(run));
            }
            Mark::ReleaseVip => {
                if self.held.vip {
                    self.change_vip(false, true);
                }
            }
            Mark::ConfirmTakeover => {
                if self.peer_primary() {
                    // Heard again before the VIP was set (after a pause of
                    // this node, say): nothing was served here, so go back to
                    // being its secondary. The generation bumped for the
                    // failover is not trusted: uptodate is cleared.
                    self.core.log(LogLevel::E, "Failover cancelled: the primary is heard again");
                    self.core.seq.clear_pending();
                    self.p.uptodate = false;
                    self.p.last_role = Some(Role::Second);
                    self.core.emit(Action::Persist(self.p.clone()));
                    self.core.seq.extend(stop_plan(ScriptAction::Stopstart, StopThen::Start, false));
                }
            }
        }
    }

    /// How long a start listens for the peer before deciding it is absent.
    pub(super) fn listen_window(&self) -> std::time::Duration {
        let pulse = self.core.cfg.pulse();
        let timeout = self.core.cfg.lans.iter().map(|l| l.timeout).min().unwrap_or(pulse * 3);
        (pulse * 3).min(timeout)
    }

    fn act(&mut self, a: Action) {
        if matches!(a, Action::StartReintegration(_)) && self.p.quarantine && self.held.quarantine_run.is_none() {
            // What this node wrote alone is kept aside before the copy
            // overwrites it: the reintegration waits for the quarantine.
            self.core.seq.prepend(vec![StepKind::Mark(Mark::Quarantine), StepKind::Mark(Mark::Act(a))]);
            return;
        }
        let announce = matches!(a, Action::StopReplication | Action::DropSecondary | Action::StartReplication(_));
        match &a {
            Action::StartReplication(r) => self.held.repl = Some(*r),
            Action::StopReplication => self.held.repl = None,
            Action::EnableCheckers(c) => {
                self.held.checkers.insert(*c);
            }
            Action::DisableCheckers(c) => {
                self.held.checkers.remove(c);
            }
            _ => {}
        }
        self.core.emit(a);
        if announce {
            self.send_heartbeat();
        }
    }

    /// Asks the runtime to set or remove the VIP. `wait`: the plan waits
    /// for the answer (a re-announcement of an address already held does
    /// not hold up what runs meanwhile).
    pub(super) fn change_vip(&mut self, on: bool, wait: bool) {
        let run = self.core.seq.new_run();
        if wait {
            self.core.seq.awaiting = Some(run);
            self.held.vip_run = Some((run, on));
        }
        // Held from the request on: a stop removes whatever part of the
        // addresses a failed or interrupted set left configured.
        self.held.vip = on;
        self.core.emit(if on { Action::SetVip(run) } else { Action::RemoveVip(run) });
        self.send_heartbeat();
    }

    fn persist(&mut self, e: &Edit) {
        match e.gen {
            Some(GenEdit::Bump) => {
                let known = self.peer.as_ref().map_or(0, |h| h.data.gen);
                self.p.gen = self.p.gen.max(known) + 1;
            }
            Some(GenEdit::Adopt((e, g))) => {
                self.p.epoch = e;
                self.p.gen = g;
            }
            Some(GenEdit::Force) => {
                let known = self.peer.as_ref().map_or((0, 0), |h| h.data.version());
                self.p.epoch = self.p.epoch.max(known.0) + 1;
                self.p.gen = self.p.gen.max(known.1) + 1;
            }
            None => {}
        }
        if let Some(v) = e.uptodate {
            self.p.uptodate = v;
        }
        if let Some(v) = e.partial {
            self.p.partial = v;
        }
        if let Some(v) = e.last_role {
            self.p.last_role = Some(v);
        }
        if let Some(v) = e.running {
            self.p.running = v;
        }
        if let Some(v) = e.full_sync_required {
            self.p.full_sync_required = v;
        }
        if let Some(v) = e.need_full_sync {
            self.p.need_full_sync = v;
        }
        if let Some(v) = e.wrote_alone {
            self.p.wrote_alone = v;
        }
        self.core.emit(Action::Persist(self.p.clone()));
    }

    pub(super) fn enter_wait(&mut self, reason: WaitReason) {
        match &reason {
            WaitReason::NotUptodate | WaitReason::FirstStart => {
                self.core.log(LogLevel::E, "Data may be not uptodate for replicated directories (wait for the start of the remote server)");
                self.core.log(LogLevel::E, "Action wait from failover rule notuptodate_server");
                self.core.log(
                    LogLevel::I,
                    "If you are sure that this server has valid data, run safekit stop, then safekit prim to force start as primary",
                );
            }
            WaitReason::FailoverOff => self.core.log(LogLevel::E, "Failover-off configured"),
            WaitReason::Rule(label) => self.core.log(LogLevel::E, format!("Transition WAIT_TR from failover rule {label}")),
            WaitReason::SplitBrain => {}
            WaitReason::PeerDegraded => self.core.log(LogLevel::E, "Action wait from failover rule degraded_server"),
            WaitReason::PeerLeads => {
                self.core.log(LogLevel::E, "The other node has the most recent data: waiting for it to become primary")
            }
        }
        self.phase = Phase::Waiting(reason);
        self.set_status(Status::new(State::Wait, Readiness::NotReady));
    }
}
