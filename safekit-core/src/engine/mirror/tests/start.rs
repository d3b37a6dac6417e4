//! Starting: the role chosen from the data, the peer and the command.

use super::*;

#[test]
fn t01_start_uptodate_peer_absent_goes_alone_with_scripts_in_order() {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    assert_eq!(h.take(), v(&START), "listens for the peer before deciding");
    h.advance(Duration::from_millis(400));
    assert_eq!(
        h.take(),
        v(&[
            "= ALONE Transient",
            "repl primary",
            "transition WAIT ALONE start",
            "vip+",
            "start_both WAIT ALONE start",
            "+both",
            "start_prim WAIT ALONE start",
            "+prim",
            "start_sec WAIT ALONE start",
            "+sec",
            "= ALONE Ready",
        ])
    );
    assert_eq!(h.e.persistent().gen, 4, "a new generation: writes without a secondary");
    assert!(h.e.persistent().running);
}

#[test]
fn t02_first_start_waits_not_uptodate() {
    let mut h = H::new(cfg(), Persistent::default());
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.take(), with_start(&["= WAIT NotReady"]));
    let logs = h.logs();
    assert!(logs.iter().any(|l| l == "Action wait from failover rule notuptodate_server"), "{logs:?}");
}

#[test]
fn t03_start_with_peer_alone_becomes_second_after_reintegration() {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    assert_eq!(h.take(), with_start(&["= SECOND Transient", "repl secondary", "transition WAIT SECOND start", "reintegrate zones"]));
    assert!(h.e.persistent().partial, "not uptodate until the end of the reintegration");
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    assert_eq!(
        h.take(),
        v(&[
            "start_both SECOND SECOND start",
            "+both",
            "start_second SECOND SECOND start",
            "+second",
            "start_sec SECOND SECOND start",
            "+sec",
            "= SECOND Ready",
        ])
    );
    assert_eq!((h.e.persistent().gen, h.e.persistent().uptodate, h.e.persistent().partial), (4, true, false));
}

#[test]
fn t04_prim_on_a_fresh_node_forces_alone() {
    let mut h = H::new(cfg(), Persistent::default());
    h.cmd(CommandKind::Prim { fullsync: false }).unwrap();
    h.advance(Duration::from_millis(10));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert_eq!(h.e.persistent().epoch, 1, "an administrator's choice starts an epoch");
}

#[test]
fn t05_prim_is_refused_while_the_peer_is_primary() {
    let mut h = H::new(cfg(), data(3, true, None));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    let e = h.cmd(CommandKind::Prim { fullsync: false }).unwrap_err();
    assert!(matches!(e, CommandError::PeerIsPrimary(_)));
    assert_eq!(e.to_string(), "the other node is already primary (ALONE Ready); prim is refused");
    assert_eq!(h.take(), Vec::<String>::new());
}

#[test]
fn t06_prim_after_interrupted_reintegration_needs_primforce() {
    let mut p = data(3, false, Some(Role::Second));
    p.partial = true;
    let mut h = H::new(cfg(), p.clone());
    assert_eq!(h.cmd(CommandKind::Prim { fullsync: false }), Err(CommandError::DataInconsistent));
    let mut h = H::new(cfg(), p);
    h.cmd(CommandKind::Primforce).unwrap();
    h.advance(Duration::from_millis(10));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.e.persistent().full_sync_required, "the next secondary copies everything");
}

#[test]
fn t07_second_is_refused_when_the_peer_speaks_and_is_not_primary() {
    let mut h = H::new(cfg(), data(3, true, None));
    h.peer(st(State::Stop, Readiness::NotReady), false, ds(3, true, Some(Role::Prim)));
    let e = h.cmd(CommandKind::Second { fullsync: false }).unwrap_err();
    assert_eq!(e.to_string(), "the other node is not primary (STOP NotReady); second needs a primary to synchronise from");
    assert_eq!(h.take(), Vec::<String>::new());
    // Heard once, then silent past its timeout: refused as well.
    h.advance(Duration::from_secs(60));
    h.take();
    let e = h.cmd(CommandKind::Second { fullsync: false }).unwrap_err();
    assert_eq!(e.to_string(), "the other node is not primary (UNKNOWN: no heartbeat from it); second needs a primary to synchronise from");
}

#[test]
fn t07b_second_right_after_the_daemon_started_waits_for_the_primarys_first_heartbeat() {
    // Nothing heard yet (this daemon just started): accepted, the start
    // listens, and the primary's first heartbeat makes it SECOND.
    let mut h = H::new(cfg(), data(3, true, Some(Role::Second)));
    h.cmd(CommandKind::Second { fullsync: false }).unwrap();
    h.advance(Duration::from_millis(100));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.advance(Duration::from_millis(10));
    assert_eq!(h.status().state, State::Second, "{:?}", h.logs());

    // No primary speaks up within the listening window: aborted, STOP.
    let mut h = H::new(cfg(), data(3, true, Some(Role::Second)));
    h.cmd(CommandKind::Second { fullsync: false }).unwrap();
    h.advance(Duration::from_secs(5));
    assert_eq!(h.status().state, State::Stop);
    let logs = h.logs();
    assert!(logs.iter().any(|l| l == "Requested second start aborted: the other node is not primary"), "{logs:?}");
    assert!(!h.e.persistent().running, "{logs:?}");
}

#[test]
fn t08_second_fullsync_copies_everything() {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Second)));
    h.peer(st(State::Prim, Readiness::Ready), true, ds(3, true, Some(Role::Prim)));
    h.cmd(CommandKind::Second { fullsync: true }).unwrap();
    assert!(h.take().contains(&"reintegrate full".to_string()));
}

#[test]
fn t09_a_node_that_never_synchronised_copies_everything() {
    let mut h = H::new(cfg(), Persistent::default());
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    assert!(h.take().contains(&"reintegrate full".to_string()));
}

#[test]
fn t10_start_when_started_is_refused() {
    let mut h = alone();
    let e = h.cmd(CommandKind::Start).unwrap_err();
    assert_eq!(e.to_string(), "the module is already started (ALONE Ready); run safekit stop first");
}
