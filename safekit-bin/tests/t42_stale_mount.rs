//! A daemon killed with SIGKILL leaves its FUSE mount behind ("Transport
//! endpoint is not connected"); the next start detaches it and mounts again
//! without manual steps. One node on loopback (root, FUSE); without root the
//! test says so and passes, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node {
    root: PathBuf,
    daemon: Option<Child>,
}

impl Node {
    fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(common::exe()).args(args).env("SAFE", self.root.join("safe")).env("SAFEVAR", self.root.join("var")).output().unwrap()
    }
    fn start(&mut self) {
        let log = std::fs::File::create(self.root.join("daemon.log")).unwrap();
        self.daemon = Some(
            Command::new(common::exe())
                .arg("daemon")
                .env("SAFE", self.root.join("safe"))
                .env("SAFEVAR", self.root.join("var"))
                .env("SAFEKIT_NODE", "node1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let end = Instant::now() + Duration::from_secs(30);
        while !self.cli(&["state"]).status.success() {
            assert!(
                Instant::now() < end,
                "daemon did not start: {}",
                std::fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn alone(&self) {
        let out = self.cli(&["prim", "-m", "demo"]);
        assert!(out.status.success(), "{out:?}");
        let out = self.cli(&["waitstate", "-m", "demo", "ALONE", "--timeout", "30"]);
        assert!(out.status.success(), "{out:?} {}", String::from_utf8_lossy(&self.cli(&["log", "-m", "demo"]).stdout));
    }
    fn log(&self) -> String {
        String::from_utf8_lossy(&self.cli(&["log", "-m", "demo", "-s", "500", "-A"]).stdout).to_string()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..4 {
            let _ = nix::mount::umount2(&self.data(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn a_mount_left_by_a_killed_daemon_is_detached_at_the_next_start() {
    if !common::privileged("stale-mount test needs root and /dev/fuse", &[], true) {
        return;
    }
    let root = std::env::temp_dir().join(format!("skstale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut node = Node { root: root.clone(), daemon: None };
    let w = |p: PathBuf, s: &str| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    w(
        root.join("var/cluster/cluster.xml"),
        r#"<cluster><lans><lan name="default"><node name="node1" addr="127.0.0.1"/><node name="node2" addr="127.0.0.2"/></lan></lans></cluster>"#,
    );
    w(root.join("var/cluster/cluster.key"), &"ab".repeat(32));
    std::fs::create_dir_all(node.data()).unwrap();
    w(
        root.join("safe/modules/demo/conf/userconfig.xml"),
        &format!(
            r#"<safe><service mode="mirror"><heart pulse="100ms" timeout="1000ms"><heartbeat name="default"/></heart>
<rfs><replicated dir="{}"><tocheck path="marker"/></replicated></rfs></service></safe>"#,
            node.data().display()
        ),
    );
    node.start();
    // tocheck: without its marker the directory is not replicated (and the module does not go ALONE).
    let out = node.cli(&["prim", "-m", "demo"]);
    assert!(out.status.success(), "{out:?}");
    let end = Instant::now() + Duration::from_secs(30);
    while !node.log().contains("marker is missing (tocheck)") {
        assert!(Instant::now() < end, "tocheck not enforced: {}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = node.cli(&["stop", "-m", "demo"]);
    std::fs::write(node.data().join("marker"), "").unwrap();
    node.alone();
    std::fs::write(node.data().join("through-the-mount"), b"1").unwrap();
    // SIGKILL: nothing unmounts.
    let mut c = node.daemon.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    let err = std::fs::metadata(node.data().join("through-the-mount")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    node.start();
    node.alone();
    assert!(node.log().contains("Stale replication mount"), "{}", node.log());
    assert_eq!(std::fs::read(node.data().join("through-the-mount")).unwrap(), b"1");
    std::fs::write(node.data().join("after"), b"2").unwrap();
}
