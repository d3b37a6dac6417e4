//! `safekit demo`: a two-node mirror cluster and a client on this machine,
//! each in a network namespace of its own on a private bridge (addresses
//! 10.77.0.0/24 exist only inside those namespaces). It starts the cluster
//! with a replicated directory (the secondary's first synchronisation
//! copies its 64 MiB), an application appending fsynced records there,
//! kills the primary's daemon and applications with SIGKILL, shows the
//! failover, the outage the client measured through the virtual IP and
//! that the survivor's copy holds every acknowledged record, restarts the
//! old primary, which copies back only what changed (bytes and time
//! printed), and removes everything, also on Ctrl-C or error.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
            // path, as on two real servers (with the file systems mounted
            // below it, if any).
            cmd.args(["sh", "-c", r#"mount --rbind "$1" "$2" && exec "$3" daemon"#, "sh"]).arg(n.dir.join("data")).arg(shared).arg(exe);
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

mod client;
mod show;

pub use client::{in_client_ns, missing_record, outage, probe, probe_from, record, serve_app, web_call, web_get, Sample, Writer};
pub use show::{bench, median, run, Failure};
