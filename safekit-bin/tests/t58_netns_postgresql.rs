//! The bundled `postgresql` module template running a real PostgreSQL
//! server on two real daemons in network namespaces, PGDATA replicated:
//! pgbench runs through the virtual IP while a client inserts rows and
//! counts what the server acknowledged; kill -9 of the primary (daemon,
//! postmaster and its backends); the other node becomes ALONE and serves
//! the same database with every acknowledged row and pgbench's balances
//! consistent; the old primary comes back, reintegrates, the roles are
//! swapped back; every acknowledged row is still there, and each node's
//! copy of PGDATA, opened by a server of its own, passes `pg_amcheck`.
//! Without root, FUSE or PostgreSQL this test says so and passes, unless
//! SAFEKIT_REQUIRE_PRIVILEGED=1 (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::{client_writer, failover_cycle, pair, rt, run_ok, template_dir, Cycle};
use safekit_bin::demo::Demo;

const VIP: &str = "10.77.0.100";

/// The PostgreSQL programs' directory (Debian: /usr/lib/postgresql/N/bin), the newest.
fn pgbin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("pg_ctl").exists() && b.join("pg_amcheck").exists())
        .collect();
    dirs.sort_by_key(|d| d.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    dirs.pop()
}

/// The template as a user fills it, with a 1 s heartbeat timeout (the
/// template keeps SafeKit's 30 s).
fn userconfig(pgdata: &Path, pgbin: &Path) -> String {
    let template = std::fs::read_to_string(template_dir("postgresql").join("conf/userconfig.xml")).unwrap();
    let filled = template
        .replace(r#"<macro name="VIRTUAL_IP" value=""/>"#, &format!(r#"<macro name="VIRTUAL_IP" value="{VIP}"/>"#))
        .replace(r#"<macro name="PGDATA" value=""/>"#, &format!(r#"<macro name="PGDATA" value="{}"/>"#, pgdata.display()))
        .replace(
            r#"<macro name="PGBIN" value="/usr/lib/postgresql/15/bin"/>"#,
            &format!(r#"<macro name="PGBIN" value="{}"/>"#, pgbin.display()),
        )
        .replace(r#"<heart pulse="700" timeout="30000">"#, r#"<heart pulse="100ms" timeout="1000ms">"#);
    for changed in [VIP, "100ms", &pgdata.display().to_string(), &pgbin.display().to_string()] {
        assert!(filled.contains(changed), "the postgresql template changed: {changed} not filled in");
    }
    filled
}

fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program);
    c
}

/// A query through the VIP from the client namespace.
fn client_sql(q: &str) -> Result<String, String> {
    run_ok(Command::new("ip").args([
        "netns",
        "exec",
        &Demo::client_ns(),
        "psql",
        "-h",
        VIP,
        "-U",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-qAt",
        "-c",
        q,
    ]))
}

/// The balances pgbench's transactions move agree (each transaction
/// updates the four tables at once, so a torn one shows here).
const BALANCES: &str = "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) \
     AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) \
     AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)";

/// Every row below `acked` is in the table the VIP's server serves, and pgbench's balances agree.
fn assert_rows_through_vip(acked: u64, when: &str) {
    let n = client_sql(&format!("SELECT count(*) FROM t WHERE id < {acked}")).unwrap();
    assert_eq!(n, acked.to_string(), "{when}: {acked} rows acknowledged, {n} of them in the table");
    assert_eq!(client_sql(BALANCES).unwrap(), "t", "{when}: pgbench's balances disagree");
}

/// pgbench through the VIP for `secs` seconds (it fails when its server
/// dies; what it committed stays). `-n`: without it, pgbench empties
/// pgbench_history before it starts, and the balances no longer add up.
fn pgbench(secs: u32) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", &Demo::client_ns(), "pgbench", "-n", "-h", VIP, "-U", "postgres", "-c", "2", "-T"])
        .arg(secs.to_string())
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A client in the client namespace inserting rows 0, 1, 2… through the
/// VIP, one `psql` call per row (5 s at most each): a row is acknowledged
/// when the call exits 0; a failed call is retried with the same row.
const WRITER: &str = r#"i=0
while [ $i -lt 100000 ]; do
  if timeout 5 psql -h "$1" -U postgres -v ON_ERROR_STOP=1 -qAt -c "INSERT INTO t (id) VALUES ($i) ON CONFLICT DO NOTHING" >/dev/null 2>&1; then
    echo $i
    i=$((i + 1))
  else
    sleep 0.1
  fi
done"#;

/// kill -9 of the postmaster whose pid file is in `pgdata`, and of its children.
fn kill_postgres(pgdata: &Path) {
    let Some(pid) = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok().and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
    else {
        panic!("no postmaster.pid in {}", pgdata.display());
    };
    let children: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next()?.split_whitespace().nth(1)?.parse::<i32>().ok())
                == Some(pid)
        })
        .collect();
    for p in std::iter::once(pid).chain(children) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
}

/// A PostgreSQL server of its own on one node's copy of PGDATA, no
/// network: checks it once the cluster stopped. Stopped on drop.
struct Standalone {
    pgbin: PathBuf,
    data: PathBuf,
    socket: PathBuf,
}

const PORT: &str = "5499";

impl Standalone {
    fn start(pgbin: &Path, data: &Path, socket: &Path) -> Self {
        std::fs::create_dir_all(socket).unwrap();
        run_ok(Command::new("chown").arg("postgres").arg(socket)).unwrap();
        let opts = format!("-p {PORT} -c listen_addresses='' -c unix_socket_directories='{}'", socket.display());
        let log = socket.join("standalone.log");
        let started = run_ok(
            as_postgres(&pgbin.join("pg_ctl"))
                .arg("-D")
                .arg(data)
                .arg("-o")
                .arg(&opts)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]),
        );
        assert!(started.is_ok(), "{started:?}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        Self { pgbin: pgbin.into(), data: data.into(), socket: socket.into() }
    }

    fn sql(&self, q: &str) -> Result<String, String> {
        run_ok(as_postgres(Path::new("psql")).arg("-h").arg(&self.socket).args(["-p", PORT, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", q]))
    }

    fn amcheck(&self) -> Result<String, String> {
        run_ok(as_postgres(&self.pgbin.join("pg_amcheck")).arg("-h").arg(&self.socket).args([
            "-p",
            PORT,
            "--install-missing",
            "--all",
            "--heapallindexed",
        ]))
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = run_ok(as_postgres(&self.pgbin.join("pg_ctl")).arg("-D").arg(&self.data).args(["-m", "fast", "-w", "stop"]));
    }
}

/// The pgbin directory when the test can run (root, FUSE, PostgreSQL);
/// None (after saying why) when it is skipped.
fn can_run() -> Option<PathBuf> {
    let found = pgbin();
    let tools = ["ip", "nsenter", "psql", "pgbench", "runuser", "timeout"];
    let why = "PostgreSQL test needs root, FUSE, iproute2 and PostgreSQL (apt-get install postgresql)";
    if !common::privileged(why, &tools, true) {
        return None;
    }
    if found.is_none() {
        assert!(std::env::var("SAFEKIT_REQUIRE_PRIVILEGED").as_deref() != Ok("1"), "no /usr/lib/postgresql/*/bin: {why}");
        println!("SKIPPED: {why} (no /usr/lib/postgresql/*/bin with pg_ctl and pg_amcheck)");
    }
    found
}

/// The two nodes with the filled template, PostgreSQL's cluster made on
/// node1's copy (listening on TCP only, trusting the test network); node1
/// PRIM, node2 SECOND.
fn cluster(pgbin: &Path, rt: &tokio::runtime::Runtime) -> Demo {
    let mut demo = Demo::setup().unwrap();
    let pgdata = demo.replicated_dir().unwrap();
    demo.use_module(&template_dir("postgresql"), &userconfig(&pgdata, pgbin)).unwrap();
    // PGDATA on each server: the postgres user's, 0700.
    for i in 0..2 {
        run_ok(Command::new("chown").arg("postgres").arg(demo.data_dir(i))).unwrap();
        run_ok(Command::new("chmod").arg("700").arg(demo.data_dir(i))).unwrap();
    }
    run_ok(as_postgres(&pgbin.join("initdb")).arg("-D").arg(demo.data_dir(0)).args(["-A", "trust", "-U", "postgres"])).unwrap();
    let conf = demo.data_dir(0).join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    // TCP only: a socket directory would be shared by both nodes on this
    // one machine, and the lock file of a killed postmaster not yet reaped
    // (its PID still taken) stops the next start.
    text.push_str("listen_addresses = '*'\nunix_socket_directories = ''\nshared_buffers = 32MB\n");
    std::fs::write(&conf, text).unwrap();
    let hba = demo.data_dir(0).join("pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba).unwrap();
    text.push_str("host all all 10.77.0.0/24 trust\n");
    std::fs::write(&hba, text).unwrap();

    rt.block_on(pair(&mut demo, 0));
    demo
}

/// The writer's table and pgbench's (scale `scale`), through the VIP.
fn tables(scale: u32) {
    client_sql("CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT now())").unwrap();
    let init = ["pgbench", "-i", "-q", "-h", VIP, "-U", "postgres", "-s"];
    run_ok(Command::new("ip").args(["netns", "exec", &Demo::client_ns()]).args(init).arg(scale.to_string()).arg("postgres")).unwrap();
}

#[test]
fn postgresql_fails_over_with_every_acknowledged_row_and_both_copies_pass_pg_amcheck() {
    let _serial = common::serial();
    let Some(pgbin) = can_run() else { return };
    let rt = rt();
    let mut demo = cluster(&pgbin, &rt);
    tables(1);
    let bench = std::cell::RefCell::new(pgbench(60));
    let stop_bench = || {
        let _ = bench.borrow_mut().kill();
        let _ = bench.borrow_mut().wait();
    };
    let acked = failover_cycle(
        &mut demo,
        &rt,
        client_writer(WRITER, VIP),
        // Its postmaster and backends as well, while pgbench and the writer run.
        |d| kill_postgres(&d.data_dir(0)),
        assert_rows_through_vip,
        |at| {
            stop_bench();
            if at == Cycle::FailedOver {
                // pgbench again, through the reintegration and the swap.
                *bench.borrow_mut() = pgbench(60);
            }
        },
    );

    // Each node's copy, opened by a server of its own: every row, clean.
    for i in 0..2 {
        let copy = Standalone::start(&pgbin, &demo.data_dir(i), &demo.node_dir(i).join("standalone"));
        let n = copy.sql(&format!("SELECT count(*) FROM t WHERE id < {acked}")).unwrap();
        assert_eq!(n, acked.to_string(), "node{}'s copy: {acked} rows acknowledged, {n} of them there", i + 1);
        assert_eq!(copy.sql(BALANCES).unwrap(), "t", "node{}'s copy: pgbench's balances disagree", i + 1);
        let check = copy.amcheck();
        assert!(check.is_ok(), "node{}'s copy: pg_amcheck: {check:?}", i + 1);
    }
}

/// pgbench's TPS (`-n -c 4 -j 2 -T secs`) against `host:port` from the client namespace.
fn pgbench_tps(host: &str, port: &str, secs: u32) -> f64 {
    let out = run_ok(
        Command::new("ip")
            .args(["netns", "exec", &Demo::client_ns(), "pgbench", "-n", "-c", "4", "-j", "2", "-T"])
            .arg(secs.to_string())
            .args(["-h", host, "-p", port, "-U", "postgres", "postgres"]),
    )
    .unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix("tps = ").and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{out}"))
}

/// Benchmark entry point (bench/postgresql.sh runs it with `--ignored`,
/// once per repetition), printing one `BENCH` line: pgbench's TPS through
/// the VIP on the replicated PGDATA (PRIM, its SECOND connected), the
/// time from the kill -9 of the primary (daemon, postmaster, backends) to
/// the first transaction committed on the other node, and, in the same
/// run, pgbench's TPS on the same server and network path with PGDATA on a
/// plain directory (node2's copy, after the cluster stopped).
#[test]
#[ignore = "benchmark: bench/postgresql.sh"]
fn bench_postgresql() {
    let _serial = common::serial();
    let Some(pgbin) = can_run() else { return };
    let secs: u32 = std::env::var("PGBENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let rt = rt();
    let mut demo = cluster(&pgbin, &rt);
    tables(10);
    let replicated = pgbench_tps(VIP, "5432", secs);

    let failover = common::bench_failover(&mut demo, &rt, client_writer(WRITER, VIP), |d| kill_postgres(&d.data_dir(0)));

    // The same database on a plain directory: node2's copy, the cluster stopped.
    let logs = demo.node_dir(1).join("local");
    std::fs::create_dir_all(&logs).unwrap();
    run_ok(Command::new("chown").arg("postgres").arg(&logs)).unwrap();
    let log = logs.join("postgresql.log");
    run_ok(
        Command::new("ip")
            .args(["netns", "exec", demo.node_ns(1)])
            .arg("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pgbin.join("pg_ctl"))
            .arg("-D")
            .arg(demo.data_dir(1))
            .args(["-o", "-p 5433", "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "start"]),
    )
    .unwrap();
    let local = pgbench_tps("10.77.0.2", "5433", secs);
    let _ = run_ok(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pgbin.join("pg_ctl"))
            .arg("-D")
            .arg(demo.data_dir(1))
            .args(["-m", "fast", "-w", "stop"]),
    );
    println!("BENCH postgresql tps_replicated={replicated:.0} tps_local={local:.0} failover_ms={}", failover.as_millis());
}
