//! What a farm module needs on this node, from its configuration: the data
//! path ([`FarmRules`]), its VIP on every node, and the membership task on
//! the `<farm><lan>` networks. Each `<group>` has its own powers, hence
//! its own bucket table, set and (vmac_directed) owner map; a rule with a
//! `virtual_addr` applies to that VIP only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ClusterConfig, HostAddr, UserConfig, VipAddr, VmacKind};
use crate::farm::{seed_of, FarmReport, Membership};
use crate::key::ClusterKey;
use crate::linux::farm::{default_vmac, powers, Delivery, FarmRules, FarmTraffic, MembershipNet, Rule};
use crate::linux::vip::{resolve, NetlinkVip, VipRequest};
use crate::runtime::{Companion, CompanionContext};

use super::modules::resolve_host;

/// The farm traffic service and the membership companion of module `name`.
pub(super) async fn build(
    name: &str,
    id: u16,
    cfg: &UserConfig,
    cluster: &ClusterConfig,
    node: &str,
    key: &ClusterKey,
) -> Result<(Arc<FarmTraffic>, Companion), String> {
    let farm = cfg.service.farm.as_ref().ok_or_else(|| format!("module {name}: a farm module needs <farm>"))?;
    let vip = cfg.service.vip.as_ref().ok_or_else(|| format!("module {name}: a farm module needs <vip>"))?;
    let mut reqs = Vec::new();
    let mut vmac = None;
    let mut directed = false;
    for i in &vip.interfaces {
        let Some(v) = &i.virtual_interface else { continue };
        directed |= v.kind == VmacKind::Directed;
        if let Some(m) = &v.mac {
            vmac = Some(crate::linux::announce::parse_mac(m).ok_or_else(|| format!("module {name}: invalid virtual MAC {m}"))?);
        }
        for a in &v.addrs {
            let ip = match &a.addr {
                VipAddr::Ip(ip) => *ip,
                VipAddr::Name(n) => resolve_host(&HostAddr::Dns(n.clone())).await.map_err(|e| format!("module {name}: {e}"))?,
            };
            // arpreroute makes sense only where each node answers with its
            // own MAC: clients that cached a failed node's are sent to a live one.
            let reroute = (v.kind == VmacKind::Directed && i.arpreroute).then_some((i.arpinterval, i.arpelapse));
            reqs.push(VipRequest { ip, ifname: i.name.clone(), reroute, one_side: false });
        }
    }
    let specs = resolve(&reqs).map_err(|e| format!("module {name}: {e}"))?;
    let first = specs.first().ok_or_else(|| format!("module {name}: a farm module needs a <virtual_interface> address"))?;
    let device = first.ifname.clone();
    let first_v4 = specs.iter().find_map(|s| if let IpAddr::V4(v) = s.ip { Some(v) } else { None });
    let delivery = if directed {
        Delivery::Directed
    } else {
        let vmac = vmac
            .or_else(|| first_v4.map(default_vmac))
            .ok_or_else(|| format!("module {name}: an IPv6-only farm needs <virtual_interface addr=\"5A:FE:…\">"))?;
        Delivery::Invisible { vmac, real_mac: crate::linux::announce::mac_of(&device)? }
    };
    if vip.loadbalancing.is_empty() {
        return Err(format!("module {name}: a farm module needs a <loadbalancing_list> group"));
    }
    if vip.loadbalancing.len() > crate::farm::wire::MAX_GROUPS {
        return Err(format!("module {name}: at most {} load-balancing groups", crate::farm::wire::MAX_GROUPS));
    }
    let vips: Vec<IpAddr> = specs.iter().map(|s| s.ip).collect();
    let mut lb_rules = Vec::new();
    for (g, group) in vip.loadbalancing.iter().enumerate() {
        for r in &group.rules {
            let scope = match r.virtual_addr.trim() {
                "" | "*" => None,
                a => {
                    let ip = match a.parse::<IpAddr>() {
                        Ok(ip) => ip,
                        Err(_) => resolve_host(&HostAddr::Dns(a.to_string())).await.map_err(|e| format!("module {name}: {e}"))?,
                    };
                    if !vips.contains(&ip) {
                        return Err(format!("module {name}: rule virtual_addr {a} is not one of the module's virtual addresses"));
                    }
                    Some(ip)
                }
            };
            lb_rules.push(Rule { group: g, vip: scope, port: r.port, proto: r.proto, filter: r.filter });
        }
    }
    let rules = FarmRules {
        table: format!("safekit_{}", name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>()),
        device: device.clone(),
        delivery,
        vips,
        rules: lb_rules,
        seed: seed_of(id),
    };
    let port = farm.port.unwrap_or_else(|| crate::modules::ports::farm(id));
    let (mut local, mut peers) = (Vec::new(), Vec::new());
    for l in &farm.lans {
        let lan = cluster.lan(&l.name).ok_or_else(|| format!("module {name}: farm lan {} is not in cluster.xml", l.name))?;
        for n in &lan.nodes {
            let ip = resolve_host(if n.name == node { n.laddr.as_ref().unwrap_or(&n.addr) } else { &n.addr }).await?;
            if n.name == node {
                local.push(SocketAddr::new(ip, port));
            } else {
                peers.push((n.name.clone(), SocketAddr::new(ip, port)));
            }
        }
    }
    if local.is_empty() {
        return Err(format!("module {name}: node {node} is on none of the farm's networks"));
    }
    let incarnation = u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros())
        .unwrap_or(u64::MAX);
    let membership = Membership::new(
        node,
        incarnation,
        vip.loadbalancing.iter().map(|g| powers(&g.hosts)).collect(),
        farm.pulse.max(Duration::from_millis(10)),
        farm.slost_count,
        std::time::Instant::now(),
    );
    let (up_tx, up_rx) = tokio::sync::watch::channel(false);
    let report = Arc::new(std::sync::Mutex::new(FarmReport::default()));
    let traffic = Arc::new(FarmTraffic::new(rules.clone(), NetlinkVip::new(specs, vip.tcpreset).shared(), up_tx, report.clone()));
    // Tables a crashed daemon left behind go before anything else.
    traffic.clean().await;
    let groups = vip.loadbalancing.iter().map(|g| g.name.clone()).collect();
    let net = MembershipNet { key: key.clone(), module: id, local, peers, groups, report };
    let companion: Companion = Box::new(move |cx: CompanionContext| tokio::spawn(net.run(membership, rules, up_rx, cx.log, cx.inputs)));
    Ok((traffic, companion))
}
