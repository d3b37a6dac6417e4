//! Module scripts run as processes: SafeKit's arguments and environment,
//! one userlog file per run, each run in its own process group so that a
//! timeout or a forcestop kills everything it started.

use std::process::Stdio;
use std::time::SystemTime;

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::engine::ScriptRun;
use crate::services::{ScriptEnv, ScriptOutcome, ScriptRunner};

use crate::clock::file_stamp;

/// Runs scripts from the module's `bin/`.
pub struct ProcessScripts {
    env: ScriptEnv,
}

impl ProcessScripts {
    /// Scripts from `env.bin`, with `env`'s variables.
    pub const fn new(env: ScriptEnv) -> Self {
        Self { env }
    }
}

/// Kills the whole process group when dropped: a cancelled run (forcestop)
/// or a timeout leaves nothing behind.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pg) = self.0.take() {
            let _ = killpg(Pid::from_raw(pg), Signal::SIGKILL);
        }
    }
}

#[async_trait]
impl ScriptRunner for ProcessScripts {
    async fn run(&self, run: &ScriptRun) -> ScriptOutcome {
        let name = run.script.file_name();
        let path = self.env.bin.join(name);
        if !path.exists() {
            return ScriptOutcome { success: true, detail: format!("no {name} script") };
        }
        let (stdout, stderr, log_name) = match &self.env.userlog_dir {
            Some(dir) => {
                let _ = std::fs::create_dir_all(dir);
                let file = format!("userlog_{}_{name}.ulog", file_stamp(SystemTime::now()));
                match std::fs::OpenOptions::new().create(true).append(true).open(dir.join(&file)) {
                    Ok(f) => match f.try_clone() {
                        Ok(g) => (Stdio::from(f), Stdio::from(g), Some(file)),
                        Err(_) => (Stdio::null(), Stdio::null(), None),
                    },
                    Err(_) => (Stdio::null(), Stdio::null(), None),
                }
            }
            None => (Stdio::null(), Stdio::null(), None),
        };
        let mut cmd = tokio::process::Command::new(&path);
        cmd.args(run.args()).envs(&self.env.vars).stdin(Stdio::null()).stdout(stdout).stderr(stderr).process_group(0).kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return ScriptOutcome { success: false, detail: format!("cannot run {}: {e}", path.display()) },
        };
        let mut guard = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
        let timeout = if run.force { self.env.forcestop } else { self.env.nicestop };
        let log = log_name.map_or_else(String::new, |f| format!(" > {f}"));
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => {
                // The script is over; children it left in the background
                // (the application itself) must live on.
                guard.0 = None;
                ScriptOutcome { success: status.success(), detail: format!("Script {name}{log}: {status}") }
            }
            Ok(Err(e)) => ScriptOutcome { success: false, detail: format!("Script {name}{log}: {e}") },
            Err(_) => {
                drop(guard);
                let _ = child.wait().await;
                ScriptOutcome { success: false, detail: format!("Script {name}{log}: killed after {timeout:?} (timeout)") }
            }
        }
    }
}
