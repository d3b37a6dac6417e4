//! Who may use the web service, as SafeKit keeps it: `SAFE/web/conf/user.conf`
//! (`name:hash` lines; argon2id hashes here where SafeKit uses htpasswd's
//! bcrypt) written by `safekit webservercfg -passwd PWD [-user NAME]`, and
//! the optional `SAFE/web/conf/group.conf` (`Admin : admin`, `Control :
//! manager`, `Monitor : operator1 operator2`); without it every user is
//! Admin. Both are read at each login, so a change needs no restart.

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;

/// What a user may do: Monitor reads, Control also acts on modules, Admin
/// also configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub enum Role {
    /// Read only.
    Monitor,
    /// Read and act on modules.
    Control,
    /// Everything.
    Admin,
}

impl Role {
    /// `Admin`, `Control` or `Monitor`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "Admin" => Some(Self::Admin),
            "Control" => Some(Self::Control),
            "Monitor" => Some(Self::Monitor),
            _ => None,
        }
    }
}

/// A user name as `webservercfg` accepts it.
pub fn valid_user(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The users and roles of one node.
#[derive(Debug, Clone)]
pub struct Accounts {
    dir: PathBuf,
}

impl Accounts {
    /// The accounts kept in `dir` (`SAFE/web/conf`).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    fn users(&self) -> String {
        std::fs::read_to_string(self.dir.join("user.conf")).unwrap_or_default()
    }

    /// `user`'s role if `password` is theirs; `None` otherwise (also for a
    /// user that group.conf, when present, gives no role).
    pub fn verify(&self, user: &str, password: &str) -> Option<Role> {
        let users = self.users();
        let hash = users.lines().find_map(|l| l.split_once(':').filter(|(n, _)| *n == user).map(|(_, h)| h.trim().to_string()))?;
        let parsed = PasswordHash::new(&hash).ok()?;
        Argon2::default().verify_password(password.as_bytes(), &parsed).ok()?;
        self.role(user)
    }

    /// `user`'s role from group.conf (Admin without one).
    pub fn role(&self, user: &str) -> Option<Role> {
        let Ok(groups) = std::fs::read_to_string(self.dir.join("group.conf")) else { return Some(Role::Admin) };
        groups
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(_, members)| members.split_whitespace().any(|m| m == user))
            .filter_map(|(role, _)| Role::parse(role))
            .max()
    }

    /// Sets `user`'s password (`webservercfg -passwd`): the file is
    /// rewritten whole, readable by root only.
    pub fn set_password(&self, user: &str, password: &str) -> Result<(), String> {
        if !valid_user(user) {
            return Err(format!("invalid user name {user:?}: letters, digits, '_', '.', '-'"));
        }
        if password.len() < 8 {
            return Err("the password must have at least 8 characters".into());
        }
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        let hash = Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| e.to_string())?.to_string();
        let mut lines: Vec<String> =
            self.users().lines().filter(|l| l.split_once(':').is_none_or(|(n, _)| n != user)).map(str::to_string).collect();
        lines.push(format!("{user}:{hash}"));
        write_private(&self.dir.join("user.conf"), &(lines.join("\n") + "\n"))
    }
}

/// API keys for scripts (`Authorization: Bearer <key>`), one role each,
/// in `SAFE/web/conf/apikeys.conf` (`name:Role:sha256`, root only): the
/// key itself is shown once, when made, and never stored.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    path: PathBuf,
}

/// One API key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

fn digest(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

impl ApiKeys {
    /// The keys kept in `dir` (`SAFE/web/conf`).
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join("apikeys.conf") }
    }

    fn entries(&self) -> Vec<(String, Role, String)> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                Some((f.next()?.to_string(), Role::parse(f.next()?)?, f.next()?.trim().to_string()))
            })
            .collect()
    }

    fn save(&self, entries: &[(String, Role, String)]) -> Result<(), String> {
        let text: String = entries.iter().map(|(n, r, h)| format!("{n}:{r:?}:{h}\n")).collect();
        write_private(&self.path, &text)
    }

    /// The keys, without their secrets.
    pub fn list(&self) -> Vec<ApiKey> {
        self.entries().into_iter().map(|(name, role, _)| ApiKey { name, role }).collect()
    }

    /// Makes key `name` with `role`; returns the key, which is not kept.
    pub fn create(&self, name: &str, role: Role) -> Result<String, String> {
        if !valid_user(name) {
            return Err(format!("invalid key name {name:?}: letters, digits, '_', '.', '-'"));
        }
        let mut entries = self.entries();
        if entries.iter().any(|(n, ..)| n == name) {
            return Err(format!("an API key named {name} exists: revoke it first"));
        }
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| e.to_string())?;
        let key = format!("sk_{}", hex::encode(b));
        entries.push((name.to_string(), role, digest(&key)));
        self.save(&entries)?;
        Ok(key)
    }

    /// Revokes key `name`; false if there is none.
    pub fn revoke(&self, name: &str) -> Result<bool, String> {
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|(n, ..)| n != name);
        if entries.len() == before {
            return Ok(false);
        }
        self.save(&entries)?;
        Ok(true)
    }

    /// The name and role of `key`, if it is a valid key.
    pub fn verify(&self, key: &str) -> Option<ApiKey> {
        let d = digest(key);
        self.entries().into_iter().find(|(_, _, h)| *h == d).map(|(name, role, _)| ApiKey { name, role })
    }
}

/// Writes `text` to `path` through a temporary file, readable by root only.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_roles_follow_group_conf_and_the_file_is_private() {
        let dir = std::env::temp_dir().join(format!("safekit-accounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Accounts::new(&dir);
        assert_eq!(a.verify("admin", "whatever1"), None, "no user.conf: nobody");
        a.set_password("admin", "correct horse").unwrap();
        a.set_password("op", "operator pw").unwrap();
        a.set_password("admin", "battery staple").unwrap();
        assert_eq!(a.verify("admin", "correct horse"), None, "the old password is replaced");
        assert_eq!(a.verify("admin", "battery staple"), Some(Role::Admin), "without group.conf every user is Admin");
        assert_eq!(a.verify("op", "operator pw"), Some(Role::Admin));
        assert_eq!(a.verify("nobody", "battery staple"), None);
        std::fs::write(dir.join("group.conf"), "Admin : admin\nMonitor : op other\n").unwrap();
        assert_eq!(a.verify("op", "operator pw"), Some(Role::Monitor));
        assert_eq!(a.verify("admin", "battery staple"), Some(Role::Admin));
        std::fs::write(dir.join("group.conf"), "Admin : admin\n").unwrap();
        assert_eq!(a.verify("op", "operator pw"), None, "group.conf gives op no role");
        let text = std::fs::read_to_string(dir.join("user.conf")).unwrap();
        assert!(text.contains("$argon2id$") && !text.contains("battery"), "{text}");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("user.conf")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert!(a.set_password("bad name", "long enough").is_err());
        assert!(a.set_password("x", "short").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
