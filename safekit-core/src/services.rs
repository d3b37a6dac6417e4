//! The services a node runtime needs, as traits partners can implement
//! (as trait objects) to embed the engine in their own product. The default
//! Linux implementations are in `crate::linux` (feature `linux`); the
//! traits themselves need no feature.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::engine::{Heartbeat as HeartbeatMsg, LogLevel, Persistent, ReplicaRole, ScriptRun, SyncMode};

/// Why a service could not do what the runtime asked. The runtime turns it
/// into a module log line and a fact for the engine (a VIP that could not
/// be set, a reintegration that failed, a witness that said no), so its
/// `Display` is a sentence an administrator reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (with the path or address involved).
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A party the service depends on (the peer, a witness, a cloud API)
    /// did not answer.
    #[error("{0}")]
    Unreachable(String),
    /// The service answered no (a witness that refuses this node, a
    /// request that makes no sense in the service's state or configuration).
    #[error("{0}")]
    Refused(String),
    /// Anything else, said in one sentence.
    #[error("{0}")]
    Failed(String),
}

impl ServiceError {
    /// An operating-system error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}

impl From<String> for ServiceError {
    fn from(sentence: String) -> Self {
        Self::Failed(sentence)
    }
}

impl From<&str> for ServiceError {
    fn from(sentence: &str) -> Self {
        Self::Failed(sentence.to_string())
    }
}

/// Sends and receives heartbeats on the module's networks.
#[async_trait]
pub trait Heartbeat: Send + Sync {
    /// Sends `msg` on every network.
    async fn send(&self, msg: &HeartbeatMsg);
    /// The next authentic, fresh heartbeat and the index of its network.
    async fn recv(&self) -> (usize, HeartbeatMsg);
    /// Datagrams dropped so far (forged, replayed, truncated, oversized, ...).
    fn dropped(&self) -> u64;
    /// Per network, in the module's `<lan>` order: heartbeats received and
    /// lost so far. Empty for a transport that does not count.
    fn lan_stats(&self) -> Vec<LanStats> {
        Vec::new()
    }
}

/// One heartbeat network's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LanStats {
    /// Authentic, fresh heartbeats received from the peer.
    pub received: u64,
    /// Heartbeats the peer sent on this network that never arrived: the
    /// gaps in its sequence numbers, counted when a later one arrives
    /// (a peer that restarts begins a new sequence; its silence while it
    /// was down is not counted as loss).
    pub lost: u64,
}

/// The replication stream's counters, for monitoring. Totals count from
/// the module's last start (a Prometheus counter reset), over every
/// connection and every replicated directory of the module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicationStats {
    /// Primary: bytes sent to secondaries (framed, as on the wire).
    pub bytes_sent: u64,
    /// Primary: replicated operations and control frames sent.
    pub ops_sent: u64,
    /// Primary: bytes sent that the secondary has not applied yet.
    pub inflight_bytes: u64,
    /// Primary: age in microseconds of the oldest frame the secondary has
    /// not applied yet (0 when it applied everything).
    pub lag_micros: u64,
    /// Secondary: frames received from the primary and applied.
    pub ops_applied: u64,
}

/// Puts the virtual IP addresses up and down.
#[async_trait]
pub trait VirtualIp: Send + Sync {
    /// Configures the VIPs and announces them (gratuitous ARP).
    async fn set(&self) -> Result<(), ServiceError>;
    /// Removes the VIPs (also on the daemon's own shutdown).
    async fn remove(&self) -> Result<(), ServiceError>;
    /// The addresses, for log messages.
    fn addresses(&self) -> Vec<std::net::IpAddr> {
        Vec::new()
    }
    /// A farm's traffic: its membership and buckets as this node sees them
    /// (for the module report); `None` for a plain VIP.
    fn farm(&self) -> Option<crate::farm::FarmReport> {
        None
    }
}

/// How a script run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// Exit code 0 within its timeout.
    pub success: bool,
    /// What happened, for the module log.
    pub detail: String,
}

/// Runs module scripts.
#[async_trait]
pub trait ScriptRunner: Send + Sync {
    /// Runs `run` (a missing script counts as success, as in SafeKit).
    async fn run(&self, run: &ScriptRun) -> ScriptOutcome;
}

/// File replication of the module's directories.
#[async_trait]
pub trait Replicator: Send + Sync {
    /// Starts replicating in `role`.
    async fn start(&self, role: ReplicaRole) -> Result<(), ServiceError>;
    /// Primary: goes on without the secondary.
    async fn drop_secondary(&self);
    /// Stops replicating.
    async fn stop(&self);
    /// Secondary: copies from the primary; `Ok` when the copy is complete.
    async fn reintegrate(&self, mode: SyncMode) -> Result<(), ServiceError>;
    /// The engine's word on writes the secondary will not have (see
    /// `crate::replication::gate`); a replicator without a secondary
    /// ignores it.
    fn unreplicated_writes(&self, _word: crate::engine::UnreplicatedWrites) {}
    /// The next event of the replication (secondary lost, progress, ...);
    /// never returns for a replicator without events.
    async fn next_event(&self) -> crate::engine::ReplicationEvent {
        std::future::pending().await
    }
    /// `safekit rfsverify`: the files that differ from the primary's.
    async fn verify(&self) -> Result<Vec<String>, ServiceError> {
        Err(ServiceError::Refused("this module has no replicated directories".into()))
    }
    /// `safekit rfsdiff`: what a reintegration would copy now, one line per directory.
    fn estimate(&self) -> Vec<String> {
        Vec::new()
    }
    /// Split-brain loser, before its reintegration: keeps aside the files
    /// this node changed while it was alone; one log line per file kept.
    async fn quarantine(&self) -> Result<Vec<String>, ServiceError> {
        Ok(Vec::new())
    }
    /// Resources for `safekit state -v` (e.g. `rfs.quarantine`).
    fn resources(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The stream's counters (`None`: nothing replicated).
    fn stats(&self) -> Option<ReplicationStats> {
        None
    }
}

/// A module without `<rfs>` has no directory to replicate: every request
/// succeeds at once and a reintegration has nothing to copy.
pub struct NothingToReplicate;

#[async_trait]
impl Replicator for NothingToReplicate {
    async fn start(&self, _role: ReplicaRole) -> Result<(), ServiceError> {
        Ok(())
    }
    async fn drop_secondary(&self) {}
    async fn stop(&self) {}
    async fn reintegrate(&self, _mode: SyncMode) -> Result<(), ServiceError> {
        Ok(())
    }
}

/// The split-brain witness: asked before a node goes on alone while it
/// cannot hear its peer (SafeKit's `<splitbrain>` checker: a pinged
/// address; here also a lease authority, or a partner's own arbiter).
#[async_trait]
pub trait Witness: Send + Sync {
    /// May this node, holding data of `version` (epoch, generation), go on
    /// alone? `Err(why)`: no, and why, for the module log.
    async fn allow_alone(&self, version: (u64, u64)) -> Result<(), ServiceError>;
}

/// Where a module keeps what must survive a crash (its role, data
/// generation and user settings). `save` must be durable when it returns:
/// the engine moves on as if it were.
pub trait StateStore: Send + Sync {
    /// What was saved last; a new module gets [`Persistent::default`]. A
    /// record that cannot be read back is an error, never a guess: a guess
    /// could make a stale node primary.
    fn load(&self) -> Result<Persistent, ServiceError>;
    /// Saves `p` durably before returning.
    fn save(&self, p: &Persistent) -> Result<(), ServiceError>;
}

/// The module log SafeKit users read (`safekit logview`): one line per
/// engine message, script, resource change and command, with who caused it.
pub trait LogSink: Send + Sync {
    /// Appends one message; `component` says who wrote it (`vip`, `rfs`,
    /// `errd`, ...). Must not block for long: the runtime's lanes call it.
    fn write(&self, component: &str, level: LogLevel, message: &str);
    /// The last `n` lines, oldest first; without `verbose`, the I and D
    /// levels are left out.
    fn tail(&self, n: usize, verbose: bool) -> Vec<String>;
}

/// What one test of a [`Checker`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observation {
    /// What it tests works: its resource is up.
    Up,
    /// It does not: its resource is down (the failover rules decide).
    Down,
    /// Another module's status (`None`: unknown), for a checker that
    /// watches a module (SafeKit's `<module>` checker): the resource is up
    /// while that module is ALONE, PRIM or UP and Ready, and this module
    /// is restarted when that one restarts.
    Module(Option<crate::engine::Status>),
}

/// A periodic test that sets a resource up or down (tcp, ping, interface,
/// another module, or the partner's own: an SQL query, an HTTP health
/// URL). The runtime calls it every [`Checker::period`] while its class is
/// enabled; the engine's failover rules decide what a down resource does.
#[async_trait]
pub trait Checker: Send + Sync {
    /// The resource it sets, `<kind>.<ident>` (e.g. `custom.sql`).
    fn resource(&self) -> &str;
    /// Who sets it, for the module log ("set to down by tcpcheck").
    fn component(&self) -> &str {
        "checker"
    }
    /// How often it tests.
    fn period(&self) -> Duration;
    /// One test.
    async fn check(&self) -> Observation;
}

/// Environment of a module's scripts (SafeKit's variables plus `<var>`).
#[derive(Debug, Clone, Default)]
pub struct ScriptEnv {
    /// Directory holding the scripts (`SAFEUSERBIN`).
    pub bin: PathBuf,
    /// Where each run's output goes (`SAFEUSERVAR`).
    pub userlog_dir: Option<PathBuf>,
    /// Environment variables.
    pub vars: BTreeMap<String, String>,
    /// Graceful stop timeout.
    pub nicestop: Duration,
    /// Forced stop timeout.
    pub forcestop: Duration,
}
