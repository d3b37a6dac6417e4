//! Helpers shared by the privileged integration tests.
// Each test file uses a subset of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// True when the test can run: root, the `tools` on PATH (`ip` must also
/// manage namespaces), `/dev/fuse` if `fuse`. Otherwise says why and
/// returns false, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI), where a skip is
/// a failure.
pub(crate) fn privileged(what: &str, tools: &[&str], fuse: bool) -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("not root".to_string())
    } else if fuse && !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing".to_string())
    } else if let Some(t) = tools.iter().find(|t| std::process::Command::new(t).arg("-V").output().is_err()) {
        Some(format!("{t} is missing"))
    } else if tools.contains(&"ip") && !std::process::Command::new("ip").args(["netns", "list"]).output().is_ok_and(|o| o.status.success())
    {
        Some("ip netns does not work".to_string())
    } else {
        None
    };
    let Some(why) = why else { return true };
    assert!(std::env::var("SAFEKIT_REQUIRE_PRIVILEGED").as_deref() != Ok("1"), "privileged test required but {why}");
    eprintln!("SKIPPED: {what} ({why})");
    false
}

/// The `safekit` binary under test.
pub(crate) fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_safekit"))
}

/// A runtime for the async demo helpers.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}
