//! Faults that must never cost an acknowledged write or double the VIP
//! (issue 11): stale heartbeats after a heal, a paused node, a primary
//! whose secondary took over, split-brain recovery decided by data, VIP
//! announcements after a heal and the VIP released first by a loser.

use super::*;
use crate::engine::UnreplicatedWrites;

fn gate_words(h: &mut H) -> Vec<UnreplicatedWrites> {
    h.pump();
    h.out.iter().filter_map(|a| if let Action::UnreplicatedWrites(w) = a { Some(*w) } else { None }).collect()
}

/// SECOND that failed over (ALONE via failover) and, if `wrote`, served clients.
fn failed_over(wrote: bool) -> H {
    let mut h = second();
    h.advance(T + Duration::from_millis(50));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    if wrote {
        h.input(Input::Replication(ReplicationEvent::WroteAlone));
    }
    h.take();
    h
}

#[test]
fn f01_only_the_side_that_served_clients_is_kept_whatever_its_former_role() {
    // The former SECOND took over and served clients; the former PRIM wrote nothing.
    let mut h = failed_over(true);
    h.heal_with(st(State::Alone, Readiness::Ready), true, ds(5, true, Some(Role::Alone)));
    assert!(h.logs().iter().any(|l| l == "Split brain recovery: staying alone"), "{:?}", h.logs());
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));

    // Mirror image: this former PRIM wrote nothing, the peer (ex-SECOND) did.
    let mut h = prim();
    h.advance(T + Duration::from_millis(50));
    h.take();
    let theirs = DataStatus { wrote_alone: true, ..ds(5, true, Some(Role::AloneAfterFailover)) };
    h.heal_with(st(State::Alone, Readiness::Ready), true, theirs);
    assert!(h.logs().iter().any(|l| l == "Split brain recovery: exiting alone"), "{:?}", h.logs());
    let out = h.take();
    assert!(!out.iter().any(|s| s == "quarantine"), "nothing written here to keep aside: {out:?}");
    assert!(!h.e.persistent().need_full_sync, "only the zones the dirty maps name differ");
}

#[test]
fn f02_neither_wrote_the_documented_rule_applies_without_a_full_copy() {
    let mut h = failed_over(false);
    h.heal_with(st(State::Alone, Readiness::Ready), true, ds(5, true, Some(Role::Alone)));
    assert!(h.logs().iter().any(|l| l == "Split brain recovery: exiting alone"));
    assert!(!h.e.persistent().need_full_sync);
}

#[test]
fn f03_reports_queued_during_a_cut_never_end_a_split_brain() {
    // Issue 11 item 2: after the heal the survivor receives, in one burst,
    // what the cut node sent during the cut ("PRIM Ready", "ALONE
    // Transient"); the cut node has since stopped (WAIT).
    let mut h = failed_over(true);
    for status in [st(State::Prim, Readiness::Ready), st(State::Alone, Readiness::Transient), st(State::Alone, Readiness::Ready)] {
        h.peer_with(status, true, ds(4, true, Some(Role::Prim)), |hb| hb.heard = Some((1, 2)));
    }
    assert!(!h.logs().iter().any(|l| l.starts_with("Split brain recovery")), "{:?}", h.logs());
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    h.advance(Duration::from_millis(100));
    h.peer(st(State::Wait, Readiness::NotReady), false, ds(4, false, Some(Role::Prim)));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready), "the survivor keeps serving");
    assert!(!h.logs().iter().any(|l| l.contains("exiting alone")));
}

#[test]
fn f04_a_paused_secondary_does_not_fail_over_on_its_expired_timer() {
    for told in [true, false] {
        let mut h = second();
        // Paused 5 s: on waking, the runtime tells the engine first.
        h.now += Duration::from_secs(5);
        if told {
            h.input(Input::Stalled { lag: Duration::from_secs(5) });
        }
        h.e.handle_timeout(h.now);
        h.scripts();
        let failed_over = h.status().state != State::Second;
        assert_eq!(failed_over, !told, "stall told: {told}");
        if told {
            h.peer(st(State::Prim, Readiness::Ready), true, ds(4, true, Some(Role::Prim)));
            assert_eq!(h.status(), st(State::Second, Readiness::Ready));
            assert!(!h.take().contains(&"vip+".to_string()));
        }
    }
}

#[test]
fn f05_a_failover_is_cancelled_when_the_primary_is_heard_before_the_vip_is_set() {
    let mut h = second();
    h.now += T + Duration::from_millis(50);
    h.e.handle_timeout(h.now);
    h.pump();
    assert!(h.out.iter().any(|a| matches!(a, Action::RunScript(_))), "the failover plan runs its first script");
    // The primary is heard while stop_second runs.
    let mut hb = h.peer_hb(st(State::Prim, Readiness::Ready), true, ds(4, true, Some(Role::Prim)));
    hb.heard = None;
    h.e.handle_input(h.now, Input::Heartbeat { lan: 0, hb: hb.clone() });
    h.scripts();
    let out = h.take();
    assert!(h.logs().iter().any(|l| l == "Failover cancelled: the primary is heard again"), "{:?}", h.logs());
    assert!(!out.contains(&"vip+".to_string()), "{out:?}");
    assert!(!h.e.persistent().uptodate, "the bumped generation is not trusted");
    hb.seq += 1;
    h.e.handle_input(h.now, Input::Heartbeat { lan: 0, hb });
    h.scripts();
    assert_eq!(h.status().state, State::Second, "back as the primary's secondary");
}

#[test]
fn f06_a_primary_whose_peer_took_over_yields_vip_first_and_refuses_unreplicated_writes() {
    let mut h = prim();
    assert_eq!(gate_words(&mut h).last(), None, "taken by prim(): checked below");
    h.input(Input::Replication(ReplicationEvent::SecondaryLost { reason: "sendtimeout".into() }));
    h.take();
    h.peer_with(st(State::Alone, Readiness::Ready), true, ds(9, true, Some(Role::AloneAfterFailover)), |hb| hb.alone_after_failover = true);
    assert!(h.logs().iter().any(|l| l.starts_with("The other node became primary while this node was unreachable")), "{:?}", h.logs());
    let words = gate_words(&mut h);
    assert_eq!(words.first(), Some(&UnreplicatedWrites::Refuse), "{words:?}");
    let out = h.take();
    let vip = out.iter().position(|s| s == "vip-").unwrap_or(usize::MAX);
    let stop = out.iter().position(|s| s.starts_with("stop_prim")).unwrap_or(0);
    assert!(vip < stop, "VIP removed before stop_prim: {out:?}");
    assert!(!h.e.persistent().uptodate);
}

#[test]
fn f07_pair_holds_unreplicated_writes_alone_admits_them() {
    let mut h = H::new(cfg(), data(3, true, Some(Role::Alone)));
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(gate_words(&mut h), vec![UnreplicatedWrites::Admit], "ALONE: writes are this node's");
    let g = h.e.persistent().gen;
    h.out.clear();
    h.peer(st(State::Second, Readiness::Ready), false, ds(g, true, Some(Role::Second)));
    assert_eq!(gate_words(&mut h), vec![UnreplicatedWrites::Hold], "PRIM: a write the secondary lacks waits");
}

#[test]
fn f08_the_vip_is_announced_again_after_a_heal_and_when_the_peer_releases_it() {
    let mut h = failed_over(true);
    // The cut ends; the other node, which had the VIP too, still holds it...
    h.peer(st(State::Alone, Readiness::Ready), true, ds(4, true, Some(Role::Prim)));
    assert!(!h.take().contains(&"vip+".to_string()));
    // ...and releases it.
    h.advance(Duration::from_millis(100));
    h.peer(st(State::Wait, Readiness::Transient), false, ds(4, false, Some(Role::Prim)));
    assert_eq!(h.take().iter().filter(|s| *s == "vip+").count(), 1);
    // A later loss and heal of a peer that never held it: announced again.
    h.advance(T + Duration::from_millis(50));
    h.take();
    h.peer(st(State::Wait, Readiness::NotReady), false, ds(4, false, Some(Role::Prim)));
    assert_eq!(h.take().iter().filter(|s| *s == "vip+").count(), 1);
    assert!(h.logs().iter().any(|l| l == "Virtual IP announced again: the other node is heard again"));
}

#[test]
fn f09_a_lost_lease_releases_the_vip_before_the_stop_scripts() {
    let rules = vec![ResourceRule {
        resource: "splitbrain.lease".into(),
        label: crate::engine::LEASE_RULE.into(),
        action: RuleAction::Wait,
        class: CheckerClass::Pre,
    }];
    let mut h = H::new(EngineConfig { rules, ..cfg() }, data(3, true, Some(Role::Alone)));
    h.input(Input::Resource { name: "splitbrain.lease".into(), state: ResourceState::Up, by: "test".into() });
    h.cmd(CommandKind::Start).unwrap();
    h.advance(Duration::from_millis(400));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    h.take();
    h.input(Input::Resource { name: "splitbrain.lease".into(), state: ResourceState::Down, by: "leasewitness".into() });
    h.advance(Duration::from_millis(100));
    let out = h.take();
    let vip = out.iter().position(|s| s == "vip-").unwrap_or(usize::MAX);
    let stop = out.iter().position(|s| s.starts_with("stop_prim")).unwrap_or(0);
    assert!(vip < stop, "VIP removed before stop_prim: {out:?}");
    assert_eq!(h.status(), st(State::Wait, Readiness::NotReady));
}

#[test]
fn f20_a_state_that_cannot_be_saved_stops_the_module_once() {
    let mut h = alone();
    h.take();
    h.input(Input::PersistFailed { reason: "No space left on device".into() });
    let out = h.take();
    assert!(out.contains(&"vip-".to_string()), "the primary gives up its role: {out:?}");
    assert_eq!(h.status().state, State::Stop);
    let logs = h.logs();
    assert!(logs.iter().any(|l| l == "State not saved: No space left on device"), "{logs:?}");
    assert_eq!(logs.iter().filter(|l| l.starts_with("Action stop")).count(), 1, "{logs:?}");
    // The stop's own saves fail too: logged, no second stop.
    h.input(Input::PersistFailed { reason: "No space left on device".into() });
    assert_eq!(h.logs().iter().filter(|l| l.starts_with("Action stop")).count(), 1);
}

#[test]
fn f21_only_a_takeover_counts_as_a_failover() {
    let h = failed_over(false);
    assert_eq!(crate::engine::Automaton::metrics(&h.e).failovers, 1, "SECOND → ALONE");
    // A primary whose secondary stops goes ALONE too: no failover.
    let mut h = prim();
    let g = h.e.persistent().gen;
    h.peer(st(State::Stop, Readiness::NotReady), false, ds(g, false, Some(Role::Second)));
    assert_eq!(h.status(), st(State::Alone, Readiness::Ready));
    assert_eq!(crate::engine::Automaton::metrics(&h.e).failovers, 0);
}
