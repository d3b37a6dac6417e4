//! What goes into the engine (inputs, commands) and what comes out
//! (actions): plain data, so tests compare whole vectors of actions.

#[allow(clippy::wildcard_imports)]
use super::persist::*;
#[allow(clippy::wildcard_imports)]
use super::types::*;

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
    /// The primary admitted its first write the secondary does not have
    /// since it went ALONE (sent once per ALONE episode).
    WroteAlone,
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
    /// An [`Action::Persist`] could not be made durable (a full or failing
    /// disk): after a crash this node would not remember its role or how
    /// current its data is, so it must not go on holding one.
    PersistFailed {
        /// Why, for the module log.
        reason: String,
    },
    /// An awaited effect ([`Action::SetVip`], [`Action::RemoveVip`],
    /// [`Action::QuarantineLocalChanges`]) ended.
    /// Until it does, the plan that asked for it waits, as for a script:
    /// the runtime carries effects out beside the heartbeats, never instead
    /// of them, and a failure is a fact the engine decides on.
    EffectDone {
        /// The effect's run.
        run: RunId,
        /// `Err(why)` if it failed.
        result: Result<(), String>,
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
    /// The runtime was not scheduled for `lag` beyond a deadline (a VM
    /// pause, SIGSTOP, a swap storm): what it knows of the peer is old, and
    /// its heartbeat deadlines expired while it could not listen. Fed before
    /// anything else the runtime handles after the stall.
    Stalled {
        /// How late the runtime woke up.
        lag: std::time::Duration,
    },
    /// Farm: this node's share of a group's buckets changed (shown as the
    /// resource `<group>_0`, the load share in percent, as in SafeKit).
    FarmLoad {
        /// The `<group>` name.
        group: String,
        /// Buckets owned, of 256.
        owned: u16,
    },
}

/// Effects the runtime must carry out, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// Run a script; answer with [`Input::ScriptDone`].
    RunScript(ScriptRun),
    /// Kill a running script (forcestop); its result will be ignored.
    CancelScript(RunId),
    /// Configure the virtual IP addresses (and announce them); answer with
    /// [`Input::EffectDone`] of this run.
    SetVip(RunId),
    /// Remove the virtual IP addresses; answer with [`Input::EffectDone`].
    RemoveVip(RunId),
    /// Start replicating in `role`.
    StartReplication(ReplicaRole),
    /// Primary: continue without the secondary, recording modified zones.
    DropSecondary,
    /// Primary: what happens to a write the secondary does not have (see
    /// [`UnreplicatedWrites`]).
    UnreplicatedWrites(UnreplicatedWrites),
    /// Stop replicating (unmount).
    StopReplication,
    /// Secondary: copy from the primary.
    StartReintegration(SyncMode),
    /// Ask the split-brain witness; answer with [`Input::WitnessResult`].
    CheckWitness(RunId),
    /// Secondary, before a reintegration: move the files this node changed
    /// while it was (wrongly) alone into the quarantine directory; answer
    /// with [`Input::EffectDone`]. The reintegration, which overwrites
    /// them, starts only once they are kept aside.
    QuarantineLocalChanges(RunId),
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

/// What a primary does with a write its secondary will not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum UnreplicatedWrites {
    /// Acknowledge it: this node may go on ALONE (the default of a replicator).
    Admit,
    /// Make it wait: PRIM, whose secondary may have taken over if the link
    /// dropped; the engine decides, then admits or refuses.
    Hold,
    /// Fail it (EIO): this node lost the primary role to the other one, so
    /// the application's stop must not wait for writes that cannot count.
    Refuse,
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
    /// A farm module with `<vip scriptcontrol="on">`: its scripts open
    /// (`true`) or close its traffic (SafeKit's `saferpc_send vipd
    /// SETGROUPS all all all` / `none none none`).
    Traffic(bool),
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
            Self::Traffic(true) => "traffic open",
            Self::Traffic(false) => "traffic close",
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
    /// Issued by the daemon's boot start ("Action start called at boot time").
    #[serde(default)]
    pub at_boot: bool,
}

impl Command {
    /// An administrator command.
    pub const fn admin(kind: CommandKind) -> Self {
        Self { kind, identity: None, admin: None, from_rule: false, at_boot: false }
    }

    /// A command issued by a detector.
    pub fn by(kind: CommandKind, identity: &str) -> Self {
        Self { kind, identity: Some(identity.to_string()), admin: None, from_rule: false, at_boot: false }
    }

    /// A command issued by failover rule `label` (counts towards maxloop).
    pub fn by_rule(kind: CommandKind, label: &str) -> Self {
        Self { kind, identity: Some(label.to_string()), admin: None, from_rule: true, at_boot: false }
    }

    /// The daemon's boot start of a module (`<service boot="on">`).
    pub const fn at_boot(kind: CommandKind) -> Self {
        Self { kind, identity: None, admin: None, from_rule: false, at_boot: true }
    }

    /// The end of the log line "Action `name` …": "called by `who`",
    /// "from failover rule `label`" or "called at boot time".
    pub fn caller(&self) -> String {
        if self.at_boot {
            return "called at boot time".into();
        }
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
    /// A traffic command on a module whose traffic the daemon opens itself.
    #[error("the traffic is opened and closed by scripts only in a farm module with <vip scriptcontrol=\"on\">")]
    NotScriptControlled,
}
