//! A multi-service video-management product under a mirror module: the
//! shape of Milestone XProtect (the seed's second product page), where a
//! database and several servers must start in order on the primary and
//! stop in the reverse order.
//!
//! What you learn: how SafeKit's Windows configuration of the Milestone
//! module reads with our reader (what carries over and what is
//! Windows-only); how a `ScriptRunner` starts several services in order in
//! `start_prim` and stops them in reverse in `stop_prim`; and a `Checker`
//! that watches all of them at once. Milestone itself runs on Windows only,
//! so on Linux each service is a stand-in process (this program in
//! `--service NAME` mode, listening on a loopback port); the ordering, the
//! checks and the module's life are real.
//!
//! Run: `cargo run -p safekit-examples --example milestone`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use safekit_core::config::{parse_userconfig, UserConfigOptions};
use safekit_core::engine::{CheckerClass, CommandKind, MirrorEngine, Persistent, Readiness, Role, ScriptKind, ScriptRun, State, Status};
use safekit_core::runtime::checkers::CheckerSpec;
use safekit_core::runtime::module::Module;
use safekit_core::services::{Checker, Observation, ScriptOutcome, ScriptRunner};
use tokio::sync::Mutex;

/// SafeKit's Milestone module, as the vendor ships it (Windows).
const MILESTONE: &str = include_str!("../modules/milestone/conf/userconfig.xml");

/// The services, in start order (stopped in reverse).
const SERVICES: [&str; 4] = ["SQL Server", "Management Server", "Event Server", "Recording Server"];

/// One running stand-in service.
struct Running {
    name: &'static str,
    addr: SocketAddr,
    child: std::process::Child,
}

/// Starts and stops the product's services.
#[derive(Default)]
struct Services {
    running: Mutex<Vec<Running>>,
    order: std::sync::Mutex<Vec<String>>,
}

impl Services {
    fn start_one(name: &'static str) -> Result<Running, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child =
            std::process::Command::new(exe).args(["--service", name]).stdout(Stdio::piped()).spawn().map_err(|e| format!("{name}: {e}"))?;
        // The stand-in prints its address once it listens: started = ready.
        let mut line = String::new();
        let out = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(out).read_line(&mut line).map_err(|e| format!("{name}: {e}"))?;
        let addr = line.trim().parse().map_err(|_| format!("{name} did not start: {line:?}"))?;
        Ok(Running { name, addr, child })
    }

    async fn start_all(&self) -> Result<(), String> {
        let mut running = self.running.lock().await;
        for name in SERVICES {
            running.push(Self::start_one(name)?);
            self.note(format!("started {name}"));
        }
        Ok(())
    }

    async fn stop_all(&self) {
        let mut running = self.running.lock().await;
        while let Some(mut s) = running.pop() {
            let _ = s.child.kill();
            let _ = s.child.wait();
            self.note(format!("stopped {}", s.name));
        }
    }

    fn note(&self, what: String) {
        if let Ok(mut o) = self.order.lock() {
            o.push(what);
        }
    }
}

#[async_trait]
impl ScriptRunner for Services {
    async fn run(&self, run: &ScriptRun) -> ScriptOutcome {
        let result = match run.script {
            ScriptKind::StartPrim => self.start_all().await,
            ScriptKind::StopPrim => {
                self.stop_all().await;
                Ok(())
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => ScriptOutcome { success: true, detail: String::new() },
            Err(e) => ScriptOutcome { success: false, detail: e },
        }
    }
}

/// `custom.milestone`: up while every service accepts a connection.
struct AllServicesAnswer(Arc<Services>);

#[async_trait]
impl Checker for AllServicesAnswer {
    fn resource(&self) -> &str {
        "custom.milestone"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    async fn check(&self) -> Observation {
        let addrs: Vec<SocketAddr> = self.0.running.lock().await.iter().map(|s| s.addr).collect();
        if addrs.len() != SERVICES.len() {
            return Observation::Down;
        }
        for a in addrs {
            if !matches!(tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(a)).await, Ok(Ok(_))) {
                return Observation::Down;
            }
        }
        Observation::Up
    }
}

/// What the vendor's configuration says, and what of it applies here.
fn explain() {
    println!("SafeKit's Milestone module (modules/milestone/conf/userconfig.xml), read by safekit's reader:");
    match parse_userconfig(MILESTONE, UserConfigOptions { file: "milestone/userconfig.xml", ..UserConfigOptions::new() }) {
        Ok(p) => {
            let s = &p.value.service;
            if let Some(h) = &s.heart {
                for hb in &h.heartbeats {
                    println!("  heartbeat {}: pulse {:?}, timeout {:?} (portable)", hb.name, hb.pulse, hb.timeout);
                }
            }
            println!("  mode {:?}, maxloop {}, loop_interval {:?} (portable)", s.mode, s.maxloop, s.loop_interval);
            for proc in s.errd.iter().flat_map(|e| &e.procs) {
                println!("  errd watches process {:?} (a Windows process; on Linux errd watches Linux process names)", proc.name);
            }
            for r in s.rfs.iter().flat_map(|r| &r.replicated) {
                println!("  replicates {} (a Windows path: safekit replicates Linux directories only)", r.dir);
            }
            for w in &p.warnings {
                println!("  warning {w}");
            }
        }
        Err(e) => println!("  not readable: {e}"),
    }
    // What `safekit confcheck` asks the user to fill before installing.
    match parse_userconfig(MILESTONE, UserConfigOptions { file: "milestone/userconfig.xml", confcheck: true, ..UserConfigOptions::new() }) {
        Ok(_) => println!("  confcheck: nothing to fill"),
        Err(e) => println!("  confcheck, to fill before use:\n{e}"),
    }
}

/// `--service NAME`: a stand-in service that accepts connections on a
/// loopback port until killed.
fn serve(name: &str) -> std::io::Result<()> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", l.local_addr()?);
    std::io::stdout().flush()?;
    eprintln!("[{name}] listening");
    for conn in l.incoming() {
        drop(conn);
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--service") {
        return Ok(serve(args.get(2).map_or("service", String::as_str))?);
    }
    explain();

    let dir = std::env::temp_dir().join(format!("safekit-milestone-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let services = Arc::new(Services::default());
    let persisted = Persistent { gen: 1, uptodate: true, last_role: Some(Role::Alone), ..Persistent::default() };
    let engine = MirrorEngine::new(safekit_examples::engine_config("node1"), persisted, 1, Instant::now());
    let module = Module::builder("milestone", 1, engine, &dir)
        .scripts(services.clone())
        .checkers(vec![CheckerSpec { checker: Arc::new(AllServicesAnswer(services.clone())), class: CheckerClass::Prim }])
        .spawn();

    let result = async {
        module.command(CommandKind::Start).await.map_err(|e| e.to_string())?;
        module.wait_for(Status::new(State::Alone, Readiness::Ready), Duration::from_secs(60)).await.map_err(|s| format!("still {s}"))?;
        let end = Instant::now() + Duration::from_secs(30);
        while module.report().resources.get("custom.milestone").map(String::as_str) != Some("up") {
            if Instant::now() > end {
                return Err("custom.milestone never up".to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("{}: every service answers (custom.milestone up)", module.report().status);
        module.command(CommandKind::Stop).await.map_err(|e| e.to_string())?;
        module.wait_for(Status::new(State::Stop, Readiness::NotReady), Duration::from_secs(60)).await.map_err(|s| format!("still {s}"))?;
        Ok::<(), String>(())
    }
    .await;
    let order = services.order.lock().map(|o| o.clone()).unwrap_or_default();
    println!("order: {}", order.join(", "));
    module.shutdown().await;
    services.stop_all().await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let expected: Vec<String> =
        SERVICES.iter().map(|s| format!("started {s}")).chain(SERVICES.iter().rev().map(|s| format!("stopped {s}"))).collect();
    if order != expected {
        return Err(format!("services not started in order and stopped in reverse: {order:?}").into());
    }
    Ok(())
}
