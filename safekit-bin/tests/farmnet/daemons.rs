//! Real farm daemons in the namespaces of [`super::Farm`]: their files,
//! their CLI and state, and the client's view of the farm VIP (who answers
//! each of the 40 sources, compared with the bucket table).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use safekit_core::config::LbFilter;
use safekit_core::daemon::control::{call, Request, Response};
use safekit_core::engine::{Readiness, State, Status};
use safekit_core::farm::{assign, bucket_of, seed_of, BucketTable, Member};

use super::{connect_port, in_ns, key, ns, request, sources, NODES};

/// Three nodes on one IPv4 network.
pub(crate) const CLUSTER: &str = r#"<cluster>
  <lans>
    <lan name="default">
      <node name="n1" addr="10.82.0.1"/>
      <node name="n2" addr="10.82.0.2"/>
      <node name="n3" addr="10.82.0.3"/>
    </lan>
  </lans>
</cluster>
"#;

/// A farm module: vmac_invisible on 10.82.0.100, group "web" on port 80 by client address.
pub(crate) const MODULE: &str = r#"<!DOCTYPE safe>
<safe>
<service mode="farm" maxloop="3" loop_interval="24">
  <farm pulse="100ms" slost_count="5">
    <lan name="default"/>
  </farm>
  <vip>
    <interface_list>
      <interface>
        <virtual_interface type="vmac_invisible">
          <virtual_addr addr="10.82.0.100" where="alias"/>
        </virtual_interface>
      </interface>
    </interface_list>
    <loadbalancing_list>
      <group name="web">
        <rule port="80" proto="tcp" filter="on_addr"/>
      </group>
    </loadbalancing_list>
  </vip>
</service>
</safe>
"#;

/// A module installed on some of the nodes.
pub(crate) struct Install<'a> {
    /// Its name (directory under SAFE/modules).
    pub(crate) name: &'a str,
    /// Its fixed id (the same on every node; ports derive from it).
    pub(crate) id: u16,
    /// userconfig.xml.
    pub(crate) config: &'a str,
    /// bin/ scripts: (name, text).
    pub(crate) scripts: &'a [(&'a str, &'a str)],
    /// The nodes (indexes into NODES) it is installed on.
    pub(crate) on: &'a [usize],
}

/// Real daemons, one per node namespace, each with its SAFE and SAFEVAR
/// under `root`; ended (SIGTERM, then kill) and their files removed on drop.
pub(crate) struct Daemons {
    root: PathBuf,
    children: Vec<Option<Child>>,
}

impl Daemons {
    pub(crate) fn dir(&self, i: usize) -> PathBuf {
        self.root.join(NODES[i])
    }

    /// Three daemons with `cluster` and the `modules`; `prepare(i, dir)`
    /// runs for node `i` (its SAFE and SAFEVAR under `dir`) before its daemon starts.
    pub(crate) fn start(root: &Path, cluster: &str, modules: &[Install<'_>], prepare: &dyn Fn(usize, &Path)) -> Self {
        let _ = std::fs::remove_dir_all(root);
        let key = "7".repeat(64);
        let mut d = Self { root: root.to_path_buf(), children: Vec::new() };
        for (i, n) in NODES.iter().enumerate() {
            let dir = d.dir(i);
            std::fs::create_dir_all(dir.join("var/cluster")).unwrap();
            std::fs::write(dir.join("var/cluster/cluster.xml"), cluster).unwrap();
            std::fs::write(dir.join("var/cluster/cluster.key"), &key).unwrap();
            for m in modules.iter().filter(|m| m.on.contains(&i)) {
                let home = dir.join("safe/modules").join(m.name);
                std::fs::create_dir_all(home.join("conf")).unwrap();
                std::fs::create_dir_all(home.join("bin")).unwrap();
                std::fs::write(home.join("conf/userconfig.xml"), m.config).unwrap();
                std::fs::write(home.join("id"), m.id.to_string()).unwrap();
                for (name, text) in m.scripts {
                    std::fs::write(home.join("bin").join(name), text).unwrap();
                    std::fs::set_permissions(home.join("bin").join(name), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
                }
            }
            prepare(i, &dir);
            let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", &ns(n)])
                .arg(super::super::common::exe())
                .arg("daemon")
                .env("SAFE", dir.join("safe"))
                .env("SAFEVAR", dir.join("var"))
                .env("SAFEKIT_NODE", n)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("daemon starts");
            d.children.push(Some(child));
        }
        d
    }

    /// The CLI's output (stdout, then stderr) on node `i`.
    pub(crate) fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new(super::super::common::exe())
            .args(args)
            .env("SAFE", self.dir(i).join("safe"))
            .env("SAFEVAR", self.dir(i).join("var"))
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// The farm module's status on node `i`.
    pub(crate) async fn status(&self, i: usize) -> Option<Status> {
        self.status_of(i, "farm").await
    }

    /// Module `module`'s status on node `i` (`None`: no answer).
    pub(crate) async fn status_of(&self, i: usize, module: &str) -> Option<Status> {
        match call(&self.dir(i).join("var/run/safekit.sock"), &Request::State { module: Some(module.into()) }).await {
            Ok(Response::States(s)) => s.first().map(|s| s.status),
            _ => None,
        }
    }

    /// The farm module's log and the daemon's on node `i`.
    pub(crate) fn log(&self, i: usize) -> String {
        self.log_of(i, "farm")
    }

    /// Module `module`'s log and the daemon's on node `i`.
    pub(crate) fn log_of(&self, i: usize, module: &str) -> String {
        let module = std::fs::read_to_string(self.dir(i).join("var/modules").join(module).join("log.txt")).unwrap_or_default();
        let daemon = std::fs::read_to_string(self.dir(i).join("daemon.log")).unwrap_or_default();
        format!("{module}{daemon}")
    }

    /// Waits (at most `limit`) until module `module` is `want` on node `i`.
    pub(crate) fn wait(&self, i: usize, module: &str, want: Status, limit: Duration) {
        let rt = super::super::common::rt();
        let end = Instant::now() + limit;
        while rt.block_on(self.status_of(i, module)) != Some(want) {
            let now = rt.block_on(self.status_of(i, module));
            assert!(Instant::now() < end, "{module} on {} not {want} ({now:?}):\n{}", NODES[i], tail(&self.log_of(i, module), 40));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)), nix::sys::signal::Signal::SIGTERM);
        }
        for c in self.children.iter_mut().flatten() {
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("SAFEKIT_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// One connection from each source: (source, answered by, predicted owner), or why not.
pub(crate) fn probe(table: &BucketTable, v6: bool, port: u16) -> Result<Vec<(std::net::IpAddr, String, String)>, String> {
    let table = table.clone();
    in_ns("cl", move || {
        sources(v6)
            .into_iter()
            .map(|src| {
                let (s, local) = connect_port(src, port)?;
                let want = table.owner(bucket_of(&key(local, LbFilter::OnAddr), seed_of(1))).unwrap_or("nobody").to_string();
                Ok((src, request(s)?, want))
            })
            .collect()
    })
}

/// Every IPv4 connection answered by its predicted owner.
pub(crate) fn served_as(table: &BucketTable) -> Result<Vec<usize>, String> {
    served_over(table, false, 80)
}

/// Every connection of one family to `port` answered by its predicted owner.
pub(crate) fn served_over(table: &BucketTable, v6: bool, port: u16) -> Result<Vec<usize>, String> {
    let answers = probe(table, v6, port)?;
    let wrong: Vec<_> = answers.iter().filter(|(_, got, want)| got != want).collect();
    if !wrong.is_empty() {
        return Err(format!("{} of 40 answered by another node than predicted: {:?}", wrong.len(), &wrong[..wrong.len().min(3)]));
    }
    Ok(NODES.iter().map(|n| answers.iter().filter(|(_, got, _)| got == n).count()).collect())
}

/// Waits (at most `limit`) until the farm serves IPv4 as `table` says; how long it took.
pub(crate) fn until_served(what: &str, table: &BucketTable, limit: Duration, d: &Daemons) -> Duration {
    until_served_over(what, table, limit, d, (false, 80))
}

/// [`until_served`] for one family and port (`(v6, port)`).
pub(crate) fn until_served_over(what: &str, table: &BucketTable, limit: Duration, d: &Daemons, (v6, port): (bool, u16)) -> Duration {
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < limit {
        match served_over(table, v6, port) {
            Ok(shares) => {
                println!("farm daemons: {what}: 40 connections answered as predicted after {:?}, per node {shares:?}", t0.elapsed());
                return t0.elapsed();
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs: Vec<String> = (0..3).map(|i| format!("--- {}:\n{}", NODES[i], tail(&d.log(i), 30))).collect();
    panic!("{what}: not within {limit:?}: {last}\n{}", logs.join("\n"));
}

pub(crate) fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(crate) fn table(nodes: &[&str]) -> BucketTable {
    assign(&nodes.iter().map(|n| Member::new(*n, 1)).collect::<Vec<_>>())
}

/// The three daemons with `cluster` and the `modules`, the farm module
/// (id 1, on every node) started on each and UP Ready.
pub(crate) fn started_with(cluster: &str, modules: &[Install<'_>]) -> Daemons {
    started_farm(cluster, modules, &|_, _| {}, "farm")
}

/// The three daemons with `cluster`, the `modules` and what `prepare`
/// did on each node; the farm module `farm` started on each and UP Ready.
pub(crate) fn started_farm(cluster: &str, modules: &[Install<'_>], prepare: &dyn Fn(usize, &Path), farm: &str) -> Daemons {
    let root = std::env::temp_dir().join(format!("safekit-farm-{}", std::process::id()));
    let d = Daemons::start(&root, cluster, modules, prepare);
    let rt = super::super::common::rt();
    for (i, n) in NODES.iter().enumerate() {
        let end = Instant::now() + Duration::from_secs(20);
        while rt.block_on(d.status_of(i, farm)).is_none() {
            assert!(Instant::now() < end, "the daemon of {n} did not start:\n{}", d.log(i));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (i, n) in NODES.iter().enumerate() {
        let out = d.cli(i, &["start", "-m", farm]);
        println!("farm daemons: {n} start: {}", out.trim());
    }
    for i in 0..3 {
        d.wait(i, farm, Status::new(State::Up, Readiness::Ready), Duration::from_secs(30));
    }
    d
}

/// The text of an HTTP GET to node 1's web service, from the client.
pub(crate) fn web_get(path: &'static str) -> Option<String> {
    in_ns("cl", move || {
        let mut s =
            std::net::TcpStream::connect_timeout(&std::net::SocketAddr::from(([10, 82, 0, 1], 9010)), Duration::from_secs(2)).ok()?;
        std::io::Write::write_all(&mut s, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
        let mut r = String::new();
        std::io::Read::read_to_string(&mut s, &mut r).ok()?;
        Some(r)
    })
}
