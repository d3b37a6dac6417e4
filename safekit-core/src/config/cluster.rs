//! `cluster.xml` (reference §2): lans and nodes.

use std::net::IpAddr;
use std::time::Duration;

use super::error::Diagnostics;
use super::model::{ClusterConfig, HostAddr, Lan, NodeAddr};
use super::read::Reader;
use super::time::TimeUnit;
use super::xml::{Attr, Element};

pub(crate) fn build(root: &Element, d: &mut Diagnostics) -> Option<ClusterConfig> {
    let mut r = Reader { d };
    if root.name != "cluster" {
        r.d.error(root.pos, format!("root element is <{}>; cluster.xml starts with <cluster>", root.name));
        return None;
    }
    r.known_attrs(root, &[]);
    let kids = r.children(root, &["lans"]);
    let Some(lans) = r.single(&kids, "lans") else {
        r.d.error(root.pos, "<cluster> needs a <lans> element");
        return None;
    };
    r.known_attrs(lans, &["port", "pulse", "mlost_count", "slost_count"]);
    let port = r.num(lans, "port", 4800u16, "a UDP port number");
    let pulse = r.time(lans, "pulse", TimeUnit::Millis, Duration::from_millis(100));
    let mlost_count = r.num(lans, "mlost_count", 20u32, "a count of heartbeats");
    let slost_count = r.num(lans, "slost_count", 10u32, "a count of heartbeats");
    let mut out = Vec::new();
    let mut lan_names = std::collections::HashSet::new();
    for lan in r.children(lans, &["lan"]) {
        r.known_attrs(lan, &["name", "command", "console", "framework"]);
        for obsolete in ["console", "framework"] {
            if let Some(a) = lan.attr(obsolete) {
                r.d.warning(a.pos, format!("attribute {obsolete} of <lan> is obsolete since SafeKit 8.2 and ignored"));
            }
        }
        let Some(name) = r.req_name(lan, "name", "a logical network name") else {
            continue;
        };
        if !lan_names.insert(name.clone()) {
            r.d.error(lan.pos, format!("lan {name} is defined twice"));
        }
        let command = r.onoff(lan, "command", false);
        let mut nodes: Vec<NodeAddr> = Vec::new();
        // Sets, not scans: a file with many nodes parses in linear time.
        let (mut names, mut addrs) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        for node in r.children(lan, &["node"]) {
            r.known_attrs(node, &["name", "addr", "laddr"]);
            let n = r.req_name(node, "name", "a logical node name");
            let addr = r.req(node, "addr", "an IPv4 address, an IPv6 address in [brackets], or a DNS name").and_then(|a| host(a, &mut r));
            let laddr = node.attr("laddr").and_then(|a| host(a, &mut r));
            let (Some(n), Some(addr)) = (n, addr) else {
                continue;
            };
            if !names.insert(n.clone()) {
                r.d.error(node.pos, format!("node {n} appears twice in lan {name}"));
            }
            if !addrs.insert(format!("{addr:?}")) {
                r.d.error(node.pos, format!("address {addr} is used by two nodes of lan {name}"));
            }
            nodes.push(NodeAddr { name: n, addr, laddr });
        }
        if nodes.is_empty() {
            r.d.error(lan.pos, format!("lan {name} has no <node>"));
        }
        out.push(Lan { name, command, nodes });
    }
    if out.is_empty() {
        r.d.error(lans.pos, "<lans> needs at least one <lan>");
    }
    if out.iter().filter(|l| l.command).count() > 1 {
        r.d.error(lans.pos, "only one lan may have command=\"on\"");
    }
    Some(ClusterConfig { port, pulse, mlost_count, slost_count, lans: out })
}

/// Reads a node address: IPv4, `[IPv6]` (bare IPv6 accepted), or a DNS name.
fn host(a: &Attr, r: &mut Reader<'_>) -> Option<HostAddr> {
    let v = a.value.trim();
    let inner = v.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
    if let Some(inner) = inner {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Some(HostAddr::Ip(IpAddr::V6(ip))),
            Err(_) => {
                r.d.error(a.pos, format!("invalid IPv6 address '{v}' for the attribute {}", a.name));
                None
            }
        };
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(HostAddr::Ip(ip));
    }
    if is_dns_name(v) {
        if v.chars().any(|c| c.is_ascii_uppercase()) {
            r.d.warning(a.pos, format!("DNS name '{v}' has upper-case letters; SafeKit requires lower case for HTTPS certificate checks"));
        }
        return Some(HostAddr::Dns(v.to_string()));
    }
    r.d.error(
        a.pos,
        format!(
            "invalid value '{v}' for the attribute {} (expected an IPv4 address, an IPv6 address in [brackets], or a DNS name)",
            a.name
        ),
    );
    None
}

/// RFC 1123 host name: dot-separated labels of letters, digits and hyphens.
pub(crate) fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !s.split('.').all(|l| l.chars().all(|c| c.is_ascii_digit()))
}
