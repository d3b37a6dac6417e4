//! The light and farm module automaton (reference §7.2): STOP → WAIT
//! (prestart) → UP (start_both) and back. A farm module also opens its
//! traffic (the shared VIP and its share of the buckets: [`Action::SetVip`],
//! awaited) just before `start_both` and closes it ([`Action::RemoveVip`])
//! just after `stop_both`, unless `<vip scriptcontrol="on">` leaves that to
//! its scripts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use super::config::EngineConfig;
use super::core::{self, Automaton, Core, Phases};
use super::plan::{forced, script, Step};
use super::rules::{RuleVerb, View};
use super::{
    Action, CheckerClass, Command, CommandError, CommandKind, Input, LogLevel, Readiness, ResourceState, RunId, ScriptAction, ScriptKind,
    ScriptRun, State, Status,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mark {
    Act(Action),
    Status(State, Readiness),
    Phase(LightPhase),
    Stop {
        action: ScriptAction,
        wait: Option<String>,
        then_start: bool,
        force_only: bool,
    },
    Start,
    /// Farm: open (`true`) or close the traffic, and wait for it.
    Traffic(bool),
}

/// Who opens a module's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// A light module: no VIP.
    None,
    /// A farm module: the engine, around `start_both` / `stop_both`.
    Engine,
    /// A farm module with `scriptcontrol="on"`: its scripts.
    Scripts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LightPhase {
    Stopped,
    Starting,
    Up,
    Waiting(String),
    Busy,
}

/// One light module on one node: start/stop, checkers, local restart.
#[derive(Debug, Clone)]
pub struct LightEngine {
    core: Core<Mark>,
    phase: LightPhase,
    started: BTreeSet<CheckerClass>,
    checkers: BTreeSet<CheckerClass>,
    pending: VecDeque<(CommandKind, String)>,
    /// `usersetting.errd` (kept while the daemon runs).
    errd: bool,
    /// `usersetting.checker` (kept while the daemon runs).
    checker: bool,
    traffic: Traffic,
    /// Farm: the traffic was asked open (and not closed since).
    open: bool,
    /// The awaited open or close.
    traffic_run: Option<(RunId, bool)>,
    /// An open or close a script asked for, in flight.
    script_traffic: Option<RunId>,
    /// Farm: `<group>_0` → load share in percent.
    load: BTreeMap<String, String>,
}

impl LightEngine {
    /// A stopped light module.
    pub fn new(cfg: EngineConfig, now: Instant) -> Self {
        Self::with_traffic(cfg, Traffic::None, now)
    }

    /// A stopped farm module; `scriptcontrol`: its scripts open and close the traffic.
    pub fn farm(cfg: EngineConfig, scriptcontrol: bool, now: Instant) -> Self {
        Self::with_traffic(cfg, if scriptcontrol { Traffic::Scripts } else { Traffic::Engine }, now)
    }

    fn with_traffic(cfg: EngineConfig, traffic: Traffic, now: Instant) -> Self {
        Self {
            core: Core::new(cfg, now),
            phase: LightPhase::Stopped,
            started: BTreeSet::new(),
            checkers: BTreeSet::new(),
            pending: VecDeque::new(),
            errd: true,
            checker: true,
            traffic,
            open: false,
            traffic_run: None,
            script_traffic: None,
            load: BTreeMap::new(),
        }
    }

    fn on_resource(&mut self, name: String, state: ResourceState, by: &str) {
        if self.core.record_resource(name, state, by) {
            self.evaluate_rules(true);
        }
    }

    fn evaluate_rules(&mut self, changed: bool) {
        if self.phase == LightPhase::Stopped {
            self.core.rules.reset();
            return;
        }
        let view = View { local: &self.core.resources, remote: None };
        for (label, verb) in self.core.rules.evaluate(self.core.now, &view, &self.checkers, changed) {
            let kind = match verb {
                RuleVerb::Wait => {
                    self.rule_wait(label);
                    continue;
                }
                RuleVerb::Restart => CommandKind::Restart,
                RuleVerb::Stopstart => CommandKind::Stopstart,
                RuleVerb::Stop => CommandKind::Stop,
                RuleVerb::Swap => {
                    self.core.log(LogLevel::E, format!("Rule {label}: swap needs a mirror module; ignored"));
                    continue;
                }
            };
            self.pending.push_back((kind, label));
        }
    }

    fn rule_wait(&mut self, label: String) {
        if self.phase != LightPhase::Up {
            return;
        }
        self.core.log(LogLevel::E, format!("Action wait from failover rule {label}"));
        let maxloop = self.core.maxloop_exceeded();
        if maxloop {
            self.core.log(LogLevel::C, "Action stop called by maxloop");
        }
        self.core.seq.extend([Step::Mark(Mark::Stop {
            action: if maxloop { ScriptAction::Stop } else { ScriptAction::Stopwait },
            wait: if maxloop { None } else { Some(label) },
            then_start: false,
            force_only: false,
        })]);
    }

    fn drive(&mut self) {
        core::drive(self);
    }

    fn decide(&mut self) -> bool {
        if let Some((kind, who)) = self.pending.pop_front() {
            if self.phase != LightPhase::Stopped {
                let _ = self.command(self.core.now, Command::by_rule(kind, &who));
            }
            return true;
        }
        let waiting_on = |s: &Self| match s.core.rules.waiting(&View { local: &s.core.resources, remote: None }, &s.checkers) {
            (_, Some(label)) => Some(Some(label)),
            (true, None) => Some(None),
            (false, None) => None,
        };
        match self.phase.clone() {
            LightPhase::Starting => match waiting_on(self) {
                Some(Some(label)) => {
                    self.core.log(LogLevel::E, format!("Action wait from failover rule {label}"));
                    self.phase = LightPhase::Waiting(label);
                    self.set_status(Status::new(State::Wait, Readiness::NotReady));
                    false
                }
                Some(None) => false,
                None => {
                    self.phase = LightPhase::Busy;
                    let mut steps = vec![Step::Mark(Mark::Status(State::Up, Readiness::Transient))];
                    if self.traffic == Traffic::Engine {
                        steps.push(Step::Mark(Mark::Traffic(true)));
                    }
                    self.core.seq.extend(steps);
                    self.core.seq.extend([
                        script(ScriptKind::StartBoth, State::Wait, State::Up, ScriptAction::Start),
                        Step::Mark(Mark::Act(Action::EnableCheckers(CheckerClass::Both))),
                        Step::Mark(Mark::Phase(LightPhase::Up)),
                        Step::Mark(Mark::Status(State::Up, Readiness::Ready)),
                    ]);
                    true
                }
            },
            LightPhase::Waiting(_) if waiting_on(self).is_none() => {
                self.core.log(LogLevel::E, "Action wakeup from failover rule Implicit_wakeup");
                self.phase = LightPhase::Starting;
                self.set_status(Status::new(State::Wait, Readiness::Transient));
                true
            }
            _ => false,
        }
    }

    fn set_status(&mut self, to: Status) {
        self.core.set_status(to);
    }

    /// `scriptcontrol="on"`: a script opens or closes the traffic, at
    /// once (its own run is what waits, not the engine's sequence).
    fn traffic_command(&mut self, on: bool, cmd: &Command) -> Result<(), CommandError> {
        if self.traffic != Traffic::Scripts {
            return Err(CommandError::NotScriptControlled);
        }
        if self.phase == LightPhase::Stopped {
            return Err(CommandError::NotStarted);
        }
        self.core.log(LogLevel::U, format!("Action {} {}", cmd.kind.name(), cmd.caller()));
        if self.open != on {
            let run = self.core.seq.new_run();
            self.script_traffic = Some(run);
            self.open = on;
            self.core.emit(if on { Action::SetVip(run) } else { Action::RemoveVip(run) });
        }
        self.drive();
        Ok(())
    }

    fn apply(&mut self, m: Mark) {
        match m {
            Mark::Act(a) => {
                match &a {
                    Action::EnableCheckers(c) => {
                        self.checkers.insert(*c);
                    }
                    Action::DisableCheckers(c) => {
                        self.checkers.remove(c);
                    }
                    _ => {}
                }
                self.core.emit(a);
            }
            Mark::Status(s, r) => self.set_status(Status::new(s, r)),
            Mark::Traffic(on) => {
                let run = self.core.seq.new_run();
                self.core.seq.awaiting = Some(run);
                self.traffic_run = Some((run, on));
                // Held from the request on: a stop closes whatever a failed open left.
                self.open = on;
                self.core.emit(if on { Action::SetVip(run) } else { Action::RemoveVip(run) });
            }
            Mark::Phase(p) => self.phase = p,
            Mark::Start => {
                self.phase = LightPhase::Busy;
                self.core.seq.prepend(vec![
                    Step::Mark(Mark::Status(State::Wait, Readiness::Transient)),
                    script(ScriptKind::Transition, State::Stop, State::Wait, ScriptAction::Start),
                    script(ScriptKind::Prestart, State::Stop, State::Wait, ScriptAction::Start),
                    Step::Mark(Mark::Act(Action::EnableCheckers(CheckerClass::Pre))),
                    Step::Mark(Mark::Phase(LightPhase::Starting)),
                ]);
            }
            Mark::Stop { action, wait, then_start, force_only } => {
                self.phase = LightPhase::Busy;
                let from = self.core.status.state;
                let up = self.started.contains(&CheckerClass::Both);
                let mut steps = vec![Step::Mark(Mark::Status(State::Wait, Readiness::Transient))];
                if self.checkers.contains(&CheckerClass::Both) {
                    steps.push(Step::Mark(Mark::Act(Action::DisableCheckers(CheckerClass::Both))));
                }
                if up && !force_only {
                    steps.push(script(ScriptKind::StopBoth, from, State::Wait, action));
                }
                steps.push(script(ScriptKind::Transition, from, State::Wait, action));
                if up {
                    steps.push(forced(ScriptKind::StopBoth, from, State::Wait, action));
                }
                if self.open {
                    steps.push(Step::Mark(Mark::Traffic(false)));
                }
                match wait {
                    Some(label) => {
                        steps.push(Step::Mark(Mark::Phase(LightPhase::Waiting(label))));
                        steps.push(Step::Mark(Mark::Status(State::Wait, Readiness::NotReady)));
                    }
                    None => {
                        if self.checkers.contains(&CheckerClass::Pre) {
                            steps.push(Step::Mark(Mark::Act(Action::DisableCheckers(CheckerClass::Pre))));
                        }
                        steps.push(script(ScriptKind::Poststop, State::Wait, State::Stop, action));
                        steps.push(script(ScriptKind::Transition, State::Wait, State::Stop, action));
                        steps.push(Step::Mark(Mark::Phase(LightPhase::Stopped)));
                        steps.push(Step::Mark(Mark::Status(State::Stop, Readiness::NotReady)));
                        if then_start {
                            steps.push(Step::Mark(Mark::Start));
                        }
                    }
                }
                self.started.remove(&CheckerClass::Both);
                self.core.seq.prepend(steps);
            }
        }
    }
}

impl Phases for LightEngine {
    type Mark = Mark;
    fn core(&mut self) -> &mut Core<Mark> {
        &mut self.core
    }
    fn on_script(&mut self, run: &ScriptRun) {
        match run.script {
            ScriptKind::StartBoth => {
                self.started.insert(CheckerClass::Both);
            }
            ScriptKind::StopBoth if !run.force => {
                self.started.remove(&CheckerClass::Both);
            }
            _ => {}
        }
    }
    fn apply_mark(&mut self, mark: Mark) {
        self.apply(mark);
    }
    fn decide(&mut self) -> bool {
        Self::decide(self)
    }
}

impl Automaton for LightEngine {
    /// A light module has no peer.
    fn peer_status(&self) -> Option<Status> {
        None
    }

    /// Resources for `state -v`.
    fn resources(&self) -> BTreeMap<String, String> {
        let on = |b: bool| if b { "on" } else { "off" }.to_string();
        let mut out = self.core.resource_strings();
        out.insert("usersetting.errd".into(), on(self.errd));
        out.insert("usersetting.checker".into(), on(self.checker));
        out.extend(self.load.clone());
        out
    }

    /// Local status.
    fn status(&self) -> Status {
        self.core.status
    }

    /// Script results and checker resources; heartbeats and replication do not apply.
    fn handle_input(&mut self, now: Instant, input: Input) {
        self.core.now = now;
        match input {
            Input::ScriptDone { run, success } => {
                if self.core.seq.complete(run) && !success {
                    self.core.log(LogLevel::E, format!("Script run {} ended with an error", run.0));
                }
            }
            Input::Resource { name, state, by } => self.on_resource(name, state, &by),
            Input::FarmLoad { group, owned } => {
                self.load.insert(format!("{group}_0"), (u32::from(owned) * 100 / 256).to_string());
            }
            Input::EffectDone { run, result } if self.script_traffic == Some(run) => {
                self.script_traffic = None;
                if let Err(why) = result {
                    self.core.log(LogLevel::C, format!("Traffic not changed: {why}"));
                }
            }
            Input::EffectDone { run, result } if self.traffic_run.is_some_and(|(r, _)| r == run) => {
                let opening = self.traffic_run.take().is_some_and(|(_, on)| on);
                self.core.seq.complete(run);
                match result {
                    Ok(()) => {}
                    // Not serving without its traffic: stop, as a failed start would.
                    Err(why) if opening => {
                        self.core.log(LogLevel::C, format!("Traffic not opened: {why}"));
                        self.core.seq.clear_pending();
                        self.pending.push_back((CommandKind::Stop, "vipd".into()));
                    }
                    Err(why) => self.core.log(LogLevel::C, format!("Traffic not closed: {why}")),
                }
            }
            _ => {}
        }
        self.drive();
    }

    /// Periodic evaluation of the failover rules.
    fn handle_timeout(&mut self, now: Instant) {
        self.core.now = now;
        self.evaluate_rules(false);
        self.drive();
    }

    /// start, stop, forcestop, restart, stopstart.
    fn command(&mut self, now: Instant, cmd: Command) -> Result<(), CommandError> {
        self.core.now = now;
        let started = self.phase != LightPhase::Stopped;
        let name = cmd.kind.name();
        match cmd.kind {
            CommandKind::Prim { .. }
            | CommandKind::Second { .. }
            | CommandKind::Primforce
            | CommandKind::Swap(_)
            | CommandKind::Failover(_) => {
                return Err(CommandError::NotMirror(name));
            }
            CommandKind::Errd(on) => {
                self.errd = on;
                return Ok(());
            }
            CommandKind::Checker(on) => {
                self.checker = on;
                return Ok(());
            }
            CommandKind::Traffic(on) => return self.traffic_command(on, &cmd),
            CommandKind::Start if started => return Err(CommandError::AlreadyStarted(self.core.status)),
            CommandKind::Stop | CommandKind::Forcestop | CommandKind::Stopstart | CommandKind::Restart if !started => {
                return Err(CommandError::NotStarted);
            }
            CommandKind::Restart if self.core.status != Status::new(State::Up, Readiness::Ready) => {
                return Err(CommandError::NotReady { cmd: "restart", status: self.core.status });
            }
            _ => {}
        }
        let who = cmd.caller();
        self.core.log(LogLevel::U, format!("Action {name} {who}"));
        let mut kind = cmd.kind;
        if cmd.identity.is_none() {
            self.core.loops.reset();
        } else if matches!(kind, CommandKind::Restart | CommandKind::Stopstart) && self.core.maxloop_exceeded() {
            self.core.log(LogLevel::C, "Action stop called by maxloop");
            kind = CommandKind::Stop;
        }
        match kind {
            CommandKind::Start => {
                self.core.seq.extend([Step::Mark(Mark::Start)]);
            }
            CommandKind::Stop | CommandKind::Forcestop | CommandKind::Stopstart => {
                if kind == CommandKind::Forcestop {
                    if let Some(run) = self.core.seq.awaiting.take() {
                        self.core.emit(Action::CancelScript(run));
                    }
                }
                self.core.seq.clear_pending();
                self.core.seq.extend([Step::Mark(Mark::Stop {
                    action: if kind == CommandKind::Stopstart { ScriptAction::Stopstart } else { ScriptAction::Stop },
                    wait: None,
                    then_start: kind == CommandKind::Stopstart,
                    force_only: kind == CommandKind::Forcestop,
                })]);
            }
            _ => {
                // restart
                self.core.seq.extend([
                    Step::Mark(Mark::Status(State::Up, Readiness::Transient)),
                    Step::Mark(Mark::Act(Action::DisableCheckers(CheckerClass::Both))),
                    script(ScriptKind::StopBoth, State::Up, State::Up, ScriptAction::Restart),
                    script(ScriptKind::StartBoth, State::Up, State::Up, ScriptAction::Restart),
                    Step::Mark(Mark::Act(Action::EnableCheckers(CheckerClass::Both))),
                    Step::Mark(Mark::Status(State::Up, Readiness::Ready)),
                ]);
            }
        }
        self.phase = if self.phase == LightPhase::Stopped && !self.core.seq.busy() { LightPhase::Stopped } else { self.phase.clone() };
        self.drive();
        Ok(())
    }

    /// Next effect.
    fn poll_action(&mut self) -> Option<Action> {
        self.core.actions.pop_front()
    }

    /// The failover rules' next evaluation, if any.
    fn poll_timeout(&self) -> Option<Instant> {
        self.core.rules.due().filter(|_| self.phase != LightPhase::Stopped)
    }
    fn metrics(&self) -> super::EngineMetrics {
        self.core.metrics()
    }
}

#[cfg(test)]
mod tests;
