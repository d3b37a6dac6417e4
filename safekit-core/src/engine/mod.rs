//! The pure state machine of one module on one node.
//!
//! **Contract.** No I/O, no clock reads, no threads, no randomness. The caller
//! passes `now` into every call, feeds [`Input`]s and [`Command`]s, and after
//! each call drains [`MirrorEngine::poll_action`] until it returns `None`,
//! carrying out each [`Action`] in order (a [`Action::Persist`] must be durable
//! before the next action runs). Then it sleeps until
//! [`MirrorEngine::poll_timeout`] or the next input, and calls
//! `handle_timeout(now)`; early or spurious calls are harmless.
//!
//! Only one script runs at a time: the engine waits for the
//! [`Input::ScriptDone`] of the [`RunId`] it asked for before moving on, and
//! ignores results of any other run.

mod config;
mod light;
mod loops;
mod messages;
mod mirror;
mod persist;
mod plan;
pub mod rules;
mod types;

pub use config::{EngineConfig, FailoverSpec, LanTiming, ResourceRule, RuleAction};
pub use light::LightEngine;
pub use messages::*;
pub use mirror::MirrorEngine;
pub use persist::*;
pub use types::*;

/// Label of the wait rule generated for a lease witness (resource
/// `splitbrain.lease`): the node that loses its lease releases the VIP
/// before its stop scripts.
pub const LEASE_RULE: &str = "lease_failure";
