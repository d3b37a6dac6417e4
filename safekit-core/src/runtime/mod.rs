//! The tokio runtime that drives one module's pure engine: it owns the
//! clock, the sockets and the spawned work, and is the only code that reads
//! time. The loop is str0m's: apply one input, drain every action, then wait
//! for the next input or the engine's deadline.
//!
//! Two lanes: the main loop (heartbeats in and out, timers, commands)
//! never awaits anything but channels and a datagram send; every action
//! that can take time goes, in the engine's order, to the effect lane
//! (`effects`), whose answers come back as inputs.

pub mod checkers;
mod effects;
pub mod errd;
pub mod log;
pub mod module;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{Action, Automaton, Command, CommandKind, Input, LogLevel, State, Status};
use crate::services::{Heartbeat, Replicator, ScriptRunner, VirtualIp};
use crate::services::{LogSink, StateStore};

/// What a [`Companion`] gets: the module's reports, its input queue and
/// its log.
pub struct CompanionContext {
    /// The module's reports, newest first seen.
    pub report: watch::Receiver<ModuleReport>,
    /// Where to send resources and results to the engine.
    pub inputs: mpsc::Sender<Input>,
    /// The module log.
    pub log: Arc<dyn LogSink>,
}

/// A task started with the module's runtime and ended with it.
pub type Companion = Box<dyn FnOnce(CompanionContext) -> tokio::task::JoinHandle<()> + Send + Sync>;

/// A module's services.
pub struct ModuleServices {
    /// Heartbeats (mirror).
    pub heartbeat: Option<Arc<dyn Heartbeat>>,
    /// Virtual IPs.
    pub vip: Option<Arc<dyn VirtualIp>>,
    /// Scripts.
    pub scripts: Arc<dyn ScriptRunner>,
    /// Replication.
    pub replicator: Arc<dyn Replicator>,
    /// The split-brain witness (`<splitbrain>`), if any.
    pub witness: Option<Arc<dyn crate::services::Witness>>,
    /// Tasks that live as long as the runtime and follow the module's
    /// reports (the lease witness's keeper renews and gives up the lease
    /// as the module's state changes).
    pub companions: Vec<Companion>,
    /// Persistent state.
    pub store: Arc<dyn StateStore>,
    /// Module log.
    pub log: Arc<dyn LogSink>,
    /// Process monitoring (`<errd>`).
    pub errd: Option<crate::config::Errd>,
    /// This module's own command queue, for errd's actions.
    pub self_commands: Option<mpsc::Sender<CommandMsg>>,
    /// Where errd's special handlers live and the environment they get.
    pub handler_env: crate::services::ScriptEnv,
    /// Periodic checkers (configured and generated).
    pub checkers: Vec<checkers::CheckerSpec>,
    /// `<custom>` checkers.
    pub custom: Vec<checkers::CustomSpec>,
    /// The engine's input queue, made by whoever builds the services so
    /// that `safekit set` can feed resources in; `None` = a private one.
    pub inputs: Option<(mpsc::Sender<Input>, mpsc::Receiver<Input>)>,
    /// Waking up this late after a deadline means the loop was stalled (a
    /// pause, a swap storm): the engine is told before anything else, and
    /// the heartbeats waiting in the sockets are read first. Half the
    /// shortest heartbeat timeout; `None` = no heartbeats to protect.
    pub stall_after: Option<Duration>,
}

/// What `safekit state` shows of a module.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModuleReport {
    /// Module name.
    pub name: String,
    /// Module id.
    pub id: u16,
    /// Local status.
    pub status: Status,
    /// Peer status (None = unknown).
    pub peer: Option<Status>,
    /// Resources.
    pub resources: BTreeMap<String, String>,
    /// The version (epoch, generation) of the replicated data held here,
    /// typed (mirror modules; `None` otherwise).
    #[serde(default)]
    pub data_version: Option<(u64, u64)>,
    /// The engine's numbers for monitoring.
    #[serde(default)]
    pub metrics: crate::engine::EngineMetrics,
    /// Heartbeat datagrams dropped (forged, replayed, malformed).
    #[serde(default)]
    pub heartbeats_dropped: u64,
    /// Per heartbeat network (the engine's `metrics.lans` order):
    /// heartbeats received and lost.
    #[serde(default)]
    pub heartbeat_lans: Vec<crate::services::LanStats>,
    /// The replication stream's counters (modules that replicate).
    #[serde(default)]
    pub replication: Option<crate::services::ReplicationStats>,
    /// A farm module's membership and buckets on this node.
    #[serde(default)]
    pub farm: Option<crate::farm::FarmReport>,
}

/// A command and where to send its answer.
pub type CommandMsg = (Command, oneshot::Sender<Result<(), crate::engine::CommandError>>);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs `engine` until `shutdown` turns true and the module is stopped.
pub async fn drive<E: Automaton>(
    mut engine: E,
    svc: ModuleServices,
    mut commands: mpsc::Receiver<CommandMsg>,
    report: watch::Sender<ModuleReport>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut svc = svc;
    let (in_tx, mut in_rx) = svc.inputs.take().unwrap_or_else(|| mpsc::channel::<Input>(64));
    let classes = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    // Monitors end with the module's runtime (`safekit config` replaces it).
    let mut monitors = Vec::new();
    if let (Some(e), Some(cmds)) = (svc.errd.clone(), svc.self_commands.clone()) {
        monitors.push(errd::spawn(e, svc.handler_env.clone(), classes.clone(), report.subscribe(), cmds, in_tx.clone(), svc.log.clone()));
    }
    for spec in svc.checkers.clone() {
        monitors.push(checkers::spawn(spec, classes.clone(), report.subscribe(), in_tx.clone(), svc.self_commands.clone()));
    }
    for c in std::mem::take(&mut svc.companions) {
        monitors.push(c(CompanionContext { report: report.subscribe(), inputs: in_tx.clone(), log: svc.log.clone() }));
    }
    let module = report.borrow().name.clone();
    // Checker resources are listed (init) before their first test.
    let checker_resources: Vec<String> =
        svc.checkers.iter().map(|c| c.checker.resource().to_string()).chain(svc.custom.iter().map(|c| c.resource.clone())).collect();
    for spec in svc.custom.clone() {
        monitors.push(checkers::spawn_custom(
            spec,
            module.clone(),
            svc.handler_env.clone(),
            classes.clone(),
            report.subscribe(),
            in_tx.clone(),
            svc.log.clone(),
        ));
    }
    let mut stopping = false;
    // A command or a resource changed something `safekit get`/`state` shows.
    let mut refresh = false;
    let mut last_report = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
    // After a crash the VIP may still be configured: a node that starts is
    // never primary, so remove it.
    if let Some(v) = &svc.vip {
        if let Err(e) = v.remove().await {
            svc.log.write("vip", LogLevel::C, &format!("stale virtual IP not removed: {e}"));
        }
    }
    let (lane_tx, lane_rx) = mpsc::unbounded_channel::<Action>();
    let lane = effects::Lane {
        vip: svc.vip.clone(),
        scripts: svc.scripts.clone(),
        replicator: svc.replicator.clone(),
        witness: svc.witness.clone(),
        store: svc.store.clone(),
        log: svc.log.clone(),
        classes: classes.clone(),
        inputs: in_tx.clone(),
        report: report.subscribe(),
    }
    .spawn(lane_rx);
    loop {
        while let Some(a) = engine.poll_action() {
            if effects::is_immediate(&a) {
                execute_now(a, &svc).await;
            } else {
                // The lane lives as long as this loop: a send cannot fail.
                let _ = lane_tx.send(a);
            }
        }
        // Most events are heartbeats that change nothing visible: refresh
        // the report (and rebuild the resource map) only on a status change
        // or every quarter second.
        let (status, peer) = (engine.status(), engine.peer_status());
        let stale = {
            let r = report.borrow();
            r.status != status || r.peer != peer || refresh || last_report.elapsed() >= Duration::from_millis(250)
        };
        if stale {
            refresh = false;
            last_report = Instant::now();
            report.send_modify(|r| {
                r.status = status;
                r.peer = peer;
                r.resources = engine.resources();
                r.data_version = engine.data_version();
                r.metrics = engine.metrics();
                for c in &checker_resources {
                    r.resources.entry(c.clone()).or_insert_with(|| "init".into());
                }
                r.resources.extend(svc.replicator.resources());
                r.replication = svc.replicator.stats();
                r.farm = svc.vip.as_ref().and_then(|v| v.farm());
                if let Some(hb) = &svc.heartbeat {
                    r.heartbeat_lans = hb.lan_stats();
                    r.heartbeats_dropped = hb.dropped();
                    r.resources.insert("heartbeat.dropped".into(), r.heartbeats_dropped.to_string());
                }
            });
        }
        if stopping && engine.status().state == State::Stop {
            break;
        }
        let deadline = engine.poll_timeout().map(tokio::time::Instant::from_std);
        let hb = svc.heartbeat.clone();
        let woke = tokio::select! {
            biased;
            r = shutdown.changed(), if !stopping => Woke::Shutdown(r.is_err() || *shutdown.borrow()),
            Some(msg) = commands.recv() => Woke::Command(msg),
            Some(input) = in_rx.recv() => Woke::Input(input, true),
            ev = svc.replicator.next_event() => Woke::Input(Input::Replication(ev), false),
            (lan, msg) = async move { match hb { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                Woke::Input(Input::Heartbeat { lan, hb: msg }, false)
            }
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => Woke::Deadline,
        };
        // A loop that wakes long after its deadline was not running: the
        // engine learns it first, then reads what the peer sent meanwhile,
        // and only then handles what woke it (an expired timer would
        // otherwise declare a peer dead whose heartbeats wait in the socket).
        if let (Some(limit), Some(d)) = (svc.stall_after, deadline) {
            let lag = tokio::time::Instant::now().saturating_duration_since(d);
            if lag > limit {
                engine.handle_input(now(), Input::Stalled { lag });
                if let Some(h) = &svc.heartbeat {
                    drain_heartbeats(&mut engine, h.as_ref()).await;
                }
            }
        }
        match woke {
            Woke::Shutdown(true) => {
                stopping = true;
                svc.log.write("heart", LogLevel::U, "Action shutdown called by SYSTEM");
                if engine.status().state != State::Stop {
                    let _ = engine.command(now(), Command::by(CommandKind::Stop, "SYSTEM"));
                }
            }
            Woke::Shutdown(false) => {}
            Woke::Command((cmd, reply)) => {
                let r = engine.command(now(), cmd);
                let _ = reply.send(r);
                refresh = true;
            }
            Woke::Input(input, visible) => {
                engine.handle_input(now(), input);
                refresh |= visible;
            }
            Woke::Deadline => engine.handle_timeout(now()),
        }
    }
    // What the engine asked for last (the stop's own effects) is carried
    // out before the module's end.
    drop(lane_tx);
    let _ = lane.await;
    for m in monitors {
        m.abort();
    }
    if let Some(v) = &svc.vip {
        let _ = v.remove().await;
    }
    svc.replicator.stop().await;
}

/// What woke the runtime loop.
enum Woke {
    Shutdown(bool),
    Command(CommandMsg),
    /// An input; `true` if `safekit state` should show its effect at once.
    Input(Input, bool),
    Deadline,
}

/// Feeds the engine every heartbeat that arrives within a short grace
/// period (the receiving tasks read the socket backlog after a stall),
/// at most 1,000 and at most one second in all.
async fn drain_heartbeats<E: Automaton>(engine: &mut E, h: &dyn Heartbeat) {
    let end = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut grace = Duration::from_millis(50);
    for _ in 0..1_000 {
        if tokio::time::Instant::now() >= end {
            break;
        }
        match tokio::time::timeout(grace, h.recv()).await {
            Ok((lan, msg)) => engine.handle_input(now(), Input::Heartbeat { lan, hb: msg }),
            Err(_) => break,
        }
        grace = Duration::from_millis(5);
    }
}

/// Carries out an action that never waits (see [`effects::is_immediate`]).
async fn execute_now(a: Action, svc: &ModuleServices) {
    match a {
        Action::SendHeartbeat(hb) => {
            if let Some(h) = &svc.heartbeat {
                h.send(&hb).await;
            }
        }
        Action::Log { level, message } => svc.log.write("heart", level, &message),
        _ => {}
    }
}
