//! Late results, strangers, settings, defaultprim and exit codes.

use super::*;

// ---- misc ----------------------------------------------------------------------

#[test]
fn t48_late_script_results_and_strangers_are_ignored() {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Alone)));
    h.e.command(h.now, Command::admin(CommandKind::Start)).unwrap();
    h.pump();
    h.e.handle_input(h.now, Input::ScriptDone { run: crate::engine::RunId(99), success: true });
    h.pump();
    let runs = h.out.iter().filter(|a| matches!(a, Action::RunScript(_))).count();
    assert_eq!(runs, 1, "still waiting for the first script");
    let mut hb_from_stranger = Heartbeat {
        node: "intruder".into(),
        incarnation: 1,
        seq: 1,
        status: st(State::Alone, Readiness::Ready),
        primary_active: true,
        data: ds(99, true, Some(Role::Alone)),
        failover: true,
        full_sync_required: false,
        degraded: false,
        alone_after_failover: false,
        swap_request: None,
        handing_over: false,
        hears_peer: true,
        resources: Default::default(),
        heard: None,
    };
    h.e.handle_input(h.now, Input::Heartbeat { lan: 0, hb: hb_from_stranger.clone() });
    hb_from_stranger.node = "node2".into();
    h.e.handle_input(h.now, Input::Heartbeat { lan: 7, hb: hb_from_stranger });
    assert_eq!(h.e.peer_status(), None);
}

#[test]
fn t49_without_user_element_no_script_runs() {
    let mut h = H::new(EngineConfig { scripts: false, ..cfg() }, data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(!h.take().iter().any(|s| s.contains(" start")), "no script");
}

#[test]
fn t50_defaultprim_asks_for_a_swap_once_second_is_ready() {
    let mut h = H::new(EngineConfig { defaultprim: DefaultPrim::Node("node1".into()), ..cfg() }, data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    h.peer(st(State::Prim, Readiness::Ready), true, ds(4, true, Some(Role::Prim)));
    assert!(h.logs().iter().any(|l| l == "Transition SWAP from defaultprim"));
    h.pump();
    let asked = h.out.iter().rev().find_map(|a| if let Action::SendHeartbeat(hb) = a { Some(hb.swap_request) } else { None });
    assert_eq!(asked, Some(Some(SwapKind::Sync)));
}

#[test]
fn t51_peer_degraded_parks_the_secondary() {
    let mut h = second();
    h.peer_with(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)), |hb| hb.degraded = true);
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    assert!(h.logs().iter().any(|l| l == "Action wait from failover rule degraded_server"));
}

#[test]
fn t52_a_heartbeat_lost_input_acts_before_the_timeout() {
    let mut h = second();
    h.input(Input::HeartbeatLost { lan: 0 });
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert_eq!(h.e.resources()["heartbeat.default"], "down");
}

#[test]
fn t53_state_exit_codes_match_safekit() {
    let codes: Vec<i32> =
        [State::Stop, State::Wait, State::Alone, State::Up, State::Prim, State::Second].iter().map(|s| s.exit_code()).collect();
    assert_eq!(codes, [0, 1, 2, 2, 3, 4]);
}

#[test]
fn t54_maintenance_switches_are_persisted_and_shown() {
    let mut h = alone();
    h.cmd(CommandKind::Errd(false)).unwrap();
    h.cmd(CommandKind::Checker(false)).unwrap();
    assert!(!h.e.persistent().errd && !h.e.persistent().checker);
    let r = h.e.resources();
    assert_eq!((r["usersetting.errd"].as_str(), r["usersetting.checker"].as_str()), ("off", "off"));
    // A state file written before these switches existed still loads.
    let old: Persistent = serde_json::from_str(r#"{"gen":3,"uptodate":true}"#).unwrap();
    assert!(old.errd && old.checker && old.failover);
}
