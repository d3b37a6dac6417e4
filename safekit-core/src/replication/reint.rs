//! Reintegration, driven by the primary over the live connection: what the
//! dirty map says may differ is compared or copied while the application
//! keeps writing. Every piece is read under the order lock and queued in the
//! same stream as live mutations, so the secondary always applies a copy
//! and the writes that follow it in the order they happened here.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use super::dirty::{Change, Dirt};
use super::replica::Replica;
use super::tree::{join, kind, meta_of};
use super::wire::{Entry, Meta, Op, ToSecondary};

const CHUNK: u64 = 1 << 20;

/// Tuning from `<rfs>`.
#[derive(Debug, Clone, Copy)]
pub struct ReintOptions {
    /// Parallel file copies (nbrei).
    pub workers: u32,
    /// Bytes per second, if capped (reiallowedbw).
    pub bandwidth: Option<u64>,
    /// Answer timeout for listings (reitimeout).
    pub timeout: Duration,
}

/// What a reintegration did.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Data bytes sent.
    pub bytes: AtomicU64,
    /// Files whose data was copied.
    pub files: AtomicU64,
    /// Directories compared.
    pub dirs: AtomicU64,
}

struct Run<'a> {
    r: &'a Replica,
    epoch: u64,
    opts: ReintOptions,
    stats: Stats,
    total: AtomicU64,
    started: Instant,
    next_list: AtomicU64,
    last_progress: Mutex<Instant>,
    last_log: Mutex<Instant>,
}

impl Run<'_> {
    fn alive(&self) -> Result<(), String> {
        if self.r.link.epoch() != self.epoch || !self.r.link.connected() {
            return Err("the secondary disconnected".into());
        }
        Ok(())
    }

    fn send(&self, msg: ToSecondary) -> Result<u64, String> {
        match self.r.link.send(&msg) {
            Some(s) if s.epoch == self.epoch => Ok(s.seq),
            _ => Err("the secondary disconnected".into()),
        }
    }

    fn progress(&self, force: bool) {
        let mut last = self.last_progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if force || last.elapsed() >= Duration::from_millis(200) {
            *last = Instant::now();
            let done = self.stats.bytes.load(Ordering::Relaxed);
            let total = self.total.load(Ordering::Relaxed).max(done);
            let secs = self.started.elapsed().as_secs_f64();
            let eta_secs = (done > 0 && secs > 0.5).then(|| ((total - done) as f64 * secs / done as f64) as u64);
            let _ = self.r.link.send(&ToSecondary::Progress { done, total, eta_secs });
            let mut logged = self.last_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if logged.elapsed() >= Duration::from_secs(5) {
                *logged = Instant::now();
                let eta = eta_secs.map_or(String::new(), |e| format!(", ETA {e} s"));
                (self.r.hooks.log)(crate::engine::LogLevel::I, format!("Reintegration: {done}/{total} bytes{eta}"));
            }
        }
    }

    fn throttle(&self) {
        if let Some(bw) = self.opts.bandwidth.filter(|b| *b > 0) {
            let done = self.stats.bytes.load(Ordering::Relaxed) as f64;
            let ahead = done / bw as f64 - self.started.elapsed().as_secs_f64();
            if ahead > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(ahead.min(5.0)));
            }
        }
    }

    /// Records `change` for the next pass of this reintegration.
    fn mark(&self, change: Change<'_>) {
        let mut dm = self.r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = self.r.link.next_seq();
        let _ = dm.mark(&[change], seq);
        let (Change::Dir(p) | Change::Whole(p) | Change::Meta(p) | Change::Zones(p, ..)) = change;
        dm.make_pending(p);
    }

    fn excluded(&self, path: &[u8], meta: &Meta) -> bool {
        self.r.filter.excluded_entry(path, kind(meta.mode) == libc::S_IFDIR)
    }

    /// Makes the directory's entries equal to the primary's.
    fn compare_dir(&self, path: &[u8]) -> Result<(), String> {
        let id = self.next_list.fetch_add(1, Ordering::Relaxed);
        let theirs = self.r.link.list(id, path, self.opts.timeout)?;
        self.stats.dirs.fetch_add(1, Ordering::Relaxed);
        let tree = &self.r.tree;
        self.r.ordered(|| -> Result<(), String> {
            let Ok(mine) = tree.list(path) else { return Ok(()) };
            let theirs: HashMap<Vec<u8>, Meta> = theirs.unwrap_or_default().into_iter().map(|e: Entry| (e.name, e.meta)).collect();
            let names: std::collections::HashSet<&Vec<u8>> = mine.iter().map(|e| &e.name).collect();
            for (name, meta) in &theirs {
                let child = join(path, name);
                if !names.contains(name) && !self.excluded(&child, meta) {
                    self.send(ToSecondary::Op(Op::RemoveTree { path: child }))?;
                }
            }
            for e in &mine {
                let child = join(path, &e.name);
                if self.excluded(&child, &e.meta) {
                    continue;
                }
                let m = &e.meta;
                let t = theirs.get(&e.name);
                let same_kind = t.is_some_and(|t| kind(t.mode) == kind(m.mode));
                if t.is_some() && !same_kind {
                    self.send(ToSecondary::Op(Op::RemoveTree { path: child.clone() }))?;
                }
                let owner_mode = |t: &Meta| t.mode != m.mode || t.uid != m.uid || t.gid != m.gid;
                match kind(m.mode) {
                    libc::S_IFDIR => {
                        if !same_kind {
                            self.send(ToSecondary::Op(Op::Mkdir { path: child.clone(), mode: m.mode, uid: m.uid, gid: m.gid }))?;
                            self.mark(Change::Dir(&child));
                        } else if t.is_some_and(owner_mode) {
                            self.send(ToSecondary::Op(Op::SetAttr {
                                path: child,
                                mode: Some(m.mode),
                                uid: Some(m.uid),
                                gid: Some(m.gid),
                                atime: None,
                                mtime: None,
                            }))?;
                        }
                    }
                    libc::S_IFREG => {
                        // The dirty maps of both nodes (merged at Hello) say
                        // which zones changed: a file they track is left to
                        // them; one that differs only in times, mode or owner
                        // gets its metadata. A whole copy only for a file the
                        // secondary lacks, or whose size differs untracked.
                        let tracked =
                            same_kind && self.r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).tracks_data(&child);
                        if !same_kind || t.is_some_and(|t| t.size != m.size && !tracked) {
                            self.mark(Change::Whole(&child));
                        } else if t.is_some_and(|t| (owner_mode(t) || t.mtime != m.mtime) && !tracked) {
                            self.mark(Change::Meta(&child));
                        }
                    }
                    _ => {
                        if !same_kind || t.is_some_and(|t| owner_mode(t) || t.size != m.size || t.mtime != m.mtime || t.rdev != m.rdev) {
                            if same_kind {
                                self.send(ToSecondary::Op(Op::RemoveTree { path: child.clone() }))?;
                            }
                            let op = if kind(m.mode) == libc::S_IFLNK {
                                let (d, n) = tree.parent(&child).map_err(|e| e.to_string())?;
                                let target = nix::fcntl::readlinkat(d.as_fd(), n).map_err(|e| e.to_string())?;
                                use std::os::unix::ffi::OsStrExt;
                                Op::Symlink { path: child.clone(), target: target.as_bytes().to_vec(), uid: m.uid, gid: m.gid }
                            } else {
                                Op::Mknod { path: child.clone(), mode: m.mode, rdev: m.rdev, uid: m.uid, gid: m.gid }
                            };
                            self.send(ToSecondary::Op(op))?;
                            self.send(ToSecondary::Op(Op::Finish { path: child, meta: m.clone(), xattrs: Vec::new() }))?;
                        }
                    }
                }
            }
            // Last, the directory itself: owner, mode, xattrs (default
            // ACLs) and times, which the entries just added or removed
            // changed on the secondary.
            self.finish_now(path)
        })
    }

    /// Copies the file's dirty zones (or all of it) and its metadata.
    fn copy_file(&self, path: &[u8], d: &Dirt) -> Result<(), String> {
        let tree = &self.r.tree;
        let file = match self.r.ordered(|| tree.open_file(path, OFlag::O_RDONLY, 0)) {
            Ok(f) => f,
            Err(_) => return Ok(()),
        };
        let st = nix::sys::stat::fstat(file.as_fd()).map_err(|e| e.to_string())?;
        if kind(st.st_mode) != libc::S_IFREG {
            return Ok(());
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let zone = self.r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).zone_size();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        if d.whole {
            let m = meta_of(&st);
            self.r.ordered(|| self.send(ToSecondary::Op(Op::Reset { path: path.to_vec(), mode: m.mode, uid: m.uid, gid: m.gid })))?;
            ranges.push((0, size));
        } else {
            ranges.extend(d.zones.iter().map(|z| (z * zone, ((z + 1) * zone).min(size))).filter(|(a, b)| a < b));
        }
        let mut copied = false;
        let mut buf = vec![0u8; CHUNK as usize];
        for (start, end) in ranges {
            let mut off = start;
            while off < end {
                self.alive()?;
                let want = (end - off).min(CHUNK) as usize;
                let n = self.r.ordered(|| -> Result<usize, String> {
                    let n = file.read_at(&mut buf[..want], off).map_err(|e| e.to_string())?;
                    if n == 0 || (d.whole && buf[..n].iter().all(|b| *b == 0)) {
                        return Ok(n);
                    }
                    let st = nix::sys::stat::fstat(file.as_fd()).map_err(|e| e.to_string())?;
                    let mtime = (st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(0));
                    self.send(ToSecondary::Op(Op::Write { path: path.to_vec(), off, data: buf[..n].to_vec(), mtime }))?;
                    Ok(n)
                })?;
                if n == 0 {
                    break;
                }
                copied = true;
                self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                off += n as u64;
                self.progress(false);
                self.throttle();
            }
        }
        if copied || d.whole {
            self.stats.files.fetch_add(1, Ordering::Relaxed);
        }
        self.finish(path)
    }

    fn finish(&self, path: &[u8]) -> Result<(), String> {
        self.r.ordered(|| self.finish_now(path))
    }

    /// [`Self::finish`], under the order lock already held.
    fn finish_now(&self, path: &[u8]) -> Result<(), String> {
        let tree = &self.r.tree;
        let Ok(st) = tree.stat(path) else { return Ok(()) };
        let xattrs = if kind(st.st_mode) == libc::S_IFLNK { Vec::new() } else { tree.xattrs(path).unwrap_or_default() };
        self.send(ToSecondary::Op(Op::Finish { path: path.to_vec(), meta: meta_of(&st), xattrs }))?;
        Ok(())
    }

    /// The times of `path`'s directory, sent again after a file copied
    /// whole (perhaps created there) changed them on the secondary.
    fn parent_times(&self, path: &[u8]) -> Result<(), String> {
        let dir = super::tree::split(path).0;
        self.r.ordered(|| match self.r.tree.times(dir) {
            Some(op) => self.send(ToSecondary::Op(op)).map(drop),
            None => Ok(()),
        })
    }

    fn one(&self, path: &[u8], d: &Dirt) -> Result<(), String> {
        if d.dir {
            self.compare_dir(path)?;
        }
        if d.whole || !d.zones.is_empty() {
            self.copy_file(path, d)?;
            if d.whole {
                self.parent_times(path)?;
            }
        } else if d.meta && !path.is_empty() {
            self.finish(path)?;
        }
        let seq = self.r.link.next_seq().saturating_sub(1);
        self.r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).copied(path, d, seq);
        Ok(())
    }
}

/// Marks every directory and file of the tree for a full synchronisation
/// (unless an interrupted one is resumed).
fn enumerate_full(r: &Replica) -> Result<(), String> {
    let mut dm = r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if dm.full_pending() {
        return Ok(());
    }
    let mut dirs = vec![Vec::new()];
    let mut files = Vec::new();
    let mut i = 0;
    while i < dirs.len() {
        let d = dirs[i].clone();
        i += 1;
        for e in r.tree.list(&d).map_err(|e| format!("listing {}: {e}", String::from_utf8_lossy(&d)))? {
            let p = join(&d, &e.name);
            if r.filter.excluded_entry(&p, kind(e.meta.mode) == libc::S_IFDIR) {
                continue;
            }
            match kind(e.meta.mode) {
                libc::S_IFDIR => dirs.push(p),
                libc::S_IFREG => files.push(p),
                _ => {}
            }
        }
    }
    dm.mark_all(&dirs, &files).map_err(|e| format!("dirty map: {e}"))?;
    dm.set_full_pending(true).map_err(|e| format!("dirty map: {e}"))
}

/// Errors of the secondary that copying again cannot cure: the
/// reintegration fails at once with the secondary's error.
fn lasting(error: &str) -> bool {
    [nix::errno::Errno::ENOSPC, nix::errno::Errno::EDQUOT, nix::errno::Errno::EROFS, nix::errno::Errno::EFBIG]
        .iter()
        .any(|e| e.desc() == error)
}

/// What the secondary failed to apply: an error that lasts, or the same
/// path failing three passes in a row, ends the reintegration (with the
/// secondary's name in the reason) instead of copying again and again.
fn check_divergence(r: &Replica, peer: &str, seen: &mut HashMap<Vec<u8>, u32>) -> Result<(), String> {
    let Some((path, error)) = r.link.take_divergence() else { return Ok(()) };
    let n = seen.entry(path.clone()).or_insert(0);
    *n += 1;
    if lasting(&error) || *n >= 3 {
        return Err(format!("{error} on {peer} (writing {})", String::from_utf8_lossy(&path)));
    }
    Ok(())
}

/// Runs a reintegration on connection `epoch` to secondary `peer`; the
/// statistics line on success.
pub(crate) fn run(r: &Arc<Replica>, epoch: u64, full: bool, opts: ReintOptions, peer: &str) -> Result<String, String> {
    if full {
        enumerate_full(r)?;
    }
    let run = Run {
        r,
        epoch,
        opts,
        stats: Stats::default(),
        total: AtomicU64::new(0),
        started: Instant::now(),
        next_list: AtomicU64::new(1),
        last_progress: Mutex::new(Instant::now()),
        last_log: Mutex::new(Instant::now()),
    };
    let mut seen = HashMap::new();
    for _pass in 0..1000 {
        run.alive()?;
        check_divergence(r, peer, &mut seen)?;
        let pending = r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pending();
        if pending.is_empty() {
            // Barrier: once the secondary applied everything sent so far, any
            // divergence it reported is in the map; look again.
            if let Some(s) = r.link.last_sent() {
                if !r.link.wait_applied(s) {
                    return Err("the secondary disconnected".into());
                }
            }
            if r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pending().is_empty() {
                break;
            }
            continue;
        }
        let zone = r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).zone_size();
        let est: u64 = pending
            .iter()
            .map(|(p, d)| {
                let size = r.tree.stat(p).map_or(0, |s| u64::try_from(s.st_size).unwrap_or(0));
                if d.whole {
                    size
                } else {
                    (d.zones.len() as u64 * zone).min(size)
                }
            })
            .sum();
        run.total.fetch_add(est, Ordering::Relaxed);
        let (dirs, files): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, d)| d.dir);
        for (p, d) in &dirs {
            run.one(p, d)?;
        }
        let queue = Mutex::new(files.into_iter());
        let workers = opts.workers.clamp(1, 32) as usize;
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| loop {
                        let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
                        let Some((p, d)) = next else { return Ok(()) };
                        run.one(&p, &d)?;
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a reintegration worker panicked".into()))).collect()
        });
        for r in results {
            r?;
        }
    }
    run.progress(true);
    r.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_full_pending(false).map_err(|e| format!("dirty map: {e}"))?;
    let secs = run.started.elapsed().as_secs_f64();
    let bytes = run.stats.bytes.load(Ordering::Relaxed);
    let stats = format!(
        "Copied {bytes} bytes in {} files ({} directories compared) in {:.3} s, {:.0} KB/s",
        run.stats.files.load(Ordering::Relaxed),
        run.stats.dirs.load(Ordering::Relaxed),
        secs,
        bytes as f64 / 1024.0 / secs.max(1e-6)
    );
    Ok(stats)
}
