//! Extended attributes: read from the real file, changes replicated. A file
//! whose last name is gone but that is still open is reached through its
//! open handle; its attributes are not part of the replicated tree.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use fuser::{INodeNo, ReplyEmpty, ReplyXattr};
use nix::errno::Errno;

use super::super::replica::Mark;
use super::super::wire::Op;
use super::{fe, Handle, ReplicatedFs};

/// Where an inode's attributes are.
enum Target {
    /// A named entry of the tree, and a path to it (valid while the handle lives).
    Named { path: Vec<u8>, _dir: OwnedFd, proc: CString },
    /// An open file without a name.
    Unlinked(Arc<Handle>),
}

impl ReplicatedFs {
    fn xattr_target(&self, ino: INodeNo) -> Result<Target, Errno> {
        match self.path_of(ino) {
            Ok(p) => {
                let (dir, pp) = self.r.tree.proc_path(&p)?;
                Ok(Target::Named { path: p, _dir: dir, proc: pp })
            }
            Err(e) => self.handles.by_ino(ino.0).map(Target::Unlinked).ok_or(e),
        }
    }

    pub(super) fn xattr_set(&self, ino: INodeNo, name: &OsStr, value: &[u8], flags: i32, reply: ReplyEmpty) {
        let Ok(n) = CString::new(name.as_bytes()) else { return reply.error(fe(Errno::EINVAL)) };
        let res = match self.xattr_target(ino) {
            Ok(Target::Named { path, .. }) => {
                let tree = &self.r.tree;
                self.r
                    .mutate(&[Mark::Meta(&path)], || {
                        tree.set_xattr(&path, name.as_bytes(), value, flags)?;
                        Ok(((), Some(Op::SetXattr { path: path.clone(), name: name.as_bytes().to_vec(), value: value.to_vec(), flags })))
                    })
                    .map(drop)
            }
            Ok(Target::Unlinked(h)) => {
                Errno::result(unsafe { libc::fsetxattr(h.file.as_raw_fd(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) })
                    .map(drop)
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fe(e)),
        }
    }

    pub(super) fn xattr_get(&self, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = self.xattr_target(ino).and_then(|t| {
            let n = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
            let mut buf = vec![0u8; size as usize];
            let (b, len) = (buf.as_mut_ptr().cast(), buf.len());
            let k = Errno::result(match &t {
                Target::Named { proc: pp, .. } => unsafe { libc::lgetxattr(pp.as_ptr(), n.as_ptr(), b, len) },
                Target::Unlinked(h) => unsafe { libc::fgetxattr(h.file.as_raw_fd(), n.as_ptr(), b, len) },
            })?;
            buf.truncate(usize::try_from(k).unwrap_or(0));
            Ok((buf, k))
        });
        xattr_reply(r, size, reply);
    }

    pub(super) fn xattr_list(&self, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = self.xattr_target(ino).and_then(|t| {
            let mut buf = vec![0u8; size as usize];
            let (b, len) = (buf.as_mut_ptr().cast(), buf.len());
            let k = Errno::result(match &t {
                Target::Named { proc: pp, .. } => unsafe { libc::llistxattr(pp.as_ptr(), b, len) },
                Target::Unlinked(h) => unsafe { libc::flistxattr(h.file.as_raw_fd(), b, len) },
            })?;
            buf.truncate(usize::try_from(k).unwrap_or(0));
            Ok((buf, k))
        });
        xattr_reply(r, size, reply);
    }

    pub(super) fn xattr_remove(&self, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = match self.xattr_target(ino) {
            Ok(Target::Named { path, .. }) => {
                let tree = &self.r.tree;
                self.r
                    .mutate(&[Mark::Meta(&path)], || {
                        tree.remove_xattr(&path, name.as_bytes())?;
                        Ok(((), Some(Op::RemoveXattr { path: path.clone(), name: name.as_bytes().to_vec() })))
                    })
                    .map(drop)
            }
            Ok(Target::Unlinked(h)) => CString::new(name.as_bytes())
                .map_err(|_| Errno::EINVAL)
                .and_then(|n| Errno::result(unsafe { libc::fremovexattr(h.file.as_raw_fd(), n.as_ptr()) }).map(drop)),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => reply.ok(),
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
