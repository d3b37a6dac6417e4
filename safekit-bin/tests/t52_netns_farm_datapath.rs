//! The farm data path on three nodes and a client in network namespaces
//! (a bridge in a fourth): every node carries the virtual IP, frames to
//! the virtual MAC reach all of them, and each node's nf_tables accepts a
//! new connection only if the client's bucket is one of its own. From 40
//! client addresses: every connection answered, by the node the bucket
//! table and the kernel's jhash predict, and accepted by exactly one node
//! (the nodes' counters add up to the number of connections); on_addr and
//! on_port, IPv4 and IPv6; a node cut off and its buckets handed over in
//! two phases; the node back and a connection open across the rebalance
//! finishing on its old node; power 0 and the 1/64/4096 chain.
//!
//! The membership protocol and the farm engine that will drive this in
//! the daemon are not part of this test: the tables are computed with
//! `safekit_core::farm::assign` and applied by the test.

mod common;
mod farmnet;

use std::net::IpAddr;
use std::process::Command;

use safekit_core::config::{LbFilter, LbProto};
use safekit_core::farm::{assign, bucket_of, BucketTable, FlowKey, Handover, Member};
use safekit_core::linux::farm::{default_vmac, Buckets, Delivery, FarmRules, Rule};

use farmnet::{connect, in_ns, key, ns, request, run, sources, Farm, Vip, NODES, VIP4, VIP6};

const SEED: u32 = 0x5afe_0052;

/// Node `node`'s rules; `directed`: vmac_directed with an `arp` rule.
fn rules(node: usize, filter: LbFilter, directed: bool) -> FarmRules {
    let mut rules = vec![Rule { group: 0, vip: None, port: Some(80), proto: LbProto::Tcp, filter }];
    let delivery = if directed {
        rules.push(Rule { group: 0, vip: None, port: None, proto: LbProto::Arp, filter: LbFilter::OnAddr });
        Delivery::Directed
    } else {
        Delivery::Invisible { vmac: default_vmac(VIP4.parse().unwrap()), real_mac: [0x02, 0x82, 0, 0, 0, u8::try_from(node + 1).unwrap()] }
    };
    FarmRules {
        table: "safekit_farm52".into(),
        device: "eth0".into(),
        delivery,
        vips: vec![VIP4.parse().unwrap(), VIP6.parse().unwrap()],
        rules,
        seed: SEED,
    }
}

/// vmac_directed: where node `me` sends buckets others own (their own addresses).
fn forward(table: &BucketTable, me: &str, directed: bool) -> Vec<(u8, IpAddr)> {
    if !directed {
        return Vec::new();
    }
    let mut out = Vec::new();
    for b in 0..=255u8 {
        if let Some(i) = table.owner(b).filter(|o| *o != me).and_then(|o| NODES.iter().position(|n| *n == o)) {
            out.push((b, format!("10.82.0.{}", i + 1).parse().unwrap()));
            out.push((b, format!("fd00:82::{}", i + 1).parse().unwrap()));
        }
    }
    out
}

fn install(table: &BucketTable, filter: LbFilter, directed: bool) {
    for (i, n) in NODES.iter().enumerate() {
        let (r, b) = (rules(i, filter, directed), Buckets { owned: table.owned_by(n), forward: forward(table, n, directed) });
        in_ns(n, move || r.install(&[b])).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
}

/// Every node's accepted-connections counter.
fn accepted() -> Vec<u64> {
    NODES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let r = rules(i, LbFilter::OnAddr, false);
            in_ns(n, move || r.counters()).unwrap_or_else(|e| panic!("{n}: {e}")).0
        })
        .collect()
}

/// Two-phase handover from `old` to `new` on every node (vmac_invisible).
fn hand_over(old: &BucketTable, new: &BucketTable, filter: LbFilter, skip: Option<&str>) {
    let plans: Vec<(usize, &str, Handover)> =
        NODES.iter().enumerate().filter(|(_, n)| Some(**n) != skip).map(|(i, n)| (i, *n, Handover::between(old, new, n))).collect();
    for phase in [0, 1] {
        for (i, n, h) in &plans {
            let (r, owned) = (rules(*i, filter, false), if phase == 0 { h.after_release() } else { h.after_acquire() });
            in_ns(n, move || r.set_owned(&Buckets::owned(owned))).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }
}

/// One connection from each source: who answered, and who the table says should have.
fn probe(table: &BucketTable, filter: LbFilter, v6: bool) -> Vec<(IpAddr, String, String)> {
    let srcs = sources(v6);
    let table = table.clone();
    in_ns("cl", move || {
        srcs.into_iter()
            .map(|src| {
                let (s, local) = connect(src).unwrap_or_else(|e| panic!("connection from {src}: {e}"));
                let want = table.owner(bucket_of(&key(local, filter), SEED)).unwrap_or("nobody").to_string();
                let got = request(s).unwrap_or_else(|e| panic!("answer to {src}: {e}"));
                (src, got, want)
            })
            .collect()
    })
}

/// Every connection answered by its predicted owner, and accepted by exactly one node.
fn check(what: &str, table: &BucketTable, filter: LbFilter, v6: bool) -> Vec<usize> {
    let before = accepted();
    let answers = probe(table, filter, v6);
    let after = accepted();
    let wrong: Vec<_> = answers.iter().filter(|(_, got, want)| got != want).collect();
    assert!(wrong.is_empty(), "{what}: answered by another node than the table's: {wrong:?}");
    let per_node: Vec<usize> = NODES.iter().map(|n| answers.iter().filter(|(_, got, _)| got == n).count()).collect();
    let delta: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
    let expected: Vec<u64> = per_node.iter().map(|n| u64::try_from(*n).unwrap()).collect();
    assert_eq!(delta, expected, "{what}: each node accepted exactly the new connections it answered (no SYN accepted twice)");
    println!("farm test: {what}: 40 connections answered as predicted, per node {per_node:?}");
    per_node
}

fn view(powers: [u32; 3]) -> Vec<Member> {
    NODES.iter().zip(powers).map(|(n, p)| Member::new(*n, p)).collect()
}

/// The namespaces with the applications answering, or `None` (with the
/// reason printed) where the test cannot run.
fn farm(vip: Vip) -> Option<Farm> {
    if !common::privileged(
        "farm test needs root, iproute2 and nftables (apt-get install iproute2 nftables)",
        &["ip", "nft", "sysctl"],
        false,
    ) {
        return None;
    }
    let farm = Farm::setup("skf52", vip).unwrap();
    farmnet::wait_apps();
    Some(farm)
}

#[test]
fn three_nodes_share_the_vip_by_buckets_and_hand_them_over() {
    let _serial = common::serial();
    let Some(_farm) = farm(Vip::Invisible) else { return };

    let three = assign(&view([1, 1, 1]));
    install(&three, LbFilter::OnAddr, false);
    let shares = check("on_addr IPv4, 3 nodes", &three, LbFilter::OnAddr, false);
    assert!(shares.iter().all(|n| *n > 0), "40 clients spread over the three nodes: {shares:?}");
    check("on_addr IPv6, 3 nodes", &three, LbFilter::OnAddr, true);
    install(&three, LbFilter::OnPort, false);
    check("on_port IPv4, 3 nodes", &three, LbFilter::OnPort, false);
    check("on_port IPv6, 3 nodes", &three, LbFilter::OnPort, true);
    install(&three, LbFilter::OnAddr, false);

    // n2 cut off: its buckets handed over to n1 and n3 (n2 itself does not answer).
    run(&["ip", "netns", "exec", &ns("sw"), "ip", "link", "set", "p1", "down"]).unwrap();
    let two = assign(&[Member::new("n1", 1), Member::new("n3", 1)]);
    hand_over(&three, &two, LbFilter::OnAddr, Some("n2"));
    let shares = check("n2 cut off, its buckets on n1 and n3", &two, LbFilter::OnAddr, false);
    assert_eq!(shares[1], 0);

    // n2 back, empty; the table rebalanced while a connection whose bucket
    // moves to n2 is open on its old owner: it finishes there.
    in_ns("n2", || rules(1, LbFilter::OnAddr, false).set_owned(&[])).unwrap();
    run(&["ip", "netns", "exec", &ns("sw"), "ip", "link", "set", "p1", "up"]).unwrap();
    let moving = sources(false)
        .into_iter()
        .find(|s| three.owner(bucket_of(&FlowKey::Addr(*s), SEED)) == Some("n2"))
        .expect("a client whose bucket returns to n2");
    let old_owner = two.owner(bucket_of(&FlowKey::Addr(moving), SEED)).unwrap().to_string();
    let (held, _) = in_ns("cl", move || connect(moving)).unwrap();
    hand_over(&two, &three, LbFilter::OnAddr, None);
    let answer = in_ns("cl", move || request(held)).unwrap();
    assert_eq!(answer, old_owner, "the connection opened before the rebalance finishes on its old node");
    check("n2 back, rebalanced", &three, LbFilter::OnAddr, false);
    println!("farm test: the connection from {moving} open across the rebalance finished on {old_owner}; new ones go to n2");

    // Power 0 gets no traffic; 1/64/4096 is a chain.
    let zero = assign(&view([0, 1, 1]));
    hand_over(&three, &zero, LbFilter::OnAddr, None);
    assert_eq!(check("power 0 on n1", &zero, LbFilter::OnAddr, false)[0], 0);
    let chain = assign(&view([1, 64, 4096]));
    hand_over(&zero, &chain, LbFilter::OnAddr, None);
    assert_eq!(check("powers 1/64/4096", &chain, LbFilter::OnAddr, false), [0, 0, 40]);
    let chain_without_n3 = assign(&view([1, 64, 0]));
    hand_over(&chain, &chain_without_n3, LbFilter::OnAddr, None);
    assert_eq!(check("powers 1/64, n3 gone", &chain_without_n3, LbFilter::OnAddr, false), [0, 40, 0]);

    // Stop: every table removed.
    for (i, n) in NODES.iter().enumerate() {
        let r = rules(i, LbFilter::OnAddr, false);
        in_ns(n, move || r.remove()).unwrap();
        let left = Command::new("ip").args(["netns", "exec", &ns(n), "nft", "list", "tables"]).output().unwrap();
        assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "{n} keeps tables: {}", String::from_utf8_lossy(&left.stdout));
    }
}

/// The MAC the client has cached for the VIP of one family.
fn cached_mac(v6: bool) -> String {
    let vip = if v6 { VIP6 } else { VIP4 };
    let family = if v6 { "-6" } else { "-4" };
    let out = Command::new("ip").args(["netns", "exec", &ns("cl"), "ip", family, "neigh", "show", vip, "dev", "eth0"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).unwrap_or_else(|| panic!("no cached MAC for {vip}: {text:?}")).to_string()
}

#[test]
fn directed_nodes_answer_with_their_own_mac_and_forward_what_they_do_not_own() {
    let _serial = common::serial();
    let Some(_farm) = farm(Vip::Directed) else { return };
    let three = assign(&view([1, 1, 1]));
    install(&three, LbFilter::OnAddr, true);

    // ARP and ND: only the owner of the requester's bucket answers, with its own MAC.
    for v6 in [false, true] {
        let mut answered = Vec::new();
        for src in sources(v6) {
            let owner = three.owner(bucket_of(&FlowKey::Addr(src), SEED)).unwrap().to_string();
            if answered.contains(&owner) {
                continue;
            }
            run(&["ip", "netns", "exec", &ns("cl"), "ip", "neigh", "flush", "dev", "eth0"]).unwrap();
            let (s, _) = in_ns("cl", move || connect(src)).unwrap();
            let got = in_ns("cl", move || request(s)).unwrap();
            assert_eq!(got, owner, "{src}'s connection");
            let i = NODES.iter().position(|n| *n == owner).unwrap();
            assert_eq!(
                cached_mac(v6),
                format!("02:82:00:00:00:0{}", i + 1),
                "{src} resolved the VIP to its bucket owner {owner}'s own MAC"
            );
            answered.push(owner);
        }
        assert_eq!(answered.len(), 3, "each node answered the requesters it owns ({})", if v6 { "ND" } else { "ARP" });
        println!("farm test: directed {}: each requester got its bucket owner's MAC", if v6 { "ND" } else { "ARP" });
    }

    // Every client now sends to one node's MAC; the others' buckets are forwarded to their owners.
    for (filter, what) in [(LbFilter::OnAddr, "on_addr"), (LbFilter::OnPort, "on_port")] {
        install(&three, filter, true);
        for v6 in [false, true] {
            // The first client resolves the VIP; the others use that entry.
            let first = sources(v6)[0];
            in_ns("cl", move || request(connect(first)?.0)).unwrap();
            let mac = cached_mac(v6);
            let shares =
                check(&format!("directed {what} {}, every client through {mac}", if v6 { "IPv6" } else { "IPv4" }), &three, filter, v6);
            assert!(shares.iter().all(|n| *n > 0), "the node behind {mac} forwarded to both others: {shares:?}");
            if !v6 {
                // (IPv6's neighbour unreachability detection may ask again from
                // another source, whose owner answers: the entry can change.)
                assert_eq!(cached_mac(v6), mac, "one MAC for every client");
            }
        }
    }

    for (i, n) in NODES.iter().enumerate() {
        let r = rules(i, LbFilter::OnAddr, true);
        in_ns(n, move || r.remove()).unwrap();
        let left = Command::new("ip").args(["netns", "exec", &ns(n), "nft", "list", "tables"]).output().unwrap();
        assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "{n} keeps tables: {}", String::from_utf8_lossy(&left.stdout));
    }
}

/// Answers every datagram to VIP:`port` in node `node`'s namespace with the
/// node's name (from the VIP, as the client expects), until `stop` is set
/// (checked every 100 ms).
fn udp_responder(node: &'static str, port: u16, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<()> {
    let file = std::fs::File::open(format!("/run/netns/{}", ns(node))).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(std::os::fd::AsFd::as_fd(&file), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = std::net::UdpSocket::bind((VIP4, port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(100))).unwrap();
        let mut buf = [0u8; 64];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(node.as_bytes(), from);
            }
        }
    })
}

/// From each source, one datagram on a new connected socket to VIP:`port`:
/// every answer received within 150 ms (source, answers).
fn udp_round(port: u16) -> Vec<(IpAddr, Vec<String>)> {
    in_ns("cl", move || {
        sources(false)
            .into_iter()
            .map(|src| {
                let s = std::net::UdpSocket::bind((src, 0)).unwrap();
                s.connect((VIP4, port)).unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_millis(150))).unwrap();
                s.send(b"who").unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 64];
                while let Ok(n) = s.recv(&mut buf) {
                    got.push(String::from_utf8_lossy(&buf[..n]).to_string());
                }
                (src, got)
            })
            .collect()
    })
}

#[test]
fn udp_datagrams_are_answered_once_by_address_and_by_ip_id() {
    let _serial = common::serial();
    let Some(_farm) = farm(Vip::Invisible) else { return };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let responders: Vec<_> = NODES.iter().flat_map(|n| [9000, 9001].map(|port| udp_responder(n, port, stop.clone()))).collect();
    let three = assign(&view([1, 1, 1]));
    for (i, n) in NODES.iter().enumerate() {
        let mut r = rules(i, LbFilter::OnAddr, false);
        r.rules = vec![
            Rule { group: 0, vip: None, port: Some(9000), proto: LbProto::Udp, filter: LbFilter::OnAddr },
            Rule { group: 0, vip: None, port: Some(9001), proto: LbProto::Udp, filter: LbFilter::OnIpid },
        ];
        let owned = three.owned_by(n);
        in_ns(n, move || r.install(&Buckets::owned(owned))).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    // on_addr: each source answered once, by its bucket's owner.
    let answers = udp_round(9000);
    for (src, got) in &answers {
        let want = three.owner(bucket_of(&FlowKey::Addr(*src), SEED)).unwrap();
        assert_eq!(got, &[want.to_string()], "UDP on_addr from {src}");
    }
    // on_ipid: the IP id of each socket's first datagram picks the node: answered once, spread.
    let answers = udp_round(9001);
    assert!(answers.iter().all(|(_, got)| got.len() == 1), "UDP on_ipid: one answer per datagram: {answers:?}");
    let per_node: Vec<usize> = NODES.iter().map(|n| answers.iter().filter(|(_, g)| g[0] == *n).count()).collect();
    assert!(per_node.iter().all(|c| *c > 0), "datagrams spread by IP id over the nodes: {per_node:?}");
    println!("farm test: UDP on_addr answered once by the predicted node; on_ipid once each, per node {per_node:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in responders {
        let _ = r.join();
    }
}
