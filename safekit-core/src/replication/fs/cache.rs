//! The kernel cache mode a mount negotiates, and the mount's read counters
//! (`rfs.reads` in `safekit state -v`).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use fuser::BackingId;

use super::super::openmode::OpenModes;

/// How the kernel caches a mount, as negotiated at FUSE init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheMode {
    /// Not mounted yet.
    Unknown,
    /// Read-only opens use FUSE passthrough (native reads); writes go
    /// through this daemon, written through the kernel's page cache.
    Passthrough,
    /// The kernel's writeback cache (the kernel refuses it together with
    /// passthrough): writes batched in the page cache, reads through FUSE.
    Writeback,
    /// Neither.
    Plain,
}

/// What the kernel is asked for at mount time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheWish {
    /// Passthrough for read-only opens, if the kernel offers it.
    pub passthrough: bool,
    /// The writeback cache, if passthrough is not used.
    pub writeback: bool,
}

/// Counters of one mount, shown as the `rfs.reads` resource in
/// `safekit state -v`, with the mount's open-mode book for the opens
/// counted now.
pub(crate) struct ReadStats {
    mode: AtomicU8,
    book: Arc<OpenModes<BackingId>>,
    /// Opens answered with passthrough.
    pub passthrough_opens: AtomicU64,
    /// Opens answered the normal way (through this daemon).
    pub normal_opens: AtomicU64,
    /// READ requests this daemon served (passthrough reads never arrive).
    pub read_requests: AtomicU64,
    /// Writers that waited for passthrough readers of their file.
    pub writers_waited: AtomicU64,
}

impl ReadStats {
    pub(super) fn new(book: Arc<OpenModes<BackingId>>) -> Self {
        Self {
            mode: AtomicU8::new(0),
            book,
            passthrough_opens: AtomicU64::new(0),
            normal_opens: AtomicU64::new(0),
            read_requests: AtomicU64::new(0),
            writers_waited: AtomicU64::new(0),
        }
    }

    /// The negotiated mode.
    pub(crate) fn mode(&self) -> CacheMode {
        match self.mode.load(Ordering::Acquire) {
            1 => CacheMode::Passthrough,
            2 => CacheMode::Writeback,
            3 => CacheMode::Plain,
            _ => CacheMode::Unknown,
        }
    }

    pub(super) fn set_mode(&self, m: CacheMode) {
        let v = match m {
            CacheMode::Unknown => 0,
            CacheMode::Passthrough => 1,
            CacheMode::Writeback => 2,
            CacheMode::Plain => 3,
        };
        self.mode.store(v, Ordering::Release);
    }

    /// One line for `safekit state -v`.
    pub(crate) fn describe(&self) -> String {
        let open = self.book.open_counts();
        let mode = match self.mode() {
            CacheMode::Passthrough => "passthrough",
            CacheMode::Writeback => "writeback cache, no passthrough",
            CacheMode::Plain => "no passthrough (kernel)",
            CacheMode::Unknown => "not mounted",
        };
        format!(
            "{mode}; opens: {} passthrough, {} through safekit (now open: {}, {}); read requests served: {}; writers that waited: {}",
            self.passthrough_opens.load(Ordering::Relaxed),
            self.normal_opens.load(Ordering::Relaxed),
            open.0,
            open.1,
            self.read_requests.load(Ordering::Relaxed),
            self.writers_waited.load(Ordering::Relaxed),
        )
    }
}
