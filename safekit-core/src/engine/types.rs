//! The engine's vocabulary: states, inputs, actions, commands and what a node
//! persists. Everything here is plain data, so tests can compare whole
//! vectors of actions and the simulation can replay them.

use std::fmt;

/// SafeKit module states (reference §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// Stopped.
    Stop,
    /// Starting, stopping, or blocked waiting for a resource.
    Wait,
    /// Primary without a secondary (mirror).
    Alone,
    /// Primary with a secondary (mirror).
    Prim,
    /// Secondary (mirror).
    Second,
    /// Running (farm and light modules).
    Up,
}

impl State {
    /// Upper-case name as SafeKit prints it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "STOP",
            Self::Wait => "WAIT",
            Self::Alone => "ALONE",
            Self::Prim => "PRIM",
            Self::Second => "SECOND",
            Self::Up => "UP",
        }
    }

    /// `safekit state -lq` exit code: STOP 0, WAIT 1, ALONE/UP 2, PRIM 3, SECOND 4.
    pub const fn exit_code(self) -> i32 {
        match self {
            Self::Stop => 0,
            Self::Wait => 1,
            Self::Alone | Self::Up => 2,
            Self::Prim => 3,
            Self::Second => 4,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Readiness qualifier shown next to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Readiness {
    /// Blocked (red).
    NotReady,
    /// A transition is in progress (orange).
    Transient,
    /// Stable (green).
    Ready,
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotReady => "NotReady",
            Self::Transient => "Transient",
            Self::Ready => "Ready",
        })
    }
}

/// A state with its readiness, e.g. `ALONE Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// The state.
    pub state: State,
    /// Its readiness.
    pub readiness: Readiness,
}

impl Status {
    /// Builds a status.
    pub const fn new(state: State, readiness: Readiness) -> Self {
        Self { state, readiness }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.state, self.readiness)
    }
}

/// Correlates a script run or witness check with its result, so a late result
/// of a superseded run is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct RunId(pub u64);

/// Module scripts (reference §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ScriptKind {
    /// On module start, before resources are set up.
    Prestart,
    /// On module stop, last.
    Poststop,
    /// Entering the primary role (PRIM/ALONE Ready).
    StartPrim,
    /// Leaving the primary role.
    StopPrim,
    /// Entering SECOND Ready.
    StartSecond,
    /// Leaving SECOND.
    StopSecond,
    /// Entering SECOND or ALONE Ready.
    StartSec,
    /// Leaving SECOND or ALONE.
    StopSec,
    /// Entering any running state (farm/light UP; mirror PRIM/ALONE/SECOND).
    StartBoth,
    /// Leaving any running state.
    StopBoth,
    /// On every major transition.
    Transition,
}

impl ScriptKind {
    /// File name in the module's `bin/`.
    pub const fn file_name(self) -> &'static str {
        match self {
            Self::Prestart => "prestart",
            Self::Poststop => "poststop",
            Self::StartPrim => "start_prim",
            Self::StopPrim => "stop_prim",
            Self::StartSecond => "start_second",
            Self::StopSecond => "stop_second",
            Self::StartSec => "start_sec",
            Self::StopSec => "stop_sec",
            Self::StartBoth => "start_both",
            Self::StopBoth => "stop_both",
            Self::Transition => "transition",
        }
    }
}

/// The action argument scripts receive as `$3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ScriptAction {
    /// A start.
    Start,
    /// A stop.
    Stop,
    /// A stop followed by an automatic start.
    Stopstart,
    /// A stop into WAIT because a wait rule fired.
    Stopwait,
    /// `safekit restart`: stop_xx/start_xx of the current state only.
    Restart,
    /// `safekit swap`.
    Swap,
}

impl ScriptAction {
    /// As passed on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Stopstart => "stopstart",
            Self::Stopwait => "stopwait",
            Self::Restart => "restart",
            Self::Swap => "swap",
        }
    }
}

/// One script execution requested from the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ScriptRun {
    /// Correlation id for [`Input::ScriptDone`](super::Input::ScriptDone).
    pub run: RunId,
    /// Which script.
    pub script: ScriptKind,
    /// Second (forced) pass of a stop script: `force` is the first argument.
    pub force: bool,
    /// `$1`: current state.
    pub from: State,
    /// `$2`: next state.
    pub to: State,
    /// `$3`: action.
    pub action: ScriptAction,
}

impl ScriptRun {
    /// The argument vector SafeKit passes: `[force] <current> <next> <action>`.
    pub fn args(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(4);
        if self.force {
            v.push("force".to_string());
        }
        v.extend([self.from.as_str().to_string(), self.to.as_str().to_string(), self.action.as_str().to_string()]);
        v
    }
}

/// Classes of checkers and errd processes, enabled and disabled with the scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum CheckerClass {
    /// From prestart to poststop.
    Pre,
    /// While start_prim has run.
    Prim,
    /// While start_second has run.
    Second,
    /// While start_sec has run.
    Sec,
    /// While start_both has run.
    Both,
}

/// Direction of file replication on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ReplicaRole {
    /// Local writes are applied and shipped to the secondary (when one is connected).
    Primary,
    /// Receives the primary's writes; local writes refused in read_only mode.
    Secondary,
}

/// How much a reintegration copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SyncMode {
    /// Every file.
    Full,
    /// Only the zones the primary recorded as modified.
    Zones,
}

/// Log levels of the module log (reference §9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum LogLevel {
    /// Debug (verbose log only).
    D,
    /// Information (verbose log only).
    I,
    /// Event: state changes and the like.
    E,
    /// User: administrator actions.
    U,
    /// Script runs.
    S,
    /// Critical: error detections.
    C,
}

/// A resource's state (`safekit get`/`set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ResourceState {
    /// Not yet tested.
    Init,
    /// Test passes.
    Up,
    /// Test fails.
    Down,
    /// Remote resource whose state cannot be known.
    Unknown,
}

impl fmt::Display for ResourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Init => "init",
            Self::Up => "up",
            Self::Down => "down",
            Self::Unknown => "unknown",
        })
    }
}

impl std::str::FromStr for ResourceState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "init" => Ok(Self::Init),
            "up" => Ok(Self::Up),
            "down" => Ok(Self::Down),
            "unknown" => Ok(Self::Unknown),
            _ => Err(format!("'{s}' is not a resource state (expected init, up, down or unknown)")),
        }
    }
}

/// `service/@defaultprim`: who is primary when both could be.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPrim {
    /// The node that is ALONE stays primary (no swap).
    Alone,
    /// After reintegration, swap so that this node (a cluster node name) is primary.
    Node(String),
    /// A restarted module becomes primary again if it was before its last stop.
    LastPrim,
}

/// `swap` or `swap nosync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SwapKind {
    /// Resynchronise the new secondary (zones) after the swap.
    Sync,
    /// Swap without synchronising.
    NoSync,
}
