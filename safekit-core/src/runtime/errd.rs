//! errd: process monitoring (reference §1.8). Every `polltimer` it counts the
//! processes matching each `<proc>` whose class is enabled (by name, the
//! 15-character `comm`, or `nameregex`, and `argregex` on the command line)
//! and, when `atleast`/`atmax` fail, logs SafeKit's message and issues the
//! action as a command with identity `errd`, so maxloop counts it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Errd, ErrdAction, Proc};
use crate::engine::{CheckerClass, Command, CommandKind, Input, LogLevel, Readiness, ResourceState};

use super::{CommandMsg, ModuleReport};
use crate::services::LogSink;

/// The class of a `<proc>`, if it is one the engine toggles.
fn class_of(c: &str) -> Option<CheckerClass> {
    Some(match c {
        "pre" => CheckerClass::Pre,
        "prim" => CheckerClass::Prim,
        "second" => CheckerClass::Second,
        "sec" => CheckerClass::Sec,
        "both" => CheckerClass::Both,
        _ => return None,
    })
}

/// A process as errd sees it.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    /// `comm` (at most 15 characters).
    pub comm: String,
    /// The command line, arguments separated by spaces.
    pub cmdline: String,
}

/// The processes of this system (its PID namespace).
pub fn processes() -> Vec<ProcInfo> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?.trim_end().to_string();
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim_end().to_string();
            Some(ProcInfo { comm, cmdline })
        })
        .collect()
}

/// Compiled matchers of one `<proc>`.
pub struct Matcher {
    name: String,
    nameregex: Option<regex::Regex>,
    argregex: Option<regex::Regex>,
}

impl Matcher {
    /// Compiles `p`'s expressions (checked at configuration time already).
    pub fn new(p: &Proc) -> Self {
        Self {
            name: p.name.chars().take(15).collect(),
            nameregex: p.nameregex.as_deref().and_then(|r| regex::Regex::new(r).ok()),
            argregex: p.argregex.as_deref().and_then(|r| regex::Regex::new(r).ok()),
        }
    }

    /// Does `p` match?
    pub fn matches(&self, p: &ProcInfo) -> bool {
        let name_ok = self.nameregex.as_ref().map_or(p.comm == self.name, |r| r.is_match(&p.comm));
        name_ok && self.argregex.as_ref().is_none_or(|r| r.is_match(&p.cmdline))
    }
}

/// What a count means for a `<proc>`: `None` = fine, else the failure text.
pub fn verdict(p: &Proc, count: usize) -> Option<String> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    if p.atleast >= 0 && count < p.atleast {
        return Some(if count == 0 {
            format!("Process {} not running", p.name)
        } else {
            format!("Process {}: {count} running, at least {} expected", p.name, p.atleast)
        });
    }
    if p.atmax >= 0 && count > p.atmax.max(0) || (p.atmax == 0 && count > 0) {
        return Some(format!("Process {}: {count} running, at most {} allowed", p.name, p.atmax));
    }
    None
}

/// Runs a special handler from the module's `bin/` with the scripts'
/// environment, within the forced-stop timeout.
async fn run_handler(env: &crate::services::ScriptEnv, name: &str) -> Result<(), String> {
    let path = env.bin.join(name);
    if name.contains('/') && !name.starts_with("./") {
        return Err("a handler is a file of the module's bin/ directory".into());
    }
    let child = tokio::process::Command::new(&path)
        .envs(&env.vars)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match tokio::time::timeout(env.forcestop, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(out.status.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {:?}", env.forcestop)),
    }
}

/// Runs errd for one module until the daemon stops.
pub fn spawn(
    errd: Errd,
    env: crate::services::ScriptEnv,
    classes: Arc<Mutex<BTreeSet<CheckerClass>>>,
    report: watch::Receiver<ModuleReport>,
    commands: mpsc::Sender<CommandMsg>,
    inputs: mpsc::Sender<Input>,
    log: Arc<dyn LogSink>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let matchers: Vec<Matcher> = errd.procs.iter().map(Matcher::new).collect();
        let mut tick = tokio::time::interval(errd.polltimer.max(std::time::Duration::from_millis(100)));
        let mut last: Vec<Option<bool>> = vec![None; errd.procs.len()];
        loop {
            tick.tick().await;
            // Not while the module is between states: a restart in progress
            // must not be taken for a failure.
            let (ready, off) = {
                let r = report.borrow();
                (r.status.readiness == Readiness::Ready, r.resources.get("usersetting.errd").is_some_and(|v| v == "off"))
            };
            if !ready || off {
                continue;
            }
            let enabled = classes.lock().map(|c| c.clone()).unwrap_or_default();
            let procs = processes();
            for (i, (p, m)) in errd.procs.iter().zip(&matchers).enumerate() {
                if !class_of(&p.class).is_some_and(|c| enabled.contains(&c)) {
                    last[i] = None;
                    continue;
                }
                let count = procs.iter().filter(|x| m.matches(x)).count();
                let failure = verdict(p, count);
                let up = failure.is_none();
                if last[i] != Some(up) {
                    let state = if up { ResourceState::Up } else { ResourceState::Down };
                    let _ = inputs.send(Input::Resource { name: format!("proc.{}", p.name), state, by: "errd".into() }).await;
                }
                last[i] = Some(up);
                let Some(why) = failure else { continue };
                log.write("errd", LogLevel::C, &why);
                let kind = match &p.action {
                    ErrdAction::Restart => CommandKind::Restart,
                    ErrdAction::Stopstart => CommandKind::Stopstart,
                    ErrdAction::Stop => CommandKind::Stop,
                    ErrdAction::Noaction => continue,
                    ErrdAction::Handler(h) => {
                        // SafeKit: the handler repairs; exit 0 = done, anything
                        // else (or a timeout) = stopstart.
                        match run_handler(&env, h).await {
                            Ok(()) => {
                                log.write("errd", LogLevel::E, &format!("Special handler {h} succeeded"));
                                continue;
                            }
                            Err(e) => {
                                log.write("errd", LogLevel::E, &format!("Special handler {h} failed ({e}): stopstart"));
                                CommandKind::Stopstart
                            }
                        }
                    }
                };
                log.write("errd", LogLevel::E, &format!("Action {} called by errd", kind.name()));
                let (tx, rx) = oneshot::channel();
                if commands.send((Command::by(kind, "errd"), tx)).await.is_err() {
                    return;
                }
                if let Ok(Err(e)) = rx.await {
                    log.write("errd", LogLevel::E, &format!("errd action refused: {e}"));
                }
                // One action per poll: the others wait for the next state.
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_(name: &str, atleast: i64, atmax: i64) -> Proc {
        Proc {
            name: name.into(),
            service: false,
            nameregex: None,
            argregex: Some("--serve".into()),
            atleast,
            atmax,
            action: ErrdAction::Restart,
            restart_services: vec![],
            class: "prim".into(),
            start_after: 0,
        }
    }

    #[test]
    fn matching_and_verdicts() {
        let p = proc_("mysqld", 1, -1);
        let m = Matcher::new(&p);
        assert!(m.matches(&ProcInfo { comm: "mysqld".into(), cmdline: "/usr/sbin/mysqld --serve".into() }));
        assert!(!m.matches(&ProcInfo { comm: "mysqld".into(), cmdline: "/usr/sbin/mysqld".into() }), "argregex");
        assert!(!m.matches(&ProcInfo { comm: "mysql".into(), cmdline: "--serve".into() }));
        assert_eq!(verdict(&p, 0).as_deref(), Some("Process mysqld not running"));
        assert_eq!(verdict(&p, 2), None);
        assert!(verdict(&proc_("x", -1, 2), 3).is_some());
        assert!(verdict(&proc_("x", -1, 0), 1).is_some(), "atmax 0: action each time it runs");
        let long = Matcher::new(&Proc { argregex: None, ..proc_("a-very-long-process-name", 1, -1) });
        assert!(long.matches(&ProcInfo { comm: "a-very-long-pro".into(), cmdline: String::new() }), "comm is 15 characters");
    }
}
