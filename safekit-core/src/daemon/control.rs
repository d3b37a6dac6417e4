//! The daemon's control protocol: one JSON request and one JSON answer per
//! connection on a root-only Unix socket (`SAFEVAR/run/safekit.sock`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::engine::{CommandKind, LogLevel};
use crate::runtime::ModuleReport;

/// What the CLI asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// A module command (`start`, `stop`, `prim`, ...) with `-i identity`.
    Command {
        /// Module.
        module: String,
        /// Command.
        kind: CommandKind,
        /// `-i identity`.
        identity: Option<String>,
    },
    /// `safekit state [-m AM]`.
    State {
        /// One module, or all.
        module: Option<String>,
    },
    /// `safekit log -m AM [-s N] [-A]`.
    Log {
        /// Module.
        module: String,
        /// How many lines.
        lines: usize,
        /// Include I and D.
        verbose: bool,
    },
    /// `safekit rfsverify -m AM`.
    Rfsverify {
        /// Module.
        module: String,
    },
    /// `safekit rfsdiff -m AM`.
    Rfsdiff {
        /// Module.
        module: String,
    },
    /// `safekit config -m AM`: check and apply the module's configuration;
    /// with `files`, first make them the module's files (the web service's
    /// configuration endpoints), put back if they do not apply.
    Config {
        /// Module.
        module: String,
        /// The module's new files (all of them), or `None`: as installed.
        #[serde(default)]
        files: Option<crate::modules::files::Files>,
    },
    /// `safekit module uninstall -m AM`: the module must be STOP; its
    /// runtime ends and its files go.
    Uninstall {
        /// Module.
        module: String,
    },
    /// `safekit boot on|off|status -m AM`: the node's boot-start switch.
    Boot {
        /// Module.
        module: String,
        /// Set it on or off; `None`: only say what it is.
        on: Option<bool>,
    },
    /// `safekit set -r R -v V -m AM [-i name]`: set a resource (custom checkers).
    Set {
        /// Module.
        module: String,
        /// `class.ident`.
        resource: String,
        /// init, up, down or unknown.
        value: String,
        /// `-i name`: who sets it, for the log.
        identity: Option<String>,
    },
    /// `safekit get -m AM [-r R]`: resources and their values.
    Get {
        /// Module.
        module: String,
        /// One resource, or all.
        resource: Option<String>,
    },
    /// `safekit printi|printw|printe` from a script.
    Print {
        /// Module.
        module: String,
        /// Level.
        level: LogLevel,
        /// Text.
        message: String,
    },
}

/// What the daemon answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Done.
    Ok,
    /// Refused: one sentence.
    Error(String),
    /// Module states.
    States(Vec<ModuleReport>),
    /// Log lines.
    Lines(Vec<String>),
}

/// Sends `req` to the daemon listening on `socket`.
pub async fn call(socket: &Path, req: &Request) -> Result<Response, String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("the safekit daemon is not running ({}: {e})", socket.display()))?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    w.write_all(line.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(r).read_line(&mut answer).await.map_err(|e| e.to_string())?;
    serde_json::from_str(&answer).map_err(|e| format!("bad answer from the daemon: {e}"))
}
