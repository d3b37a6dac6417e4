//! # safekit-core
//!
//! The library behind the `safekit` high-availability cluster, a re-creation
//! of Evidian/Eviden SafeKit 8.2's behaviour: modules, `userconfig.xml`,
//! `cluster.xml`, the STOP/WAIT/ALONE/PRIM/SECOND automaton, `start_prim` and
//! friends.
//!
//! ## Layout
//! - [`config`]: reads and checks `userconfig.xml` and `cluster.xml`.
//! - [`layout`]: where a node keeps modules, cluster.xml and state (SAFE, SAFEVAR).
//! - [`engine`]: the pure state machine of one module on one node. It
//!   contains **no I/O, no clock reads, no threads and no randomness**: time
//!   and events go in through `handle_*`/`command`, effects come out as
//!   [`engine::Action`] values through `poll_action`, and `poll_timeout`
//!   says when to call again. The same inputs always give the same outputs,
//!   which is what lets [`sim`] replay a failing seed exactly.
//! - [`sim`] (feature `sim`): a deterministic multi-node simulation with a
//!   seeded lossy network, crashes and admin commands, used by property tests.
//!
//! ```text
//!   time, heartbeats, script results,          +--------------+      actions: run script,
//!   checker resources, replication events ---> |    engine    | ---> set VIP, replicate, persist,
//!   admin commands (Result back to the CLI)    +--------------+      send heartbeat, log
//!                                                     |
//!                                                poll_timeout()
//! ```
#![cfg_attr(not(fuzzing), warn(missing_docs))]

pub mod config;
#[cfg(feature = "linux")]
pub mod daemon;
#[cfg(feature = "linux")]
pub mod demo;
pub mod engine;
pub mod heartbeat;
pub mod layout;
#[cfg(feature = "linux")]
pub mod linux;
#[cfg(feature = "linux")]
pub mod modules;
#[cfg(feature = "linux")]
pub mod replication;
#[cfg(feature = "linux")]
pub mod runtime;
#[cfg(feature = "linux")]
pub mod services;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(feature = "linux")]
pub mod witness;
