//! docs/QUICKSTART.md, run as written: two servers (copy-on-write views of
//! this machine's root, each in its own mount, UTS and network namespace,
//! named node1 and node2, on a private bridge) and a client; each block of
//! the guide runs where its `<!-- quickstart: … -->` comment says, in
//! order, the rolling upgrade to a second package version (this binary,
//! a higher version) included. Blocks marked `skip` are done by the test
//! as the comment says (an unknown one fails the test, so the guide cannot
//! grow untested steps). Without root, FUSE, cargo-deb or MariaDB this test says so and
//! passes, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const GUIDE: &str = include_str!("../../docs/QUICKSTART.md");
const PREFIX: &str = "qs";

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(o.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
}

/// One of the guide's servers: a sleeper process holding its namespaces,
/// and the overlay root (a path inside its mount namespace).
struct Server {
    name: &'static str,
    sleeper: Child,
    pid: i32,
    root: PathBuf,
}

/// After [`common::OVERLAY_ROOT`] (in a mount namespace of its own): names
/// the server, writes the namespace holder's PID, then sleeps.
const HOLD: &str = r#"hostname "$name"
ip link set lo up
echo $$ >"$pidfile"
exec sleep 3600
"#;

impl Server {
    fn start(name: &'static str, ns: &str, scratch: &Path) -> Self {
        let pidfile = scratch.join(format!("{name}.pid"));
        let work = scratch.join(format!("{name}-overlay"));
        let sleeper = Command::new("ip")
            .args(["netns", "exec", ns, "unshare", "--mount", "--uts", "--fork", "sh", "-c"])
            .arg(format!("set -eu\nw=$1; name=$2; pidfile=$3\n{}{HOLD}", common::OVERLAY_ROOT))
            .arg("hold")
            .arg(&work)
            .arg(name)
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + common::WAIT;
        let pid = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile).ok().and_then(|t| t.trim().parse::<i32>().ok()) {
                break p;
            }
            assert!(Instant::now() < end, "{name}'s namespaces never came up");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self { name, sleeper, pid, root: work.join("root") }
    }

    /// `nsenter` into the server's namespaces (not its root).
    fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid.to_string(), "-m", "-u", "-n", "--"]);
        c
    }

    /// Runs `script` as root on the server (chrooted, in /root); its output.
    fn sh(&self, script: &str) -> String {
        self.try_sh(script).unwrap_or_else(|e| panic!("{e}\n--- daemon log:\n{}", self.daemon_log()))
    }

    /// [`Server::sh`], its failure returned (what ran and printed).
    fn try_sh(&self, script: &str) -> Result<String, String> {
        let o = self
            .enter()
            .arg("chroot")
            .arg(&self.root)
            .args(["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "/bin/sh", "-ec"])
            .arg(format!("cd /root\n{script}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            Ok(text)
        } else {
            Err(format!("on {}:\n{script}\n--- failed:\n{text}", self.name))
        }
    }

    fn sh_quiet(&self, script: &str) -> bool {
        self.enter().arg("chroot").arg(&self.root).args(["/bin/sh", "-c", script]).status().is_ok_and(|s| s.success())
    }

    /// The daemon's last lines, and MariaDB's (the template's direct start logs there).
    fn daemon_log(&self) -> String {
        let tail = |f: &str, n: &str| {
            let o = self.enter().arg("tail").arg("-n").arg(n).arg(self.root.join(f)).output();
            o.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default()
        };
        format!(
            "{}--- mariadbd.err:\n{}",
            tail("var/log/safekit-test.log", "80"),
            tail("var/safekit/modules/mariadb/mariadb/mariadbd.err", "30")
        )
    }

    /// Copies a host file into the server's root.
    fn put(&self, from: &Path, to: &str) {
        let o = self.enter().arg("cp").arg(from).arg(self.root.join(to.trim_start_matches('/'))).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// What the package's `systemctl try-restart safekit` does where
    /// systemd runs: the daemon stopped (SIGTERM, as systemd) and started
    /// again from the binary now installed.
    fn restart_daemon(&self) {
        self.sh("pid=$(cat /run/safekit-test.pid)\nkill -TERM \"$pid\"\ni=0; while kill -0 \"$pid\" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n! kill -0 \"$pid\" 2>/dev/null");
        self.start_daemon();
    }

    /// What the guide's `systemctl restart safekit` does where systemd runs.
    fn start_daemon(&self) {
        self.sh("safekit daemon >/var/log/safekit-test.log 2>&1 &\necho $! >/run/safekit-test.pid");
        let end = Instant::now() + common::WAIT;
        while self.enter().arg("chroot").arg(&self.root).args(["safekit", "state"]).output().map(|o| !o.status.success()).unwrap_or(true) {
            assert!(Instant::now() < end, "{}'s daemon does not answer: {}", self.name, self.daemon_log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The daemon stops its module cleanly (stop scripts: mariadbd shut down)…
        let _ = self.sh_quiet("kill -TERM \"$(cat /run/safekit-test.pid)\" 2>/dev/null; i=0; while kill -0 \"$(cat /run/safekit-test.pid)\" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done");
        // …then whatever still runs in this server's mount namespace is ours
        // (the holder too: `unshare --fork` runs it as a child of its own): SIGKILL, by PID.
        let mine = std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid)).ok();
        for p in std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
            if mine.is_some() && std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok() == mine {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
        }
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
    }
}

/// The namespaces and bridge, removed on drop.
struct Net;

impl Net {
    fn setup() -> Self {
        for ns in ["sw", "n1", "n2", "cl"] {
            let _ = Command::new("ip").args(["netns", "del", &format!("{PREFIX}-{ns}")]).output();
            ip(&["netns", "add", &format!("{PREFIX}-{ns}")]);
        }
        let sw = format!("{PREFIX}-sw");
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for (ns, addr) in [("n1", "192.168.50.1/24"), ("n2", "192.168.50.2/24"), ("cl", "192.168.50.10/24")] {
            let full = format!("{PREFIX}-{ns}");
            let port = format!("p-{ns}");
            ip(&["-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &full]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &full, "addr", "add", addr, "dev", "eth0"]);
            ip(&["-n", &full, "link", "set", "eth0", "up"]);
            ip(&["-n", &full, "link", "set", "lo", "up"]);
        }
        Self
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in ["sw", "n1", "n2", "cl"] {
            let _ = Command::new("ip").args(["netns", "del", &format!("{PREFIX}-{ns}")]).output();
        }
    }
}

/// The guide's blocks: (where, the shell text).
fn blocks() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut target: Option<String> = None;
    let mut lines = GUIDE.lines();
    while let Some(l) = lines.next() {
        if let Some(t) = l.trim().strip_prefix("<!-- quickstart: ").and_then(|r| r.strip_suffix(" -->")) {
            target = Some(t.to_string());
        } else if l.trim() == "```sh" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            let t = target.take().unwrap_or_else(|| panic!("a sh block of QUICKSTART.md has no quickstart comment: {body:?}"));
            out.push((t, body.join("\n")));
        }
    }
    out
}

#[test]
fn the_quickstart_guide_runs_as_written() {
    let _serial = common::serial();
    let tools = ["ip", "unshare", "nsenter", "chroot", "dpkg", "cargo-deb", "mariadbd", "mariadb"];
    let why =
        "the quickstart test needs root, FUSE, overlayfs, cargo-deb (cargo install cargo-deb) and MariaDB (apt-get install mariadb-server)";
    if !common::privileged(why, &tools, true) {
        return;
    }
    let scratch = common::tempdir::Dir::new("quickstart");
    let deb = common::cargo_deb(&scratch.path().join("deb"), &format!("{}-1", env!("CARGO_PKG_VERSION")));
    // The upgrade's "new" package: this binary again, a higher version.
    let new_version = format!("{}+up1-1", env!("CARGO_PKG_VERSION"));
    let new_deb = common::cargo_deb(&scratch.path().join("deb-new"), &new_version);
    let _net = Net::setup();
    let servers =
        [Server::start("node1", &format!("{PREFIX}-n1"), scratch.path()), Server::start("node2", &format!("{PREFIX}-n2"), scratch.path())];
    for s in &servers {
        s.put(&deb, &format!("/root/{}", deb.file_name().unwrap().to_string_lossy()));
        s.put(&new_deb, "/root/safekit-new.deb");
    }
    let all = blocks();
    assert!(all.len() > 15, "QUICKSTART.md has only {} blocks", all.len());
    for (target, text) in all {
        println!("=== {target}\n{text}");
        // A failing step shows both servers' daemon logs: what one waits
        // for is often the other's doing.
        let on = |s: &Server| {
            s.try_sh(&text).unwrap_or_else(|e| {
                let logs: Vec<String> = servers.iter().map(|s| format!("--- {}'s daemon log:\n{}", s.name, s.daemon_log())).collect();
                panic!("{e}\n{}", logs.join("\n"))
            })
        };
        let out = match target.as_str() {
            "node1" => on(&servers[0]),
            "node2" => on(&servers[1]),
            "both" => servers.iter().map(on).collect::<Vec<_>>().join(""),
            "client" => {
                let o = Command::new("ip").args(["netns", "exec", &format!("{PREFIX}-cl"), "sh", "-ec", &text]).output().unwrap();
                let t = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
                assert!(o.status.success(), "on the client:\n{text}\n--- failed:\n{t}");
                t
            }
            skip if skip.starts_with("skip") => {
                if text.contains("apt-get install") || text.contains("systemctl disable --now mariadb") {
                    // mariadb-server is on this machine (the tools check above); no systemd starts it in the servers.
                    String::new()
                } else if text.starts_with("scp ") {
                    for f in ["/root/cluster.xml", "/var/safekit/cluster/cluster.key"] {
                        let name = Path::new(f).file_name().unwrap().to_string_lossy().to_string();
                        let bytes =
                            servers[0].enter().arg("cat").arg(servers[0].root.join(f.trim_start_matches('/'))).output().unwrap().stdout;
                        assert!(!bytes.is_empty(), "node1 has no {f}");
                        let to = scratch.path().join(&name);
                        std::fs::write(&to, bytes).unwrap();
                        servers[1].put(&to, &format!("/root/{name}"));
                    }
                    String::new()
                } else if text.trim() == "systemctl restart safekit" {
                    servers.iter().for_each(Server::start_daemon);
                    String::new()
                } else if text.trim() == "systemctl is-active safekit" {
                    // After `dpkg -i` on the server the comment names: the package's restart.
                    let on = skip.split_whitespace().nth(1).unwrap_or("");
                    let server = servers.iter().find(|s| s.name == on).unwrap_or_else(|| panic!("skip {text:?}: which server? {skip}"));
                    server.restart_daemon();
                    String::new()
                } else {
                    panic!("QUICKSTART.md skips a block the test does not know how to stand in for: {text}");
                }
            }
            other => panic!("QUICKSTART.md: unknown target {other:?}"),
        };
        print!("{out}");
    }
    // node1's return copied what changed while it was stopped, not everything.
    let log = servers[0].sh("safekit log -m mariadb");
    assert!(log.contains("Begin of reintegration (modified zones)") && !log.contains("Begin of reintegration (full)"), "{log}");
    // Both servers run the new package; after the rolling upgrade node2 is
    // primary and node1 secondary, every order served.
    for s in &servers {
        let v = s.sh("dpkg-query -W -f='${Version}' safekit");
        assert_eq!(v.trim(), new_version, "{}", s.name);
    }
    let end = servers[1].sh("safekit state -m mariadb");
    assert!(end.contains("PRIM"), "{end}");
    let end = servers[0].sh("safekit state -m mariadb");
    assert!(end.contains("SECOND"), "{end}");
    let rows = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{PREFIX}-cl"),
            "mariadb",
            "-h",
            "192.168.50.100",
            "-u",
            "app",
            "-psecret",
            "shop",
            "-N",
            "-B",
            "-e",
            "SELECT item FROM orders ORDER BY id",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rows.stdout), "first order\ntaken by node2\nafter the upgrade\n");
}
