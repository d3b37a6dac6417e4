//! `safekit snapshot -m AM file.zip` and `GET /api/v1.0/modules/AM/snapshot`:
//! what support needs about one module on one node, in one zip. The
//! module's configuration and scripts (`SAFE/modules/AM`), its logs, state
//! and userlogs (`SAFEVAR/modules/AM`, without the dirty maps' data),
//! cluster.xml, the module's report (status, peer, resources) and system
//! facts (kernel, host name, addresses, mounts, uptime). Secrets stay out:
//! the cluster key, the web service's users and API keys are never read,
//! and a file bigger than 16 MiB is left out with a note.

use std::io::{Seek, Write};
use std::path::Path;

use crate::layout::Layout;
use crate::runtime::ModuleReport;

/// Largest file put in a snapshot.
const MAX_FILE: u64 = 16 << 20;

/// Files never put in a snapshot, whatever their directory.
fn secret(name: &str) -> bool {
    name == "cluster.key" || name.ends_with(".key") || name.ends_with(".p12") || name == "user.conf" || name == "apikeys.conf"
}

/// Writes the snapshot of `module` (its `report` if it runs) to `out`.
pub fn write<W: Write + Seek>(layout: &Layout, module: &str, report: Option<&ModuleReport>, out: W) -> Result<W, String> {
    let mut z = zip::ZipWriter::new(out);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut notes = Vec::new();
    add_tree(&mut z, opts, &layout.module_dir(module), &format!("{module}/SAFE"), &mut notes)?;
    add_tree(&mut z, opts, &layout.module_var(module), &format!("{module}/SAFEVAR"), &mut notes)?;
    add_file(&mut z, opts, &layout.cluster_xml(), &format!("{module}/cluster.xml"), &mut notes)?;
    let report = report
        .map_or_else(|| "the module does not run on this node\n".to_string(), |r| serde_json::to_string_pretty(r).unwrap_or_default());
    put(&mut z, opts, &format!("{module}/report.json"), report.as_bytes())?;
    put(&mut z, opts, &format!("{module}/system.txt"), system_facts().as_bytes())?;
    put(&mut z, opts, &format!("{module}/notes.txt"), (notes.join("\n") + "\n").as_bytes())?;
    z.finish().map_err(|e| format!("snapshot: {e}"))
}

fn put<W: Write + Seek>(z: &mut zip::ZipWriter<W>, opts: zip::write::SimpleFileOptions, name: &str, data: &[u8]) -> Result<(), String> {
    z.start_file(name, opts).map_err(|e| format!("snapshot: {e}"))?;
    z.write_all(data).map_err(|e| format!("snapshot: {e}"))
}

fn add_file<W: Write + Seek>(
    z: &mut zip::ZipWriter<W>,
    opts: zip::write::SimpleFileOptions,
    path: &Path,
    name: &str,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if secret(&file_name) {
        notes.push(format!("left out (secret): {}", path.display()));
        return Ok(());
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() > MAX_FILE => notes.push(format!("left out ({} bytes): {}", m.len(), path.display())),
        Ok(m) if m.is_file() => match std::fs::read(path) {
            Ok(data) => put(z, opts, name, &data)?,
            Err(e) => notes.push(format!("unreadable: {}: {e}", path.display())),
        },
        Ok(_) => {}
        Err(e) => notes.push(format!("missing: {}: {e}", path.display())),
    }
    Ok(())
}

/// Every regular file under `dir` (no symbolic link followed), bounded.
fn add_tree<W: Write + Seek>(
    z: &mut zip::ZipWriter<W>,
    opts: zip::write::SimpleFileOptions,
    dir: &Path,
    prefix: &str,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let mut stack = vec![(dir.to_path_buf(), prefix.to_string())];
    let mut files = 0;
    while let Some((d, p)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            notes.push(format!("missing: {}", d.display()));
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push((e.path(), format!("{p}/{name}")));
            } else if t.is_file() {
                files += 1;
                if files > 5_000 {
                    notes.push(format!("more than 5000 files under {}: the rest left out", dir.display()));
                    return Ok(());
                }
                add_file(z, opts, &e.path(), &format!("{p}/{name}"), notes)?;
            }
        }
    }
    Ok(())
}

/// Kernel, host name, addresses, mounts and uptime, as the kernel tells them.
fn system_facts() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| format!("({p}: {e})\n"));
    let addrs: String = if_addrs::get_if_addrs()
        .map(|v| v.iter().map(|i| format!("{} {}\n", i.name, i.ip())).collect())
        .unwrap_or_else(|e| format!("({e})\n"));
    format!(
        "hostname: {}\nkernel: {}uptime (s): {}\nsafekit: {}\n\naddresses:\n{addrs}\nmounts:\n{}",
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        read("/proc/sys/kernel/osrelease"),
        read("/proc/uptime").split_whitespace().next().unwrap_or(""),
        env!("CARGO_PKG_VERSION"),
        read("/proc/self/mounts"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_holds_logs_and_configuration_but_no_secret() {
        let root = std::env::temp_dir().join(format!("safekit-snapshot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let layout = Layout { safe: root.join("safe"), safevar: root.join("var") };
        std::fs::create_dir_all(layout.module_dir("m").join("conf")).unwrap();
        std::fs::create_dir_all(layout.module_dir("m").join("bin")).unwrap();
        std::fs::create_dir_all(layout.module_var("m").join("userlog")).unwrap();
        std::fs::create_dir_all(layout.cluster_xml().parent().unwrap()).unwrap();
        std::fs::write(layout.module_dir("m").join("conf/userconfig.xml"), "<safe/>").unwrap();
        std::fs::write(layout.module_dir("m").join("bin/start_prim"), "#!/bin/sh\n").unwrap();
        std::fs::write(layout.module_var("m").join("log.txt"), "| d | heart | E | Local state ALONE Ready\n").unwrap();
        std::fs::write(layout.module_var("m").join("userlog/start_prim.log"), "started\n").unwrap();
        std::fs::write(layout.cluster_xml(), "<cluster/>").unwrap();
        std::fs::write(layout.cluster_xml().with_file_name("cluster.key"), "00112233").unwrap();
        std::fs::write(layout.module_dir("m").join("conf/module.key"), "secret").unwrap();
        let zip = write(&layout, "m", None, std::io::Cursor::new(Vec::new())).unwrap().into_inner();
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let names: Vec<String> = (0..a.len()).map(|i| a.by_index(i).unwrap().name().unwrap().to_string()).collect();
        for want in [
            "m/SAFE/conf/userconfig.xml",
            "m/SAFE/bin/start_prim",
            "m/SAFEVAR/log.txt",
            "m/SAFEVAR/userlog/start_prim.log",
            "m/cluster.xml",
            "m/system.txt",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.ends_with(".key")), "a secret in the snapshot: {names:?}");
        let mut notes = String::new();
        std::io::Read::read_to_string(&mut a.by_name("m/notes.txt").unwrap(), &mut notes).unwrap();
        assert!(notes.contains("left out (secret)") && notes.contains("module.key"), "{notes}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
