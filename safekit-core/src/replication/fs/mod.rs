//! The FUSE file system mounted over a replicated directory. Reads, lookups
//! and listings are served from the real tree with no network round trip
//! (read-only opens with FUSE passthrough where the kernel offers it: see
//! [`super::openmode`]); every mutation goes through [`Replica::mutate`];
//! fsync, O_SYNC writes and close after a write are sync points.
//!
//! `files` holds the operations on open files; this file the namespace
//! (lookups, directories, links, attributes, xattrs).

mod attrs;
mod cache;
mod dirs;
mod files;
mod names;
mod xattrs;

pub(crate) use cache::{CacheMode, CacheWish, ReadStats};
use dirs::Listing;
use files::Handles;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, Errno as FErr, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;

use super::openmode::OpenModes;
use super::replica::{LocalRole, Replica};
use super::tree::kind;
use super::wire::Time;

struct Handle {
    /// The inode (as the kernel knows it) this handle is open on.
    ino: u64,
    file: File,
    sync: bool,
    writable: bool,
    wrote: AtomicBool,
    /// Served by the kernel straight from `file` (no READ reaches us).
    passthrough: bool,
}

/// See the module documentation.
pub(crate) struct ReplicatedFs {
    r: Arc<Replica>,
    wish: CacheWish,
    /// Negotiated at init.
    writeback: bool,
    passthrough: bool,
    handles: Arc<Handles>,
    modes: Arc<OpenModes<BackingId>>,
    stats: Arc<ReadStats>,
    /// The kernel refused a backing file once (logged once).
    backing_refused: AtomicBool,
    dirs: Mutex<HashMap<u64, Listing>>,
    next_dir: AtomicU64,
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
    /// A file system serving `r`, asking the kernel for `wish` at init.
    /// With passthrough, read-only opens are served by the kernel from the
    /// real files. With the writeback cache (which the kernel allows only
    /// without passthrough), the kernel caches writes and sends them in
    /// large batches, many in flight: sync points still wait for them (fsync
    /// and close write the dirty pages back before they reach this file
    /// system).
    pub(crate) fn new(r: Arc<Replica>, wish: CacheWish) -> Self {
        let modes = Arc::default();
        Self {
            r,
            wish,
            writeback: false,
            passthrough: false,
            handles: Arc::default(),
            stats: Arc::new(ReadStats::new(Arc::clone(&modes))),
            modes,
            backing_refused: AtomicBool::new(false),
            dirs: Mutex::new(HashMap::new()),
            next_dir: AtomicU64::new(1),
        }
    }

    /// The mount's counters (kept by the replicator for `state -v`).
    pub(crate) fn stats(&self) -> Arc<ReadStats> {
        self.stats.clone()
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
            ino: INodeNo(self.r.fino(st.st_dev, st.st_ino)),
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
        self.handles.get(fh)
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
                let generation = self.r.remember(a.ino.0, parent.0, name);
                reply.entry(&self.ttl(), &a, Generation(generation));
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    /// Flags for the real file. The kernel gives every write its offset
    /// (for O_APPEND, the end of the file as it knows it), and that offset
    /// is what the secondary gets: so O_APPEND must go, or a real file whose
    /// end differs from the kernel's would take the bytes elsewhere than the
    /// secondary. With the writeback cache the kernel also reads pages to
    /// complete partial writes, so a write-only open must be able to read.
    ///
    /// O_DIRECT is never passed down: the kernel gives this file system
    /// buffers of any alignment, which a real O_DIRECT file refuses
    /// (EINVAL; MariaDB's install then retried for minutes). Durability
    /// comes from the sync points, as O_DIRECT alone never promised it.
    fn backing_flags(&self, f: OFlag) -> OFlag {
        let mut f = f & !(OFlag::O_DIRECT | OFlag::O_APPEND);
        if self.writeback && f & OFlag::O_ACCMODE == OFlag::O_WRONLY {
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
        // Stack depth 2: the real directory may itself be on a stacked file
        // system (overlayfs in a container); nothing can stack on us then.
        if self.wish.passthrough
            && config.add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok()
        {
            self.passthrough = true;
            self.stats.set_mode(CacheMode::Passthrough);
        } else if self.wish.writeback && config.add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE).is_ok() {
            self.writeback = true;
            self.stats.set_mode(CacheMode::Writeback);
        } else {
            self.stats.set_mode(CacheMode::Plain);
        }
        // This file system clears setuid/setgid on write itself. Without it
        // the kernel asks for security.capability before every write, and
        // io_uring's non-blocking retries (MariaDB) turned that into ~60
        // GETXATTR round trips per write (measured: 17 writes/s).
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        // POSIX ACLs enforced by the kernel (with default_permissions), read
        // from the real files' xattrs; the umask is applied here, where a
        // directory's default ACL can replace it.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_DONT_MASK);
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_POSIX_ACL);
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
        self.attr_get(ino, fh, reply);
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
        self.attr_set(ino, mode, uid, gid, size, atime, mtime, fh, reply);
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
        self.name_mknod(req, parent, name, mode, umask, rdev, reply);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.name_mkdir(req, parent, name, mode, umask, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        self.name_symlink(req, parent, link_name, target, reply);
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
        self.name_rename(parent, name, newparent, newname, flags, reply);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.name_link(ino, newparent, newname, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.file_open(ino, flags, reply);
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
        self.file_read(fh, offset, size, reply);
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
        self.file_write(ino, fh, offset, data, write_flags, flags, reply);
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        self.file_flush(fh, reply);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.file_release(ino, fh);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.file_fsync(ino, fh, datasync, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.dir_open(ino, reply);
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        self.dir_read(fh, offset, reply);
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.dir_release(fh, reply);
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.dir_fsync(ino, reply);
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
        self.xattr_set(ino, name, value, flags, reply);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.xattr_get(ino, name, size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.xattr_list(ino, size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.xattr_remove(ino, name, reply);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel already checked the mode bits.
        match self.path_of(ino).and_then(|p| self.r.tree.stat(&p)) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn create(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        self.file_create(req, parent, name, mode, umask, flags, reply);
    }

    fn fallocate(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, length: u64, mode: i32, reply: ReplyEmpty) {
        self.file_fallocate(ino, fh, offset, length, mode, reply);
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        self.file_lseek(fh, offset, whence, reply);
    }
}
