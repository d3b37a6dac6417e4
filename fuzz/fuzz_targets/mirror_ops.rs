//! Random schedules of faults and commands replayed into the two-node
//! simulation; the engine invariants are assertions.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use safekit_core::engine::{CommandKind, SwapKind};
use safekit_core::sim::{Op, SimCluster, SimConfig};

#[derive(Debug, Arbitrary)]
enum FuzzOp {
    Advance(u16),
    Cut { from: bool, lan: Option<bool> },
    Heal,
    Crash(bool),
    Restart(bool),
    Admin(bool, u8),
    Witness(bool, bool),
    ReplicationFailure(bool),
}

fn node(b: bool) -> usize {
    usize::from(b)
}

fn command(k: u8) -> CommandKind {
    match k % 10 {
        0 => CommandKind::Start,
        1 => CommandKind::Stop,
        2 => CommandKind::Stopstart,
        3 => CommandKind::Restart,
        4 => CommandKind::Swap(SwapKind::Sync),
        5 => CommandKind::Prim { fullsync: false },
        6 => CommandKind::Second { fullsync: true },
        7 => CommandKind::Primforce,
        8 => CommandKind::Forcestop,
        _ => CommandKind::Failover(k % 2 == 0),
    }
}

fuzz_target!(|input: (bool, u64, Vec<FuzzOp>)| {
    let (witness, seed, ops) = input;
    let mut sim = SimCluster::new(SimConfig { splitbrain: witness, ..SimConfig::default() }, seed);
    assert!(sim.bootstrap());
    for op in ops.into_iter().take(64) {
        let op = match op {
            FuzzOp::Advance(ms) => Op::Advance(Duration::from_millis(u64::from(ms % 8000))),
            FuzzOp::Cut { from, lan } => Op::Cut { from: node(from), lan: lan.map(node) },
            FuzzOp::Heal => Op::Heal,
            FuzzOp::Crash(n) => Op::Crash(node(n)),
            FuzzOp::Restart(n) => Op::Restart(node(n)),
            FuzzOp::Admin(n, k) => Op::Admin(node(n), command(k)),
            FuzzOp::Witness(n, up) => Op::Witness(node(n), up),
            FuzzOp::ReplicationFailure(n) => Op::ReplicationFailure(node(n)),
        };
        sim.apply(&op);
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }
    sim.heal_all();
    assert!(sim.run_until_pair(Duration::from_secs(120)), "no convergence: {:?} {:?}", sim.status(0), sim.status(1));
});
