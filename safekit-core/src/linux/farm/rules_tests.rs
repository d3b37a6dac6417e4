//! The rules' text, without nft.

use super::*;

fn rule(group: usize, port: Option<u16>, proto: LbProto, filter: LbFilter) -> Rule {
    Rule { group, vip: None, port, proto, filter }
}

fn rules() -> FarmRules {
    FarmRules {
        table: "safekit_web".into(),
        device: "eth0".into(),
        delivery: Delivery::Invisible { vmac: default_vmac("10.81.0.100".parse().unwrap()), real_mac: [0x02, 0x81, 0, 0, 0, 1] },
        vips: vec!["10.81.0.100".parse().unwrap(), "fd00:81::100".parse().unwrap()],
        rules: vec![rule(0, Some(80), LbProto::Tcp, LbFilter::OnAddr)],
        seed: 0x5afe_0001,
    }
}

#[test]
fn the_ruleset_is_the_prototypes() {
    let t = rules().ruleset(&Buckets::owned(vec![1, 2, 9])).unwrap();
    for want in [
        "ether daddr 5a:fe:0a:51:00:64 meta pkttype set host",
        "arp saddr ip 10.81.0.100 arp saddr ether set 5a:fe:0a:51:00:64",
        "elements = { 1, 2, 9 }",
        "ip daddr 10.81.0.100 jump vip",
        "ip6 daddr fd00:81::100 jump vip",
        "ct state established,related accept",
        "priority mangle; policy accept;\n    iif \"lo\" accept\n",
        "meta nfproto ipv4 ip daddr { 10.81.0.100 } tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn jhash ip saddr mod 256 seed 0x5afe0001 @owned counter accept",
        "meta nfproto ipv6 ip6 daddr { fd00:81::100 } tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn jhash ip6 saddr mod 256 seed 0x5afe0001 @owned counter accept",
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
    r.rules = vec![rule(0, Some(80), LbProto::Tcp, LbFilter::OnPort), rule(0, None, LbProto::Udp, LbFilter::OnAddr)];
    let t = r.ruleset(&[]).unwrap();
    assert!(t.contains("tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn jhash ip saddr . tcp sport mod 256"), "{t}");
    assert!(t.contains("meta nfproto ipv4 ip daddr { 10.81.0.100 } meta l4proto udp jhash ip saddr mod 256"), "{t}");
    assert!(!t.contains("ip6 saddr"), "no IPv6 VIP, no IPv6 rule: {t}");
    assert!(!t.contains("elements"), "no bucket owned");
}

#[test]
fn directed_forwards_what_it_does_not_own_and_filters_neighbour_answers() {
    let mut r = rules();
    r.delivery = Delivery::Directed;
    r.rules.push(rule(0, None, LbProto::Arp, LbFilter::OnAddr));
    let fwd = vec![(3, "10.81.0.2".parse().unwrap()), (3, "fd00:81::2".parse().unwrap()), (7, "10.81.0.3".parse().unwrap())];
    let t = r.ruleset(&[Buckets { owned: vec![1], forward: fwd.clone() }]).unwrap();
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
    let u = r.set_text(&[Buckets { owned: vec![1, 2], forward: fwd[..1].to_vec() }]);
    for want in
        ["flush set arp safekit_web_arp owned", "add element ip6 safekit_web_nd owned { 1, 2 }", "flush map ip6 safekit_web_fwd6 owner"]
    {
        assert!(u.contains(want), "{want}\nnot in\n{u}");
    }
}

#[test]
fn each_group_has_its_own_set_and_a_rule_can_be_scoped_to_one_vip() {
    let mut r = rules();
    r.delivery = Delivery::Directed;
    r.vips.push("10.81.0.101".parse().unwrap());
    r.rules = vec![
        rule(0, Some(80), LbProto::Tcp, LbFilter::OnAddr),
        Rule { vip: Some("10.81.0.101".parse().unwrap()), ..rule(1, Some(443), LbProto::Tcp, LbFilter::OnPort) },
    ];
    let groups = [
        Buckets { owned: vec![1], forward: vec![(2, "10.81.0.2".parse().unwrap())] },
        Buckets { owned: vec![5, 6], forward: vec![(7, "10.81.0.3".parse().unwrap())] },
    ];
    let t = r.ruleset(&groups).unwrap();
    for want in [
        "set owned1 {\n    typeof numgen inc mod 256\n    elements = { 5, 6 }",
        "meta nfproto ipv4 ip daddr { 10.81.0.100, 10.81.0.101 } tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn jhash ip saddr mod 256 seed 0x5afe0001 @owned counter accept",
        "meta nfproto ipv4 ip daddr { 10.81.0.101 } tcp dport 443 tcp flags & (fin|syn|rst|ack) == syn jhash ip saddr . tcp sport mod 256 seed 0x5afe0001 @owned1 counter accept",
        "ip daddr { 10.81.0.101 } tcp dport 443 dup to jhash ip saddr . tcp sport mod 256 seed 0x5afe0001 map @owner1 device",
        "add element ip safekit_web_fwd owner1 { 7 : 10.81.0.3 }",
    ] {
        assert!(t.contains(want), "{want}\nnot in\n{t}");
    }
    assert!(!t.contains("ip6 daddr { fd00:81::100 } tcp dport 443"), "the 443 rule is scoped to an IPv4 VIP: {t}");
    let u = r.set_text(&groups[..1]);
    assert!(u.contains("flush set inet safekit_web owned1\n") && !u.contains("add element inet safekit_web owned1"), "{u}");
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
