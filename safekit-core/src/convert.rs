//! The one conversion from a module's configuration to its engine's: what
//! the daemon, the simulation and the example programs all call, so each
//! runs exactly the same generated failover rules. Pure: the only facts
//! from the machine it needs (the subnets the virtual IPs resolved to) are
//! passed in.
//!
//! The engine never reads the configuration model; this module is the only
//! place that knows both.

use std::net::IpAddr;

use crate::config::{CheckAction, CheckerKind, ClusterConfig, FailoverRules, Mode, UserConfig, When};
use crate::engine::{rules, CheckerClass, EngineConfig, FailoverSpec, LanTiming, ResourceRule, RuleAction, LEASE_RESOURCE, LEASE_RULE};

/// Where one `<real_interface>` address of the `<vip>` section landed on
/// this node: its address and the prefix of the subnet it is on. Given in
/// the order of the configuration's `<real_interface>` elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipSubnet {
    /// The virtual address.
    pub ip: IpAddr,
    /// The prefix length of the interface's subnet.
    pub prefix: u8,
}

/// The network address of `ip`/`prefix` (the `intf.<network>` resource).
pub fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)))
        }
        IpAddr::V6(a) => {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0)))
        }
    }
}

/// The checker class of a `when` attribute.
pub const fn checker_class(w: When) -> CheckerClass {
    match w {
        When::Pre => CheckerClass::Pre,
        When::Prim => CheckerClass::Prim,
        When::Second => CheckerClass::Second,
        When::Both => CheckerClass::Both,
    }
}

/// `<failover>` as the engine uses it; rules that do not parse (the
/// configuration reader reports them with their position) are left out.
pub fn failover_spec(f: Option<&FailoverRules>) -> FailoverSpec {
    f.map_or_else(FailoverSpec::default, |f| FailoverSpec {
        user: rules::parse(&f.text).unwrap_or_default(),
        timing: rules::Timing { period: f.period, handle_time: f.handle_time },
        extends: f.extends,
    })
}

/// The engine configuration of `node` for a module in its cluster. The
/// peer is the other node of the first heartbeat lan (mirror). `vips` are
/// the subnets the module's virtual IPs resolved to (empty when it has
/// none, or in a simulation without addresses: then the VIP checkers'
/// rules are not generated).
pub fn engine_config(user: &UserConfig, cluster: &ClusterConfig, node: &str, vips: &[VipSubnet]) -> EngineConfig {
    let s = &user.service;
    let mut lans = Vec::new();
    let mut peer = String::new();
    for hb in s.heart.iter().flat_map(|h| &h.heartbeats) {
        lans.push(LanTiming { ident: hb.ident.clone(), pulse: hb.pulse, timeout: hb.timeout });
        if peer.is_empty() {
            if let Some(lan) = cluster.lan(&hb.name) {
                peer = lan.nodes.iter().find(|n| n.name != node).map(|n| n.name.clone()).unwrap_or_default();
            }
        }
    }
    let mut rules = Vec::new();
    let mut splitbrain = false;
    let mut lease = false;
    for c in s.check.iter().flat_map(|c| &c.checkers) {
        let label = match c.kind {
            CheckerKind::Tcp => format!("t_{}", c.ident),
            CheckerKind::Ping => format!("p_{}", c.ident),
            CheckerKind::Custom => format!("c_{}", c.ident),
            CheckerKind::Intf => "interface_failure".into(),
            CheckerKind::Ip => "ip_failure".into(),
            CheckerKind::Module => "module_failure".into(),
            CheckerKind::Splitbrain => {
                splitbrain = true;
                lease |= c.exec.as_deref() == Some("lease");
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
        rules.push(ResourceRule { resource: format!("{}.{}", c.kind.as_str(), c.ident), label, action, class: checker_class(c.when) });
    }
    rules.extend(vip_rules(user, vips));
    // The node that loses its lease waits (and releases the VIP first).
    if lease {
        rules.push(ResourceRule {
            resource: LEASE_RESOURCE.into(),
            label: LEASE_RULE.into(),
            action: RuleAction::Wait,
            class: CheckerClass::Pre,
        });
    }
    EngineConfig {
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
        failover_rules: failover_spec(s.failover_rules.as_ref()),
    }
}

/// The rules of the checkers `check="on"` generates in the `<vip>` section:
/// `intf.<network>` (wait, from prestart) once per subnet and `ip.<vip>`
/// (stopstart, while primary).
fn vip_rules(user: &UserConfig, vips: &[VipSubnet]) -> Vec<ResourceRule> {
    let mut out: Vec<ResourceRule> = Vec::new();
    let reals = user.service.vip.iter().flat_map(|v| &v.interfaces).flat_map(|i| i.real.iter().map(move |a| (i.check, a.check)));
    for ((intf_check, ip_check), v) in reals.zip(vips) {
        let intf = format!("intf.{}", network(v.ip, v.prefix));
        if intf_check && !out.iter().any(|r| r.resource == intf) {
            out.push(ResourceRule {
                resource: intf,
                label: "interface_failure".into(),
                action: RuleAction::Wait,
                class: CheckerClass::Pre,
            });
        }
        if ip_check {
            out.push(ResourceRule {
                resource: format!("ip.{}", v.ip),
                label: "ip_failure".into(),
                action: RuleAction::Stopstart,
                class: CheckerClass::Prim,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_masks_the_host_part() {
        let ip: IpAddr = "192.168.1.77".parse().unwrap();
        assert_eq!(network(ip, 24), "192.168.1.0".parse::<IpAddr>().unwrap());
        assert_eq!(network(ip, 0), "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(network("fd00::1:2".parse().unwrap(), 64), "fd00::".parse::<IpAddr>().unwrap());
    }

    fn module(checks: &str) -> (UserConfig, ClusterConfig) {
        let cluster = crate::config::parse_cluster(
            r#"<cluster><lans><lan name="default"><node name="node1" addr="10.9.0.1"/><node name="node2" addr="10.9.0.2"/></lan></lans></cluster>"#,
            "cluster.xml",
        )
        .unwrap()
        .value;
        let user = format!(
            r#"<safe><service mode="mirror"><heart><heartbeat name="default"/></heart>
<vip><interface_list><interface check="on"><real_interface>
<virtual_addr addr="10.9.0.100" where="one_side_alias" check="on"/><virtual_addr addr="10.9.0.101" where="one_side_alias" check="off"/>
</real_interface></interface></interface_list></vip>
<check>{checks}</check><user/></service></safe>"#
        );
        let opts = crate::config::UserConfigOptions { cluster: Some(&cluster), ..crate::config::UserConfigOptions::new() };
        (crate::config::parse_userconfig(&user, opts).unwrap().value, cluster)
    }

    fn rules(cfg: &EngineConfig) -> Vec<(String, String, RuleAction, CheckerClass)> {
        cfg.rules.iter().map(|r| (r.resource.clone(), r.label.clone(), r.action, r.class)).collect()
    }

    #[test]
    fn the_generated_rules_are_the_checkers_then_the_vip_checks_then_the_lease() {
        let (user, cluster) = module(
            r#"<tcp ident="app" when="prim" action="restart"><to addr="127.0.0.1" port="80"/></tcp>
<ping ident="gw" action="noaction"><to addr="10.9.0.254"/></ping>
<splitbrain ident="witness" exec="lease" arg="10.9.0.10:9455"/>"#,
        );
        let subnets =
            [VipSubnet { ip: "10.9.0.100".parse().unwrap(), prefix: 24 }, VipSubnet { ip: "10.9.0.101".parse().unwrap(), prefix: 24 }];
        let cfg = engine_config(&user, &cluster, "node1", &subnets);
        assert_eq!(cfg.peer, "node2");
        assert!(cfg.splitbrain);
        assert_eq!(
            rules(&cfg),
            vec![
                ("tcp.app".into(), "t_app".into(), RuleAction::Restart, CheckerClass::Prim),
                ("intf.10.9.0.0".into(), "interface_failure".into(), RuleAction::Wait, CheckerClass::Pre),
                ("ip.10.9.0.100".into(), "ip_failure".into(), RuleAction::Stopstart, CheckerClass::Prim),
                (LEASE_RESOURCE.into(), LEASE_RULE.into(), RuleAction::Wait, CheckerClass::Pre),
            ],
            "noaction makes no rule; one intf rule per subnet; no ip rule where check=\"off\""
        );
    }

    #[test]
    fn without_resolved_addresses_no_vip_rule_is_made() {
        let (user, cluster) = module(r#"<splitbrain ident="witness" exec="ping" arg="10.9.0.254"/>"#);
        let cfg = engine_config(&user, &cluster, "node2", &[]);
        assert_eq!(cfg.peer, "node1");
        assert!(cfg.splitbrain);
        assert!(cfg.rules.is_empty(), "a ping witness makes no rule: {:?}", cfg.rules);
    }
}
