//! Operations on open files: open and create (with the passthrough choice
//! of [`super::super::openmode`]), read, write, flush, release, fsync,
//! fallocate, lseek.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fuser::{
    Errno as FErr, FileHandle, FopenFlags, Generation, INodeNo, OpenFlags, ReplyCreate, ReplyData, ReplyEmpty, ReplyLseek, ReplyOpen,
    ReplyWrite, Request, WriteFlags,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::super::openmode::{Grant, Waited, WRITER_WAIT};
use super::super::replica::{LocalRole, Mark};
use super::super::tree::{io_errno, own, split};
use super::super::wire::Op;
use super::{fe, mtime_of, Handle, ReplicatedFs};
use crate::engine::LogLevel;

/// Open files by file handle; shared with the threads that answer writers
/// who waited for passthrough readers.
#[derive(Default)]
pub(super) struct Handles {
    map: Mutex<HashMap<u64, Arc<Handle>>>,
    next: AtomicU64,
}

impl Handles {
    pub(super) fn get(&self, fh: FileHandle) -> Option<Arc<Handle>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&fh.0).cloned()
    }

    pub(super) fn add(&self, h: Handle) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, Arc::new(h));
        id
    }

    /// An open handle of inode `ino` (for calls that come without one
    /// about a file whose last name is gone).
    pub(super) fn by_ino(&self, ino: u64) -> Option<Arc<Handle>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().find(|h| h.ino == ino).cloned()
    }

    pub(super) fn remove(&self, fh: FileHandle) -> Option<Arc<Handle>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&fh.0)
    }
}

impl ReplicatedFs {
    fn cache_flags(&self) -> FopenFlags {
        if self.r.role() == LocalRole::Primary {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        }
    }

    pub(super) fn file_open(&self, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let writes = flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
        if writes && self.r.role() == LocalRole::ReadOnly {
            return reply.error(FErr::from_i32(libc::EROFS));
        }
        let keep =
            self.backing_flags(OFlag::from_bits_truncate(flags.0) & !(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOCTTY | OFlag::O_TRUNC));
        let file = match self.path_of(ino).and_then(|p| self.r.tree.open_file(&p, keep, 0)) {
            Ok(f) => f,
            Err(e) => return reply.error(fe(e)),
        };
        let sync = flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0;
        let handle = Handle { ino: ino.0, file, sync, writable: writes, wrote: AtomicBool::new(false), passthrough: false };
        if !self.passthrough {
            self.stats.normal_opens.fetch_add(1, Ordering::Relaxed);
            let fh = self.handles.add(handle);
            return reply.opened(FileHandle(fh), self.cache_flags());
        }
        if writes {
            let (handles, stats, cache) = (self.handles.clone(), self.stats.clone(), self.cache_flags());
            return self.when_writable(ino.0, move || {
                stats.normal_opens.fetch_add(1, Ordering::Relaxed);
                reply.opened(FileHandle(handles.add(handle)), cache);
            });
        }
        let (grant, refused) = self.modes.open_read(ino.0, || reply.open_backing(&handle.file));
        if let Some(e) = refused {
            if !self.backing_refused.swap(true, Ordering::Relaxed) {
                (self.r.hooks.log)(LogLevel::E, format!("FUSE passthrough refused by the kernel ({e}): reads go through safekit"));
            }
        }
        match grant {
            Grant::Passthrough(backing) => {
                self.stats.passthrough_opens.fetch_add(1, Ordering::Relaxed);
                let fh = self.handles.add(Handle { passthrough: true, ..handle });
                reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &backing);
            }
            Grant::Normal => {
                self.stats.normal_opens.fetch_add(1, Ordering::Relaxed);
                let fh = self.handles.add(handle);
                reply.opened(FileHandle(fh), self.cache_flags());
            }
        }
    }

    /// Runs `answer` once a writable open of `ino` may be answered the
    /// normal way: at once, or on a thread of its own after passthrough
    /// readers of the file closed (the FUSE threads must stay free to
    /// receive their RELEASE).
    fn when_writable(&self, ino: u64, answer: impl FnOnce() + Send + 'static) {
        if !self.passthrough || self.modes.try_open_write(ino) {
            return answer();
        }
        self.stats.writers_waited.fetch_add(1, Ordering::Relaxed);
        let (modes, log, path) = (self.modes.clone(), self.r.hooks.log.clone(), self.r.path(ino));
        let wait = move || {
            if modes.wait_write(ino, WRITER_WAIT) == Waited::TimedOut {
                let name = path.map(|p| String::from_utf8_lossy(&p).into_owned()).unwrap_or_default();
                log(
                    LogLevel::E,
                    format!(
                        "{name}: opened for writing while read-only opens hold it in FUSE passthrough for more than {} s; the kernel refuses mixing them (EIO) until they close",
                        WRITER_WAIT.as_secs()
                    ),
                );
            }
            answer();
        };
        // Without a thread the reply inside `wait` is dropped unanswered,
        // which fuser turns into EIO: an error, never a refused kind of open
        // nor a blocked FUSE thread.
        if std::thread::Builder::new().name("rfs-writer-wait".into()).spawn(wait).is_err() {
            (self.r.hooks.log)(LogLevel::E, "no thread to wait for passthrough readers: open for writing refused (EIO)".into());
        }
    }

    pub(super) fn file_release(&self, ino: INodeNo, fh: FileHandle) {
        if let Some(h) = self.handles.remove(fh) {
            if self.passthrough {
                self.modes.release(ino.0, h.passthrough);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn file_create(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        let path = match self.r.child(parent.0, name.as_bytes()) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let dir = split(&path).0.to_vec();
        let (uid, gid, _) = self.owner(req, &dir);
        let inherit = self.r.tree.has_default_acl(&dir);
        let mode = mode & if inherit { 0o7777 } else { !umask & 0o7777 };
        let tree = &self.r.tree;
        let open = self.backing_flags(OFlag::from_bits_truncate(flags) & !OFlag::O_NOCTTY) | OFlag::O_CREAT;
        let excl = OFlag::from_bits_truncate(flags).contains(OFlag::O_EXCL);
        let res = self.r.mutate(&[Mark::Dir(&dir), Mark::Meta(&path), Mark::Whole(&path)], || {
            // Whether this call makes the file decides what the secondary
            // gets: a new file with the caller's exact mode and owner, or
            // (the kernel's cache had not seen it) the existing one.
            let (f, created) = match tree.open_file(&path, open | OFlag::O_EXCL, mode) {
                Ok(f) => (f, true),
                Err(Errno::EEXIST) if !excl => (tree.open_file(&path, open & !OFlag::O_CREAT, 0)?, false),
                Err(e) => return Err(e),
            };
            let mut ops = Vec::new();
            if created {
                let owned = own(&f, (!inherit).then_some(mode), uid, gid).and_then(|()| nix::sys::stat::fstat(f.as_fd()));
                let mode = super::names::undo(tree, &path, false, owned)?.st_mode & 0o7777;
                ops.push(Op::Reset { path: path.clone(), mode, uid, gid });
                ops.extend(tree.times(&dir));
                ops.extend(tree.times(&path));
            } else if open.contains(OFlag::O_TRUNC) {
                let st = nix::sys::stat::fstat(f.as_fd())?;
                ops.push(Op::Truncate { path: path.clone(), size: 0, mtime: mtime_of(&st) });
            }
            Ok((f, ops))
        });
        let file = match res {
            Ok((file, _)) => file,
            Err(e) => return reply.error(fe(e)),
        };
        let a = match nix::sys::stat::fstat(file.as_fd()) {
            Ok(st) => self.attr(&st),
            Err(e) => return reply.error(fe(e)),
        };
        let generation = self.r.remember(a.ino.0, parent.0, name.as_bytes());
        let sync = flags & (libc::O_SYNC | libc::O_DSYNC) != 0;
        let handle = Handle { ino: a.ino.0, file, sync, writable: true, wrote: AtomicBool::new(true), passthrough: false };
        let (handles, stats, ttl) = (self.handles.clone(), self.stats.clone(), self.ttl());
        // Without O_EXCL the file may have existed, even held by readers.
        self.when_writable(a.ino.0, move || {
            stats.normal_opens.fetch_add(1, Ordering::Relaxed);
            reply.created(&ttl, &a, Generation(generation), FileHandle(handles.add(handle)), FopenFlags::empty());
        });
    }

    pub(super) fn file_read(&self, fh: FileHandle, offset: u64, size: u32, reply: ReplyData) {
        let Some(h) = self.handle(fh) else { return reply.error(FErr::EBADF) };
        self.stats.read_requests.fetch_add(1, Ordering::Relaxed);
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn file_write(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
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

    pub(super) fn file_flush(&self, fh: FileHandle, reply: ReplyEmpty) {
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

    pub(super) fn file_fsync(&self, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
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

    pub(super) fn file_fallocate(&self, ino: INodeNo, fh: FileHandle, offset: u64, length: u64, mode: i32, reply: ReplyEmpty) {
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
            // A hole or a new size changes the file's mtime here; the
            // secondary applies it later, so it gets this node's mtime too
            // (the writeback cache used to send it afterwards, passthrough
            // mounts do not).
            let st = nix::sys::stat::fstat(h.file.as_fd())?;
            let ops = path.as_ref().map(|p| {
                [
                    Op::Fallocate { path: p.clone(), mode, off: offset, len: length },
                    Op::SetAttr { path: p.clone(), mode: None, uid: None, gid: None, atime: None, mtime: Some(mtime_of(&st)) },
                ]
            });
            Ok(((), ops.into_iter().flatten().collect::<Vec<_>>()))
        });
        match res {
            Ok(_) => {
                h.wrote.store(true, Ordering::Release);
                reply.ok();
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    pub(super) fn file_lseek(&self, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
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
