//! Building a module's checkers from its configuration: the ones
//! `check="on"` generates on the VIP's interface and address, and the
//! `<check>` section's tcp, ping, intf, ip, module and custom checkers
//! (their failover rules come from [`crate::convert::engine_config`], which
//! names the same resources).

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{CheckerKind, UserConfig};
use crate::convert::{checker_class as class, network};
use crate::engine::CheckerClass;
use crate::linux::vip::VipSpec;
use std::sync::Arc;

use async_trait::async_trait;

use crate::engine::Status;
use crate::linux::checkers::{Probe, ProbeChecker};
use crate::runtime::checkers::{CheckerSpec, CustomSpec};
use crate::services::{Checker, Observation};

use super::Directory;

fn is_local(addr: &str) -> bool {
    addr == "localhost"
        || addr
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || if_addrs::get_if_addrs().unwrap_or_default().iter().any(|i| i.ip() == ip))
}

/// The module's checkers.
pub(super) fn build(
    directory: &Arc<Directory>,
    key: &crate::key::ClusterKey,
    module: &str,
    cfg: &UserConfig,
    vips: &[VipSpec],
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
            if i.check && !out.iter().any(|c| c.checker.resource() == intf) {
                let probe = Probe::Interface { ifname: spec.ifname.clone(), net, prefix: spec.prefix };
                out.push(probe_spec(intf, probe, CheckerClass::Pre, Duration::from_secs(1)));
            }
            if a.check {
                let resource = format!("ip.{}", spec.ip);
                out.push(probe_spec(resource, Probe::Address { ip: spec.ip }, CheckerClass::Prim, Duration::from_secs(2)));
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
                let watched = match to.and_then(|t| t.addr.clone()).filter(|a| !is_local(a)) {
                    // Another node: through its node API, answers signed with the cluster key.
                    Some(host) => {
                        Watched::Remote { host, port: to.and_then(|t| t.port).unwrap_or(super::web::PORT), key: key.clone(), timeout }
                    }
                    None if other == module => return Err(format!("module checker {resource} watches its own module")),
                    None => Watched::Local(directory.clone()),
                };
                let checker = ModuleChecker { resource, period, module: other, watched };
                out.push(CheckerSpec { checker: Arc::new(checker), class: class(c.when) });
                continue;
            }
        };
        out.push(probe_spec(resource, probe, class(c.when), period));
    }
    Ok((out, custom))
}

fn probe_spec(resource: String, probe: Probe, class: CheckerClass, period: Duration) -> CheckerSpec {
    CheckerSpec { checker: Arc::new(ProbeChecker { resource, probe, period }), class }
}

/// Where the watched module runs.
enum Watched {
    /// On this node: its status comes from the daemon's directory of
    /// running modules (no round trip through the daemon's own socket).
    Local(Arc<Directory>),
    /// On another node, asked through that node's API (answers signed with
    /// the cluster key).
    Remote { host: String, port: u16, key: crate::key::ClusterKey, timeout: Duration },
}

/// SafeKit's `<module>` checker: another module's status.
struct ModuleChecker {
    resource: String,
    period: Duration,
    module: String,
    watched: Watched,
}

impl ModuleChecker {
    async fn status(&self) -> Option<Status> {
        match &self.watched {
            Watched::Local(d) => d.status(&self.module),
            Watched::Remote { host, port, key, timeout } => {
                let addr = tokio::net::lookup_host((host.as_str(), *port)).await.ok()?.next()?;
                super::web::node::ask(addr, key, &self.module, *timeout).await.ok().flatten()
            }
        }
    }
}

#[async_trait]
impl Checker for ModuleChecker {
    fn resource(&self) -> &str {
        &self.resource
    }
    fn component(&self) -> &str {
        "modulecheck"
    }
    fn period(&self) -> Duration {
        self.period
    }
    async fn check(&self) -> Observation {
        Observation::Module(self.status().await)
    }
}
