//! Deterministic simulation of a two-node mirror cluster.
//!
//! Two real [`MirrorEngine`]s run against fakes: scripts finish after a drawn
//! delay, reintegration copies the primary's data after a delay, the VIP is a
//! flag, and heartbeats cross a seeded network with loss, delay and
//! partitions per direction and per network. Time is simulated (an event
//! queue), so an hour of cluster life takes milliseconds, and a seed replays
//! the same run exactly.
//!
//! The application is modelled as writes with unique ids made by the primary
//! while it is Ready. A write made while PRIM reaches the secondary only if
//! the replication session is up; otherwise it blocks (as a real synchronous
//! write would) until the primary drops its secondary.
//!
//! After every event the invariants of the issue are checked; see
//! [`SimCluster::violations`].

use crate::engine::Automaton as _;
mod clock;
mod effects;
mod rng;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

pub use rng::Rng;

use crate::engine::DefaultPrim;
use crate::engine::{
    Command, CommandKind, EngineConfig, Heartbeat, Input, MirrorEngine, Persistent, ReplicaRole, ReplicationEvent, ResourceState, RunId,
    State, Status,
};

/// Knobs of a simulated cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Heartbeat pulse.
    pub pulse: Duration,
    /// Heartbeat timeout.
    pub timeout: Duration,
    /// Number of heartbeat networks (network 0 also carries replication).
    pub lans: usize,
    /// A split-brain witness checker is configured.
    pub splitbrain: bool,
    /// `defaultprim`.
    pub defaultprim: DefaultPrim,
    /// Longest script run.
    pub max_script: Duration,
    /// Duration of a reintegration.
    pub reintegration: Duration,
    /// Heartbeat loss, per million packets.
    pub loss_ppm: u32,
    /// Interval between application writes on the primary.
    pub write_interval: Duration,
    /// Checkers with generated rules run on both nodes: `tcp.app` (restart,
    /// while primary) and `ping.gw` (wait, from prestart); their results
    /// follow [`Op::Resource`].
    pub checkers: bool,
}

/// The simulated checkers: resource and the class that runs it.
pub(crate) const CHECKERS: [(&str, crate::engine::CheckerClass); 2] =
    [("tcp.app", crate::engine::CheckerClass::Prim), ("ping.gw", crate::engine::CheckerClass::Pre)];

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            pulse: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
            lans: 2,
            splitbrain: false,
            defaultprim: DefaultPrim::Alone,
            max_script: Duration::from_millis(150),
            reintegration: Duration::from_millis(400),
            loss_ppm: 20_000,
            write_interval: Duration::from_millis(150),
            checkers: false,
        }
    }
}

/// What the schedule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Let time pass.
    Advance(Duration),
    /// Cut heartbeats (and replication, on network 0) from `from` to the other
    /// node on network `lan` (`None` = all networks).
    Cut {
        /// Sender side.
        from: usize,
        /// Network, or all.
        lan: Option<usize>,
    },
    /// Cut network `lan` (`None` = all) in both directions at once.
    Partition {
        /// Network, or all.
        lan: Option<usize>,
    },
    /// Restore every network in one direction only (from `from`): a heal
    /// where one side hears the other a moment before it is heard.
    HealFrom {
        /// Sender side whose networks come back.
        from: usize,
    },
    /// Restore every network in both directions.
    Heal,
    /// Power loss of a node: its engine is gone, its VIP too.
    Crash(usize),
    /// Reboot of a crashed node: a new engine from its persisted state.
    Restart(usize),
    /// An administrator command on a node.
    Admin(usize, CommandKind),
    /// Witness reachability from a node.
    Witness(usize, bool),
    /// Unrecoverable replication error on a node (degraded if primary).
    ReplicationFailure(usize),
    /// What a simulated checker of a node finds from now on (`up`).
    Resource(usize, usize, bool),
    /// Clients reach only this node's VIP (`None` = whichever holds it).
    Clients(Option<usize>),
    /// The node's runtime is not scheduled for this long (a VM pause, a
    /// SIGSTOP): its inputs wait, then arrive in a burst, after the runtime
    /// has told its engine of the stall (as the real runtime does).
    Stall(usize, Duration),
}

/// One node of the simulation.
#[derive(Debug)]
struct SimNode {
    name: String,
    engine: Option<MirrorEngine>,
    persisted: Persistent,
    incarnation: u64,
    vip: bool,
    repl: Option<ReplicaRole>,
    data: BTreeSet<u64>,
    witness: bool,
    /// `prim`/`primforce` was used since the last STOP: stale data allowed.
    forced: bool,
    /// Reintegration in flight (token).
    reint: Option<u64>,
    /// Primary through a forced start (until it leaves the primary role).
    forced_primary: bool,
    /// What each simulated checker finds (index in [`CHECKERS`]).
    checks: [bool; 2],
    /// Checker classes the engine enabled.
    classes: BTreeSet<crate::engine::CheckerClass>,
    /// The engine's word on unreplicated writes.
    gate: crate::engine::UnreplicatedWrites,
    /// `WroteAlone` was reported since the gate last opened.
    reported: bool,
    /// Paused (stalled) until this time: its events wait.
    stalled_until: Option<Instant>,
    /// Writes this node acknowledged without its peer since the pair last formed.
    alone_writes: BTreeSet<u64>,
}

#[derive(Debug, Clone)]
enum Event {
    Deliver {
        to: usize,
        lan: usize,
        incarnation: u64,
        hb: Box<Heartbeat>,
    },
    Script {
        node: usize,
        incarnation: u64,
        run: RunId,
    },
    /// An effect the engine waits for ends (a VIP change, a quarantine);
    /// `off`: a VIP is gone only now (a removal takes effect when done, a
    /// set from its request).
    Effect {
        node: usize,
        incarnation: u64,
        run: RunId,
        off: bool,
    },
    Witness {
        node: usize,
        incarnation: u64,
        run: RunId,
    },
    Reintegrated {
        node: usize,
        token: u64,
    },
    /// A checker reports (index in [`CHECKERS`], state).
    Resource {
        node: usize,
        incarnation: u64,
        check: usize,
        state: ResourceState,
    },
    SecondaryLost {
        node: usize,
        incarnation: u64,
    },
    /// An administrator command that waited for a stalled runtime.
    Admin {
        node: usize,
        incarnation: u64,
        kind: CommandKind,
    },
    Write,
}

/// A queued event, ordered by time then insertion.
#[derive(Debug)]
struct Queued(Instant, u64, Event);

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

/// Two mirror engines, fakes and a network. See the [module docs](self).
#[derive(Debug)]
pub struct SimCluster {
    cfg: SimConfig,
    base: Instant,
    now: Instant,
    rng: Rng,
    nodes: [SimNode; 2],
    queue: BinaryHeap<Reverse<Queued>>,
    qseq: u64,
    /// `cut[from][lan]`.
    cut: [Vec<bool>; 2],
    /// Replication session primary→secondary is established.
    session: bool,
    next_write: u64,
    /// Acknowledged writes every later primary must have.
    required: BTreeSet<u64>,
    /// Writes acknowledged since the replication session last broke: a split
    /// brain (both nodes primary at once) may legitimately lose them, since a
    /// ping witness cannot tell an asymmetric partition from a dead peer.
    at_risk: Vec<u64>,
    /// Last time heartbeat flow was disturbed (fault, heal, crash, gap).
    disturbed: Instant,
    last_delivery: [Option<Instant>; 2],
    token: u64,
    violations: Vec<String>,
    trace: Vec<String>,
    /// Both ALONE was seen while the witness was reachable from one side only
    /// (during a two-way partition, or for longer than the settle time).
    pub witness_one_sided: bool,
    both_alone_since: Option<Instant>,
    /// A node became primary while the other still was (split brain, by a
    /// partition or by an administrator's `prim`): the histories diverge and
    /// no write is required until the pair is PRIM/SECOND again.
    diverged: bool,
    /// Which node clients reach (`None` = any primary).
    clients: Option<usize>,
    /// Since the pair last formed, a crash or a forced start happened: the
    /// one-sided-writes invariant (e) is not asked of such episodes.
    episode_exempt: bool,
}

/// The simulated module as an administrator would write it: `cluster.xml`
/// and `userconfig.xml` texts read by the daemon's configuration reader and
/// turned into the engine's by the daemon's conversion, so the simulation
/// runs exactly the failover rules the daemon generates.
fn config_texts(cfg: &SimConfig) -> (String, String) {
    let lan_names: Vec<String> = (0..cfg.lans.max(1)).map(|i| if i == 0 { "flow".into() } else { format!("lan{i}") }).collect();
    let cluster = lan_names
        .iter()
        .enumerate()
        .map(|(i, n)| format!(r#"<lan name="{n}"><node name="node1" addr="10.9.{i}.1"/><node name="node2" addr="10.9.{i}.2"/></lan>"#))
        .collect::<String>();
    let heartbeats = lan_names.iter().map(|n| format!(r#"<heartbeat name="{n}"/>"#)).collect::<String>();
    let defaultprim = match &cfg.defaultprim {
        DefaultPrim::Alone => "alone".to_string(),
        DefaultPrim::LastPrim => "lastprim".to_string(),
        DefaultPrim::Node(n) => n.clone(),
    };
    let mut checks = String::new();
    if cfg.checkers {
        checks.push_str(r#"<tcp ident="app" when="prim" action="restart"><to addr="127.0.0.1" port="80"/></tcp>"#);
        checks.push_str(r#"<ping ident="gw" when="pre" action="wait"><to addr="127.0.0.1"/></ping>"#);
    }
    if cfg.splitbrain {
        checks.push_str(r#"<splitbrain ident="witness" exec="ping" arg="10.9.0.254"/>"#);
    }
    let checks = if checks.is_empty() { String::new() } else { format!("<check>{checks}</check>") };
    let pulse = cfg.pulse.as_millis();
    let timeout = cfg.timeout.as_millis();
    let user = format!(
        r#"<safe><service mode="mirror" defaultprim="{defaultprim}" maxloop="3" loop_interval="24" failover="on">
<heart pulse="{pulse}ms" timeout="{timeout}ms">{heartbeats}</heart>{checks}<user/></service></safe>"#
    );
    (format!("<cluster><lans>{cluster}</lans></cluster>"), user)
}

/// The engine configuration of `node` for the simulated module.
fn engine_config(cfg: &SimConfig, node: &str) -> EngineConfig {
    let (cluster, user) = config_texts(cfg);
    let cluster = crate::config::parse_cluster(&cluster, "cluster.xml").expect("the simulation's cluster.xml is valid").value;
    let opts = crate::config::UserConfigOptions { cluster: Some(&cluster), ..crate::config::UserConfigOptions::new() };
    let user = crate::config::parse_userconfig(&user, opts).expect("the simulation's userconfig.xml is valid").value;
    crate::convert::engine_config(&user, &cluster, node, &[])
}

impl SimCluster {
    /// A cluster of node1 and node2, both stopped, never configured before.
    pub fn new(cfg: SimConfig, seed: u64) -> Self {
        let base = Instant::now();
        let mk = |name: &str, inc: u64| SimNode {
            name: name.into(),
            engine: Some(MirrorEngine::new(engine_config(&cfg, name), Persistent::default(), inc, base)),
            persisted: Persistent::default(),
            incarnation: inc,
            vip: false,
            repl: None,
            data: BTreeSet::new(),
            witness: true,
            forced: false,
            reint: None,
            forced_primary: false,
            checks: [true; 2],
            classes: BTreeSet::new(),
            gate: crate::engine::UnreplicatedWrites::Admit,
            reported: true,
            stalled_until: None,
            alone_writes: BTreeSet::new(),
        };
        let lans = cfg.lans;
        let mut sim = Self {
            nodes: [mk("node1", 1), mk("node2", 1)],
            cfg,
            base,
            now: base,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            qseq: 0,
            cut: [vec![false; lans], vec![false; lans]],
            session: false,
            next_write: 1,
            required: BTreeSet::new(),
            disturbed: base,
            last_delivery: [None, None],
            token: 0,
            at_risk: Vec::new(),
            violations: Vec::new(),
            trace: Vec::new(),
            witness_one_sided: false,
            both_alone_since: None,
            diverged: false,
            clients: None,
            episode_exempt: false,
        };
        let w = sim.cfg.write_interval;
        sim.schedule(w, Event::Write);
        sim.drain(0);
        sim.drain(1);
        sim
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Status of a node (`None` while crashed).
    pub fn status(&self, n: usize) -> Option<Status> {
        self.nodes[n].engine.as_ref().map(MirrorEngine::status)
    }

    /// Invariant violations seen so far (empty = all held).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// A digest of everything that happened, to check determinism.
    pub fn trace_digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for line in &self.trace {
            for b in line.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }

    /// The last `n` trace lines (for failure reports).
    pub fn trace_tail(&self, n: usize) -> String {
        let start = self.trace.len().saturating_sub(n);
        self.trace[start..].join("\n")
    }

    /// Brings a fresh pair to PRIM/SECOND the documented way: `prim` on node1,
    /// then `start` on node2. Returns false if it did not converge.
    pub fn bootstrap(&mut self) -> bool {
        self.apply(&Op::Admin(0, CommandKind::Prim { fullsync: false }));
        self.run_for(Duration::from_secs(3));
        self.apply(&Op::Admin(1, CommandKind::Start));
        self.run_until_pair(Duration::from_secs(30))
    }

    /// Applies one schedule step.
    pub fn apply(&mut self, op: &Op) {
        self.trace.push(format!("{:?} op {op:?}", self.elapsed()));
        match op {
            Op::Advance(d) => self.run_for(*d),
            Op::Cut { from, lan } => {
                for (i, c) in self.cut[*from].iter_mut().enumerate() {
                    if lan.is_none_or(|l| l == i) {
                        *c = true;
                    }
                }
                if self.cut[*from][0] {
                    self.break_session();
                }
                self.disturbed = self.now;
            }
            Op::Partition { lan } => {
                self.apply(&Op::Cut { from: 0, lan: *lan });
                self.apply(&Op::Cut { from: 1, lan: *lan });
            }
            Op::HealFrom { from } => {
                self.cut[*from].iter_mut().for_each(|c| *c = false);
                self.disturbed = self.now;
            }
            Op::Heal => {
                for side in &mut self.cut {
                    side.iter_mut().for_each(|c| *c = false);
                }
                self.disturbed = self.now;
            }
            Op::Crash(n) => {
                let node = &mut self.nodes[*n];
                if node.engine.take().is_some() {
                    self.episode_exempt = true;
                    node.stalled_until = None;
                    node.vip = false;
                    node.repl = None;
                    node.reint = None;
                    node.forced = false;
                    node.forced_primary = false;
                    node.classes.clear();
                    self.break_session();
                    self.disturbed = self.now;
                }
            }
            Op::Restart(n) => {
                if self.nodes[*n].engine.is_none() {
                    let node = &mut self.nodes[*n];
                    node.incarnation += 1;
                    node.engine =
                        Some(MirrorEngine::new(engine_config(&self.cfg, &node.name), node.persisted.clone(), node.incarnation, self.now));
                    self.disturbed = self.now;
                    self.drain(*n);
                }
            }
            Op::Admin(n, kind) => {
                if self.nodes[*n].stalled_until.is_some() {
                    // The command waits in the control socket until the runtime runs.
                    let inc = self.nodes[*n].incarnation;
                    self.schedule(Duration::ZERO, Event::Admin { node: *n, incarnation: inc, kind: kind.clone() });
                } else {
                    self.admin(*n, kind);
                }
            }
            Op::Witness(n, up) => self.nodes[*n].witness = *up,
            Op::Resource(n, check, up) => {
                self.nodes[*n].checks[*check % CHECKERS.len()] = *up;
                self.report_check(*n, *check % CHECKERS.len());
            }
            Op::Clients(c) => self.clients = *c,
            Op::Stall(n, d) => {
                if self.nodes[*n].engine.is_some() {
                    let until = self.now + *d;
                    self.nodes[*n].stalled_until = Some(until);
                    self.disturbed = until;
                }
            }
            Op::ReplicationFailure(n) => {
                if self.nodes[*n].repl == Some(ReplicaRole::Primary) {
                    self.break_session();
                    self.input(*n, Input::Replication(ReplicationEvent::Degraded { reason: "simulated".into() }));
                }
            }
        }
    }

    fn admin(&mut self, n: usize, kind: &CommandKind) {
        let now = self.now;
        if let Some(e) = self.nodes[n].engine.as_mut() {
            let stopped = e.status().state == State::Stop;
            let r = e.command(now, Command::admin(kind.clone()));
            self.trace.push(format!("  -> {r:?}"));
            if r.is_ok() && stopped && matches!(kind, CommandKind::Prim { .. } | CommandKind::Primforce) {
                self.nodes[n].forced = true;
            }
            self.drain(n);
        }
    }

    /// Heals every fault and starts what is down, as an operator would after
    /// an incident; then the pair must converge.
    pub fn heal_all(&mut self) {
        // A paused runtime resumes first (its queued commands included).
        if let Some(until) = self.nodes.iter().filter_map(|n| n.stalled_until).max() {
            let d = until.saturating_duration_since(self.now) + Duration::from_millis(1);
            self.run_for(d);
        }
        self.apply(&Op::Heal);
        self.apply(&Op::Clients(None));
        for n in 0..2 {
            for c in 0..CHECKERS.len() {
                self.apply(&Op::Resource(n, c, true));
            }
        }
        for n in 0..2 {
            self.apply(&Op::Witness(n, true));
            self.apply(&Op::Restart(n));
        }
        self.run_for(Duration::from_secs(2));
        for n in 0..2 {
            let degraded = self.nodes[n].engine.as_ref().is_some_and(|e| e.resources().get("rfs.degraded").is_some_and(|v| v == "up"));
            if degraded {
                // SafeKit's documented recovery: stop and start the degraded primary.
                self.apply(&Op::Admin(n, CommandKind::Stop));
                self.run_for(Duration::from_secs(3));
            }
        }
        for n in 0..2 {
            if self.status(n).is_some_and(|s| s.state == State::Stop) {
                self.apply(&Op::Admin(n, CommandKind::Start));
            }
        }
    }

    fn schedule(&mut self, after: Duration, ev: Event) {
        self.qseq += 1;
        self.queue.push(Reverse(Queued(self.now + after, self.qseq, ev)));
    }

    fn break_session(&mut self) {
        if self.session {
            self.session = false;
            // A primary that had a secondary notices at its next write.
            for n in 0..2 {
                if self.nodes[n].repl == Some(ReplicaRole::Primary) {
                    if let Some(e) = &self.nodes[n].engine {
                        if e.status().state == State::Prim {
                            let inc = self.nodes[n].incarnation;
                            self.schedule(Duration::from_millis(200), Event::SecondaryLost { node: n, incarnation: inc });
                        }
                    }
                }
            }
        }
    }

    fn input(&mut self, n: usize, input: Input) {
        let now = self.now;
        if let Some(e) = self.nodes[n].engine.as_mut() {
            e.handle_input(now, input);
        }
        self.drain(n);
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Deliver { to, lan, incarnation, hb } => {
                let from = 1 - to;
                if self.nodes[from].incarnation != incarnation || self.nodes[to].engine.is_none() {
                    return;
                }
                if let Some(prev) = self.last_delivery[from] {
                    if self.now - prev > self.cfg.timeout * 4 / 5 {
                        self.disturbed = self.now;
                    }
                }
                self.last_delivery[from] = Some(self.now);
                self.input(to, Input::Heartbeat { lan, hb: *hb });
            }
            Event::Script { node, incarnation, run } => {
                if self.nodes[node].incarnation == incarnation {
                    self.input(node, Input::ScriptDone { run, success: true });
                }
            }
            Event::Effect { node, incarnation, run, off } => {
                if self.nodes[node].incarnation == incarnation {
                    if off {
                        self.nodes[node].vip = false;
                    }
                    self.input(node, Input::EffectDone { run, result: Ok(()) });
                }
            }
            Event::Resource { node, incarnation, check, state } => {
                if self.nodes[node].incarnation == incarnation {
                    self.input(node, Input::Resource { name: CHECKERS[check].0.into(), state, by: "sim".into() });
                }
            }
            Event::Witness { node, incarnation, run } => {
                if self.nodes[node].incarnation == incarnation {
                    let reachable = self.nodes[node].witness;
                    self.input(node, Input::WitnessResult { run, reachable });
                }
            }
            Event::SecondaryLost { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && !self.session {
                    self.input(node, Input::Replication(ReplicationEvent::SecondaryLost { reason: "simulated timeout".into() }));
                }
            }
            Event::Reintegrated { node, token } => {
                if self.nodes[node].reint != Some(token) {
                    return;
                }
                self.nodes[node].reint = None;
                let p = 1 - node;
                let ok = self.session && self.nodes[p].repl == Some(ReplicaRole::Primary) && !self.cut[p][0];
                if ok {
                    self.nodes[node].data = self.nodes[p].data.clone();
                    self.input(node, Input::Replication(ReplicationEvent::ReintegrationDone));
                } else {
                    self.input(node, Input::Replication(ReplicationEvent::ReintegrationFailed { reason: "primary unreachable".into() }));
                }
            }
            Event::Admin { node, incarnation, kind } => {
                if self.nodes[node].incarnation == incarnation {
                    self.admin(node, &kind);
                }
            }
            Event::Write => {
                self.write();
                let w = self.cfg.write_interval;
                self.schedule(w, Event::Write);
            }
        }
    }

    /// Carries out the actions of node `n`.
    fn drain(&mut self, n: usize) {
        loop {
            let Some(a) = self.nodes[n].engine.as_mut().and_then(MirrorEngine::poll_action) else {
                break;
            };
            self.action(n, a);
        }
        self.check();
    }
}
