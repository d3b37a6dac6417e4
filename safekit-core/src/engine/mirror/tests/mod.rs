//! Table-driven transition tests: each case drives one engine to a starting
//! point, applies one step, and asserts the exact list of effects (scripts
//! with their arguments, VIP, replication, checkers, state changes). Logs,
//! heartbeats and persistence are left out of the lists and asserted where
//! they matter.

use std::time::{Duration, Instant};

use crate::config::DefaultPrim;
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
}

fn st(state: State, r: Readiness) -> Status {
    Status::new(state, r)
}

impl H {
    fn new(cfg: EngineConfig, p: Persistent) -> Self {
        let now = Instant::now();
        Self { e: MirrorEngine::new(cfg, p, 1, now), now, seq: 0, out: Vec::new(), log: Vec::new(), last_sent: None, vip_fails: None }
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
                let result = match (&self.vip_fails, set) {
                    (Some(why), true) => Err(why.clone()),
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
        Action::QuarantineLocalChanges => "quarantine".into(),
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

#[test]
fn t01_start_uptodate_peer_absent_goes_alone_with_scripts_in_order() {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    assert_eq!(h.take(), v(&START), "listens for the peer before deciding");
    h.advance(Duration::from_millis(400));
    assert_eq!(
        h.take(),
        v(&[
            "= ALONE Transient",
            "repl primary",
            "transition WAIT ALONE start",
            "vip+",
            "start_both WAIT ALONE start",
            "+both",
            "start_prim WAIT ALONE start",
            "+prim",
            "start_sec WAIT ALONE start",
            "+sec",
            "= ALONE Ready",
        ])
    );
    assert_eq!(h.e.persistent().gen, 4, "a new generation: writes without a secondary");
    assert!(h.e.persistent().running);
}

#[test]
fn t02_first_start_waits_not_uptodate() {
    let mut h = H::new(cfg(), Persistent::default());
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.take(), with_start(&["= WAIT NotReady"]));
    let logs = h.logs();
    assert!(logs.iter().any(|l| l == "Action wait from failover rule notuptodate_server"), "{logs:?}");
}

#[test]
fn t03_start_with_peer_alone_becomes_second_after_reintegration() {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    assert_eq!(h.take(), with_start(&["= SECOND Transient", "repl secondary", "transition WAIT SECOND start", "reintegrate zones"]));
    assert!(h.e.persistent().partial, "not uptodate until the end of the reintegration");
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    assert_eq!(
        h.take(),
        v(&[
            "start_both SECOND SECOND start",
            "+both",
            "start_second SECOND SECOND start",
            "+second",
            "start_sec SECOND SECOND start",
            "+sec",
            "= SECOND Ready",
        ])
    );
    assert_eq!((h.e.persistent().gen, h.e.persistent().uptodate, h.e.persistent().partial), (4, true, false));
}

#[test]
fn t04_prim_on_a_fresh_node_forces_alone() {
    let mut h = H::new(cfg(), Persistent::default());
    h.cmd(CommandKind::Prim { fullsync: false }).unwrap();
    h.advance(Duration::from_millis(10));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert_eq!(h.e.persistent().epoch, 1, "an administrator's choice starts an epoch");
}

#[test]
fn t05_prim_is_refused_while_the_peer_is_primary() {
    let mut h = H::new(cfg(), data(3, true, None));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    let e = h.cmd(CommandKind::Prim { fullsync: false }).unwrap_err();
    assert!(matches!(e, CommandError::PeerIsPrimary(_)));
    assert_eq!(e.to_string(), "the other node is already primary (ALONE Ready); prim is refused");
    assert_eq!(h.take(), Vec::<String>::new());
}

#[test]
fn t06_prim_after_interrupted_reintegration_needs_primforce() {
    let mut p = data(3, false, Some(Role::Second));
    p.partial = true;
    let mut h = H::new(cfg(), p.clone());
    assert_eq!(h.cmd(CommandKind::Prim { fullsync: false }), Err(CommandError::DataInconsistent));
    let mut h = H::new(cfg(), p);
    h.cmd(CommandKind::Primforce).unwrap();
    h.advance(Duration::from_millis(10));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.e.persistent().full_sync_required, "the next secondary copies everything");
}

#[test]
fn t07_second_is_refused_without_a_primary() {
    let mut h = H::new(cfg(), data(3, true, None));
    let e = h.cmd(CommandKind::Second { fullsync: false }).unwrap_err();
    assert_eq!(e.to_string(), "the other node is not primary (UNKNOWN: no heartbeat from it); second needs a primary to synchronise from");
}

#[test]
fn t08_second_fullsync_copies_everything() {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Second)));
    h.peer(st(State::Prim, Readiness::Ready), true, ds(3, true, Some(Role::Prim)));
    h.cmd(CommandKind::Second { fullsync: true }).unwrap();
    assert!(h.take().contains(&"reintegrate full".to_string()));
}

#[test]
fn t09_a_node_that_never_synchronised_copies_everything() {
    let mut h = H::new(cfg(), Persistent::default());
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    assert!(h.take().contains(&"reintegrate full".to_string()));
}

#[test]
fn t10_start_when_started_is_refused() {
    let mut h = alone();
    let e = h.cmd(CommandKind::Start).unwrap_err();
    assert_eq!(e.to_string(), "the module is already started (ALONE Ready); run safekit stop first");
}

// ---- primary role ---------------------------------------------------------------

#[test]
fn t11_alone_becomes_prim_when_the_peer_is_second_ready() {
    let mut h = alone();
    let g = h.e.persistent().gen;
    h.peer(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)));
    assert_eq!(h.take(), v(&["= PRIM Transient", "-sec", "stop_sec ALONE PRIM start", "transition ALONE PRIM start", "= PRIM Ready"]));
}

#[test]
fn t12_prim_losing_its_peer_continues_alone() {
    let mut h = prim();
    h.advance(T + Duration::from_millis(50));
    assert_eq!(
        h.take(),
        v(&["= ALONE Transient", "repl drop", "transition PRIM ALONE start", "start_sec PRIM ALONE start", "+sec", "= ALONE Ready"])
    );
}

#[test]
fn t13_prim_whose_peer_stops_continues_alone() {
    let mut h = prim();
    let g = h.e.persistent().gen;
    h.peer(st(State::Stop, Readiness::NotReady), false, ds(g, false, Some(Role::Second)));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.logs().iter().any(|l| l == "Secondary lost (remote stop): continuing ALONE"));
}

#[test]
fn t14_replication_timeout_drops_the_secondary_once_the_peer_answers_it_is_not_primary() {
    let mut h = prim();
    h.input(Input::Replication(ReplicationEvent::SecondaryLost { reason: "locktimeout".into() }));
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready), "the peer may have taken over: wait for its answer");
    let g = h.e.persistent().gen;
    h.peer_with(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)), |hb| hb.heard = None);
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready), "a report that did not hear us since does not count");
    h.peer(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.take().contains(&"repl drop".to_string()));
}

#[test]
fn t15_degraded_replication_keeps_the_primary_alone() {
    let mut h = prim();
    h.input(Input::Replication(ReplicationEvent::Degraded { reason: "nfsbox".into() }));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert_eq!(h.e.resources()["rfs.degraded"], "up");
    assert!(h.logs().iter().any(|l| l == "Resource rfs.degraded set to up by nfsadmin"));
}

// ---- secondary role and failover ----------------------------------------------

#[test]
fn t16_second_losing_its_primary_fails_over() {
    let mut h = second();
    h.advance(T + Duration::from_millis(50));
    assert_eq!(
        h.take(),
        v(&[
            "= ALONE Transient",
            "-second",
            "stop_second SECOND ALONE start",
            "repl stop",
            "repl primary",
            "transition SECOND ALONE start",
            "vip+",
            "start_prim SECOND ALONE start",
            "+prim",
            "= ALONE Ready",
        ])
    );
    assert!(h.logs().iter().any(|l| l == "Action alone called by heart: no heartbeat"));
    assert_eq!(h.e.persistent().last_role, Some(Role::AloneAfterFailover));
}

#[test]
fn t17_second_whose_primary_stops_fails_over() {
    let mut h = second();
    h.peer(st(State::Wait, Readiness::Transient), false, ds(4, false, Some(Role::Prim)));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.logs().iter().any(|l| l == "Action alone called by heart: remote stop"));
}

#[test]
fn t18_no_failover_while_the_primary_still_holds_its_resources() {
    let mut h = second();
    h.peer(st(State::Wait, Readiness::Transient), true, ds(4, true, Some(Role::Prim)));
    assert_eq!(h.status(), st(State::Second, Readiness::Ready), "the primary is stopping: wait for it to release");
}

#[test]
fn t19_failover_off_parks_the_secondary_in_wait() {
    let mut h = second();
    h.cmd(CommandKind::Failover(false)).unwrap();
    h.advance(T + Duration::from_millis(500));
    let out = h.take();
    assert!(out.contains(&"poststop WAIT STOP stopstart".to_string()), "{out:?}");
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    let logs = h.logs();
    for l in ["Failover-off configured", "Action stopstart called by failover-off", "Transition STOPSTART from failover-off"] {
        assert!(logs.iter().any(|x| x == l), "{l}: {logs:?}");
    }
}

#[test]
fn t20_second_that_learned_of_newer_data_does_not_fail_over() {
    let mut h = second();
    // The primary dropped us and wrote alone (generation 5), then vanished.
    h.peer(st(State::Alone, Readiness::Ready), true, ds(5, true, Some(Role::Alone)));
    assert_eq!(h.status(), st(State::Second, Readiness::Transient), "catching up");
    assert!(h.take().contains(&"reintegrate zones".to_string()));
    h.advance(T + Duration::from_millis(50));
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
}

#[test]
fn t21_reintegration_failure_restarts_the_module() {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.take();
    h.input(Input::Replication(ReplicationEvent::ReintegrationFailed { reason: "disk full".into() }));
    let logs = h.logs();
    assert!(logs.iter().any(|l| l == "Action stopstart called by rfs"), "{logs:?}");
    assert!(logs.iter().any(|l| l == "Next reintegration attempt in 2 s (1 failed in a row)"), "{logs:?}");
    assert!(h.e.persistent().partial, "still partially synchronised");
    // The next attempt waits 2 s, then 4 s after a second failure.
    for (n, wait) in [(1u64, 2u64), (2, 4)] {
        for _ in 0..(wait * 4 - 1) {
            h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
            h.advance(Duration::from_millis(250));
        }
        assert_eq!(h.status(), st(State::Wait, Readiness::Transient), "attempt {n}: waiting");
        assert!(!h.take().iter().any(|s| s.starts_with("reintegrate")), "attempt {n}: too early");
        h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
        h.advance(Duration::from_millis(400));
        assert!(h.take().iter().any(|s| s.starts_with("reintegrate")), "attempt {n}: after {wait} s");
        if n == 1 {
            h.input(Input::Replication(ReplicationEvent::ReintegrationFailed { reason: "disk full".into() }));
            assert!(h.logs().iter().any(|l| l == "Next reintegration attempt in 4 s (2 failed in a row)"));
        }
    }
}

/// A retry deadline that passed while the node was not starting must not stay
/// due forever once it starts again (it used to spin the runtime's timer).
#[test]
fn t21c_a_passed_reintegration_wait_is_forgotten() {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Replication(ReplicationEvent::ReintegrationFailed { reason: "disk full".into() }));
    h.cmd(CommandKind::Stop).unwrap();
    h.advance(Duration::from_secs(5));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_secs(1));
    let now = h.now;
    assert!(h.e.poll_timeout().is_some_and(|t| t > now), "the timer is due again at once");
}

// ---- stop ---------------------------------------------------------------------

#[test]
fn t22_stop_on_prim_runs_graceful_then_forced_pass_then_poststop() {
    let mut h = prim();
    h.cmd(CommandKind::Stop).unwrap();
    assert_eq!(
        h.take(),
        v(&[
            "= WAIT Transient",
            "-prim",
            "stop_prim PRIM WAIT stop",
            "-both",
            "stop_both PRIM WAIT stop",
            "transition PRIM WAIT stop",
            "stop_prim force PRIM WAIT stop",
            "stop_both force PRIM WAIT stop",
            "vip-",
            "repl stop",
            "-pre",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
            "= STOP NotReady",
        ])
    );
    assert!(!h.e.persistent().uptodate, "the secondary takes over: this copy becomes stale");
    assert!(!h.e.persistent().running);
}

#[test]
fn t23_stop_on_alone_stops_sec_prim_both() {
    let mut h = alone();
    h.cmd(CommandKind::Stop).unwrap();
    let out = h.take();
    let scripts: Vec<&String> =
        out.iter().filter(|s| s.starts_with("stop_") || s.starts_with("transition") || s.starts_with("poststop")).collect();
    assert_eq!(
        scripts,
        [
            "stop_sec ALONE WAIT stop",
            "stop_prim ALONE WAIT stop",
            "stop_both ALONE WAIT stop",
            "transition ALONE WAIT stop",
            "stop_sec force ALONE WAIT stop",
            "stop_prim force ALONE WAIT stop",
            "stop_both force ALONE WAIT stop",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
        ]
    );
    assert!(h.e.persistent().uptodate, "ALONE keeps the newest data");
}

#[test]
fn t24_stop_on_second_stops_sec_second_both() {
    let mut h = second();
    h.cmd(CommandKind::Stop).unwrap();
    let out = h.take();
    assert_eq!(
        out[..8],
        v(&[
            "= WAIT Transient",
            "-sec",
            "stop_sec SECOND WAIT stop",
            "-second",
            "stop_second SECOND WAIT stop",
            "-both",
            "stop_both SECOND WAIT stop",
            "transition SECOND WAIT stop",
        ])[..]
    );
    assert!(!h.e.persistent().uptodate, "the primary goes on: this copy becomes stale");
}

#[test]
fn t25_stop_from_wait_only_runs_poststop() {
    let mut h = H::new(cfg(), Persistent::default());
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    h.take();
    h.cmd(CommandKind::Stop).unwrap();
    assert_eq!(
        h.take(),
        v(&[
            "= WAIT Transient",
            "transition WAIT WAIT stop",
            "-pre",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
            "= STOP NotReady"
        ])
    );
}

#[test]
fn t26_stop_when_stopped_is_refused() {
    let mut h = H::new(cfg(), Persistent::default());
    assert_eq!(h.cmd(CommandKind::Stop), Err(CommandError::NotStarted));
}

#[test]
fn t27_forcestop_kills_the_stuck_script_and_runs_the_forced_pass() {
    let mut h = alone();
    h.e.command(h.now, Command::admin(CommandKind::Stop)).unwrap();
    h.pump();
    // stop_sec hangs; the administrator forces.
    h.e.command(h.now, Command::admin(CommandKind::Forcestop)).unwrap();
    h.scripts();
    let out = h.take();
    assert_eq!(out[0], "= WAIT Transient");
    assert_eq!(out[2], "stop_sec ALONE WAIT stop");
    assert_eq!(out[3], "cancel");
    let after: Vec<&str> = out[4..].iter().map(String::as_str).filter(|s| !s.starts_with('-') && !s.starts_with('=')).collect();
    assert_eq!(
        after,
        [
            "transition WAIT WAIT stop",
            "stop_sec force WAIT WAIT stop",
            "stop_prim force WAIT WAIT stop",
            "stop_both force WAIT WAIT stop",
            "vip-",
            "repl stop",
            "poststop WAIT STOP stop",
            "transition WAIT STOP stop",
        ]
    );
    assert_eq!(h.status(), st(State::Stop, Readiness::NotReady));
}

#[test]
fn t28_stopstart_on_alone_comes_back_alone() {
    let mut h = alone();
    h.cmd(CommandKind::Stopstart).unwrap();
    h.advance(Duration::from_millis(400));
    let out = h.take();
    assert!(out.contains(&"poststop WAIT STOP stopstart".to_string()));
    assert!(out.contains(&"prestart STOP WAIT start".to_string()));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.logs().iter().any(|l| l == "Action start called automatically"));
}

// ---- restart and swap -------------------------------------------------------

#[test]
fn t29_restart_on_prim_runs_stop_prim_then_start_prim() {
    let mut h = prim();
    h.cmd(CommandKind::Restart).unwrap();
    assert_eq!(
        h.take(),
        v(&["= PRIM Transient", "-prim", "stop_prim PRIM PRIM restart", "start_prim PRIM PRIM restart", "+prim", "= PRIM Ready"])
    );
}

#[test]
fn t30_restart_on_second_runs_stop_second_then_start_second() {
    let mut h = second();
    h.cmd(CommandKind::Restart).unwrap();
    assert_eq!(
        h.take(),
        v(&[
            "= SECOND Transient",
            "-second",
            "stop_second SECOND SECOND restart",
            "start_second SECOND SECOND restart",
            "+second",
            "= SECOND Ready"
        ])
    );
}

#[test]
fn t31_restart_outside_a_ready_state_is_refused() {
    let mut h = H::new(cfg(), Persistent::default());
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert!(matches!(h.cmd(CommandKind::Restart), Err(CommandError::NotReady { .. })));
}

#[test]
fn t32_swap_on_prim_hands_over_then_follows() {
    let mut h = prim();
    h.cmd(CommandKind::Swap(SwapKind::Sync)).unwrap();
    assert_eq!(
        h.take(),
        v(&[
            "= PRIM Transient",
            "-prim",
            "stop_prim PRIM SECOND swap",
            "vip-",
            "repl stop",
            "repl secondary",
            "transition PRIM SECOND swap",
            "= SECOND Transient",
        ])
    );
    let g = h.e.persistent().gen;
    h.peer(st(State::Prim, Readiness::Ready), true, ds(g, true, Some(Role::Prim)));
    assert_eq!(h.take(), v(&["reintegrate zones"]));
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    assert_eq!(h.status(), st(State::Second, Readiness::Ready));
    assert!(h.take().contains(&"start_second SECOND SECOND start".to_string()));
}

#[test]
fn t33_second_takes_over_when_the_primary_hands_over() {
    let mut h = second();
    h.peer_with(st(State::Second, Readiness::Transient), false, ds(4, true, Some(Role::Second)), |hb| hb.handing_over = true);
    assert_eq!(
        h.take(),
        v(&[
            "= PRIM Transient",
            "-sec",
            "stop_sec SECOND PRIM swap",
            "-second",
            "stop_second SECOND PRIM swap",
            "repl stop",
            "repl primary",
            "transition SECOND PRIM swap",
            "vip+",
            "start_prim SECOND PRIM swap",
            "+prim",
            "= PRIM Ready",
        ])
    );
}

#[test]
fn t34_swap_without_a_pair_is_refused() {
    let mut h = alone();
    let e = h.cmd(CommandKind::Swap(SwapKind::Sync)).unwrap_err();
    assert_eq!(e.to_string(), "swap needs PRIM (Ready) and SECOND (Ready); the module is ALONE Ready and the other node UNKNOWN");
}

#[test]
fn t35_swap_nosync_skips_the_resynchronisation() {
    let mut h = prim();
    h.cmd(CommandKind::Swap(SwapKind::NoSync)).unwrap();
    h.take();
    let g = h.e.persistent().gen;
    h.peer(st(State::Prim, Readiness::Ready), true, ds(g, true, Some(Role::Prim)));
    assert_eq!(h.status(), st(State::Second, Readiness::Ready));
    assert!(!h.take().iter().any(|s| s.starts_with("reintegrate")));
}

// ---- split brain, witness, power loss ------------------------------------------

#[test]
fn t36_split_brain_both_wrote_the_former_second_exits() {
    let mut h = second();
    h.advance(T + Duration::from_millis(50));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    h.input(Input::Replication(ReplicationEvent::WroteAlone));
    h.take();
    let wrote = DataStatus { wrote_alone: true, ..ds(5, true, Some(Role::Alone)) };
    h.heal_with(st(State::Alone, Readiness::Ready), true, wrote);
    assert!(h.logs().iter().any(|l| l == "Split brain recovery: exiting alone"));
    let out = h.take();
    assert!(out.contains(&"poststop WAIT STOP stopstart".to_string()));
    assert!(h.e.persistent().need_full_sync, "what it wrote alone is replaced by a full copy");
    // It starts again as the other node's secondary: what it wrote alone is
    // kept aside first, then everything is copied.
    let q = out.iter().position(|s| s == "quarantine").unwrap_or_else(|| panic!("no quarantine: {out:?}"));
    assert_eq!(out.get(q + 1).map(String::as_str), Some("reintegrate full"), "{out:?}");
    assert!(!h.e.persistent().quarantine, "once");
}

#[test]
fn t37_split_brain_the_former_primary_stays() {
    let mut h = prim();
    h.advance(T + Duration::from_millis(50));
    h.take();
    h.peer(st(State::Alone, Readiness::Ready), true, ds(5, true, Some(Role::AloneAfterFailover)));
    h.advance(Duration::from_millis(100));
    h.peer_with(st(State::Alone, Readiness::Ready), true, ds(5, true, Some(Role::AloneAfterFailover)), |hb| hb.alone_after_failover = true);
    assert!(h.logs().iter().any(|l| l == "Split brain recovery: staying alone"));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
}

fn with_witness() -> EngineConfig {
    EngineConfig { splitbrain: true, ..cfg() }
}

#[test]
fn t38_second_asks_the_witness_before_failing_over() {
    let mut h = H::new(with_witness(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    h.take();
    h.advance(T + Duration::from_millis(50));
    assert_eq!(h.take(), v(&["witness?"]));
    let run = crate::engine::RunId(1_000);
    h.input(Input::WitnessResult { run, reachable: true });
    assert_eq!(h.status(), st(State::Second, Readiness::Ready), "a result for another check is ignored");
    let asked = witness_run(&h);
    h.input(Input::WitnessResult { run: asked, reachable: true });
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
}

fn witness_run(h: &H) -> crate::engine::RunId {
    match &h.e.phase {
        super::Phase::AskingWitness { run, .. } => *run,
        p => panic!("not asking the witness: {p:?}"),
    }
}

#[test]
fn t39_unreachable_witness_parks_the_node_in_wait() {
    let mut h = H::new(with_witness(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    h.advance(T + Duration::from_millis(50));
    let asked = witness_run(&h);
    h.input(Input::WitnessResult { run: asked, reachable: false });
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    assert!(h.logs().iter().any(|l| l == "Action wait from failover rule splitbrain_failure"));
    assert!(!h.e.persistent().uptodate);
    assert!(h.take().contains(&"stop_second SECOND WAIT stopwait".to_string()));
}

#[test]
fn t40_primary_without_witness_stops_its_application() {
    let mut h = H::new(with_witness(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    let asked = witness_run(&h);
    h.input(Input::WitnessResult { run: asked, reachable: true });
    let g = h.e.persistent().gen;
    h.peer(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)));
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready));
    h.take();
    h.advance(T + Duration::from_millis(50));
    let asked = witness_run(&h);
    h.input(Input::WitnessResult { run: asked, reachable: false });
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    let out = h.take();
    assert!(out.contains(&"stop_prim PRIM WAIT stopwait".to_string()) && out.contains(&"vip-".to_string()), "{out:?}");
}

#[test]
fn t41_first_node_back_after_a_dual_power_loss_waits() {
    let mut p = data(5, true, Some(Role::Prim));
    p.running = true; // the last run did not stop cleanly
    let mut h = H::new(cfg(), p);
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    assert!(!h.e.persistent().uptodate);
    // The former secondary comes back: roles resume, PRIM directly.
    h.peer(st(State::Wait, Readiness::Transient), false, DataStatus { unclean: true, ..ds(5, false, Some(Role::Second)) });
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready));
    let out = h.take();
    assert!(out.contains(&"transition WAIT PRIM start".to_string()) && out.contains(&"start_prim WAIT PRIM start".to_string()), "{out:?}");
    assert!(!out.iter().any(|s| s.starts_with("start_sec")), "WAIT->PRIM runs transition, start_both, start_prim");
}

#[test]
fn t42_a_crashed_alone_node_restarts_alone() {
    let mut p = data(5, true, Some(Role::Alone));
    p.running = true;
    let mut h = H::new(cfg(), p);
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready), "its peer was already behind");
}

#[test]
fn t43_both_starting_the_newer_generation_leads() {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Wait, Readiness::Transient), false, ds(6, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady), "waits for the peer to become primary");
    h.peer(st(State::Alone, Readiness::Ready), true, ds(7, true, Some(Role::Alone)));
    assert_eq!(h.status(), st(State::Second, Readiness::Transient));
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

#[test]
fn t44_start_holds_in_wait_transient_while_a_wait_resource_is_init() {
    let mut h = H::new(with_rules(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Wait, Readiness::Transient));
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
}

#[test]
fn t45_wait_rule_stops_into_wait_and_wakes_up() {
    let mut h = H::new(with_rules(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    h.advance(Duration::from_millis(400));
    h.take();
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Down, by: "test".into() });
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    let out = h.take();
    assert!(out.contains(&"stop_prim ALONE WAIT stopwait".to_string()), "{out:?}");
    assert!(!out.iter().any(|s| s.starts_with("poststop")), "a wait is not a stop");
    assert!(h.logs().iter().any(|l| l == "Action wait from failover rule p_gw"));
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.logs().iter().any(|l| l == "Action wakeup from failover rule Implicit_wakeup"));
}

#[test]
fn t45b_a_prim_interrupted_by_a_wait_rule_resumes_as_prim() {
    // A fresh node (never primary, not uptodate): only `prim` may start it.
    let mut h = H::new(with_rules(), Persistent::default());
    h.cmd(CommandKind::Prim { fullsync: false }).unwrap();
    h.advance(Duration::from_millis(400));
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Down, by: "pingcheck".into() });
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    assert!(h.logs().iter().any(|l| l == "Resource ping.gw set to down by pingcheck"));
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "pingcheck".into() });
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready), "{:#?}", h.logs());
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

#[test]
fn t45c_a_user_rule_over_remote_resources_swaps_once_its_condition_is_stable() {
    let timing = crate::engine::rules::Timing { period: Duration::from_millis(500), handle_time: Duration::from_secs(2) };
    let mut h = prim_with_rules("app_moves: if (custom.app == down && remote.custom.app == up) then swap();", timing);
    let g = h.e.persistent().gen;
    let remote_up = |hb: &mut Heartbeat| {
        hb.resources.insert("custom.app".into(), ResourceState::Up);
    };
    h.peer_with(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)), remote_up);
    // Time passes with the peer's heartbeats every 100 ms.
    let run = |h: &mut H, ms: u64| {
        for _ in 0..ms / 100 {
            h.advance(Duration::from_millis(100));
            h.peer_with(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)), remote_up);
        }
    };
    h.input(Input::Resource { name: "custom.app".into(), state: ResourceState::Down, by: "customscript".into() });
    // A second later it is back: no action.
    run(&mut h, 1000);
    h.input(Input::Resource { name: "custom.app".into(), state: ResourceState::Up, by: "customscript".into() });
    run(&mut h, 3000);
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready), "a one-second glitch is held by handle_time");
    assert!(!h.logs().iter().any(|l| l.contains("failover rule app_moves")));
    // Down for good while the peer's is up: a swap after handle_time.
    h.input(Input::Resource { name: "custom.app".into(), state: ResourceState::Down, by: "customscript".into() });
    run(&mut h, 1500);
    assert!(!h.logs().iter().any(|l| l.contains("failover rule app_moves")), "not yet stable for 2 s");
    run(&mut h, 1500);
    assert!(h.logs().iter().any(|l| l == "Action swap from failover rule app_moves"), "{:#?}", h.logs());
    assert_eq!(h.status().state, State::Second);
}

#[test]
fn t45d_without_the_peer_remote_resources_are_unknown() {
    let mut h = prim_with_rules("lonely: if (remote.tcp.x == unknown) then stop();", crate::engine::rules::Timing::default());
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready), "the peer is heard: remote.tcp.x is init, not unknown");
    assert!(!h.logs().iter().any(|l| l.contains("failover rule lonely")));
    // The peer goes silent: ALONE, then the rule sees unknown and stops the module.
    h.advance(Duration::from_secs(2));
    assert!(h.logs().iter().any(|l| l == "Action stop from failover rule lonely"), "{:#?}", h.logs());
    assert_eq!(h.status(), st(State::Stop, Readiness::NotReady));
}

#[test]
fn t46_the_fourth_detector_restart_stops_the_module() {
    let mut h = H::new(with_rules(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    h.advance(Duration::from_millis(400));
    for i in 0..4 {
        h.input(Input::Resource { name: "tcp.app".into(), state: ResourceState::Down, by: "test".into() });
        h.input(Input::Resource { name: "tcp.app".into(), state: ResourceState::Up, by: "test".into() });
        if i < 3 {
            assert_eq!(h.status(), st(State::Alone, Readiness::Ready), "restart {i}");
        }
    }
    assert_eq!(h.status(), st(State::Stop, Readiness::NotReady));
    assert!(h.logs().iter().any(|l| l == "Action stop called by maxloop"));
}

#[test]
fn t47_an_administrator_command_resets_maxloop() {
    let mut h = alone();
    for _ in 0..3 {
        h.e.command(h.now, Command::by(CommandKind::Restart, "errd")).unwrap();
        h.scripts();
    }
    h.cmd(CommandKind::Restart).unwrap();
    h.e.command(h.now, Command::by(CommandKind::Restart, "errd")).unwrap();
    h.scripts();
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
}

mod effects;
mod faults;

// ---- misc ----------------------------------------------------------------------

#[test]
fn t48_late_script_results_and_strangers_are_ignored() {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Alone)));
    h.e.command(h.now, Command::admin(CommandKind::Start)).unwrap();
    h.pump();
    h.e.handle_input(h.now, Input::ScriptDone { run: crate::engine::RunId(99), success: true });
    h.pump();
    let runs = h.out.iter().filter(|a| matches!(a, Action::RunScript(_))).count();
    assert_eq!(runs, 1, "still waiting for the first script");
    let mut hb_from_stranger = Heartbeat {
        node: "intruder".into(),
        incarnation: 1,
        seq: 1,
        status: st(State::Alone, Readiness::Ready),
        primary_active: true,
        data: ds(99, true, Some(Role::Alone)),
        failover: true,
        full_sync_required: false,
        degraded: false,
        alone_after_failover: false,
        swap_request: None,
        handing_over: false,
        hears_peer: true,
        resources: Default::default(),
        heard: None,
    };
    h.e.handle_input(h.now, Input::Heartbeat { lan: 0, hb: hb_from_stranger.clone() });
    hb_from_stranger.node = "node2".into();
    h.e.handle_input(h.now, Input::Heartbeat { lan: 7, hb: hb_from_stranger });
    assert_eq!(h.e.peer_status(), None);
}

#[test]
fn t49_without_user_element_no_script_runs() {
    let mut h = H::new(EngineConfig { scripts: false, ..cfg() }, data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(!h.take().iter().any(|s| s.contains(" start")), "no script");
}

#[test]
fn t50_defaultprim_asks_for_a_swap_once_second_is_ready() {
    let mut h = H::new(EngineConfig { defaultprim: DefaultPrim::Node("node1".into()), ..cfg() }, data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    h.peer(st(State::Prim, Readiness::Ready), true, ds(4, true, Some(Role::Prim)));
    assert!(h.logs().iter().any(|l| l == "Transition SWAP from defaultprim"));
    h.pump();
    let asked = h.out.iter().rev().find_map(|a| if let Action::SendHeartbeat(hb) = a { Some(hb.swap_request) } else { None });
    assert_eq!(asked, Some(Some(SwapKind::Sync)));
}

#[test]
fn t51_peer_degraded_parks_the_secondary() {
    let mut h = second();
    h.peer_with(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)), |hb| hb.degraded = true);
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    assert!(h.logs().iter().any(|l| l == "Action wait from failover rule degraded_server"));
}

#[test]
fn t52_a_heartbeat_lost_input_acts_before_the_timeout() {
    let mut h = second();
    h.input(Input::HeartbeatLost { lan: 0 });
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert_eq!(h.e.resources()["heartbeat.default"], "down");
}

#[test]
fn t53_state_exit_codes_match_safekit() {
    let codes: Vec<i32> =
        [State::Stop, State::Wait, State::Alone, State::Up, State::Prim, State::Second].iter().map(|s| s.exit_code()).collect();
    assert_eq!(codes, [0, 1, 2, 2, 3, 4]);
}

#[test]
fn t54_maintenance_switches_are_persisted_and_shown() {
    let mut h = alone();
    h.cmd(CommandKind::Errd(false)).unwrap();
    h.cmd(CommandKind::Checker(false)).unwrap();
    assert!(!h.e.persistent().errd && !h.e.persistent().checker);
    let r = h.e.resources();
    assert_eq!((r["usersetting.errd"].as_str(), r["usersetting.checker"].as_str()), ("off", "off"));
    // A state file written before these switches existed still loads.
    let old: Persistent = serde_json::from_str(r#"{"gen":3,"uptodate":true}"#).unwrap();
    assert!(old.errd && old.checker && old.failover);
}
