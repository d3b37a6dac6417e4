//! What a node knows about its data and role across restarts, and what a
//! heartbeat carries: the facts that decide which node has the newest data.

#[allow(clippy::wildcard_imports)]
use super::types::*;

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
    /// This node acknowledged writes its peer does not have since it last
    /// went ALONE: after a split brain, the side that alone served clients
    /// is kept when the other wrote nothing.
    #[serde(default)]
    pub wrote_alone: bool,
}

/// What a node persists crash-safely for one module (the runtime writes it
/// with temp file + fsync + rename when it sees [`Action::Persist`](super::Action::Persist)).
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
    /// See [`DataStatus::wrote_alone`].
    pub wrote_alone: bool,
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
            wrote_alone: false,
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
    /// The receiver's newest heartbeat the sender had received when it sent
    /// this one, as (incarnation, seq). A receiver decides on the peer's
    /// report only once it is this fresh: heartbeats queued during a cut or
    /// a pause arrive in a burst after the heal and describe a past the
    /// sender has already left.
    pub heard: Option<(u64, u64)>,
}
