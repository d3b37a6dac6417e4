//! Attributes: getattr and setattr. A file still open after its last name
//! is gone is reached through its open handle (databases' temp files);
//! such a file is not part of the replicated tree, so its changes stay here.

use std::fs::File;
use std::os::fd::AsFd;
use std::time::SystemTime;

use fuser::{FileHandle, INodeNo, ReplyAttr, TimeOrNow};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};

use super::super::replica::Mark;
use super::super::tree::{io_errno, set_file_times};
use super::super::wire::{Op, Time};
use super::{fe, mtime_of, to_time, ReplicatedFs};

/// setattr on an open file without a name, through its handle.
fn set_unlinked(
    f: &File,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    times: (Option<Time>, Option<Time>),
) -> Result<FileStat, Errno> {
    if let Some(s) = size {
        f.set_len(s).map_err(io_errno)?;
    }
    if uid.is_some() || gid.is_some() {
        nix::unistd::fchown(f.as_fd(), uid.map(Into::into), gid.map(Into::into))?;
    }
    if let Some(m) = mode {
        nix::sys::stat::fchmod(f.as_fd(), Mode::from_bits_truncate(m & 0o7777))?;
    }
    set_file_times(f, times.0, times.1)?;
    nix::sys::stat::fstat(f.as_fd())
}

impl ReplicatedFs {
    pub(super) fn attr_get(&self, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let st = match fh.and_then(|f| self.handle(f)) {
            Some(h) => nix::sys::stat::fstat(h.file.as_fd()),
            // A file open but without a name any more: through its handle.
            None => self.path_of(ino).and_then(|p| self.r.tree.stat(&p)).or_else(|e| match self.handles.by_ino(ino.0) {
                Some(h) => nix::sys::stat::fstat(h.file.as_fd()),
                None => Err(e),
            }),
        };
        match st {
            Ok(st) => reply.attr(&self.ttl(), &self.attr(&st)),
            Err(e) => reply.error(fe(e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn attr_set(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        let handle = fh.and_then(|f| self.handle(f));
        let now = SystemTime::now();
        let t = |x: Option<TimeOrNow>| {
            x.map(|v| match v {
                TimeOrNow::SpecificTime(s) => to_time(s),
                TimeOrNow::Now => to_time(now),
            })
        };
        let (at, mt) = (t(atime), t(mtime));
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => {
                // Open, but its last name is gone: not part of the tree, so
                // changed here only, through the handle.
                return match handle.or_else(|| self.handles.by_ino(ino.0)) {
                    Some(h) => match set_unlinked(&h.file, mode, uid, gid, size, (at, mt)) {
                        Ok(st) => reply.attr(&self.ttl(), &self.attr(&st)),
                        Err(e) => reply.error(fe(e)),
                    },
                    None => reply.error(fe(e)),
                };
            }
        };
        let tree = &self.r.tree;
        let mut marks = vec![Mark::Meta(&path)];
        if let Some(s) = size {
            // A shrink changes every zone from the new end to the old one
            // (a later regrowth exposes them again as zeros); a growth only
            // the zone of the old end (past it the final size alone gives
            // the zeros, never sent).
            let old = tree.stat(&path).map_or(0, |st| u64::try_from(st.st_size).unwrap_or(0));
            marks.push(if s < old { Mark::Zones(&path, s, old - s) } else { Mark::Zones(&path, old, 1) });
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
}
