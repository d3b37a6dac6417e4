//! `safekit module install|uninstall|list`: a module is a `.safe` file (a
//! zip of `conf/userconfig.xml` and `bin/` scripts) or a directory of the
//! same layout, installed into `SAFE/modules/AM`.

pub mod boot;
pub mod files;
pub mod ports;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{parse_userconfig, UserConfigOptions};
use crate::layout::Layout;

/// An installed module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Module name.
    pub name: String,
    /// Fixed id (`SAFE/modules/AM/id`), if any.
    pub id: Option<u16>,
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The module's name.
    pub name: String,
    /// A template's blanks still to fill before it can start, one
    /// `file:line:column: macro … is blank …` line each (empty: ready).
    pub to_fill: Vec<String>,
}

/// Installs `src` (a `.safe`/`.zip` file or a directory) as module `name`
/// (default: the file name without extension). `replace` = `-r`. A
/// configuration whose only errors are blank macros (a template, as SafeKit
/// publishes its modules) is installed, with the blanks to fill in the report.
pub fn install(layout: &Layout, src: &Path, name: Option<&str>, id: Option<u16>, replace: bool) -> Result<InstallReport, String> {
    let name = match name {
        Some(n) => n.to_string(),
        None => src
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{}: cannot tell the module name; use -m", src.display()))?
            .to_string(),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("invalid module name '{name}' (letters, digits, _ and -)"));
    }
    let dest = layout.module_dir(&name);
    if dest.exists() && !replace {
        return Err(format!("module {name} is already installed ({}); use -r to reinstall", dest.display()));
    }
    let staging = layout.safe.join("modules").join(format!(".{name}.installing"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    let result = (|| {
        if src.is_dir() {
            copy_dir(src, &staging)?;
        } else {
            unzip(src, &staging)?;
        }
        let conf = staging.join("conf").join("userconfig.xml");
        let text = std::fs::read_to_string(&conf).map_err(|e| format!("{}: no conf/userconfig.xml in the module ({e})", src.display()))?;
        let to_fill = match parse_userconfig(&text, UserConfigOptions { file: "conf/userconfig.xml", ..UserConfigOptions::new() }) {
            Ok(_) => Vec::new(),
            Err(e) if !e.blanks.is_empty() => e.errors().map(ToString::to_string).collect(),
            Err(e) => return Err(e.to_string()),
        };
        if let Ok(rd) = std::fs::read_dir(staging.join("bin")) {
            for e in rd.flatten() {
                let _ = std::fs::set_permissions(e.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755));
            }
        }
        if let Some(id) = id {
            std::fs::write(staging.join("id"), id.to_string()).map_err(|e| e.to_string())?;
        }
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        }
        std::fs::rename(&staging, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        Ok(to_fill)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result.map(|to_fill| InstallReport { name, to_fill })
}

/// Every installed module's id: its fixed id (`SAFE/modules/AM/id`), else
/// its rank by name (from 1) — the ids the daemon runs them with.
pub fn ids(layout: &Layout) -> Result<BTreeMap<String, u16>, String> {
    let dir = layout.safe.join("modules");
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter(|e| e.path().join("conf/userconfig.xml").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    names.sort();
    let mut out = BTreeMap::new();
    for (i, n) in names.into_iter().enumerate() {
        let fixed = std::fs::read_to_string(layout.module_dir(&n).join("id")).ok().and_then(|s| s.trim().parse().ok());
        out.insert(n, fixed.unwrap_or_else(|| u16::try_from(i + 1).unwrap_or(u16::MAX)));
    }
    if out.len() > 32 {
        return Err(format!("{} modules are installed; a node runs at most 32", out.len()));
    }
    Ok(out)
}

/// Removes module `name` from `SAFE/modules` (its work files in SAFEVAR stay).
pub fn uninstall(layout: &Layout, name: &str) -> Result<(), String> {
    let dir = layout.module_dir(name);
    if !dir.join("conf").join("userconfig.xml").exists() {
        return Err(format!("no module {name} is installed"));
    }
    std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Module `name` as a `.safe` package (a zip of its `SAFE/modules/AM`
/// directory: `conf/`, `bin/` and the rest), as `safekit module install`
/// reads it back.
pub fn package(layout: &Layout, name: &str) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let dir = layout.module_dir(name);
    if !dir.join("conf").join("userconfig.xml").exists() {
        return Err(format!("no module {name} is installed"));
    }
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut stack = vec![(dir.clone(), String::new())];
    while let Some((at, rel)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&at).map_err(|e| format!("{}: {e}", at.display()))?.flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let Ok(n) = e.file_name().into_string() else { continue };
            // The fixed id is this node's choice, not the module's.
            if rel.is_empty() && n == "id" {
                continue;
            }
            let name_in_zip = format!("{rel}{n}");
            let ty = e.file_type().map_err(|e| e.to_string())?;
            if ty.is_dir() {
                z.add_directory(format!("{name_in_zip}/"), opts).map_err(|e| e.to_string())?;
                stack.push((e.path(), format!("{name_in_zip}/")));
            } else if ty.is_file() {
                let mode = std::os::unix::fs::PermissionsExt::mode(&e.metadata().map_err(|e| e.to_string())?.permissions());
                z.start_file(name_in_zip, opts.unix_permissions(mode & 0o777)).map_err(|e| e.to_string())?;
                z.write_all(&std::fs::read(e.path()).map_err(|err| format!("{}: {err}", e.path().display()))?)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(z.finish().map_err(|e| e.to_string())?.into_inner())
}

/// The module packages offered on this node: `.safe` files under
/// `SAFE/Application_Modules/<kind>/`, as `<kind>/<file>.safe`.
pub fn templates(layout: &Layout) -> Vec<String> {
    let root = layout.safe.join("Application_Modules");
    let mut out = Vec::new();
    for kind in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let Ok(k) = kind.file_name().into_string() else { continue };
        for f in std::fs::read_dir(kind.path()).into_iter().flatten().flatten() {
            if let Ok(n) = f.file_name().into_string() {
                if n.ends_with(".safe") && f.file_type().is_ok_and(|t| t.is_file()) {
                    out.push(format!("{k}/{n}"));
                }
            }
        }
    }
    out.sort();
    out
}

/// The path of template `name` (`<kind>/<file>.safe`), if it is one.
pub fn template_path(layout: &Layout, name: &str) -> Option<PathBuf> {
    templates(layout).iter().any(|t| t == name).then(|| layout.safe.join("Application_Modules").join(name))
}

/// The installed modules, by name.
pub fn list(layout: &Layout) -> Vec<Installed> {
    let mut out: Vec<Installed> = std::fs::read_dir(layout.safe.join("modules"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("conf/userconfig.xml").exists())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = std::fs::read_to_string(e.path().join("id")).ok().and_then(|s| s.trim().parse().ok());
            Some(Installed { name, id })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn copy_dir(src: &Path, dst: &Path) -> Result<(), String> {
    for e in std::fs::read_dir(src).map_err(|e| format!("{}: {e}", src.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let to = dst.join(e.file_name());
        let ty = e.file_type().map_err(|e| e.to_string())?;
        if ty.is_dir() {
            std::fs::create_dir_all(&to).map_err(|e| e.to_string())?;
            copy_dir(&e.path(), &to)?;
        } else if ty.is_file() {
            std::fs::copy(e.path(), &to).map_err(|err| format!("{}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Most bytes a module package may extract to (scripts, configuration and
/// the odd helper binary: SafeKit's own packages are well under 1 MiB).
const MAX_UNZIPPED: u64 = 256 << 20;
/// Most entries a module package may hold.
const MAX_ENTRIES: usize = 10_000;

/// Extracts a zip, refusing entries that would land outside `dst`.
fn unzip(src: &Path, dst: &Path) -> Result<(), String> {
    unzip_capped(src, dst, MAX_UNZIPPED, MAX_ENTRIES)
}

/// [`unzip`] with explicit caps: what is extracted is counted as it is
/// written (the sizes a zip declares are not trusted), so a "zip bomb"
/// stops at `max_bytes`.
fn unzip_capped(src: &Path, dst: &Path, max_bytes: u64, max_entries: usize) -> Result<(), String> {
    let f = std::fs::File::open(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| format!("{}: not a .safe (zip) file: {e}", src.display()))?;
    if zip.len() > max_entries {
        return Err(format!("{}: {} entries; a module package holds at most {max_entries}", src.display(), zip.len()));
    }
    let mut left = max_bytes;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format!("{}: {e}", src.display()))?;
        let Some(rel): Option<PathBuf> = entry.enclosed_name() else {
            return Err(format!(
                "{}: entry {} would be written outside the module",
                src.display(),
                entry.name().map(|n| format!("'{n}'")).unwrap_or_default()
            ));
        };
        let to = dst.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&to).map_err(|e| e.to_string())?;
            continue;
        }
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        let mut out = std::fs::File::create(&to).map_err(|e| format!("{}: {e}", to.display()))?;
        let wrote =
            std::io::copy(&mut std::io::Read::take(&mut entry, left + 1), &mut out).map_err(|e| format!("{}: {e}", to.display()))?;
        if wrote > left {
            return Err(format!("{}: more than {} MiB once extracted; not a module package", src.display(), max_bytes >> 20));
        }
        left -= wrote;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_with(path: &Path, entries: &[(&str, usize)]) {
        let f = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, size) in entries {
            z.start_file(*name, opts).unwrap();
            z.write_all(&vec![0u8; *size]).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn a_package_that_expands_beyond_the_cap_is_refused() {
        let dir = std::env::temp_dir().join(format!("safekit-unzip-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("out")).unwrap();
        let bomb = dir.join("bomb.safe");
        // 4 MiB of zeros compress to a few KiB.
        zip_with(&bomb, &[("conf/userconfig.xml", 100), ("bin/big", 4 << 20)]);
        assert!(std::fs::metadata(&bomb).unwrap().len() < 64 << 10);
        let err = unzip_capped(&bomb, &dir.join("out"), 1 << 20, 100).unwrap_err();
        assert!(err.contains("more than 1 MiB once extracted"), "{err}");
        let err = unzip_capped(&bomb, &dir.join("out"), 8 << 20, 1).unwrap_err();
        assert!(err.contains("2 entries"), "{err}");
        unzip_capped(&bomb, &dir.join("out"), 8 << 20, 100).unwrap();
        assert_eq!(std::fs::metadata(dir.join("out/bin/big")).unwrap().len(), 4 << 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_module_packaged_installs_back_identical_and_templates_are_listed() {
        let root = std::env::temp_dir().join(format!("safekit-package-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let l = Layout { safe: root.join("safe"), safevar: root.join("var") };
        let conf = "<!DOCTYPE safe>\n<safe>\n<service mode=\"mirror\">\n  <heart>\n    <heartbeat name=\"default\"/>\n  </heart>\n</service>\n</safe>\n";
        let files = files::Files::from([(files::USERCONFIG.into(), conf.into()), ("bin/start_prim".into(), "#!/bin/sh\nexit 0\n".into())]);
        files::replace(&l, "m", &files).unwrap();
        std::fs::write(l.module_dir("m").join("id"), "7").unwrap();
        let safe = package(&l, "m").unwrap();
        let kind = l.safe.join("Application_Modules/generic");
        std::fs::create_dir_all(&kind).unwrap();
        std::fs::write(kind.join("m.safe"), &safe).unwrap();
        assert_eq!(templates(&l), ["generic/m.safe"]);
        assert!(template_path(&l, "../../etc/passwd").is_none() && template_path(&l, "generic/none.safe").is_none());
        install(&l, &template_path(&l, "generic/m.safe").unwrap(), Some("copy"), None, false).unwrap();
        assert_eq!(files::current(&l, "copy").unwrap(), files, "the same files");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(l.module_dir("copy").join("bin/start_prim")).unwrap().permissions());
        assert_eq!(mode & 0o111, 0o111, "scripts stay executable");
        assert!(!l.module_dir("copy").join("id").exists(), "the id is the node's, not the package's");
        assert!(package(&l, "none").is_err());
        let _ = std::fs::remove_dir_all(root);
    }
}
