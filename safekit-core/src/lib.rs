//! # safekit-core
//!
//! The library behind the `safekit` high-availability cluster, a re-creation
//! of Evidian/Eviden SafeKit 8.2's behaviour: modules, `userconfig.xml`,
//! `cluster.xml`, the STOP/WAIT/ALONE/PRIM/SECOND automaton, `start_prim` and
//! friends.
//!
//! ## Map
//! - [`clock`]: wall-clock stamps of log lines and file names (UTC).
//! - [`config`]: reads and checks `userconfig.xml` and `cluster.xml`
//!   (errors name `file:line:column` and what was expected).
//! - [`convert`]: the one conversion from a module's configuration to its
//!   engine's (generated failover rules included), shared by the daemon,
//!   the simulation and the examples.
//! - [`engine`]: the pure state machine of one module on one node. It
//!   contains **no I/O, no clock reads, no threads and no randomness**: time
//!   and events go in through `handle_*`/`command`, effects come out as
//!   [`engine::Action`] values through `poll_action`, and `poll_timeout`
//!   says when to call again (all on the [`engine::Automaton`] trait,
//!   which mirror and light implement over one shared core). The same inputs always give the same outputs,
//!   which is what lets `sim` replay a failing seed exactly.
//! - [`heartbeat`]: the authenticated heartbeat datagram.
//! - [`key`]: the cluster key that authenticates heartbeats, replication
//!   and the lease witness.
//! - [`layout`]: where a node keeps modules, cluster.xml and state (SAFE, SAFEVAR).
//! - [`services`]: the traits the runtime calls
//!   (`Heartbeat`, `VirtualIp`, `Replicator`, `ScriptRunner`, `Checker`),
//!   which a partner implements to embed a module in a product.
//! - [`runtime`] (feature `runtime`, without the Linux services): the tokio loop that drives one engine
//!   with those services: a main lane for heartbeats, timers and commands,
//!   an effect lane for everything that can take time.
//! - [`linux`] (feature `linux`): the default implementations (UDP
//!   heartbeats, netlink VIPs with gratuitous ARP, process scripts, ICMP).
//! - [`replication`] (feature `linux`): synchronous replication of `<rfs>`
//!   directories through a FUSE mount, dirty maps and reintegration.
//! - [`witness`] (feature `linux`): the lease witness that arbitrates a
//!   split brain, and its client.
//! - [`modules`] (feature `linux`): `.safe` packages, install and uninstall.
//! - [`daemon`] (feature `linux`): the node daemon: reads the layout, runs
//!   every module with the Linux services, answers the CLI.
//! - `sim` (feature `sim`): a deterministic multi-node simulation with a
//!   seeded lossy network, crashes and admin commands, used by property tests.
//!
//! ## The run loop
//!
//! ```text
//!   heartbeats in, timers, commands              +--------------+
//!   effect results (ScriptDone, EffectDone, ---> |    engine    |  poll_timeout(): when to call again
//!   WitnessResult), resources, replication       +--------------+
//!                                                   | poll_action()
//!                          +------------------------+-------------------------+
//!                          | never waits                                      | can take time
//!                          v                                                  v
//!              main lane: send heartbeat,                 effect lane (serial, in order): scripts,
//!              write the module log                       VIP, replication, quarantine, persist,
//!                                                         witness, checker classes
//!                                                                  |
//!                                          results come back as inputs (ScriptDone, EffectDone, ...)
//! ```
#![cfg_attr(not(fuzzing), warn(missing_docs))]

pub mod clock;
pub mod config;
pub mod convert;
#[cfg(feature = "linux")]
pub mod daemon;
pub mod engine;
pub mod farm;
pub mod heartbeat;
pub mod key;
pub mod layout;
#[cfg(feature = "linux")]
pub mod linux;
#[cfg(feature = "linux")]
pub mod modules;
#[cfg(feature = "linux")]
pub mod replication;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod services;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(feature = "linux")]
pub mod witness;
