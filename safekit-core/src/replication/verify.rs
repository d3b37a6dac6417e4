//! `safekit rfsverify`: compare every replicated file of the secondary with
//! the primary's, by content digest.

use std::collections::BTreeMap;
use std::io::Read;

use nix::fcntl::OFlag;
use sha2::{Digest, Sha256};

use super::filter::Filter;
use super::tree::{join, kind, Tree};
use super::wire::Meta;

/// One entry's digest: (relative path, metadata, SHA-256 of the content or symlink target).
pub(crate) type Digests = Vec<(Vec<u8>, Meta, [u8; 32])>;

/// Digests of every entry of `tree` that is replicated, sorted by path.
pub(crate) fn digests(tree: &Tree, filter: &Filter) -> Result<Digests, String> {
    let mut out = Vec::new();
    let mut dirs = vec![Vec::new()];
    while let Some(d) = dirs.pop() {
        for e in tree.list(&d).map_err(|e| format!("{}: {e}", String::from_utf8_lossy(&d)))? {
            let p = join(&d, &e.name);
            let is_dir = kind(e.meta.mode) == libc::S_IFDIR;
            if filter.excluded_entry(&p, is_dir) {
                continue;
            }
            let mut h = Sha256::new();
            match kind(e.meta.mode) {
                libc::S_IFDIR => dirs.push(p.clone()),
                libc::S_IFREG => {
                    let mut f = tree.open_file(&p, OFlag::O_RDONLY, 0).map_err(|e| e.to_string())?;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                }
                _ => {}
            }
            out.push((p, e.meta, h.finalize().into()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Human-readable differences (empty: identical). Directory times are not
/// compared (they change with every entry on both sides).
pub(crate) fn differences(mine: &Digests, theirs: &Digests) -> Vec<String> {
    let a: BTreeMap<&Vec<u8>, (&Meta, &[u8; 32])> = mine.iter().map(|(p, m, d)| (p, (m, d))).collect();
    let b: BTreeMap<&Vec<u8>, (&Meta, &[u8; 32])> = theirs.iter().map(|(p, m, d)| (p, (m, d))).collect();
    let mut out = Vec::new();
    for (p, (m, d)) in &b {
        let name = String::from_utf8_lossy(p);
        match a.get(p) {
            None => out.push(format!("{name}: missing on the secondary")),
            Some((mm, md)) => {
                if kind(m.mode) != kind(mm.mode) {
                    out.push(format!("{name}: type differs"));
                } else if md != d {
                    out.push(format!("{name}: content differs"));
                } else if m.mode != mm.mode || m.uid != mm.uid || m.gid != mm.gid {
                    out.push(format!("{name}: mode or owner differs"));
                } else if kind(m.mode) == libc::S_IFREG && (m.size != mm.size || m.mtime != mm.mtime) {
                    out.push(format!("{name}: size or modification time differs"));
                }
            }
        }
    }
    for p in a.keys().filter(|p| !b.contains_key(*p)) {
        out.push(format!("{}: only on the secondary", String::from_utf8_lossy(p)));
    }
    out
}
