//! Synchronous file replication of a mirror module's directories (`<rfs>`),
//! the default [`Replicator`](crate::services::Replicator).
//!
//! ```text
//!  application ──> /data (FUSE, fs.rs) ──> Replica::mutate ──┬─> real tree (tree.rs, through a handle held
//!                                                            │     before the mount hid the directory)
//!                        dirty map (dirty.rs) <── mark first ┤
//!                                                            └─> link.rs ══TCP, HMAC══> secondary.rs ──> its tree
//!  sync points (fsync, O_SYNC, close) wait for the secondary's acknowledgement
//!  reintegration (reint.rs) copies what the dirty map names, in the same stream
//! ```
//!
//! - [`wire`]: the authenticated protocol. [`tree`]: safe access to the real
//!   directory. [`dirty`]: the crash-safe zone map. [`replica`]: one
//!   replicated directory and its order lock. [`fs`]: the FUSE file system;
//!   [`openmode`]: which opens may use FUSE passthrough. [`gate`]: the
//!   engine's word on writes the secondary will not have.
//!   [`link`], [`secondary`], [`reint`]: the two ends of a connection and the
//!   resynchronisation. [`service`]: mounts, listener, the `Replicator`.

pub mod dirty;
pub mod filter;
pub mod fs;
pub mod gate;
pub mod link;
pub mod openmode;
pub mod quarantine;
pub mod reint;
pub mod replica;
pub mod secondary;
pub mod service;
pub mod tree;
pub mod verify;
pub mod wire;

use std::sync::Arc;

use crate::engine::{LogLevel, ReplicationEvent};

/// How the replicator talks back: module log lines and engine events.
#[derive(Clone)]
pub struct Hooks {
    /// A module log message.
    pub log: Arc<dyn Fn(LogLevel, String) + Send + Sync>,
    /// An event for the engine.
    pub event: Arc<dyn Fn(ReplicationEvent) + Send + Sync>,
}

impl Hooks {
    /// Hooks that drop everything (tests, tools).
    pub fn silent() -> Self {
        Self { log: Arc::new(|_, _| {}), event: Arc::new(|_| {}) }
    }
}

/// TCP port of a module's replication (SafeKit: 5600 + (id − 1) × 4).
pub fn port(module_id: u16) -> u16 {
    5600u16.saturating_add(module_id.saturating_sub(1).saturating_mul(4))
}
