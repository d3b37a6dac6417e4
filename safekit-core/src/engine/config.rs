//! What the engine needs from `userconfig.xml` and `cluster.xml`.

use std::time::Duration;

use crate::config::{CheckAction, CheckerKind, ClusterConfig, DefaultPrim, Mode, UserConfig, When};

use super::CheckerClass;

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

impl FailoverSpec {
    /// From `<failover>`; rules that do not parse (the configuration reader
    /// reports them with their position) are left out.
    pub fn from_config(f: Option<&crate::config::FailoverRules>) -> Self {
        f.map_or_else(Self::default, |f| Self {
            user: super::rules::parse(&f.text).unwrap_or_default(),
            timing: super::rules::Timing { period: f.period, handle_time: f.handle_time },
            extends: f.extends,
        })
    }
}

impl EngineConfig {
    /// Derives the engine configuration of `node` from a module and its cluster.
    /// The peer is the other node of the first heartbeat lan (mirror).
    pub fn from_config(user: &UserConfig, cluster: &ClusterConfig, node: &str) -> Self {
        let s = &user.service;
        let mut lans = Vec::new();
        let mut peer = String::new();
        if let Some(h) = &s.heart {
            for hb in &h.heartbeats {
                lans.push(LanTiming { ident: hb.ident.clone(), pulse: hb.pulse, timeout: hb.timeout });
                if peer.is_empty() {
                    if let Some(lan) = cluster.lan(&hb.name) {
                        peer = lan.nodes.iter().find(|n| n.name != node).map(|n| n.name.clone()).unwrap_or_default();
                    }
                }
            }
        }
        let mut rules = Vec::new();
        let mut splitbrain = false;
        if let Some(check) = &s.check {
            for c in &check.checkers {
                let resource = format!("{}.{}", c.kind.as_str(), c.ident);
                let class = match c.when {
                    When::Pre => CheckerClass::Pre,
                    When::Prim => CheckerClass::Prim,
                    When::Second => CheckerClass::Second,
                    When::Both => CheckerClass::Both,
                };
                let label = match c.kind {
                    CheckerKind::Tcp => format!("t_{}", c.ident),
                    CheckerKind::Ping => format!("p_{}", c.ident),
                    CheckerKind::Custom => format!("c_{}", c.ident),
                    CheckerKind::Intf => "interface_failure".into(),
                    CheckerKind::Ip => "ip_failure".into(),
                    CheckerKind::Module => "module_failure".into(),
                    CheckerKind::Splitbrain => {
                        splitbrain = true;
                        continue;
                    }
                };
                let action = match c.action {
                    CheckAction::Wait => RuleAction::Wait,
                    CheckAction::Restart => RuleAction::Restart,
                    CheckAction::Stopstart => RuleAction::Stopstart,
                    CheckAction::Stop => RuleAction::Stop,
                    CheckAction::Noaction => continue,
                };
                rules.push(ResourceRule { resource, label, action, class });
            }
        }
        Self {
            node: node.to_string(),
            peer,
            lans,
            failover: s.failover,
            defaultprim: s.defaultprim.clone(),
            maxloop: s.maxloop,
            loop_interval: s.loop_interval,
            splitbrain: splitbrain && s.mode == Mode::Mirror,
            scripts: s.user.is_some(),
            rules,
            failover_rules: FailoverSpec::from_config(s.failover_rules.as_ref()),
        }
    }

    /// The shortest pulse: heartbeats are sent at that rate on every network.
    pub fn pulse(&self) -> Duration {
        self.lans.iter().map(|l| l.pulse).min().unwrap_or(Duration::from_millis(700))
    }
}
