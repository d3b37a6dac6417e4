//! Helpers shared by the privileged integration tests.
// Each test file uses a subset of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use safekit_bin::demo::Demo;
use safekit_core::engine::{CommandKind, State};

/// True when the test can run: root, the `tools` on PATH (`ip` must also
/// manage namespaces), `/dev/fuse` if `fuse`. Otherwise says why and
/// returns false, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI), where a skip is
/// a failure.
pub(crate) fn privileged(what: &str, tools: &[&str], fuse: bool) -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("not root".to_string())
    } else if fuse && !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing".to_string())
    } else if let Some(t) = tools.iter().find(|t| !on_path(t)) {
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

/// `tool` is an executable file in a directory of PATH (found without
/// running it: some tools, chromedriver for one, start serving on any flag).
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|d| std::fs::metadata(d.join(tool)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    })
}

/// The `safekit` binary under test.
pub(crate) fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_safekit"))
}

/// A runtime for the async demo helpers.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// How long a node may take to reach a state or log a line.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// Starts both nodes' daemons and waits until they answer.
pub(crate) async fn start_both(demo: &mut Demo) {
    demo.start_daemon(0, &exe()).unwrap();
    demo.start_daemon(1, &exe()).unwrap();
    demo.wait_daemon(0, WAIT).await.unwrap();
    demo.wait_daemon(1, WAIT).await.unwrap();
}

/// Both daemons up, node `prim` PRIM and the other SECOND.
pub(crate) async fn pair(demo: &mut Demo, prim: usize) {
    let sec = 1 - prim;
    start_both(demo).await;
    demo.command(prim, CommandKind::Prim { fullsync: false }).await.unwrap();
    demo.wait_state(prim, State::Alone, WAIT).await.unwrap();
    demo.command(sec, CommandKind::Second { fullsync: false }).await.unwrap();
    demo.wait_state(sec, State::Second, WAIT).await.unwrap();
    demo.wait_state(prim, State::Prim, WAIT).await.unwrap();
}

/// Runs the `safekit` command against node `i`: exit code, stdout + stderr.
pub(crate) fn safekit(demo: &Demo, i: usize, args: &[&str]) -> (i32, String) {
    let o = std::process::Command::new(exe())
        .args(args)
        .env("SAFE", demo.node_dir(i).join("safe"))
        .env("SAFEVAR", demo.node_dir(i).join("var"))
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
}

/// Runs the `safekit` command as node `i` inside its network namespace
/// (where the other nodes' addresses are reachable): exit code, output.
#[allow(dead_code)]
pub(crate) fn safekit_in_ns(demo: &Demo, i: usize, args: &[&str]) -> (i32, String) {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", demo.node_ns(i)])
        .arg(exe())
        .args(args)
        .env("SAFE", demo.node_dir(i).join("safe"))
        .env("SAFEVAR", demo.node_dir(i).join("var"))
        .env("SAFEKIT_NODE", format!("node{}", i + 1))
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
}

/// Waits until node `i`'s module log has a line ending with one of `texts`.
pub(crate) async fn wait_log_any(demo: &Demo, i: usize, texts: &[&str]) {
    let end = Instant::now() + WAIT;
    while !demo.log(i, 2000).await.iter().any(|l| texts.iter().any(|t| l.ends_with(t))) {
        assert!(Instant::now() < end, "node{} never logged any of {texts:?}: {:#?}", i + 1, demo.log(i, 60).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until node `i`'s module log has a line ending with `text`.
pub(crate) async fn wait_log(demo: &Demo, i: usize, text: &str) {
    wait_log_any(demo, i, &[text]).await;
}

/// Node `i`'s module state, if its daemon answers.
pub(crate) async fn state(demo: &Demo, i: usize) -> Option<State> {
    demo.status(i).await.map(|s| s.state)
}

/// Waits until node `i` is in `want`, whatever its readiness.
pub(crate) async fn wait_status(demo: &Demo, i: usize, want: State) {
    let end = Instant::now() + WAIT;
    while state(demo, i).await != Some(want) {
        assert!(Instant::now() < end, "node{} is not {want}: {:?}", i + 1, demo.status(i).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One demo cluster at a time per test binary: the demos share namespace
/// and bridge names. Held for the whole test.
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A writing client ([`safekit_bin::demo::Writer`]) whose waits fail the test.
pub(crate) struct Writer(safekit_bin::demo::Writer);

impl Writer {
    /// Spawns `cmd` with its standard output read here.
    pub(crate) fn spawn(cmd: &mut std::process::Command) -> Self {
        Self(safekit_bin::demo::Writer::spawn(cmd).unwrap())
    }

    /// How many records were acknowledged (0..n).
    pub(crate) fn acked(&self) -> u64 {
        self.0.acked()
    }

    /// Waits (a minute at most) until `n` records are acknowledged; the time it took.
    pub(crate) fn wait_for(&self, n: u64) -> Duration {
        self.0.wait_for(n, WAIT).unwrap()
    }

    /// Ends the writer; what it printed before is counted.
    pub(crate) fn stop(self) -> u64 {
        self.0.stop()
    }
}

/// Runs `cmd`: its standard output (trimmed) if it exits 0, else what it printed.
pub(crate) fn run_ok(cmd: &mut std::process::Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("{cmd:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// The module template `name` of the repository's `modules/`.
pub(crate) fn template_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules").join(name)
}

/// A shell loop `script` run in the client namespace with `arg` as `$1`,
/// printing each acknowledged record's number.
pub(crate) fn client_writer(script: &str, arg: &str) -> Writer {
    // `ip netns exec` execs sh: the child's PID is the loop's.
    Writer::spawn(
        std::process::Command::new("ip")
            .args(["netns", "exec", &Demo::client_ns(), "sh", "-c", script, "writer", arg])
            .stderr(std::process::Stdio::null()),
    )
}

/// Where a database test's HA cycle is, for what the test runs beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cycle {
    /// node1 was killed; node2 serves.
    FailedOver,
    /// node1 is PRIM again after the swap; the writer stopped.
    SwappedBack,
}

/// The HA cycle of the database tests, node1 PRIM and node2 SECOND to
/// begin with, `writer` writing through the VIP: kill -9 of node1 (its
/// daemon, then `crash` for what else runs there), node2 ALONE serves;
/// node1 back as SECOND (reintegration), swap back, node1 PRIM; both
/// modules stopped, both daemons too. `check(acked, when)` asserts every
/// acknowledged record is served at each step; `at` is told each step.
/// Returns how many records were acknowledged in all.
pub(crate) fn failover_cycle(
    demo: &mut Demo,
    rt: &tokio::runtime::Runtime,
    writer: Writer,
    crash: impl FnOnce(&Demo),
    check: impl Fn(u64, &str),
    mut at: impl FnMut(Cycle),
) -> u64 {
    use safekit_core::engine::SwapKind;
    writer.wait_for(100);
    check(writer.acked(), "node1 PRIM");
    let before = writer.acked();
    demo.crash(0);
    crash(demo);
    let crashed = Instant::now();
    must(demo, rt, rt.block_on(demo.wait_state(1, State::Alone, WAIT)));
    writer.wait_for(before + 1);
    println!("kill -9 of the primary -> first write acknowledged by node2: {} ms", crashed.elapsed().as_millis());
    at(Cycle::FailedOver);
    writer.wait_for(before + 100);
    check(writer.acked(), "node2 ALONE after the kill -9 of node1");

    // node1 comes back as SECOND (reintegration) while the client writes, then the roles are swapped back.
    demo.start_daemon(0, &exe()).unwrap();
    rt.block_on(demo.wait_daemon(0, WAIT)).unwrap();
    // `second` needs the primary heard: a daemon that just started may not
    // have had its first heartbeat yet (refused: "the other node is not
    // primary"); an administrator runs it again, so does this.
    let end = Instant::now() + WAIT;
    loop {
        match rt.block_on(demo.command(0, CommandKind::Second { fullsync: false })) {
            Err(e) if e.contains("is not primary") && Instant::now() < end => std::thread::sleep(Duration::from_millis(100)),
            r => break must(demo, rt, r),
        }
    }
    must(demo, rt, rt.block_on(demo.wait_state(0, State::Second, WAIT)));
    must(demo, rt, rt.block_on(demo.wait_state(1, State::Prim, WAIT)));
    let at_swap = writer.acked();
    must(demo, rt, rt.block_on(demo.command(1, CommandKind::Swap(SwapKind::Sync))));
    must(demo, rt, rt.block_on(demo.wait_state(0, State::Prim, WAIT)));
    must(demo, rt, rt.block_on(demo.wait_state(1, State::Second, WAIT)));
    writer.wait_for(at_swap + 100);
    let acked = writer.stop();
    at(Cycle::SwappedBack);
    check(acked, "node1 PRIM after the swap");
    println!("{acked} writes acknowledged through the failover, the reintegration and the swap");

    must(demo, rt, rt.block_on(demo.command(0, CommandKind::Stop)));
    must(demo, rt, rt.block_on(demo.wait_state(1, State::Alone, WAIT)));
    must(demo, rt, rt.block_on(demo.command(1, CommandKind::Stop)));
    rt.block_on(wait_status(demo, 1, State::Stop));
    rt.block_on(wait_status(demo, 0, State::Stop));
    demo.stop_daemon(0);
    demo.stop_daemon(1);
    acked
}

/// The database benchmarks' failover and what follows it: with `writer`
/// writing through the VIP, kill -9 of node1 (its daemon, then `crash` for
/// what else runs there); the time until node2 acknowledged a record. Then
/// node2's module and daemon are stopped, leaving its copy of the data as
/// a plain directory for the benchmark's local run.
pub(crate) fn bench_failover(demo: &mut Demo, rt: &tokio::runtime::Runtime, writer: Writer, crash: impl FnOnce(&Demo)) -> Duration {
    writer.wait_for(50);
    let before = writer.acked();
    demo.crash(0);
    crash(demo);
    let crashed = Instant::now();
    writer.wait_for(before + 1);
    let failover = crashed.elapsed();
    writer.stop();
    rt.block_on(demo.command(1, CommandKind::Stop)).unwrap();
    rt.block_on(wait_status(demo, 1, State::Stop));
    demo.stop_daemon(1);
    failover
}

/// `r`'s value, or a panic with its error and both nodes' last log lines.
fn must<T>(demo: &Demo, rt: &tokio::runtime::Runtime, r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| {
        let logs: Vec<String> = (0..2).map(|i| rt.block_on(demo.log(i, 40)).join("\n")).collect();
        panic!("{e}\n--- node1's log:\n{}\n--- node2's log:\n{}", logs[0], logs[1])
    })
}

/// A directory removed when dropped (no extra dependency for one helper).
pub(crate) mod tempdir {
    use std::path::{Path, PathBuf};

    pub(crate) struct Dir(PathBuf);

    impl Dir {
        pub(crate) fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!("safekit-cli-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The Debian package of the binary under test, made by cargo-deb into
/// `out` with package version `version`; its path.
pub(crate) fn cargo_deb(out: &Path, version: &str) -> PathBuf {
    // The binary under test, packaged as is (dev profile: no second build).
    let o = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["deb", "-p", "safekit-bin", "--no-build", "--profile", "dev", "--fast", "--deb-version", version, "-o"])
        .arg(out)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    assert!(o.status.success(), "cargo deb: {}", String::from_utf8_lossy(&o.stderr));
    let path = String::from_utf8_lossy(&o.stdout).trim().lines().last().unwrap_or("").to_string();
    assert!(path.ends_with(".deb"), "cargo deb printed {path:?}");
    path.into()
}

/// Shell lines (in a mount namespace of its own, as root) that make `$r`
/// a copy-on-write view of this machine's root, backed by a tmpfs at `$w`:
/// a "server" whose package installs and files change nothing here.
pub(crate) const OVERLAY_ROOT: &str = r#"mount --make-rprivate /
mkdir -p "$w"
mount -t tmpfs tmpfs "$w"
mkdir -p "$w/upper" "$w/work" "$w/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$w/upper,workdir=$w/work" "$w/root"
r=$w/root
mount --rbind /proc "$r/proc"
mount --rbind /dev "$r/dev"
mount --rbind /sys "$r/sys"
# No systemd inside: maintainer scripts and modules take the path without it.
mount -t tmpfs tmpfs "$r/run"
mount -t tmpfs tmpfs "$r/tmp"
"#;

/// Shell lines for the package tests: a one-node cluster (node `pkg` on
/// 127.0.0.1) with its key, and a light module `app` (its scripts are the
/// test's own), as an administrator writes them after installing.
#[macro_export]
macro_rules! package_cluster_and_module {
    () => {
        r#"cat >/var/safekit/cluster/cluster.xml <<'X'
<cluster>
  <lans>
    <lan name="default">
      <node name="pkg" addr="127.0.0.1"/>
    </lan>
  </lans>
</cluster>
X
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >/var/safekit/cluster/cluster.key
mkdir -p /opt/safekit/modules/app/conf /opt/safekit/modules/app/bin
cat >/opt/safekit/modules/app/conf/userconfig.xml <<'X'
<safe>
<service mode="light">
  <user/>
</service>
</safe>
X
"#
    };
}
