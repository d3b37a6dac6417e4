//! Scheduling of periodic checkers (reference §1.9, §6): each
//! [`Checker`] tests something every period and sets its resource
//! `<kind>.<ident>` to up or down through the engine's input queue, only
//! while its class is enabled and checkers are on (`safekit checker off` and
//! a disabled class put it back to init). The engine's failover rules
//! decide what a down resource triggers. The built-in tests are in
//! [`crate::linux::checkers`]; the `<module>` checker (another module's
//! status) in the daemon; a partner supplies its own.
//!
//! `<custom>` is a user process supervised by [`spawn_custom`] that reports
//! through `safekit set`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::engine::{CheckerClass, Command, CommandKind, Input, Readiness, ResourceState, State};
use crate::services::{Checker, Observation};

use super::{CommandMsg, ModuleReport};

/// One checker and the class it runs in.
#[derive(Clone)]
pub struct CheckerSpec {
    /// The test.
    pub checker: Arc<dyn Checker>,
    /// Runs while this class is enabled.
    pub class: CheckerClass,
}

impl std::fmt::Debug for CheckerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckerSpec").field("resource", &self.checker.resource()).field("class", &self.class).finish()
    }
}

/// `<custom>`: the user's executable, started while its class is enabled.
#[derive(Debug, Clone)]
pub struct CustomSpec {
    /// `custom.<ident>`.
    pub resource: String,
    /// The executable (relative paths are in SAFEUSERBIN).
    pub exec: PathBuf,
    /// Extra arguments after `<module> <resource>`.
    pub args: Vec<String>,
    /// Runs while this class is enabled.
    pub class: CheckerClass,
}

/// Ready in SafeKit's sense for the module checker: ALONE/PRIM (mirror) or UP (farm, light), Ready.
fn module_ready(s: crate::engine::Status) -> bool {
    matches!(s.state, State::Alone | State::Prim | State::Up) && s.readiness == Readiness::Ready
}

fn enabled(class: CheckerClass, classes: &Mutex<BTreeSet<CheckerClass>>, report: &watch::Receiver<ModuleReport>) -> bool {
    let on = classes.lock().is_ok_and(|c| c.contains(&class));
    let off = report.borrow().resources.get("usersetting.checker").is_some_and(|v| v == "off");
    on && !off
}

/// Runs `spec` until the returned task is aborted. A checker that observes
/// another module ([`Observation::Module`]) keeps its resource up while
/// that module is ready, and stopstarts this module when it sees the other
/// one restart (its status Transient between two Ready ones).
pub fn spawn(
    spec: CheckerSpec,
    classes: Arc<Mutex<BTreeSet<CheckerClass>>>,
    report: watch::Receiver<ModuleReport>,
    inputs: mpsc::Sender<Input>,
    commands: Option<mpsc::Sender<CommandMsg>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Looks at the class often, tests every period: a checker whose
        // class was just enabled tests at once rather than a period later.
        let period = spec.checker.period().max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(period.min(Duration::from_millis(250)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let by = spec.checker.component().to_string();
        let resource = spec.checker.resource().to_string();
        let mut last = None;
        let mut restarting = false;
        let mut next_test = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            if !enabled(spec.class, &classes, &report) {
                restarting = false;
                if last.take().is_some() {
                    let _ = inputs.send(Input::Resource { name: resource.clone(), state: ResourceState::Init, by: by.clone() }).await;
                }
                continue;
            }
            if last.is_some() && tokio::time::Instant::now() < next_test {
                continue;
            }
            next_test = tokio::time::Instant::now() + period;
            let up = match spec.checker.check().await {
                Observation::Up => true,
                Observation::Down => false,
                Observation::Module(status) => {
                    let transient = status
                        .is_some_and(|s| matches!(s.state, State::Alone | State::Prim | State::Up) && s.readiness == Readiness::Transient);
                    let up = status.is_some_and(module_ready);
                    if last == Some(true) && transient {
                        restarting = true;
                    } else if !up && !transient {
                        // Stopped rather than restarting: the wait rule handles it.
                        restarting = false;
                    }
                    if restarting && up {
                        restarting = false;
                        if let Some(c) = &commands {
                            let (tx, _rx) = tokio::sync::oneshot::channel();
                            let _ = c.send((Command::by(CommandKind::Stopstart, "modulecheck"), tx)).await;
                        }
                    }
                    up || (restarting && last == Some(true))
                }
            };
            if last != Some(up) {
                last = Some(up);
                let state = if up { ResourceState::Up } else { ResourceState::Down };
                if inputs.send(Input::Resource { name: resource.clone(), state, by: by.clone() }).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// Supervises a `<custom>` checker: started with `<module> <resource>
/// [arg…]` in a process group of its own when its class is enabled,
/// restarted a second after it exits, killed (with its group) and its
/// resource put back to init when the class is disabled or the runtime ends.
pub fn spawn_custom(
    spec: CustomSpec,
    module: String,
    env: crate::services::ScriptEnv,
    classes: Arc<Mutex<BTreeSet<CheckerClass>>>,
    report: watch::Receiver<ModuleReport>,
    inputs: mpsc::Sender<Input>,
    log: Arc<dyn crate::services::LogSink>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let exe = if spec.exec.is_absolute() { spec.exec.clone() } else { env.bin.join(&spec.exec) };
        let mut child: Option<tokio::process::Child> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Kills the group when the runtime aborts this task.
        struct Group(Option<i32>);
        impl Drop for Group {
            fn drop(&mut self) {
                if let Some(pid) = self.0 {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        let mut group = Group(None);
        loop {
            tick.tick().await;
            let on = enabled(spec.class, &classes, &report);
            if let Some(c) = child.as_mut() {
                if !on {
                    if let Some(pid) = group.0.take() {
                        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    }
                    let _ = c.wait().await;
                    child = None;
                    let _ = inputs
                        .send(Input::Resource { name: spec.resource.clone(), state: ResourceState::Init, by: "customscript".into() })
                        .await;
                    continue;
                }
                if let Ok(Some(st)) = c.try_wait() {
                    log.write("check", crate::engine::LogLevel::E, &format!("Custom checker {} exited ({st}); restarted", exe.display()));
                    group.0 = None;
                    child = None;
                }
            }
            if on && child.is_none() {
                let mut cmd = tokio::process::Command::new(&exe);
                cmd.arg(&module).arg(&spec.resource).args(&spec.args).envs(&env.vars).process_group(0).kill_on_drop(true);
                cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
                die_with_daemon(&mut cmd);
                match cmd.spawn() {
                    Ok(c) => {
                        group.0 = c.id().and_then(|p| i32::try_from(p).ok());
                        child = Some(c);
                    }
                    Err(e) => log.write("check", crate::engine::LogLevel::E, &format!("Custom checker {} not started: {e}", exe.display())),
                }
            }
        }
    })
}

/// A checker must not outlive the daemon that supervises it: after a kill
/// -9 of the daemon, an orphan would go on checking, and on failure call
/// `safekit` against the next daemon, beside that daemon's own checker.
/// The kernel kills the checker when the thread that started it ends: a
/// runtime worker, which lives as long as the daemon's runtime.
fn die_with_daemon(cmd: &mut tokio::process::Command) {
    // SAFETY: between fork and exec the closure makes one prctl system call
    // (async-signal-safe) and allocates nothing.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from));
    }
}
