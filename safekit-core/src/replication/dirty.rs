//! The persistent dirty map: which directories, files and zones of files the
//! secondary may hold differently from this node.
//!
//! It is both DRBD's activity log and SafeKit's modification bitmap. A zone
//! is recorded (appended to a journal and `fdatasync`ed) *before* the first
//! write to it is applied locally, so after any crash, of either node, the
//! map covers every byte that may differ. While a secondary mirrors, entries
//! are cleared once the secondary has made them durable (checkpoints);
//! while this node is alone they stay "pending" and a reintegration copies
//! exactly them. Later writes to an already recorded zone cost nothing.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// What may differ at one path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dirt {
    /// The directory's entries (names, types, metadata) may differ.
    pub dir: bool,
    /// The whole file must be copied.
    pub whole: bool,
    /// The file's metadata (mode, owner, times, xattrs, size) may differ.
    pub meta: bool,
    /// Zones (index = offset / zone size) whose bytes may differ.
    pub zones: BTreeSet<u64>,
    /// Not yet on the secondary: a reintegration must copy it.
    #[serde(skip)]
    pub pending: bool,
    /// Sequence number of the last mutation that touched it.
    #[serde(skip)]
    pub touched: u64,
}

/// A change to record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    /// Bytes `[off, off+len)` of a file.
    Zones(&'a [u8], u64, u64),
    /// Entries of a directory.
    Dir(&'a [u8]),
    /// Metadata of an entry.
    Meta(&'a [u8]),
    /// A file's whole content (it was made anew: whatever the secondary
    /// holds at that name is not it).
    Whole(&'a [u8]),
}

#[derive(Serialize, Deserialize)]
enum Rec {
    Zone(Vec<u8>, u64),
    Whole(Vec<u8>),
    Dir(Vec<u8>),
    Meta(Vec<u8>),
    FullPending(bool),
}

/// The map and its journal.
pub(crate) struct DirtyMap {
    zone: u64,
    path: PathBuf,
    journal: File,
    entries: HashMap<Vec<u8>, Dirt>,
    full_pending: bool,
    /// Marks go to "pending" (no secondary is receiving the stream).
    pub alone: bool,
    prev_durable: u64,
    records: usize,
}

fn encode(rec: &Rec, out: &mut Vec<u8>) {
    let body = postcard::to_allocvec(rec).expect("in memory");
    let sum = sha2::Sha256::digest(&body);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&sum[..4]);
}

impl DirtyMap {
    /// Opens (or creates) the map at `path`; a torn last record is ignored.
    pub(crate) fn open(path: &Path, zone: u64) -> io::Result<Self> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let mut map = Self {
            zone: zone.max(4096),
            path: path.to_path_buf(),
            journal: OpenOptions::new().create(true).append(true).open(path)?,
            entries: HashMap::new(),
            full_pending: false,
            alone: true,
            prev_durable: 0,
            records: 0,
        };
        let mut data = Vec::new();
        File::open(path)?.read_to_end(&mut data)?;
        let mut rest = &data[..];
        while rest.len() >= 8 {
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            if rest.len() < 8 + len {
                break;
            }
            let body = &rest[4..4 + len];
            if sha2::Sha256::digest(body)[..4] != rest[4 + len..8 + len] {
                break;
            }
            let Ok(rec) = postcard::from_bytes::<Rec>(body) else { break };
            map.replay(rec);
            rest = &rest[8 + len..];
        }
        for d in map.entries.values_mut() {
            d.pending = true;
        }
        // Rewrite compactly (also drops a torn tail).
        map.compact()?;
        Ok(map)
    }

    fn replay(&mut self, rec: Rec) {
        self.records += 1;
        match rec {
            Rec::Zone(p, z) => {
                self.entries.entry(p).or_default().zones.insert(z);
            }
            Rec::Whole(p) => self.entries.entry(p).or_default().whole = true,
            Rec::Dir(p) => self.entries.entry(p).or_default().dir = true,
            Rec::Meta(p) => self.entries.entry(p).or_default().meta = true,
            Rec::FullPending(b) => self.full_pending = b,
        }
    }

    fn append(&mut self, recs: &[Rec]) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in recs {
            encode(r, &mut buf);
        }
        self.journal.write_all(&buf)?;
        self.journal.sync_data()?;
        self.records += recs.len();
        Ok(())
    }

    /// Zone size in bytes.
    pub(crate) fn zone_size(&self) -> u64 {
        self.zone
    }

    fn note(&mut self, path: &[u8], seq: u64) -> &mut Dirt {
        let alone = self.alone;
        let d = self.entries.entry(path.to_vec()).or_default();
        d.touched = d.touched.max(seq);
        d.pending |= alone;
        d
    }

    /// Records changes (zones of a file, a directory's entries, an entry's
    /// metadata) with at most one journal write for all of them.
    pub(crate) fn mark(&mut self, changes: &[Change<'_>], seq: u64) -> io::Result<()> {
        let zone = self.zone;
        let mut new = Vec::new();
        for c in changes {
            match *c {
                Change::Zones(path, off, len) => {
                    let d = self.note(path, seq);
                    if !d.whole {
                        let (first, last) = (off / zone, (off + len.max(1) - 1) / zone);
                        new.extend((first..=last).filter(|z| d.zones.insert(*z)).map(|z| Rec::Zone(path.to_vec(), z)));
                    }
                }
                Change::Dir(path) => {
                    if !std::mem::replace(&mut self.note(path, seq).dir, true) {
                        new.push(Rec::Dir(path.to_vec()));
                    }
                }
                Change::Meta(path) => {
                    if !std::mem::replace(&mut self.note(path, seq).meta, true) {
                        new.push(Rec::Meta(path.to_vec()));
                    }
                }
                Change::Whole(path) => {
                    let d = self.note(path, seq);
                    if !std::mem::replace(&mut d.whole, true) {
                        d.zones.clear();
                        new.push(Rec::Whole(path.to_vec()));
                    }
                }
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        self.append(&new)
    }

    #[cfg(test)]
    /// Records the zones of `[off, off+len)` of the file at `path`.
    pub(crate) fn mark_zones(&mut self, path: &[u8], off: u64, len: u64, seq: u64) -> io::Result<()> {
        self.mark(&[Change::Zones(path, off, len)], seq)
    }

    /// Records that the directory's entries changed.
    pub(crate) fn mark_dir(&mut self, path: &[u8], seq: u64) -> io::Result<()> {
        self.mark(&[Change::Dir(path)], seq)
    }

    /// Records that the whole file must be copied; also makes it pending.
    pub(crate) fn mark_whole(&mut self, path: &[u8], seq: u64) -> io::Result<()> {
        let d = self.note(path, seq);
        d.pending = true;
        if std::mem::replace(&mut d.whole, true) {
            return Ok(());
        }
        d.zones.clear();
        self.append(&[Rec::Whole(path.to_vec())])
    }

    /// Whether the map holds changes of `path`'s content (zones or whole):
    /// then a reintegration copies those and nothing else of it.
    pub(crate) fn tracks_data(&self, path: &[u8]) -> bool {
        self.entries.get(path).is_some_and(|d| d.whole || !d.zones.is_empty())
    }

    /// `path` must be copied by the next reintegration (its change was not sent).
    pub(crate) fn make_pending(&mut self, path: &[u8]) {
        if let Some(d) = self.entries.get_mut(path) {
            d.pending = true;
        }
    }

    /// Marks every listed directory and whole file as pending, with one
    /// journal write (the start of a full synchronisation).
    pub(crate) fn mark_all(&mut self, dirs: &[Vec<u8>], files: &[Vec<u8>]) -> io::Result<()> {
        let mut recs = Vec::with_capacity(dirs.len() + files.len());
        for p in dirs {
            let d = self.entries.entry(p.clone()).or_default();
            d.dir = true;
            d.pending = true;
            recs.push(Rec::Dir(p.clone()));
        }
        for p in files {
            let d = self.entries.entry(p.clone()).or_default();
            d.whole = true;
            d.zones.clear();
            d.pending = true;
            recs.push(Rec::Whole(p.clone()));
        }
        self.append(&recs)
    }

    /// The secondary went away: whatever it may not hold must be copied.
    pub(crate) fn secondary_gone(&mut self) {
        self.alone = true;
        for d in self.entries.values_mut() {
            d.pending = true;
        }
    }

    /// A full synchronisation starts (or resumes, if one was interrupted).
    pub(crate) fn full_pending(&self) -> bool {
        self.full_pending
    }

    /// Sets or clears the "full synchronisation in progress" flag.
    pub(crate) fn set_full_pending(&mut self, on: bool) -> io::Result<()> {
        self.full_pending = on;
        self.append(&[Rec::FullPending(on)])
    }

    /// Every path with a recorded change, and whether it is only a
    /// directory's entries.
    pub(crate) fn paths(&self) -> Vec<(Vec<u8>, bool)> {
        self.entries.iter().map(|(p, d)| (p.clone(), d.dir && !d.whole && !d.meta && d.zones.is_empty())).collect()
    }

    /// Pending entries, directories first, shallow before deep.
    pub(crate) fn pending(&self) -> Vec<(Vec<u8>, Dirt)> {
        let mut v: Vec<_> = self.entries.iter().filter(|(_, d)| d.pending).map(|(p, d)| (p.clone(), d.clone())).collect();
        v.sort_by(|a, b| {
            (!a.1.dir, a.0.iter().filter(|c| **c == b'/').count(), &a.0).cmp(&(!b.1.dir, b.0.iter().filter(|c| **c == b'/').count(), &b.0))
        });
        v
    }

    /// The reintegration copied `path` as it was at `seq`: no longer pending
    /// unless something marked it pending again since `since`.
    pub(crate) fn copied(&mut self, path: &[u8], what: &Dirt, seq: u64) {
        if let Some(d) = self.entries.get_mut(path) {
            if d.dir == what.dir && d.whole == what.whole && d.meta == what.meta && d.zones == what.zones {
                d.pending = false;
            }
            d.touched = d.touched.max(seq);
        }
    }

    /// The secondary made everything up to `seq` durable. Entries not
    /// touched since the previous checkpoint are forgotten (hot zones stay
    /// recorded, so a busy file does not pay a journal write per second).
    pub(crate) fn durable(&mut self, seq: u64) -> io::Result<()> {
        let limit = self.prev_durable;
        self.prev_durable = seq;
        let before = self.entries.len();
        self.entries.retain(|_, d| d.pending || d.touched > limit);
        if self.entries.len() < before || self.records > 4 * self.entries.len() + 1024 {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the journal with the current entries (temp + fsync + rename).
    pub(crate) fn compact(&mut self) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut n = 0;
        if self.full_pending {
            encode(&Rec::FullPending(true), &mut buf);
            n += 1;
        }
        for (p, d) in &self.entries {
            for r in recs_of(p, d) {
                encode(&r, &mut buf);
                n += 1;
            }
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(d) = self.path.parent() {
            File::open(d)?.sync_all()?;
        }
        self.journal = OpenOptions::new().append(true).open(&self.path)?;
        self.records = n;
        Ok(())
    }

    /// Everything, for the peer (the Hello of a returning node).
    pub(crate) fn export(&self) -> Vec<u8> {
        let v: Vec<(&Vec<u8>, &Dirt)> = self.entries.iter().collect();
        postcard::to_allocvec(&v).expect("in memory")
    }

    /// Adds a peer's map (as pending) and persists it.
    pub(crate) fn merge(&mut self, bytes: &[u8], seq: u64) -> io::Result<usize> {
        let v: Vec<(Vec<u8>, Dirt)> = postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let n = v.len();
        for (p, d) in v {
            if !super::tree::valid(&p) {
                continue;
            }
            let e = self.entries.entry(p).or_default();
            e.dir |= d.dir;
            e.meta |= d.meta;
            if d.whole || e.whole {
                e.whole = true;
                e.zones.clear();
            } else {
                e.zones.extend(d.zones);
            }
            e.pending = true;
            e.touched = e.touched.max(seq);
        }
        self.compact()?;
        Ok(n)
    }

    /// Forgets everything (this node's data is about to be replaced).
    pub(crate) fn clear(&mut self) -> io::Result<()> {
        self.entries.clear();
        self.full_pending = false;
        self.compact()
    }

    /// (entries, bytes to copy at most) for `safekit rfsdiff`; `size` gives a file's size.
    pub(crate) fn estimate(&self, size: impl Fn(&[u8]) -> Option<u64>) -> (usize, u64) {
        let mut bytes = 0;
        for (p, d) in &self.entries {
            let s = size(p).unwrap_or(0);
            bytes += if d.whole { s } else { d.zones.iter().map(|z| s.saturating_sub(z * self.zone).min(self.zone)).sum() };
        }
        (self.entries.len(), bytes)
    }

    #[cfg(test)]
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    /// No entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn recs_of(p: &[u8], d: &Dirt) -> Vec<Rec> {
    let mut v = Vec::new();
    if d.dir {
        v.push(Rec::Dir(p.to_vec()));
    }
    if d.meta {
        v.push(Rec::Meta(p.to_vec()));
    }
    if d.whole {
        v.push(Rec::Whole(p.to_vec()));
    }
    v.extend(d.zones.iter().map(|z| Rec::Zone(p.to_vec(), *z)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("skt-dirty-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d.join("map")
    }

    #[test]
    fn zones_survive_a_reopen_and_a_torn_tail() {
        let p = tmp("reopen");
        let mut m = DirtyMap::open(&p, 1 << 20).unwrap();
        m.alone = false;
        m.mark_zones(b"a/f", (3 << 20) + 5, 2 << 20, 1).unwrap();
        m.mark_dir(b"a", 2).unwrap();
        drop(m);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let m = DirtyMap::open(&p, 1 << 20).unwrap();
        let pend = m.pending();
        assert_eq!(pend[0].0, b"a".to_vec());
        assert!(pend[0].1.dir);
        assert_eq!(pend[1].1.zones, [3, 4, 5].into_iter().collect());
    }

    #[test]
    fn durable_forgets_only_what_is_not_pending_and_cold() {
        let p = tmp("durable");
        let mut m = DirtyMap::open(&p, 4096).unwrap();
        m.alone = false;
        m.mark_zones(b"x", 0, 1, 5).unwrap();
        m.durable(10).unwrap();
        assert_eq!(m.len(), 1, "touched after the previous checkpoint: kept");
        m.durable(11).unwrap();
        assert!(m.is_empty());
        m.alone = true;
        m.mark_zones(b"y", 0, 1, 12).unwrap();
        m.durable(20).unwrap();
        m.durable(21).unwrap();
        assert_eq!(m.len(), 1, "pending entries wait for a reintegration");
    }

    #[test]
    fn a_peer_map_merges_as_pending() {
        let mut a = DirtyMap::open(&tmp("a"), 4096).unwrap();
        a.mark_whole(b"w", 1).unwrap();
        let mut b = DirtyMap::open(&tmp("b"), 4096).unwrap();
        b.alone = false;
        assert_eq!(b.merge(&a.export(), 3).unwrap(), 1);
        assert!(b.pending()[0].1.whole);
    }
}
