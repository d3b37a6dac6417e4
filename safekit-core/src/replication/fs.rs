//! The FUSE file system mounted over a replicated directory. Reads, lookups
//! and listings are served from the real tree with no network round trip;
//! every mutation goes through [`Replica::mutate`]; fsync, O_SYNC writes and
//! close after a write are sync points.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno as FErr, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};

use super::replica::{LocalRole, Mark, Replica};
use super::tree::{io_errno, kind, split};
use super::wire::{Op, Time};

struct Handle {
    file: File,
    sync: bool,
    writable: bool,
    wrote: AtomicBool,
}

/// See the module documentation.
pub struct ReplicatedFs {
    r: Arc<Replica>,
    writeback: bool,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Vec<(u64, FileType, Vec<u8>)>>>,
    next: AtomicU64,
}

fn fe(e: Errno) -> FErr {
    FErr::from_i32(e as i32)
}

fn time(s: i64, ns: i64) -> SystemTime {
    if s >= 0 {
        UNIX_EPOCH + Duration::new(s.unsigned_abs(), u32::try_from(ns).unwrap_or(0))
    } else {
        UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
    }
}

fn ftype(mode: u32) -> FileType {
    match kind(mode) {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn to_time(t: SystemTime) -> Time {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
        Err(e) => (-i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX), 0),
    }
}

fn mtime_of(st: &FileStat) -> Time {
    (st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(0))
}

impl ReplicatedFs {
    /// A file system serving `r`. With `writeback` (the primary), the
    /// kernel caches writes and sends them in large batches, many in
    /// flight: sync points still wait for them (fsync and close write the
    /// dirty pages back before they reach this file system).
    pub fn new(r: Arc<Replica>, writeback: bool) -> Self {
        Self { r, writeback, handles: Mutex::new(HashMap::new()), dirs: Mutex::new(HashMap::new()), next: AtomicU64::new(1) }
    }

    fn ttl(&self) -> Duration {
        // Only this process changes the tree on the primary; on the
        // secondary the replication stream changes it underneath the kernel.
        if self.r.role() == LocalRole::Primary {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        }
    }

    fn attr(&self, st: &FileStat) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.r.fino(st.st_ino)),
            size: u64::try_from(st.st_size).unwrap_or(0),
            blocks: u64::try_from(st.st_blocks).unwrap_or(0),
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
            crtime: UNIX_EPOCH,
            kind: ftype(st.st_mode),
            perm: u16::try_from(st.st_mode & 0o7777).unwrap_or(0),
            nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: u32::try_from(st.st_rdev).unwrap_or(0),
            blksize: u32::try_from(st.st_blksize).unwrap_or(4096),
            flags: 0,
        }
    }

    fn handle(&self, fh: FileHandle) -> Option<Arc<Handle>> {
        self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&fh.0).cloned()
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, Arc::new(h));
        id
    }

    /// Owner of a new entry: the caller, with the directory's group when it is setgid.
    fn owner(&self, req: &Request, parent: &[u8]) -> (u32, u32, bool) {
        match self.r.tree.stat(parent) {
            Ok(st) if st.st_mode & libc::S_ISGID != 0 => (req.uid(), st.st_gid, true),
            _ => (req.uid(), req.gid(), false),
        }
    }

    fn entry(&self, parent: INodeNo, name: &[u8], path: &[u8], reply: ReplyEntry) {
        match self.r.tree.stat(path) {
            Ok(st) => {
                let a = self.attr(&st);
                self.r.remember(a.ino.0, parent.0, name);
                reply.entry(&self.ttl(), &a, Generation(0));
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    fn new_entry(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        reply: ReplyEntry,
        make: impl FnOnce(&[u8], u32, u32, bool) -> Result<Op, Errno>,
    ) {
        let path = match self.r.child(parent.0, name.as_bytes()) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let dir = split(&path).0.to_vec();
        let (uid, gid, sgid) = self.owner(req, &dir);
        let res = self.r.mutate(&[Mark::Dir(&dir), Mark::Meta(&path)], || make(&path, uid, gid, sgid).map(|op| ((), Some(op))));
        match res {
            Ok(_) => self.entry(parent, name.as_bytes(), &path, reply),
            Err(e) => reply.error(fe(e)),
        }
    }

    /// Flags for the real file. With the writeback cache the kernel reads
    /// pages to complete partial writes (so a write-only open must be able
    /// to read) and gives explicit offsets (so O_APPEND must go).
    ///
    /// O_DIRECT is never passed down: the kernel gives this file system
    /// buffers of any alignment, which a real O_DIRECT file refuses
    /// (EINVAL; MariaDB's install then retried for minutes). Durability
    /// comes from the sync points, as O_DIRECT alone never promised it.
    fn backing_flags(&self, f: OFlag) -> OFlag {
        let f = f & !OFlag::O_DIRECT;
        if !self.writeback {
            return f;
        }
        let mut f = f & !OFlag::O_APPEND;
        if f & OFlag::O_ACCMODE == OFlag::O_WRONLY {
            f = (f & !OFlag::O_ACCMODE) | OFlag::O_RDWR;
        }
        f
    }

    fn path_of(&self, ino: INodeNo) -> Result<Vec<u8>, Errno> {
        self.r.path(ino.0).ok_or(Errno::ENOENT)
    }
}

impl Filesystem for ReplicatedFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        if self.writeback {
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE);
        }
        // This file system clears setuid/setgid on write itself. Without it
        // the kernel asks for security.capability before every write, and
        // io_uring's non-blocking retries (MariaDB) turned that into ~60
        // GETXATTR round trips per write (measured: 17 writes/s).
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.r.child(parent.0, name.as_bytes()) {
            Ok(p) => self.entry(parent, name.as_bytes(), &p, reply),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.r.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let st = match fh.and_then(|f| self.handle(f)) {
            Some(h) => nix::sys::stat::fstat(h.file.as_fd()),
            None => self.path_of(ino).and_then(|p| self.r.tree.stat(&p)),
        };
        match st {
            Ok(st) => reply.attr(&self.ttl(), &self.attr(&st)),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let handle = fh.and_then(|f| self.handle(f));
        let now = SystemTime::now();
        let t = |x: Option<TimeOrNow>| {
            x.map(|v| match v {
                TimeOrNow::SpecificTime(s) => to_time(s),
                TimeOrNow::Now => to_time(now),
            })
        };
        let (at, mt) = (t(atime), t(mtime));
        let tree = &self.r.tree;
        let mut marks = vec![Mark::Meta(&path)];
        if let Some(s) = size {
            marks.push(Mark::Zones(&path, s, 1));
        }
        let res = self.r.mutate(&marks, || {
            let mut ops = Vec::new();
            if let Some(s) = size {
                match &handle {
                    Some(h) => h.file.set_len(s).map_err(io_errno)?,
                    None => tree.open_file(&path, OFlag::O_WRONLY, 0)?.set_len(s).map_err(io_errno)?,
                }
                let st = tree.stat(&path)?;
                ops.push(Op::Truncate { path: path.clone(), size: s, mtime: mtime_of(&st) });
            }
            tree.chown(&path, uid, gid)?;
            if let Some(m) = mode {
                tree.chmod(&path, m)?;
            }
            tree.set_times(&path, at, mt)?;
            if mode.is_some() || uid.is_some() || gid.is_some() || at.is_some() || mt.is_some() {
                // chown clears setuid bits: send the mode the primary ended with.
                let st = tree.stat(&path)?;
                let m = (mode.is_some() || uid.is_some() || gid.is_some()).then_some(st.st_mode);
                ops.push(Op::SetAttr { path: path.clone(), mode: m, uid, gid, atime: at, mtime: mt });
            }
            Ok(((), ops))
        });
        match res {
            Ok(_) => match tree.stat(&path) {
                Ok(st) => reply.attr(&self.ttl(), &self.attr(&st)),
                Err(e) => reply.error(fe(e)),
            },
            Err(e) => reply.error(fe(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self.path_of(ino).and_then(|p| {
            let (d, n) = self.r.tree.parent(&p)?;
            nix::fcntl::readlinkat(d.as_fd(), n)
        });
        match r {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let tree = &self.r.tree;
        self.new_entry(req, parent, name, reply, |path, uid, gid, _| {
            let mode = mode & !umask | (mode & libc::S_IFMT);
            let (d, n) = tree.parent(path)?;
            nix::sys::stat::mknodat(
                d.as_fd(),
                n,
                nix::sys::stat::SFlag::from_bits_truncate(kind(mode)),
                Mode::from_bits_truncate(mode & 0o7777),
                u64::from(rdev),
            )?;
            tree.chown(path, Some(uid), Some(gid))?;
            Ok(Op::Mknod { path: path.to_vec(), mode, rdev: u64::from(rdev), uid, gid })
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let tree = &self.r.tree;
        self.new_entry(req, parent, name, reply, |path, uid, gid, sgid| {
            let mode = (mode & !umask & 0o7777) | if sgid { libc::S_ISGID } else { 0 };
            let (d, n) = tree.parent(path)?;
            nix::sys::stat::mkdirat(d.as_fd(), n, Mode::from_bits_truncate(mode))?;
            tree.chown(path, Some(uid), Some(gid))?;
            tree.chmod(path, mode)?;
            Ok(Op::Mkdir { path: path.to_vec(), mode, uid, gid })
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        let tree = &self.r.tree;
        self.new_entry(req, parent, link_name, reply, |path, uid, gid, _| {
            let (d, n) = tree.parent(path)?;
            nix::unistd::symlinkat(target, d.as_fd(), n)?;
            tree.chown(path, Some(uid), Some(gid))?;
            Ok(Op::Symlink { path: path.to_vec(), target: target.as_os_str().as_bytes().to_vec(), uid, gid })
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (from, to) = match (self.r.child(parent.0, name.as_bytes()), self.r.child(newparent.0, newname.as_bytes())) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(fe(e)),
        };
        let tree = &self.r.tree;
        let src = tree.stat(&from).map(|s| self.r.fino(s.st_ino));
        let dst = tree.stat(&to).map(|s| self.r.fino(s.st_ino)).ok();
        let (fd, td) = (split(&from).0.to_vec(), split(&to).0.to_vec());
        let moved_out = self.r.excluded(&from) && !self.r.excluded(&to);
        let res = self.r.mutate(&[Mark::Dir(&fd), Mark::Dir(&td), Mark::Meta(&to)], || {
            let (d1, n1) = tree.parent(&from)?;
            let (d2, n2) = tree.parent(&to)?;
            nix::fcntl::renameat2(d1.as_fd(), n1, d2.as_fd(), n2, nix::fcntl::RenameFlags::from_bits_truncate(flags.bits()))?;
            Ok(((), (!moved_out).then(|| Op::Rename { from: from.clone(), to: to.clone(), flags: flags.bits() })))
        });
        match res {
            Ok(_) => {
                if moved_out {
                    // From a not-replicated place into a replicated one: copy it.
                    let _ = self.r.dirty.lock().map(|mut d| {
                        let seq = self.r.link.next_seq();
                        let _ = d.mark_whole(&to, seq);
                        let _ = d.mark_dir(&td, seq);
                        d.make_pending(&td);
                    });
                }
                if let Some(d) = dst {
                    if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                        self.r.moved(d, newparent.0, newname.as_bytes(), parent.0, name.as_bytes());
                    } else if Ok(d) != src {
                        self.r.unlinked(d, newparent.0, newname.as_bytes());
                    }
                }
                if let Ok(s) = src {
                    self.r.moved(s, parent.0, name.as_bytes(), newparent.0, newname.as_bytes());
                }
                reply.ok();
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let (existing, path) = match (self.path_of(ino), self.r.child(newparent.0, newname.as_bytes())) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(fe(e)),
        };
        let tree = &self.r.tree;
        let dir = split(&path).0.to_vec();
        let res = self.r.mutate(&[Mark::Dir(&dir)], || {
            let (d1, n1) = tree.parent(&existing)?;
            let (d2, n2) = tree.parent(&path)?;
            nix::unistd::linkat(d1.as_fd(), n1, d2.as_fd(), n2, AtFlags::empty())?;
            Ok(((), Some(Op::Link { existing: existing.clone(), path: path.clone() })))
        });
        match res {
            Ok(_) => self.entry(newparent, newname.as_bytes(), &path, reply),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let writes = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        if writes && self.r.role() == LocalRole::ReadOnly {
            return reply.error(FErr::from_i32(libc::EROFS));
        }
        let keep =
            self.backing_flags(OFlag::from_bits_truncate(flags.0) & !(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOCTTY | OFlag::O_TRUNC));
        let r = self.path_of(ino).and_then(|p| self.r.tree.open_file(&p, keep, 0));
        match r {
            Ok(file) => {
                let sync = flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0;
                let fh = self.add_handle(Handle { file, sync, writable: writes, wrote: AtomicBool::new(false) });
                let cache = if self.r.role() == LocalRole::Primary { FopenFlags::FOPEN_KEEP_CACHE } else { FopenFlags::empty() };
                reply.opened(FileHandle(fh), cache);
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(h) = self.handle(fh) else { return reply.error(FErr::EBADF) };
        let mut buf = vec![0u8; size as usize];
        let mut n = 0;
        while n < buf.len() {
            match h.file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(fe(io_errno(e))),
            }
        }
        reply.data(&buf[..n]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let kill_suidgid = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let Some(h) = self.handle(fh) else { return reply.error(FErr::EBADF) };
        let path = self.r.path(ino.0);
        let len = data.len() as u64;
        let marks: Vec<Mark<'_>> = path.as_deref().map(|p| Mark::Zones(p, offset, len)).into_iter().collect();
        let res = self.r.mutate(&marks, || {
            h.file.write_all_at(data, offset).map_err(io_errno)?;
            let mut ops = Vec::new();
            let mut st = nix::sys::stat::fstat(h.file.as_fd())?;
            let sgid = if st.st_mode & libc::S_IXGRP != 0 { libc::S_ISGID } else { 0 };
            if kill_suidgid && st.st_mode & (libc::S_ISUID | sgid) != 0 {
                let mode = st.st_mode & !(libc::S_ISUID | sgid) & 0o7777;
                nix::sys::stat::fchmod(h.file.as_fd(), Mode::from_bits_truncate(mode))?;
                st = nix::sys::stat::fstat(h.file.as_fd())?;
                if let Some(p) = &path {
                    ops.push(Op::SetAttr { path: p.clone(), mode: Some(st.st_mode), uid: None, gid: None, atime: None, mtime: None });
                }
            }
            if let Some(p) = &path {
                ops.insert(0, Op::Write { path: p.clone(), off: offset, data: data.to_vec(), mtime: mtime_of(&st) });
            }
            Ok(((), ops))
        });
        match res {
            Ok(_) => {
                h.wrote.store(true, Ordering::Release);
                if (h.sync || flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0) && !self.r.sync_point(path.as_deref()) {
                    return reply.error(FErr::EIO);
                }
                reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX));
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // With the writeback cache the kernel may have sent this file's
        // dirty pages through another handle: any handle open for writing
        // waits (a read-only one has nothing to make durable).
        if let Some(h) = self.handle(fh) {
            if (h.wrote.swap(false, Ordering::AcqRel) || (self.writeback && h.writable)) && !self.r.sync_point(None) {
                return reply.error(FErr::EIO);
            }
        }
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let Some(h) = self.handle(fh) else { return reply.error(FErr::EBADF) };
        let r = if datasync { h.file.sync_data() } else { h.file.sync_all() };
        if let Err(e) = r {
            return reply.error(fe(io_errno(e)));
        }
        let path = self.r.path(ino.0);
        if !self.r.sync_point(path.as_deref()) {
            return reply.error(FErr::EIO);
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let listing = (|| -> Result<Vec<(u64, FileType, Vec<u8>)>, Errno> {
            let f = self.r.tree.open_file(&path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
            let mut dir = nix::dir::Dir::from_fd(f.into())?;
            let mut v = Vec::new();
            for e in dir.iter() {
                let e = e?;
                let t = match e.file_type() {
                    Some(nix::dir::Type::Directory) => FileType::Directory,
                    Some(nix::dir::Type::Symlink) => FileType::Symlink,
                    Some(nix::dir::Type::Fifo) => FileType::NamedPipe,
                    Some(nix::dir::Type::Socket) => FileType::Socket,
                    Some(nix::dir::Type::CharacterDevice) => FileType::CharDevice,
                    Some(nix::dir::Type::BlockDevice) => FileType::BlockDevice,
                    _ => FileType::RegularFile,
                };
                v.push((self.r.fino(e.ino()), t, e.file_name().to_bytes().to_vec()));
            }
            Ok(v)
        })();
        match listing {
            Ok(v) => {
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                self.dirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, v);
                reply.opened(FileHandle(id), FopenFlags::empty());
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let dirs = self.dirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(v) = dirs.get(&fh.0) else { return reply.error(FErr::EBADF) };
        for (i, (ino, t, name)) in v.iter().enumerate().skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *t, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.dirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let r = self.path_of(ino).and_then(|p| {
            let f = self.r.tree.open_file(&p, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
            nix::unistd::fsync(f.as_fd())
        });
        match r {
            Ok(()) => {
                if !self.r.sync_point(None) {
                    return reply.error(FErr::EIO);
                }
                reply.ok();
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.r.tree.open_file(b"", OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0).and_then(|f| nix::sys::statvfs::fstatvfs(f.as_fd())) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                u32::try_from(s.block_size()).unwrap_or(4096),
                u32::try_from(s.name_max()).unwrap_or(255),
                u32::try_from(s.fragment_size()).unwrap_or(4096),
            ),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn setxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, value: &[u8], flags: i32, _position: u32, reply: ReplyEmpty) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let tree = &self.r.tree;
        let res = self.r.mutate(&[Mark::Meta(&path)], || {
            tree.set_xattr(&path, name.as_bytes(), value, flags)?;
            Ok(((), Some(Op::SetXattr { path: path.clone(), name: name.as_bytes().to_vec(), value: value.to_vec(), flags })))
        });
        match res {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = self.path_of(ino).and_then(|p| {
            let pp = self.r.tree.proc_path(&p)?;
            let n = std::ffi::CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
            let mut buf = vec![0u8; size as usize];
            let k = Errno::result(unsafe { libc::lgetxattr(pp.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
            buf.truncate(usize::try_from(k).unwrap_or(0));
            Ok((buf, k))
        });
        xattr_reply(r, size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = self.path_of(ino).and_then(|p| {
            let pp = self.r.tree.proc_path(&p)?;
            let mut buf = vec![0u8; size as usize];
            let k = Errno::result(unsafe { libc::llistxattr(pp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
            buf.truncate(usize::try_from(k).unwrap_or(0));
            Ok((buf, k))
        });
        xattr_reply(r, size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let tree = &self.r.tree;
        let res = self.r.mutate(&[Mark::Meta(&path)], || {
            tree.remove_xattr(&path, name.as_bytes())?;
            Ok(((), Some(Op::RemoveXattr { path: path.clone(), name: name.as_bytes().to_vec() })))
        });
        match res {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel already checked the mode bits.
        match self.path_of(ino).and_then(|p| self.r.tree.stat(&p)) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn create(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        let path = match self.r.child(parent.0, name.as_bytes()) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let dir = split(&path).0.to_vec();
        let (uid, gid, _) = self.owner(req, &dir);
        let mode = mode & !umask & 0o7777;
        let tree = &self.r.tree;
        let open = self.backing_flags(OFlag::from_bits_truncate(flags) & !OFlag::O_NOCTTY) | OFlag::O_CREAT;
        let res = self.r.mutate(&[Mark::Dir(&dir), Mark::Meta(&path), Mark::Zones(&path, 0, 1)], || {
            let f = tree.open_file(&path, open, mode)?;
            let st = nix::sys::stat::fstat(f.as_fd())?;
            let mut op = None;
            if st.st_nlink == 1 && st.st_uid == nix::unistd::geteuid().as_raw() && (st.st_uid != uid || st.st_gid != gid) {
                nix::unistd::fchown(f.as_fd(), Some(uid.into()), Some(gid.into()))?;
            }
            if st.st_size == 0 {
                op = Some(Op::Reset { path: path.clone(), mode, uid, gid });
            }
            Ok((f, op))
        });
        match res {
            Ok((file, _)) => match nix::sys::stat::fstat(file.as_fd()) {
                Ok(st) => {
                    let a = self.attr(&st);
                    self.r.remember(a.ino.0, parent.0, name.as_bytes());
                    let sync = flags & (libc::O_SYNC | libc::O_DSYNC) != 0;
                    let fh = self.add_handle(Handle { file, sync, writable: true, wrote: AtomicBool::new(true) });
                    reply.created(&self.ttl(), &a, Generation(0), FileHandle(fh), FopenFlags::empty());
                }
                Err(e) => reply.error(fe(e)),
            },
            Err(e) => reply.error(fe(e)),
        }
    }

    fn fallocate(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, length: u64, mode: i32, reply: ReplyEmpty) {
        let Some(h) = self.handle(fh) else { return reply.error(FErr::EBADF) };
        let path = self.r.path(ino.0);
        let marks: Vec<Mark<'_>> = path.as_deref().map(|p| Mark::Zones(p, offset, length)).into_iter().collect();
        let res = self.r.mutate(&marks, || {
            nix::fcntl::fallocate(
                h.file.as_fd(),
                nix::fcntl::FallocateFlags::from_bits_truncate(mode),
                i64::try_from(offset).map_err(|_| Errno::EINVAL)?,
                i64::try_from(length).map_err(|_| Errno::EINVAL)?,
            )?;
            Ok(((), path.as_ref().map(|p| Op::Fallocate { path: p.clone(), mode, off: offset, len: length })))
        });
        match res {
            Ok(_) => {
                h.wrote.store(true, Ordering::Release);
                reply.ok();
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let Some(h) = self.handle(fh) else { return reply.error(FErr::EBADF) };
        let w = match whence {
            libc::SEEK_DATA => nix::unistd::Whence::SeekData,
            libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
            libc::SEEK_END => nix::unistd::Whence::SeekEnd,
            libc::SEEK_CUR => nix::unistd::Whence::SeekCur,
            _ => nix::unistd::Whence::SeekSet,
        };
        match nix::unistd::lseek(h.file.as_fd(), offset, w) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(fe(e)),
        }
    }
}

impl ReplicatedFs {
    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let path = match self.r.child(parent.0, name.as_bytes()) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let tree = &self.r.tree;
        let ino = tree.stat(&path).map(|s| self.r.fino(s.st_ino));
        let pdir = split(&path).0.to_vec();
        let res = self.r.mutate(&[Mark::Dir(&pdir)], || {
            let (d, n) = tree.parent(&path)?;
            let flag = if dir { nix::unistd::UnlinkatFlags::RemoveDir } else { nix::unistd::UnlinkatFlags::NoRemoveDir };
            nix::unistd::unlinkat(d.as_fd(), n, flag)?;
            Ok(((), Some(if dir { Op::Rmdir { path: path.clone() } } else { Op::Unlink { path: path.clone() } })))
        });
        match res {
            Ok(_) => {
                if let Ok(i) = ino {
                    self.r.unlinked(i, parent.0, name.as_bytes());
                }
                reply.ok();
            }
            Err(e) => reply.error(fe(e)),
        }
    }
}

fn xattr_reply(r: Result<(Vec<u8>, isize), Errno>, size: u32, reply: ReplyXattr) {
    match r {
        Ok((_, k)) if size == 0 => reply.size(u32::try_from(k).unwrap_or(0)),
        Ok((buf, _)) => reply.data(&buf),
        Err(e) => reply.error(fe(e)),
    }
}
