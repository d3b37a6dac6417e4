//! The runtime carries out slow effects beside the heartbeats, never
//! instead of them: two modules driven by the real tokio runtime, joined by
//! an in-memory heartbeat link (a fake behind the `Heartbeat` trait), with a
//! partner `VirtualIp` that is slow or failing.
//!
//! Before the effect lane, a VIP removal that took 3 s silenced the node for
//! 3 s and its SECOND (timeout 1 s) declared it dead; a VIP that could not
//! be set left the node ALONE Ready believing it served the address.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use safekit_core::config::DefaultPrim;
use safekit_core::engine::{
    CommandKind, EngineConfig, FailoverSpec, Heartbeat as HeartbeatMsg, LanTiming, MirrorEngine, Persistent, Readiness, Role, ScriptRun,
    State, Status,
};
use safekit_core::runtime::module::{Module, RunningModule};
use safekit_core::services::{Heartbeat, ScriptOutcome, ScriptRunner, ServiceError, StateStore, VirtualIp};
use tokio::sync::{mpsc, Mutex};

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
    async fn set(&self) -> Result<(), ServiceError> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        if self.fail.load(Ordering::SeqCst) {
            return Err(ServiceError::Refused("interface eth9 does not exist".into()));
        }
        Ok(())
    }
    async fn remove(&self) -> Result<(), ServiceError> {
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

/// A module on this machine with the partner VIP, run by the builder.
fn start(name: &str, peer: &str, p: Persistent, hb: Arc<Link>, vip: Arc<TestVip>) -> (RunningModule, PathBuf) {
    let dir = std::env::temp_dir().join(format!("sk-lane-{}-{name}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let engine = MirrorEngine::new(cfg(name, peer), p, 1, std::time::Instant::now());
    let module = Module::builder("lane", 1, engine, &dir)
        .heartbeat(hb, Duration::from_millis(1000))
        .vip(vip)
        .scripts(Arc::new(InstantScripts))
        .spawn();
    (module, dir)
}

fn log(m: &RunningModule) -> String {
    m.log().tail(10_000, true).join("\n")
}

/// Waits (bounded: 30 s) for `want`.
async fn wait_for(m: &RunningModule, want: Status) {
    if let Err(now) = m.wait_for(want, Duration::from_secs(30)).await {
        panic!("never reached {want}: {now}\n{}", log(m));
    }
}

async fn end(m: RunningModule, dir: PathBuf) {
    let _ = tokio::time::timeout(Duration::from_secs(30), m.shutdown()).await;
    let _ = std::fs::remove_dir_all(dir);
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
    let (n1, d1) = start("node1", "node2", alone, l1, vip1.clone());
    let (n2, d2) = start("node2", "node1", behind, l2, vip2);
    n1.command(CommandKind::Start).await.unwrap();
    wait_for(&n1, ready(State::Alone)).await;
    n2.command(CommandKind::Start).await.unwrap();
    wait_for(&n2, ready(State::Second)).await;
    wait_for(&n1, ready(State::Prim)).await;

    // The primary's VIP removal now takes three heartbeat timeouts.
    vip1.delay_ms.store(3_000, Ordering::SeqCst);
    n1.command(CommandKind::Stop).await.unwrap();
    wait_for(&n2, ready(State::Alone)).await;
    wait_for(&n1, Status::new(State::Stop, Readiness::NotReady)).await;

    let log2 = log(&n2);
    assert!(!log2.contains("heartbeat.default set to down"), "the secondary lost the primary's heartbeats during its slow stop:\n{log2}");
    assert!(log2.contains("Remote state WAIT"), "the secondary heard the primary stopping:\n{log2}");
    end(n1, d1).await;
    end(n2, d2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vip_that_cannot_be_set_never_leaves_the_node_ready() {
    let (l1, _l2) = link_pair();
    let vip = Arc::new(TestVip::default());
    vip.fail.store(true, Ordering::SeqCst);
    let alone = Persistent { gen: 3, uptodate: true, last_role: Some(Role::Alone), ..Persistent::default() };
    let (n1, d1) = start("node1", "node2", alone, l1, vip.clone());
    n1.command(CommandKind::Start).await.unwrap();
    // Until it gives up (bounded: 60 s).
    for _ in 0..600 {
        if n1.stopped() && vip.sets.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = log(&n1);
    assert!(n1.stopped(), "{log}");
    // The module log has every status the node took.
    assert!(log.contains("Local state ALONE Transient"), "{log}");
    assert!(!log.contains("Local state ALONE Ready"), "ALONE Ready without its VIP:\n{log}");
    assert!(log.contains("Virtual IP not set: interface eth9 does not exist"), "{log}");
    assert!(log.contains("Action stop called by maxloop"), "{log}");
    // The first start and maxloop (3) restarts; the fourth failure stops it.
    assert_eq!(vip.sets.load(Ordering::SeqCst), 4, "one set per start:\n{log}");
    end(n1, d1).await;
}

/// A partner's state store on a disk that has filled up.
struct FullDisk;

impl StateStore for FullDisk {
    fn load(&self) -> Result<Persistent, ServiceError> {
        Ok(Persistent::default())
    }
    fn save(&self, _p: &Persistent) -> Result<(), ServiceError> {
        Err(ServiceError::io("saving state.json", std::io::Error::from_raw_os_error(28)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_store_that_cannot_save_stops_the_module() {
    let (l1, _l2) = link_pair();
    let dir = std::env::temp_dir().join(format!("sk-lane-{}-full-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let alone = Persistent { gen: 3, uptodate: true, last_role: Some(Role::Alone), ..Persistent::default() };
    let engine = MirrorEngine::new(cfg("node1", "node2"), alone, 1, std::time::Instant::now());
    let n1 = Module::builder("lane", 1, engine, &dir)
        .heartbeat(l1, Duration::from_millis(1000))
        .vip(Arc::new(TestVip::default()))
        .scripts(Arc::new(InstantScripts))
        .store(Arc::new(FullDisk))
        .spawn();
    n1.command(CommandKind::Start).await.unwrap();
    // The report says STOP before the start shows in it: wait (bounded:
    // 30 s) for the stop the failed save causes, then for STOP.
    for _ in 0..300 {
        if log(&n1).contains("Action stop called by heart") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(&n1, Status::new(State::Stop, Readiness::NotReady)).await;
    let log = log(&n1);
    assert!(log.contains("State not saved: saving state.json: No space left on device"), "{log}");
    assert!(log.contains("Action stop called by heart"), "{log}");
    assert!(!log.contains("Local state ALONE Ready"), "a node that cannot record its state took a role:\n{log}");
    end(n1, dir).await;
}
