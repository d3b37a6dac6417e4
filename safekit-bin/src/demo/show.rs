//! What `safekit demo` shows (and `safekit bench-failover` measures) with
//! the [`Demo`] cluster.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use safekit_core::engine::{CommandKind, Readiness, State, Status};

/// The whole demo, printing what happens; returns the measured outage.
pub async fn run(exe: &Path, keep: bool) -> Result<Duration, String> {
    if Path::new(crate::demo_keep::STATE).exists() {
        return Err(format!("a kept demo cluster runs ({}): safekit demo --clean first", crate::demo_keep::STATE));
    }
    println!("safekit demo: node1 10.77.0.1, node2 10.77.0.2, client 10.77.0.10, virtual IP {VIP}");
    println!("  (network namespaces {PREFIX}-n1, {PREFIX}-n2, {PREFIX}-cl on bridge br0 in {PREFIX}-sw; heartbeat pulse 100 ms, timeout 1000 ms)");
    let mut demo = Demo::setup()?;
    let shared = demo.enable_replication(RFS)?;
    println!("  replicated directory {} (each node's own copy, kept in sync by the module)", shared.display());
    demo.start_daemon(0, exe)?;
    demo.start_daemon(1, exe)?;
    demo.wait_daemon(0, Duration::from_secs(10)).await?;
    demo.wait_daemon(1, Duration::from_secs(10)).await?;
    println!("first start: safekit prim -m demo on node1");
    demo.command(0, CommandKind::Prim { fullsync: false }).await?;
    demo.wait_state(0, State::Alone, Duration::from_secs(20)).await?;
    // Data the application has before the secondary exists: node2's first
    // start copies all of it; its return after the crash, only what changed.
    let status = demo
        .in_node(0)?
        .args(["dd", "if=/dev/urandom", "bs=1M", "count=64", "conv=fsync", "status=none"])
        .arg(format!("of={}", shared.join("base.bin").display()))
        .status()
        .map_err(|e| format!("dd: {e}"))?;
    if !status.success() {
        return Err(format!("writing 64 MiB into the replicated directory failed: {status}"));
    }
    println!("  node1 ALONE; the application wrote 64 MiB (base.bin)");
    println!("then safekit second -m demo on node2: its first synchronisation copies everything");
    demo.command(1, CommandKind::Second { fullsync: false }).await?;
    demo.wait_state(1, State::Second, Duration::from_secs(60)).await?;
    demo.wait_state(0, State::Prim, Duration::from_secs(20)).await?;
    println!("  node2: {}", copied(&demo.log(1, 300).await));
    println!("  node1: {}   node2: {}", show(demo.status(0).await), show(demo.status(1).await));
    let journal = shared.join("journal");
    let writer = Writer::spawn(demo.in_node(0)?.arg(exe).args(["demo-writer", "--file"]).arg(&journal).stderr(Stdio::null()))?;
    writer.wait_for(200, Duration::from_secs(30))?;
    // A cluster runs a while before it fails: the primary's change map
    // forgets what the secondary has durably (checkpoints every 500 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("application: appends fsynced records to journal ({} acknowledged so far)", writer.acked());
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
    println!("crash: kill -9 of node1's daemon and applications");
    demo.crash(0);
    let acked = writer.stop();
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
    if let Some(i) = missing_record(&demo.data_dir(1).join("journal"), acked) {
        return Err(format!("node2's copy of the journal lacks acknowledged record {i} (of {acked})"));
    }
    println!("data: node2's copy holds all {acked} records node1 acknowledged before it died");
    let writer =
        Writer::spawn(demo.in_node(1)?.arg(exe).args(["demo-writer", "--file"]).arg(shared.join("journal-node2")).stderr(Stdio::null()))?;
    writer.wait_for(300, Duration::from_secs(30))?;
    let acked2 = writer.acked();
    println!("application on node2: {acked2} more records acknowledged (journal-node2) while node1 is down");

    println!("node1 restarts (safekit start -m demo): it comes back as secondary and copies only what changed");
    demo.start_daemon(0, exe)?;
    demo.wait_daemon(0, Duration::from_secs(10)).await?;
    demo.command(0, CommandKind::Start).await?;
    demo.wait_state(0, State::Second, Duration::from_secs(60)).await?;
    demo.wait_state(1, State::Prim, Duration::from_secs(20)).await?;
    let acked2 = writer.stop();
    println!("  node1: {} (the replicated directory holds 64 MiB and more)", copied(&demo.log(0, 300).await));
    if let Some(i) = missing_record(&demo.data_dir(0).join("journal-node2"), acked2) {
        return Err(format!("node1's copy of journal-node2 lacks acknowledged record {i} (of {acked2})"));
    }
    println!("data: node1's copy holds all {acked2} records node2 acknowledged (the last ones written during the resynchronisation)");
    println!("  node1: {}   node2: {}", show(demo.status(0).await), show(demo.status(1).await));
    if keep {
        leave_running(demo, exe).await?;
        return Ok(out);
    }
    println!("cleaning up (namespaces, bridge, files)");
    drop(demo);
    Ok(out)
}

/// The demo module's replication: short timeouts, so a lost secondary is
/// noticed within seconds.
const RFS: &str = r#"  <rfs locktimeout="5s" sendtimeout="5s">
    <replicated dir="%DIR%" mode="read_only"/>
  </rfs>"#;

/// The last synchronisation a node logged ("Copied N bytes in F files …").
fn copied(log: &[String]) -> String {
    log.iter()
        .rev()
        .find_map(|l| l.rsplit(" | ").next().and_then(|m| m.strip_prefix("Copied ")).map(|m| format!("synchronisation copied {m}")))
        .unwrap_or_else(|| "no synchronisation logged".into())
}

/// `--keep`: a console password,
/// the forwarder to node1's web service, and the demo's processes and
/// namespaces left running, described in [`crate::demo_keep::STATE`].
async fn leave_running(demo: Demo, exe: &Path) -> Result<(), String> {
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
