//! What the engine needs from `userconfig.xml` and `cluster.xml`
//! (built by [`crate::convert::engine_config`]).

use std::time::Duration;

use super::{CheckerClass, DefaultPrim};

/// Timing of one heartbeat network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanTiming {
    /// `heartbeat.<ident>` resource label.
    pub ident: String,
    /// Interval between heartbeats.
    pub pulse: Duration,
    /// Silence after which the network is declared down.
    pub timeout: Duration,
}

/// What a resource going down triggers (built-in rules of the failover machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Hold the module in WAIT until the resource is up.
    Wait,
    /// stop_xx + start_xx.
    Restart,
    /// Stop and start.
    Stopstart,
    /// Stop.
    Stop,
}

/// One rule: `label: if (resource == down) then action;`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRule {
    /// Resource name, e.g. `ping.gateway`.
    pub resource: String,
    /// Rule label used in the log (`p_gateway`, `interface_failure`, ...).
    pub label: String,
    /// What it triggers.
    pub action: RuleAction,
    /// The checker class the resource belongs to: the rule applies only while
    /// that class is enabled.
    pub class: CheckerClass,
}

/// Engine configuration of one module on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// This node's name (cluster.xml).
    pub node: String,
    /// The peer's name (mirror).
    pub peer: String,
    /// Heartbeat networks, in the order of `<heartbeat>` elements.
    pub lans: Vec<LanTiming>,
    /// `failover` default (the persisted user setting wins).
    pub failover: bool,
    /// `defaultprim`.
    pub defaultprim: DefaultPrim,
    /// `maxloop`.
    pub maxloop: u32,
    /// `loop_interval` (zero disables).
    pub loop_interval: Duration,
    /// A `<splitbrain>` checker is configured.
    pub splitbrain: bool,
    /// A `<user>` element exists: without it no script runs.
    pub scripts: bool,
    /// Rules fired by checker resources.
    pub rules: Vec<ResourceRule>,
    /// `<failover>`: the user's rules and the machine's timing.
    pub failover_rules: FailoverSpec,
}

/// `<failover>` as the engine uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverSpec {
    /// The user's rules (legacy language).
    pub user: Vec<super::rules::FailoverRule>,
    /// `period` and `handle_time`. Without `<failover>` both are zero: a
    /// checker's failure acts at once (SafeKit's 15 s `handle_time` applies
    /// when the element is present; see docs/DESIGN.md).
    pub timing: super::rules::Timing,
    /// `extends="yes"`: the generated rules stay beside the user's.
    pub extends: bool,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        Self { user: Vec::new(), timing: super::rules::Timing::default(), extends: true }
    }
}

impl EngineConfig {
    /// The shortest pulse: heartbeats are sent at that rate on every network.
    pub fn pulse(&self) -> Duration {
        self.lans.iter().map(|l| l.pulse).min().unwrap_or(Duration::from_millis(700))
    }
}
