//! The bundled `mariadb` module template running a real MariaDB server on
//! two real daemons in network namespaces, its data directory replicated:
//! a client inserts through the virtual IP and counts what the server
//! acknowledged; kill -9 of the primary (daemon and mariadbd); the other
//! node becomes ALONE and serves the same database with every acknowledged
//! row; the old primary comes back, reintegrates, the roles are swapped
//! back; every acknowledged row is still there, and each node's copy of
//! the data directory, opened by a MariaDB server of its own, passes
//! `mariadb-check`. Without root, FUSE or MariaDB this test says so and
//! passes, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{client_writer, failover_cycle, pair, rt, run_ok, template_dir, WAIT};
use safekit_bin::demo::Demo;

const VIP: &str = "10.77.0.100";

/// mariadbd's options in the cluster (MARIADB_OPTIONS) and in the
/// benchmark's plain-directory run alike.
const NETWORK_OPTIONS: &str = "--bind-address=0.0.0.0 --port=3306 --innodb-buffer-pool-size=32M --skip-name-resolve";

/// The template as a user fills it, with the test's differences: a 1 s
/// heartbeat timeout (the template keeps SafeKit's 30 s), mariadbd started
/// directly, listening on every address, its socket in each node's own
/// SAFEVAR (both nodes share this machine's /run).
fn userconfig(datadir: &Path) -> String {
    let template = std::fs::read_to_string(template_dir("mariadb").join("conf/userconfig.xml")).unwrap();
    let filled = template
        .replace(r#"<macro name="VIRTUAL_IP" value=""/>"#, &format!(r#"<macro name="VIRTUAL_IP" value="{VIP}"/>"#))
        .replace(r#"<macro name="DATADIR" value="/var/lib/mysql"/>"#, &format!(r#"<macro name="DATADIR" value="{}"/>"#, datadir.display()))
        .replace(r#"<heart pulse="700" timeout="30000">"#, r#"<heart pulse="100ms" timeout="1000ms">"#)
        .replace(r#"value="/run/mysqld/mysqld.sock""#, r#"value="%SAFEVAR%/mysqld.sock""#)
        .replace(r#"<var name="MARIADB_SERVICE" value="mariadb"/>"#, r#"<var name="MARIADB_SERVICE" value=""/>"#)
        .replace(r#"<var name="MARIADB_OPTIONS" value=""/>"#, &format!(r#"<var name="MARIADB_OPTIONS" value="{NETWORK_OPTIONS}"/>"#));
    for changed in [VIP, "100ms", "%SAFEVAR%", r#"MARIADB_SERVICE" value="""#, "--bind-address"] {
        assert!(filled.contains(changed), "the mariadb template changed: {changed} not filled in");
    }
    filled
}

/// A MariaDB server of its own on a plain directory (not the cluster's):
/// to create the database before the cluster starts and to check each
/// node's copy after it stopped. No network; stopped on drop.
struct Standalone {
    child: Child,
    socket: PathBuf,
}

impl Standalone {
    fn start(datadir: &Path, run_dir: &Path) -> Self {
        Self::start_in(None, datadir, run_dir, &["--skip-networking", "--innodb-buffer-pool-size=32M"])
    }

    /// mariadbd with `options`, inside network namespace `ns` if given.
    fn start_in(ns: Option<&str>, datadir: &Path, run_dir: &Path, options: &[&str]) -> Self {
        std::fs::create_dir_all(run_dir).unwrap();
        run_ok(Command::new("chown").arg("mysql:mysql").arg(run_dir)).unwrap();
        let socket = run_dir.join("s.sock");
        let mut cmd = match ns {
            // `ip netns exec` execs mariadbd: the child's PID is the server's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "mariadbd"]);
                c
            }
            None => Command::new("mariadbd"),
        };
        let child = cmd
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", run_dir.join("s.pid").display()))
            .arg(format!("--log-error={}", run_dir.join("s.err").display()))
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Self { child, socket };
        let end = Instant::now() + WAIT;
        while s.sql("SELECT 1").is_err() {
            let log = std::fs::read_to_string(run_dir.join("s.err")).unwrap_or_default();
            assert!(Instant::now() < end, "mariadbd on {} does not answer:\n{log}", datadir.display());
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    fn sql(&self, q: &str) -> Result<String, String> {
        run_ok(Command::new("mariadb").arg(format!("--socket={}", self.socket.display())).args(["-N", "-B", "-e", q]))
    }

    fn check(&self) -> Result<String, String> {
        run_ok(Command::new("mariadb-check").arg(format!("--socket={}", self.socket.display())).arg("--all-databases"))
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.sql("SHUTDOWN");
        let end = Instant::now() + WAIT;
        while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client in the client namespace inserting rows 0, 1, 2… through the
/// VIP, one `mariadb` call per row (5 s at most each): a row is
/// acknowledged when the call exits 0; a failed call is retried with the
/// same row (INSERT IGNORE: the failed call may have committed it).
const WRITER: &str = r#"i=0
while [ $i -lt 100000 ]; do
  if timeout 5 mariadb -h "$1" -u app -papp --connect-timeout=2 ha -e "INSERT IGNORE INTO t (id) VALUES ($i)" 2>/dev/null; then
    echo $i
    i=$((i + 1))
  else
    sleep 0.1
  fi
done"#;

/// A query through the VIP from the client namespace, as user app.
fn client_sql(q: &str) -> Result<String, String> {
    run_ok(Command::new("ip").args([
        "netns",
        "exec",
        &Demo::client_ns(),
        "mariadb",
        "-h",
        VIP,
        "-u",
        "app",
        "-papp",
        "-N",
        "-B",
        "ha",
        "-e",
        q,
    ]))
}

/// Every row below `acked` is in the table the VIP's server serves.
fn assert_rows_through_vip(acked: u64, when: &str) {
    let n = client_sql(&format!("SELECT COUNT(*) FROM t WHERE id < {acked}")).unwrap();
    assert_eq!(n, acked.to_string(), "{when}: {acked} rows acknowledged, {n} of them in the table");
    let check = client_sql("CHECK TABLE t").unwrap();
    assert!(check.ends_with("status\tOK"), "{when}: CHECK TABLE t: {check}");
}

/// The database, its user and table, made on node1's copy before the cluster starts.
fn create_database(data: &Path, run_dir: &Path) {
    run_ok(
        Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=socket"),
    )
    .unwrap();
    let db = Standalone::start(data, run_dir);
    db.sql("CREATE DATABASE ha; CREATE TABLE ha.t (id INT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB; CREATE USER app@'%' IDENTIFIED BY 'app'; GRANT ALL ON ha.* TO app@'%';").unwrap();
}

/// True when the test can run (root, FUSE, iproute2, MariaDB and `extra`
/// tools); otherwise says why (and fails under SAFEKIT_REQUIRE_PRIVILEGED=1).
fn can_run(extra: &[&str]) -> bool {
    let mut tools = vec!["ip", "nsenter", "mariadbd", "mariadb", "mariadb-admin", "mariadb-install-db", "mariadb-check", "timeout"];
    tools.extend_from_slice(extra);
    common::privileged(
        "MariaDB test needs root, FUSE, iproute2 and MariaDB (apt-get install mariadb-server mariadb-client; the benchmark also sysbench)",
        &tools,
        true,
    )
}

/// The two nodes with the filled template and the database made on
/// node1's copy; node1 PRIM, node2 SECOND.
fn cluster(rt: &tokio::runtime::Runtime) -> Demo {
    let mut demo = Demo::setup().unwrap();
    let datadir = demo.replicated_dir().unwrap();
    demo.use_module(&template_dir("mariadb"), &userconfig(&datadir)).unwrap();
    // /var/lib/mysql of a fresh install on each server: the mysql user's.
    for i in 0..2 {
        run_ok(Command::new("chown").arg("mysql:mysql").arg(demo.data_dir(i))).unwrap();
    }
    create_database(&demo.data_dir(0), &demo.node_dir(0).join("standalone"));
    rt.block_on(pair(&mut demo, 0));
    demo
}

#[test]
fn mariadb_fails_over_with_every_acknowledged_row_and_both_copies_check_clean() {
    let _serial = common::serial();
    if !can_run(&[]) {
        return;
    }
    let rt = rt();
    let mut demo = cluster(&rt);
    let acked = failover_cycle(&mut demo, &rt, client_writer(WRITER, VIP), |_| {}, assert_rows_through_vip, |_| {});

    // The template's custom checker (bin/sqlcheck) ended with each daemon,
    // the one killed -9 included: no orphan goes on checking.
    let checkers: Vec<String> = (0..2).map(|i| demo.node_dir(i).join("safe/modules/demo/bin/sqlcheck").display().to_string()).collect();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| checkers.iter().any(|k| c.contains(k.as_str())))
        .collect();
    assert!(left.is_empty(), "checkers left running after their daemons ended: {left:?}");

    // Each node's copy, opened by a server of its own: every row, clean.
    for i in 0..2 {
        let copy = Standalone::start(&demo.data_dir(i), &demo.node_dir(i).join("standalone"));
        let n = copy.sql(&format!("SELECT COUNT(*) FROM ha.t WHERE id < {acked}")).unwrap();
        assert_eq!(n, acked.to_string(), "node{}'s copy: {acked} rows acknowledged, {n} of them there", i + 1);
        let check = copy.check().unwrap();
        let bad: Vec<&str> = check.lines().filter(|l| !l.trim_end().ends_with("OK") && l.contains('.')).collect();
        assert!(bad.is_empty() && check.contains("ha.t"), "node{}'s copy: mariadb-check:\n{check}", i + 1);
    }
}

/// sysbench `oltp_write_only` (`action`: prepare or run) as user app on
/// database ha at `host:port`, from the client namespace: its output.
fn sysbench(action: &str, host: &str, port: &str, secs: u32) -> String {
    run_ok(
        Command::new("ip")
            .args(["netns", "exec", &Demo::client_ns(), "sysbench", "oltp_write_only", "--tables=4", "--table-size=10000", "--threads=4"])
            .arg(format!("--time={secs}"))
            .args([&format!("--mysql-host={host}"), &format!("--mysql-port={port}"), "--mysql-user=app", "--mysql-password=app"])
            .args(["--mysql-db=ha", action]),
    )
    .unwrap()
}

/// sysbench's transactions per second: "transactions: N (X per sec.)".
fn tps(output: &str) -> f64 {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("transactions:")?.split('(').nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no transactions line in sysbench's output:\n{output}"))
}

/// Benchmark entry point (bench/mariadb.sh runs it with `--ignored`, once
/// per repetition), printing one `BENCH` line: sysbench oltp_write_only's
/// TPS through the VIP on the replicated datadir (PRIM, its SECOND
/// connected), the time from the kill -9 of the primary (daemon and
/// mariadbd) to the first row committed on the other node, and, in the
/// same run, the TPS of the same server, options and network path with the
/// datadir on a plain directory (node2's copy, after the cluster stopped).
#[test]
#[ignore = "benchmark: bench/mariadb.sh"]
fn bench_mariadb() {
    let _serial = common::serial();
    if !can_run(&["sysbench"]) {
        return;
    }
    let secs: u32 = std::env::var("SYSBENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let rt = rt();
    let mut demo = cluster(&rt);
    sysbench("prepare", VIP, "3306", secs);
    let replicated = tps(&sysbench("run", VIP, "3306", secs));

    let failover = common::bench_failover(&mut demo, &rt, client_writer(WRITER, VIP), |_| {});

    // The same database on a plain directory: node2's copy, the cluster stopped.
    let mut options: Vec<&str> = NETWORK_OPTIONS.split_whitespace().filter(|o| !o.starts_with("--port")).collect();
    options.push("--port=3307");
    let local = Standalone::start_in(Some(demo.node_ns(1)), &demo.data_dir(1), &demo.node_dir(1).join("local"), &options);
    let local_tps = tps(&sysbench("run", "10.77.0.2", "3307", secs));
    drop(local);
    println!("BENCH mariadb tps_replicated={replicated:.0} tps_local={local_tps:.0} failover_ms={}", failover.as_millis());
}
