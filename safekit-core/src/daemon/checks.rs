//! Building a module's checkers from its configuration: the ones
//! `check="on"` generates on the VIP's interface and address, and the
//! `<check>` section's tcp, ping, intf, ip, module and custom checkers
//! (their failover rules come from [`EngineConfig::from_config`]).

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{CheckerKind, UserConfig, When};
use crate::engine::{CheckerClass, EngineConfig, ResourceRule, RuleAction};
use crate::layout::Layout;
use crate::linux::vip::VipSpec;
use crate::runtime::checkers::{network, CheckerSpec, CustomSpec, Probe};

const fn class(w: When) -> CheckerClass {
    match w {
        When::Pre => CheckerClass::Pre,
        When::Prim => CheckerClass::Prim,
        When::Second => CheckerClass::Second,
        When::Both => CheckerClass::Both,
    }
}

fn is_local(addr: &str) -> bool {
    addr == "localhost"
        || addr
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || if_addrs::get_if_addrs().unwrap_or_default().iter().any(|i| i.ip() == ip))
}

/// The module's checkers; adds the generated checkers' rules to `engine`.
pub(super) fn build(
    layout: &Layout,
    key: &crate::key::ClusterKey,
    module: &str,
    cfg: &UserConfig,
    vips: &[VipSpec],
    engine: &mut EngineConfig,
) -> Result<(Vec<CheckerSpec>, Vec<CustomSpec>), String> {
    let mut out: Vec<CheckerSpec> = Vec::new();
    let mut custom = Vec::new();
    let mut k = 0;
    for i in cfg.service.vip.iter().flat_map(|v| &v.interfaces) {
        for a in &i.real {
            let Some(spec) = vips.get(k) else { break };
            k += 1;
            let net = network(spec.ip, spec.prefix);
            let intf = format!("intf.{net}");
            if i.check && !out.iter().any(|c| c.resource == intf) {
                engine.rules.push(ResourceRule {
                    resource: intf.clone(),
                    label: "interface_failure".into(),
                    action: RuleAction::Wait,
                    class: CheckerClass::Pre,
                });
                out.push(CheckerSpec {
                    resource: intf,
                    probe: Probe::Interface { ifname: spec.ifname.clone(), net, prefix: spec.prefix },
                    class: CheckerClass::Pre,
                    period: Duration::from_secs(1),
                });
            }
            if a.check {
                let resource = format!("ip.{}", spec.ip);
                engine.rules.push(ResourceRule {
                    resource: resource.clone(),
                    label: "ip_failure".into(),
                    action: RuleAction::Stopstart,
                    class: CheckerClass::Prim,
                });
                out.push(CheckerSpec {
                    resource,
                    probe: Probe::Address { ip: spec.ip },
                    class: CheckerClass::Prim,
                    period: Duration::from_secs(2),
                });
            }
        }
    }
    for c in cfg.service.check.iter().flat_map(|c| &c.checkers) {
        let resource = format!("{}.{}", c.kind.as_str(), c.ident);
        let to = c.targets.first();
        let period = to.map_or(Duration::from_secs(10), |t| t.interval);
        let timeout = to.map_or(Duration::from_secs(5), |t| t.timeout);
        let need = |what: &str, v: Option<String>| v.ok_or_else(|| format!("checker {resource} has no <to {what}=…>"));
        let probe = match c.kind {
            CheckerKind::Splitbrain => continue,
            CheckerKind::Custom => {
                let exec = c.exec.clone().ok_or_else(|| format!("custom checker {resource} has no exec"))?;
                let args = c.arg.as_deref().unwrap_or_default().split_whitespace().map(str::to_string).collect();
                custom.push(CustomSpec { resource, exec: exec.into(), args, class: class(c.when) });
                continue;
            }
            CheckerKind::Tcp => Probe::Tcp {
                host: need("addr", to.and_then(|t| t.addr.clone()))?,
                port: to.and_then(|t| t.port).ok_or_else(|| format!("checker {resource} has no <to port=…>"))?,
                timeout,
            },
            CheckerKind::Ping => Probe::Ping { host: need("addr", to.and_then(|t| t.addr.clone()))?, timeout },
            CheckerKind::Intf => {
                let local = need("local_addr", to.and_then(|t| t.local_addr.clone()))?;
                Probe::Nic { local: local.parse().map_err(|_| format!("checker {resource}: local_addr {local} is not an IP address"))? }
            }
            CheckerKind::Ip => {
                let addr = need("addr", to.and_then(|t| t.addr.clone()))?;
                Probe::Address { ip: addr.parse().map_err(|_| format!("checker {resource}: addr {addr} is not an IP address"))? }
            }
            CheckerKind::Module => {
                let other = c.module.clone().ok_or_else(|| format!("module checker {resource} names no module"))?;
                match to.and_then(|t| t.addr.clone()).filter(|a| !is_local(a)) {
                    // Another node: through its node API, answers signed with the cluster key.
                    Some(host) => Probe::RemoteModule {
                        host,
                        port: to.and_then(|t| t.port).unwrap_or(super::api::PORT),
                        module: other,
                        key: key.clone(),
                        timeout,
                    },
                    None if other == module => return Err(format!("module checker {resource} watches its own module")),
                    None => Probe::Module { socket: super::socket_path(layout), module: other },
                }
            }
        };
        out.push(CheckerSpec { resource, probe, class: class(c.when), period });
    }
    Ok((out, custom))
}
