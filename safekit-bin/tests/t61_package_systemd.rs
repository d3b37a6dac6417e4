//! The Debian package under a real systemd: the unit and the maintainer
//! scripts' systemd paths. systemd boots as PID 1 of a PID namespace of its
//! own, in a copy-on-write view of this machine's root (an overlay in a
//! mount namespace of its own, with its own network and host name, in a
//! cgroup made for it under this test's own: nothing on this machine
//! changes). Inside: the package's first install enables the unit; the
//! daemon started by systemd runs a module (boot on); a kill -9 of the
//! daemon makes systemd kill what its modules left (KillMode=mixed), run
//! `safekit release` and start it again, and the module comes back; an
//! upgrade restarts the daemon with the new binary and the module again,
//! the configuration untouched; an administrator's `disable` survives an
//! upgrade; removal stops the module cleanly and disables the unit.
//! Without root, systemd, cargo-deb or unshare this test says so and
//! passes, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

/// What the administrator does inside the booted root: `$1`, `$2` the
/// packages' versions (N, N+1), the packages in /root.
const INSIDE: &str = concat!(
    r#"set -eu
oldv=$1; newv=$2
say() { echo "STEP $*"; }
fail() { echo "FAILED: $*"; systemctl status safekit --no-pager || true; journalctl -u safekit --no-pager -n 40 || true; exit 1; }
until_true() { i=0; until eval "$1" >/dev/null 2>&1; do [ $i -lt 600 ] || fail "$2"; sleep 0.1; i=$((i+1)); done; }
main_pid() { systemctl show -p MainPID --value safekit; }
starts() { grep -c started /var/safekit/modules/app/app.log; }
stops() { grep -c stopped /var/safekit/modules/app/app.log || true; }

dpkg -i /root/old.deb
test "$(systemctl is-enabled safekit)" = enabled || fail "the first install did not enable the unit"
test "$(systemctl is-active safekit)" != active || fail "the first install started the daemon before anything is configured"
say installed "$oldv": unit enabled, not started

"#,
    package_cluster_and_module!(),
    r#"# The application: a process the module starts and stops.
cat >/opt/safekit/modules/app/bin/start_both <<'X'
#!/bin/sh
sleep 3600 </dev/null >/dev/null 2>&1 &
echo $! >"$SAFEUSERVAR/app.pid"
echo started >>"$SAFEUSERVAR/app.log"
X
cat >/opt/safekit/modules/app/bin/stop_both <<'X'
#!/bin/sh
[ -f "$SAFEUSERVAR/app.pid" ] && kill "$(cat "$SAFEUSERVAR/app.pid")" 2>/dev/null
echo stopped >>"$SAFEUSERVAR/app.log"
exit 0
X
chmod 755 /opt/safekit/modules/app/bin/start_both /opt/safekit/modules/app/bin/stop_both
(cd / && sha256sum opt/safekit/modules/app/conf/userconfig.xml var/safekit/cluster/cluster.xml var/safekit/cluster/cluster.key opt/safekit/modules/app/bin/start_both) >/root/user.sum

systemctl start safekit
until_true "safekit state" "the daemon systemd started does not answer"
safekit boot on -m app
safekit start -m app
safekit waitstate -m app UP --timeout 60
say daemon started by systemd, module app UP

pid=$(main_pid); app=$(cat /var/safekit/modules/app/app.pid)
kill -9 "$pid"
until_true "[ \"\$(main_pid)\" != 0 ] && [ \"\$(main_pid)\" != $pid ] && safekit state" "systemd did not start the killed daemon again"
kill -0 "$app" 2>/dev/null && fail "the application the killed daemon left still runs (KillMode=mixed)"
safekit waitstate -m app UP --timeout 60
test "$(starts)" -eq 2 || fail "the module did not start again after the daemon's restart"
say kill -9 of the daemon: systemd killed what it left, started it again, module app UP

pid=$(main_pid); before=$(stops)
dpkg -i /root/new.deb
test "$(dpkg-query -W -f='${Version}' safekit)" = "$newv"
(cd / && sha256sum -c --quiet /root/user.sum) || fail "the upgrade changed the configuration"
test "$(systemctl is-active safekit)" = active || fail "the upgrade left the daemon stopped"
test "$(main_pid)" != "$pid" || fail "the upgrade did not restart the daemon"
until_true "safekit state" "the upgraded daemon does not answer"
safekit waitstate -m app UP --timeout 60
# (stop_both runs twice on a stop: the stop, then its forced run.)
test "$(starts)" -eq 3 && test "$(stops)" -gt "$before" || fail "the upgrade did not stop and start the module: $(cat /var/safekit/modules/app/app.log | tr '\n' ' ')"
say upgraded to "$newv": daemon restarted, module app stopped cleanly and UP again, configuration untouched

systemctl disable safekit
dpkg -i /root/new.deb
test "$(systemctl is-enabled safekit)" = disabled || fail "an upgrade enabled the unit the administrator disabled"
say "the administrator's disable survived an upgrade"

until_true "safekit state" "the daemon does not answer before the removal"
safekit waitstate -m app UP --timeout 60
app=$(cat /var/safekit/modules/app/app.pid)
before=$(stops)
dpkg -r safekit
test "$(systemctl is-active safekit)" != active || fail "the removal left the daemon running"
test "$(stops)" -gt "$before" || fail "the removal did not run the module's stop script"
kill -0 "$app" 2>/dev/null && fail "the application still runs after the removal"
test ! -e /opt/safekit/safekit && test ! -e /usr/bin/safekit
(cd / && sha256sum -c --quiet /root/user.sum) || fail "the removal changed the configuration"
say removed: module stopped cleanly, daemon stopped, configuration kept
"#
);

/// Holds the namespaces: in its own cgroup (one per hierarchy, under
/// this process's), names the host, makes the overlay root, a /proc of
/// the new PID namespace, copies the packages in, masks what a container
/// must not run, then becomes systemd. `$1` scratch, `$2` the file listing
/// the cgroups made, `$3`/`$4` the packages, `$5` the cgroups' tag.
fn holder() -> String {
    format!(
        r#"set -eu
w=$1; cgroups=$2; old=$3; new=$4; tag=$5
while IFS=: read -r id ctrls path; do
  case "$ctrls" in
    "") if [ -d /sys/fs/cgroup/unified ]; then d=/sys/fs/cgroup/unified; else d=/sys/fs/cgroup; fi ;;
    name=systemd) d=/sys/fs/cgroup/systemd ;;
    *) d=/sys/fs/cgroup/$ctrls ;;
  esac
  [ -f "$d$path/cgroup.procs" ] || continue
  mine="$d${{path%/}}/$tag"
  mkdir -p "$mine"
  echo "$mine" >>"$cgroups"
  # A new cpuset has no CPUs or memory nodes: its parent's.
  for f in cpuset.cpus cpuset.mems; do
    [ -f "$mine/$f" ] && cat "$d$path/$f" >"$mine/$f"
  done
  echo $$ >"$mine/cgroup.procs"
done </proc/self/cgroup
hostname pkg
{overlay}umount -l "$r/proc"
mount -t proc proc "$r/proc"
# Kernel settings are this machine's (only the network's are the
# namespace's own): read-only inside, as systemd-nspawn does, so that
# systemd-sysctl and systemd's own bumps change nothing here.
mount --bind "$r/proc/sys" "$r/proc/sys"
mount -o remount,bind,ro "$r/proc/sys"
mount --bind "$r/proc/sys/net" "$r/proc/sys/net"
# systemd names the host from /etc/hostname at boot.
echo pkg >"$r/etc/hostname"
cp "$old" "$r/root/old.deb"
[ -z "$new" ] || cp "$new" "$r/root/new.deb"
for u in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket getty@.service console-getty.service \
  systemd-sysctl.service systemd-binfmt.service systemd-modules-load.service; do
  ln -sf /dev/null "$r/etc/systemd/system/$u"
done
exec chroot "$r" /usr/bin/env -i container=safekit-test /lib/systemd/systemd --unit=basic.target
"#,
        overlay = common::OVERLAY_ROOT
    )
}

/// systemd in its namespaces; killed on drop, then its cgroups removed.
struct Booted {
    holder: Child,
    /// systemd's PID as this machine sees it.
    pid: i32,
    _cgroups: Cgroups,
}

/// The cgroups the holder made (listed in a file as it makes them) and
/// everything systemd made below them: removed on drop, deepest first,
/// once their processes are gone.
struct Cgroups(PathBuf);

impl Drop for Cgroups {
    fn drop(&mut self) {
        let made: Vec<PathBuf> = std::fs::read_to_string(&self.0).unwrap_or_default().lines().map(PathBuf::from).collect();
        let end = Instant::now() + Duration::from_secs(20);
        for top in made {
            loop {
                let mut dirs = Vec::new();
                collect_dirs(&top, &mut dirs);
                dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
                if dirs.iter().all(|d| std::fs::remove_dir(d).is_ok() || !d.exists()) || Instant::now() > end {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if top.exists() {
                eprintln!("could not remove cgroup {}", top.display());
            }
        }
    }
}

impl Booted {
    /// systemd booted with the packages `old` (and `new`, if given) in /root.
    fn boot(scratch: &Path, old: &Path, new: Option<&Path>) -> Self {
        let cgroups = Cgroups(scratch.join("cgroups"));
        let mut holder = Command::new("unshare")
            .args(["--pid", "--mount", "--uts", "--net", "--fork", "sh", "-c", &holder(), "holder"])
            .arg(scratch.join("overlay"))
            .arg(&cgroups.0)
            .arg(old)
            .arg(new.unwrap_or(Path::new("")))
            // Unique per test: the scratch directory's name (pid and test).
            .arg(scratch.file_name().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.join("holder.err")).unwrap())
            .spawn()
            .unwrap();
        let me = holder.id();
        let end = Instant::now() + common::WAIT;
        let pid = loop {
            let children = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
            if let Some(p) = children.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()) {
                if std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e.ends_with("systemd")) {
                    break p;
                }
            }
            if let Ok(Some(st)) = holder.try_wait() {
                let err = std::fs::read_to_string(scratch.join("holder.err")).unwrap_or_default();
                panic!("the namespace holder ended before systemd ran: {st}\n{err}");
            }
            if Instant::now() > end {
                let _ = holder.kill();
                let _ = holder.wait();
                panic!("systemd never started in its namespaces");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let booted = Self { holder, pid, _cgroups: cgroups };
        let end = Instant::now() + common::WAIT;
        loop {
            let state = booted.run("systemctl is-system-running").1;
            match state.trim() {
                "running" | "degraded" => break,
                s => {
                    assert!(Instant::now() < end, "systemd did not finish booting ({s}): {}", booted.run("systemctl --failed --no-pager").1)
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        booted
    }

    /// Runs `script` inside (its root, namespaces, a clean environment): success and output.
    fn run(&self, script: &str) -> (bool, String) {
        let o = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-u", "-n", "-p", "-r", "-w", "--"])
            .args(["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "/bin/sh", "-c", script, "inside"])
            .args([format!("{}-1", env!("CARGO_PKG_VERSION")), format!("{}+up1-1", env!("CARGO_PKG_VERSION"))])
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // SIGKILL to PID 1 of the namespace ends every process in it.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
        // unshare reaps it and exits; killed only if it does not.
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && matches!(self.holder.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        // Then the cgroups go (the field drops after this).
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_dir() {
        out.push(dir.to_path_buf());
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// True when systemd can be booted here (root, systemd, cargo-deb, dpkg,
/// unshare, and FUSE if `fuse`); otherwise says why (and fails under
/// SAFEKIT_REQUIRE_PRIVILEGED=1).
fn can_boot(fuse: bool) -> bool {
    let why = "the systemd package test needs root, systemd (apt-get install systemd), cargo-deb (cargo install cargo-deb), dpkg, unshare and overlayfs";
    if !common::privileged(why, &["cargo-deb", "dpkg", "unshare", "nsenter", "chroot"], fuse) {
        return false;
    }
    if !Path::new("/lib/systemd/systemd").exists() {
        assert!(std::env::var("SAFEKIT_REQUIRE_PRIVILEGED").as_deref() != Ok("1"), "no /lib/systemd/systemd: {why}");
        println!("SKIPPED: {why} (no /lib/systemd/systemd)");
        return false;
    }
    true
}

#[test]
fn the_package_under_systemd_enables_restarts_upgrades_and_removes_the_daemon() {
    let _serial = common::serial();
    if !can_boot(false) {
        return;
    }
    let dir = common::tempdir::Dir::new("systemd");
    let version = env!("CARGO_PKG_VERSION");
    let old = common::cargo_deb(&dir.path().join("n"), &format!("{version}-1"));
    let new = common::cargo_deb(&dir.path().join("n1"), &format!("{version}+up1-1"));
    std::fs::create_dir_all(dir.path().join("overlay")).unwrap();
    let booted = Booted::boot(dir.path(), &old, Some(&new));
    let (ok, text) = booted.run(INSIDE);
    let steps: Vec<&str> = text.lines().filter(|l| l.starts_with("STEP ")).collect();
    println!("{}", steps.join("\n"));
    assert!(ok, "{text}");
    assert_eq!(steps.len(), 6, "{text}");
    drop(booted);
    let host = Command::new("dpkg-query").args(["-W", "safekit"]).output().unwrap();
    assert!(!host.status.success(), "the package reached this machine's dpkg: {}", String::from_utf8_lossy(&host.stdout));
}

/// The bundled `mirror` template's scripts against real systemd units: on
/// a node forced primary, SERVICES start in order and each is checked
/// active, the replicated directory is mounted and the VIP up; a stop
/// stops them in the reverse order and removes the VIP; a unit that does
/// not stay active stops the module by itself, the units before it
/// stopped again. One node (the other is never heard: addresses on a veth
/// pair inside systemd's own network namespace).
/// Shell lines: the package installed, node `pkg` of a two-node cluster
/// whose other node is never heard (10.99.0.1 and .2 on a veth pair inside
/// systemd's own network namespace), helpers `fail` (prints `$module`'s
/// log) and `until_true`.
macro_rules! one_node_of_two {
    () => {
        r#"set -eu
fail() { echo "FAILED: $*"; safekit log -m "$module" 2>/dev/null | tail -n 30 || true; exit 1; }
until_true() { i=0; until eval "$1" >/dev/null 2>&1; do [ $i -lt 600 ] || fail "$2"; sleep 0.1; i=$((i+1)); done; }
dpkg -i /root/old.deb >/dev/null
ip link add eth0 type veth peer name eth0p
ip addr add 10.99.0.1/24 dev eth0
ip link set eth0p up
ip link set eth0 up
cat >/var/safekit/cluster/cluster.xml <<'X'
<cluster>
  <lans>
    <lan name="default">
      <node name="pkg" addr="10.99.0.1"/>
      <node name="other" addr="10.99.0.2"/>
    </lan>
  </lans>
</cluster>
X
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >/var/safekit/cluster/cluster.key
"#
    };
}

const MIRROR: &str = concat!(
    "module=mirror\n",
    one_node_of_two!(),
    r#"# The application: three units; each start and stop is written down in order.
for u in app-a app-b broken; do
  run=/bin/sleep; [ $u = broken ] && run=/bin/false
  cat >/etc/systemd/system/$u.service <<X
[Service]
ExecStartPre=/bin/sh -c 'echo start $u >>/root/order'
ExecStart=$run infinity
ExecStopPost=/bin/sh -c 'echo stop $u >>/root/order'
X
done
systemctl daemon-reload
systemctl start safekit
until_true "safekit state" "the daemon systemd started does not answer"
safekit module install -m mirror /opt/safekit/Application_Modules/generic/mirror.safe
conf=/opt/safekit/modules/mirror/conf/userconfig.xml
sed -i -e 's|name="VIRTUAL_IP" value=""|name="VIRTUAL_IP" value="10.99.0.100"|' \
  -e 's|name="REPLICATED_DIR" value=""|name="REPLICATED_DIR" value="/srv/data"|' \
  -e 's|name="SERVICES" value=""|name="SERVICES" value="app-a app-b"|' "$conf"
mkdir -p /srv/data
safekit confcheck -m mirror
safekit config -m mirror
safekit prim -m mirror
safekit waitstate -m mirror ALONE --timeout 60
systemctl is-active --quiet app-a && systemctl is-active --quiet app-b || fail "SERVICES not active on the primary"
test "$(cat /root/order | tr '\n' ,)" = "start app-a,start app-b," || fail "start order: $(cat /root/order)"
ip -4 addr show dev eth0 | grep -q "10.99.0.100/" || fail "the VIP is not on eth0"
grep -q " /srv/data fuse" /proc/mounts || fail "/srv/data is not the replicated mount"
echo "STEP ALONE: app-a then app-b active, VIP up, /srv/data replicated"

: >/root/order
safekit stop -m mirror
safekit waitstate -m mirror STOP --timeout 60
systemctl is-active --quiet app-a && fail "app-a still active after the stop"
systemctl is-active --quiet app-b && fail "app-b still active after the stop"
test "$(grep stop /root/order | tr '\n' ,)" = "stop app-b,stop app-a," || fail "stop order: $(cat /root/order)"
ip -4 addr show dev eth0 | grep -q "10.99.0.100/" && fail "the VIP stayed after the stop"
echo "STEP STOP: app-b then app-a stopped, VIP removed"

: >/root/order
sed -i 's|name="SERVICES" value="app-a app-b"|name="SERVICES" value="app-a broken"|' "$conf"
safekit config -m mirror
safekit prim -m mirror
until_true "safekit log -m mirror | grep -q 'broken is not active after 10 s'" "start_prim did not notice broken is not active"
safekit waitstate -m mirror STOP --timeout 60
systemctl is-active --quiet app-a && fail "app-a left active after the failed start"
ip -4 addr show dev eth0 | grep -q "10.99.0.100/" && fail "the VIP stayed after the failed start"
echo "STEP a unit that does not stay active: the module stopped, app-a stopped again, VIP removed"
"#
);

/// The bundled `mariadb` template's systemd path (MARIADB_SERVICE=mariadb,
/// the guide's setup where systemd runs): forced primary, the distribution's
/// mariadb unit started on the replicated /var/lib/mysql and answering;
/// stopped with the module.
const MARIADB: &str = concat!(
    "module=mariadb\n",
    one_node_of_two!(),
    r#"systemctl start safekit
until_true "safekit state" "the daemon systemd started does not answer"
safekit module install -m mariadb /opt/safekit/Application_Modules/generic/mariadb.safe
sed -i 's|name="VIRTUAL_IP" value=""|name="VIRTUAL_IP" value="10.99.0.100"|' /opt/safekit/modules/mariadb/conf/userconfig.xml
safekit confcheck -m mariadb
safekit config -m mariadb
safekit prim -m mariadb
safekit waitstate -m mariadb ALONE --timeout 180
systemctl is-active --quiet mariadb || fail "the mariadb unit is not active on the primary"
grep -q " /var/lib/mysql fuse" /proc/mounts || fail "/var/lib/mysql is not the replicated mount"
mariadb -e "CREATE DATABASE t61; CREATE TABLE t61.t (id INT PRIMARY KEY); INSERT INTO t61.t VALUES (1)"
test "$(mariadb -N -B -e 'SELECT count(*) FROM t61.t')" = 1 || fail "mariadb does not serve"
echo "STEP ALONE: the mariadb unit runs on the replicated /var/lib/mysql and serves"
safekit stop -m mariadb
safekit waitstate -m mariadb STOP --timeout 180
systemctl is-active --quiet mariadb && fail "the mariadb unit still runs after the stop"
echo "STEP STOP: the mariadb unit stopped with the module"
"#
);

#[test]
fn the_mirror_template_starts_and_stops_its_systemd_units_in_order() {
    run_one_node("systemd-mirror", MIRROR, 3);
}

#[test]
fn the_mariadb_template_drives_the_mariadb_unit_where_systemd_runs() {
    if !common::privileged("the mariadb template test needs MariaDB (apt-get install mariadb-server)", &["mariadbd", "mariadb"], false) {
        return;
    }
    run_one_node("systemd-mariadb", MARIADB, 2);
}

/// Boots systemd with the package (version N) and runs `script` inside:
/// it must succeed and print `steps` STEP lines.
fn run_one_node(name: &str, script: &str, steps: usize) {
    let _serial = common::serial();
    if !can_boot(true) {
        return;
    }
    let dir = common::tempdir::Dir::new(name);
    let deb = common::cargo_deb(&dir.path().join("n"), &format!("{}-1", env!("CARGO_PKG_VERSION")));
    std::fs::create_dir_all(dir.path().join("overlay")).unwrap();
    let booted = Booted::boot(dir.path(), &deb, None);
    let (ok, text) = booted.run(script);
    let printed: Vec<&str> = text.lines().filter(|l| l.starts_with("STEP ")).collect();
    println!("{}", printed.join("\n"));
    assert!(ok, "{text}");
    assert_eq!(printed.len(), steps, "{text}");
}
