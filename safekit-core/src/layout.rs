//! Where a node keeps things, as SafeKit lays them out: `SAFE` (install
//! dir, `/opt/safekit`) and `SAFEVAR` (work dir, `/var/safekit`). Both can
//! be overridden (environment `SAFE`/`SAFEVAR`) so tests run several nodes on
//! one machine.

use std::path::{Path, PathBuf};

use crate::config::{parse_cluster, parse_userconfig, ClusterConfig, ConfigError, Parsed, UserConfig, UserConfigOptions};

/// A node's directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Install dir: modules live in `SAFE/modules/AM`.
    pub safe: PathBuf,
    /// Work dir: `SAFEVAR/cluster/cluster.xml`, `SAFEVAR/modules/AM`.
    pub safevar: PathBuf,
}

impl Layout {
    /// From the environment (`SAFE`, `SAFEVAR`), else SafeKit's defaults.
    pub fn from_env() -> Self {
        let get = |k: &str, d: &str| std::env::var_os(k).map_or_else(|| PathBuf::from(d), PathBuf::from);
        Self { safe: get("SAFE", "/opt/safekit"), safevar: get("SAFEVAR", "/var/safekit") }
    }

    /// `SAFEVAR/cluster/cluster.xml`.
    pub fn cluster_xml(&self) -> PathBuf {
        self.safevar.join("cluster").join("cluster.xml")
    }

    /// `SAFE/modules/AM` (the user-editable module).
    pub fn module_dir(&self, module: &str) -> PathBuf {
        self.safe.join("modules").join(module)
    }

    /// `SAFE/modules/AM/conf/userconfig.xml`.
    pub fn userconfig_xml(&self, module: &str) -> PathBuf {
        self.module_dir(module).join("conf").join("userconfig.xml")
    }

    /// `SAFE/web/conf`: the web service's users (`user.conf`) and roles
    /// (`group.conf`), as SafeKit keeps them.
    pub fn web_conf(&self) -> PathBuf {
        self.safe.join("web").join("conf")
    }

    /// `SAFEVAR/modules/AM` (`SAFEUSERVAR`: state, logs, userlogs).
    pub fn module_var(&self, module: &str) -> PathBuf {
        self.safevar.join("modules").join(module)
    }

    /// Reads and checks cluster.xml.
    pub fn load_cluster(&self) -> Result<Parsed<ClusterConfig>, ConfigError> {
        load_cluster_file(&self.cluster_xml())
    }

    /// Reads and checks a module's userconfig.xml against cluster.xml
    /// (`confcheck` additionally refuses placeholders).
    pub fn load_module(&self, module: &str, cluster: &ClusterConfig, confcheck: bool) -> Result<Parsed<UserConfig>, ConfigError> {
        let path = self.userconfig_xml(module);
        let text = read(&path)?;
        let env = |n: &str| std::env::var(n).ok();
        let file = path.display().to_string();
        parse_userconfig(&text, UserConfigOptions { file: &file, cluster: Some(cluster), env: &env, confcheck })
    }
}

/// Reads and checks a cluster.xml file.
pub fn load_cluster_file(path: &Path) -> Result<Parsed<ClusterConfig>, ConfigError> {
    let text = read(path)?;
    parse_cluster(&text, &path.display().to_string())
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::whole_file(&path.display().to_string(), format!("cannot read the file: {e}")))
}
