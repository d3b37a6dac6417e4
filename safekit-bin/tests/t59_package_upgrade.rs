//! The Debian package, installed and upgraded as on a server: built with
//! cargo-deb from this binary twice (version N, and N+1 with the same
//! payload), installed into a copy-on-write view of this machine's root (an
//! overlay in a mount namespace of its own, with a network namespace of
//! its own: nothing on this machine changes), a light module configured
//! and started, the package upgraded: the module's configuration, the
//! cluster files and its state survive untouched, and the daemon started
//! again brings the module back in the same state by itself (its boot
//! setting survived). Removal
//! keeps the user's files. Without root, cargo-deb or unshare this test
//! says so and passes, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI).

use std::process::Command;

mod common;

/// What runs inside the overlay root (chrooted), as an administrator
/// would: `$1` and `$2` the packages, `$3` and `$4` their versions.
const INSIDE: &str = concat!(
    r#"set -eu
old=$1; new=$2; oldv=$3; newv=$4
say() { echo "STEP $*"; }
daemon() { safekit daemon >>/tmp/daemon.log 2>&1 & echo $! >/tmp/daemon.pid; }
stop_daemon() { kill -TERM "$(cat /tmp/daemon.pid)"; i=0; while kill -0 "$(cat /tmp/daemon.pid)" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; }
dpkg -i "$old"
test "$(dpkg-query -W -f='${Version}' safekit)" = "$oldv"
test -x /opt/safekit/safekit && test -L /usr/bin/safekit && test -d /var/safekit/cluster
test -f /opt/safekit/Application_Modules/generic/mariadb.safe
say installed "$oldv" with the templates
"#,
    package_cluster_and_module!(),
    r#"printf '#!/bin/sh\necho started >>"$SAFEUSERVAR/app.starts"\n' >/opt/safekit/modules/app/bin/start_both
chmod 755 /opt/safekit/modules/app/bin/start_both
export SAFEKIT_NODE=pkg
daemon
i=0; until safekit state >/dev/null 2>&1 || [ $i -gt 100 ]; do sleep 0.1; i=$((i+1)); done
safekit boot on -m app
safekit start -m app
safekit waitstate -m app UP --timeout 30
say module app UP under "$oldv"
(cd / && sha256sum opt/safekit/modules/app/conf/userconfig.xml var/safekit/cluster/cluster.xml var/safekit/cluster/cluster.key opt/safekit/modules/app/bin/start_both) >/tmp/user.sum
stop_daemon
dpkg -i "$new"
test "$(dpkg-query -W -f='${Version}' safekit)" = "$newv"
(cd / && sha256sum -c --quiet /tmp/user.sum)
say upgraded to "$newv", the configuration untouched
daemon
i=0; until safekit state >/dev/null 2>&1 || [ $i -gt 100 ]; do sleep 0.1; i=$((i+1)); done
# The module's persisted settings (boot on) survived: it starts by itself.
safekit boot status -m app | grep -q "on"
safekit waitstate -m app UP --timeout 30
test "$(wc -l </var/safekit/modules/app/app.starts)" -eq 2
say module app UP again after the upgrade
stop_daemon
dpkg -r safekit
test ! -e /opt/safekit/safekit && test ! -e /usr/bin/safekit
(cd / && sha256sum -c --quiet /tmp/user.sum)
say removed, the configuration kept
"#
);

/// Runs [`INSIDE`] in an overlay root (`$1` its scratch directory).
fn outside() -> String {
    format!(
        "set -eu\nw=$1; shift\n{}{}",
        common::OVERLAY_ROOT,
        r#"cp "$1" "$r/tmp/old.deb"
cp "$2" "$r/tmp/new.deb"
printf '%s' "$INSIDE" >"$r/tmp/inside.sh"
ip link set lo up
chroot "$r" /bin/sh /tmp/inside.sh /tmp/old.deb /tmp/new.deb "$3" "$4" || { echo "--- daemon log"; cat "$r/tmp/daemon.log" 2>/dev/null; exit 1; }
"#
    )
}

#[test]
fn the_package_installs_upgrades_and_keeps_the_users_module_and_its_state() {
    let _serial = common::serial();
    let why = "package test needs root, cargo-deb (cargo install cargo-deb), dpkg, unshare and overlayfs";
    if !common::privileged(why, &["cargo-deb", "dpkg", "unshare", "chroot", "ip"], false) {
        return;
    }
    let exe = common::exe();
    assert!(exe.ends_with("debug/safekit"), "the package takes target/debug/safekit; the binary under test is {}", exe.display());
    let dir = common::tempdir::Dir::new("package");
    let version = env!("CARGO_PKG_VERSION");
    let (v1, v2) = (format!("{version}-1"), format!("{version}+up1-1"));
    let old = common::cargo_deb(&dir.path().join("n"), &v1);
    let new = common::cargo_deb(&dir.path().join("n1"), &v2);
    let work = dir.path().join("overlay");
    std::fs::create_dir_all(&work).unwrap();
    let o = Command::new("unshare")
        .args(["--mount", "--net", "--fork", "sh", "-c", &outside(), "outside"])
        .arg(&work)
        .args([&old, &new])
        .args([&v1, &v2])
        .env("INSIDE", INSIDE)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{text}");
    let steps: Vec<&str> = text.lines().filter(|l| l.starts_with("STEP ")).collect();
    println!("{}", steps.join("\n"));
    assert_eq!(steps.len(), 5, "{text}");
    assert!(steps[4].ends_with("removed, the configuration kept"), "{text}");
    // This machine's dpkg never heard of it: everything happened in the overlay.
    let host = Command::new("dpkg-query").args(["-W", "safekit"]).output().unwrap();
    assert!(!host.status.success(), "the package reached this machine's dpkg: {}", String::from_utf8_lossy(&host.stdout));
}
