//! Hidden test programs run inside a node's namespaces by the replication
//! tests: an acknowledged-record writer and a randomized file exerciser.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Writes `records` fixed-size records to `file`, fsyncs each one and only
/// then prints its number: every printed number was acknowledged.
pub(crate) fn writer(file: &Path, records: u64) -> Result<(), String> {
    let f = OpenOptions::new().create(true).write(true).truncate(false).open(file).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for i in 0..records {
        let rec = safekit_bin::demo::record(i);
        f.write_all_at(rec.as_bytes(), i * rec.len() as u64).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        writeln!(out, "{i}").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, so a failing seed replays.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Runs `ops` random file operations under `dir` (seeded), fsyncing after
/// each: writes at random offsets, truncates, holes, renames, mkdir/rmdir,
/// links, symlinks, xattrs, chmod and mmap writes. Prints each operation.
///
/// With `mirror` (the secondary's real directory), after every operation —
/// each ends with an fsync, a sync point — the two trees must be equal.
pub(crate) fn fsx(dir: &Path, seed: u64, ops: u64, mirror: Option<&Path>) -> Result<(), String> {
    let mut r = Rng(seed.max(1));
    let names = ["a", "b", "c", "d/e", "d/f", "g/h/i"];
    for d in ["d", "g", "g/h"] {
        let _ = std::fs::create_dir_all(dir.join(d));
    }
    for n in 0..ops {
        let name = names[r.below(names.len() as u64) as usize];
        let p = dir.join(name);
        let what = r.below(12);
        let res: std::io::Result<String> = (|| {
            Ok(match what {
                0..=3 => {
                    let f = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(&p)?;
                    let off = r.below(3 << 20);
                    let len = 1 + r.below(200_000) as usize;
                    let byte = (r.below(250) + 1) as u8;
                    f.write_all_at(&vec![byte; len], off)?;
                    f.sync_all()?;
                    format!("write {name} {off}+{len}")
                }
                4 => {
                    let f = OpenOptions::new().create(true).write(true).truncate(false).open(&p)?;
                    let size = r.below(4 << 20);
                    f.set_len(size)?;
                    f.sync_all()?;
                    format!("truncate {name} {size}")
                }
                5 => {
                    let f = OpenOptions::new().create(true).write(true).truncate(false).open(&p)?;
                    let off = r.below(2 << 20) as i64;
                    let len = 1 + r.below(1 << 20) as i64;
                    nix::fcntl::fallocate(
                        std::os::fd::AsFd::as_fd(&f),
                        nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                        off,
                        len,
                    )
                    .map_err(std::io::Error::from)?;
                    f.sync_all()?;
                    format!("punch {name} {off}+{len}")
                }
                6 => {
                    let to = names[r.below(names.len() as u64) as usize];
                    std::fs::rename(&p, dir.join(to))?;
                    File::open(dir)?.sync_all()?;
                    format!("rename {name} {to}")
                }
                7 => {
                    let to = format!("{name}.link");
                    let _ = std::fs::remove_file(dir.join(&to));
                    std::fs::hard_link(&p, dir.join(&to))?;
                    format!("link {name} {to}")
                }
                8 => {
                    let to = format!("{name}.sym");
                    let _ = std::fs::remove_file(dir.join(&to));
                    std::os::unix::fs::symlink(name, dir.join(&to))?;
                    format!("symlink {name} {to}")
                }
                9 => {
                    let mode = 0o600 | r.below(0o177) as u32;
                    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                    let v = format!("v{}", r.below(1000));
                    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
                    let rc = unsafe { libc::setxattr(c.as_ptr(), c"user.fsx".as_ptr(), v.as_ptr().cast(), v.len(), 0) };
                    if rc != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    format!("chmod+xattr {name} {mode:o} {v}")
                }
                10 => {
                    let f = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(&p)?;
                    let len = f.metadata()?.len().max(4096);
                    f.set_len(len)?;
                    let off = r.below(len - 1) as usize;
                    // SAFETY: a shared mapping of a file we hold open, unmapped below.
                    unsafe {
                        let m = libc::mmap(
                            std::ptr::null_mut(),
                            len as usize,
                            libc::PROT_READ | libc::PROT_WRITE,
                            libc::MAP_SHARED,
                            std::os::fd::AsRawFd::as_raw_fd(&f),
                            0,
                        );
                        if m == libc::MAP_FAILED {
                            return Err(std::io::Error::last_os_error());
                        }
                        *(m as *mut u8).add(off) = 0x5a;
                        libc::msync(m, len as usize, libc::MS_SYNC);
                        libc::munmap(m, len as usize);
                    }
                    f.sync_all()?;
                    format!("mmap {name} @{off}")
                }
                _ => {
                    let d = dir.join(format!("dir{}", r.below(3)));
                    if d.exists() {
                        let _ = std::fs::remove_dir(&d);
                        "rmdir".to_string()
                    } else {
                        std::fs::create_dir(&d)?;
                        "mkdir".to_string()
                    }
                }
            })
        })();
        match res {
            Ok(s) => println!("{n} {s}"),
            Err(e) => println!("{n} op {what} on {name}: {e}"),
        }
        if let Some(m) = mirror {
            // A sync point for the operations that have none of their own
            // (link, symlink, chmod, mkdir): fsync of the directory.
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))?;
            let (a, b) = (tree_of(dir)?, tree_of(m)?);
            if a != b {
                let diff: Vec<String> = a
                    .iter()
                    .filter(|(k, v)| b.get(*k) != Some(v))
                    .map(|(k, _)| k.clone())
                    .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
                    .take(5)
                    .collect();
                return Err(format!("seed {seed}, after operation {n}: the secondary differs at {diff:?}"));
            }
        }
    }
    Ok(())
}

/// Path → (type, mode, size, content hash, link target) of a tree.
fn tree_of(root: &Path) -> Result<std::collections::BTreeMap<String, String>, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            let m = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) => return Err(format!("{}: {e}", p.display())),
            };
            let rel = p.strip_prefix(root).map_err(|e| e.to_string())?.display().to_string();
            let v = if m.is_dir() {
                dirs.push(p.clone());
                format!("d {:o}", m.mode())
            } else if m.file_type().is_symlink() {
                format!("l {}", std::fs::read_link(&p).map_err(|e| e.to_string())?.display())
            } else {
                let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                let sum: u64 = data.iter().enumerate().map(|(i, b)| (i as u64 + 1).wrapping_mul(u64::from(*b))).fold(0, u64::wrapping_add);
                format!("f {:o} {} {sum}", m.mode(), m.len())
            };
            out.insert(rel, v);
        }
    }
    Ok(out)
}
