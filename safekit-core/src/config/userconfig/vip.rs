//! `<vip>` in its mirror form (`real_interface`) and farm form
//! (`virtual_interface`, `loadbalancing_list`).

use std::net::IpAddr;
use std::time::Duration;

use super::super::model::{
    LbFilter, LbGroup, LbHost, LbProto, LbRule, Mode, Placement, Vip, VipAddr, VipInterface, VirtualAddr, VirtualInterface, VmacKind,
};
use super::super::time::TimeUnit;
use super::super::xml::Element;
use super::{is_dns_name, Ctx};

pub(super) fn vip(e: &Element, mode: Mode, cx: &mut Ctx<'_, '_>) -> Vip {
    cx.r.known_attrs(e, &["tcpreset", "scriptcontrol"]);
    let tcpreset = cx.r.onoff(e, "tcpreset", true);
    let scriptcontrol = cx.r.onoff(e, "scriptcontrol", false);
    if scriptcontrol && mode != Mode::Farm {
        let pos = e.attr("scriptcontrol").map_or(e.pos, |a| a.pos);
        cx.r.d.warning(pos, "scriptcontrol applies to farm modules only; ignored");
    }
    let kids = cx.r.children(e, &["interface_list", "loadbalancing_list"]);
    let mut interfaces = Vec::new();
    if let Some(list) = cx.r.single(&kids, "interface_list") {
        cx.r.known_attrs(list, &[]);
        for i in cx.r.children(list, &["interface"]) {
            interfaces.push(interface(i, mode, cx));
        }
    }
    let mut loadbalancing = Vec::new();
    if let Some(list) = cx.r.single(&kids, "loadbalancing_list") {
        if mode != Mode::Farm {
            cx.r.d.error(list.pos, "<loadbalancing_list> is only allowed in a farm module");
        }
        cx.r.known_attrs(list, &[]);
        for g in cx.r.children(list, &["group"]) {
            loadbalancing.push(group(g, cx));
        }
    }
    if interfaces.iter().all(|i| i.real.is_empty() && i.virtual_interface.as_ref().is_none_or(|v| v.addrs.is_empty())) {
        cx.r.d.error(e.pos, "<vip> defines no <virtual_addr>");
    }
    Vip { tcpreset, scriptcontrol, interfaces, loadbalancing }
}

fn interface(e: &Element, mode: Mode, cx: &mut Ctx<'_, '_>) -> VipInterface {
    cx.r.known_attrs(e, &["check", "arpreroute", "arpinterval", "arpelapse", "name"]);
    let check = cx.r.onoff(e, "check", true);
    let arpreroute = cx.r.onoff(e, "arpreroute", false);
    let arpinterval = cx.r.time(e, "arpinterval", TimeUnit::Secs, Duration::from_secs(60));
    let arpelapse = cx.r.time(e, "arpelapse", TimeUnit::Secs, Duration::from_secs(1200));
    let name = cx.r.opt_str(e, "name").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let kids = cx.r.children(e, &["real_interface", "virtual_interface"]);
    let mut real = Vec::new();
    if let Some(ri) = cx.r.single(&kids, "real_interface") {
        if mode == Mode::Farm {
            cx.r.d.error(
                ri.pos,
                "<real_interface> is the mirror form; a farm VIP uses <virtual_interface type=\"vmac_directed|vmac_invisible\">",
            );
        }
        cx.r.known_attrs(ri, &[]);
        for a in cx.r.children(ri, &["virtual_addr"]) {
            if let Some(v) = virtual_addr(a, &["one_side_alias", "one_side"], cx) {
                real.push(v);
            }
        }
    }
    let virtual_interface = cx.r.single(&kids, "virtual_interface").map(|vi| {
        cx.r.known_attrs(vi, &["type", "addr"]);
        let kind = match cx.r.req(vi, "type", "vmac_directed or vmac_invisible").and(cx.r.choice(
            vi,
            "type",
            &["vmac_directed", "vmac_invisible"],
        )) {
            Some("vmac_invisible") => VmacKind::Invisible,
            _ => VmacKind::Directed,
        };
        let mac = cx.r.opt_str(vi, "addr");
        if let (Some(m), Some(a)) = (&mac, vi.attr("addr")) {
            let ok = m.split([':', '-']).count() == 6 && m.split([':', '-']).all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok());
            if !ok {
                cx.r.d.error(a.pos, format!("invalid MAC address '{m}' (expected six hex bytes like 5A:FE:C0:A8:01:0A)"));
            }
        }
        let wheres: &[&str] = if mode == Mode::Farm { &["alias"] } else { &["one_side_alias", "alias"] };
        let addrs = cx.r.children(vi, &["virtual_addr"]).into_iter().filter_map(|a| virtual_addr(a, wheres, cx)).collect();
        VirtualInterface { kind, mac, addrs }
    });
    VipInterface { check, arpreroute, arpinterval, arpelapse, name, real, virtual_interface }
}

fn virtual_addr(e: &Element, wheres: &[&'static str], cx: &mut Ctx<'_, '_>) -> Option<VirtualAddr> {
    cx.r.known_attrs(e, &["addr", "where", "check", "connections", "netmask"]);
    let a = cx.r.req(e, "addr", "an IPv4 or IPv6 address, or a DNS name")?;
    let raw = a.value.trim().trim_start_matches('[').trim_end_matches(']');
    let addr = if let Ok(ip) = raw.parse::<IpAddr>() {
        VipAddr::Ip(ip)
    } else if raw.is_empty() || raw.contains(char::is_whitespace) {
        cx.r.d.error(a.pos, format!("invalid virtual address '{}' (expected an IPv4 or IPv6 address, or a DNS name)", a.value));
        return None;
    } else {
        if cx.confcheck && !is_dns_name(raw) {
            cx.r.d.error(
                a.pos,
                format!("virtual address '{raw}' is a placeholder, not an address: replace it with the module's virtual IP address (or its DNS name)"),
            );
        }
        VipAddr::Name(raw.to_string())
    };
    let placement = match cx.r.req(e, "where", &wheres.join(" or ")).and(cx.r.choice(e, "where", wheres)) {
        Some("one_side") => Placement::OneSide,
        Some("alias") => Placement::Alias,
        _ => Placement::OneSideAlias,
    };
    let check = cx.r.onoff(e, "check", true);
    let connections = cx.r.onoff(e, "connections", false);
    let netmask = cx.r.opt_str(e, "netmask");
    if let (Some(m), Some(at)) = (&netmask, e.attr("netmask")) {
        let ok = m.parse::<std::net::Ipv4Addr>().is_ok() || m.trim_start_matches('/').parse::<u8>().is_ok_and(|n| n <= 128);
        if !ok {
            cx.r.d.error(at.pos, format!("invalid netmask '{m}' (expected a dotted mask like 255.255.255.0 or a prefix length)"));
        }
    }
    Some(VirtualAddr { addr, placement, check, connections, netmask })
}

fn group(e: &Element, cx: &mut Ctx<'_, '_>) -> LbGroup {
    cx.r.known_attrs(e, &["name"]);
    let name = cx.r.req_str(e, "name", "a group name").unwrap_or_default();
    let kids = cx.r.children(e, &["cluster", "rule"]);
    let mut hosts = Vec::new();
    if let Some(c) = cx.r.single(&kids, "cluster") {
        cx.r.known_attrs(c, &[]);
        for h in cx.r.children(c, &["host"]) {
            cx.r.known_attrs(h, &["name", "power"]);
            let Some(n) = cx.r.req_str(h, "name", "a cluster node name") else {
                continue;
            };
            if let (Some(cl), Some(a)) = (cx.cluster, h.attr("name")) {
                if !cl.node_names().contains(&n.as_str()) {
                    cx.r.d
                        .error(a.pos, format!("host '{n}' is not a node of cluster.xml (expected one of: {})", cl.node_names().join(", ")));
                }
            }
            let power = cx.r.num(h, "power", 1u32, "a non-negative weight");
            hosts.push(LbHost { name: n, power });
        }
    }
    let mut rules = Vec::new();
    for r in kids.iter().filter(|k| k.name == "rule") {
        cx.r.known_attrs(r, &["virtual_addr", "port", "proto", "filter"]);
        let virtual_addr = cx.r.opt_str(r, "virtual_addr").unwrap_or_else(|| "*".into());
        let port = match r.attr("port").map(|a| a.value.trim()) {
            None | Some("*") => None,
            Some(_) => cx.r.opt_num(r, "port", "a port number or *"),
        };
        let proto = match cx.r.req(r, "proto", "tcp, udp or arp").and(cx.r.choice(r, "proto", &["tcp", "udp", "arp"])) {
            Some("udp") => LbProto::Udp,
            Some("arp") => LbProto::Arp,
            _ => LbProto::Tcp,
        };
        let filter =
            match cx.r.req(r, "filter", "on_addr, on_port or on_ipid").and(cx.r.choice(r, "filter", &["on_addr", "on_port", "on_ipid"])) {
                Some("on_port") => LbFilter::OnPort,
                Some("on_ipid") => LbFilter::OnIpid,
                _ => LbFilter::OnAddr,
            };
        if proto == LbProto::Arp && filter != LbFilter::OnAddr {
            cx.r.d.error(r.pos, "proto=\"arp\" works only with filter=\"on_addr\"");
        }
        rules.push(LbRule { virtual_addr, port, proto, filter });
    }
    LbGroup { name, hosts, rules }
}
