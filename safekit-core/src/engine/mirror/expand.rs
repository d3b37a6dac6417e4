//! Expansion of the lazy plan steps [`Mark::Become`] and [`Mark::StopAll`]
//! from what the node holds when they are reached.

use super::super::plan::{forced, script};
use super::super::{Action, CheckerClass, LogLevel, Readiness, ReplicaRole, ScriptAction, ScriptKind, State, Status};
use super::marks::{m, parts_of, start_script, status, stop_script, Edit, Mark, Step, StopThen};
use super::{MirrorEngine, Phase};

impl MirrorEngine {
    pub(super) fn expand_become(&mut self, to: State, from: State, action: ScriptAction, transition: bool, starts: bool) -> Vec<Step> {
        let want = parts_of(to);
        let mut steps = Vec::new();
        for part in [CheckerClass::Sec, CheckerClass::Prim, CheckerClass::Second] {
            if self.held.app.contains(&part) && !want.contains(&part) {
                if self.held.checkers.contains(&part) {
                    steps.push(m(Mark::Act(Action::DisableCheckers(part))));
                }
                steps.push(script(stop_script(part), from, to, action));
            }
        }
        let primary = matches!(to, State::Alone | State::Prim);
        let repl = self.held.repl;
        if primary {
            if repl == Some(ReplicaRole::Secondary) {
                steps.push(m(Mark::Act(Action::StopReplication)));
            }
            if repl != Some(ReplicaRole::Primary) {
                steps.push(m(Mark::Act(Action::StartReplication(ReplicaRole::Primary))));
            }
        } else {
            if self.held.vip {
                steps.push(m(Mark::Vip(false)));
            }
            if repl == Some(ReplicaRole::Primary) {
                steps.push(m(Mark::Act(Action::StopReplication)));
            }
            if repl != Some(ReplicaRole::Secondary) {
                steps.push(m(Mark::Act(Action::StartReplication(ReplicaRole::Secondary))));
            }
        }
        if transition {
            steps.push(script(ScriptKind::Transition, from, to, action));
        }
        if primary && !self.held.vip {
            if from == State::Second {
                steps.push(m(Mark::ConfirmTakeover));
            }
            steps.push(m(Mark::Vip(true)));
        }
        if starts {
            for part in [CheckerClass::Both, CheckerClass::Prim, CheckerClass::Second, CheckerClass::Sec] {
                if want.contains(&part) && !self.held.app.contains(&part) {
                    steps.push(script(start_script(part), from, to, action));
                    steps.push(m(Mark::Act(Action::EnableCheckers(part))));
                }
            }
        }
        steps
    }

    pub(super) fn expand_stop(&mut self, action: ScriptAction, then: StopThen, force_only: bool) -> Vec<Step> {
        let from = self.core.status.state;
        let peer_takes_over = match from {
            State::Second => self.peer_primary(),
            State::Prim => self.live_peer().is_some_and(|h| h.status == Status::new(State::Second, Readiness::Ready) && h.failover),
            _ => false,
        };
        let order = [CheckerClass::Sec, CheckerClass::Prim, CheckerClass::Second, CheckerClass::Both];
        let parts: Vec<CheckerClass> = order.into_iter().filter(|p| self.held.app.contains(p)).collect();
        // The forced pass also covers parts whose graceful stop was cut short.
        let forced_parts: Vec<CheckerClass> =
            order.into_iter().filter(|p| self.held.app.contains(p) || self.held.stopping.contains(p)).collect();
        let mut steps = vec![status(State::Wait, Readiness::Transient)];
        for part in [CheckerClass::Sec, CheckerClass::Prim, CheckerClass::Second, CheckerClass::Both] {
            if self.held.checkers.contains(&part) {
                steps.push(m(Mark::Act(Action::DisableCheckers(part))));
            }
            if parts.contains(&part) && !force_only {
                steps.push(script(stop_script(part), from, State::Wait, action));
            }
        }
        steps.push(script(ScriptKind::Transition, from, State::Wait, action));
        for part in &forced_parts {
            steps.push(forced(stop_script(*part), from, State::Wait, action));
        }
        steps.push(m(Mark::ForgetApp));
        if self.held.vip {
            steps.push(m(Mark::Vip(false)));
        }
        if self.held.repl.is_some() {
            steps.push(m(Mark::Act(Action::StopReplication)));
        }
        if peer_takes_over {
            steps.push(m(Mark::Persist(Edit { uptodate: Some(false), ..Edit::default() })));
        }
        match then {
            StopThen::Stop | StopThen::Start => {
                if self.held.checkers.contains(&CheckerClass::Pre) {
                    steps.push(m(Mark::Act(Action::DisableCheckers(CheckerClass::Pre))));
                }
                steps.push(script(ScriptKind::Poststop, State::Wait, State::Stop, action));
                steps.push(script(ScriptKind::Transition, State::Wait, State::Stop, action));
                steps.push(m(Mark::Persist(Edit { running: Some(false), ..Edit::default() })));
                steps.push(m(Mark::CleanStop));
                steps.push(m(Mark::Enter(Phase::Stopped)));
                steps.push(status(State::Stop, Readiness::NotReady));
                if then == StopThen::Start {
                    steps.push(m(Mark::Log(LogLevel::E, "Action start called automatically".into())));
                    steps.push(m(Mark::Start(None)));
                }
            }
            StopThen::Wait(reason) => steps.push(m(Mark::EnterWait(reason))),
        }
        steps
    }

    pub(super) fn expand_restart(&mut self) -> Vec<Step> {
        let st = self.core.status.state;
        let mut steps = vec![status(st, Readiness::Transient)];
        for part in [CheckerClass::Prim, CheckerClass::Second] {
            if self.held.app.contains(&part) {
                if self.held.checkers.contains(&part) {
                    steps.push(m(Mark::Act(Action::DisableCheckers(part))));
                }
                steps.push(script(stop_script(part), st, st, ScriptAction::Restart));
                steps.push(script(start_script(part), st, st, ScriptAction::Restart));
                steps.push(m(Mark::Act(Action::EnableCheckers(part))));
            }
        }
        steps.push(status(st, Readiness::Ready));
        steps
    }
}
