//! The real directory under the mount, reached through a handle opened
//! before the FUSE mount hid it. Every access is relative to that handle and
//! resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so neither
//! a path from the peer nor a symlink in the tree can reach outside it.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, RenameFlags, ResolveFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};

use super::wire::{Entry, Meta, Op, Time};

/// A relative path is valid when it has no empty, `.` or `..` component,
/// no NUL and does not start with `/`. The empty path is the root.
pub(crate) fn valid(path: &[u8]) -> bool {
    path.is_empty() || (!path.contains(&0) && path.split(|b| *b == b'/').all(|c| !c.is_empty() && c != b"." && c != b".."))
}

/// `a/b` joined with `c`.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// (`a/b`, `c`) from `a/b/c`.
pub(crate) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Metadata of a stat result, as the protocol carries it.
pub(crate) fn meta_of(st: &FileStat) -> Meta {
    Meta {
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: (st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(0)),
        rdev: st.st_rdev,
    }
}

fn ts(t: Time) -> nix::sys::time::TimeSpec {
    nix::sys::time::TimeSpec::new(t.0, i64::from(t.1))
}

const OMIT: nix::sys::time::TimeSpec = nix::sys::time::TimeSpec::new(0, libc::UTIME_OMIT);

/// File type bits of a mode.
pub(crate) fn kind(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

/// The longest piece of a path resolved in one call (under PATH_MAX).
const PIECE: usize = 4000;

/// The replicated directory's real tree.
pub(crate) struct Tree {
    root: OwnedFd,
}

impl Tree {
    /// Holds `dir` (before anything is mounted over it).
    pub(crate) fn open(dir: &Path) -> Result<Self, Errno> {
        let root = nix::fcntl::open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Self { root })
    }

    fn how(flags: OFlag, mode: u32) -> OpenHow {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(Mode::from_bits_truncate(mode))
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    }

    /// Opens directory `dir` (relative, valid) as `flags`. A path longer
    /// than the kernel takes in one call (PATH_MAX counts from the caller's
    /// working directory, so a path from the replicated root may be longer)
    /// is resolved a piece at a time, each piece beneath the last.
    fn open_dir(&self, dir: &[u8], flags: OFlag) -> Result<OwnedFd, Errno> {
        if !valid(dir) {
            return Err(Errno::EINVAL);
        }
        if dir.is_empty() {
            return openat2(self.root.as_fd(), ".", Self::how(flags | OFlag::O_DIRECTORY, 0));
        }
        let mut base: Option<OwnedFd> = None;
        let mut rest = dir;
        loop {
            let at = base.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
            if rest.len() < PIECE {
                return openat2(at, OsStr::from_bytes(rest), Self::how(flags | OFlag::O_DIRECTORY, 0));
            }
            let cut = rest[..PIECE].iter().rposition(|b| *b == b'/').ok_or(Errno::ENAMETOOLONG)?;
            base = Some(openat2(at, OsStr::from_bytes(&rest[..cut]), Self::how(OFlag::O_PATH | OFlag::O_DIRECTORY, 0))?);
            rest = &rest[cut + 1..];
        }
    }

    /// Opens `path` (never following a final symlink). Only a regular file
    /// or a directory is ever opened: opening a fifo would block the caller
    /// (a peer's write to a replicated fifo's name hung the apply loop) and
    /// opening a device node would reach its driver. Data goes through
    /// neither on a local file system either, so such an open is refused
    /// (ENXIO), and O_NONBLOCK covers a name swapped in between.
    pub(crate) fn open_file(&self, path: &[u8], flags: OFlag, mode: u32) -> Result<File, Errno> {
        if path.is_empty() {
            return self.open_dir(path, flags).map(File::from);
        }
        let (dir, name) = self.parent(path)?;
        if let Ok(st) = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            if !matches!(kind(st.st_mode), libc::S_IFREG | libc::S_IFDIR | libc::S_IFLNK) {
                let exclusive = flags.contains(OFlag::O_CREAT | OFlag::O_EXCL);
                return Err(if exclusive { Errno::EEXIST } else { Errno::ENXIO });
            }
        }
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let fd = openat2(dir.as_fd(), name, Self::how(flags, mode))?;
        Ok(File::from(fd))
    }

    /// The directory holding `path` and the last component.
    pub(crate) fn parent<'p>(&self, path: &'p [u8]) -> Result<(OwnedFd, &'p OsStr), Errno> {
        if path.is_empty() || !valid(path) {
            return Err(Errno::EINVAL);
        }
        let (dir, name) = split(path);
        Ok((self.open_dir(dir, OFlag::O_PATH)?, OsStr::from_bytes(name)))
    }

    /// lstat.
    pub(crate) fn stat(&self, path: &[u8]) -> Result<FileStat, Errno> {
        let (dir, name) = self.parent_or_root(path)?;
        fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    /// The entry's times now, as an operation that sets them on the
    /// secondary (where applying a change gave it the apply time). `None` if
    /// it cannot be read: the change itself is sent all the same.
    pub(crate) fn times(&self, path: &[u8]) -> Option<Op> {
        let st = self.stat(path).ok()?;
        let t = |s: i64, ns: i64| (s, u32::try_from(ns).unwrap_or(0));
        Some(Op::SetAttr {
            path: path.to_vec(),
            mode: None,
            uid: None,
            gid: None,
            atime: Some(t(st.st_atime, st.st_atime_nsec)),
            mtime: Some(t(st.st_mtime, st.st_mtime_nsec)),
        })
    }

    /// A path usable by path-only system calls (xattrs on symlinks, chmod
    /// of an O_PATH handle): `/proc/self/fd/DIR/NAME` to the real entry,
    /// not the mount, short whatever the depth; valid while the returned
    /// handle lives.
    pub(crate) fn proc_path(&self, path: &[u8]) -> Result<(OwnedFd, CString), Errno> {
        let (dir, name) = self.parent_or_root(path)?;
        let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        p.extend_from_slice(name.as_bytes());
        Ok((dir, CString::new(p).map_err(|_| Errno::EINVAL)?))
    }

    /// Directory entries (without `.` and `..`) with their metadata.
    pub(crate) fn list(&self, path: &[u8]) -> Result<Vec<Entry>, Errno> {
        let fd = self.open_dir(path, OFlag::O_RDONLY)?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let dfd = dir.as_raw_fd();
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            // SAFETY: dfd stays open while `dir` lives.
            let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(dfd) };
            match fstatat(bfd, e.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => out.push(Entry { name: name.to_vec(), meta: meta_of(&st) }),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Extended attributes of `path` (name, value).
    pub(crate) fn xattrs(&self, path: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Errno> {
        let (_dir, p) = self.proc_path(path)?;
        let names = xattr_call(|buf, len| unsafe { libc::llistxattr(p.as_ptr(), buf.cast(), len) })?;
        let mut out = Vec::new();
        for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
            match xattr_call(|buf, len| unsafe { libc::lgetxattr(p.as_ptr(), cname.as_ptr(), buf.cast(), len) }) {
                Ok(v) => out.push((name.to_vec(), v)),
                Err(Errno::ENODATA) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Whether directory `dir` has a default POSIX ACL: then a new entry's
    /// mode comes from it and the caller's umask does not apply.
    pub(crate) fn has_default_acl(&self, dir: &[u8]) -> bool {
        self.proc_path(dir)
            .is_ok_and(|(_fd, p)| unsafe { libc::lgetxattr(p.as_ptr(), c"system.posix_acl_default".as_ptr(), std::ptr::null_mut(), 0) > 0 })
    }

    /// setxattr.
    pub(crate) fn set_xattr(&self, path: &[u8], name: &[u8], value: &[u8], flags: i32) -> Result<(), Errno> {
        let (_dir, p) = self.proc_path(path)?;
        let n = CString::new(name).map_err(|_| Errno::EINVAL)?;
        Errno::result(unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) }).map(drop)
    }

    /// removexattr.
    pub(crate) fn remove_xattr(&self, path: &[u8], name: &[u8]) -> Result<(), Errno> {
        let (_dir, p) = self.proc_path(path)?;
        let n = CString::new(name).map_err(|_| Errno::EINVAL)?;
        Errno::result(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) }).map(drop)
    }

    /// chown without following a final symlink.
    pub(crate) fn chown(&self, path: &[u8], uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
        if uid.is_none() && gid.is_none() {
            return Ok(());
        }
        let (dir, name) = self.parent_or_root(path)?;
        nix::unistd::fchownat(
            dir.as_fd(),
            name,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }

    fn parent_or_root<'p>(&self, path: &'p [u8]) -> Result<(OwnedFd, &'p OsStr), Errno> {
        if path.is_empty() {
            return Ok((self.open_dir(path, OFlag::O_PATH)?, OsStr::new(".")));
        }
        self.parent(path)
    }

    /// chmod (symlinks have no mode of their own: ignored).
    pub(crate) fn chmod(&self, path: &[u8], mode: u32) -> Result<(), Errno> {
        let st = self.stat(path)?;
        if kind(st.st_mode) == libc::S_IFLNK {
            return Ok(());
        }
        let (dir, name) = self.parent_or_root(path)?;
        nix::sys::stat::fchmodat(dir.as_fd(), name, Mode::from_bits_truncate(mode & 0o7777), nix::sys::stat::FchmodatFlags::FollowSymlink)
    }

    /// utimensat without following a final symlink; `None` leaves a time as is.
    pub(crate) fn set_times(&self, path: &[u8], atime: Option<Time>, mtime: Option<Time>) -> Result<(), Errno> {
        if atime.is_none() && mtime.is_none() {
            return Ok(());
        }
        let (dir, name) = self.parent_or_root(path)?;
        nix::sys::stat::utimensat(
            dir.as_fd(),
            name,
            &atime.map_or(OMIT, ts),
            &mtime.map_or(OMIT, ts),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
    }

    /// Removes whatever is at `path`, recursively; absent is fine.
    pub(crate) fn remove_tree(&self, path: &[u8]) -> Result<(), Errno> {
        let st = match self.stat(path) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        let (dir, name) = self.parent(path)?;
        if kind(st.st_mode) == libc::S_IFDIR {
            for e in self.list(path)? {
                self.remove_tree(&join(path, &e.name))?;
            }
            nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::RemoveDir)
        } else {
            nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir)
        }
    }

    /// syncfs of the file system holding the tree.
    pub(crate) fn syncfs(&self) -> Result<(), Errno> {
        let f = self.open_file(b"", OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
        nix::unistd::syncfs(f.as_fd())
    }

    /// Applies one replicated operation (the secondary's side).
    pub(crate) fn apply(&self, op: &Op) -> Result<(), Errno> {
        use nix::unistd::{linkat, symlinkat, unlinkat, UnlinkatFlags};
        match op {
            Op::Write { path, off, data, mtime } => {
                let f = self.open_file(path, OFlag::O_WRONLY, 0)?;
                f.write_all_at(data, *off).map_err(io_errno)?;
                nix::sys::stat::futimens(f.as_fd(), &OMIT, &ts(*mtime))
            }
            Op::Truncate { path, size, mtime } => {
                let f = self.open_file(path, OFlag::O_WRONLY, 0)?;
                f.set_len(*size).map_err(io_errno)?;
                nix::sys::stat::futimens(f.as_fd(), &OMIT, &ts(*mtime))
            }
            Op::Create { path, mode, uid, gid } => {
                let f = self.open_file(path, OFlag::O_WRONLY | OFlag::O_CREAT, *mode & 0o7777)?;
                own(&f, Some(*mode), *uid, *gid)
            }
            Op::Reset { path, mode, uid, gid } => {
                let st = self.stat(path);
                if st.as_ref().is_ok_and(|s| kind(s.st_mode) != libc::S_IFREG) {
                    self.remove_tree(path)?;
                }
                let f = self.open_file(path, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC, *mode & 0o7777)?;
                own(&f, Some(*mode), *uid, *gid)
            }
            Op::Mknod { path, mode, rdev, uid, gid } => {
                let (dir, name) = self.parent(path)?;
                nix::sys::stat::mknodat(
                    dir.as_fd(),
                    name,
                    nix::sys::stat::SFlag::from_bits_truncate(kind(*mode)),
                    Mode::from_bits_truncate(*mode & 0o7777),
                    *rdev,
                )?;
                // The mode exactly, after the owner: neither this process's
                // umask nor chown's clearing of setuid/setgid applies.
                self.chown(path, Some(*uid), Some(*gid))?;
                self.chmod(path, *mode)
            }
            Op::Mkdir { path, mode, uid, gid } => {
                let (dir, name) = self.parent(path)?;
                match nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(*mode & 0o7777)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                self.chown(path, Some(*uid), Some(*gid))?;
                self.chmod(path, *mode)
            }
            Op::Unlink { path } => {
                let (dir, name) = self.parent(path)?;
                unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
            }
            Op::Rmdir { path } => {
                let (dir, name) = self.parent(path)?;
                unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
            }
            Op::Rename { from, to, flags } => {
                let (d1, n1) = self.parent(from)?;
                let (d2, n2) = self.parent(to)?;
                nix::fcntl::renameat2(d1.as_fd(), n1, d2.as_fd(), n2, RenameFlags::from_bits_truncate(*flags))
            }
            Op::Symlink { path, target, uid, gid } => {
                let (dir, name) = self.parent(path)?;
                symlinkat(OsStr::from_bytes(target), dir.as_fd(), name)?;
                self.chown(path, Some(*uid), Some(*gid))
            }
            Op::Link { existing, path } => {
                let (d1, n1) = self.parent(existing)?;
                let (d2, n2) = self.parent(path)?;
                linkat(d1.as_fd(), n1, d2.as_fd(), n2, AtFlags::empty())
            }
            Op::SetAttr { path, mode, uid, gid, atime, mtime } => {
                self.chown(path, *uid, *gid)?;
                if let Some(m) = mode {
                    self.chmod(path, *m)?;
                }
                self.set_times(path, *atime, *mtime)
            }
            Op::SetXattr { path, name, value, flags } => self.set_xattr(path, name, value, *flags),
            Op::RemoveXattr { path, name } => self.remove_xattr(path, name),
            Op::Fallocate { path, mode, off, len } => {
                let f = self.open_file(path, OFlag::O_WRONLY, 0)?;
                nix::fcntl::fallocate(
                    f.as_fd(),
                    nix::fcntl::FallocateFlags::from_bits_truncate(*mode),
                    i64::try_from(*off).map_err(|_| Errno::EINVAL)?,
                    i64::try_from(*len).map_err(|_| Errno::EINVAL)?,
                )
            }
            Op::Fsync { path } => {
                let f = self.open_file(path, OFlag::O_RDONLY, 0)?;
                nix::unistd::fsync(f.as_fd())
            }
            Op::RemoveTree { path } => self.remove_tree(path),
            Op::Finish { path, meta, xattrs } => {
                if kind(meta.mode) == libc::S_IFREG {
                    let f = self.open_file(path, OFlag::O_WRONLY, 0)?;
                    f.set_len(meta.size).map_err(io_errno)?;
                }
                self.chown(path, Some(meta.uid), Some(meta.gid))?;
                self.chmod(path, meta.mode)?;
                if kind(meta.mode) != libc::S_IFLNK {
                    let have = self.xattrs(path)?;
                    for (n, _) in have.iter().filter(|(n, _)| !xattrs.iter().any(|(m, _)| m == n)) {
                        self.remove_xattr(path, n)?;
                    }
                    for (n, v) in xattrs {
                        if !have.iter().any(|(m, w)| m == n && w == v) {
                            self.set_xattr(path, n, v, 0)?;
                        }
                    }
                }
                self.set_times(path, None, Some(meta.mtime))
            }
        }
    }
}

/// futimens; `None` leaves a time as is.
pub(crate) fn set_file_times(f: &File, atime: Option<Time>, mtime: Option<Time>) -> Result<(), Errno> {
    nix::sys::stat::futimens(f.as_fd(), &atime.map_or(OMIT, ts), &mtime.map_or(OMIT, ts))
}

/// Gives a new file its owner, then exactly `mode` if given (chown clears
/// setuid/setgid, and the create call's mode went through this process's
/// umask); `None` keeps the mode the real file system chose.
pub(crate) fn own(f: &File, mode: Option<u32>, uid: u32, gid: u32) -> Result<(), Errno> {
    let st = nix::sys::stat::fstat(f.as_fd())?;
    if (st.st_uid, st.st_gid) != (uid, gid) {
        nix::unistd::fchown(f.as_fd(), Some(uid.into()), Some(gid.into()))?;
    }
    match mode {
        Some(m) => nix::sys::stat::fchmod(f.as_fd(), Mode::from_bits_truncate(m & 0o7777)),
        None => Ok(()),
    }
}

/// The errno of an I/O error (EIO when it has none).
pub(crate) fn io_errno(e: std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

fn xattr_call(mut f: impl FnMut(*mut u8, usize) -> isize) -> Result<Vec<u8>, Errno> {
    for _ in 0..8 {
        let n = Errno::result(f(std::ptr::null_mut(), 0))?;
        let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
        match Errno::result(f(buf.as_mut_ptr(), buf.len())) {
            Ok(m) => {
                buf.truncate(usize::try_from(m).unwrap_or(0));
                return Ok(buf);
            }
            Err(Errno::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::ERANGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_a_peer_cannot_escape() {
        for bad in [&b"/etc"[..], b"..", b"a/../b", b"a//b", b"./a", b"a/", b"a\0b"] {
            assert!(!valid(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(valid(b"") && valid(b"a/b.c/..d"));
    }

    #[test]
    fn symlinks_inside_the_tree_are_not_followed() {
        let d = std::env::temp_dir().join(format!("skt-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("t")).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("t/out")).unwrap();
        let t = Tree::open(&d.join("t")).unwrap();
        assert!(t.open_file(b"out/passwd", OFlag::O_RDONLY, 0).is_err());
        assert!(t.apply(&Op::Create { path: b"out/x".to_vec(), mode: 0o644, uid: 0, gid: 0 }).is_err());
        t.apply(&Op::Mkdir { path: b"d".to_vec(), mode: 0o755, uid: nix::unistd::getuid().as_raw(), gid: nix::unistd::getgid().as_raw() })
            .unwrap();
        assert!(d.join("t/d").is_dir());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Found by the replication_frames fuzz target: a peer's write to the
    /// name of a replicated fifo blocked the apply loop forever (open of a
    /// fifo waits for the other end). Data operations on anything but a
    /// regular file are refused at once.
    #[test]
    fn data_operations_on_a_fifo_are_refused_not_blocked() {
        let d = std::env::temp_dir().join(format!("skt-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let t = Tree::open(&d).unwrap();
        let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        t.apply(&Op::Mknod { path: b"p".to_vec(), mode: libc::S_IFIFO | 0o644, rdev: 0, uid, gid }).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ops = [
                Op::Write { path: b"p".to_vec(), off: 0, data: b"x".to_vec(), mtime: (1, 0) },
                Op::Truncate { path: b"p".to_vec(), size: 0, mtime: (1, 0) },
                Op::Fsync { path: b"p".to_vec() },
                Op::Create { path: b"p".to_vec(), mode: 0o644, uid, gid },
            ];
            let results: Vec<_> = ops.iter().map(|op| t.apply(op)).collect();
            let _ = tx.send(results);
        });
        // A hang shows as this bound failing, not as a stuck test run.
        let results = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("an operation on a fifo blocked");
        assert!(results.iter().all(|r| *r == Err(Errno::ENXIO)), "{results:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
