//! Which opens of a file may use FUSE passthrough.
//!
//! With passthrough the kernel reads a file straight from the real one
//! underneath, with no request to this daemon: native read speed. Writes
//! through such an open would also bypass the daemon, so only read-only
//! opens use it. But the kernel forbids mixing the two kinds on one inode:
//! while any passthrough open exists, every other open of that inode must be
//! passthrough too (a normal open fails with EIO), and the other way round;
//! all passthrough opens of an inode must share one backing file.
//!
//! This book keeps, per FUSE inode, what this daemon granted, so it never
//! answers with a kind the kernel would refuse:
//! - a read-only open gets passthrough unless the inode has normal opens (or a
//!   writer is waiting for the readers to leave), or the file was opened for
//!   writing once since the mount: then it is a normal open. A file that gets
//!   writers (a log, a database file) is thus never held in passthrough by a
//!   reader such as `tail -f` when its writer comes back;
//! - a writable open gets a normal open at once unless passthrough readers
//!   hold the inode: then it waits (off the FUSE threads) for them to close,
//!   at most [`WRITER_WAIT`], and new readers go the normal way meanwhile so
//!   the writer is not starved.
//!
//! Counts go up when the answer is decided and down when RELEASE arrives; the
//! kernel ends a file's mode before it sends RELEASE, so the kernel's opens
//! are always a subset of the counted ones.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a writable open waits for passthrough readers of the same file
/// to close. A reader that outlives it (say `tail -f`) keeps the file: the
/// open is then answered the normal way and the kernel refuses it (EIO),
/// which the module log explains. Short, because the application's `open`
/// blocks meanwhile; long enough for a copy or a checksum of a file.
pub(crate) const WRITER_WAIT: Duration = Duration::from_secs(5);

/// How one open is served.
#[derive(Debug, Clone)]
pub(crate) enum Grant<B> {
    /// Through the kernel straight to the real file (read-only opens).
    Passthrough(Arc<B>),
    /// Through this daemon (every write is replicated).
    Normal,
}

#[cfg(test)]
impl<B> Grant<B> {
    /// Whether this is a passthrough open.
    pub(crate) fn is_passthrough(&self) -> bool {
        matches!(self, Self::Passthrough(_))
    }
}

struct Modes<B> {
    normal: u32,
    passthrough: u32,
    backing: Option<Arc<B>>,
    writers_waiting: u32,
}

impl<B> Default for Modes<B> {
    fn default() -> Self {
        Self { normal: 0, passthrough: 0, backing: None, writers_waiting: 0 }
    }
}

/// See the module documentation. `B` is the kernel's backing-file handle
/// (a fake in tests).
pub(crate) struct OpenModes<B> {
    inodes: Mutex<HashMap<u64, Modes<B>>>,
    released: Condvar,
    /// Inodes opened for writing since the mount: never passthrough again
    /// (a number the real file system gives to a new file keeps the mark:
    /// that file is only read the normal way).
    written: Mutex<HashSet<u64>>,
}

impl<B> Default for OpenModes<B> {
    fn default() -> Self {
        Self { inodes: Mutex::new(HashMap::new()), released: Condvar::new(), written: Mutex::default() }
    }
}

/// What happened to a writer that had to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// It did not have to wait.
    No,
    /// The readers closed within [`WRITER_WAIT`].
    ReadersLeft,
    /// They did not: the open goes the normal way anyway and the kernel
    /// decides (EIO if a passthrough reader is really still there).
    TimedOut,
}

impl<B> OpenModes<B> {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Modes<B>>> {
        self.inodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read-only open of `ino`. `backing` registers the real file with the
    /// kernel; it is called only when the inode has no backing yet, and if it
    /// fails the open is a normal one (the error is returned for the log).
    pub(crate) fn open_read<E>(&self, ino: u64, backing: impl FnOnce() -> Result<B, E>) -> (Grant<B>, Option<E>) {
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner).contains(&ino);
        let mut map = self.lock();
        let m = map.entry(ino).or_default();
        if let Some(b) = &m.backing {
            m.passthrough += 1;
            return (Grant::Passthrough(b.clone()), None);
        }
        if written || m.normal > 0 || m.writers_waiting > 0 {
            m.normal += 1;
            return (Grant::Normal, None);
        }
        match backing() {
            Ok(b) => {
                let b = Arc::new(b);
                m.backing = Some(b.clone());
                m.passthrough += 1;
                (Grant::Passthrough(b), None)
            }
            Err(e) => {
                m.normal += 1;
                (Grant::Normal, Some(e))
            }
        }
    }

    /// Whether a writable open of `ino` can be answered now (it is then
    /// counted); if not, call [`Self::wait_write`] off the FUSE thread.
    pub(crate) fn try_open_write(&self, ino: u64) -> bool {
        self.written.lock().unwrap_or_else(PoisonError::into_inner).insert(ino);
        let mut map = self.lock();
        let m = map.entry(ino).or_default();
        if m.passthrough == 0 {
            m.normal += 1;
            true
        } else {
            false
        }
    }

    /// Waits until no passthrough open of `ino` remains, at most `limit`,
    /// then counts a normal open.
    pub(crate) fn wait_write(&self, ino: u64, limit: Duration) -> Waited {
        let deadline = Instant::now() + limit;
        let mut map = self.lock();
        let mut waited = false;
        loop {
            let m = map.entry(ino).or_default();
            if m.passthrough == 0 {
                if waited {
                    m.writers_waiting -= 1;
                }
                m.normal += 1;
                return if waited { Waited::ReadersLeft } else { Waited::No };
            }
            let now = Instant::now();
            if now >= deadline {
                if waited {
                    m.writers_waiting -= 1;
                }
                m.normal += 1;
                return Waited::TimedOut;
            }
            if !waited {
                m.writers_waiting += 1;
                waited = true;
            }
            map = self.released.wait_timeout(map, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// An open of `ino` that was granted `passthrough` is released.
    pub(crate) fn release(&self, ino: u64, passthrough: bool) {
        let mut map = self.lock();
        let Some(m) = map.get_mut(&ino) else { return };
        if passthrough {
            m.passthrough = m.passthrough.saturating_sub(1);
            if m.passthrough == 0 {
                // The kernel closed its last passthrough file of this inode
                // before sending RELEASE: the backing can go.
                m.backing = None;
                self.released.notify_all();
            }
        } else {
            m.normal = m.normal.saturating_sub(1);
        }
        if m.normal == 0 && m.passthrough == 0 && m.writers_waiting == 0 {
            map.remove(&ino);
        }
    }

    /// (passthrough, normal) opens counted now, over all inodes.
    pub(crate) fn open_counts(&self) -> (u64, u64) {
        self.lock().values().fold((0, 0), |(p, n), m| (p + u64::from(m.passthrough), n + u64::from(m.normal)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn book() -> (Arc<OpenModes<u32>>, Arc<AtomicU32>) {
        (Arc::new(OpenModes::default()), Arc::new(AtomicU32::new(0)))
    }

    fn read(b: &OpenModes<u32>, made: &AtomicU32, ino: u64) -> Grant<u32> {
        b.open_read::<()>(ino, || Ok(made.fetch_add(1, Ordering::SeqCst) + 100)).0
    }

    #[test]
    fn readers_share_one_backing_and_it_goes_with_the_last() {
        let (b, made) = book();
        let (r1, r2) = (read(&b, &made, 7), read(&b, &made, 7));
        match (&r1, &r2) {
            (Grant::Passthrough(x), Grant::Passthrough(y)) => assert!(Arc::ptr_eq(x, y)),
            _ => panic!("two read-only opens of an idle file are passthrough: {r1:?} {r2:?}"),
        }
        assert_eq!(made.load(Ordering::SeqCst), 1, "one backing per inode");
        b.release(7, true);
        assert!(read(&b, &made, 7).is_passthrough());
        assert_eq!(made.load(Ordering::SeqCst), 1, "still the same backing while one reader is open");
        b.release(7, true);
        b.release(7, true);
        assert!(read(&b, &made, 7).is_passthrough());
        assert_eq!(made.load(Ordering::SeqCst), 2, "a new backing after the last reader left");
    }

    #[test]
    fn a_reader_of_a_file_open_for_writing_goes_the_normal_way() {
        let (b, made) = book();
        assert!(b.try_open_write(3));
        assert!(!read(&b, &made, 3).is_passthrough());
        assert_eq!(made.load(Ordering::SeqCst), 0);
        assert!(read(&b, &made, 4).is_passthrough(), "other inodes are not affected");
        b.release(3, false);
        assert!(!read(&b, &made, 3).is_passthrough(), "the normal reader is still open");
        b.release(3, false);
        b.release(3, false);
        // Written once since the mount: still the normal way.
        assert!(!read(&b, &made, 3).is_passthrough());
        assert_eq!(b.open_counts(), (1, 1));
    }

    #[test]
    fn a_failed_backing_makes_a_normal_open() {
        let b = OpenModes::<u32>::default();
        let (g, e) = b.open_read(1, || Err("EPERM"));
        assert!(!g.is_passthrough());
        assert_eq!(e, Some("EPERM"));
        assert!(b.try_open_write(1), "a normal reader never blocks a writer");
    }

    #[test]
    fn a_writer_waits_for_passthrough_readers_and_new_readers_do_not_starve_it() {
        let (b, made) = book();
        assert!(read(&b, &made, 9).is_passthrough());
        assert!(!b.try_open_write(9));
        let w = {
            let b = b.clone();
            std::thread::spawn(move || b.wait_write(9, Duration::from_secs(30)))
        };
        // Let the writer start waiting, then a reader arrives: the inode
        // still has a passthrough open, so the kernel insists on passthrough.
        let t0 = Instant::now();
        while b.lock().get(&9).map_or(0, |m| m.writers_waiting) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "the writer never started waiting");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(read(&b, &made, 9).is_passthrough());
        b.release(9, true);
        assert_eq!(b.lock()[&9].writers_waiting, 1, "one passthrough reader is still open");
        b.release(9, true);
        assert_eq!(w.join().unwrap(), Waited::ReadersLeft);
        assert!(!read(&b, &made, 9).is_passthrough(), "the writer holds the inode now");
    }

    #[test]
    fn a_writer_gives_up_waiting_after_the_limit() {
        let (b, made) = book();
        assert!(read(&b, &made, 2).is_passthrough());
        assert_eq!(b.wait_write(2, Duration::from_millis(20)), Waited::TimedOut);
        assert_eq!(b.lock()[&2].writers_waiting, 0);
        assert_eq!(b.wait_write(5, Duration::from_millis(20)), Waited::No);
    }

    #[test]
    fn a_file_opened_for_writing_once_is_never_passthrough_again() {
        let (b, made) = book();
        assert!(b.try_open_write(5));
        b.release(5, false);
        // Nobody has it open, yet a reader goes the normal way: a writer
        // coming back later must not find it held in passthrough.
        assert!(!read(&b, &made, 5).is_passthrough());
        b.release(5, false);
        assert!(b.try_open_write(5), "a writer waited for a reader");
        assert!(read(&b, &made, 6).is_passthrough(), "another file is unaffected");
    }

    #[test]
    fn unknown_releases_are_ignored() {
        let b = OpenModes::<u32>::default();
        b.release(1, true);
        b.release(1, false);
        assert_eq!(b.open_counts(), (0, 0));
    }
}
