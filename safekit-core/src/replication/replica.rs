//! One replicated directory on this node: its real tree, its dirty map, its
//! link to the secondary, and the single order in which mutations are both
//! applied locally and queued for the secondary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;

use super::dirty::DirtyMap;
use super::filter::Filter;
use super::gate::Admission;
use super::link::{Link, Sent};
use super::tree::{join, Tree};
use super::wire::{Op, ToSecondary};
use super::Hooks;

/// What this node does with local writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalRole {
    /// Applies and replicates them.
    Primary,
    /// Refuses them (EROFS): `mode="read_only"`.
    ReadOnly,
    /// Applies them without replicating (a secondary without read_only).
    Unreplicated,
}

/// A change to record in the dirty map before it is applied.
pub(crate) use super::dirty::Change as Mark;

/// What this file system knows of an inode: every name the kernel knows it
/// by (hard links have several), and how many lookups it holds.
#[derive(Debug)]
struct Node {
    links: Vec<(u64, Vec<u8>)>,
    lookups: u64,
    /// FUSE inode numbers are the real ones, which the real file system
    /// gives again once a file is gone, possibly while the kernel still
    /// holds the old inode (an rmdir'ed directory stays "dead" there: a new
    /// directory taken for it refused every entry with ENOENT). A new
    /// generation tells the kernel it is another file.
    generation: u64,
    /// Its last name is gone: the next entry with this number is a new file.
    dead: bool,
}

/// See the module documentation.
pub(crate) struct Replica {
    /// The real directory.
    pub tree: Tree,
    order: Mutex<()>,
    /// Dirty map (shared with the link).
    pub dirty: Arc<Mutex<DirtyMap>>,
    /// Connection to the secondary (primary side).
    pub link: Arc<Link>,
    /// notreplicated.
    pub filter: Filter,
    role: AtomicU8,
    /// async="none": the secondary's disk, not its memory, acknowledges sync points.
    pub secondary_disk_sync: bool,
    /// Log and events.
    pub hooks: Hooks,
    /// With a lease witness: an unreplicated write waits for an ALONE lease.
    pub lease: Option<Arc<crate::witness::client::LeaseGate>>,
    /// The engine's word on unreplicated writes (shared by the module's replicas).
    pub gate: Arc<super::gate::WriteGate>,
    nodes: Mutex<HashMap<u64, Node>>,
    /// The last generation given (see [`Node::generation`]).
    generations: AtomicU64,
    root_ino: u64,
    /// The root's device, and the other devices met below it (see [`Replica::fino`]).
    root_dev: u64,
    devices: Mutex<Vec<u64>>,
    /// Secondary: frames received from the primary and applied.
    pub applied_frames: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Replica {
    /// A replica over `tree`.
    pub(crate) fn new(
        tree: Tree,
        dirty: Arc<Mutex<DirtyMap>>,
        link: Arc<Link>,
        filter: Filter,
        secondary_disk_sync: bool,
        hooks: Hooks,
    ) -> Self {
        let (root_dev, root_ino) = tree.stat(b"").map_or((0, 1), |s| (s.st_dev, s.st_ino));
        let mut nodes = HashMap::new();
        nodes.insert(1, Node { links: vec![(1, Vec::new())], lookups: 1, generation: 0, dead: false });
        Self {
            tree,
            order: Mutex::new(()),
            dirty,
            link,
            filter,
            role: AtomicU8::new(1),
            secondary_disk_sync,
            hooks,
            lease: None,
            gate: Arc::default(),
            nodes: Mutex::new(nodes),
            generations: AtomicU64::new(0),
            root_ino,
            root_dev,
            devices: Mutex::new(Vec::new()),
            applied_frames: AtomicU64::new(0),
        }
    }

    /// Current role of local writes.
    pub(crate) fn role(&self) -> LocalRole {
        match self.role.load(Ordering::Acquire) {
            0 => LocalRole::Primary,
            1 => LocalRole::ReadOnly,
            _ => LocalRole::Unreplicated,
        }
    }

    /// Changes it.
    pub(crate) fn set_role(&self, r: LocalRole) {
        self.role.store(
            match r {
                LocalRole::Primary => 0,
                LocalRole::ReadOnly => 1,
                LocalRole::Unreplicated => 2,
            },
            Ordering::Release,
        );
    }

    /// The FUSE inode number of an underlying inode (the root is 1).
    ///
    /// Inode numbers are unique within one file system only. A replicated
    /// directory may span several: a mount point below it, or overlayfs
    /// (a container's root), whose files report their layer's device and
    /// may share numbers with another layer's. Two files under one number
    /// make the kernel fail the second with EIO, so a file of another
    /// device than the root's gets that device's tag in the high byte.
    pub(crate) fn fino(&self, st_dev: u64, st_ino: u64) -> u64 {
        let ino = if st_dev == self.root_dev { st_ino } else { device_tagged(&mut lock(&self.devices), st_dev, st_ino) };
        if ino == self.root_ino {
            1
        } else if ino == 1 {
            self.root_ino
        } else {
            ino
        }
    }

    /// The FUSE inode number of a directory entry, whose device readdir
    /// does not tell: the root's assumed (the number is informational).
    pub(crate) fn fino_entry(&self, d_ino: u64) -> u64 {
        self.fino(self.root_dev, d_ino)
    }

    /// Path of a FUSE inode, if it still has one.
    pub(crate) fn path(&self, ino: u64) -> Option<Vec<u8>> {
        let nodes = lock(&self.nodes);
        let mut parts = Vec::new();
        let mut cur = ino;
        for _ in 0..4096 {
            if cur == 1 {
                parts.reverse();
                return Some(parts.join(&b'/'));
            }
            let (parent, name) = nodes.get(&cur)?.links.last()?;
            parts.push(name.clone());
            cur = *parent;
        }
        None
    }

    /// Path of `name` in directory `parent`.
    pub(crate) fn child(&self, parent: u64, name: &[u8]) -> Result<Vec<u8>, Errno> {
        let p = self.path(parent).ok_or(Errno::ENOENT)?;
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            return Err(Errno::EINVAL);
        }
        Ok(join(&p, name))
    }

    /// The kernel looked `ino` up as `name` in `parent`: the generation to
    /// answer with.
    pub(crate) fn remember(&self, ino: u64, parent: u64, name: &[u8]) -> u64 {
        if ino == 1 {
            return 0;
        }
        let mut nodes = lock(&self.nodes);
        let n = nodes.entry(ino).or_insert_with(|| Node {
            links: Vec::new(),
            lookups: 0,
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            dead: false,
        });
        if n.dead {
            n.dead = false;
            n.links.clear();
            n.generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        }
        n.links.retain(|(p, m)| !(*p == parent && m == name));
        n.links.push((parent, name.to_vec()));
        n.lookups += 1;
        n.generation
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub(crate) fn forget(&self, ino: u64, n: u64) {
        let mut nodes = lock(&self.nodes);
        if let Some(node) = nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 && ino != 1 {
                nodes.remove(&ino);
            }
        }
    }

    /// `ino`, known as `old_name` in `old_parent`, is now `name` in `parent` (rename).
    pub(crate) fn moved(&self, ino: u64, old_parent: u64, old_name: &[u8], parent: u64, name: &[u8]) {
        if let Some(n) = lock(&self.nodes).get_mut(&ino) {
            n.links.retain(|(p, m)| !(*p == old_parent && m == old_name) && !(*p == parent && m == name));
            n.links.push((parent, name.to_vec()));
        }
    }

    /// The name `name` in `parent` is gone; `ino` keeps its other names
    /// unless that was its `last` (then its number may come back as another
    /// file). Called under the order lock, before any later entry can take
    /// the number.
    pub(crate) fn unlinked(&self, ino: u64, parent: u64, name: &[u8], last: bool) {
        if let Some(n) = lock(&self.nodes).get_mut(&ino) {
            n.links.retain(|(p, m)| !(*p == parent && m == name));
            n.dead |= last;
        }
    }

    /// Records `marks`, applies `local` and queues the operation it returns,
    /// all under the order lock, so the secondary applies mutations in the
    /// order they took effect here. Excluded paths are applied only locally.
    pub(crate) fn mutate<T, O: IntoIterator<Item = Op>>(
        &self,
        marks: &[Mark<'_>],
        local: impl FnOnce() -> Result<(T, O), Errno>,
    ) -> Result<(T, Option<Sent>), Errno> {
        let role = self.role();
        if role == LocalRole::ReadOnly {
            return Err(Errno::EROFS);
        }
        // Without the secondary, a write is this node's alone: only once the
        // engine says ALONE, and under an ALONE lease with a lease witness
        // (never while another node may have taken over).
        if role == LocalRole::Primary && !self.link.connected() && self.alone_write_allowed(&|| self.link.connected()) == Some(false) {
            return Err(Errno::EIO);
        }
        let _order = lock(&self.order);
        let wanted: Vec<Mark<'_>> = marks.iter().copied().filter(|m| !self.excluded(mark_path(m))).collect();
        if !wanted.is_empty() {
            let seq = self.link.next_seq();
            if let Err(e) = lock(&self.dirty).mark(&wanted, seq) {
                // Without the record, a crash could hide this change from
                // the next reintegration: refuse the write instead.
                (self.hooks.log)(crate::engine::LogLevel::C, format!("dirty map not written: {e}"));
                return Err(Errno::EIO);
            }
        }
        if role == LocalRole::Unreplicated {
            // A write on a secondary without read_only: kept in this node's
            // dirty map, which its next Hello hands to the primary, so the
            // next reintegration puts the primary's data back there.
            return local().map(|(t, _)| (t, None));
        }
        let (t, ops) = local()?;
        let mut sent = None;
        let mut lost = false;
        for op in ops.into_iter().filter(|o| !op_paths(o).iter().all(|p| self.excluded(p))) {
            sent = self.link.send(&ToSecondary::Op(op));
            lost |= sent.is_none();
        }
        if lost {
            let mut dm = lock(&self.dirty);
            for m in &wanted {
                dm.make_pending(mark_path(m));
            }
        }
        Ok((t, sent))
    }

    /// A sync point: returns once the secondary holds every mutation queued
    /// so far (on its disk with async="none", for `path`). False when what
    /// it would acknowledge is neither on the secondary nor covered by an
    /// ALONE lease (the caller reports EIO).
    pub(crate) fn sync_point(&self, path: Option<&[u8]>) -> bool {
        if self.role() != LocalRole::Primary {
            return true;
        }
        if !self.link.connected() {
            // Data written before the secondary came back is on it once its
            // reintegration made it a complete mirror.
            if let Some(allowed) = self.alone_write_allowed(&|| self.link.mirror()) {
                return allowed;
            }
        }
        let sent = match (self.secondary_disk_sync, path) {
            (true, Some(p)) if !self.excluded(p) => {
                let _order = lock(&self.order);
                self.link.send(&ToSecondary::Op(Op::Fsync { path: p.to_vec() }))
            }
            _ => self.link.last_sent(),
        };
        if let Some(s) = sent {
            if !self.link.wait_applied(s) {
                // The secondary was dropped meanwhile: the data is this
                // node's alone, unless a new secondary caught up since.
                return self.alone_write_allowed(&|| self.link.mirror()).unwrap_or(true);
            }
        }
        true
    }

    /// Data the secondary does not hold may be acknowledged: once the engine
    /// admits it (see [`super::gate`]) and, with a lease witness, once this
    /// node holds an ALONE lease. Blocks until then; `Some(false)` = EIO;
    /// `None` when `link_up` turned true meanwhile (the secondary is back).
    fn alone_write_allowed(&self, link_up: &dyn Fn() -> bool) -> Option<bool> {
        match self.gate.admit(&*self.hooks.event, link_up) {
            Admission::Refused => Some(false),
            Admission::LinkUp => None,
            Admission::Alone => Some(self.lease.as_ref().is_none_or(|g| g.admit(false))),
        }
    }

    /// `path` stays local (notreplicated); a directory is never excluded by
    /// a `!` (replicate-only) expression.
    pub(crate) fn excluded(&self, path: &[u8]) -> bool {
        if self.filter.excluded(path) {
            return true;
        }
        self.filter.has_only()
            && self.filter.excluded_entry(path, self.tree.stat(path).is_ok_and(|s| super::tree::kind(s.st_mode) == libc::S_IFDIR))
    }

    /// Runs `f` under the order lock (reintegration reads a consistent state).
    pub(crate) fn ordered<T>(&self, f: impl FnOnce() -> T) -> T {
        let _order = lock(&self.order);
        f()
    }
}

fn mark_path<'a>(m: &Mark<'a>) -> &'a [u8] {
    match m {
        Mark::Zones(p, ..) | Mark::Dir(p) | Mark::Meta(p) | Mark::Whole(p) => p,
    }
}

/// The paths an operation touches.
pub(crate) fn op_paths(op: &Op) -> Vec<&[u8]> {
    match op {
        Op::Rename { from, to, .. } => vec![from, to],
        Op::Link { existing, path } => vec![existing, path],
        Op::Write { path, .. }
        | Op::Truncate { path, .. }
        | Op::Create { path, .. }
        | Op::Mknod { path, .. }
        | Op::Mkdir { path, .. }
        | Op::Unlink { path }
        | Op::Rmdir { path }
        | Op::Symlink { path, .. }
        | Op::SetAttr { path, .. }
        | Op::SetXattr { path, .. }
        | Op::RemoveXattr { path, .. }
        | Op::Fallocate { path, .. }
        | Op::Fsync { path }
        | Op::RemoveTree { path }
        | Op::Reset { path, .. }
        | Op::Finish { path, .. } => vec![path],
    }
}

/// `ino` of device `dev` (not the root's), tagged with the device's rank
/// among those met (1..=255) in its high byte.
fn device_tagged(devices: &mut Vec<u64>, dev: u64, ino: u64) -> u64 {
    let rank = match devices.iter().position(|d| *d == dev) {
        Some(i) => i,
        None => {
            devices.push(dev);
            devices.len() - 1
        }
    };
    let tag = (rank % 255) as u64 + 1;
    (tag << 56) | (ino & ((1 << 56) - 1))
}

#[cfg(test)]
mod tests {
    use super::device_tagged;

    #[test]
    fn one_inode_number_on_two_devices_gives_two_node_ids_each_stable() {
        let mut devices = Vec::new();
        let a = device_tagged(&mut devices, 42, 2);
        let b = device_tagged(&mut devices, 43, 2);
        assert_ne!(a, b);
        assert_ne!(a, 2, "never the root device's own number");
        assert_eq!(device_tagged(&mut devices, 42, 2), a, "the same file keeps its number");
        assert_eq!(device_tagged(&mut devices, 43, 7) >> 56, b >> 56, "one tag per device");
    }
}
