//! Table-driven transition tests: each case drives one engine to a starting
//! point, applies one step, and asserts the exact list of effects (scripts
//! with their arguments, VIP, replication, checkers, state changes). Logs,
//! heartbeats and persistence are left out of the lists and asserted where
//! they matter.

use crate::engine::Automaton as _;
use std::time::{Duration, Instant};

use crate::engine::DefaultPrim;
use crate::engine::{
    Action, CheckerClass, Command, CommandError, CommandKind, DataStatus, EngineConfig, Heartbeat, Input, LanTiming, MirrorEngine,
    Persistent, Readiness, ReplicaRole, ReplicationEvent, ResourceRule, ResourceState, Role, RuleAction, State, Status, SwapKind, SyncMode,
};

const T: Duration = Duration::from_millis(1000);

fn cfg() -> EngineConfig {
    EngineConfig {
        node: "node1".into(),
        peer: "node2".into(),
        lans: vec![LanTiming { ident: "default".into(), pulse: Duration::from_millis(100), timeout: T }],
        failover: true,
        defaultprim: DefaultPrim::Alone,
        maxloop: 3,
        loop_interval: Duration::from_secs(86_400),
        splitbrain: false,
        scripts: true,
        rules: Vec::new(),
        failover_rules: crate::engine::FailoverSpec::default(),
    }
}

/// A persisted state: `uptodate` data of generation `gen`, last `role`, clean.
fn data(gen: u64, uptodate: bool, role: Option<Role>) -> Persistent {
    Persistent { gen, uptodate, last_role: role, ..Persistent::default() }
}

struct H {
    e: MirrorEngine,
    now: Instant,
    seq: u64,
    out: Vec<Action>,
    /// Every log line so far (kept when `take` drains the effects).
    log: Vec<String>,
    /// The engine's newest heartbeat, which the simulated peer echoes.
    last_sent: Option<(u64, u64)>,
    /// While set, every VIP set fails with this reason.
    vip_fails: Option<String>,
    /// While set, keeping local changes aside fails with this reason.
    quarantine_fails: Option<String>,
}

fn st(state: State, r: Readiness) -> Status {
    Status::new(state, r)
}

impl H {
    fn new(cfg: EngineConfig, p: Persistent) -> Self {
        let now = Instant::now();
        Self {
            e: MirrorEngine::new(cfg, p, 1, now),
            now,
            seq: 0,
            out: Vec::new(),
            log: Vec::new(),
            last_sent: None,
            vip_fails: None,
            quarantine_fails: None,
        }
    }

    fn pump(&mut self) {
        while let Some(a) = self.e.poll_action() {
            if let Action::Log { message, .. } = &a {
                self.log.push(message.clone());
            }
            if let Action::SendHeartbeat(hb) = &a {
                self.last_sent = Some((hb.incarnation, hb.seq));
            }
            self.out.push(a);
        }
    }

    /// Completes every script and VIP change the engine asks for, in order
    /// (bounded); a VIP set fails while `vip_fails` holds a reason.
    fn scripts(&mut self) {
        for _ in 0..200 {
            self.pump();
            let pending: Vec<_> = self
                .out
                .iter()
                .filter_map(|a| match a {
                    Action::RunScript(r) => Some((r.run, false)),
                    Action::SetVip(run) => Some((*run, true)),
                    Action::RemoveVip(run) => Some((*run, false)),
                    Action::QuarantineLocalChanges(run) => Some((*run, false)),
                    _ => None,
                })
                .collect();
            let Some((run, set)) = pending.into_iter().find(|(r, _)| !self.done_runs().contains(r)) else {
                return;
            };
            self.out.push(Action::Log { level: crate::engine::LogLevel::D, message: format!("done {}", run.0) });
            let script = self.out.iter().any(|a| matches!(a, Action::RunScript(r) if r.run == run));
            let input = if script {
                Input::ScriptDone { run, success: true }
            } else {
                let quarantine = self.out.iter().any(|a| matches!(a, Action::QuarantineLocalChanges(r) if *r == run));
                let result = match (&self.vip_fails, set, &self.quarantine_fails) {
                    (Some(why), true, _) => Err(why.clone()),
                    (_, _, Some(why)) if quarantine => Err(why.clone()),
                    _ => Ok(()),
                };
                Input::EffectDone { run, result }
            };
            self.e.handle_input(self.now, input);
        }
        panic!("scripts did not settle");
    }

    fn done_runs(&self) -> Vec<crate::engine::RunId> {
        self.out
            .iter()
            .filter_map(|a| match a {
                Action::Log { message, .. } => message.strip_prefix("done ").and_then(|n| n.parse().ok()).map(crate::engine::RunId),
                _ => None,
            })
            .collect()
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..10_000 {
            let next = self.e.poll_timeout().unwrap_or(end).min(end);
            self.now = next.max(self.now);
            self.e.handle_timeout(self.now);
            self.scripts();
            if self.now >= end {
                return;
            }
        }
        panic!("the engine's timer stays due at {:?} (a deadline never cleared)", self.now);
    }

    fn peer(&mut self, status: Status, primary_active: bool, d: DataStatus) {
        self.peer_with(status, primary_active, d, |_| {});
    }

    fn peer_with(&mut self, status: Status, primary_active: bool, d: DataStatus, f: impl FnOnce(&mut Heartbeat)) {
        let mut hb = self.peer_hb(status, primary_active, d);
        f(&mut hb);
        self.e.handle_input(self.now, Input::Heartbeat { lan: 0, hb });
        self.scripts();
    }

    /// The peer's next heartbeat (echoing our newest one), not yet delivered.
    fn peer_hb(&mut self, status: Status, primary_active: bool, d: DataStatus) -> Heartbeat {
        self.seq += 1;
        Heartbeat {
            node: "node2".into(),
            incarnation: 7,
            seq: self.seq,
            status,
            primary_active,
            data: d,
            failover: true,
            full_sync_required: false,
            degraded: false,
            alone_after_failover: false,
            swap_request: None,
            handing_over: false,
            hears_peer: true,
            resources: Default::default(),
            heard: self.last_sent,
        }
    }

    /// The peer is heard again after a loss: a first report (which cannot
    /// have heard our heartbeats since), a pulse, then a fresh one.
    fn heal_with(&mut self, status: Status, primary_active: bool, d: DataStatus) {
        let after_failover = d.last_role == Some(Role::AloneAfterFailover);
        self.peer_with(status, primary_active, d, |hb| {
            hb.heard = None;
            hb.alone_after_failover = after_failover;
        });
        self.advance(Duration::from_millis(100));
        self.peer_with(status, primary_active, d, |hb| hb.alone_after_failover = after_failover);
    }

    fn cmd(&mut self, kind: CommandKind) -> Result<(), CommandError> {
        let r = self.e.command(self.now, Command::admin(kind));
        self.scripts();
        r
    }

    fn input(&mut self, i: Input) {
        self.e.handle_input(self.now, i);
        self.scripts();
    }

    /// The significant effects since the last call, rendered.
    fn take(&mut self) -> Vec<String> {
        self.pump();
        let out = std::mem::take(&mut self.out);
        out.into_iter().filter_map(render).collect()
    }

    fn logs(&mut self) -> Vec<String> {
        self.pump();
        self.log.clone()
    }

    fn status(&self) -> Status {
        self.e.status()
    }
}

fn render(a: Action) -> Option<String> {
    Some(match a {
        Action::RunScript(r) => format!("{} {}", r.script.file_name(), r.args().join(" ")),
        Action::CancelScript(_) => "cancel".into(),
        Action::SetVip(_) => "vip+".into(),
        Action::RemoveVip(_) => "vip-".into(),
        Action::StartReplication(ReplicaRole::Primary) => "repl primary".into(),
        Action::StartReplication(ReplicaRole::Secondary) => "repl secondary".into(),
        Action::DropSecondary => "repl drop".into(),
        Action::StopReplication => "repl stop".into(),
        Action::StartReintegration(SyncMode::Full) => "reintegrate full".into(),
        Action::StartReintegration(SyncMode::Zones) => "reintegrate zones".into(),
        Action::CheckWitness(_) => "witness?".into(),
        Action::QuarantineLocalChanges(_) => "quarantine".into(),
        Action::EnableCheckers(c) => format!("+{}", class(c)),
        Action::DisableCheckers(c) => format!("-{}", class(c)),
        Action::StateChanged { to, .. } => format!("= {to}"),
        Action::Persist(_) | Action::SendHeartbeat(_) | Action::Log { .. } | Action::UnreplicatedWrites(_) => return None,
    })
}

const fn class(c: CheckerClass) -> &'static str {
    match c {
        CheckerClass::Pre => "pre",
        CheckerClass::Prim => "prim",
        CheckerClass::Second => "second",
        CheckerClass::Sec => "sec",
        CheckerClass::Both => "both",
    }
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

const fn ds(gen: u64, uptodate: bool, role: Option<Role>) -> DataStatus {
    DataStatus { epoch: 0, gen, uptodate, partial: false, last_role: role, unclean: false, wrote_alone: false }
}

const START: [&str; 4] = ["= WAIT Transient", "transition STOP WAIT start", "prestart STOP WAIT start", "+pre"];

fn with_start(rest: &[&str]) -> Vec<String> {
    let mut out = v(&START);
    out.extend(v(rest));
    out
}

/// A node started alone (uptodate, peer absent), ALONE Ready.
fn alone() -> H {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    h.take();
    h
}

/// ALONE, then the peer became SECOND Ready: PRIM Ready.
fn prim() -> H {
    let mut h = alone();
    let g = h.e.persistent().gen;
    h.peer(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)));
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready));
    h.take();
    h
}

/// Started while the peer was ALONE: SECOND Ready after reintegration.
fn second() -> H {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    assert_eq!(h.status(), st(State::Second, Readiness::Ready));
    h.peer(st(State::Prim, Readiness::Ready), true, ds(4, true, Some(Role::Prim)));
    h.take();
    h
}

// ---- start and role choice --------------------------------------------------

fn with_witness() -> EngineConfig {
    EngineConfig { splitbrain: true, ..cfg() }
}

fn witness_run(h: &H) -> crate::engine::RunId {
    match &h.e.phase {
        super::Phase::AskingWitness { run, .. } => *run,
        p => panic!("not asking the witness: {p:?}"),
    }
}

// ---- checkers and maxloop ----------------------------------------------------

fn with_rules() -> EngineConfig {
    EngineConfig {
        rules: vec![
            ResourceRule { resource: "ping.gw".into(), label: "p_gw".into(), action: RuleAction::Wait, class: CheckerClass::Pre },
            ResourceRule { resource: "tcp.app".into(), label: "t_app".into(), action: RuleAction::Restart, class: CheckerClass::Prim },
        ],
        ..cfg()
    }
}

/// PRIM Ready with `<failover>` rules `text` and `timing`.
fn prim_with_rules(text: &str, timing: crate::engine::rules::Timing) -> H {
    let cfg = EngineConfig {
        failover_rules: crate::engine::FailoverSpec { user: crate::engine::rules::parse(text).unwrap(), timing, extends: true },
        ..cfg()
    };
    let mut h = H::new(cfg, data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    let g = h.e.persistent().gen;
    h.peer(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)));
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready));
    h.take();
    h
}

mod effects;

mod faults;

mod pair;
mod rules;
mod settings;
mod split_brain;
mod start;
mod stop;
mod swap;
