//! Checkers on two real daemons in network namespaces (root only): a tcp
//! checker restarts a dead application and its fourth failure stops the
//! module (maxloop); a ping checker parks both nodes in WAIT while the
//! pinged address is unreachable and they come back by themselves; a
//! custom checker reports through `safekit set` and its failure fails the
//! module over; a module checker holds the module in WAIT until the module
//! it depends on (on this node, or on the other one through its API) is up.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{pair, rt, safekit, start_both, wait_log, wait_status};
use safekit_bin::demo::Demo;
use safekit_core::engine::{CommandKind, State};

const LONG: Duration = Duration::from_secs(30);

fn privileged() -> bool {
    common::privileged("network-namespace checker test needs root and iproute2", &["ip"], false)
}

/// Adds `<check>…</check>` (and whatever else `extra` holds) before `<user` on both nodes.
fn add_to_module(demo: &Demo, extra: &str) {
    for i in 0..2 {
        let conf = demo.node_dir(i).join("safe/modules/demo/conf/userconfig.xml");
        let text = std::fs::read_to_string(&conf).unwrap();
        std::fs::write(&conf, text.replacen("  <user ", &format!("{extra}\n  <user "), 1)).unwrap();
    }
}

/// Waits until `safekit get -r resource` on node `i` prints `value`.
async fn wait_get(demo: &Demo, i: usize, resource: &str, value: &str) {
    let end = Instant::now() + LONG;
    loop {
        let (code, got) = safekit(demo, i, &["get", "-m", "demo", "-r", resource]);
        if code == 0 && got.trim() == format!("{resource}={value}") {
            return;
        }
        assert!(Instant::now() < end, "node{}: {resource} is not {value}: {got}", i + 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn tcp_checker_restarts_the_application_and_the_fourth_failure_stops_the_module() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        add_to_module(
            &demo,
            r#"  <check>
    <tcp ident="app" when="prim"><to addr="127.0.0.1" port="8080" interval="1" timeout="1"/></tcp>
  </check>"#,
        );
        pair(&mut demo, 0).await;
        wait_log(&demo, 0, "Resource tcp.app set to up by tcpcheck").await;
        let pidfile = demo.node_dir(0).join("var/modules/demo/app.pid");
        let kill_app = || {
            let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
            pid
        };
        for round in 1..=3 {
            let old = kill_app();
            let end = Instant::now() + LONG;
            loop {
                let now_pid: i32 = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(old);
                let log = demo.log(0, 1000).await;
                let ups = log.iter().filter(|l| l.ends_with("Resource tcp.app set to up by tcpcheck")).count();
                if now_pid != old && ups > round {
                    break;
                }
                assert!(Instant::now() < end, "round {round}: the application was not restarted: {log:#?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            demo.wait_state(0, State::Prim, LONG).await.unwrap();
        }
        let log = demo.log(0, 1000).await;
        assert_eq!(log.iter().filter(|l| l.ends_with("Action restart from failover rule t_app")).count(), 3, "{log:#?}");
        assert!(log.iter().any(|l| l.ends_with("Resource tcp.app set to down by tcpcheck")));
        // The fourth failure within loop_interval: the module stops, node2 takes over.
        kill_app();
        demo.wait_state(1, State::Alone, LONG).await.unwrap();
        let log = demo.log(0, 1000).await;
        assert!(log.iter().any(|l| l.ends_with("Action stop called by maxloop")), "{log:#?}");
        // node2 may take over while node1 still runs its last stop scripts.
        wait_status(&demo, 0, State::Stop).await;
    });
}

const CUSTOM: &str = r#"#!/bin/sh
# A custom checker: args <module> <resource>; down while $SAFEUSERVAR/down exists.
while true; do
  if [ -f "$SAFEUSERVAR/down" ]; then v=down; else v=up; fi
  "$SAFE/safekit" set -r "$2" -v "$v" -m "$1"
  sleep 0.2
done
"#;

#[test]
fn ping_checker_waits_while_unreachable_and_a_custom_checker_fails_over() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        add_to_module(
            &demo,
            r#"  <check>
    <ping ident="gw"><to addr="10.77.0.10" interval="1" timeout="1"/></ping>
    <custom ident="app" when="prim" exec="customcheck" action="stopstart"/>
  </check>"#,
        );
        for i in 0..2 {
            let p = demo.node_dir(i).join("safe/modules/demo/bin/customcheck");
            std::fs::write(&p, CUSTOM).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        pair(&mut demo, 0).await;
        wait_log(&demo, 0, "Resource custom.app set to up by customscript").await;
        wait_get(&demo, 0, "custom.app", "up").await;
        let (code, got) = safekit(&demo, 0, &["set", "-m", "demo", "-r", "custom.app", "-v", "sideways"]);
        assert_eq!(code, 1);
        assert!(got.contains("'sideways' is not a resource state (expected init, up, down or unknown)"), "{got}");

        // The pinged address disappears: both nodes wait, then come back.
        let client = Demo::client_ns();
        assert!(Command::new("ip").args(["-n", &client, "link", "set", "eth0", "down"]).status().unwrap().success());
        wait_status(&demo, 0, State::Wait).await;
        wait_status(&demo, 1, State::Wait).await;
        wait_log(&demo, 0, "Action wait from failover rule p_gw").await;
        wait_log(&demo, 1, "Resource ping.gw set to down by pingcheck").await;
        assert!(Command::new("ip").args(["-n", &client, "link", "set", "eth0", "up"]).status().unwrap().success());
        wait_log(&demo, 0, "Action wakeup from failover rule Implicit_wakeup").await;
        let end = Instant::now() + LONG;
        loop {
            let states = (demo.status(0).await.map(|s| s.state), demo.status(1).await.map(|s| s.state));
            if matches!(states, (Some(State::Prim), Some(State::Second)) | (Some(State::Second), Some(State::Prim))) {
                break;
            }
            assert!(Instant::now() < end, "the nodes did not come back as a pair: {states:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The custom checker of the primary reports down: stopstart, the other node takes over.
        let prim = usize::from(demo.status(0).await.map(|s| s.state) != Some(State::Prim));
        std::fs::write(demo.node_dir(prim).join("var/modules/demo/down"), "").unwrap();
        wait_log(&demo, prim, "Action stopstart from failover rule c_app").await;
        demo.wait_state(1 - prim, State::Prim, LONG).await.unwrap();
        demo.wait_state(prim, State::Second, LONG).await.unwrap();
        // As SECOND its prim-class checker is stopped: the resource is back to init.
        wait_get(&demo, prim, "custom.app", "init").await;
    });
}

const FLAPPING: &str = r#"#!/bin/sh
# Down while $SAFEUSERVAR/down exists; while $SAFEUSERVAR/flap exists,
# alternately down and up every half second.
n=0
while true; do
  n=$((n + 1))
  if [ -f "$SAFEUSERVAR/down" ]; then v=down
  elif [ -f "$SAFEUSERVAR/flap" ] && [ $((n % 2)) = 0 ]; then v=down
  else v=up; fi
  "$SAFE/safekit" set -r "$2" -v "$v" -m "$1"
  sleep 0.5
done
"#;

#[test]
fn a_flapping_custom_checker_is_held_by_handle_time() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        add_to_module(
            &demo,
            r#"  <check>
    <custom ident="app" when="prim" exec="customcheck" action="stopstart"/>
  </check>
  <failover period="250ms" handle_time="3000ms"/>"#,
        );
        for i in 0..2 {
            let p = demo.node_dir(i).join("safe/modules/demo/bin/customcheck");
            std::fs::write(&p, FLAPPING).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        pair(&mut demo, 0).await;
        wait_get(&demo, 0, "custom.app", "up").await;
        let var = demo.node_dir(0).join("var/modules/demo");
        std::fs::write(var.join("flap"), "").unwrap();
        // Six seconds of flapping: down never lasts the 3 s handle_time.
        let end = Instant::now() + Duration::from_secs(6);
        while Instant::now() < end {
            assert_eq!(demo.status(0).await.map(|s| s.state), Some(State::Prim), "a flapping checker moved the module");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = demo.log(0, 2000).await;
        assert!(log.iter().filter(|l| l.ends_with("Resource custom.app set to down by customscript")).count() >= 3, "{log:#?}");
        assert!(!log.iter().any(|l| l.contains("from failover rule c_app")), "{log:#?}");
        // Down for good: the rule acts once the condition held for handle_time.
        std::fs::write(var.join("down"), "").unwrap();
        wait_log(&demo, 0, "Action stopstart from failover rule c_app").await;
        demo.wait_state(1, State::Prim, LONG).await.unwrap();
    });
}

/// node1's demo, started as primary, waits while module dep (on node
/// `dep_node`) is stopped, starts when dep starts, waits again when it stops.
async fn dependency_holds_node1(demo: &mut Demo, dep_node: usize) {
    start_both(demo).await;
    demo.command(0, CommandKind::Prim { fullsync: false }).await.unwrap();
    wait_log(demo, 0, "Resource module.dep set to down by modulecheck").await;
    wait_status(demo, 0, State::Wait).await;
    let (code, said) = safekit(demo, dep_node, &["start", "-m", "dep"]);
    assert_eq!(code, 0, "{said}");
    wait_log(demo, 0, "Resource module.dep set to up by modulecheck").await;
    demo.wait_state(0, State::Alone, LONG).await.unwrap();
    let (code, said) = safekit(demo, dep_node, &["stop", "-m", "dep"]);
    assert_eq!(code, 0, "{said}");
    wait_log(demo, 0, "Action wait from failover rule module_failure").await;
    wait_status(demo, 0, State::Wait).await;
}

#[test]
fn module_checker_holds_the_module_until_its_dependency_is_up() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        add_to_module(&demo, "  <check>\n    <module ident=\"dep\" name=\"dep\"/>\n  </check>");
        for i in 0..2 {
            let conf = demo.node_dir(i).join("safe/modules/dep/conf/userconfig.xml");
            std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
            std::fs::write(&conf, "<safe>\n<service mode=\"light\">\n  <user/>\n</service>\n</safe>\n").unwrap();
        }
        dependency_holds_node1(&mut demo, 0).await;
    });
}

#[test]
fn a_module_checker_watches_a_module_of_the_other_node_through_its_api() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        // node1's demo depends on module dep of node2 (reached through node2's API).
        let conf = demo.node_dir(0).join("safe/modules/demo/conf/userconfig.xml");
        let text = std::fs::read_to_string(&conf).unwrap();
        let check = "  <check>\n    <module ident=\"dep\" name=\"dep\"><to addr=\"10.77.0.2\" interval=\"1\" timeout=\"1\"/></module>\n  </check>\n";
        std::fs::write(&conf, text.replacen("  <user ", &format!("{check}  <user "), 1)).unwrap();
        let dep = demo.node_dir(1).join("safe/modules/dep/conf/userconfig.xml");
        std::fs::create_dir_all(dep.parent().unwrap()).unwrap();
        std::fs::write(&dep, "<safe>\n<service mode=\"light\">\n  <user/>\n</service>\n</safe>\n").unwrap();
        dependency_holds_node1(&mut demo, 1).await;
    });
}
