//! Scripted scenarios through the deterministic simulation: what an operator
//! would see on a real pair, at simulated speed.

use std::time::Duration;

use safekit_core::engine::{CommandKind, Readiness, State, Status, SwapKind};
use safekit_core::sim::{Op, SimCluster, SimConfig};

const PRIM: Status = Status::new(State::Prim, Readiness::Ready);
const SECOND: Status = Status::new(State::Second, Readiness::Ready);
const ALONE: Status = Status::new(State::Alone, Readiness::Ready);

fn pair(seed: u64) -> SimCluster {
    let mut sim = SimCluster::new(SimConfig::default(), seed);
    assert!(sim.bootstrap(), "bootstrap did not converge:\n{}", sim.trace_tail(60));
    assert_eq!(sim.status(0), Some(PRIM));
    assert_eq!(sim.status(1), Some(SECOND));
    sim
}

fn ok(sim: &SimCluster) {
    assert!(sim.violations().is_empty(), "{:?}\n{}", sim.violations(), sim.trace_tail(80));
}

#[test]
fn first_start_waits_until_an_administrator_chooses_the_primary() {
    let mut sim = SimCluster::new(SimConfig::default(), 1);
    sim.apply(&Op::Admin(0, CommandKind::Start));
    sim.apply(&Op::Admin(1, CommandKind::Start));
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.status(0), Some(Status::new(State::Wait, Readiness::NotReady)));
    assert_eq!(sim.status(1), Some(Status::new(State::Wait, Readiness::NotReady)));
    ok(&sim);
}

#[test]
fn primary_crash_fails_over_and_the_old_primary_returns_as_second() {
    let mut sim = pair(2);
    sim.run_for(Duration::from_secs(2));
    sim.apply(&Op::Crash(0));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.status(1), Some(ALONE));
    sim.apply(&Op::Restart(0));
    sim.apply(&Op::Admin(0, CommandKind::Start));
    assert!(sim.run_until_pair(Duration::from_secs(20)), "{}", sim.trace_tail(60));
    assert_eq!(sim.status(1), Some(PRIM));
    assert_eq!(sim.status(0), Some(SECOND));
    ok(&sim);
}

#[test]
fn stop_on_the_primary_hands_over_and_start_brings_it_back_second() {
    let mut sim = pair(3);
    sim.apply(&Op::Admin(0, CommandKind::Stop));
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.status(0), Some(Status::new(State::Stop, Readiness::NotReady)));
    assert_eq!(sim.status(1), Some(ALONE));
    sim.apply(&Op::Admin(0, CommandKind::Start));
    assert!(sim.run_until_pair(Duration::from_secs(20)));
    assert_eq!(sim.status(0), Some(SECOND));
    ok(&sim);
}

#[test]
fn swap_exchanges_the_roles() {
    let mut sim = pair(4);
    sim.apply(&Op::Admin(0, CommandKind::Swap(SwapKind::Sync)));
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.status(0), Some(SECOND), "{}", sim.trace_tail(60));
    assert_eq!(sim.status(1), Some(PRIM));
    // And back, asked from the secondary this time.
    sim.apply(&Op::Admin(0, CommandKind::Swap(SwapKind::NoSync)));
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.status(0), Some(PRIM), "{}", sim.trace_tail(60));
    assert_eq!(sim.status(1), Some(SECOND));
    ok(&sim);
}

#[test]
fn partition_without_witness_gives_two_alone_then_the_former_second_exits() {
    let mut sim = pair(5);
    sim.apply(&Op::Cut { from: 0, lan: None });
    sim.apply(&Op::Cut { from: 1, lan: None });
    sim.run_for(Duration::from_secs(4));
    assert_eq!(sim.status(0), Some(ALONE));
    assert_eq!(sim.status(1), Some(ALONE));
    sim.apply(&Op::Heal);
    assert!(sim.run_until_pair(Duration::from_secs(30)), "{}", sim.trace_tail(80));
    assert_eq!(sim.status(0), Some(PRIM), "the former primary stays");
    ok(&sim);
}

#[test]
fn partition_with_a_witness_reachable_from_one_side_gives_one_alone_one_wait() {
    let cfg = SimConfig { splitbrain: true, ..SimConfig::default() };
    let mut sim = SimCluster::new(cfg, 6);
    assert!(sim.bootstrap());
    sim.apply(&Op::Witness(0, false));
    sim.apply(&Op::Cut { from: 0, lan: None });
    sim.apply(&Op::Cut { from: 1, lan: None });
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.status(0), Some(Status::new(State::Wait, Readiness::NotReady)), "{}", sim.trace_tail(60));
    assert_eq!(sim.status(1), Some(ALONE));
    sim.apply(&Op::Heal);
    assert!(sim.run_until_pair(Duration::from_secs(30)), "{}", sim.trace_tail(60));
    assert_eq!(sim.status(1), Some(PRIM));
    ok(&sim);
}

#[test]
fn witness_down_for_both_leaves_both_waiting_then_heal_resumes() {
    let cfg = SimConfig { splitbrain: true, ..SimConfig::default() };
    let mut sim = SimCluster::new(cfg, 7);
    assert!(sim.bootstrap());
    sim.apply(&Op::Witness(0, false));
    sim.apply(&Op::Witness(1, false));
    sim.apply(&Op::Cut { from: 0, lan: None });
    sim.apply(&Op::Cut { from: 1, lan: None });
    sim.run_for(Duration::from_secs(5));
    let wait = Some(Status::new(State::Wait, Readiness::NotReady));
    assert_eq!((sim.status(0), sim.status(1)), (wait, wait), "{}", sim.trace_tail(60));
    sim.apply(&Op::Heal);
    assert!(sim.run_until_pair(Duration::from_secs(30)), "{}", sim.trace_tail(60));
    ok(&sim);
}

#[test]
fn dual_power_loss_first_back_waits_then_both_resume_their_roles() {
    let mut sim = pair(8);
    sim.apply(&Op::Crash(0));
    sim.apply(&Op::Crash(1));
    sim.apply(&Op::Restart(1));
    sim.apply(&Op::Admin(1, CommandKind::Start));
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.status(1), Some(Status::new(State::Wait, Readiness::NotReady)), "{}", sim.trace_tail(40));
    sim.apply(&Op::Restart(0));
    sim.apply(&Op::Admin(0, CommandKind::Start));
    assert!(sim.run_until_pair(Duration::from_secs(30)), "{}", sim.trace_tail(60));
    assert_eq!(sim.status(0), Some(PRIM));
    ok(&sim);
}

#[test]
fn failover_off_keeps_the_secondary_waiting() {
    let mut sim = pair(9);
    sim.apply(&Op::Admin(1, CommandKind::Failover(false)));
    sim.apply(&Op::Crash(0));
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.status(1), Some(Status::new(State::Wait, Readiness::NotReady)), "{}", sim.trace_tail(40));
    sim.apply(&Op::Restart(0));
    sim.apply(&Op::Admin(0, CommandKind::Start));
    assert!(sim.run_until_pair(Duration::from_secs(30)), "{}", sim.trace_tail(60));
    assert_eq!(sim.status(0), Some(PRIM));
    ok(&sim);
}

#[test]
fn degraded_replication_keeps_the_primary_and_parks_the_secondary() {
    let mut sim = pair(10);
    sim.apply(&Op::ReplicationFailure(0));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.status(0), Some(ALONE), "{}", sim.trace_tail(40));
    assert_eq!(sim.status(1), Some(Status::new(State::Wait, Readiness::NotReady)));
    sim.heal_all();
    assert!(sim.run_until_pair(Duration::from_secs(30)), "{}", sim.trace_tail(60));
    ok(&sim);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |seed| {
        let mut sim = pair(seed);
        sim.apply(&Op::Crash(0));
        sim.run_for(Duration::from_secs(3));
        sim.apply(&Op::Restart(0));
        sim.apply(&Op::Admin(0, CommandKind::Start));
        sim.run_for(Duration::from_secs(10));
        sim.trace_digest()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn a_staggered_heal_keeps_the_former_primary() {
    let mut sim = pair(11);
    sim.apply(&Op::Cut { from: 0, lan: None });
    sim.apply(&Op::Cut { from: 1, lan: None });
    sim.run_for(Duration::from_secs(4));
    assert_eq!((sim.status(0), sim.status(1)), (Some(ALONE), Some(ALONE)));
    // node1 hears node2 first; node2 hears node1 a moment later.
    sim.apply(&Op::HealFrom { from: 1 });
    sim.run_for(Duration::from_millis(150));
    sim.apply(&Op::Heal);
    assert!(sim.run_until_pair(Duration::from_secs(30)), "{}", sim.trace_tail(80));
    assert_eq!(sim.status(0), Some(PRIM), "only the former secondary exits");
    ok(&sim);
}
