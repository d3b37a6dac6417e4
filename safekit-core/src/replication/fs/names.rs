//! The namespace: new entries (mknod, mkdir, symlink), rename, link,
//! unlink and rmdir. Each change is applied here, then sent with the
//! primary's resulting times of the entries it touched, so the secondary's
//! copy carries the same times; an operation that fails half-way is undone
//! here and never sent.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use fuser::{INodeNo, RenameFlags, ReplyEmpty, ReplyEntry, Request};
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::Mode;

use super::super::replica::Mark;
use super::super::tree::{kind, split, Tree};
use super::super::wire::Op;
use super::{fe, ReplicatedFs};

/// Removes an entry this call created when a later step of the same call
/// failed: an operation happens whole or not at all (nothing is sent for
/// a failed one).
pub(super) fn undo<T>(tree: &Tree, path: &[u8], dir: bool, r: Result<T, Errno>) -> Result<T, Errno> {
    if r.is_err() {
        if let Ok((d, n)) = tree.parent(path) {
            let flag = if dir { nix::unistd::UnlinkatFlags::RemoveDir } else { nix::unistd::UnlinkatFlags::NoRemoveDir };
            let _ = nix::unistd::unlinkat(d.as_fd(), n, flag);
        }
    }
    r
}

/// Owner and mode of an entry this call just made at `path`: the caller's
/// `mode` exactly (the real call went through this process's umask, and
/// chown clears setuid/setgid), unless its directory has a default ACL
/// (`inherit`): then the real file system applied it as it would for a
/// local caller, and its choice stays. Returns the mode the entry ended
/// with, which the secondary sets; undoes the entry on failure.
fn settle(tree: &Tree, path: &[u8], dir: bool, mode: u32, uid: u32, gid: u32, inherit: bool) -> Result<u32, Errno> {
    let r = tree
        .chown(path, Some(uid), Some(gid))
        .and_then(|()| if inherit { Ok(()) } else { tree.chmod(path, mode) })
        .and_then(|()| tree.stat(path))
        .map(|st| st.st_mode);
    undo(tree, path, dir, r)
}

impl ReplicatedFs {
    pub(super) fn new_entry(
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
        let tree = &self.r.tree;
        let res = self.r.mutate(&[Mark::Dir(&dir), Mark::Meta(&path)], || {
            let op = make(&path, uid, gid, sgid)?;
            Ok(((), [Some(op), tree.times(&dir), tree.times(&path)].into_iter().flatten()))
        });
        match res {
            Ok(_) => self.entry(parent, name.as_bytes(), &path, reply),
            Err(e) => reply.error(fe(e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn name_mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let tree = &self.r.tree;
        self.new_entry(req, parent, name, reply, |path, uid, gid, _| {
            let inherit = tree.has_default_acl(split(path).0);
            let mode = if inherit { mode } else { mode & !umask | (mode & libc::S_IFMT) };
            let (d, n) = tree.parent(path)?;
            nix::sys::stat::mknodat(
                d.as_fd(),
                n,
                nix::sys::stat::SFlag::from_bits_truncate(kind(mode)),
                Mode::from_bits_truncate(mode & 0o7777),
                u64::from(rdev),
            )?;
            let mode = settle(tree, path, false, mode, uid, gid, inherit)?;
            Ok(Op::Mknod { path: path.to_vec(), mode, rdev: u64::from(rdev), uid, gid })
        });
    }

    pub(super) fn name_mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let tree = &self.r.tree;
        self.new_entry(req, parent, name, reply, |path, uid, gid, sgid| {
            let inherit = tree.has_default_acl(split(path).0);
            let mode = (mode & if inherit { 0o7777 } else { !umask & 0o7777 }) | if sgid { libc::S_ISGID } else { 0 };
            let (d, n) = tree.parent(path)?;
            nix::sys::stat::mkdirat(d.as_fd(), n, Mode::from_bits_truncate(mode))?;
            let mode = settle(tree, path, true, mode, uid, gid, inherit)? & 0o7777;
            Ok(Op::Mkdir { path: path.to_vec(), mode, uid, gid })
        });
    }

    pub(super) fn name_symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        let tree = &self.r.tree;
        self.new_entry(req, parent, link_name, reply, |path, uid, gid, _| {
            let (d, n) = tree.parent(path)?;
            nix::unistd::symlinkat(target, d.as_fd(), n)?;
            undo(tree, path, false, tree.chown(path, Some(uid), Some(gid)))?;
            Ok(Op::Symlink { path: path.to_vec(), target: target.as_os_str().as_bytes().to_vec(), uid, gid })
        });
    }

    pub(super) fn name_rename(
        &self,
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
        let (fd, td) = (split(&from).0.to_vec(), split(&to).0.to_vec());
        let moved_out = self.r.excluded(&from) && !self.r.excluded(&to);
        // The name `to` now holds another file (or, with EXCHANGE, both do):
        // a reintegration copies them whole, their zones were noted elsewhere.
        let to_whole = tree.stat(&from).is_ok_and(|st| kind(st.st_mode) != libc::S_IFDIR);
        let from_whole = flags.contains(RenameFlags::RENAME_EXCHANGE) && tree.stat(&to).is_ok_and(|st| kind(st.st_mode) != libc::S_IFDIR);
        let mut marks = vec![Mark::Dir(&fd), Mark::Dir(&td), Mark::Meta(&to)];
        if to_whole {
            marks.push(Mark::Whole(&to));
        }
        if from_whole {
            marks.push(Mark::Whole(&from));
        }
        let res = self.r.mutate(&marks, || {
            let (d1, n1) = tree.parent(&from)?;
            let (d2, n2) = tree.parent(&to)?;
            let src = tree.stat(&from).map(|s| self.r.fino(s.st_dev, s.st_ino));
            let dst = tree.stat(&to).ok();
            nix::fcntl::renameat2(d1.as_fd(), n1, d2.as_fd(), n2, nix::fcntl::RenameFlags::from_bits_truncate(flags.bits()))?;
            if let Some(d) = &dst {
                let d_ino = self.r.fino(d.st_dev, d.st_ino);
                if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                    self.r.moved(d_ino, newparent.0, newname.as_bytes(), parent.0, name.as_bytes());
                } else if Ok(d_ino) != src {
                    let last = kind(d.st_mode) == libc::S_IFDIR || d.st_nlink <= 1;
                    self.r.unlinked(d_ino, newparent.0, newname.as_bytes(), last);
                }
            }
            if let Ok(s) = src {
                self.r.moved(s, parent.0, name.as_bytes(), newparent.0, newname.as_bytes());
            }
            let mut ops = Vec::new();
            if !moved_out {
                ops.push(Op::Rename { from: from.clone(), to: to.clone(), flags: flags.bits() });
            }
            ops.extend(tree.times(&fd));
            if td != fd {
                ops.extend(tree.times(&td));
            }
            if !moved_out {
                ops.extend(tree.times(&to));
                if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                    ops.extend(tree.times(&from));
                }
            }
            Ok(((), ops))
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
                reply.ok();
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    pub(super) fn name_link(&self, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
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
            Ok(((), [Some(Op::Link { existing: existing.clone(), path: path.clone() }), tree.times(&dir)].into_iter().flatten()))
        });
        match res {
            Ok(_) => self.entry(newparent, newname.as_bytes(), &path, reply),
            Err(e) => reply.error(fe(e)),
        }
    }

    pub(super) fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let path = match self.r.child(parent.0, name.as_bytes()) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let tree = &self.r.tree;
        let pdir = split(&path).0.to_vec();
        let res = self.r.mutate(&[Mark::Dir(&pdir)], || {
            let (d, n) = tree.parent(&path)?;
            let st = nix::sys::stat::fstatat(d.as_fd(), n, AtFlags::AT_SYMLINK_NOFOLLOW);
            let flag = if dir { nix::unistd::UnlinkatFlags::RemoveDir } else { nix::unistd::UnlinkatFlags::NoRemoveDir };
            nix::unistd::unlinkat(d.as_fd(), n, flag)?;
            if let Ok(st) = st {
                self.r.unlinked(self.r.fino(st.st_dev, st.st_ino), parent.0, name.as_bytes(), dir || st.st_nlink <= 1);
            }
            let op = if dir { Op::Rmdir { path: path.clone() } } else { Op::Unlink { path: path.clone() } };
            Ok(((), [Some(op), tree.times(&pdir)].into_iter().flatten()))
        });
        match res {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(fe(e)),
        }
    }
}
