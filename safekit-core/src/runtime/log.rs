//! The module log: `| date | component | level | message` lines in
//! `SAFEUSERVAR/log.txt`, rotated at 10 MiB, also emitted through tracing
//! (journald-friendly when the daemon runs under systemd).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::clock::log_stamp;
use crate::engine::LogLevel;
use crate::services::LogSink;

const ROTATE_AT: u64 = 10 * 1024 * 1024;

/// One module's log file: the default [`LogSink`].
#[derive(Debug)]
pub struct ModuleLog {
    path: PathBuf,
    module: String,
    lock: Mutex<()>,
}

/// The one-letter level SafeKit prints.
pub const fn letter(l: LogLevel) -> char {
    match l {
        LogLevel::D => 'D',
        LogLevel::I => 'I',
        LogLevel::E => 'E',
        LogLevel::U => 'U',
        LogLevel::S => 'S',
        LogLevel::C => 'C',
    }
}

impl ModuleLog {
    /// The log of `module` in `dir`.
    pub fn new(dir: &Path, module: &str) -> Self {
        let _ = std::fs::create_dir_all(dir);
        Self { path: dir.join("log.txt"), module: module.to_string(), lock: Mutex::new(()) }
    }
}

impl LogSink for ModuleLog {
    /// Appends one message (and fsyncs nothing: losing the last lines in a
    /// crash is acceptable, slowing the engine is not).
    fn write(&self, component: &str, level: LogLevel, msg: &str) {
        let line = format!("| {} | {component} | {} | {msg}\n", log_stamp(SystemTime::now()), letter(level));
        match level {
            LogLevel::C => tracing::error!(module = %self.module, component, "{msg}"),
            LogLevel::D => tracing::debug!(module = %self.module, component, "{msg}"),
            _ => tracing::info!(module = %self.module, component, "{msg}"),
        }
        let _g = self.lock.lock();
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > ROTATE_AT) {
            let _ = std::fs::rename(&self.path, self.path.with_extension("txt.1"));
        }
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.path) {
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// The last `n` lines; without `verbose`, I and D lines are left out.
    fn tail(&self, n: usize, verbose: bool) -> Vec<String> {
        let _g = self.lock.lock();
        let mut lines: Vec<String> = Vec::new();
        for p in [self.path.with_extension("txt.1"), self.path.clone()] {
            if let Ok(s) = std::fs::read_to_string(&p) {
                lines.extend(s.lines().map(str::to_string));
            }
        }
        lines.retain(|l| verbose || !(l.contains(" | I | ") || l.contains(" | D | ")));
        let start = lines.len().saturating_sub(n);
        lines.split_off(start)
    }
}
