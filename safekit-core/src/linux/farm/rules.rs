//! The farm data path with nf_tables only (no kernel module of ours):
//! every node carries the virtual IP; each node's kernel accepts a new
//! connection only if `jhash(client) mod 256` is a bucket it owns, and
//! keeps every established flow where it is (conntrack), so a bucket that
//! moves never breaks a connection open on a node that keeps running.
//!
//! How frames reach the nodes ([`Delivery`]): with vmac_invisible, frames
//! to the virtual MAC are flooded to all of them; with vmac_directed, each
//! node answers ARP/ND with its own MAC (only the owner of the requester's
//! bucket when the group has an `arp` rule) and sends packets of a bucket
//! it does not own on to the owner (`dup to` the owner's address, then
//! drop), unless they belong to a connection established on itself.
//!
//! The rules are written as nft text and loaded with one `nft -f -`
//! transaction per change (nft 1.0.6's JSON cannot create the set), then
//! read back and compared. Recipe, pitfalls and measurements:
//! `shared/reference/farm-nftables.md`; the tables are those of its §1,
//! named after the module. The caller sets up the interface (the VIP as
//! an alias with `nodad` for IPv6, promiscuous mode, `arp_announce=2`,
//! `arp_ignore=1`).
//!
//! nft runs in the network namespace of the calling thread.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use crate::config::{LbFilter, LbProto};

/// One `<rule>` of a farm group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Destination port; `None` = every port.
    pub port: Option<u16>,
    /// tcp or udp (arp rules concern vmac_directed and are skipped here).
    pub proto: LbProto,
    /// What is hashed.
    pub filter: LbFilter,
}

/// How frames for the virtual IP reach the nodes (`<virtual_interface type>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `vmac_invisible`: every node answers ARP/ND with the virtual MAC,
    /// never a source MAC, so switches flood frames to it to every node
    /// (promiscuous mode).
    Invisible {
        /// The virtual MAC every node answers for.
        vmac: [u8; 6],
        /// The NIC's own MAC (for the IPv6 ND rewrite's checksum constant).
        real_mac: [u8; 6],
    },
    /// `vmac_directed`: each node answers with its own MAC and forwards
    /// what it does not own to the owner's address on the same network.
    Directed,
}

/// Where this node sends packets of a bucket another node owns (vmac_directed):
/// the bucket and the owner's address (one per family).
pub type Forward = [(u8, IpAddr)];

/// The data path of one farm module on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmRules {
    /// Table name stem: `safekit_<module>` (letters, digits, `_`).
    pub table: String,
    /// The NIC the VIP is on.
    pub device: String,
    /// vmac_invisible or vmac_directed.
    pub delivery: Delivery,
    /// The virtual addresses.
    pub vips: Vec<IpAddr>,
    /// What is load-balanced.
    pub rules: Vec<Rule>,
    /// The jhash seed, identical on every node ([`crate::farm::seed_of`]).
    pub seed: u32,
}

/// SafeKit's default virtual MAC for an IPv4 VIP: `5A:FE` then the address in hex.
pub fn default_vmac(vip: std::net::Ipv4Addr) -> [u8; 6] {
    let o = vip.octets();
    [0x5a, 0xfe, o[0], o[1], o[2], o[3]]
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn mac_hex(m: &[u8; 6]) -> String {
    format!("0x{}", m.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The one's-complement word that, written into the reserved bytes of a
/// neighbour advertisement or solicitation together with the rewrite of its
/// link-layer option from `real` to `vmac`, leaves the ICMPv6 checksum
/// right (nft does not update it for raw payload writes).
pub fn nd_checksum_word(real: &[u8; 6], vmac: &[u8; 6]) -> u16 {
    let sum = |m: &[u8; 6]| {
        let mut t: u32 = m.chunks(2).map(|w| (u32::from(w[0]) << 8) | u32::from(w[1])).sum();
        while t >> 16 != 0 {
            t = (t & 0xffff) + (t >> 16);
        }
        t
    };
    u16::try_from((sum(real) + 0xffff - sum(vmac)) % 0xffff).unwrap_or(0)
}

fn hex128(a: &std::net::Ipv6Addr) -> String {
    format!("0x{}", a.octets().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn elements(owned: &[u8]) -> String {
    owned.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
}

impl FarmRules {
    fn names(&self) -> [(&'static str, String); 6] {
        [
            ("netdev", format!("{}_l2", self.table)),
            ("arp", format!("{}_arp", self.table)),
            ("ip6", format!("{}_nd", self.table)),
            ("ip", format!("{}_fwd", self.table)),
            ("ip6", format!("{}_fwd6", self.table)),
            ("inet", self.table.clone()),
        ]
    }

    fn v4(&self) -> Vec<String> {
        self.vips.iter().filter(|a| a.is_ipv4()).map(IpAddr::to_string).collect()
    }

    fn v6(&self) -> Vec<std::net::Ipv6Addr> {
        self.vips.iter().filter_map(|a| if let IpAddr::V6(v) = a { Some(*v) } else { None }).collect()
    }

    /// vmac_directed with an `arp` rule: only the owner of the requester's bucket answers ARP/ND.
    fn filters_neighbours(&self) -> bool {
        self.delivery == Delivery::Directed && self.rules.iter().any(|r| r.proto == LbProto::Arp)
    }

    /// Every `owned` set: (family, table).
    fn owned_sets(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("inet", self.table.clone())];
        if self.filters_neighbours() {
            if !self.v4().is_empty() {
                out.push(("arp", format!("{}_arp", self.table)));
            }
            if !self.v6().is_empty() {
                out.push(("ip6", format!("{}_nd", self.table)));
            }
        }
        out
    }

    /// Every owner map (vmac_directed): (family, table, is IPv6).
    fn owner_maps(&self) -> Vec<(&'static str, String, bool)> {
        let mut out = Vec::new();
        if self.delivery == Delivery::Directed {
            if !self.v4().is_empty() {
                out.push(("ip", format!("{}_fwd", self.table), false));
            }
            if !self.v6().is_empty() {
                out.push(("ip6", format!("{}_fwd6", self.table), true));
            }
        }
        out
    }

    fn valid(&self) -> Result<(), String> {
        let ok = |s: &str| !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok(&self.table) {
            return Err(format!("invalid nft table name {:?}", self.table));
        }
        if self.device.is_empty()
            || self.device.len() > 15
            || !self.device.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(format!("invalid interface name {:?}", self.device));
        }
        if self.vips.is_empty() {
            return Err("a farm needs at least one virtual address".into());
        }
        Ok(())
    }

    /// Each tcp/udp rule of one IP family: what it matches (protocol and
    /// port), whether it is TCP, and its bucket expression.
    fn matches(&self, v6: bool) -> Vec<(String, bool, String)> {
        let saddr = if v6 { "ip6 saddr" } else { "ip saddr" };
        let mut out = Vec::new();
        for r in &self.rules {
            let proto = match r.proto {
                LbProto::Tcp => "tcp",
                LbProto::Udp => "udp",
                LbProto::Arp => continue,
            };
            let key = match r.filter {
                LbFilter::OnAddr => saddr.to_string(),
                LbFilter::OnPort => format!("{saddr} . {proto} sport"),
                LbFilter::OnIpid if v6 => continue,
                LbFilter::OnIpid => "ip id".to_string(),
            };
            let port = r.port.map(|p| format!("{proto} dport {p}")).unwrap_or_else(|| format!("meta l4proto {proto}"));
            out.push((port, r.proto == LbProto::Tcp, format!("jhash {key} mod 256 seed {:#010x}", self.seed)));
        }
        out
    }

    /// The accept rules of one IP family.
    fn accepts(&self, v6: bool) -> Vec<String> {
        let family = if v6 { "ipv6" } else { "ipv4" };
        self.matches(v6)
            .into_iter()
            .map(|(port, tcp, bucket)| {
                // TCP: only a new connection's first segment is matched against the
                // buckets; mid-stream segments of a moved bucket must not reach the
                // new owner (its TCP would answer with a reset).
                let syn = if tcp { " tcp flags & (fin|syn|rst|ack) == syn" } else { "" };
                format!("meta nfproto {family} {port}{syn} {bucket} @owned counter accept")
            })
            .collect()
    }

    /// vmac_directed: the table that sends packets of buckets owned by
    /// another node to it (before the accept chain, which would drop them),
    /// except those of connections established here. A bucket this node
    /// owns, or that nobody owns, is not in the map: the lookup fails and
    /// the packet goes on to the accept chain.
    fn forwarding(&self, v6: bool, name: &str) -> String {
        let (family, daddr, addrs, ty) = if v6 {
            ("ip6", "ip6 daddr", self.v6().iter().map(ToString::to_string).collect::<Vec<_>>(), "ip6 daddr")
        } else {
            ("ip", "ip daddr", self.v4(), "ip daddr")
        };
        let vips = format!("{{ {} }}", addrs.join(", "));
        let mut t = format!(
            "table {family} {name} {{\n  map owner {{\n    typeof numgen inc mod 256 : {ty}\n  }}\n  chain prerouting {{\n    type filter hook prerouting priority mangle - 1; policy accept;\n    {daddr} {vips} ct state established,related return\n"
        );
        for (port, _, bucket) in self.matches(v6) {
            t.push_str(&format!("    {daddr} {vips} {port} dup to {bucket} map @owner device \"{}\" counter drop\n", self.device));
        }
        t.push_str("  }\n}\n");
        t
    }

    /// The whole ruleset, owning `owned` and forwarding `forward`:
    /// replaces any earlier one in one transaction.
    pub fn ruleset(&self, owned: &[u8], forward: &Forward) -> Result<String, String> {
        self.valid()?;
        let mut t = String::new();
        for (family, name) in self.names() {
            t.push_str(&format!("table {family} {name}\ndelete table {family} {name}\n"));
        }
        let (v4, v6) = (self.v4(), self.v6());
        let owned_set = |t: &mut String| {
            t.push_str("  set owned {\n    typeof numgen inc mod 256\n");
            if !owned.is_empty() {
                t.push_str(&format!("    elements = {{ {} }}\n", elements(owned)));
            }
            t.push_str("  }\n");
        };
        match self.delivery {
            Delivery::Invisible { vmac, real_mac } => self.rewrites(&mut t, &vmac, &real_mac),
            Delivery::Directed => {
                if self.filters_neighbours() {
                    let seed = self.seed;
                    if !v4.is_empty() {
                        t.push_str(&format!("table arp {}_arp {{\n", self.table));
                        owned_set(&mut t);
                        t.push_str("  chain input {\n    type filter hook input priority 0; policy accept;\n");
                        t.push_str(&format!(
                            "    arp operation request arp daddr ip {{ {} }} jhash arp saddr ip mod 256 seed {seed:#010x} != @owned counter drop\n  }}\n}}\n",
                            v4.join(", ")
                        ));
                    }
                    if !v6.is_empty() {
                        t.push_str(&format!("table ip6 {}_nd {{\n", self.table));
                        owned_set(&mut t);
                        t.push_str("  chain input {\n    type filter hook input priority 0; policy accept;\n");
                        for a in &v6 {
                            t.push_str(&format!(
                                "    icmpv6 type nd-neighbor-solicit @th,64,128 {} ip6 saddr != :: jhash ip6 saddr mod 256 seed {seed:#010x} != @owned counter drop\n",
                                hex128(a)
                            ));
                        }
                        t.push_str("  }\n}\n");
                    }
                }
                if !v4.is_empty() {
                    t.push_str(&self.forwarding(false, &format!("{}_fwd", self.table)));
                }
                if !v6.is_empty() {
                    t.push_str(&self.forwarding(true, &format!("{}_fwd6", self.table)));
                }
            }
        }
        t.push_str(&format!("table inet {} {{\n", self.table));
        owned_set(&mut t);
        t.push_str("  chain prerouting {\n    type filter hook prerouting priority mangle; policy accept;\n");
        for a in &v4 {
            t.push_str(&format!("    ip daddr {a} jump vip\n"));
        }
        for a in &v6 {
            t.push_str(&format!("    ip6 daddr {a} jump vip\n"));
        }
        t.push_str("  }\n  chain vip {\n    ct state established,related accept\n    icmp type echo-request accept\n    icmpv6 type echo-request accept\n    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n");
        if !v4.is_empty() {
            for r in self.accepts(false) {
                t.push_str(&format!("    {r}\n"));
            }
        }
        if !v6.is_empty() {
            for r in self.accepts(true) {
                t.push_str(&format!("    {r}\n"));
            }
        }
        t.push_str("    counter drop\n  }\n}\n");
        t.push_str(&self.forward_text(forward, false));
        Ok(t)
    }

    /// vmac_invisible: frames to the virtual MAC taken as the node's own,
    /// and the node's ARP and ND answers for the VIP carrying the virtual
    /// MAC (the ND checksum kept right by hand).
    fn rewrites(&self, t: &mut String, vmac: &[u8; 6], real_mac: &[u8; 6]) {
        let [(_, l2), (_, arp), (_, nd), ..] = self.names();
        let text = mac_text(vmac);
        t.push_str(&format!(
            "table netdev {l2} {{\n  chain ingress {{\n    type filter hook ingress device \"{}\" priority -500; policy accept;\n    ether daddr {text} meta pkttype set host\n  }}\n}}\n",
            self.device
        ));
        t.push_str(&format!("table arp {arp} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n"));
        for a in &self.v4() {
            t.push_str(&format!("    arp saddr ip {a} arp saddr ether set {text}\n"));
        }
        t.push_str("  }\n}\n");
        let comp = nd_checksum_word(real_mac, vmac);
        let vm = mac_hex(vmac);
        t.push_str(&format!("table ip6 {nd} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n"));
        for a in &self.v6() {
            let target = hex128(a);
            t.push_str(&format!(
                "    icmpv6 type nd-neighbor-advert @th,64,128 {target} @th,192,16 0x0201 @th,208,48 set {vm} @th,48,16 set {comp:#06x}\n"
            ));
            t.push_str(&format!(
                "    icmpv6 type nd-neighbor-solicit ip6 saddr {a} @th,192,16 0x0101 @th,208,48 set {vm} @th,48,16 set {comp:#06x}\n"
            ));
        }
        t.push_str("  }\n}\n");
    }

    /// The owner maps' contents (`flush` first when they already exist).
    fn forward_text(&self, forward: &Forward, flush: bool) -> String {
        let mut t = String::new();
        for (family, table, v6) in self.owner_maps() {
            if flush {
                t.push_str(&format!("flush map {family} {table} owner\n"));
            }
            let e: Vec<String> = forward.iter().filter(|(_, a)| a.is_ipv6() == v6).map(|(b, a)| format!("{b} : {a}")).collect();
            if !e.is_empty() {
                t.push_str(&format!("add element {family} {table} owner {{ {} }}\n", e.join(", ")));
            }
        }
        t
    }

    /// One transaction that makes `owned` the owned buckets and `forward` the forwarding.
    pub fn set_text(&self, owned: &[u8], forward: &Forward) -> String {
        let mut t = String::new();
        for (family, table) in self.owned_sets() {
            t.push_str(&format!("flush set {family} {table} owned\n"));
            if !owned.is_empty() {
                t.push_str(&format!("add element {family} {table} owned {{ {} }}\n", elements(owned)));
            }
        }
        t.push_str(&self.forward_text(forward, true));
        t
    }

    /// Removes every table of the module (those that exist).
    pub fn removal_text(&self) -> String {
        self.names().iter().map(|(f, n)| format!("table {f} {n}\ndelete table {f} {n}\n")).collect()
    }

    /// Loads the ruleset owning `owned` and forwarding `forward`, then
    /// checks what the kernel holds.
    pub fn install(&self, owned: &[u8], forward: &Forward) -> Result<(), String> {
        nft(&self.ruleset(owned, forward)?)?;
        self.verify(owned, forward)
    }

    /// Makes `owned` the owned buckets and `forward` the forwarding (one
    /// transaction), then checks.
    pub fn set_owned(&self, owned: &[u8], forward: &Forward) -> Result<(), String> {
        nft(&self.set_text(owned, forward))?;
        self.verify(owned, forward)
    }

    /// Removes the module's tables (also after a crash: nothing else needs to be known).
    pub fn remove(&self) -> Result<(), String> {
        nft(&self.removal_text())
    }

    fn verify(&self, owned: &[u8], forward: &Forward) -> Result<(), String> {
        let mut want = owned.to_vec();
        want.sort_unstable();
        want.dedup();
        for (family, table) in self.owned_sets() {
            let now = set_elements(family, &table)?;
            if now != want {
                return Err(format!("nft holds buckets {now:?} in {table}, not {want:?}"));
            }
        }
        for (family, table, v6) in self.owner_maps() {
            let mut want: Vec<(u8, IpAddr)> = forward.iter().filter(|(_, a)| a.is_ipv6() == v6).copied().collect();
            want.sort_unstable();
            let now = map_elements(family, &table)?;
            if now != want {
                return Err(format!("nft forwards {now:?} in {table}, not {want:?}"));
            }
        }
        Ok(())
    }

    /// Where buckets owned elsewhere are forwarded now (vmac_directed), read back with `nft -j`.
    pub fn forward_now(&self) -> Result<Vec<(u8, IpAddr)>, String> {
        let mut out = Vec::new();
        for (family, table, _) in self.owner_maps() {
            out.extend(map_elements(family, &table)?);
        }
        Ok(out)
    }

    /// The buckets the kernel's set holds now, read back with `nft -j`.
    pub fn owned_now(&self) -> Result<Vec<u8>, String> {
        set_elements("inet", &self.table)
    }

    /// New connections accepted and packets dropped so far ([`counters`] of this table).
    pub fn counters(&self) -> Result<(u64, u64), String> {
        counters(&self.table)
    }
}

/// New connections accepted and packets dropped so far by the farm table
/// `table`: its `vip` chain's counters (accept rules summed, then the final drop).
pub fn counters(table: &str) -> Result<(u64, u64), String> {
    let json = nft_json(&["list", "chain", "inet", table, "vip"])?;
    let (mut accepted, mut dropped) = (0, 0);
    for item in json["nftables"].as_array().into_iter().flatten() {
        let Some(expr) = item["rule"]["expr"].as_array() else { continue };
        let packets = expr.iter().find_map(|e| e["counter"]["packets"].as_u64()).unwrap_or(0);
        if expr.iter().any(|e| e.get("accept").is_some()) && expr.iter().any(|e| e.to_string().contains("jhash")) {
            accepted += packets;
        } else if expr.iter().any(|e| e.get("drop").is_some()) {
            dropped += packets;
        }
    }
    Ok((accepted, dropped))
}

fn set_elements(family: &str, table: &str) -> Result<Vec<u8>, String> {
    let json = nft_json(&["list", "set", family, table, "owned"])?;
    let mut out: Vec<u8> = Vec::new();
    for item in json["nftables"].as_array().into_iter().flatten() {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            match e.as_u64().and_then(|v| u8::try_from(v).ok()) {
                Some(b) => out.push(b),
                None => return Err(format!("unexpected element {e} in {table}'s set")),
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn map_elements(family: &str, table: &str) -> Result<Vec<(u8, IpAddr)>, String> {
    let json = nft_json(&["list", "map", family, table, "owner"])?;
    let mut out = Vec::new();
    for item in json["nftables"].as_array().into_iter().flatten() {
        for e in item["map"]["elem"].as_array().into_iter().flatten() {
            let bucket = e[0].as_u64().and_then(|v| u8::try_from(v).ok());
            let addr = e[1].as_str().and_then(|a| a.parse::<IpAddr>().ok());
            match (bucket, addr) {
                (Some(b), Some(a)) => out.push((b, a)),
                _ => return Err(format!("unexpected element {e} in {table}'s map")),
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Runs one `nft -f -` transaction.
pub fn nft(text: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (apt-get install nftables): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft refused the change: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn nft_json(args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new("nft").arg("-j").args(args).output().map_err(|e| format!("cannot run nft (apt-get install nftables): {e}"))?;
    if !out.status.success() {
        return Err(format!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("nft -j {}: {e}", args.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> FarmRules {
        FarmRules {
            table: "safekit_web".into(),
            device: "eth0".into(),
            delivery: Delivery::Invisible { vmac: default_vmac("10.81.0.100".parse().unwrap()), real_mac: [0x02, 0x81, 0, 0, 0, 1] },
            vips: vec!["10.81.0.100".parse().unwrap(), "fd00:81::100".parse().unwrap()],
            rules: vec![Rule { port: Some(80), proto: LbProto::Tcp, filter: LbFilter::OnAddr }],
            seed: 0x5afe_0001,
        }
    }

    #[test]
    fn the_ruleset_is_the_prototypes() {
        let t = rules().ruleset(&[1, 2, 9], &[]).unwrap();
        for want in [
            "ether daddr 5a:fe:0a:51:00:64 meta pkttype set host",
            "arp saddr ip 10.81.0.100 arp saddr ether set 5a:fe:0a:51:00:64",
            "elements = { 1, 2, 9 }",
            "ip daddr 10.81.0.100 jump vip",
            "ip6 daddr fd00:81::100 jump vip",
            "ct state established,related accept",
            "meta nfproto ipv4 tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn jhash ip saddr mod 256 seed 0x5afe0001 @owned counter accept",
            "meta nfproto ipv6 tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn jhash ip6 saddr mod 256 seed 0x5afe0001 @owned counter accept",
            "icmpv6 type nd-neighbor-advert @th,64,128 0xfd000081000000000000000000000100 @th,192,16 0x0201 @th,208,48 set 0x5afe0a510064",
        ] {
            assert!(t.contains(want), "{want}\nnot in\n{t}");
        }
        assert!(t.starts_with("table netdev safekit_web_l2\ndelete table netdev safekit_web_l2\n"), "replaces an earlier one");
    }

    #[test]
    fn on_port_and_udp_rules() {
        let mut r = rules();
        r.vips.truncate(1);
        r.rules = vec![
            Rule { port: Some(80), proto: LbProto::Tcp, filter: LbFilter::OnPort },
            Rule { port: None, proto: LbProto::Udp, filter: LbFilter::OnAddr },
        ];
        let t = r.ruleset(&[], &[]).unwrap();
        assert!(t.contains("tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn jhash ip saddr . tcp sport mod 256"), "{t}");
        assert!(t.contains("meta nfproto ipv4 meta l4proto udp jhash ip saddr mod 256"), "{t}");
        assert!(!t.contains("ip6 saddr"), "no IPv6 VIP, no IPv6 rule: {t}");
        assert!(!t.contains("elements"), "no bucket owned");
    }

    #[test]
    fn directed_forwards_what_it_does_not_own_and_filters_neighbour_answers() {
        let mut r = rules();
        r.delivery = Delivery::Directed;
        r.rules.push(Rule { port: None, proto: LbProto::Arp, filter: LbFilter::OnAddr });
        let fwd = [(3, "10.81.0.2".parse().unwrap()), (3, "fd00:81::2".parse().unwrap()), (7, "10.81.0.3".parse().unwrap())];
        let t = r.ruleset(&[1], &fwd).unwrap();
        for want in [
            "table ip safekit_web_fwd {",
            "ip daddr { 10.81.0.100 } ct state established,related return",
            "ip daddr { 10.81.0.100 } tcp dport 80 dup to jhash ip saddr mod 256 seed 0x5afe0001 map @owner device \"eth0\" counter drop",
            "ip6 daddr { fd00:81::100 } tcp dport 80 dup to jhash ip6 saddr mod 256 seed 0x5afe0001 map @owner device \"eth0\" counter drop",
            "arp operation request arp daddr ip { 10.81.0.100 } jhash arp saddr ip mod 256 seed 0x5afe0001 != @owned counter drop",
            "icmpv6 type nd-neighbor-solicit @th,64,128 0xfd000081000000000000000000000100 ip6 saddr != :: jhash ip6 saddr mod 256",
            "add element ip safekit_web_fwd owner { 3 : 10.81.0.2, 7 : 10.81.0.3 }",
            "add element ip6 safekit_web_fwd6 owner { 3 : fd00:81::2 }",
        ] {
            assert!(t.contains(want), "{want}\nnot in\n{t}");
        }
        assert!(!t.contains("pkttype set host") && !t.contains("arp saddr ether set"), "no virtual MAC: {t}");
        let u = r.set_text(&[1, 2], &fwd[..1]);
        for want in
            ["flush set arp safekit_web_arp owned", "add element ip6 safekit_web_nd owned { 1, 2 }", "flush map ip6 safekit_web_fwd6 owner"]
        {
            assert!(u.contains(want), "{want}\nnot in\n{u}");
        }
    }

    #[test]
    fn names_that_would_inject_are_refused() {
        let mut r = rules();
        r.table = "x; flush ruleset".into();
        assert!(r.ruleset(&[], &[]).is_err());
        let mut r = rules();
        r.device = "eth0\" ; drop".into();
        assert!(r.ruleset(&[], &[]).is_err());
    }

    #[test]
    fn the_nd_rewrite_keeps_the_checksum() {
        // The prototype's node 1: real MAC 02:81:00:00:00:01, VMAC 5a:fe:0a:51:00:64.
        let real = [0x02, 0x81, 0, 0, 0, 1];
        let vmac = [0x5a, 0xfe, 0x0a, 0x51, 0x00, 0x64];
        let c = nd_checksum_word(&real, &vmac);
        // One's-complement sums of (real MAC + reserved 0) and (VMAC + c) are equal.
        let fold = |mut t: u32| {
            while t >> 16 != 0 {
                t = (t & 0xffff) + (t >> 16);
            }
            t
        };
        let words = |m: &[u8; 6]| -> u32 { m.chunks(2).map(|w| (u32::from(w[0]) << 8) | u32::from(w[1])).sum() };
        assert_eq!(fold(words(&real)) % 0xffff, fold(words(&vmac) + u32::from(c)) % 0xffff);
    }
}
