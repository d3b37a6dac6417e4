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
//! - `wire`: the authenticated protocol. `tree`: safe access to the real
//!   directory. `dirty`: the crash-safe zone map. `replica`: one
//!   replicated directory and its order lock. `fs`: the FUSE file system;
//!   `openmode`: which opens may use FUSE passthrough. `gate`: the
//!   engine's word on writes the secondary will not have.
//!   `link` (its protocol state in `link::flow`), `secondary`, `reint`: the
//!   two ends of a connection and the resynchronisation. `service`: mounts,
//!   listener, the [`LinuxReplicator`]. `harness` (tests): two replicators
//!   over temporary directories and loopback TCP, without root.
//!
//! Only [`LinuxReplicator`], its [`Settings`] and [`ReintOptions`] are the
//! library's API; the parts are the crate's own.

// Only the replicator and its settings are the library's API; the parts
// are the crate's own (unit-tested here, and through a rootless two-node
// harness in `harness`).
pub(crate) mod dirty;
pub(crate) mod filter;
pub(crate) mod fs;
pub(crate) mod gate;
#[cfg(test)]
mod harness;
pub(crate) mod link;
pub(crate) mod openmode;
pub(crate) mod quarantine;
pub(crate) mod reint;
pub(crate) mod replica;
pub(crate) mod secondary;
pub(crate) mod service;
pub(crate) mod tree;
pub(crate) mod verify;
pub(crate) mod wire;

pub use reint::ReintOptions;
pub use service::{detach_stale, LinuxReplicator, Settings};

/// What the fuzz targets feed hostile bytes to (built only under
/// `cargo fuzz`, which sets `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;
    use std::sync::Mutex;

    use super::dirty::DirtyMap;
    use super::tree::Tree;
    use super::wire::{decode_to_primary, decode_to_secondary, ToSecondary};

    /// A scratch tree and dirty map that a peer's frames are applied to.
    pub struct Scratch {
        tree: Tree,
        dirty: Mutex<DirtyMap>,
    }

    impl Scratch {
        /// Over `dir` (created): `dir/tree` and `dir/map`.
        pub fn new(dir: &Path) -> std::io::Result<Self> {
            std::fs::create_dir_all(dir.join("tree"))?;
            let dirty = DirtyMap::open(&dir.join("map"), 4096)?;
            let tree = Tree::open(&dir.join("tree")).map_err(std::io::Error::from)?;
            Ok(Self { tree, dirty: Mutex::new(dirty) })
        }

        /// `data` as a frame to the secondary (a decoded operation is
        /// applied), as a frame to the primary, and as a peer's dirty map.
        pub fn feed(&self, data: &[u8]) {
            if let Ok(ToSecondary::Op(op)) = decode_to_secondary(data) {
                let _ = self.tree.apply(&op);
            }
            let _ = decode_to_primary(data);
            if let Ok(mut dm) = self.dirty.lock() {
                let _ = dm.merge(data, 1);
            }
        }
    }
}

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
