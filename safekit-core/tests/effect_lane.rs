//! The runtime carries out slow effects beside the heartbeats, never
//! instead of them: two modules driven by the real tokio runtime, joined by
//! an in-memory heartbeat link (a fake behind the `Heartbeat` trait), with a
//! partner `VirtualIp` that is slow or failing.
//!
//! Before the effect lane, a VIP removal that took 3 s silenced the node for
//! 3 s and its SECOND (timeout 1 s) declared it dead; a VIP that could not
//! be set left the node ALONE Ready believing it served the address.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use safekit_core::config::DefaultPrim;
use safekit_core::engine::{
    Command, CommandKind, EngineConfig, FailoverSpec, Heartbeat as HeartbeatMsg, LanTiming, MirrorEngine, Persistent, Readiness, Role,
    ScriptRun, State, Status,
};
use safekit_core::runtime::log::ModuleLog;
use safekit_core::runtime::store::StateStore;
use safekit_core::runtime::{drive, CommandMsg, ModuleReport, ModuleServices};
use safekit_core::services::{Heartbeat, NothingToReplicate, ScriptEnv, ScriptOutcome, ScriptRunner, VirtualIp};
use tokio::sync::{mpsc, oneshot, watch, Mutex};

/// One direction of an in-memory heartbeat link.
struct Link {
    tx: mpsc::UnboundedSender<HeartbeatMsg>,
    rx: Mutex<mpsc::UnboundedReceiver<HeartbeatMsg>>,
}

#[async_trait]
impl Heartbeat for Link {
    async fn send(&self, msg: &HeartbeatMsg) {
        let _ = self.tx.send(msg.clone());
    }
    async fn recv(&self) -> (usize, HeartbeatMsg) {
        match self.rx.lock().await.recv().await {
            Some(m) => (0, m),
            None => std::future::pending().await,
        }
    }
    fn dropped(&self) -> u64 {
        0
    }
}

fn link_pair() -> (Arc<Link>, Arc<Link>) {
    let (a_tx, a_rx) = mpsc::unbounded_channel();
    let (b_tx, b_rx) = mpsc::unbounded_channel();
    (Arc::new(Link { tx: a_tx, rx: Mutex::new(b_rx) }), Arc::new(Link { tx: b_tx, rx: Mutex::new(a_rx) }))
}

/// A partner VIP: each change takes `delay_ms`; a set fails while `fail`.
#[derive(Default)]
struct TestVip {
    delay_ms: AtomicU64,
    fail: AtomicBool,
    sets: AtomicU64,
}

#[async_trait]
impl VirtualIp for TestVip {
    async fn set(&self) -> Result<(), String> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        if self.fail.load(Ordering::SeqCst) {
            return Err("interface eth9 does not exist".into());
        }
        Ok(())
    }
    async fn remove(&self) -> Result<(), String> {
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        Ok(())
    }
}

struct InstantScripts;

#[async_trait]
impl ScriptRunner for InstantScripts {
    async fn run(&self, _run: &ScriptRun) -> ScriptOutcome {
        ScriptOutcome { success: true, detail: String::new() }
    }
}

fn cfg(node: &str, peer: &str) -> EngineConfig {
    EngineConfig {
        node: node.into(),
        peer: peer.into(),
        lans: vec![LanTiming { ident: "default".into(), pulse: Duration::from_millis(100), timeout: Duration::from_millis(1000) }],
        failover: true,
        defaultprim: DefaultPrim::Alone,
        maxloop: 3,
        loop_interval: Duration::from_secs(86_400),
        splitbrain: false,
        scripts: true,
        rules: Vec::new(),
        failover_rules: FailoverSpec::default(),
    }
}

struct Node {
    commands: mpsc::Sender<CommandMsg>,
    report: watch::Receiver<ModuleReport>,
    shutdown: watch::Sender<bool>,
    dir: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    fn start(name: &str, peer: &str, p: Persistent, hb: Arc<Link>, vip: Arc<TestVip>) -> Self {
        let dir = std::env::temp_dir().join(format!("sk-lane-{}-{name}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let engine = MirrorEngine::new(cfg(name, peer), p, 1, std::time::Instant::now());
        let services = ModuleServices {
            heartbeat: Some(hb),
            vip: Some(vip),
            scripts: Arc::new(InstantScripts),
            replicator: Arc::new(NothingToReplicate),
            witnesses: Vec::new(),
            lease: None,
            store: StateStore::new(&dir),
            log: Arc::new(ModuleLog::new(&dir, "lane")),
            errd: None,
            self_commands: None,
            handler_env: ScriptEnv::default(),
            checkers: Vec::new(),
            custom: Vec::new(),
            inputs: None,
            stall_after: Some(Duration::from_millis(500)),
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let first = ModuleReport {
            name: "lane".into(),
            id: 1,
            status: Status::new(State::Stop, Readiness::NotReady),
            peer: None,
            resources: Default::default(),
        };
        let (rep_tx, rep_rx) = watch::channel(first);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(drive(engine, services, cmd_rx, rep_tx, stop_rx));
        Self { commands: cmd_tx, report: rep_rx, shutdown: stop_tx, dir, task }
    }

    async fn command(&self, kind: CommandKind) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send((Command::admin(kind), tx)).await.map_err(|e| e.to_string())?;
        rx.await.map_err(|e| e.to_string())?
    }

    fn status(&self) -> Status {
        self.report.borrow().status
    }

    /// Waits (bounded: 30 s) for `want`.
    async fn wait_for(&self, want: Status) {
        for _ in 0..300 {
            if self.status() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} never reached {want}: {}\n{}", self.dir.display(), self.status(), self.log());
    }

    fn log(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") || e.file_name().to_string_lossy().contains("log") {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    async fn end(self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn ready(state: State) -> Status {
    Status::new(state, Readiness::Ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_vip_removal_does_not_silence_the_primary() {
    let (l1, l2) = link_pair();
    let (vip1, vip2) = (Arc::new(TestVip::default()), Arc::new(TestVip::default()));
    let alone = Persistent { gen: 3, uptodate: true, last_role: Some(Role::Alone), ..Persistent::default() };
    let behind = Persistent { gen: 3, uptodate: false, last_role: Some(Role::Second), ..Persistent::default() };
    let n1 = Node::start("node1", "node2", alone, l1, vip1.clone());
    let n2 = Node::start("node2", "node1", behind, l2, vip2);
    n1.command(CommandKind::Start).await.unwrap();
    n1.wait_for(ready(State::Alone)).await;
    n2.command(CommandKind::Start).await.unwrap();
    n2.wait_for(ready(State::Second)).await;
    n1.wait_for(ready(State::Prim)).await;

    // The primary's VIP removal now takes three heartbeat timeouts.
    vip1.delay_ms.store(3_000, Ordering::SeqCst);
    n1.command(CommandKind::Stop).await.unwrap();
    n2.wait_for(ready(State::Alone)).await;
    n1.wait_for(Status::new(State::Stop, Readiness::NotReady)).await;

    let log2 = n2.log();
    assert!(!log2.contains("heartbeat.default set to down"), "the secondary lost the primary's heartbeats during its slow stop:\n{log2}");
    assert!(log2.contains("Remote state WAIT"), "the secondary heard the primary stopping:\n{log2}");
    n1.end().await;
    n2.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vip_that_cannot_be_set_never_leaves_the_node_ready() {
    let (l1, _l2) = link_pair();
    let vip = Arc::new(TestVip::default());
    vip.fail.store(true, Ordering::SeqCst);
    let alone = Persistent { gen: 3, uptodate: true, last_role: Some(Role::Alone), ..Persistent::default() };
    let n1 = Node::start("node1", "node2", alone, l1, vip.clone());
    n1.command(CommandKind::Start).await.unwrap();
    // Until it gives up (bounded: 60 s).
    for _ in 0..600 {
        if n1.status() == Status::new(State::Stop, Readiness::NotReady) && vip.sets.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = n1.log();
    assert_eq!(n1.status(), Status::new(State::Stop, Readiness::NotReady), "{log}");
    // The module log has every status the node took.
    assert!(log.contains("Local state ALONE Transient"), "{log}");
    assert!(!log.contains("Local state ALONE Ready"), "ALONE Ready without its VIP:\n{log}");
    assert!(log.contains("Virtual IP not set: interface eth9 does not exist"), "{log}");
    assert!(log.contains("Action stop called by maxloop"), "{log}");
    // The first start and maxloop (3) restarts; the fourth failure stops it.
    assert_eq!(vip.sets.load(Ordering::SeqCst), 4, "one set per start:\n{log}");
    n1.end().await;
}
