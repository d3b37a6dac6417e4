//! Split brain, the witness, and coming back after a crash or a power loss.

use super::*;

// ---- split brain, witness, power loss ------------------------------------------

#[test]
fn t36_split_brain_both_wrote_the_former_second_exits() {
    let mut h = second();
    h.advance(T + Duration::from_millis(50));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    h.input(Input::Replication(ReplicationEvent::WroteAlone));
    h.take();
    let wrote = DataStatus { wrote_alone: true, ..ds(5, true, Some(Role::Alone)) };
    h.heal_with(st(State::Alone, Readiness::Ready), true, wrote);
    assert!(h.logs().iter().any(|l| l == "Split brain recovery: exiting alone"));
    let out = h.take();
    assert!(out.contains(&"poststop WAIT STOP stopstart".to_string()));
    assert!(h.e.persistent().need_full_sync, "what it wrote alone is replaced by a full copy");
    // It starts again as the other node's secondary: what it wrote alone is
    // kept aside first, then everything is copied.
    let q = out.iter().position(|s| s == "quarantine").unwrap_or_else(|| panic!("no quarantine: {out:?}"));
    assert_eq!(out.get(q + 1).map(String::as_str), Some("reintegrate full"), "{out:?}");
    assert!(!h.e.persistent().quarantine, "once");
}

#[test]
fn t36b_a_failed_quarantine_stops_instead_of_reintegrating_over_local_changes() {
    let mut h = second();
    h.advance(T + Duration::from_millis(50));
    h.input(Input::Replication(ReplicationEvent::WroteAlone));
    h.take();
    h.quarantine_fails = Some("no space left on device".into());
    let wrote = DataStatus { wrote_alone: true, ..ds(5, true, Some(Role::Alone)) };
    h.heal_with(st(State::Alone, Readiness::Ready), true, wrote);
    let out = h.take();
    assert!(out.iter().any(|s| s == "quarantine"), "{out:?}");
    assert!(!out.iter().any(|s| s.starts_with("reintegrate")), "nothing is copied over changes that were not kept aside: {out:?}");
    assert!(h.logs().iter().any(|l| l.starts_with("Local changes not kept aside: no space left on device")), "{:?}", h.logs());
    assert_eq!(h.status().state, State::Stop);
    assert!(h.e.persistent().quarantine, "the next start still keeps them aside first");
}

#[test]
fn t37_split_brain_the_former_primary_stays() {
    let mut h = prim();
    h.advance(T + Duration::from_millis(50));
    h.take();
    h.peer(st(State::Alone, Readiness::Ready), true, ds(5, true, Some(Role::AloneAfterFailover)));
    h.advance(Duration::from_millis(100));
    h.peer_with(st(State::Alone, Readiness::Ready), true, ds(5, true, Some(Role::AloneAfterFailover)), |hb| hb.alone_after_failover = true);
    assert!(h.logs().iter().any(|l| l == "Split brain recovery: staying alone"));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
}

#[test]
fn t38_second_asks_the_witness_before_failing_over() {
    let mut h = H::new(with_witness(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    h.take();
    h.advance(T + Duration::from_millis(50));
    assert_eq!(h.take(), v(&["witness?"]));
    let run = crate::engine::RunId(1_000);
    h.input(Input::WitnessResult { run, reachable: true });
    assert_eq!(h.status(), st(State::Second, Readiness::Ready), "a result for another check is ignored");
    let asked = witness_run(&h);
    h.input(Input::WitnessResult { run: asked, reachable: true });
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
}

#[test]
fn t39_unreachable_witness_parks_the_node_in_wait() {
    let mut h = H::new(with_witness(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.input(Input::Replication(ReplicationEvent::ReintegrationDone));
    h.advance(T + Duration::from_millis(50));
    let asked = witness_run(&h);
    h.input(Input::WitnessResult { run: asked, reachable: false });
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    assert!(h.logs().iter().any(|l| l == "Action wait from failover rule splitbrain_failure"));
    assert!(!h.e.persistent().uptodate);
    assert!(h.take().contains(&"stop_second SECOND WAIT stopwait".to_string()));
}

#[test]
fn t40_primary_without_witness_stops_its_application() {
    let mut h = H::new(with_witness(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    let asked = witness_run(&h);
    h.input(Input::WitnessResult { run: asked, reachable: true });
    let g = h.e.persistent().gen;
    h.peer(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)));
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready));
    h.take();
    h.advance(T + Duration::from_millis(50));
    let asked = witness_run(&h);
    h.input(Input::WitnessResult { run: asked, reachable: false });
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    let out = h.take();
    assert!(out.contains(&"stop_prim PRIM WAIT stopwait".to_string()) && out.contains(&"vip-".to_string()), "{out:?}");
}

#[test]
fn t41_first_node_back_after_a_dual_power_loss_waits() {
    let mut p = data(5, true, Some(Role::Prim));
    p.running = true; // the last run did not stop cleanly
    let mut h = H::new(cfg(), p);
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
    assert!(!h.e.persistent().uptodate);
    // The former secondary comes back: roles resume, PRIM directly.
    h.peer(st(State::Wait, Readiness::Transient), false, DataStatus { unclean: true, ..ds(5, false, Some(Role::Second)) });
    assert_eq!(h.status(), st(State::Prim, Readiness::Ready));
    let out = h.take();
    assert!(out.contains(&"transition WAIT PRIM start".to_string()) && out.contains(&"start_prim WAIT PRIM start".to_string()), "{out:?}");
    assert!(!out.iter().any(|s| s.starts_with("start_sec")), "WAIT->PRIM runs transition, start_both, start_prim");
}

#[test]
fn t42_a_crashed_alone_node_restarts_alone() {
    let mut p = data(5, true, Some(Role::Alone));
    p.running = true;
    let mut h = H::new(cfg(), p);
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready), "its peer was already behind");
}

#[test]
fn t43_both_starting_the_newer_generation_leads() {
    let mut h = H::new(cfg(), data(3, false, Some(Role::Second)));
    h.peer(st(State::Wait, Readiness::Transient), false, ds(6, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady), "waits for the peer to become primary");
    h.peer(st(State::Alone, Readiness::Ready), true, ds(7, true, Some(Role::Alone)));
    assert_eq!(h.status(), st(State::Second, Readiness::Transient));
}
