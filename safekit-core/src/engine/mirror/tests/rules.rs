//! Failover rules and the loop guard (maxloop).

use super::*;

#[test]
fn t44_start_holds_in_wait_transient_while_a_wait_resource_is_init() {
    let mut h = H::new(with_rules(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Wait, Readiness::Transient));
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
}

#[test]
fn t45_wait_rule_stops_into_wait_and_wakes_up() {
    let mut h = H::new(with_rules(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    h.advance(Duration::from_millis(400));
    h.take();
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Down, by: "test".into() });
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    let out = h.take();
    assert!(out.contains(&"stop_prim ALONE WAIT stopwait".to_string()), "{out:?}");
    assert!(!out.iter().any(|s| s.starts_with("poststop")), "a wait is not a stop");
    assert!(h.logs().iter().any(|l| l == "Action wait from failover rule p_gw"));
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.logs().iter().any(|l| l == "Action wakeup from failover rule Implicit_wakeup"));
}

#[test]
fn t45b_a_prim_interrupted_by_a_wait_rule_resumes_as_prim() {
    // A fresh node (never primary, not uptodate): only `prim` may start it.
    let mut h = H::new(with_rules(), Persistent::default());
    h.cmd(CommandKind::Prim { fullsync: false }).unwrap();
    h.advance(Duration::from_millis(400));
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Down, by: "pingcheck".into() });
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    assert!(h.logs().iter().any(|l| l == "Resource ping.gw set to down by pingcheck"));
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "pingcheck".into() });
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready), "{:#?}", h.logs());
}

#[test]
fn t45c_a_user_rule_over_remote_resources_swaps_once_its_condition_is_stable() {
    let timing = crate::engine::rules::Timing { period: Duration::from_millis(500), handle_time: Duration::from_secs(2) };
    let mut h = prim_with_rules("app_moves: if (custom.app == down && remote.custom.app == up) then swap();", timing);
    let g = h.e.persistent().gen;
    let remote_up = |hb: &mut Heartbeat| {
        hb.resources.insert("custom.app".into(), ResourceState::Up);
    };
    h.peer_with(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)), remote_up);
    // Time passes with the peer's heartbeats every 100 ms.
    let run = |h: &mut H, ms: u64| {
        for _ in 0..ms / 100 {
            h.advance(Duration::from_millis(100));
            h.peer_with(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)), remote_up);
        }
    };
    h.input(Input::Resource { name: "custom.app".into(), state: ResourceState::Down, by: "customscript".into() });
    // A second later it is back: no action.
    run(&mut h, 1000);
    h.input(Input::Resource { name: "custom.app".into(), state: ResourceState::Up, by: "customscript".into() });
    run(&mut h, 3000);
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready), "a one-second glitch is held by handle_time");
    assert!(!h.logs().iter().any(|l| l.contains("failover rule app_moves")));
    // Down for good while the peer's is up: a swap after handle_time.
    h.input(Input::Resource { name: "custom.app".into(), state: ResourceState::Down, by: "customscript".into() });
    run(&mut h, 1500);
    assert!(!h.logs().iter().any(|l| l.contains("failover rule app_moves")), "not yet stable for 2 s");
    run(&mut h, 1500);
    assert!(h.logs().iter().any(|l| l == "Action swap from failover rule app_moves"), "{:#?}", h.logs());
    assert_eq!(h.status().state, State::Second);
}

#[test]
fn t45d_without_the_peer_remote_resources_are_unknown() {
    let mut h = prim_with_rules("lonely: if (remote.tcp.x == unknown) then stop();", crate::engine::rules::Timing::default());
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready), "the peer is heard: remote.tcp.x is init, not unknown");
    assert!(!h.logs().iter().any(|l| l.contains("failover rule lonely")));
    // The peer goes silent: ALONE, then the rule sees unknown and stops the module.
    h.advance(Duration::from_secs(2));
    assert!(h.logs().iter().any(|l| l == "Action stop from failover rule lonely"), "{:#?}", h.logs());
    assert_eq!(h.status(), st(State::Stop, Readiness::NotReady));
}

#[test]
fn t46_the_fourth_detector_restart_stops_the_module() {
    let mut h = H::new(with_rules(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Resource { name: "ping.gw".into(), state: ResourceState::Up, by: "test".into() });
    h.advance(Duration::from_millis(400));
    for i in 0..4 {
        h.input(Input::Resource { name: "tcp.app".into(), state: ResourceState::Down, by: "test".into() });
        h.input(Input::Resource { name: "tcp.app".into(), state: ResourceState::Up, by: "test".into() });
        if i < 3 {
            assert_eq!(h.status(), st(State::Alone, Readiness::Ready), "restart {i}");
        }
    }
    assert_eq!(h.status(), st(State::Stop, Readiness::NotReady));
    assert!(h.logs().iter().any(|l| l == "Action stop called by maxloop"));
}

#[test]
fn t47_an_administrator_command_resets_maxloop() {
    let mut h = alone();
    for _ in 0..3 {
        h.e.command(h.now, Command::by(CommandKind::Restart, "errd")).unwrap();
        h.scripts();
    }
    h.cmd(CommandKind::Restart).unwrap();
    h.e.command(h.now, Command::by(CommandKind::Restart, "errd")).unwrap();
    h.scripts();
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
}
