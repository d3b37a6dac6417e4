//! A running pair: PRIM and SECOND, losing the peer, failing over, reintegration failures.

use super::*;

// ---- primary role ---------------------------------------------------------------

#[test]
fn t11_alone_becomes_prim_when_the_peer_is_second_ready() {
    let mut h = alone();
    let g = h.e.persistent().gen;
    h.peer(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)));
    assert_eq!(h.take(), v(&["= PRIM Transient", "-sec", "stop_sec ALONE PRIM start", "transition ALONE PRIM start", "= PRIM Ready"]));
}

#[test]
fn t12_prim_losing_its_peer_continues_alone() {
    let mut h = prim();
    h.advance(T + Duration::from_millis(50));
    assert_eq!(
        h.take(),
        v(&["= ALONE Transient", "repl drop", "transition PRIM ALONE start", "start_sec PRIM ALONE start", "+sec", "= ALONE Ready"])
    );
}

#[test]
fn t13_prim_whose_peer_stops_continues_alone() {
    let mut h = prim();
    let g = h.e.persistent().gen;
    h.peer(st(State::Stop, Readiness::NotReady), false, ds(g, false, Some(Role::Second)));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.logs().iter().any(|l| l == "Secondary lost (remote stop): continuing ALONE"));
}

#[test]
fn t14_replication_timeout_drops_the_secondary_once_the_peer_answers_it_is_not_primary() {
    let mut h = prim();
    h.input(Input::Replication(ReplicationEvent::SecondaryLost { reason: "locktimeout".into() }));
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready), "the peer may have taken over: wait for its answer");
    let g = h.e.persistent().gen;
    h.peer_with(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)), |hb| hb.heard = None);
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready), "a report that did not hear us since does not count");
    h.peer(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.take().contains(&"repl drop".to_string()));
}

#[test]
fn t15_degraded_replication_keeps_the_primary_alone() {
    let mut h = prim();
    h.input(Input::Replication(ReplicationEvent::Degraded { reason: "nfsbox".into() }));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert_eq!(h.e.resources()["rfs.degraded"], "up");
    assert!(h.logs().iter().any(|l| l == "Resource rfs.degraded set to up by nfsadmin"));
}

// ---- secondary role and failover ----------------------------------------------

#[test]
fn t16_second_losing_its_primary_fails_over() {
    let mut h = second();
    h.advance(T + Duration::from_millis(50));
    assert_eq!(
        h.take(),
        v(&[
            "= ALONE Transient",
            "-second",
            "stop_second SECOND ALONE start",
            "repl stop",
            "repl primary",
            "transition SECOND ALONE start",
            "vip+",
            "start_prim SECOND ALONE start",
            "+prim",
            "= ALONE Ready",
        ])
    );
    assert!(h.logs().iter().any(|l| l == "Action alone called by heart: no heartbeat"));
    assert_eq!(h.e.persistent().last_role, Some(Role::AloneAfterFailover));
}

#[test]
fn t17_second_whose_primary_stops_fails_over() {
    let mut h = second();
    h.peer(st(State::Wait, Readiness::Transient), false, ds(4, false, Some(Role::Prim)));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert!(h.logs().iter().any(|l| l == "Action alone called by heart: remote stop"));
}

#[test]
fn t18_no_failover_while_the_primary_still_holds_its_resources() {
    let mut h = second();
    h.peer(st(State::Wait, Readiness::Transient), true, ds(4, true, Some(Role::Prim)));
    assert_eq!(h.status(), st(State::Second, Readiness::Ready), "the primary is stopping: wait for it to release");
}

#[test]
fn t19_failover_off_parks_the_secondary_in_wait() {
    let mut h = second();
    h.cmd(CommandKind::Failover(false)).unwrap();
    h.advance(T + Duration::from_millis(500));
    let out = h.take();
    assert!(out.contains(&"poststop WAIT STOP stopstart".to_string()), "{out:?}");
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    let logs = h.logs();
    for l in ["Failover-off configured", "Action stopstart called by failover-off", "Transition STOPSTART from failover-off"] {
        assert!(logs.iter().any(|x| x == l), "{l}: {logs:?}");
    }
}

#[test]
fn t20_second_that_learned_of_newer_data_does_not_fail_over() {
    let mut h = second();
    // The primary dropped us and wrote alone (generation 5), then vanished.
    h.peer(st(State::Alone, Readiness::Ready), true, ds(5, true, Some(Role::Alone)));
    assert_eq!(h.status(), st(State::Second, Readiness::Transient), "catching up");
    assert!(h.take().contains(&"reintegrate zones".to_string()));
    h.advance(T + Duration::from_millis(50));
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
}

#[test]
fn t21_reintegration_failure_restarts_the_module() {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.take();
    h.input(Input::Replication(ReplicationEvent::ReintegrationFailed { reason: "disk full".into() }));
    let logs = h.logs();
    assert!(logs.iter().any(|l| l == "Action stopstart called by rfs"), "{logs:?}");
    assert!(logs.iter().any(|l| l == "Next reintegration attempt in 2 s (1 failed in a row)"), "{logs:?}");
    assert!(h.e.persistent().partial, "still partially synchronised");
    // The next attempt waits 2 s, then 4 s after a second failure.
    for (n, wait) in [(1u64, 2u64), (2, 4)] {
        for _ in 0..(wait * 4 - 1) {
            h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
            h.advance(Duration::from_millis(250));
        }
        assert_eq!(h.status(), st(State::Wait, Readiness::Transient), "attempt {n}: waiting");
        assert!(!h.take().iter().any(|s| s.starts_with("reintegrate")), "attempt {n}: too early");
        h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
        h.advance(Duration::from_millis(400));
        assert!(h.take().iter().any(|s| s.starts_with("reintegrate")), "attempt {n}: after {wait} s");
        if n == 1 {
            h.input(Input::Replication(ReplicationEvent::ReintegrationFailed { reason: "disk full".into() }));
            assert!(h.logs().iter().any(|l| l == "Next reintegration attempt in 4 s (2 failed in a row)"));
        }
    }
}

/// A retry deadline that passed while the node was not starting must not stay
/// due forever once it starts again (it used to spin the runtime's timer).
#[test]
fn t21c_a_passed_reintegration_wait_is_forgotten() {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Replication(ReplicationEvent::ReintegrationFailed { reason: "disk full".into() }));
    h.cmd(CommandKind::Stop).unwrap();
    h.advance(Duration::from_secs(5));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_secs(1));
    let now = h.now;
    assert!(h.e.poll_timeout().is_some_and(|t| t > now), "the timer is due again at once");
}

/// The metrics carry the reintegration's progress, ETA and mean rate; a
/// retried reintegration measures its rate from its own start.
#[test]
fn t21d_reintegration_rate_is_measured_from_the_first_report() {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.take();
    let progress = |done| Input::Replication(ReplicationEvent::ReintegrationProgress { done, total: 10_000_000, eta_secs: Some(8) });
    let metrics = |h: &H| crate::engine::Automaton::metrics(&h.e);
    h.input(progress(1_000_000));
    assert_eq!(metrics(&h).reintegration, Some((1_000_000, 10_000_000)));
    assert_eq!(metrics(&h).reintegration_rate, None, "one report is not a rate");
    h.advance(Duration::from_secs(2));
    h.input(progress(5_000_000));
    assert_eq!(metrics(&h).reintegration_rate, Some(2_000_000), "4 MB in 2 s");
    assert_eq!(metrics(&h).reintegration_eta, Some(8));
    // Retried: the bytes start again from zero.
    h.advance(Duration::from_millis(200));
    h.input(progress(100));
    assert_eq!(metrics(&h).reintegration_rate, None, "a new window");
    h.advance(Duration::from_secs(1));
    h.input(progress(3_000_100));
    assert_eq!(metrics(&h).reintegration_rate, Some(3_000_000));
}
