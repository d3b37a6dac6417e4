//! Swap: the primary hands over and follows.

use super::*;

#[test]
fn t32_swap_on_prim_hands_over_then_follows() {
    let mut h = prim();
    h.cmd(CommandKind::Swap(SwapKind::Sync)).unwrap();
    assert_eq!(
        h.take(),
        v(&[
            "= PRIM Transient",
            "-prim",
            "stop_prim PRIM SECOND swap",
            "vip-",
            "repl stop",
            "repl secondary",
            "transition PRIM SECOND swap",
            "= SECOND Transient",
        ])
    );
    let g = h.e.persistent().gen;
    h.peer(st(State::Prim, Readiness::Ready), true, ds(g, true, Some(Role::Prim)));
    assert_eq!(h.take(), v(&["reintegrate zones"]));
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    assert_eq!(h.status(), st(State::Second, Readiness::Ready));
    assert!(h.take().contains(&"start_second SECOND SECOND start".to_string()));
}

#[test]
fn t33_second_takes_over_when_the_primary_hands_over() {
    let mut h = second();
    h.peer_with(st(State::Second, Readiness::Transient), false, ds(4, true, Some(Role::Second)), |hb| hb.handing_over = true);
    assert_eq!(
        h.take(),
        v(&[
            "= PRIM Transient",
            "-sec",
            "stop_sec SECOND PRIM swap",
            "-second",
            "stop_second SECOND PRIM swap",
            "repl stop",
            "repl primary",
            "transition SECOND PRIM swap",
            "vip+",
            "start_prim SECOND PRIM swap",
            "+prim",
            "= PRIM Ready",
        ])
    );
}

#[test]
fn t34_swap_without_a_pair_is_refused() {
    let mut h = alone();
    let e = h.cmd(CommandKind::Swap(SwapKind::Sync)).unwrap_err();
    assert_eq!(e.to_string(), "swap needs PRIM (Ready) and SECOND (Ready); the module is ALONE Ready and the other node UNKNOWN");
}

#[test]
fn t35_swap_nosync_skips_the_resynchronisation() {
    let mut h = prim();
    h.cmd(CommandKind::Swap(SwapKind::NoSync)).unwrap();
    h.take();
    let g = h.e.persistent().gen;
    h.peer(st(State::Prim, Readiness::Ready), true, ds(g, true, Some(Role::Prim)));
    assert_eq!(h.status(), st(State::Second, Readiness::Ready));
    assert!(!h.take().iter().any(|s| s.starts_with("reintegrate")));
}
