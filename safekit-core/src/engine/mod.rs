//! The pure state machine of one module on one node.
//!
//! Every module kind is an [`Automaton`] (mirror: [`MirrorEngine`], light:
//! [`LightEngine`]) built on one shared core (`core.rs`: sequencer, action
//! queue, resources, rules, maxloop guard and the plan loop); the trait's
//! docs state the contract: time and events go in, actions come out.
//!
//! Only one script runs at a time: the engine waits for the
//! [`Input::ScriptDone`] of the [`RunId`] it asked for before moving on, and
//! ignores results of any other run.

mod config;
mod core;
mod light;
mod loops;
mod messages;
mod mirror;
mod persist;
mod plan;
pub mod rules;
mod types;

pub use self::core::{Automaton, EngineMetrics};
pub use config::{EngineConfig, FailoverSpec, LanTiming, ResourceRule, RuleAction};
pub use light::{LightEngine, Traffic};
pub use messages::*;
pub use mirror::MirrorEngine;
pub use persist::*;
pub use types::*;

/// Label of the wait rule generated for a lease witness (resource
/// `splitbrain.lease`): the node that loses its lease releases the VIP
/// before its stop scripts.
pub const LEASE_RULE: &str = "lease_failure";

/// The resource the lease witness's keeper sets: up while this node holds
/// the lease.
pub const LEASE_RESOURCE: &str = "splitbrain.lease";
