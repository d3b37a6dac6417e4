//! The failover machine (reference §1.10): rules `label: if (expr) then
//! action;` over local and remote resources, evaluated every `period`; an
//! action runs once its condition has held for `handle_time` (so a flapping
//! checker does not flap the module), and again only after the condition
//! went false. The generated rules (`t_<id>`, `p_<id>`, `c_<id>`,
//! `interface_failure`, `ip_failure`, `module_failure`) are rules like the
//! user's, limited to the time their checker's class is enabled.
//!
//! Pure: the engines call [`RuleMachine::evaluate`] with `now` and the
//! resources; it answers which actions to run.

mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub use parse::{parse, RuleError};

use super::{CheckerClass, ResourceRule, ResourceState, RuleAction};

/// Whose resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This node's (the default).
    Local,
    /// The peer's, as its heartbeats report them (`unknown` when unheard).
    Remote,
}

/// The id part of a resource reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPattern {
    /// One resource.
    Name(String),
    /// `*`: every resource of the class.
    All,
    /// `?`: any resource of the class.
    Any,
}

/// `[local.|remote.]class.id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef {
    /// Local or remote.
    pub side: Side,
    /// `tcp`, `ping`, `intf`, `custom`, ...
    pub class: String,
    /// Which ones.
    pub id: IdPattern,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// A resource (or several, with `*`/`?`).
    Resource(ResourceRef),
    /// `init`, `up`, `down` or `unknown`.
    State(ResourceState),
}

/// A condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `a == b` (`eq`) or `a != b`.
    Cmp {
        /// Left operand.
        left: Operand,
        /// `==` rather than `!=`.
        eq: bool,
        /// Right operand.
        right: Operand,
    },
    /// `!e`.
    Not(Box<Self>),
    /// `a && b`.
    And(Box<Self>, Box<Self>),
    /// `a || b`.
    Or(Box<Self>, Box<Self>),
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleVerb {
    /// Stop the module.
    Stop,
    /// Stop and start it (a primary fails over).
    Stopstart,
    /// Stop it into WAIT until no wait rule holds.
    Wait,
    /// Restart the application locally.
    Restart,
    /// Swap the roles of a PRIM/SECOND pair.
    Swap,
}

/// `label: if (expr) then action;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverRule {
    /// Label, named in the log.
    pub label: String,
    /// Condition.
    pub expr: Expr,
    /// Action.
    pub action: RuleVerb,
}

/// The resources a rule sees.
pub struct View<'a> {
    /// This node's.
    pub local: &'a BTreeMap<String, ResourceState>,
    /// The peer's, if it is heard and its module runs (else every
    /// `remote.` resource is `unknown`).
    pub remote: Option<&'a BTreeMap<String, ResourceState>>,
}

impl View<'_> {
    fn states(&self, r: &ResourceRef) -> Vec<ResourceState> {
        let map = match r.side {
            Side::Local => Some(self.local),
            Side::Remote => self.remote,
        };
        // A resource not reported (yet) has not been tested: init; a peer
        // that is not heard (or stopped) has only unknown resources.
        let missing = ResourceState::Init;
        match (&r.id, map) {
            (IdPattern::Name(n), Some(m)) => vec![m.get(&format!("{}.{n}", r.class)).copied().unwrap_or(missing)],
            (IdPattern::Name(_), None) => vec![ResourceState::Unknown],
            (_, Some(m)) => {
                let prefix = format!("{}.", r.class);
                m.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(_, v)| *v).collect()
            }
            (_, None) => Vec::new(),
        }
    }

    /// Whether `e` holds.
    pub fn holds(&self, e: &Expr) -> bool {
        match e {
            Expr::Not(e) => !self.holds(e),
            Expr::And(a, b) => self.holds(a) && self.holds(b),
            Expr::Or(a, b) => self.holds(a) || self.holds(b),
            Expr::Cmp { left, eq, right } => match (left, right) {
                (Operand::Resource(r), Operand::State(s)) | (Operand::State(s), Operand::Resource(r)) => {
                    let states = self.states(r);
                    let test = |x: &ResourceState| (x == s) == *eq;
                    match r.id {
                        IdPattern::All => !states.is_empty() && states.iter().all(test),
                        _ => states.iter().any(test),
                    }
                }
                (Operand::Resource(a), Operand::Resource(b)) => {
                    let first = |r| self.states(r).first().copied().unwrap_or(ResourceState::Unknown);
                    (first(a) == first(b)) == *eq
                }
                (Operand::State(a), Operand::State(b)) => (a == b) == *eq,
            },
        }
    }

    /// Whether `e` names a local resource that is still `init` (a wait rule
    /// over it holds the module in WAIT Transient).
    pub fn uses_init(&self, e: &Expr) -> bool {
        match e {
            Expr::Not(e) => self.uses_init(e),
            Expr::And(a, b) | Expr::Or(a, b) => self.uses_init(a) || self.uses_init(b),
            Expr::Cmp { left, right, .. } => [left, right].into_iter().any(|o| match o {
                Operand::Resource(r) if r.side == Side::Local => self.states(r).contains(&ResourceState::Init),
                _ => false,
            }),
        }
    }
}

/// A rule with what limits it.
#[derive(Debug, Clone)]
struct Armed {
    rule: FailoverRule,
    /// Generated rules apply only while their checker's class is enabled.
    class: Option<CheckerClass>,
    /// The condition has held since then.
    since: Option<Instant>,
    /// Its action ran for the current stretch of truth.
    fired: bool,
}

/// `period` and `handle_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// Evaluation period (zero: at every resource change).
    pub period: Duration,
    /// How long a condition must hold before its action runs.
    pub handle_time: Duration,
}

/// All rules of a module and their stability bookkeeping.
#[derive(Debug, Clone)]
pub struct RuleMachine {
    rules: Vec<Armed>,
    timing: Timing,
    next_eval: Option<Instant>,
}

impl RuleMachine {
    /// The generated rules (`generated`, a condition "resource == down")
    /// and the user's (`user`), with `timing`.
    pub fn new(generated: &[ResourceRule], user: &[FailoverRule], timing: Timing) -> Self {
        let mut rules: Vec<Armed> = generated
            .iter()
            .map(|g| {
                let (class, id) = g.resource.split_once('.').unwrap_or((g.resource.as_str(), ""));
                let expr = Expr::Cmp {
                    left: Operand::Resource(ResourceRef { side: Side::Local, class: class.into(), id: IdPattern::Name(id.into()) }),
                    eq: true,
                    right: Operand::State(ResourceState::Down),
                };
                let action = match g.action {
                    RuleAction::Wait => RuleVerb::Wait,
                    RuleAction::Restart => RuleVerb::Restart,
                    RuleAction::Stopstart => RuleVerb::Stopstart,
                    RuleAction::Stop => RuleVerb::Stop,
                };
                Armed { rule: FailoverRule { label: g.label.clone(), expr, action }, class: Some(g.class), since: None, fired: false }
            })
            .collect();
        rules.extend(user.iter().map(|r| Armed { rule: r.clone(), class: None, since: None, fired: false }));
        Self { rules, timing, next_eval: None }
    }

    /// When [`Self::evaluate`] is next due (periodic evaluation, or the end
    /// of a handle_time), if ever.
    pub fn due(&self) -> Option<Instant> {
        let stable = self
            .rules
            .iter()
            .filter(|a| !a.fired)
            .filter_map(|a| a.since.map(|s| s + self.timing.handle_time))
            .filter(|_| self.timing.handle_time > Duration::ZERO)
            .min();
        match (self.next_eval, stable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets every condition (the module stopped).
    pub fn reset(&mut self) {
        for a in &mut self.rules {
            a.since = None;
            a.fired = false;
        }
        self.next_eval = None;
    }

    /// Evaluates the rules if due: at every call when `period` is zero
    /// (`changed` = a resource changed), else once per period. Returns the
    /// rules whose action runs now.
    pub fn evaluate(&mut self, now: Instant, view: &View<'_>, enabled: &BTreeSet<CheckerClass>, changed: bool) -> Vec<(String, RuleVerb)> {
        let periodic = self.timing.period > Duration::ZERO;
        let tick = self.next_eval.is_none_or(|t| now >= t);
        if periodic {
            if !tick && !self.stability_due(now) {
                return Vec::new();
            }
            if tick {
                self.next_eval = Some(now + self.timing.period);
            }
        } else if !changed && !self.stability_due(now) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for a in &mut self.rules {
            let active = a.class.is_none_or(|c| enabled.contains(&c));
            // Between periodic ticks only the stability of known-true conditions advances.
            let holds = if periodic && !tick { a.since.is_some() } else { active && view.holds(&a.rule.expr) };
            if !holds {
                a.since = None;
                a.fired = false;
                continue;
            }
            let since = *a.since.get_or_insert(now);
            if !a.fired && now.duration_since(since) >= self.timing.handle_time {
                a.fired = true;
                out.push((a.rule.label.clone(), a.rule.action));
            }
        }
        out
    }

    fn stability_due(&self, now: Instant) -> bool {
        self.timing.handle_time > Duration::ZERO
            && self.rules.iter().any(|a| !a.fired && a.since.is_some_and(|s| now >= s + self.timing.handle_time))
    }

    /// For a start: `(init, label)`: a wait rule over a resource still
    /// `init` holds the start (WAIT Transient); a wait rule whose condition
    /// holds blocks it (its label).
    pub fn waiting(&self, view: &View<'_>, enabled: &BTreeSet<CheckerClass>) -> (bool, Option<String>) {
        let mut init = false;
        for a in self.rules.iter().filter(|a| a.rule.action == RuleVerb::Wait && a.class.is_none_or(|c| enabled.contains(&c))) {
            if view.holds(&a.rule.expr) {
                return (init, Some(a.rule.label.clone()));
            }
            if view.uses_init(&a.rule.expr) {
                init = true;
            }
        }
        (init, None)
    }
}

#[cfg(test)]
mod tests;
