//! Extended attributes: read from the real file, changes replicated.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuser::{INodeNo, ReplyEmpty, ReplyXattr};
use nix::errno::Errno;

use super::super::replica::Mark;
use super::super::wire::Op;
use super::{fe, ReplicatedFs};

impl ReplicatedFs {
    pub(super) fn xattr_set(&self, ino: INodeNo, name: &OsStr, value: &[u8], flags: i32, reply: ReplyEmpty) {
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

    pub(super) fn xattr_get(&self, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
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

    pub(super) fn xattr_list(&self, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = self.path_of(ino).and_then(|p| {
            let pp = self.r.tree.proc_path(&p)?;
            let mut buf = vec![0u8; size as usize];
            let k = Errno::result(unsafe { libc::llistxattr(pp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
            buf.truncate(usize::try_from(k).unwrap_or(0));
            Ok((buf, k))
        });
        xattr_reply(r, size, reply);
    }

    pub(super) fn xattr_remove(&self, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
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
}

fn xattr_reply(r: Result<(Vec<u8>, isize), Errno>, size: u32, reply: ReplyXattr) {
    match r {
        Ok((_, k)) if size == 0 => reply.size(u32::try_from(k).unwrap_or(0)),
        Ok((buf, _)) => reply.data(&buf),
        Err(e) => reply.error(fe(e)),
    }
}
