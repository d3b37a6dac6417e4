//! Crash-safe persistence of a module's state: write a temporary file,
//! fsync it, rename it over the old one, fsync the directory. After a crash
//! either the old or the new state is there, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::engine::Persistent;
use crate::services::{ServiceError, StateStore};

/// `SAFEUSERVAR/state.json`: the default [`StateStore`].
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// The store of a module whose work directory is `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join("state.json") }
    }

    fn write(&self, p: &Persistent) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(serde_json::to_string_pretty(p).map_err(std::io::Error::other)?.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

impl StateStore for FileStore {
    /// What was persisted; a new module starts from the defaults. A file
    /// that cannot be read back is an error: guessing could make a stale
    /// node primary.
    fn load(&self) -> Result<Persistent, ServiceError> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => serde_json::from_str(&s).map_err(|e| {
                ServiceError::Failed(format!("{}: unreadable state ({e}); remove it and use prim/second to choose", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persistent::default()),
            Err(e) => Err(ServiceError::io(format!("reading {}", self.path.display()), e)),
        }
    }

    /// Saves `p` durably before returning.
    fn save(&self, p: &Persistent) -> Result<(), ServiceError> {
        self.write(p).map_err(|e| ServiceError::io(format!("saving {}", self.path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("safekit-store-{}", std::process::id()));
        let store = FileStore::new(&dir);
        assert_eq!(store.load().unwrap(), Persistent::default());
        let p = Persistent { gen: 7, uptodate: true, ..Persistent::default() };
        store.save(&p).unwrap();
        assert_eq!(store.load().unwrap(), p);
        std::fs::write(dir.join("state.json"), "{ torn").unwrap();
        assert!(store.load().unwrap_err().to_string().contains("unreadable state"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
