//! Two real daemons and a client in network namespaces (root only): start,
//! failover after kill -9, return as SECOND, swap, cable cut, script order,
//! forged heartbeats. Without root these tests say so and pass, unless
//! SAFEKIT_REQUIRE_PRIVILEGED=1 (CI), where a skip is a failure.

use std::net::UdpSocket;
use std::os::fd::AsFd;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{exe, pair, rt, wait_status};
use safekit_bin::demo::{outage, probe, web_call, web_get, Demo};
use safekit_core::engine::{CommandKind, State};

fn privileged() -> bool {
    common::privileged("network-namespace test needs root and iproute2", &["ip"], false)
}

const LONG: Duration = Duration::from_secs(30);

/// Rewrites the demo module's userconfig.xml on both nodes.
fn edit_module(demo: &Demo, edit: impl Fn(&str) -> String) {
    for i in 0..2 {
        let conf = demo.node_dir(i).join("safe/modules/demo/conf/userconfig.xml");
        let text = std::fs::read_to_string(&conf).unwrap();
        std::fs::write(&conf, edit(&text)).unwrap();
    }
}

/// Writes scripts that record their name and arguments into `calls.txt`.
fn recording_scripts(demo: &Demo, i: usize) {
    let bin = demo.node_dir(i).join("safe/modules/demo/bin");
    for s in ["prestart", "poststop", "transition", "start_both", "stop_both", "start_second", "stop_second", "start_sec", "stop_sec"] {
        let p = bin.join(s);
        std::fs::write(&p, format!("#!/bin/sh\necho \"{s} $*\" >> \"$SAFEUSERVAR/calls.txt\"\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    for s in ["start_prim", "stop_prim"] {
        let p = bin.join(s);
        let body = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, body.replacen("#!/bin/sh\n", &format!("#!/bin/sh\necho \"{s} $*\" >> \"$SAFEUSERVAR/calls.txt\"\n"), 1))
            .unwrap();
    }
}

fn calls(demo: &Demo, i: usize) -> Vec<String> {
    std::fs::read_to_string(demo.node_dir(i).join("var/modules/demo/calls.txt")).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn failover_after_kill9_then_return_as_second_then_swap() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        recording_scripts(&demo, 0);
        recording_scripts(&demo, 1);
        pair(&mut demo, 0).await;
        // Scripts ran in SafeKit's order with SafeKit's arguments.
        let c1 = calls(&demo, 0);
        assert_eq!(
            c1,
            [
                "transition STOP WAIT start",
                "prestart STOP WAIT start",
                "transition WAIT ALONE start",
                "start_both WAIT ALONE start",
                "start_prim WAIT ALONE start",
                "start_sec WAIT ALONE start",
                "stop_sec ALONE PRIM start",
                "transition ALONE PRIM start",
            ]
        );
        let c2 = calls(&demo, 1);
        assert_eq!(
            c2,
            [
                "transition STOP WAIT start",
                "prestart STOP WAIT start",
                "transition WAIT SECOND start",
                "start_both SECOND SECOND start",
                "start_second SECOND SECOND start",
                "start_sec SECOND SECOND start",
            ]
        );
        // Load balancers' health check: only the primary answers 200.
        assert_eq!(web_get(0, "/var/modules/demo/ready.txt").map(|r| r.0), Some(200));
        assert_eq!(web_get(1, "/var/modules/demo/ready.txt").map(|r| r.0), Some(404));
        // The client reaches the VIP on node1.
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let prober = probe(&Demo::client_ns(), stop.clone(), samples.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(samples.lock().unwrap().iter().any(|(_, a)| a.as_deref() == Some("node1")), "client reached node1");
        // kill -9 of node1's daemon and application: node2 takes over.
        demo.crash(0);
        demo.wait_state(1, State::Alone, LONG).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        prober.join().unwrap();
        let s = samples.lock().unwrap().clone();
        assert!(
            outage(&s, "node1").is_some(),
            "the client switched from node1 to node2 (its neighbour entry updated by the gratuitous ARP)"
        );
        assert!(demo.log(1, 300).await.iter().any(|l| l.ends_with("Action alone called by heart: no heartbeat")));
        // The health check followed the failover, and the metrics say ALONE.
        assert_eq!(web_get(1, "/var/modules/demo/ready.txt").map(|r| r.0), Some(200));
        let metrics = web_get(1, "/metrics").map(|r| r.1).unwrap_or_default();
        assert!(metrics.contains(r#"safekit_module_state{module="demo",state="ALONE"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"safekit_peer_state{module="demo",state="UNKNOWN"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"safekit_failovers_total{module="demo"} 1"#), "{metrics}");
        // node1 restarts: it resynchronises and becomes SECOND.
        demo.start_daemon(0, &exe()).unwrap();
        demo.wait_daemon(0, LONG).await.unwrap();
        demo.command(0, CommandKind::Start).await.unwrap();
        demo.wait_state(0, State::Second, LONG).await.unwrap();
        demo.wait_state(1, State::Prim, LONG).await.unwrap();
        assert_eq!(web_get(0, "/var/modules/demo/ready.txt").map(|r| r.0), Some(404), "the returned node is SECOND");
        assert_eq!(web_get(1, "/var/modules/demo/ready.txt").map(|r| r.0), Some(200));
        // swap through the REST API: node1 primary again, and node2's
        // module log names who asked from where.
        safekit_core::daemon::web::accounts::Accounts::new(&demo.node_dir(1).join("safe/web/conf"))
            .set_password("admin", "admin-password")
            .unwrap();
        let form = "httpd_username=admin&httpd_password=admin-password&login=Login";
        let (code, head, body) =
            web_call(1, "POST", "/login", &[("Content-Type", "application/x-www-form-urlencoded")], form).expect("node2 answers");
        assert_eq!(code, 200, "{head}{body}");
        let cookie = head.lines().find_map(|l| l.strip_prefix("set-cookie: ")).and_then(|c| c.split(';').next()).unwrap().to_string();
        let csrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"].as_str().unwrap().to_string();
        let swap = web_call(1, "POST", "/api/v1.0/modules/demo/actions/swap", &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], "");
        assert_eq!(swap.map(|r| r.0), Some(204));
        demo.wait_state(0, State::Prim, LONG).await.unwrap();
        demo.wait_state(1, State::Second, LONG).await.unwrap();
        let log2 = demo.log(1, 300).await;
        assert!(log2.iter().any(|l| l.ends_with("Action swap called by admin@10.77.0.10")), "{log2:?}");
        // A refused command is one sentence.
        let e = demo.command(1, CommandKind::Prim { fullsync: false }).await.unwrap_err();
        assert!(e.contains("already started"), "{e}");
    });
}

#[test]
fn cable_cut_fails_over() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        pair(&mut demo, 0).await;
        demo.link(0, false).unwrap();
        demo.wait_state(1, State::Alone, LONG).await.unwrap();
        demo.wait_state(0, State::Alone, LONG).await.unwrap();
        // Cable back: split brain resolved, the former primary stays.
        demo.link(0, true).unwrap();
        demo.wait_state(1, State::Second, Duration::from_secs(60)).await.unwrap();
        demo.wait_state(0, State::Prim, LONG).await.unwrap();
        assert!(demo.log(1, 300).await.iter().any(|l| l.ends_with("Split brain recovery: exiting alone")));
    });
}

#[test]
fn forged_and_garbage_heartbeats_are_dropped_and_counted() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        pair(&mut demo, 0).await;
        // From node2's own namespace (the right source address), datagrams
        // that are not authentic: garbage, truncated, and a well-formed
        // heartbeat signed with another key claiming node2 is STOP.
        let ns = std::fs::File::open(format!("/run/netns/{}", demo.node_ns(1))).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let s = UdpSocket::bind("10.77.0.2:0").unwrap();
            let forged = safekit_core::heartbeat::wire::encode(
                &safekit_core::key::ClusterKey::new([9; 32]),
                1,
                &safekit_core::engine::Heartbeat {
                    node: "node2".into(),
                    incarnation: u64::MAX,
                    seq: u64::MAX,
                    status: safekit_core::engine::Status::new(State::Stop, safekit_core::engine::Readiness::NotReady),
                    primary_active: false,
                    data: safekit_core::engine::DataStatus::default(),
                    failover: true,
                    full_sync_required: false,
                    degraded: false,
                    alone_after_failover: false,
                    swap_request: None,
                    handing_over: false,
                    hears_peer: true,
                    resources: Default::default(),
                    heard: None,
                },
            );
            for d in [vec![0u8; 3], vec![0xAB; 2000], b"SKHB\x01garbage".to_vec(), forged] {
                s.send_to(&d, "10.77.0.1:8888").unwrap();
            }
        })
        .join()
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // node1 is unaffected and counted every datagram.
        assert_eq!(demo.status(0).await.map(|s| s.state), Some(State::Prim));
        let out = std::process::Command::new(exe())
            .args(["state", "-m", "demo", "--json"])
            .env("SAFE", demo.node_dir(0).join("safe"))
            .env("SAFEVAR", demo.node_dir(0).join("var"))
            .output()
            .unwrap();
        let json = String::from_utf8_lossy(&out.stdout);
        assert!(json.contains("\"heartbeat.dropped\": \"4\""), "{json}");
    });
}

#[test]
fn errd_restarts_a_killed_application_and_the_fourth_kill_stops_the_module() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        edit_module(&demo, |t| t.replace("<user ",
                "<errd polltimer=\"1s\">\n    <proc name=\"safekit\" argregex=\"demo-app\" atleast=\"1\" action=\"restart\" class=\"prim\"/>\n  </errd>\n  <user "));
        pair(&mut demo, 0).await;
        let pidfile = demo.node_dir(0).join("var/modules/demo/app.pid");
        let kill_app = || {
            let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
            pid
        };
        for round in 1..=3 {
            let old = kill_app();
            // errd notices within a poll and restarts the application.
            let end = std::time::Instant::now() + LONG;
            loop {
                let now_pid: i32 = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(old);
                if now_pid != old && demo.status(0).await.map(|s| s.state) == Some(State::Prim) {
                    break;
                }
                assert!(std::time::Instant::now() < end, "round {round}: the application was not restarted");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            demo.wait_state(0, State::Prim, LONG).await.unwrap();
        }
        let log = demo.log(0, 500).await;
        assert_eq!(log.iter().filter(|l| l.ends_with("Process safekit not running")).count(), 3, "{log:#?}");
        assert!(log.iter().any(|l| l.ends_with("Action restart called by errd")));
        // The fourth failure within loop_interval: the module stops, node2 takes over.
        kill_app();
        demo.wait_state(1, State::Alone, LONG).await.unwrap();
        let log = demo.log(0, 500).await;
        assert!(log.iter().any(|l| l.ends_with("Action stop called by maxloop")), "{log:#?}");
        // node2 may take over while node1 still runs its last stop scripts.
        wait_status(&demo, 0, State::Stop).await;
    });
}

#[test]
fn generated_interface_and_ip_checkers() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        edit_module(&demo, |t| t.replace("check=\"off\"", "check=\"on\""));
        pair(&mut demo, 0).await;
        let state = |i: usize| {
            let out = std::process::Command::new(exe())
                .args(["state", "-m", "demo", "-v"])
                .env("SAFE", demo.node_dir(i).join("safe"))
                .env("SAFEVAR", demo.node_dir(i).join("var"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s = state(0);
        assert!(s.contains("intf.10.77.0.0") && s.contains("ip.10.77.0.100"), "{s}");
        // The VIP disappears from node1: ip_failure -> stopstart -> failover.
        std::process::Command::new("ip").args(["-n", demo.node_ns(0), "addr", "del", "10.77.0.100/24", "dev", "eth0"]).status().unwrap();
        // node2 takes over (ALONE, then PRIM once node1 is back as SECOND).
        demo.wait_state(0, State::Second, LONG).await.unwrap();
        demo.wait_state(1, State::Prim, LONG).await.unwrap();
        assert!(
            demo.log(0, 500).await.iter().any(|l| l.ends_with("Action stopstart from failover rule ip_failure")),
            "{:#?}",
            demo.log(0, 500).await
        );
        assert!(demo.log(1, 500).await.iter().any(|l| l.ends_with("Action alone called by heart: remote stop")));
        // node2's cable is cut: its interface checker parks it in WAIT, so
        // there is no split brain; node1 goes on ALONE.
        demo.link(1, false).unwrap();
        demo.wait_state(0, State::Alone, LONG).await.unwrap();
        let end = std::time::Instant::now() + LONG;
        while demo.status(1).await.map(|s| s.state) != Some(State::Wait) {
            assert!(std::time::Instant::now() < end, "node2 did not go WAIT: {:?}", demo.status(1).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(demo.log(1, 500).await.iter().any(|l| l.ends_with("Action wait from failover rule interface_failure")));
        demo.link(1, true).unwrap();
        demo.wait_state(1, State::Second, LONG).await.unwrap();
        demo.wait_state(0, State::Prim, LONG).await.unwrap();
    });
}

#[test]
fn errd_special_handler_repairs_and_a_failing_handler_means_stopstart() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        edit_module(&demo, |t| {
            t.replace(
                "<user ",
                "<errd polltimer=\"1s\">\n    <proc name=\"safekit\" argregex=\"demo-app\" atleast=\"1\" action=\"restart_app\" class=\"prim\"/>\n  </errd>\n  <user ",
            )
        });
        for i in 0..2 {
            let p = demo.node_dir(i).join("safe/modules/demo/bin/restart_app");
            std::fs::write(
                &p,
                "#!/bin/sh\necho ran >> \"$SAFEUSERVAR/handler.txt\"\n[ -f \"$SAFEUSERVAR/handler-fails\" ] && exit 3\n\"$SAFE/safekit\" demo-app --port 8080 >/dev/null 2>&1 &\necho $! > \"$SAFEUSERVAR/app.pid\"\nexit 0\n",
            )
            .unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        pair(&mut demo, 0).await;
        let var = demo.node_dir(0).join("var/modules/demo");
        let kill_app = || {
            let pid: i32 = std::fs::read_to_string(var.join("app.pid")).unwrap().trim().parse().unwrap();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        };
        kill_app();
        let end = std::time::Instant::now() + LONG;
        while !demo.log(0, 300).await.iter().any(|l| l.ends_with("Special handler restart_app succeeded")) {
            assert!(std::time::Instant::now() < end, "the handler did not run: {:#?}", demo.log(0, 300).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Repaired by the handler: still PRIM, no stopstart.
        assert_eq!(demo.status(0).await.map(|s| s.state), Some(State::Prim));
        assert!(!demo.log(0, 300).await.iter().any(|l| l.contains("Action stopstart called")));
        // A failing handler: SafeKit's fallback is a stopstart of the module.
        std::fs::write(var.join("handler-fails"), "").unwrap();
        kill_app();
        let end = std::time::Instant::now() + LONG;
        while !demo.log(0, 300).await.iter().any(|l| l.contains("Special handler restart_app failed")) {
            assert!(std::time::Instant::now() < end, "no fallback: {:#?}", demo.log(0, 300).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(std::fs::read_to_string(var.join("handler.txt")).unwrap().lines().count() >= 2);
    });
}
