//! Administrator and detector commands: checks against the current state,
//! maxloop accounting, and the plans they start.

use super::super::{Command, CommandError, CommandKind, LogLevel, Readiness, ScriptAction, State, Status};
use super::marks::{self, StopThen};
use super::{Force, Intent, MirrorEngine, Phase, WaitReason};
use crate::engine::Automaton as _;

impl MirrorEngine {
    /// Checks a command against the current state and queues its plan.
    pub(super) fn apply_command(&mut self, cmd: Command) -> Result<(), CommandError> {
        let name = cmd.kind.name();
        let mut kind = cmd.kind.clone();
        let started = self.phase != Phase::Stopped;
        match &kind {
            CommandKind::Traffic(_) => return Err(CommandError::NotScriptControlled),
            CommandKind::Start | CommandKind::Prim { .. } | CommandKind::Second { .. } | CommandKind::Primforce if started => {
                return Err(CommandError::AlreadyStarted(self.core.status));
            }
            CommandKind::Prim { .. } | CommandKind::Primforce if self.peer_primary() => {
                return Err(CommandError::PeerIsPrimary(self.peer_status().unwrap_or(self.core.status)));
            }
            CommandKind::Prim { .. } if self.p.partial => return Err(CommandError::DataInconsistent),
            // Never heard since this daemon started (it may have started a
            // moment ago): the start listens for the peer as `start` does,
            // and aborts if no primary speaks up (see decide).
            CommandKind::Second { .. } if !self.peer_primary() && self.peer.is_some() => {
                let remote = self.peer_status().map_or_else(|| "UNKNOWN: no heartbeat from it".to_string(), |s| s.to_string());
                return Err(CommandError::PeerNotPrimary(remote));
            }
            CommandKind::Stop | CommandKind::Forcestop | CommandKind::Stopstart | CommandKind::Restart if !started => {
                return Err(CommandError::NotStarted);
            }
            CommandKind::Restart
                if !(self.core.status.readiness == Readiness::Ready
                    && matches!(self.core.status.state, State::Alone | State::Prim | State::Second)) =>
            {
                return Err(CommandError::NotReady { cmd: "restart", status: self.core.status });
            }
            CommandKind::Swap(_) => {
                let remote = self.peer_status();
                let ok = matches!(
                    (self.core.status, remote),
                    (
                        Status { state: State::Prim, readiness: Readiness::Ready },
                        Some(Status { state: State::Second, readiness: Readiness::Ready })
                    ) | (
                        Status { state: State::Second, readiness: Readiness::Ready },
                        Some(Status { state: State::Prim, readiness: Readiness::Ready })
                    )
                );
                if !ok || self.core.seq.busy() {
                    return Err(CommandError::NoPair {
                        local: self.core.status,
                        remote: remote.map_or_else(|| "UNKNOWN".into(), |s| s.to_string()),
                    });
                }
            }
            _ => {}
        }
        let who = cmd.caller();
        match &cmd.identity {
            None if !matches!(kind, CommandKind::Failover(_) | CommandKind::Errd(_) | CommandKind::Checker(_)) => self.core.loops.reset(),
            Some(_) if matches!(kind, CommandKind::Restart | CommandKind::Stopstart) => {
                if self.core.maxloop_exceeded() {
                    self.core.log(LogLevel::U, format!("Action {name} {who}"));
                    self.core.log(LogLevel::C, "Action stop called by maxloop");
                    kind = CommandKind::Stop;
                }
            }
            _ => {}
        }
        if kind.name() == name {
            self.core.log(LogLevel::U, format!("Action {name} {who}"));
        }
        match kind {
            CommandKind::Start => self.begin_start(None),
            CommandKind::Prim { fullsync } => self.begin_start(Some(Force::Prim { fullsync })),
            CommandKind::Primforce => self.begin_start(Some(Force::Primforce)),
            CommandKind::Second { fullsync } => self.begin_start(Some(Force::Second { fullsync })),
            CommandKind::Stop => self.begin_stop(ScriptAction::Stop, StopThen::Stop, false),
            CommandKind::Forcestop => {
                if let Some(run) = self.core.seq.awaiting.take() {
                    self.core.emit(super::super::Action::CancelScript(run));
                }
                self.begin_stop(ScriptAction::Stop, StopThen::Stop, true);
            }
            CommandKind::Stopstart => self.begin_stop(ScriptAction::Stopstart, StopThen::Start, false),
            CommandKind::Restart => {
                if self.core.seq.busy() {
                    self.pending.push_back(Intent::Command(Command { kind: CommandKind::Restart, ..cmd.clone() }));
                } else {
                    self.core.seq.extend(marks::restart_plan());
                }
            }
            CommandKind::Swap(k) => {
                if self.core.status.state == State::Prim {
                    self.queue(marks::swap_yield(k));
                } else {
                    self.swap_request = Some(k);
                    self.send_heartbeat();
                }
            }
            CommandKind::Failover(on) => {
                self.p.failover = on;
                self.core.emit(super::super::Action::Persist(self.p.clone()));
            }
            CommandKind::Errd(on) => {
                self.p.errd = on;
                self.core.emit(super::super::Action::Persist(self.p.clone()));
            }
            CommandKind::Checker(on) => {
                self.p.checker = on;
                self.core.emit(super::super::Action::Persist(self.p.clone()));
            }
            CommandKind::Traffic(_) => {}
        }
        Ok(())
    }

    pub(super) fn begin_start(&mut self, force: Option<Force>) {
        self.core.seq.extend([marks::StepKind::Mark(marks::Mark::Start(force))]);
        self.phase = Phase::Busy;
    }

    pub(super) fn begin_stop(&mut self, action: ScriptAction, then: StopThen, force_only: bool) {
        if matches!(self.phase, Phase::Stopped) {
            return;
        }
        self.start.rule_held_force = None;
        self.core.rules.reset();
        // A stop preempts what is left of the running plan; the script being
        // run finishes first, then the stop undoes what was done.
        self.core.seq.clear_pending();
        self.pending.clear();
        self.core.seq.extend(marks::stop_plan(action, then, force_only));
        self.phase = Phase::Busy;
    }

    pub(super) fn run_intent(&mut self, intent: Intent) {
        match intent {
            Intent::RuleWait(label) => {
                if matches!(self.phase, Phase::Stopped | Phase::Waiting(_)) {
                    return;
                }
                self.core.log(LogLevel::E, format!("Action wait from failover rule {label}"));
                if self.core.maxloop_exceeded() {
                    self.core.log(LogLevel::C, "Action stop called by maxloop");
                    self.queue(marks::stop_plan(ScriptAction::Stop, StopThen::Stop, false));
                } else if let Phase::Starting { force } = self.phase {
                    self.start.rule_held_force = force;
                    self.queue(marks::wait_plan(WaitReason::Rule(label)));
                } else if label == crate::engine::LEASE_RULE {
                    // The lease is gone: another node may take over at any
                    // moment, so clients must stop reaching this one first.
                    self.queue(marks::lose_plan(ScriptAction::Stopwait, StopThen::Wait(WaitReason::Rule(label))));
                } else {
                    self.queue(marks::stop_plan(ScriptAction::Stopwait, StopThen::Wait(WaitReason::Rule(label)), false));
                }
            }
            Intent::Command(cmd) => {
                if self.phase == Phase::Stopped {
                    return;
                }
                let _ = self.apply_command(cmd);
            }
        }
    }
}
