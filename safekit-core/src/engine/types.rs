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
    /// Correlation id for [`Input::ScriptDone`].
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

impl DataStatus {
    /// Currency as one comparable value: epoch, then generation.
    pub const fn version(&self) -> (u64, u64) {
        (self.epoch, self.gen)
    }
}

impl Persistent {
    /// Currency as one comparable value: epoch, then generation.
    pub const fn version(&self) -> (u64, u64) {
        (self.epoch, self.gen)
    }
}

/// The role a node last held in a Ready state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// PRIM (with a secondary in sync).
    Prim,
    /// ALONE (the peer is behind), reached from WAIT or PRIM.
    Alone,
    /// ALONE reached by failing over from SECOND: when two nodes come back
    /// with the same generation, this one went on after the other stopped.
    AloneAfterFailover,
    /// SECOND.
    Second,
}

impl Role {
    /// PRIM or ALONE.
    pub const fn is_primary(self) -> bool {
        !matches!(self, Self::Second)
    }

    /// ALONE, either way.
    pub const fn is_alone(self) -> bool {
        matches!(self, Self::Alone | Self::AloneAfterFailover)
    }
}

/// Currency of the local replicated data, as persisted and as told to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct DataStatus {
    /// Administrator epoch: incremented by each forced `prim`/`primforce`, so
    /// data an administrator explicitly chose outranks any older history.
    pub epoch: u64,
    /// Data generation: bumped each time a node becomes primary without a
    /// secondary in sync, adopted by a secondary when its reintegration ends.
    /// Higher means newer; 0 means never synchronised (first start).
    pub gen: u64,
    /// This node believes it holds the newest data (resource `rfs.uptodate`).
    pub uptodate: bool,
    /// A reintegration was interrupted: the data may be inconsistent.
    pub partial: bool,
    /// Role when last Ready.
    pub last_role: Option<Role>,
    /// The previous run of the module ended without a clean stop.
    pub unclean: bool,
}

/// What a node persists crash-safely for one module (the runtime writes it
/// with temp file + fsync + rename when it sees [`Action::Persist`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Persistent {
    /// Administrator epoch (see [`DataStatus::epoch`]).
    pub epoch: u64,
    /// Data generation (see [`DataStatus::gen`]).
    pub gen: u64,
    /// `rfs.uptodate`.
    pub uptodate: bool,
    /// Interrupted reintegration.
    pub partial: bool,
    /// Role when last Ready.
    pub last_role: Option<Role>,
    /// True from start until a clean STOP: still true after a crash.
    pub running: bool,
    /// The next secondary must be fully resynchronised (`prim fullsync`, `primforce`).
    pub full_sync_required: bool,
    /// The local data diverged (split brain loser): the next reintegration is full.
    pub need_full_sync: bool,
    /// Split brain loser: before the next reintegration overwrites them,
    /// the files this node changed alone are moved aside (quarantine).
    pub quarantine: bool,
    /// `usersetting.failover`.
    pub failover: bool,
    /// `usersetting.errd`: process monitoring on (maintenance switch).
    pub errd: bool,
    /// `usersetting.checker`: checkers on (maintenance switch).
    pub checker: bool,
}

impl Default for Persistent {
    fn default() -> Self {
        Self {
            epoch: 0,
            gen: 0,
            uptodate: false,
            partial: false,
            last_role: None,
            running: false,
            full_sync_required: false,
            need_full_sync: false,
            quarantine: false,
            failover: true,
            errd: true,
            checker: true,
        }
    }
}

/// Content of a heartbeat: everything the peer's engine decides on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    /// Sender node name.
    pub node: String,
    /// Sender's engine incarnation (changes at each daemon start).
    pub incarnation: u64,
    /// Sequence number within the incarnation.
    pub seq: u64,
    /// Sender's status.
    pub status: Status,
    /// The sender holds primary resources (VIP, application, replication source).
    /// The peer never takes them over while this is true and heartbeats flow.
    pub primary_active: bool,
    /// Sender's data currency.
    pub data: DataStatus,
    /// Sender's failover setting.
    pub failover: bool,
    /// Sender (primary) requires a full resynchronisation of its secondary.
    pub full_sync_required: bool,
    /// Sender (primary) replicates in degraded mode (no secondary possible).
    pub degraded: bool,
    /// Sender became ALONE by failing over from SECOND (split-brain recovery).
    pub alone_after_failover: bool,
    /// Sender (SECOND Ready) asks its primary to swap roles.
    pub swap_request: Option<SwapKind>,
    /// Sender (former primary) handed over in a swap and waits for the peer to take over.
    pub handing_over: bool,
    /// Sender currently receives our heartbeats on at least one network: a
    /// node that hears a peer which does not hear it knows the partition is
    /// one-way, and that only it can resolve a split brain.
    pub hears_peer: bool,
    /// Sender's checker resources, for failover rules over `remote.` ones.
    pub resources: std::collections::BTreeMap<String, ResourceState>,
}

/// `swap` or `swap nosync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SwapKind {
    /// Resynchronise the new secondary (zones) after the swap.
    Sync,
    /// Swap without synchronising.
    NoSync,
}

/// Events reported by the replicator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ReplicationEvent {
    /// The secondary's reintegration finished: its data equals the primary's.
    ReintegrationDone,
    /// The reintegration failed.
    ReintegrationFailed {
        /// Why.
        reason: String,
    },
    /// Progress of the reintegration.
    ReintegrationProgress {
        /// Bytes copied.
        done: u64,
        /// Bytes to copy.
        total: u64,
        /// Estimated seconds left, when the replicator can tell.
        eta_secs: Option<u64>,
    },
    /// Unrecoverable replication error on the primary: continue without a secondary.
    Degraded {
        /// Why.
        reason: String,
    },
    /// The secondary did not answer within locktimeout/sendtimeout: drop it.
    SecondaryLost {
        /// Why.
        reason: String,
    },
}

/// Inputs to the engine besides time and commands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Input {
    /// A heartbeat from the peer arrived on heartbeat network `lan` (index in the config).
    Heartbeat {
        /// Index of the heartbeat network.
        lan: usize,
        /// Content.
        hb: Heartbeat,
    },
    /// The runtime knows that network `lan` is down (e.g. link down) before the timeout.
    HeartbeatLost {
        /// Index of the heartbeat network.
        lan: usize,
    },
    /// A script run ended (`success` = exit code 0 within its timeout).
    ScriptDone {
        /// The run.
        run: RunId,
        /// Exit code 0.
        success: bool,
    },
    /// Answer of the split-brain witness check.
    WitnessResult {
        /// The check.
        run: RunId,
        /// At least one witness answered.
        reachable: bool,
    },
    /// A checker resource changed (`<class>.<ident>`).
    Resource {
        /// Resource name, e.g. `ping.gateway`.
        name: String,
        /// New state.
        state: ResourceState,
        /// Who set it, for the log ("set to down by tcpcheck").
        by: String,
    },
    /// A replication event.
    Replication(ReplicationEvent),
}

/// Effects the runtime must carry out, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// Run a script; answer with [`Input::ScriptDone`].
    RunScript(ScriptRun),
    /// Kill a running script (forcestop); its result will be ignored.
    CancelScript(RunId),
    /// Configure the virtual IP addresses (and announce them).
    SetVip,
    /// Remove the virtual IP addresses.
    RemoveVip,
    /// Start replicating in `role`.
    StartReplication(ReplicaRole),
    /// Primary: continue without the secondary, recording modified zones.
    DropSecondary,
    /// Stop replicating (unmount).
    StopReplication,
    /// Secondary: copy from the primary.
    StartReintegration(SyncMode),
    /// Ask the split-brain witness; answer with [`Input::WitnessResult`].
    CheckWitness(RunId),
    /// Secondary, before a reintegration: move the files this node changed
    /// while it was (wrongly) alone into the quarantine directory. Must be
    /// done before the next action.
    QuarantineLocalChanges,
    /// Start checkers and errd processes of a class.
    EnableCheckers(CheckerClass),
    /// Stop checkers and errd processes of a class.
    DisableCheckers(CheckerClass),
    /// Write the persistent state crash-safely before the next action.
    Persist(Persistent),
    /// Send a heartbeat on every heartbeat network.
    SendHeartbeat(Heartbeat),
    /// Write a module log message.
    Log {
        /// Level.
        level: LogLevel,
        /// Text, in SafeKit's wording where there is one.
        message: String,
    },
    /// The local status changed.
    StateChanged {
        /// Before.
        from: Status,
        /// After.
        to: Status,
    },
}

/// Administrator commands (`safekit <cmd> -m AM [-i identity]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CommandKind {
    /// Start; the role is chosen automatically.
    Start,
    /// Stop (failover if primary).
    Stop,
    /// Stop without the graceful pass, killing a stuck script.
    Forcestop,
    /// stop_xx + start_xx of the current state.
    Restart,
    /// Stop then start automatically.
    Stopstart,
    /// Force start as primary.
    Prim {
        /// Force a full resynchronisation of the secondary.
        fullsync: bool,
    },
    /// Force start as secondary.
    Second {
        /// Copy everything.
        fullsync: bool,
    },
    /// Primary even with possibly inconsistent data.
    Primforce,
    /// Exchange primary and secondary.
    Swap(SwapKind),
    /// `failover on|off`.
    Failover(bool),
    /// `errd on|off`: process monitoring (persisted maintenance switch).
    Errd(bool),
    /// `checker on|off`: checkers (persisted maintenance switch).
    Checker(bool),
}

impl CommandKind {
    /// The command word as typed.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Forcestop => "forcestop",
            Self::Restart => "restart",
            Self::Stopstart => "stopstart",
            Self::Prim { .. } => "prim",
            Self::Second { .. } => "second",
            Self::Primforce => "primforce",
            Self::Swap(_) => "swap",
            Self::Failover(_) => "failover",
            Self::Errd(_) => "errd",
            Self::Checker(_) => "checker",
        }
    }
}

/// A command with the identity of who issued it: `None` is an administrator
/// (resets the maxloop counter); `Some` is a checker, errd, script or the
/// failover machine (counts towards maxloop).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Command {
    /// What.
    pub kind: CommandKind,
    /// `-i identity`.
    pub identity: Option<String>,
    /// Who the administrator is (`root`, `admin@10.0.0.5`), for the log
    /// line "Action … called by …"; `None` logs `admin`.
    #[serde(default)]
    pub admin: Option<String>,
    /// Issued by the failover rule named by `identity` ("Action restart
    /// from failover rule t_app" rather than "called by").
    #[serde(default)]
    pub from_rule: bool,
}

impl Command {
    /// An administrator command.
    pub const fn admin(kind: CommandKind) -> Self {
        Self { kind, identity: None, admin: None, from_rule: false }
    }

    /// A command issued by a detector.
    pub fn by(kind: CommandKind, identity: &str) -> Self {
        Self { kind, identity: Some(identity.to_string()), admin: None, from_rule: false }
    }

    /// A command issued by failover rule `label` (counts towards maxloop).
    pub fn by_rule(kind: CommandKind, label: &str) -> Self {
        Self { kind, identity: Some(label.to_string()), admin: None, from_rule: true }
    }

    /// The end of the log line "Action <name> …": "called by <who>" or
    /// "from failover rule <label>".
    pub fn caller(&self) -> String {
        let who = self.identity.clone().or_else(|| self.admin.clone()).unwrap_or_else(|| "admin".into());
        if self.from_rule {
            format!("from failover rule {who}")
        } else {
            format!("called by {who}")
        }
    }
}

/// Why a command was refused: one sentence the CLI prints as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The module is running; the command needs it stopped.
    #[error("the module is already started ({0}); run safekit stop first")]
    AlreadyStarted(Status),
    /// The module is stopped.
    #[error("the module is stopped")]
    NotStarted,
    /// prim while the peer is primary.
    #[error("the other node is already primary ({0}); prim is refused")]
    PeerIsPrimary(Status),
    /// second while the peer is not primary.
    #[error("the other node is not primary ({0}); second needs a primary to synchronise from")]
    PeerNotPrimary(String),
    /// prim after an interrupted reintegration.
    #[error("data may be inconsistent for replicated directories (stopped during reintegration); use primforce to force")]
    DataInconsistent,
    /// restart/swap outside a Ready state.
    #[error("{cmd} needs a Ready state, the module is {status}")]
    NotReady {
        /// The command.
        cmd: &'static str,
        /// Current status.
        status: Status,
    },
    /// swap without a PRIM/SECOND pair.
    #[error("swap needs PRIM (Ready) and SECOND (Ready); the module is {local} and the other node {remote}")]
    NoPair {
        /// Local status.
        local: Status,
        /// Remote status, or UNKNOWN.
        remote: String,
    },
    /// A mirror-only command on a light or farm module.
    #[error("{0} applies to mirror modules only")]
    NotMirror(&'static str),
}
