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

use std::net::IpAddr;

use super::nft::{counters, map_elements, nft, set_elements};
use crate::config::{LbFilter, LbProto};

/// One `<rule>` of a farm group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The `<group>` (index) whose buckets it uses.
    pub group: usize,
    /// `virtual_addr`: the VIP it applies to; `None` = every VIP.
    pub vip: Option<IpAddr>,
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

/// One group's buckets on this node: those it owns, and where it sends
/// packets of buckets another node owns (vmac_directed: the bucket and
/// the owner's address, one per family).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets {
    /// Owned here.
    pub owned: Vec<u8>,
    /// Owned elsewhere: (bucket, owner's address).
    pub forward: Vec<(u8, IpAddr)>,
}

impl Buckets {
    /// Owned buckets, nothing forwarded.
    pub fn owned(owned: Vec<u8>) -> Vec<Self> {
        vec![Self { owned, forward: Vec::new() }]
    }
}

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

/// The bucket set of group `g` (`owned`, then `owned1`, …).
fn set_name(g: usize) -> String {
    if g == 0 {
        "owned".into()
    } else {
        format!("owned{g}")
    }
}

/// The owner map of group `g` (`owner`, then `owner1`, …).
fn map_name(g: usize) -> String {
    if g == 0 {
        "owner".into()
    } else {
        format!("owner{g}")
    }
}

/// What one rule matches, in nft's words.
struct Match {
    daddr: String,
    port: String,
    tcp: bool,
    bucket: String,
    group: usize,
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

    /// How many load-balancing groups (each has its own set and map).
    fn groups(&self) -> usize {
        self.rules.iter().map(|r| r.group + 1).max().unwrap_or(1)
    }

    /// The groups whose `arp` rule (vmac_directed) lets only the owner of
    /// a requester's bucket answer ARP/ND.
    fn neighbour_groups(&self) -> Vec<usize> {
        if self.delivery != Delivery::Directed {
            return Vec::new();
        }
        let mut g: Vec<usize> = self.rules.iter().filter(|r| r.proto == LbProto::Arp).map(|r| r.group).collect();
        g.sort_unstable();
        g.dedup();
        g
    }

    /// Every bucket set: (family, table, set, group).
    fn owned_sets(&self) -> Vec<(&'static str, String, String, usize)> {
        let mut out: Vec<_> = (0..self.groups()).map(|g| ("inet", self.table.clone(), set_name(g), g)).collect();
        for g in self.neighbour_groups() {
            if !self.v4().is_empty() {
                out.push(("arp", format!("{}_arp", self.table), set_name(g), g));
            }
            if !self.v6().is_empty() {
                out.push(("ip6", format!("{}_nd", self.table), set_name(g), g));
            }
        }
        out
    }

    /// Every owner map (vmac_directed): (family, table, map, group, is IPv6).
    fn owner_maps(&self) -> Vec<(&'static str, String, String, usize, bool)> {
        let mut out = Vec::new();
        if self.delivery == Delivery::Directed {
            for g in 0..self.groups() {
                if !self.v4().is_empty() {
                    out.push(("ip", format!("{}_fwd", self.table), map_name(g), g, false));
                }
                if !self.v6().is_empty() {
                    out.push(("ip6", format!("{}_fwd6", self.table), map_name(g), g, true));
                }
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

    /// Each tcp/udp rule of one IP family: its destination (the rule's
    /// `virtual_addr`, else every VIP of the family), what it matches
    /// (protocol and port), whether it is TCP, its bucket expression and group.
    fn matches(&self, v6: bool) -> Vec<Match> {
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
            let Some(daddr) = self.destinations(r.vip, v6) else { continue };
            let port = r.port.map(|p| format!("{proto} dport {p}")).unwrap_or_else(|| format!("meta l4proto {proto}"));
            let bucket = format!("jhash {key} mod 256 seed {:#010x}", self.seed);
            out.push(Match { daddr, port, tcp: r.proto == LbProto::Tcp, bucket, group: r.group });
        }
        out
    }

    /// `ip[6] daddr { … }` for a rule scoped to `vip` (or every VIP of the
    /// family); `None` when the rule has no address of this family.
    fn destinations(&self, vip: Option<IpAddr>, v6: bool) -> Option<String> {
        let addrs: Vec<String> = match vip {
            Some(a) if a.is_ipv6() == v6 => vec![a.to_string()],
            Some(_) => return None,
            None if v6 => self.v6().iter().map(ToString::to_string).collect(),
            None => self.v4(),
        };
        (!addrs.is_empty()).then(|| format!("{} daddr {{ {} }}", if v6 { "ip6" } else { "ip" }, addrs.join(", ")))
    }

    /// The accept rules of one IP family.
    fn accepts(&self, v6: bool) -> Vec<String> {
        let family = if v6 { "ipv6" } else { "ipv4" };
        self.matches(v6)
            .into_iter()
            .map(|m| {
                // TCP: only a new connection's first segment is matched against the
                // buckets; mid-stream segments of a moved bucket must not reach the
                // new owner (its TCP would answer with a reset).
                let syn = if m.tcp { " tcp flags & (fin|syn|rst|ack) == syn" } else { "" };
                format!("meta nfproto {family} {} {}{syn} {} @{} counter accept", m.daddr, m.port, m.bucket, set_name(m.group))
            })
            .collect()
    }

    /// vmac_directed: the table that sends packets of buckets owned by
    /// another node to it (before the accept chain, which would drop them),
    /// except those of connections established here. A bucket this node
    /// owns, or that nobody owns, is not in the map: the lookup fails and
    /// the packet goes on to the accept chain.
    fn forwarding(&self, v6: bool, name: &str) -> String {
        let (family, ty) = if v6 { ("ip6", "ip6 daddr") } else { ("ip", "ip daddr") };
        let mut t = format!("table {family} {name} {{\n");
        for g in 0..self.groups() {
            t.push_str(&format!("  map {} {{\n    typeof numgen inc mod 256 : {ty}\n  }}\n", map_name(g)));
        }
        t.push_str("  chain prerouting {\n    type filter hook prerouting priority mangle - 1; policy accept;\n    iif \"lo\" return\n");
        if let Some(all) = self.destinations(None, v6) {
            t.push_str(&format!("    {all} ct state established,related return\n"));
        }
        for m in self.matches(v6) {
            t.push_str(&format!(
                "    {} {} dup to {} map @{} device \"{}\" counter drop\n",
                m.daddr,
                m.port,
                m.bucket,
                map_name(m.group),
                self.device
            ));
        }
        t.push_str("  }\n}\n");
        t
    }

    /// The whole ruleset, owning and forwarding `groups` (one entry per
    /// group, missing ones empty): replaces any earlier one in one transaction.
    pub fn ruleset(&self, groups: &[Buckets]) -> Result<String, String> {
        self.valid()?;
        let mut t = String::new();
        for (family, name) in self.names() {
            t.push_str(&format!("table {family} {name}\ndelete table {family} {name}\n"));
        }
        let (v4, v6) = (self.v4(), self.v6());
        let sets = |t: &mut String, which: &[usize]| {
            for g in which {
                t.push_str(&format!("  set {} {{\n    typeof numgen inc mod 256\n", set_name(*g)));
                let owned = groups.get(*g).map_or(&[][..], |b| b.owned.as_slice());
                if !owned.is_empty() {
                    t.push_str(&format!("    elements = {{ {} }}\n", elements(owned)));
                }
                t.push_str("  }\n");
            }
        };
        match self.delivery {
            Delivery::Invisible { vmac, real_mac } => self.rewrites(&mut t, &vmac, &real_mac),
            Delivery::Directed => {
                let neighbours = self.neighbour_groups();
                let seed = self.seed;
                let arp_rules: Vec<&Rule> = self.rules.iter().filter(|r| r.proto == LbProto::Arp).collect();
                if !neighbours.is_empty() && !v4.is_empty() {
                    t.push_str(&format!("table arp {}_arp {{\n", self.table));
                    sets(&mut t, &neighbours);
                    t.push_str("  chain input {\n    type filter hook input priority 0; policy accept;\n");
                    for r in &arp_rules {
                        let targets = match r.vip {
                            Some(IpAddr::V4(a)) => a.to_string(),
                            Some(IpAddr::V6(_)) => continue,
                            None => v4.join(", "),
                        };
                        t.push_str(&format!(
                            "    arp operation request arp daddr ip {{ {targets} }} jhash arp saddr ip mod 256 seed {seed:#010x} != @{} counter drop\n",
                            set_name(r.group)
                        ));
                    }
                    t.push_str("  }\n}\n");
                }
                if !neighbours.is_empty() && !v6.is_empty() {
                    t.push_str(&format!("table ip6 {}_nd {{\n", self.table));
                    sets(&mut t, &neighbours);
                    t.push_str("  chain input {\n    type filter hook input priority 0; policy accept;\n");
                    for r in &arp_rules {
                        for a in v6.iter().filter(|a| r.vip.is_none_or(|v| v == IpAddr::V6(**a))) {
                            t.push_str(&format!(
                                "    icmpv6 type nd-neighbor-solicit @th,64,128 {} ip6 saddr != :: jhash ip6 saddr mod 256 seed {seed:#010x} != @{} counter drop\n",
                                hex128(a),
                                set_name(r.group)
                            ));
                        }
                    }
                    t.push_str("  }\n}\n");
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
        sets(&mut t, &(0..self.groups()).collect::<Vec<_>>());
        // The node's own connections to the VIP (a checker on VIP:port)
        // come in on lo with the VIP as source: never load-balanced.
        t.push_str("  chain prerouting {\n    type filter hook prerouting priority mangle; policy accept;\n    iif \"lo\" accept\n");
        for a in &v4 {
            t.push_str(&format!("    ip daddr {a} jump vip\n"));
        }
        for a in &v6 {
            t.push_str(&format!("    ip6 daddr {a} jump vip\n"));
        }
        t.push_str("  }\n  chain vip {\n    ct state established,related accept\n    icmp type echo-request accept\n    icmpv6 type echo-request accept\n    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n");
        for r in self.accepts(false).into_iter().chain(self.accepts(true)) {
            t.push_str(&format!("    {r}\n"));
        }
        t.push_str("    counter drop\n  }\n}\n");
        t.push_str(&self.forward_text(groups, false));
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
    fn forward_text(&self, groups: &[Buckets], flush: bool) -> String {
        let mut t = String::new();
        for (family, table, map, g, v6) in self.owner_maps() {
            if flush {
                t.push_str(&format!("flush map {family} {table} {map}\n"));
            }
            let forward = groups.get(g).map_or(&[][..], |b| b.forward.as_slice());
            let e: Vec<String> = forward.iter().filter(|(_, a)| a.is_ipv6() == v6).map(|(b, a)| format!("{b} : {a}")).collect();
            if !e.is_empty() {
                t.push_str(&format!("add element {family} {table} {map} {{ {} }}\n", e.join(", ")));
            }
        }
        t
    }

    /// One transaction that makes `groups` what is owned and forwarded.
    pub fn set_text(&self, groups: &[Buckets]) -> String {
        let mut t = String::new();
        for (family, table, set, g) in self.owned_sets() {
            t.push_str(&format!("flush set {family} {table} {set}\n"));
            let owned = groups.get(g).map_or(&[][..], |b| b.owned.as_slice());
            if !owned.is_empty() {
                t.push_str(&format!("add element {family} {table} {set} {{ {} }}\n", elements(owned)));
            }
        }
        t.push_str(&self.forward_text(groups, true));
        t
    }

    /// Removes every table of the module (those that exist).
    pub fn removal_text(&self) -> String {
        self.names().iter().map(|(f, n)| format!("table {f} {n}\ndelete table {f} {n}\n")).collect()
    }

    /// Loads the ruleset owning and forwarding `groups`, then checks what the kernel holds.
    pub fn install(&self, groups: &[Buckets]) -> Result<(), String> {
        nft(&self.ruleset(groups)?)?;
        self.verify(groups)
    }

    /// Makes `groups` what is owned and forwarded (one transaction), then checks.
    pub fn set_owned(&self, groups: &[Buckets]) -> Result<(), String> {
        nft(&self.set_text(groups))?;
        self.verify(groups)
    }

    /// Removes the module's tables (also after a crash: nothing else needs to be known).
    pub fn remove(&self) -> Result<(), String> {
        nft(&self.removal_text())
    }

    fn verify(&self, groups: &[Buckets]) -> Result<(), String> {
        for (family, table, set, g) in self.owned_sets() {
            let mut want = groups.get(g).map(|b| b.owned.clone()).unwrap_or_default();
            want.sort_unstable();
            want.dedup();
            let now = set_elements(family, &table, &set)?;
            if now != want {
                return Err(format!("nft holds buckets {now:?} in {table} {set}, not {want:?}"));
            }
        }
        for (family, table, map, g, v6) in self.owner_maps() {
            let forward = groups.get(g).map_or(&[][..], |b| b.forward.as_slice());
            let mut want: Vec<(u8, IpAddr)> = forward.iter().filter(|(_, a)| a.is_ipv6() == v6).copied().collect();
            want.sort_unstable();
            let now = map_elements(family, &table, &map)?;
            if now != want {
                return Err(format!("nft forwards {now:?} in {table} {map}, not {want:?}"));
            }
        }
        Ok(())
    }

    /// The buckets of the first group the kernel's set holds now, read back with `nft -j`.
    pub fn owned_now(&self) -> Result<Vec<u8>, String> {
        set_elements("inet", &self.table, &set_name(0))
    }

    /// New connections accepted and packets dropped so far ([`counters`] of this table).
    pub fn counters(&self) -> Result<(u64, u64), String> {
        counters(&self.table)
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
