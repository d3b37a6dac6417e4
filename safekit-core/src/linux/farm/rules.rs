//! The farm data path with nf_tables only (no kernel module of ours):
//! every node carries the virtual IP; frames to the virtual MAC are
//! flooded to all of them (vmac_invisible); each node's kernel accepts a
//! new connection only if `jhash(client) mod 256` is a bucket it owns,
//! and keeps every established flow where it is (conntrack), so a bucket
//! that moves never breaks an open connection.
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

/// The data path of one farm module on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmRules {
    /// Table name stem: `safekit_<module>` (letters, digits, `_`).
    pub table: String,
    /// The NIC the VIP is on.
    pub device: String,
    /// That NIC's own MAC (for the IPv6 ND rewrite's checksum constant).
    pub real_mac: [u8; 6],
    /// The virtual MAC every node answers for.
    pub vmac: [u8; 6],
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

fn elements(owned: &[u8]) -> String {
    owned.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
}

impl FarmRules {
    fn names(&self) -> [(&'static str, String); 4] {
        [
            ("netdev", format!("{}_l2", self.table)),
            ("arp", format!("{}_arp", self.table)),
            ("ip6", format!("{}_nd", self.table)),
            ("inet", self.table.clone()),
        ]
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

    /// The accept rules of one IP family.
    fn accepts(&self, v6: bool) -> Vec<String> {
        let (family, saddr) = if v6 { ("ipv6", "ip6 saddr") } else { ("ipv4", "ip saddr") };
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
            let port = r.port.map(|p| format!(" {proto} dport {p}")).unwrap_or_else(|| format!(" meta l4proto {proto}"));
            // TCP: only a new connection's first segment is matched against the
            // buckets; mid-stream segments of a moved bucket must not reach the
            // new owner (its TCP would answer with a reset).
            let syn = if r.proto == LbProto::Tcp { " tcp flags & (fin|syn|rst|ack) == syn" } else { "" };
            out.push(format!("meta nfproto {family}{port}{syn} jhash {key} mod 256 seed {:#010x} @owned counter accept", self.seed));
        }
        out
    }

    /// The whole ruleset, owning `owned`: replaces any earlier one in one transaction.
    pub fn ruleset(&self, owned: &[u8]) -> Result<String, String> {
        self.valid()?;
        let [(_, l2), (_, arp), (_, nd), (_, inet)] = self.names();
        let vmac = mac_text(&self.vmac);
        let mut t = String::new();
        for (family, name) in self.names() {
            t.push_str(&format!("table {family} {name}\ndelete table {family} {name}\n"));
        }
        t.push_str(&format!(
            "table netdev {l2} {{\n  chain ingress {{\n    type filter hook ingress device \"{}\" priority -500; policy accept;\n    ether daddr {vmac} meta pkttype set host\n  }}\n}}\n",
            self.device
        ));
        let v4: Vec<String> = self.vips.iter().filter(|a| a.is_ipv4()).map(IpAddr::to_string).collect();
        let v6: Vec<std::net::Ipv6Addr> = self.vips.iter().filter_map(|a| if let IpAddr::V6(v) = a { Some(*v) } else { None }).collect();
        t.push_str(&format!("table arp {arp} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n"));
        for a in &v4 {
            t.push_str(&format!("    arp saddr ip {a} arp saddr ether set {vmac}\n"));
        }
        t.push_str("  }\n}\n");
        let comp = nd_checksum_word(&self.real_mac, &self.vmac);
        t.push_str(&format!("table ip6 {nd} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n"));
        for a in &v6 {
            let target = format!("0x{}", a.octets().iter().map(|b| format!("{b:02x}")).collect::<String>());
            let vm = mac_hex(&self.vmac);
            t.push_str(&format!(
                "    icmpv6 type nd-neighbor-advert @th,64,128 {target} @th,192,16 0x0201 @th,208,48 set {vm} @th,48,16 set {comp:#06x}\n"
            ));
            t.push_str(&format!(
                "    icmpv6 type nd-neighbor-solicit ip6 saddr {a} @th,192,16 0x0101 @th,208,48 set {vm} @th,48,16 set {comp:#06x}\n"
            ));
        }
        t.push_str("  }\n}\n");
        t.push_str(&format!("table inet {inet} {{\n  set owned {{\n    typeof numgen inc mod 256\n"));
        if !owned.is_empty() {
            t.push_str(&format!("    elements = {{ {} }}\n", elements(owned)));
        }
        t.push_str("  }\n  chain prerouting {\n    type filter hook prerouting priority mangle; policy accept;\n");
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
        Ok(t)
    }

    /// One transaction that makes `owned` the owned buckets.
    pub fn set_text(&self, owned: &[u8]) -> String {
        let mut t = format!("flush set inet {} owned\n", self.table);
        if !owned.is_empty() {
            t.push_str(&format!("add element inet {} owned {{ {} }}\n", self.table, elements(owned)));
        }
        t
    }

    /// Removes every table of the module (those that exist).
    pub fn removal_text(&self) -> String {
        self.names().iter().map(|(f, n)| format!("table {f} {n}\ndelete table {f} {n}\n")).collect()
    }

    /// Loads the ruleset owning `owned`, then checks what the kernel holds.
    pub fn install(&self, owned: &[u8]) -> Result<(), String> {
        nft(&self.ruleset(owned)?)?;
        self.verify(owned)
    }

    /// Makes `owned` the owned buckets (one transaction), then checks.
    pub fn set_owned(&self, owned: &[u8]) -> Result<(), String> {
        nft(&self.set_text(owned))?;
        self.verify(owned)
    }

    /// Removes the module's tables (also after a crash: nothing else needs to be known).
    pub fn remove(&self) -> Result<(), String> {
        nft(&self.removal_text())
    }

    fn verify(&self, owned: &[u8]) -> Result<(), String> {
        let now = self.owned_now()?;
        let mut want = owned.to_vec();
        want.sort_unstable();
        want.dedup();
        if now == want {
            Ok(())
        } else {
            Err(format!("nft holds buckets {now:?} for {}, not {want:?}", self.table))
        }
    }

    /// The buckets the kernel's set holds now, read back with `nft -j`.
    pub fn owned_now(&self) -> Result<Vec<u8>, String> {
        let json = nft_json(&["list", "set", "inet", &self.table, "owned"])?;
        let mut out: Vec<u8> = Vec::new();
        for item in json["nftables"].as_array().into_iter().flatten() {
            for e in item["set"]["elem"].as_array().into_iter().flatten() {
                match e.as_u64().and_then(|v| u8::try_from(v).ok()) {
                    Some(b) => out.push(b),
                    None => return Err(format!("unexpected element {e} in {}'s set", self.table)),
                }
            }
        }
        out.sort_unstable();
        Ok(out)
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
            real_mac: [0x02, 0x81, 0, 0, 0, 1],
            vmac: default_vmac("10.81.0.100".parse().unwrap()),
            vips: vec!["10.81.0.100".parse().unwrap(), "fd00:81::100".parse().unwrap()],
            rules: vec![Rule { port: Some(80), proto: LbProto::Tcp, filter: LbFilter::OnAddr }],
            seed: 0x5afe_0001,
        }
    }

    #[test]
    fn the_ruleset_is_the_prototypes() {
        let t = rules().ruleset(&[1, 2, 9]).unwrap();
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
        let t = r.ruleset(&[]).unwrap();
        assert!(t.contains("tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn jhash ip saddr . tcp sport mod 256"), "{t}");
        assert!(t.contains("meta nfproto ipv4 meta l4proto udp jhash ip saddr mod 256"), "{t}");
        assert!(!t.contains("ip6 saddr"), "no IPv6 VIP, no IPv6 rule: {t}");
        assert!(!t.contains("elements"), "no bucket owned");
    }

    #[test]
    fn names_that_would_inject_are_refused() {
        let mut r = rules();
        r.table = "x; flush ruleset".into();
        assert!(r.ruleset(&[]).is_err());
        let mut r = rules();
        r.device = "eth0\" ; drop".into();
        assert!(r.ruleset(&[]).is_err());
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
