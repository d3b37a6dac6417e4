//! Split-brain recovery without losing anything silently: before the
//! sacrificed node's reintegration overwrites its tree, the files it
//! changed while it was (wrongly) alone — the paths of its own dirty map —
//! are copied into `<dir>.safekit-quarantine/<time>/`, beside the
//! replicated directory, and listed in the module log. SafeKit discards
//! them; here an administrator can compare and merge.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use super::replica::Replica;
use super::tree::kind;

/// Files kept at most per replicated directory (a loser that rewrote a
/// whole tree is resynchronised, not duplicated).
const MAX_FILES: usize = 10_000;
/// Bytes kept at most per replicated directory.
const MAX_BYTES: u64 = 1 << 30;

/// Where the quarantine of replicated directory `dir` lives.
pub(crate) fn dir_for(dir: &Path) -> PathBuf {
    let name = dir.file_name().map_or_else(|| "root".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}.safekit-quarantine"))
}

/// Copies the files `replica` recorded as changed into
/// `dir_for(dir)/stamp/`; one line per file kept (or skipped), then a summary.
pub(crate) fn keep_aside(replica: &Replica, dir: &Path, stamp: &str) -> Result<Vec<String>, String> {
    let root = dir_for(dir).join(stamp);
    let paths = replica.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).paths();
    let mut lines = Vec::new();
    let (mut files, mut bytes) = (0usize, 0u64);
    let mut skipped = 0usize;
    for (path, dir_only) in paths {
        if dir_only || path.is_empty() || replica.excluded(&path) {
            continue;
        }
        let Ok(st) = replica.tree.stat(&path) else { continue };
        if kind(st.st_mode) != libc::S_IFREG {
            continue;
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if files >= MAX_FILES || bytes + size > MAX_BYTES {
            skipped += 1;
            continue;
        }
        let dest = root.join(std::ffi::OsStr::from_bytes(&path));
        let copy = || -> std::io::Result<()> {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut src = replica.tree.open_file(&path, OFlag::O_RDONLY, 0).map_err(std::io::Error::from)?;
            let mut out = std::fs::File::create(&dest)?;
            std::io::copy(&mut src, &mut out)?;
            out.flush()?;
            out.sync_all()?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(st.st_mode & 0o7777))
        };
        match copy() {
            Ok(()) => {
                files += 1;
                bytes += size;
                lines.push(format!("Quarantined {} ({size} bytes)", String::from_utf8_lossy(&path)));
            }
            Err(e) => lines.push(format!("Not quarantined {}: {e}", String::from_utf8_lossy(&path))),
        }
    }
    if skipped > 0 {
        lines.push(format!("{skipped} more changed files were not kept (quarantine limit {MAX_FILES} files, {} MiB)", MAX_BYTES >> 20));
    }
    if files > 0 {
        lines.push(format!("Split brain recovery: {files} files this node changed alone are kept in {}", root.display()));
    }
    Ok(lines)
}

/// `rfs.quarantine` for `safekit state -v`: the quarantine directory and
/// how many recoveries it holds, while an administrator has not removed it.
pub(crate) fn describe(dir: &Path) -> Option<String> {
    let q = dir_for(dir);
    let n = std::fs::read_dir(&q).ok()?.filter_map(Result::ok).count();
    (n > 0).then(|| format!("{} ({n} recoveries)", q.display()))
}
