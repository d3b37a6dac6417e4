//! A partner application that embeds a mirror module for MariaDB/MySQL in
//! its own process: it starts and stops `mariadbd` itself (a
//! `ScriptRunner` in Rust instead of `start_prim`/`stop_prim` shell
//! scripts) and checks the database with a real SQL query (a `Checker`).
//!
//! What you learn: the engine calls your `ScriptRunner` with SafeKit's
//! script names and arguments, so `start_prim` can be a method of your
//! product; a `Checker` sets a resource (`custom.sql`) that a failover rule
//! reads (here: restart the database when the query fails, as SafeKit's
//! `<errd>`/checker rules do); and the runtime drives it all from
//! `Module::builder`. Run as root (mariadbd runs as root here) with
//! MariaDB installed: `cargo run -p safekit-examples --example mysql`.
//! It starts the module (ALONE: the peer is absent), writes a row, kills
//! `mariadbd` with SIGKILL, watches the checker and the rule restart it,
//! reads the row back and stops. The database listens on a Unix socket
//! only and lives in a temporary directory.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use safekit_core::engine::{
    CheckerClass, CommandKind, MirrorEngine, Persistent, Readiness, ResourceRule, Role, RuleAction, ScriptKind, ScriptRun, State, Status,
};
use safekit_core::runtime::checkers::CheckerSpec;
use safekit_core::runtime::module::Module;
use safekit_core::services::{Checker, Observation, ScriptOutcome, ScriptRunner};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// The application's own start and stop of its database.
struct MariaDb {
    datadir: PathBuf,
    socket: PathBuf,
    server: Mutex<Option<Child>>,
}

impl MariaDb {
    async fn sql(&self, query: &str) -> Result<String, String> {
        let out = Command::new("mariadb").arg("-S").arg(&self.socket).args(["-N", "-B", "-e", query]).output().await;
        match out {
            Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn start(&self) -> Result<(), String> {
        if !self.datadir.join("mysql").exists() {
            let out = Command::new("mariadb-install-db")
                .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=socket"])
                .arg(format!("--datadir={}", self.datadir.display()))
                .output()
                .await
                .map_err(|e| format!("mariadb-install-db: {e}"))?;
            if !out.status.success() {
                return Err(format!("mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        let child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=root", "--skip-networking"])
            .arg(format!("--datadir={}", self.datadir.display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--log-error={}", self.datadir.with_extension("err").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("mariadbd: {e}"))?;
        *self.server.lock().await = Some(child);
        // Ready when it answers a query (bounded: 60 s).
        for _ in 0..600 {
            if self.sql("select 1").await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("mariadbd did not answer within 60 s".into())
    }

    /// Graceful shutdown; the forced pass (or a server that does not
    /// answer any more) kills it.
    async fn stop(&self, force: bool) {
        let mut guard = self.server.lock().await;
        let Some(mut child) = guard.take() else { return };
        let graceful = !force && child.try_wait().ok().flatten().is_none() && self.sql("shutdown").await.is_ok();
        if graceful && tokio::time::timeout(Duration::from_secs(60), child.wait()).await.is_ok() {
            return;
        }
        let _ = child.kill().await;
    }

    /// The server's PID, to simulate its crash.
    async fn pid(&self) -> Option<u32> {
        self.server.lock().await.as_ref().and_then(Child::id)
    }
}

#[async_trait]
impl ScriptRunner for MariaDb {
    async fn run(&self, run: &ScriptRun) -> ScriptOutcome {
        let result = match run.script {
            ScriptKind::StartPrim => self.start().await,
            ScriptKind::StopPrim => {
                self.stop(run.force).await;
                Ok(())
            }
            // prestart, transition, start_both, ...: nothing to do here.
            _ => Ok(()),
        };
        match result {
            Ok(()) => ScriptOutcome { success: true, detail: String::new() },
            Err(e) => ScriptOutcome { success: false, detail: format!("{}: {e}", run.script.file_name()) },
        }
    }
}

/// `custom.sql`: up while the database answers a query.
struct SqlPing(Arc<MariaDb>);

#[async_trait]
impl Checker for SqlPing {
    fn resource(&self) -> &str {
        "custom.sql"
    }
    fn component(&self) -> &str {
        "sqlcheck"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    async fn check(&self) -> Observation {
        match self.0.sql("select 1").await.as_deref() {
            Ok("1") => Observation::Up,
            _ => Observation::Down,
        }
    }
}

async fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    let end = Instant::now() + limit;
    while !ok() {
        if Instant::now() > end {
            return Err(format!("{what}: not within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for tool in ["mariadbd", "mariadb-install-db", "mariadb"] {
        if std::process::Command::new(tool).arg("--version").output().is_err() {
            eprintln!("{tool} is missing: install MariaDB (apt-get install mariadb-server mariadb-client)");
            std::process::exit(2);
        }
    }
    let dir = std::env::temp_dir().join(format!("safekit-mysql-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data"))?;
    let db = Arc::new(MariaDb { datadir: dir.join("data"), socket: dir.join("mysql.sock"), server: Mutex::new(None) });

    let mut cfg = safekit_examples::engine_config("node1");
    // The failover rule the checker's resource feeds: restart on failure.
    cfg.rules.push(ResourceRule {
        resource: "custom.sql".into(),
        label: "c_sql".into(),
        action: RuleAction::Restart,
        class: CheckerClass::Prim,
    });
    let persisted = Persistent { gen: 1, uptodate: true, last_role: Some(Role::Alone), ..Persistent::default() };
    let engine = MirrorEngine::new(cfg, persisted, 1, Instant::now());
    let module = Module::builder("mysql", 1, engine, &dir)
        .scripts(db.clone())
        .checkers(vec![CheckerSpec { checker: Arc::new(SqlPing(db.clone())), class: CheckerClass::Prim }])
        .spawn();

    let result = async {
        module.command(CommandKind::Start).await.map_err(|e| e.to_string())?;
        module.wait_for(Status::new(State::Alone, Readiness::Ready), Duration::from_secs(120)).await.map_err(|s| format!("still {s}"))?;
        let sql_up = || module.report().resources.get("custom.sql").map(String::as_str) == Some("up");
        wait_until("custom.sql up", Duration::from_secs(30), sql_up).await?;
        db.sql("create database app; create table app.t (v int); insert into app.t values (42)").await?;
        println!("{}: mariadbd serves, custom.sql up, one row written", module.report().status);

        // The database crashes; the checker sees it and the rule restarts it.
        let pid = db.pid().await.ok_or("no mariadbd")?;
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status().await;
        let log = module.log();
        let restarted = || log.tail(1000, false).iter().any(|l| l.contains("Action restart from failover rule c_sql"));
        wait_until("restart by c_sql", Duration::from_secs(60), restarted).await?;
        // The restart runs stop_prim then start_prim: the row is readable
        // again once mariadbd is back (bounded: 120 s).
        let mut v = Err(String::new());
        for _ in 0..1200 {
            v = db.sql("select v from app.t").await;
            if v.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let v = v.map_err(|e| format!("the row is not readable after the restart: {e}"))?;
        module.wait_for(Status::new(State::Alone, Readiness::Ready), Duration::from_secs(120)).await.map_err(|s| format!("still {s}"))?;
        println!("{}: restarted by rule c_sql after the crash, row read back: {v}", module.report().status);
        if v != "42" {
            return Err(format!("the row read back is {v:?}, not 42"));
        }

        module.command(CommandKind::Stop).await.map_err(|e| e.to_string())?;
        module.wait_for(Status::new(State::Stop, Readiness::NotReady), Duration::from_secs(120)).await.map_err(|s| format!("still {s}"))?;
        println!("{}: mariadbd stopped by stop_prim", module.report().status);
        Ok::<(), String>(())
    }
    .await;
    for line in module.log().tail(200, false).iter().filter(|l| l.contains("Resource") || l.contains("Action")) {
        println!("  log {line}");
    }
    module.shutdown().await;
    db.stop(true).await;
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(Into::into)
}
