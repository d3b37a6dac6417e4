//! A module's configuration as files: `conf/userconfig.xml` and the `bin/`
//! scripts, read, checked and replaced as one set (what the web service's
//! configuration endpoints edit), and the last [`HISTORY`] applied sets
//! kept in `SAFEVAR/modules/AM/config-history/` so one can be restored.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{parse_userconfig, ClusterConfig, ConfigError, Diagnostic, UserConfigOptions};
use crate::layout::Layout;

/// The configuration files of a module, by path under the module's
/// directory (`conf/userconfig.xml`, `bin/start_prim`, ...), with their text.
pub type Files = BTreeMap<String, String>;

/// Applied configurations kept per module.
pub const HISTORY: usize = 3;

/// Most files in one module's configuration.
pub const MAX_FILES: usize = 64;

/// The userconfig.xml path in [`Files`].
pub const USERCONFIG: &str = "conf/userconfig.xml";

/// Whether `path` may be one of a module's configuration files:
/// `conf/userconfig.xml` or `bin/<name>` (letters, digits, `_`, `-`, `.`,
/// not starting with a dot), so nothing is ever written outside the
/// module's `conf` and `bin`.
pub fn valid_path(path: &str) -> bool {
    path == USERCONFIG
        || path.strip_prefix("bin/").is_some_and(|n| {
            !n.is_empty() && n.len() <= 64 && !n.starts_with('.') && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        })
}

/// The module's files now. Scripts that are not UTF-8 text are left out
/// (they are kept as they are when the set is replaced).
pub fn current(layout: &Layout, module: &str) -> Result<Files, String> {
    let dir = layout.module_dir(module);
    let conf = dir.join(USERCONFIG);
    let text = std::fs::read_to_string(&conf).map_err(|e| format!("module {module} is not installed ({}: {e})", conf.display()))?;
    let mut files = Files::from([(USERCONFIG.to_string(), text)]);
    for e in std::fs::read_dir(dir.join("bin")).into_iter().flatten().flatten() {
        let (Ok(name), true) = (e.file_name().into_string(), e.file_type().is_ok_and(|t| t.is_file())) else { continue };
        let path = format!("bin/{name}");
        if valid_path(&path) {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                files.insert(path, text);
            }
        }
    }
    Ok(files)
}

/// `current` with `changes` applied: a text replaces or adds a file,
/// `None` removes a script. Refuses paths outside `conf/userconfig.xml`
/// and `bin/`, removing userconfig.xml, and more than [`MAX_FILES`].
pub fn merge(mut current: Files, changes: &BTreeMap<String, Option<String>>) -> Result<Files, String> {
    for (path, text) in changes {
        if !valid_path(path) {
            return Err(format!("{path:?}: a module's files are conf/userconfig.xml and bin/<name>"));
        }
        match text {
            Some(t) => {
                current.insert(path.clone(), t.clone());
            }
            None if path == USERCONFIG => return Err("conf/userconfig.xml cannot be removed".into()),
            None => {
                current.remove(path);
            }
        }
    }
    if current.len() > MAX_FILES {
        return Err(format!("{} files: a module has at most {MAX_FILES}", current.len()));
    }
    Ok(current)
}

/// Checks `files`' userconfig.xml against `cluster` as `safekit confcheck`
/// does (placeholders refused): its warnings, or every error with its
/// line and column.
pub fn check(files: &Files, cluster: &ClusterConfig) -> Result<Vec<Diagnostic>, ConfigError> {
    let Some(text) = files.get(USERCONFIG) else {
        return Err(ConfigError::whole_file(USERCONFIG, "the module has no conf/userconfig.xml"));
    };
    let env = |n: &str| std::env::var(n).ok();
    parse_userconfig(text, UserConfigOptions { file: USERCONFIG, cluster: Some(cluster), env: &env, confcheck: true }).map(|p| p.warnings)
}

/// Replaces `path` whole with `text` (written aside, then renamed) with
/// permissions `mode`.
pub(crate) fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("safekit-new");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes the module's files exactly `files`: each written (scripts
/// executable), every other UTF-8 script of `bin/` removed. Each file is
/// replaced whole (written aside, then renamed).
pub fn replace(layout: &Layout, module: &str, files: &Files) -> Result<(), String> {
    let dir = layout.module_dir(module);
    if let Some(bad) = files.keys().find(|p| !valid_path(p)) {
        return Err(format!("{bad:?}: a module's files are conf/userconfig.xml and bin/<name>"));
    }
    std::fs::create_dir_all(dir.join("bin")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir.join("conf")).map_err(|e| e.to_string())?;
    for old in current(layout, module).unwrap_or_default().keys().filter(|p| !files.contains_key(*p)) {
        std::fs::remove_file(dir.join(old)).map_err(|e| format!("{old}: {e}"))?;
    }
    for (path, text) in files {
        write_file(&dir.join(path), text, if path == USERCONFIG { 0o644 } else { 0o755 })?;
    }
    Ok(())
}

/// One applied configuration kept in the history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    /// Its number (increasing; restore with it).
    pub id: u64,
    /// When it was applied (seconds since 1970).
    pub applied: u64,
    /// Who applied it.
    pub by: String,
    /// Its files.
    pub files: Files,
}

fn history_dir(layout: &Layout, module: &str) -> std::path::PathBuf {
    layout.module_var(module).join("config-history")
}

/// The kept configurations, newest first.
pub fn history(layout: &Layout, module: &str) -> Vec<Applied> {
    let mut out: Vec<Applied> = std::fs::read_dir(history_dir(layout, module))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    out.sort_by_key(|a| std::cmp::Reverse(a.id));
    out
}

/// Records `files` as the configuration just applied by `by`, keeping the
/// newest [`HISTORY`].
pub fn record(layout: &Layout, module: &str, files: &Files, by: &str) -> Result<(), String> {
    let dir = history_dir(layout, module);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let past = history(layout, module);
    let id = past.first().map_or(1, |a| a.id + 1);
    let applied = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let entry = Applied { id, applied, by: by.to_string(), files: files.clone() };
    let text = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
    write_file(&dir.join(format!("{id}.json")), &text, 0o600)?;
    for old in past.iter().skip(HISTORY - 1) {
        let _ = std::fs::remove_file(dir.join(format!("{}.json", old.id)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(test: &str) -> Layout {
        let root = std::env::temp_dir().join(format!("safekit-files-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        Layout { safe: root.join("safe"), safevar: root.join("var") }
    }

    #[test]
    fn only_conf_and_bin_files_are_written_and_the_set_is_replaced_whole() {
        let l = layout("replace");
        let first = Files::from([(USERCONFIG.into(), "<safe/>".into()), ("bin/start_prim".into(), "#!/bin/sh\n".into())]);
        replace(&l, "m", &first).unwrap();
        assert_eq!(current(&l, "m").unwrap(), first);
        let changes =
            BTreeMap::from([("bin/start_prim".to_string(), None), ("bin/stop_prim".to_string(), Some("#!/bin/sh\nexit 0\n".into()))]);
        let next = merge(current(&l, "m").unwrap(), &changes).unwrap();
        replace(&l, "m", &next).unwrap();
        assert_eq!(current(&l, "m").unwrap().keys().collect::<Vec<_>>(), ["bin/stop_prim", USERCONFIG]);
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(l.module_dir("m").join("bin/stop_prim")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o755, "scripts are executable");
        for bad in ["../x", "bin/../../etc/passwd", "conf/other.xml", "bin/.hidden", "bin/", "/etc/passwd", "bin/a/b"] {
            assert!(merge(Files::new(), &BTreeMap::from([(bad.to_string(), Some(String::new()))])).is_err(), "{bad}");
        }
        assert!(merge(first, &BTreeMap::from([(USERCONFIG.to_string(), None)])).is_err(), "userconfig.xml stays");
        let _ = std::fs::remove_dir_all(l.safe.parent().unwrap());
    }

    #[test]
    fn the_history_keeps_the_last_three_applied_newest_first() {
        let l = layout("history");
        for i in 1..=5 {
            record(&l, "m", &Files::from([(USERCONFIG.into(), format!("<safe>{i}</safe>"))]), "admin@10.0.0.7").unwrap();
        }
        let h = history(&l, "m");
        assert_eq!(h.iter().map(|a| a.id).collect::<Vec<_>>(), [5, 4, 3]);
        assert_eq!(h[0].files[USERCONFIG], "<safe>5</safe>");
        assert_eq!(h[0].by, "admin@10.0.0.7");
        let _ = std::fs::remove_dir_all(l.safe.parent().unwrap());
    }
}
