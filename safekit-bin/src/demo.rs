//! `safekit demo`: a two-node mirror cluster and a client on this machine,
//! each in a network namespace of its own on a private bridge (addresses
//! 10.77.0.0/24 exist only inside those namespaces). It starts the cluster,
//! shows PRIM/SECOND, kills the primary's daemon and application with
//! SIGKILL, shows the failover, prints the outage the client measured
//! through the virtual IP, and removes everything, also on Ctrl-C or error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use safekit_core::daemon::control::{call, Request, Response};
use safekit_core::engine::{CommandKind, Readiness, State, Status};

const PREFIX: &str = "skd";
const VIP: &str = "10.77.0.100";
const APP_PORT: u16 = 8080;

/// Where a demo node lives.
struct DemoNode {
    name: &'static str,
    ns: String,
    dir: PathBuf,
    daemon: Option<Child>,
}

/// Everything the demo created, removed on drop whatever happened.
pub struct Demo {
    nodes: Vec<DemoNode>,
    namespaces: Vec<String>,
    root: PathBuf,
    /// The replicated directory's path (same on both nodes), when enabled.
    shared: Option<PathBuf>,
    /// Extra environment of the daemons started from now on.
    env: Vec<(String, String)>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e} (install iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

const MODULE: &str = r#"<!DOCTYPE safe>
<safe>
<service mode="mirror" failover="on">
  <heart pulse="100ms" timeout="1000ms">
    <heartbeat name="default"/>
  </heart>
  <vip>
    <interface_list>
      <interface check="off" name="eth0">
        <real_interface>
          <virtual_addr addr="10.77.0.100" where="one_side_alias" check="off"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <user nicestoptimeout="10s" forcestoptimeout="10s"/>
</service>
</safe>
"#;

const START_PRIM: &str = r#"#!/bin/sh
# The demo application: answers HTTP with the serving node's name.
"$SAFE/safekit" demo-app --port 8080 >/dev/null 2>&1 &
echo $! > "$SAFEUSERVAR/app.pid"
"$SAFE/safekit" printi "demo application started (pid $!)"
"#;

const STOP_PRIM: &str = r#"#!/bin/sh
# Graceful stop, then (force) kill what is left.
[ -f "$SAFEUSERVAR/app.pid" ] || exit 0
if [ "$1" = "force" ]; then
  kill -9 "$(cat "$SAFEUSERVAR/app.pid")" 2>/dev/null
  rm -f "$SAFEUSERVAR/app.pid"
else
  kill "$(cat "$SAFEUSERVAR/app.pid")" 2>/dev/null
fi
exit 0
"#;

impl Demo {
    /// Builds the namespaces, the bridge and the two nodes' files.
    pub fn setup() -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("safekit demo needs root (network namespaces and virtual IPs)".into());
        }
        let root = std::env::temp_dir().join(format!("safekit-demo-{}", std::process::id()));
        let mut demo = Self { nodes: Vec::new(), namespaces: Vec::new(), root: root.clone(), shared: None, env: Vec::new() };
        for ns in ["sw", "n1", "n2", "cl"] {
            let name = format!("{PREFIX}-{ns}");
            // A namespace of that name is a leftover of an interrupted demo.
            let _ = ip(&["netns", "del", &name]);
            ip(&["netns", "add", &name])?;
            demo.namespaces.push(name);
        }
        let sw = format!("{PREFIX}-sw");
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for (ns, addr) in [("n1", "10.77.0.1/24"), ("n2", "10.77.0.2/24"), ("cl", "10.77.0.10/24")] {
            let full = format!("{PREFIX}-{ns}");
            let port = format!("p-{ns}");
            ip(&["-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &full])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &full, "addr", "add", addr, "dev", "eth0"])?;
            ip(&["-n", &full, "link", "set", "eth0", "up"])?;
            ip(&["-n", &full, "link", "set", "lo", "up"])?;
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
        let cluster = r#"<cluster>
  <lans>
    <lan name="default">
      <node name="node1" addr="10.77.0.1"/>
      <node name="node2" addr="10.77.0.2"/>
    </lan>
  </lans>
</cluster>
"#;
        for (name, ns) in [("node1", "n1"), ("node2", "n2")] {
            let dir = root.join(name);
            let w = |p: PathBuf, s: &str| -> Result<(), String> {
                std::fs::create_dir_all(p.parent().unwrap_or(&root)).map_err(|e| e.to_string())?;
                std::fs::write(&p, s).map_err(|e| format!("{}: {e}", p.display()))
            };
            w(dir.join("var/cluster/cluster.xml"), cluster)?;
            w(dir.join("var/cluster/cluster.key"), &hex::encode(key))?;
            w(dir.join("safe/modules/demo/conf/userconfig.xml"), MODULE)?;
            for (script, text) in [("start_prim", START_PRIM), ("stop_prim", STOP_PRIM)] {
                let p = dir.join("safe/modules/demo/bin").join(script);
                w(p.clone(), text)?;
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(|e| e.to_string())?;
            }
            demo.nodes.push(DemoNode { name, ns: format!("{PREFIX}-{ns}"), dir, daemon: None });
        }
        Ok(demo)
    }

    /// Sets `key=value` in the environment of the daemons started from now
    /// on (e.g. `SAFEKIT_PASSTHROUGH=0` for the other kernel cache mode).
    pub fn set_daemon_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Starts the daemon of node `i` (0 or 1) inside its namespace.
    pub fn start_daemon(&mut self, i: usize, exe: &Path) -> Result<(), String> {
        let n = &mut self.nodes[i];
        let log = std::fs::File::create(n.dir.join("daemon.log")).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &n.ns]);
        if let Some(shared) = &self.shared {
            // `ip netns exec` gives the daemon a mount namespace of its own:
            // there, the node's own data directory appears at the shared
            // path, as on two real servers.
            cmd.args(["sh", "-c", r#"mount --bind "$1" "$2" && exec "$3" daemon"#, "sh"]).arg(n.dir.join("data")).arg(shared).arg(exe);
        } else {
            cmd.arg(exe).arg("daemon");
        }
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("SAFE", n.dir.join("safe"))
            .env("SAFEVAR", n.dir.join("var"))
            .env("SAFEKIT_NODE", n.name)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start the daemon of {}: {e}", n.name))?;
        n.daemon = Some(child);
        Ok(())
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("var/run/safekit.sock")
    }

    /// Sends a command to node `i`'s module.
    pub async fn command(&self, i: usize, kind: CommandKind) -> Result<(), String> {
        match call(&self.socket(i), &Request::Command { module: "demo".into(), kind, identity: None }).await? {
            Response::Error(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Node `i`'s module status, if its daemon answers.
    pub async fn status(&self, i: usize) -> Option<Status> {
        match call(&self.socket(i), &Request::State { module: Some("demo".into()) }).await {
            Ok(Response::States(s)) => s.first().map(|s| s.status),
            _ => None,
        }
    }

    /// Waits until node `i` answers (its daemon is up).
    pub async fn wait_daemon(&self, i: usize, limit: Duration) -> Result<(), String> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.status(i).await.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.nodes[i].dir.join("daemon.log")).unwrap_or_default();
        Err(format!("the daemon of {} did not start:\n{log}", self.nodes[i].name))
    }

    /// Waits until node `i` is in `state` (Ready).
    pub async fn wait_state(&self, i: usize, state: State, limit: Duration) -> Result<(), String> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.status(i).await == Some(Status::new(state, Readiness::Ready)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("{} did not reach {state} (now {:?})", self.nodes[i].name, self.status(i).await))
    }

    /// Stops node `i`'s daemon cleanly (SIGTERM: its modules stop as at a
    /// shutdown) and waits for it to exit.
    pub fn stop_daemon(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].daemon.take() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)), nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to node `i`'s daemon (SIGSTOP/SIGCONT: a paused node).
    pub fn signal_daemon(&self, i: usize, sig: nix::sys::signal::Signal) -> Result<(), String> {
        let pid = self.nodes[i].daemon.as_ref().map(Child::id).ok_or("the node's daemon is not running")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0)), sig).map_err(|e| e.to_string())
    }

    /// The MAC address of node `i`'s eth0.
    pub fn mac(&self, i: usize) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["-n", &self.nodes[i].ns, "-o", "link", "show", "eth0"])
            .output()
            .map_err(|e| format!("ip: {e} (install iproute2)"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(ToString::to_string)
            .ok_or_else(|| format!("no MAC address in: {text}"))
    }

    /// Kills node `i`'s daemon and application with SIGKILL (a crash).
    pub fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(mut c) = n.daemon.take() {
            // `ip netns exec` execs the daemon: this PID is the daemon's.
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_applications(&n.dir);
    }

    /// Adds `<rfs>` (with `%DIR%` standing for the replicated directory) to
    /// the module on both nodes; returns the replicated directory's path.
    pub fn enable_replication(&mut self, rfs: &str) -> Result<PathBuf, String> {
        let shared = self.replicated_dir()?;
        for n in &self.nodes {
            let conf = n.dir.join("safe/modules/demo/conf/userconfig.xml");
            let text = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
            let text = text.replacen("  <user ", &format!("{}\n  <user ", rfs.replace("%DIR%", &shared.display().to_string())), 1);
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        }
        Ok(shared)
    }

    /// The path each node's daemon sees its own data directory at (the
    /// same on both, as on two servers), for a module that replicates it;
    /// the daemons started from now on get it.
    pub fn replicated_dir(&mut self) -> Result<PathBuf, String> {
        let shared = self.root.join("replicated");
        std::fs::create_dir_all(&shared).map_err(|e| e.to_string())?;
        for n in &self.nodes {
            std::fs::create_dir_all(n.dir.join("data")).map_err(|e| e.to_string())?;
        }
        self.shared = Some(shared.clone());
        Ok(shared)
    }

    /// Replaces the demo module on both nodes (still named `demo`) by the
    /// module in `dir` (SafeKit's layout: `conf/userconfig.xml`, `bin/`),
    /// its configuration given as `userconfig` (a template filled in).
    pub fn use_module(&mut self, dir: &Path, userconfig: &str) -> Result<(), String> {
        for n in &self.nodes {
            let module = n.dir.join("safe/modules/demo");
            let _ = std::fs::remove_dir_all(&module);
            std::fs::create_dir_all(module.join("conf")).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(module.join("bin")).map_err(|e| e.to_string())?;
            std::fs::write(module.join("conf/userconfig.xml"), userconfig).map_err(|e| e.to_string())?;
            let scripts = std::fs::read_dir(dir.join("bin")).map_err(|e| format!("{}: {e}", dir.display()))?;
            for f in scripts.flatten() {
                let to = module.join("bin").join(f.file_name());
                std::fs::copy(f.path(), &to).map_err(|e| format!("{}: {e}", f.path().display()))?;
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Node `i`'s real data directory (what the replicated directory holds on that node).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("data")
    }

    /// Runs `args` inside node `i`'s network and mount namespaces (where
    /// its replicated directory is mounted), like its application would.
    pub fn in_node(&self, i: usize) -> Result<Command, String> {
        let pid = self.nodes[i].daemon.as_ref().map(Child::id).ok_or("the node's daemon is not running")?;
        let mut c = Command::new("nsenter");
        c.args(["-t", &pid.to_string(), "-m", "-n", "--"]);
        Ok(c)
    }

    /// Node `i`'s directory (`safe/`, `var/`, `daemon.log`).
    pub fn node_dir(&self, i: usize) -> &Path {
        &self.nodes[i].dir
    }

    /// Node `i`'s network namespace.
    pub fn node_ns(&self, i: usize) -> &str {
        &self.nodes[i].ns
    }

    /// Plugs or unplugs node `i`'s cable (its eth0 goes down).
    pub fn link(&self, i: usize, up: bool) -> Result<(), String> {
        ip(&["-n", &self.nodes[i].ns, "link", "set", "eth0", if up { "up" } else { "down" }])
    }

    /// The namespace of the client.
    pub fn client_ns() -> String {
        format!("{PREFIX}-cl")
    }

    /// A node's log lines.
    pub async fn log(&self, i: usize, lines: usize) -> Vec<String> {
        match call(&self.socket(i), &Request::Log { module: "demo".into(), lines, verbose: false }).await {
            Ok(Response::Lines(l)) => l,
            _ => Vec::new(),
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.daemon.take() {
                // A clean stop: scripts run, the VIP is removed.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let end = Instant::now() + Duration::from_secs(15);
                while Instant::now() < end && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            kill_applications(&n.dir);
        }
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        if std::env::var_os("SAFEKIT_DEMO_KEEP").is_some() {
            eprintln!("SAFEKIT_DEMO_KEEP: node files kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// SIGKILL to every process whose pid file (`*.pid`) the module's scripts
/// left in the node's `var/modules/demo` (one level of subdirectories):
/// the application dies with the node.
fn kill_applications(node: &Path) {
    let var = node.join("var/modules/demo");
    let mut files: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(&var).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path()));
        } else {
            files.push(p);
        }
    }
    for f in files.iter().filter(|f| f.extension().is_some_and(|x| x == "pid")) {
        if let Some(pid) = std::fs::read_to_string(f).ok().and_then(|t| t.trim().parse::<i32>().ok()).filter(|p| *p > 1) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The demo application: answers every HTTP request with the serving node
/// (IPv6 and IPv4 when the kernel has IPv6, else IPv4). It answers once
/// the request's head has arrived, or after 5 s without one.
pub fn serve_app(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|_| TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))))?;
    let node = std::env::var("SAFEKIT_NODE").unwrap_or_else(|_| "unknown".into());
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let body = format!("{node}\n");
        let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
    Ok(())
}

/// One probe result: when, and which node answered (None = failure).
pub type Sample = (Duration, Option<String>);

/// Probes `http://VIP:8080/` every 10 ms from inside namespace `ns` (a
/// thread of its own, moved into that namespace) until `stop` is set.
pub fn probe(ns: &str, stop: Arc<AtomicBool>, out: Arc<Mutex<Vec<Sample>>>) -> Result<std::thread::JoinHandle<()>, String> {
    probe_from(ns, Instant::now(), stop, out)
}

/// [`probe`] with sample times counted from `start`.
pub fn probe_from(
    ns: &str,
    start: Instant,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Sample>>>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("namespace {ns}: {e}"))?;
    Ok(std::thread::spawn(move || {
        if nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return;
        }
        let addr: SocketAddr = format!("{VIP}:{APP_PORT}").parse().unwrap_or_else(|_| SocketAddr::from(([10, 77, 0, 100], APP_PORT)));
        // Bounded: at most ten minutes of probing.
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(600) {
            let t = start.elapsed();
            let answer = (|| -> Option<String> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
                s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
                let mut r = String::new();
                s.read_to_string(&mut r).ok()?;
                r.rsplit("\r\n\r\n").next().map(|b| b.trim().to_string()).filter(|b| !b.is_empty())
            })();
            if let Ok(mut v) = out.lock() {
                v.push((t, answer));
            }
            std::thread::sleep(Duration::from_millis(10).saturating_sub(start.elapsed() - t));
        }
    }))
}

/// `GET path` on node `i`'s web service (port 9010), from the client's
/// namespace: the status code and the body, `None` if nothing answered
/// within two seconds.
pub fn web_get(i: usize, path: &str) -> Option<(u16, String)> {
    web_call(i, "GET", path, &[], "").map(|(code, _, body)| (code, body))
}

/// One HTTP/1.0 request to node `i`'s web service from the client's
/// namespace: the status code, the response headers and the body.
pub fn web_call(i: usize, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String, String)> {
    let addr = SocketAddr::from(([10, 77, 0, u8::try_from(i + 1).unwrap_or(1)], 9010));
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let request = format!("{method} {path} HTTP/1.0\r\nHost: 10.77.0.{}\r\nContent-Length: {}\r\n{extra}\r\n{body}", i + 1, body.len());
    in_client_ns(move || -> Option<(u16, String, String)> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        let code = r.split(' ').nth(1)?.parse().ok()?;
        let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
        Some((code, head.to_string(), body.to_string()))
    })
    .join()
    .ok()
    .flatten()
    .flatten()
}

/// Runs `f` on a thread of its own inside the client's namespace (its
/// sockets reach only 10.77.0.0/24); `None` if the namespace cannot be
/// entered.
pub fn in_client_ns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<Option<T>> {
    let file = std::fs::File::open(format!("/run/netns/{}", Demo::client_ns()));
    std::thread::spawn(move || {
        nix::sched::setns(file.ok()?.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        Some(f())
    })
}

/// The outage seen by the probe: from the last answer of `from` to the first
/// answer of another node.
pub fn outage(samples: &[Sample], from: &str) -> Option<Duration> {
    let last_old = samples.iter().rposition(|(_, a)| a.as_deref() == Some(from))?;
    let first_new = samples[last_old..].iter().find(|(_, a)| a.as_ref().is_some_and(|n| n != from))?;
    Some(first_new.0 - samples[last_old].0)
}

/// The whole demo, printing what happens; returns the measured outage.
pub async fn run(exe: &Path, keep: bool) -> Result<Duration, String> {
    if Path::new(crate::demo_keep::STATE).exists() {
        return Err(format!("a kept demo cluster runs ({}): safekit demo --clean first", crate::demo_keep::STATE));
    }
    println!("safekit demo: node1 10.77.0.1, node2 10.77.0.2, client 10.77.0.10, virtual IP {VIP}");
    println!("  (network namespaces {PREFIX}-n1, {PREFIX}-n2, {PREFIX}-cl on bridge br0 in {PREFIX}-sw; heartbeat pulse 100 ms, timeout 1000 ms)");
    let mut demo = Demo::setup()?;
    demo.start_daemon(0, exe)?;
    demo.start_daemon(1, exe)?;
    demo.wait_daemon(0, Duration::from_secs(10)).await?;
    demo.wait_daemon(1, Duration::from_secs(10)).await?;
    println!("first start: safekit prim -m demo on node1, then safekit second -m demo on node2");
    demo.command(0, CommandKind::Prim { fullsync: false }).await?;
    demo.wait_state(0, State::Alone, Duration::from_secs(20)).await?;
    demo.command(1, CommandKind::Second { fullsync: false }).await?;
    demo.wait_state(1, State::Second, Duration::from_secs(20)).await?;
    demo.wait_state(0, State::Prim, Duration::from_secs(20)).await?;
    println!("  node1: {}   node2: {}", show(demo.status(0).await), show(demo.status(1).await));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let prober = probe(&Demo::client_ns(), stop.clone(), samples.clone())?;
    let served = wait_answer(&samples, "node1", Duration::from_secs(10)).await;
    if !served {
        stop.store(true, Ordering::Relaxed);
        let _ = prober.join();
        return Err("the client never got an answer from node1 through the virtual IP".into());
    }
    println!("client: http://{VIP}:{APP_PORT}/ answers \"node1\" (probing every 10 ms)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("crash: kill -9 of node1's daemon and application");
    demo.crash(0);
    let failover = demo.wait_state(1, State::Alone, Duration::from_secs(20)).await;
    let answered = wait_answer(&samples, "node2", Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    failover?;
    if !answered {
        return Err("node2 became ALONE but the client never reached it through the virtual IP".into());
    }
    println!(
        "  node2: {} (log: {})",
        show(demo.status(1).await),
        demo.log(1, 300)
            .await
            .iter()
            .filter(|l| l.contains("Action alone called by heart"))
            .map(|l| l.rsplit(" | ").next().unwrap_or(""))
            .next()
            .unwrap_or("-")
    );
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let out = outage(&samples, "node1").ok_or("the probe saw no switch from node1 to node2")?;
    println!("client: now answered by \"node2\"; outage seen by the client: {} ms", out.as_millis());
    if keep {
        leave_running(demo, exe).await?;
        return Ok(out);
    }
    println!("cleaning up (namespaces, bridge, files)");
    drop(demo);
    Ok(out)
}

/// `--keep`: node1 restarted (it comes back SECOND), a console password,
/// the forwarder to node1's web service, and the demo's processes and
/// namespaces left running, described in [`crate::demo_keep::STATE`].
async fn leave_running(mut demo: Demo, exe: &Path) -> Result<(), String> {
    println!("node1 restarts and comes back as secondary");
    demo.start_daemon(0, exe)?;
    demo.wait_daemon(0, Duration::from_secs(10)).await?;
    demo.command(0, CommandKind::Start).await?;
    demo.wait_state(0, State::Second, Duration::from_secs(30)).await?;
    let mut secret = [0u8; 9];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
    let password = hex::encode(secret);
    for n in &demo.nodes {
        safekit_core::daemon::web::accounts::Accounts::new(&n.dir.join("safe/web/conf")).set_password("admin", &password)?;
    }
    let listen = SocketAddr::from(([127, 0, 0, 1], crate::demo_keep::CONSOLE_PORT));
    let node1 = SocketAddr::from(([10, 77, 0, 1], 9010));
    let forwarder = crate::demo_keep::spawn_forwarder(exe, listen, node1, &Demo::client_ns(), &demo.root.join("forward.log"))?;
    let mut pids = vec![forwarder];
    for n in &demo.nodes {
        pids.extend(n.daemon.as_ref().and_then(|c| i32::try_from(c.id()).ok()));
        if let Ok(p) = std::fs::read_to_string(n.dir.join("var/modules/demo/app.pid")) {
            pids.extend(p.trim().parse::<i32>().ok());
        }
    }
    let kept = crate::demo_keep::Kept { pids, namespaces: demo.namespaces.clone(), root: demo.root.clone() };
    crate::demo_keep::save(&kept)?;
    let node = |i: usize| {
        let d = &demo.nodes[i].dir;
        format!("SAFE={} SAFEVAR={} safekit state", d.join("safe").display(), d.join("var").display())
    };
    println!("The demo cluster keeps running (node2 PRIM, node1 SECOND):");
    println!("  console: http://{listen}/console/   user admin, password {password}");
    println!("  virtual IP: ip netns exec {} curl http://{VIP}:{APP_PORT}/", Demo::client_ns());
    println!("  node1: {}", node(0));
    println!("  node2: {}", node(1));
    println!("  end it: safekit demo --clean");
    // Nothing is stopped or removed: `safekit demo --clean` does it.
    std::mem::forget(demo);
    Ok(())
}

fn show(s: Option<Status>) -> String {
    s.map_or_else(|| "(no answer)".to_string(), |s| s.to_string())
}

async fn wait_answer(samples: &Arc<Mutex<Vec<Sample>>>, node: &str, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if samples.lock().is_ok_and(|v| v.iter().rev().take(5).any(|(_, a)| a.as_deref() == Some(node))) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// How the primary fails in a benchmark run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// kill -9 of the primary's daemon and application.
    Kill9,
    /// The primary's cable is cut (its eth0 goes down).
    Cut,
}

/// Repeats a failover `runs` times and returns, for each, the time from the
/// failure to the first answer of the other node seen by the client (the
/// metric of `vip-failover-keepalived.sh`, so the two compare directly).
pub async fn bench(exe: &Path, runs: usize, failure: Failure) -> Result<Vec<Duration>, String> {
    let mut demo = Demo::setup()?;
    demo.start_daemon(0, exe)?;
    demo.start_daemon(1, exe)?;
    demo.wait_daemon(0, Duration::from_secs(10)).await?;
    demo.wait_daemon(1, Duration::from_secs(10)).await?;
    demo.command(0, CommandKind::Prim { fullsync: false }).await?;
    demo.wait_state(0, State::Alone, Duration::from_secs(20)).await?;
    demo.command(1, CommandKind::Second { fullsync: false }).await?;
    demo.wait_state(1, State::Second, Duration::from_secs(20)).await?;
    demo.wait_state(0, State::Prim, Duration::from_secs(20)).await?;
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let prober = probe_from(&Demo::client_ns(), start, stop.clone(), samples.clone())?;
    let mut out = Vec::new();
    let mut prim = 0usize;
    let result = async {
        for run in 0..runs {
            let (old, new) = (prim, 1 - prim);
            let (old_name, new_name) = (demo.nodes[old].name, demo.nodes[new].name);
            if !wait_answer(&samples, old_name, Duration::from_secs(10)).await {
                return Err(format!("run {run}: the client does not reach {old_name}"));
            }
            // Hit a random phase of the heartbeat pulse.
            let mut r = [0u8; 1];
            let _ = getrandom::fill(&mut r);
            tokio::time::sleep(Duration::from_millis(500 + u64::from(r[0]) % 100)).await;
            let t_fail = start.elapsed();
            match failure {
                Failure::Kill9 => demo.crash(old),
                Failure::Cut => demo.link(old, false)?,
            }
            let end = Instant::now() + Duration::from_secs(20);
            let took = loop {
                let hit = samples
                    .lock()
                    .ok()
                    .and_then(|v| v.iter().find(|(t, a)| *t >= t_fail && a.as_deref() == Some(new_name)).map(|(t, _)| *t - t_fail));
                if let Some(d) = hit {
                    break d;
                }
                if Instant::now() > end {
                    return Err(format!("run {run}: {new_name} never answered after the failure"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            println!("  run {}: {} ms", run + 1, took.as_millis());
            out.push(took);
            // Repair: the failed node comes back as SECOND of the new primary.
            match failure {
                Failure::Kill9 => {
                    demo.start_daemon(old, exe)?;
                    demo.wait_daemon(old, Duration::from_secs(10)).await?;
                    demo.command(old, CommandKind::Start).await?;
                }
                Failure::Cut => demo.link(old, true)?,
            }
            // After a kill -9 the survivor stays primary; after a cable cut
            // both were ALONE and split-brain recovery keeps the former
            // primary (the former secondary exits): wait for the pair.
            let end = Instant::now() + Duration::from_secs(60);
            prim = loop {
                let ready = |s: Option<Status>, st: State| s == Some(Status::new(st, Readiness::Ready));
                let (a, b) = (demo.status(0).await, demo.status(1).await);
                if ready(a, State::Prim) && ready(b, State::Second) {
                    break 0;
                }
                if ready(b, State::Prim) && ready(a, State::Second) {
                    break 1;
                }
                if Instant::now() > end {
                    return Err(format!("run {run}: no PRIM/SECOND after the repair ({a:?}, {b:?})"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
        }
        Ok(())
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    result.map(|()| out)
}

/// Median of durations (upper median for an even count).
pub fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}
