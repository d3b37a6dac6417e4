//! What every module automaton shares, written once: the configuration and
//! the time of the current call, the status, the plan sequencer, the action
//! queue, the checker resources, the failover rule machine and the maxloop
//! guard, plus the loop that runs a plan and asks the automaton for its next
//! decision. Mirror and light (and the farm to come) keep only what is their
//! own: their phases, marks and decisions.
//!
//! [`Automaton`] is the one public face the runtime and the simulation drive.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::config::EngineConfig;
use super::loops::LoopGuard;
use super::plan::{Next, Sequencer};
use super::rules::RuleMachine;
use super::{Action, Command, CommandError, Input, LogLevel, Readiness, ResourceState, ScriptRun, State, Status};

/// A module automaton: time and events go in, actions come out.
///
/// **Contract.** No I/O, no clock reads, no threads, no randomness. The
/// caller passes `now` into every call, feeds [`Input`]s and [`Command`]s,
/// and after each call drains [`Automaton::poll_action`] until it returns
/// `None`, carrying out each [`Action`] in order. Then it sleeps until
/// [`Automaton::poll_timeout`] or the next input and calls
/// [`Automaton::handle_timeout`]; early or spurious calls are harmless.
pub trait Automaton: Send {
    /// Feeds one event. Malformed or irrelevant input is logged and dropped.
    fn handle_input(&mut self, now: Instant, input: Input);
    /// Time passed: deadlines, pulses, the failover rules' period.
    fn handle_timeout(&mut self, now: Instant);
    /// An administrator's (or a detector's, with an identity) command; the
    /// only call that can fail, with a sentence for the CLI.
    fn command(&mut self, now: Instant, cmd: Command) -> Result<(), CommandError>;
    /// The next effect to carry out, in order.
    #[must_use]
    fn poll_action(&mut self) -> Option<Action>;
    /// When to call [`Automaton::handle_timeout`] next.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
    /// The local status.
    fn status(&self) -> Status;
    /// The peer's status as last heard; `None` without a peer or when every
    /// heartbeat is lost.
    fn peer_status(&self) -> Option<Status> {
        None
    }
    /// Resources for `state -v` (`heartbeat.*`, `rfs.*`, `usersetting.*`,
    /// checker resources).
    fn resources(&self) -> BTreeMap<String, String>;
    /// The version (epoch, generation) of the replicated data this node
    /// holds, for automata that replicate (the lease witness compares it).
    fn data_version(&self) -> Option<(u64, u64)> {
        None
    }
    /// Numbers for monitoring, typed (nothing parses `state -v` back).
    fn metrics(&self) -> EngineMetrics {
        EngineMetrics::default()
    }
}

/// What an automaton reports for monitoring (`/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineMetrics {
    /// Each heartbeat network (its `ident`) and whether the peer is heard on it.
    pub lans: Vec<(String, bool)>,
    /// Checker resources and their state.
    pub resources: Vec<(String, ResourceState)>,
    /// Error-triggered actions counted by the maxloop guard (`heart.stopstartloop`).
    pub loops: u32,
    /// A reintegration in progress: bytes copied and to copy.
    pub reintegration: Option<(u64, u64)>,
    /// Its estimated seconds left, when the replicator can tell.
    #[serde(default)]
    pub reintegration_eta: Option<u64>,
    /// Its mean rate in bytes per second since its first progress report
    /// (once two reports at least half a second apart arrived).
    #[serde(default)]
    pub reintegration_rate: Option<u64>,
    /// Times this node took the application over from its primary
    /// (SECOND → ALONE) since the engine started.
    #[serde(default)]
    pub failovers: u64,
}

/// A boxed automaton is one, so a daemon can hold modules of every kind
/// behind one type.
impl<A: Automaton + ?Sized> Automaton for Box<A> {
    fn handle_input(&mut self, now: Instant, input: Input) {
        (**self).handle_input(now, input);
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }
    fn command(&mut self, now: Instant, cmd: Command) -> Result<(), CommandError> {
        (**self).command(now, cmd)
    }
    fn poll_action(&mut self) -> Option<Action> {
        (**self).poll_action()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn status(&self) -> Status {
        (**self).status()
    }
    fn peer_status(&self) -> Option<Status> {
        (**self).peer_status()
    }
    fn resources(&self) -> BTreeMap<String, String> {
        (**self).resources()
    }
    fn data_version(&self) -> Option<(u64, u64)> {
        (**self).data_version()
    }
    fn metrics(&self) -> EngineMetrics {
        (**self).metrics()
    }
}

/// The shared half of every automaton (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct Core<M> {
    pub(crate) cfg: EngineConfig,
    /// The `now` of the call being handled.
    pub(crate) now: Instant,
    pub(crate) status: Status,
    pub(crate) seq: Sequencer<M>,
    pub(crate) actions: VecDeque<Action>,
    /// Checker resources as last reported.
    pub(crate) resources: BTreeMap<String, ResourceState>,
    /// Generated and user failover rules with their stability state.
    pub(crate) rules: RuleMachine,
    pub(crate) loops: LoopGuard,
    /// SECOND → ALONE transitions (takeovers) so far.
    pub(crate) failovers: u64,
}

impl<M> Core<M> {
    /// A stopped module's core.
    pub(crate) fn new(cfg: EngineConfig, now: Instant) -> Self {
        let rules = RuleMachine::new(
            if cfg.failover_rules.extends { &cfg.rules } else { &[] },
            &cfg.failover_rules.user,
            cfg.failover_rules.timing,
        );
        Self {
            rules,
            cfg,
            now,
            status: Status::new(State::Stop, Readiness::NotReady),
            seq: Sequencer::default(),
            actions: VecDeque::new(),
            resources: BTreeMap::new(),
            loops: LoopGuard::default(),
            failovers: 0,
        }
    }

    /// Queues a module log line.
    pub(crate) fn log(&mut self, level: LogLevel, message: impl Into<String>) {
        self.actions.push_back(Action::Log { level, message: message.into() });
    }

    /// Queues an effect.
    pub(crate) fn emit(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// Changes the status with its action and log line; false if unchanged.
    pub(crate) fn set_status(&mut self, to: Status) -> bool {
        if to == self.status {
            return false;
        }
        let from = self.status;
        self.status = to;
        if from.state == State::Second && to.state == State::Alone {
            self.failovers += 1;
        }
        self.actions.push_back(Action::StateChanged { from, to });
        self.log(LogLevel::E, format!("Local state {to}"));
        true
    }

    /// Records a checker resource with its log line; false if unchanged.
    pub(crate) fn record_resource(&mut self, name: String, state: ResourceState, by: &str) -> bool {
        if self.resources.get(&name) == Some(&state) {
            return false;
        }
        self.log(LogLevel::E, format!("Resource {name} set to {state} by {by}"));
        self.resources.insert(name, state);
        true
    }

    /// Counts one error-triggered action against `maxloop`; true when it
    /// is one too many and the module must stop instead.
    pub(crate) fn maxloop_exceeded(&mut self) -> bool {
        self.loops.exceeded(self.now, self.cfg.maxloop, self.cfg.loop_interval)
    }

    /// The metrics every automaton has.
    pub(crate) fn metrics(&self) -> EngineMetrics {
        EngineMetrics {
            resources: self.resources.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            loops: self.loops.count(),
            failovers: self.failovers,
            ..EngineMetrics::default()
        }
    }

    /// Checker resources as strings, the base of every `state -v`.
    pub(crate) fn resource_strings(&self) -> BTreeMap<String, String> {
        self.resources.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
    }
}

/// The automaton-specific half that [`drive`] calls back.
pub(super) trait Phases {
    /// The automaton's plan marks.
    type Mark;
    fn core(&mut self) -> &mut Core<Self::Mark>;
    /// A script run is about to be emitted (track started parts).
    fn on_script(&mut self, run: &ScriptRun);
    /// Applies one mark of the running plan.
    fn apply_mark(&mut self, mark: Self::Mark);
    /// No plan runs: start the next one if one is due; true if it did
    /// something that needs another turn.
    fn decide(&mut self) -> bool;
}

/// Runs the plan, and decisions when it is over, until it waits for a
/// result or nothing is left to do.
pub(super) fn drive<P: Phases>(p: &mut P) {
    for _ in 0..1_000 {
        let core = p.core();
        let scripts = core.cfg.scripts;
        match core.seq.next(scripts) {
            Next::Run(run) => {
                p.on_script(&run);
                let core = p.core();
                core.log(LogLevel::S, format!("Script {}{}", if run.force { "force " } else { "" }, run.script.file_name()));
                core.emit(Action::RunScript(run));
                return;
            }
            Next::Mark(m) => p.apply_mark(m),
            Next::Idle => {
                if p.core().seq.busy() || !p.decide() {
                    return;
                }
            }
        }
    }
    p.core().log(LogLevel::C, "engine decision loop did not settle; waiting for the next event");
}
