//! The mirror module automaton (reference §3): two nodes, STOP / WAIT /
//! ALONE / PRIM / SECOND, each NotReady / Transient / Ready.
//!
//! Methods by role (quinn's order): getters (`status`, `persistent`, ...),
//! `handle_input` / `handle_timeout` for events, `command` for administrator
//! commands (the only call that can fail, with a sentence for the CLI), and
//! `poll_action` / `poll_timeout` for outputs.
//!
//! Decisions are level-triggered: after every event, once no transition plan
//! is running, [`decide`] looks at the current phase, the peer's last
//! heartbeat and the resources, and starts the next plan if one is due. So a
//! late or duplicated event cannot push the machine into a state the current
//! facts do not justify.

mod commands;
mod decide;
mod expand;
mod inputs;
mod marks;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::config::EngineConfig;
use super::core::{self, Automaton, Core, Phases};
use super::{
    Action, CheckerClass, Command, CommandError, DataStatus, Heartbeat, Input, LogLevel, Persistent, ReplicaRole, Role, RunId, ScriptKind,
    ScriptRun, Status, SwapKind,
};
use marks::Mark;

/// How a start was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::engine) enum Force {
    /// `prim [fullsync]`.
    Prim { fullsync: bool },
    /// `primforce`.
    Primforce,
    /// `second [fullsync]`.
    Second { fullsync: bool },
}

/// Why the module is blocked in WAIT (NotReady).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WaitReason {
    /// Local data may be stale and the peer is absent (`notuptodate_server`).
    NotUptodate,
    /// Neither node has ever been primary: an administrator must run `prim`.
    FirstStart,
    /// `failover="off"`: the secondary never promotes itself.
    FailoverOff,
    /// A checker wait rule (its label).
    Rule(String),
    /// The split-brain witness was unreachable.
    SplitBrain,
    /// The primary replicates in degraded mode (`degraded_server`).
    PeerDegraded,
    /// The peer has the newer data: wait for it to become primary.
    PeerLeads,
}

/// Sub-states of SECOND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::engine) enum SecondPhase {
    /// Copying from the primary (Transient).
    Reintegrating,
    /// In sync, ready to fail over.
    Ready,
    /// Former primary in a swap, waiting for the peer to take over.
    AwaitingPrimary(SwapKind),
}

/// What the engine is doing, with per-phase data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::engine) enum Phase {
    Stopped,
    /// WAIT (Transient) after prestart, choosing a role.
    Starting {
        force: Option<Force>,
    },
    /// WAIT (NotReady).
    Waiting(WaitReason),
    Alone {
        via_failover: bool,
        degraded: bool,
    },
    Prim,
    Second(SecondPhase),
    /// All heartbeats lost: the split-brain witness is being asked.
    AskingWitness {
        run: RunId,
        why: WitnessFor,
        resume: Box<Self>,
    },
    /// A transition plan is running; its last step enters the next phase.
    Busy,
}

/// Why the split-brain witness is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::engine) enum WitnessFor {
    /// PRIM lost every heartbeat.
    PrimLostPeer,
    /// PRIM's secondary stopped answering on the replication link.
    PrimLostReplication,
    /// SECOND lost every heartbeat: fail over only with the witness.
    SecondLostPeer,
    /// ALONE lost a peer that was a SECOND able to fail over: stay only with the witness.
    AloneLostPeer,
    /// A start would go ALONE without having heard the peer.
    StartAlone,
}

/// Work to do once the running plan is over.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Intent {
    /// A checker wait rule fired.
    RuleWait(String),
    /// A command issued by a detector or a rule, deferred while a plan runs.
    Command(Command),
}

/// State of one heartbeat network.
#[derive(Debug, Clone, Default)]
struct LanState {
    last_rx: Option<Instant>,
    up: bool,
}

/// Resources the node holds, so stop plans undo exactly what was done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Held {
    vip: bool,
    repl: Option<ReplicaRole>,
    /// start_xx scripts run without their stop_xx.
    app: BTreeSet<CheckerClass>,
    /// Parts whose graceful stop_xx ran (or was interrupted) but not yet
    /// their forced pass: a forcestop must still run `stop_xx force` for them.
    stopping: BTreeSet<CheckerClass>,
    /// A stop plan has begun and its forced pass has not run yet.
    stop_in_progress: bool,
    /// Enabled checker classes.
    checkers: BTreeSet<CheckerClass>,
    /// The VIP change the plan waits for: its run and `true` for a set.
    vip_run: Option<(RunId, bool)>,
    /// The quarantine the plan waits for before its reintegration.
    quarantine_run: Option<RunId>,
}

/// What belongs to one start, from the `start` command until the module
/// stops: it spans the start plan's scripts (phase `Busy`), so it cannot
/// live in [`Phase::Starting`]. A start sets it again (`Mark::Start`).
#[derive(Debug, Clone, Default)]
struct StartContext {
    /// How long to listen for the peer before deciding it is absent.
    listen_until: Option<Instant>,
    /// Role before this start (for `defaultprim="lastprim"`).
    role_before_start: Option<Role>,
    /// `defaultprim` already asked for its swap since this start: it asks
    /// once, so two nodes that both were primary before (lastprim) do not
    /// swap back and forth.
    defaultprim_done: bool,
    /// The administrator's `prim`/`second`/`primforce` of a start that a
    /// wait rule interrupted: Implicit_wakeup resumes that start, not a plain one.
    rule_held_force: Option<Force>,
}

/// How far the peer's reports can be trusted for decisions that end a
/// split brain or an orphaned PRIM (see [`Heartbeat::heard`]).
#[derive(Debug, Clone, Default)]
struct PeerTrust {
    /// A report counts only if it heard our heartbeat of at least this
    /// seq: raised when the peer is heard again after a loss, when this
    /// node enters ALONE and when it loses its secondary.
    fresh_from: u64,
    /// The peer's last report said it held primary resources.
    peer_was_primary: bool,
    /// Since when the peer's heartbeats say it does not hear us.
    peer_deaf_since: Option<Instant>,
    /// After a stall of this node, no decision is made until the peer's
    /// report is fresh (it heard a heartbeat sent after the stall) or every
    /// heartbeat is lost: the reports read from the socket backlog describe
    /// a past the peer has left (a swap it abandoned, a state it changed).
    /// Bounded by one heartbeat timeout (a one-way cut never gets fresh).
    stall_hold: Option<Instant>,
}

/// A reintegration's progress as the replicator last reported it, and
/// the window its mean rate is measured over.
#[derive(Debug, Clone, Copy)]
struct Progress {
    done: u64,
    total: u64,
    eta: Option<u64>,
    /// The first report of this reintegration: when, bytes done then.
    first: (Instant, u64),
    /// When the last report came.
    at: Instant,
}

/// One mirror module on one node: see the `engine::mirror` module docs.
#[derive(Debug, Clone)]
pub struct MirrorEngine {
    core: Core<Mark>,
    incarnation: u64,
    phase: Phase,
    p: Persistent,
    /// The previous run ended without a clean stop (crash or power loss).
    unclean: bool,
    lans: Vec<LanState>,
    /// The peer's newest heartbeat.
    peer: Option<Heartbeat>,
    /// How far the peer's reports can be trusted.
    trust: PeerTrust,
    /// What belongs to the current start (from `start` to the role).
    start: StartContext,
    held: Held,
    pending: VecDeque<Intent>,
    hb_seq: u64,
    next_pulse: Instant,
    /// SECOND asks its primary to swap.
    swap_request: Option<SwapKind>,
    /// "Split brain recovery: staying alone" was logged for this episode.
    split_logged: bool,
    /// The reintegration's last progress report.
    progress: Option<Progress>,
    /// Replication is degraded on this primary (resource `rfs.degraded`),
    /// until the module stops; set at once so heartbeats sent during the
    /// PRIM→ALONE transition already tell the secondary.
    degraded: bool,
    /// The witness was asked since the peer was last heard.
    witness_asked: bool,
    /// The witness answered a start that would go ALONE unheard; cleared
    /// when the decision is made or the peer is heard.
    witness_cleared: bool,
    /// Next tick of the data generation while ALONE (see [`Self::alone_tick`]).
    next_gen_tick: Option<Instant>,
    /// PRIM lost its secondary on the replication link (no witness): it
    /// goes on ALONE only once a fresh heartbeat says the peer is not
    /// primary, or once every heartbeat is lost.
    secondary_lost: bool,
    /// Reintegrations failed in a row (a full disk on this node, say), and
    /// when the next may begin: each failure doubles the wait (2 s … 5 min).
    reint_failures: u32,
    reint_retry_at: Option<Instant>,
}

impl MirrorEngine {
    /// A module engine at `now`, from what the node persisted (`Persistent::default()`
    /// for a newly installed module). `incarnation` must grow at each daemon start.
    pub fn new(cfg: EngineConfig, persisted: Persistent, incarnation: u64, now: Instant) -> Self {
        let lans = vec![LanState::default(); cfg.lans.len().max(1)];
        Self {
            unclean: persisted.running,
            core: Core::new(cfg, now),
            incarnation,
            phase: Phase::Stopped,
            p: persisted,
            lans,
            peer: None,
            trust: PeerTrust::default(),
            start: StartContext::default(),
            held: Held::default(),
            pending: VecDeque::new(),
            hb_seq: 0,
            next_pulse: now,
            swap_request: None,
            split_logged: false,
            progress: None,
            next_gen_tick: None,
            degraded: false,
            witness_asked: false,
            witness_cleared: false,
            secondary_lost: false,
            reint_failures: 0,
            reint_retry_at: None,
        }
    }

    /// While ALONE without a secondary in sync, the data generation advances
    /// every ten pulses. Two nodes that went ALONE from the same generation
    /// (a split brain, or a failover racing a crash) then compare by how long
    /// each went on writing alone, so after a double failure the one that
    /// kept the application longest, and so wrote last, leads.
    fn alone_tick(&self) -> Duration {
        (self.core.cfg.pulse() * 10).max(Duration::from_millis(100))
    }

    // ---- getters -------------------------------------------------------

    /// The configuration.
    pub const fn config(&self) -> &EngineConfig {
        &self.core.cfg
    }

    /// What is persisted.
    pub const fn persistent(&self) -> &Persistent {
        &self.p
    }

    /// The VIP is configured by this node.
    pub const fn holds_vip(&self) -> bool {
        self.held.vip
    }

    /// Replication role held, if any.
    pub const fn replication(&self) -> Option<ReplicaRole> {
        self.held.repl
    }

    /// Why the module waits, if it is WAIT (NotReady).
    pub fn wait_reason(&self) -> Option<String> {
        match &self.phase {
            Phase::Waiting(r) => Some(format!("{r:?}")),
            _ => None,
        }
    }

    // ---- internals -------------------------------------------------------

    fn any_lan_up(&self) -> bool {
        self.lans.iter().any(|l| l.up)
    }

    /// The peer's last heartbeat while at least one network carries it.
    fn live_peer(&self) -> Option<&Heartbeat> {
        if self.any_lan_up() {
            self.peer.as_ref()
        } else {
            None
        }
    }

    fn peer_primary(&self) -> bool {
        self.live_peer().is_some_and(|h| h.primary_active)
    }

    /// Holds VIP, application or replication source.
    fn primary_active(&self) -> bool {
        self.held.vip || self.held.repl == Some(ReplicaRole::Primary) || self.held.app.contains(&CheckerClass::Prim)
    }

    fn data_status(&self) -> DataStatus {
        DataStatus {
            epoch: self.p.epoch,
            gen: self.p.gen,
            uptodate: self.p.uptodate,
            partial: self.p.partial,
            last_role: self.p.last_role,
            unclean: self.unclean,
            wrote_alone: self.p.wrote_alone,
        }
    }

    /// The peer's newest heartbeat was sent after it received our
    /// heartbeat `fresh_from` (so it is not a report queued from before).
    fn peer_fresh(&self) -> bool {
        self.peer.as_ref().and_then(|p| p.heard).is_some_and(|(inc, seq)| inc == self.incarnation && seq >= self.trust.fresh_from)
    }

    /// From now on, only peer reports that heard our next heartbeat count.
    fn require_fresh(&mut self) {
        self.trust.fresh_from = self.hb_seq + 1;
    }

    fn heartbeat(&mut self) -> Heartbeat {
        self.hb_seq += 1;
        Heartbeat {
            node: self.core.cfg.node.clone(),
            incarnation: self.incarnation,
            seq: self.hb_seq,
            status: self.core.status,
            primary_active: self.primary_active(),
            data: self.data_status(),
            failover: self.p.failover,
            full_sync_required: self.p.full_sync_required,
            degraded: self.degraded,
            alone_after_failover: self.p.last_role == Some(Role::AloneAfterFailover),
            swap_request: self.swap_request,
            handing_over: matches!(self.phase, Phase::Second(SecondPhase::AwaitingPrimary(_))),
            hears_peer: self.any_lan_up(),
            resources: self.core.resources.clone(),
            heard: self.peer.as_ref().map(|p| (p.incarnation, p.seq)),
        }
    }

    fn send_heartbeat(&mut self) {
        let hb = self.heartbeat();
        self.core.emit(Action::SendHeartbeat(hb));
        self.next_pulse = self.core.now + self.core.cfg.pulse();
    }

    /// Runs the plan, and decisions when it is over, until it waits.
    fn drive(&mut self) {
        core::drive(self);
    }

    /// Records which application parts are started (start_xx/stop_xx emitted).
    fn track_script(&mut self, script: ScriptKind, force: bool) {
        let part = match script {
            ScriptKind::StartPrim | ScriptKind::StopPrim => CheckerClass::Prim,
            ScriptKind::StartSecond | ScriptKind::StopSecond => CheckerClass::Second,
            ScriptKind::StartSec | ScriptKind::StopSec => CheckerClass::Sec,
            ScriptKind::StartBoth | ScriptKind::StopBoth => CheckerClass::Both,
            _ => return,
        };
        match script {
            ScriptKind::StartPrim | ScriptKind::StartSecond | ScriptKind::StartSec | ScriptKind::StartBoth => {
                self.held.app.insert(part);
            }
            _ if !force => {
                self.held.app.remove(&part);
                if self.held.stop_in_progress {
                    self.held.stopping.insert(part);
                }
            }
            _ => {}
        }
    }

    /// Status change: state-changed action, log line, immediate heartbeat.
    fn set_status(&mut self, to: Status) {
        if self.core.set_status(to) {
            self.send_heartbeat();
        }
    }
}

impl Phases for MirrorEngine {
    type Mark = Mark;
    fn core(&mut self) -> &mut Core<Mark> {
        &mut self.core
    }
    fn on_script(&mut self, run: &ScriptRun) {
        self.track_script(run.script, run.force);
    }
    fn apply_mark(&mut self, mark: Mark) {
        Self::apply_mark(self, mark);
    }
    fn decide(&mut self) -> bool {
        Self::decide(self)
    }
}

impl Automaton for MirrorEngine {
    /// Local status.
    fn status(&self) -> Status {
        self.core.status
    }

    /// The peer's status as last heard, `None` when all heartbeats are lost.
    fn peer_status(&self) -> Option<Status> {
        self.live_peer().map(|h| h.status)
    }

    /// Resources: `heartbeat.*`, `rfs.*`, `usersetting.*`, checker resources.
    fn resources(&self) -> BTreeMap<String, String> {
        let mut out = self.core.resource_strings();
        for (i, l) in self.core.cfg.lans.iter().enumerate() {
            let up = self.lans.get(i).is_some_and(|s| s.up);
            out.insert(format!("heartbeat.{}", l.ident), if up { "up" } else { "down" }.into());
        }
        let onoff = |b: bool| if b { "up" } else { "down" }.to_string();
        out.insert("rfs.uptodate".into(), onoff(self.p.uptodate));
        out.insert("rfs.generation".into(), format!("{}.{}", self.p.epoch, self.p.gen));
        out.insert("rfs.degraded".into(), onoff(self.degraded));
        let on = |b: bool| if b { "on" } else { "off" }.to_string();
        out.insert("usersetting.failover".into(), on(self.p.failover));
        out.insert("usersetting.errd".into(), on(self.p.errd));
        out.insert("usersetting.checker".into(), on(self.p.checker));
        out.insert("state.local".into(), self.core.status.state.to_string());
        out.insert("state.remote".into(), self.live_peer().map_or_else(|| "UNKNOWN".into(), |h| h.status.state.to_string()));
        out.insert("heart.stopstartloop".into(), self.core.loops.count().to_string());
        if let Some(Progress { done, total, eta, .. }) = self.progress {
            let eta = eta.map_or(String::new(), |s| format!(", ETA {s} s"));
            out.insert("rfs.reintegration".into(), format!("{done}/{total} bytes{eta}"));
        }
        out
    }

    /// Feeds one event. Malformed or irrelevant input is logged (D) and dropped.
    fn handle_input(&mut self, now: Instant, input: Input) {
        self.core.now = now;
        match input {
            Input::Heartbeat { lan, hb } => self.on_heartbeat(lan, hb),
            Input::HeartbeatLost { lan } => {
                if lan < self.lans.len() {
                    self.lan_down(lan);
                }
            }
            Input::ScriptDone { run, success } => {
                if self.core.seq.complete(run) {
                    if !success {
                        self.core.log(LogLevel::E, format!("Script run {} ended with an error", run.0));
                    }
                } else {
                    self.core.log(LogLevel::D, format!("late result of script run {} ignored", run.0));
                }
            }
            Input::EffectDone { run, result } => self.on_effect_done(run, result),
            Input::WitnessResult { run, reachable } => self.on_witness(run, reachable),
            Input::Resource { name, state, by } => self.on_resource(name, state, &by),
            Input::Replication(ev) => self.on_replication(ev),
            Input::Stalled { lag } => self.on_stall(lag),
            Input::PersistFailed { reason } => self.on_persist_failed(&reason),
            // A mirror module has no farm group.
            Input::FarmLoad { .. } => {}
        }
        self.drive();
    }

    /// Time passed: heartbeat deadlines, pulses, the start listening window.
    fn handle_timeout(&mut self, now: Instant) {
        self.core.now = now;
        for i in 0..self.lans.len() {
            let timeout = self.core.cfg.lans.get(i).map_or(Duration::from_secs(30), |l| l.timeout);
            if self.lans[i].up && self.lans[i].last_rx.is_some_and(|t| now >= t + timeout) {
                self.lan_down(i);
            }
        }
        if self.start.listen_until.is_some_and(|t| now >= t) {
            self.start.listen_until = None;
        }
        if self.trust.stall_hold.is_some_and(|t| now >= t) {
            self.trust.stall_hold = None;
        }
        // The wait before the next reintegration is over: forget it, or the
        // deadline would stay due forever.
        if self.reint_retry_at.is_some_and(|t| now >= t) {
            self.reint_retry_at = None;
        }
        if now >= self.next_pulse {
            self.send_heartbeat();
        }
        self.tick_generation(now);
        self.evaluate_rules(false);
        self.drive();
    }

    /// An administrator (or detector, with an identity) command.
    fn command(&mut self, now: Instant, cmd: Command) -> Result<(), CommandError> {
        self.core.now = now;
        let r = self.apply_command(cmd);
        self.drive();
        r
    }

    /// The next effect to carry out.
    fn poll_action(&mut self) -> Option<Action> {
        self.core.actions.pop_front()
    }

    /// When to call `handle_timeout` next.
    fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_pulse;
        for (i, l) in self.lans.iter().enumerate() {
            if let (true, Some(rx), Some(cfg)) = (l.up, l.last_rx, self.core.cfg.lans.get(i)) {
                t = t.min(rx + cfg.timeout);
            }
        }
        if let Some(l) = self.start.listen_until {
            t = t.min(l);
        }
        if let Some(g) = self.next_gen_tick {
            t = t.min(g);
        }
        if let Some(h) = self.trust.stall_hold {
            t = t.min(h);
        }
        if let Some(r) = self.reint_retry_at.filter(|_| matches!(self.phase, Phase::Starting { .. })) {
            t = t.min(r);
        }
        if let Some(r) = self.core.rules.due().filter(|_| self.phase != Phase::Stopped) {
            t = t.min(r);
        }
        Some(t)
    }

    fn data_version(&self) -> Option<(u64, u64)> {
        Some((self.p.epoch, self.p.gen))
    }
    fn metrics(&self) -> super::EngineMetrics {
        let lans = self.core.cfg.lans.iter().enumerate().map(|(i, l)| (l.ident.clone(), self.lans.get(i).is_some_and(|s| s.up))).collect();
        super::EngineMetrics {
            lans,
            reintegration: self.progress.map(|p| (p.done, p.total)),
            reintegration_eta: self.progress.and_then(|p| p.eta),
            reintegration_rate: self.progress.and_then(|p| {
                let secs = p.at.saturating_duration_since(p.first.0).as_secs_f64();
                (secs >= 0.5).then(|| (p.done.saturating_sub(p.first.1) as f64 / secs) as u64)
            }),
            ..self.core.metrics()
        }
    }
}
