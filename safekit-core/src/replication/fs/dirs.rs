//! Directories: listings read once at opendir from the real directory and
//! served from memory (a consistent snapshot for the whole readdir), fsync.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;

use fuser::{Errno as FErr, FileHandle, FileType, FopenFlags, INodeNo, ReplyDirectory, ReplyEmpty, ReplyOpen};
use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::{fe, ReplicatedFs};

/// One directory's entries: (inode, type, name).
pub(super) type Listing = Vec<(u64, FileType, Vec<u8>)>;

impl ReplicatedFs {
    pub(super) fn dir_open(&self, ino: INodeNo, reply: ReplyOpen) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(fe(e)),
        };
        let listing = (|| -> Result<Listing, Errno> {
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
                v.push((self.r.fino_entry(e.ino()), t, e.file_name().to_bytes().to_vec()));
            }
            Ok(v)
        })();
        match listing {
            Ok(v) => {
                let id = self.next_dir.fetch_add(1, Ordering::Relaxed);
                self.dirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, v);
                reply.opened(FileHandle(id), FopenFlags::empty());
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    pub(super) fn dir_read(&self, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let dirs = self.dirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(v) = dirs.get(&fh.0) else { return reply.error(FErr::EBADF) };
        for (i, (ino, t, name)) in v.iter().enumerate().skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *t, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    pub(super) fn dir_release(&self, fh: FileHandle, reply: ReplyEmpty) {
        self.dirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&fh.0);
        reply.ok();
    }

    pub(super) fn dir_fsync(&self, ino: INodeNo, reply: ReplyEmpty) {
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
}
