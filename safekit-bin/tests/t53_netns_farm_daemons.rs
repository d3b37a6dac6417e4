//! A farm module run by three real daemons in network namespaces: each
//! daemon opens its traffic (VIP, promiscuous mode, nf_tables rules),
//! beats on the cluster network, and takes its share of the buckets.
//! From 40 client addresses every connection is answered by the node the
//! bucket table of the live members predicts, and accepted by exactly one
//! node; a node cut off loses its buckets to the others (the time from the
//! cut to a fully served table is printed, not asserted); back, the
//! membership merges and the buckets are rebalanced; a stopped node
//! removes its tables and its share goes to the others. A second farm,
//! vmac_directed with an IPv6 VIP too and `scriptcontrol="on"`: its
//! scripts open the traffic with `safekit -r saferpc_send vipd SETGROUPS`,
//! `safekit -r vip_if_ctrl -l` prints the bucket maps, the metrics show
//! the share, and a node whose traffic is closed hands its buckets over.

mod common;
mod farmnet;

use std::process::Command;
use std::time::{Duration, Instant};

use farmnet::daemons::{served_as, started_with, table, tail, until_served, until_served_over, web_get, Install, CLUSTER, MODULE};
use farmnet::{in_ns, ns, request, run, sources, Farm, Vip, NODES, VIP4};
use safekit_core::engine::{Readiness, State, Status};
use safekit_core::farm::{assign, bucket_of, seed_of, BucketTable, Member};

/// CLUSTER with, beside the IPv4 network, an IPv6 one: vmac_directed
/// forwards IPv6 packets to a peer's IPv6 address on a farm network.
fn cluster_dual() -> String {
    let v6 = (1..=3).map(|i| format!("      <node name=\"n{i}\" addr=\"fd00:82::{i}\"/>\n")).collect::<String>();
    CLUSTER.replace("  </lans>", &format!("    <lan name=\"v6\">\n{v6}    </lan>\n  </lans>"))
}

/// A second VIP served by a second group whose powers make a chain (n3 serves it all).
const API_VIP: &str = "10.82.0.101";

/// MODULE made vmac_directed (with an `arp` rule), dual-stack, beating on
/// both networks, with scripts (`<user/>`) that open its traffic
/// themselves, and a second group "api" for API_VIP only, powers 1/64/4096.
fn module_directed() -> String {
    MODULE
        .replace(r#"<lan name="default"/>"#, r#"<lan name="default"/><lan name="v6"/>"#)
        .replace("<vip>", "<user/>\n  <vip scriptcontrol=\"on\">")
        .replace("vmac_invisible", "vmac_directed")
        .replace("<interface>", r#"<interface arpreroute="on" arpinterval="1" arpelapse="30">"#)
        .replace(
            r#"<virtual_addr addr="10.82.0.100" where="alias"/>"#,
            r#"<virtual_addr addr="10.82.0.100" where="alias"/><virtual_addr addr="fd00:82::100" where="alias"/>
          <virtual_addr addr="10.82.0.101" where="alias"/>"#,
        )
        // (A rule without virtual_addr would apply to API_VIP as well.)
        .replace(
            r#"<rule port="80" proto="tcp" filter="on_addr"/>"#,
            r#"<rule virtual_addr="10.82.0.100" port="80" proto="tcp" filter="on_addr"/>
        <rule virtual_addr="fd00:82::100" port="80" proto="tcp" filter="on_addr"/>
        <rule proto="arp" filter="on_addr"/>"#,
        )
        .replace(
            "    </loadbalancing_list>",
            r#"      <group name="api">
        <cluster><host name="n1" power="1"/><host name="n2" power="64"/><host name="n3" power="4096"/></cluster>
        <rule virtual_addr="10.82.0.101" port="80" proto="tcp" filter="on_addr"/>
      </group>
    </loadbalancing_list>"#,
        )
}

/// The gratuitous ARPs for `vip` the client sees during `window`: their sender MACs.
fn gratuitous_arps(vip: std::net::Ipv4Addr, window: Duration) -> Vec<[u8; 6]> {
    in_ns("cl", move || {
        let arp = i32::from(0x0806u16.to_be());
        let s = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, Some(socket2::Protocol::from(arp))).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let (end, mut out) = (Instant::now() + window, Vec::new());
        let mut f = [0u8; 128];
        while Instant::now() < end {
            let Ok(n) = std::io::Read::read(&mut &s, &mut f) else { continue };
            if n >= 42 && f[12..14] == [0x08, 0x06] && f[28..32] == vip.octets() && f[38..42] == vip.octets() {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&f[22..28]);
                out.push(mac);
            }
        }
        out
    })
}

/// Who answers each of the 40 clients on `vip`:80.
fn answers_on(vip: &'static str) -> Vec<String> {
    in_ns("cl", move || {
        sources(false)
            .into_iter()
            .map(|src| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                s.bind(&std::net::SocketAddr::new(src, 0).into()).unwrap();
                let to = std::net::SocketAddr::new(vip.parse().unwrap(), 80);
                match s.connect_timeout(&to.into(), Duration::from_secs(4)) {
                    Ok(()) => {
                        let stream: std::net::TcpStream = s.into();
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(4)));
                        request(stream).unwrap_or_else(|e| e)
                    }
                    Err(e) => e.to_string(),
                }
            })
            .collect()
    })
}

/// The farm module `config` on every node.
fn started(config: &str) -> farmnet::daemons::Daemons {
    started_with(CLUSTER, &[Install { name: "farm", id: 1, config, scripts: &[], on: &[0, 1, 2] }])
}

/// The scriptcontrol module's scripts: the application is ready, open; about to stop, close.
const SCRIPTS: [(&str, &str); 2] = [
    ("start_both", "#!/bin/sh\nexec \"$SAFEBIN/safekit\" -r saferpc_send vipd SETGROUPS all all all\n"),
    ("stop_both", "#!/bin/sh\nexec \"$SAFEBIN/safekit\" -r saferpc_send vipd SETGROUPS none none none\n"),
];

/// Every node's count of new connections accepted (the daemon's nf_tables rules).
fn accepted() -> Vec<u64> {
    NODES
        .iter()
        .map(|n| in_ns(n, || safekit_core::linux::farm::counters("safekit_farm")).unwrap_or_else(|e| panic!("{n}: {e}")).0)
        .collect()
}

/// One more round once settled: each node accepted exactly the connections it answered.
fn accepted_once(what: &str, table: &BucketTable) {
    let before = accepted();
    let shares = served_as(table).unwrap_or_else(|e| panic!("{what}: {e}"));
    let after = accepted();
    let delta: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a.saturating_sub(*b)).collect();
    let want: Vec<u64> = shares.iter().map(|n| u64::try_from(*n).unwrap()).collect();
    assert_eq!(delta, want, "{what}: each connection accepted by exactly one node");
}

#[test]
fn three_daemons_share_a_farm_vip_and_fail_over() {
    let _serial = common::serial();
    if !common::privileged("farm test needs root, iproute2 and nftables (apt-get install iproute2 nftables)", &["ip", "nft"], false) {
        return;
    }
    let _net = Farm::setup("skf53", Vip::No).unwrap();
    farmnet::wait_apps();
    let d = started(MODULE);
    until_served("3 daemons UP", &table(&NODES), Duration::from_secs(20), &d);
    accepted_once("3 daemons UP", &table(&NODES));
    // Visible as SafeKit shows it: UP Ready, the load share as resource web_0,
    // and the health check's 200 for a load balancer or a <module> checker.
    let share = |i: usize| table(&NODES).owned_by(NODES[i]).len() * 100 / 256;
    let got = d.cli(0, &["get", "-m", "farm", "-r", "web_0"]);
    assert!(got.contains(&share(0).to_string()), "n1's load share {}%: {got}", share(0));
    println!("farm daemons: n1 `safekit get -m farm -r web_0`: {}", got.trim());
    let state = d.cli(0, &["state"]);
    println!("farm daemons: n1 `safekit state`: {}", state.trim());
    assert!(state.contains("UP Ready") && state.contains(&format!("(load: web_0 {}%)", share(0))), "{state}");
    let health = web_get("/var/modules/farm/ready.txt");
    assert!(
        health.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200")),
        "health check of n1: {health:?}"
    );

    // Garbage and a beat forged with another key: dropped, counted, nothing changes.
    in_ns("cl", || {
        let sock = std::net::UdpSocket::bind("10.82.0.10:0").unwrap();
        let forged = safekit_core::farm::wire::Beat {
            node: "n2".into(),
            incarnation: u64::MAX,
            seq: u64::MAX,
            up: false,
            view: 0,
            owned: vec![[0; 32]],
        };
        let forged = safekit_core::farm::wire::encode(&safekit_core::key::ClusterKey::new([1; 32]), 1, &forged);
        for d in [&b"garbage"[..], &[0u8; 2000][..], &forged[..]] {
            sock.send_to(d, "10.82.0.1:4803").unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.log(0).contains("farm membership datagram dropped (2 so far)"), "{}", tail(&d.log(0), 20));
    let metrics = web_get("/metrics").unwrap_or_default();
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("safekit_farm_datagrams_dropped_total{module=\"farm\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(dropped.is_some_and(|n| n >= 2), "dropped datagrams counted in the metrics: {dropped:?}");
    accepted_once("after forged datagrams", &table(&NODES));
    assert!(d.log(0).contains("farm membership: n1 n2 n3 (group web)"), "{}", tail(&d.log(0), 30));

    // n2 cut off: n1 and n3 take its buckets once it has been silent slost_count × pulse.
    run(&["ip", "netns", "exec", &ns("sw"), "ip", "link", "set", "p1", "down"]).unwrap();
    let took = until_served("n2 cut off", &table(&["n1", "n3"]), Duration::from_secs(20), &d);
    println!("farm daemons: from the cut to every bucket served by n1 and n3: {took:?} (detection 5 × 100 ms, plus probing)");
    accepted_once("n2 cut off", &table(&["n1", "n3"]));

    // Back: n2, alone meanwhile, merges with the others; the buckets are rebalanced.
    run(&["ip", "netns", "exec", &ns("sw"), "ip", "link", "set", "p1", "up"]).unwrap();
    until_served("n2 back", &table(&NODES), Duration::from_secs(20), &d);
    accepted_once("n2 back", &table(&NODES));
    assert!(d.log(1).contains("farm load: 256/256 (group web)"), "n2 alone took every bucket: {}", tail(&d.log(1), 30));

    // n3 stopped: its tables go, its share goes to n1 and n2.
    println!("farm daemons: n3 stop: {}", d.cli(2, &["stop", "-m", "farm"]).trim());
    until_served("n3 stopped", &table(&["n1", "n2"]), Duration::from_secs(20), &d);
    let left = Command::new("ip").args(["netns", "exec", &ns("n3"), "nft", "list", "tables"]).output().unwrap();
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "n3 keeps tables: {}", String::from_utf8_lossy(&left.stdout));
}

#[test]
fn a_directed_dual_stack_farm_whose_scripts_open_its_traffic() {
    let _serial = common::serial();
    if !common::privileged("farm test needs root, iproute2 and nftables (apt-get install iproute2 nftables)", &["ip", "nft"], false) {
        return;
    }
    let _net = Farm::setup("skf53", Vip::No).unwrap();
    farmnet::wait_apps();
    let d =
        started_with(&cluster_dual(), &[Install { name: "farm", id: 1, config: &module_directed(), scripts: &SCRIPTS, on: &[0, 1, 2] }]);
    until_served("directed, 3 daemons UP, IPv4", &table(&NODES), Duration::from_secs(20), &d);
    until_served_over("directed, 3 daemons UP, IPv6", &table(&NODES), Duration::from_secs(20), &d, (true, 80));
    assert!(d.log(0).contains("Action traffic open called by saferpc_send"), "start_both opened it: {}", tail(&d.log(0), 30));
    // The second group's VIP: the chain gives it all to n3, the rule is scoped to it.
    let api = answers_on(API_VIP);
    assert!(api.iter().all(|a| a == "n3"), "group api (powers 1/64/4096) on {API_VIP}: {api:?}");
    println!("farm daemons: group api on {API_VIP}: all 40 connections answered by n3");
    let promisc = Command::new("ip").args(["netns", "exec", &ns("n1"), "ip", "link", "show", "eth0"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&promisc.stdout).contains("PROMISC"), "vmac_directed needs no promiscuous mode");

    // arpreroute: the nodes announce the VIP with their own MACs every arpinterval.
    let garps = gratuitous_arps(VIP4.parse().unwrap(), Duration::from_millis(2500));
    let mut senders = garps.clone();
    senders.sort_unstable();
    senders.dedup();
    println!("farm daemons: arpreroute: {} gratuitous ARPs for {VIP4} in 2.5 s from {} nodes", garps.len(), senders.len());
    assert!(garps.len() >= 3 && senders.len() >= 2, "gratuitous ARPs every second from each node: {garps:02x?}");

    // The bucket maps as SafeKit's vip_if_ctrl -l prints them, and the metrics.
    let maps = d.cli(0, &["-r", "vip_if_ctrl", "-l", "-m", "farm"]);
    println!("farm daemons: n1 `safekit -r vip_if_ctrl -l -m farm`:\n{}", maps.trim_end());
    assert!(maps.contains("farm (group web): traffic open on this node, members n1 n2 n3"), "{maps}");
    assert!(maps.contains("farm (group api): traffic open on this node, members n1 n2 n3"), "{maps}");
    for (i, n) in NODES.iter().enumerate() {
        let owned = table(&NODES).owned_by(n);
        let words = safekit_core::farm::FarmReport::bitmap(&owned);
        // The first group's lines come first.
        let line = maps.lines().find(|l| l.trim_start().starts_with(n)).unwrap_or_else(|| panic!("no line for {n}: {maps}"));
        assert!(line.contains(&words) && line.contains(&format!("{}/256", owned.len())), "{n}'s map: {line}");
        assert_eq!(line.contains("(this node)"), i == 0, "{line}");
    }
    let metrics = web_get("/metrics").unwrap_or_default();
    let n1 = table(&NODES).owned_by("n1").len();
    assert!(metrics.contains(&format!("safekit_farm_buckets{{module=\"farm\",group=\"web\"}} {n1}")), "{metrics}");
    assert!(metrics.contains("safekit_farm_traffic_open{module=\"farm\"} 1"), "{metrics}");
    assert!(metrics.contains("safekit_farm_buckets{module=\"farm\",group=\"api\"} 0"), "n1 serves none of api: {metrics}");
    assert!(maps.contains("256/256"), "n3 holds all of api: {maps}");

    // An administrator closes n2's traffic as its script would: its buckets go to n1 and n3.
    let run_on_n2 = |groups: &str| {
        let out = Command::new(common::exe())
            .args(["-r", "saferpc_send", "vipd", "SETGROUPS"])
            .args(groups.split(' '))
            .env("SAFE", d.dir(1).join("safe"))
            .env("SAFEVAR", d.dir(1).join("var"))
            .env("SAFEMODULE", "farm")
            .output()
            .unwrap();
        assert!(out.status.success(), "SETGROUPS {groups}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run_on_n2("none none none");
    assert_eq!(
        common::rt().block_on(d.status(1)),
        Some(Status::new(State::Up, Readiness::Ready)),
        "closing traffic does not stop the module"
    );
    until_served("n2's traffic closed", &table(&["n1", "n3"]), Duration::from_secs(20), &d);
    run_on_n2("all all all");
    until_served("n2's traffic open again", &table(&NODES), Duration::from_secs(20), &d);
    let bad = d.cli(1, &["-r", "saferpc_send", "vipd", "SETGROUPS", "all", "none", "all"]);
    assert!(bad.contains("all all all (open) or none none none (close)"), "{bad}");

    // Stopped everywhere: stop_both closes, every table goes.
    for i in 0..3 {
        d.cli(i, &["stop", "-m", "farm"]);
    }
    for n in NODES {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let left = Command::new("ip").args(["netns", "exec", &ns(n), "nft", "list", "tables"]).output().unwrap();
            if String::from_utf8_lossy(&left.stdout).trim().is_empty() {
                break;
            }
            assert!(Instant::now() < end, "{n} keeps tables: {}", String::from_utf8_lossy(&left.stdout));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// From the cut of `victim`'s link: when a client whose bucket moves from
/// it to `heir` is first answered by `heir` (new connections every 20 ms).
fn outage(victim: usize, table3: &BucketTable, table2: &BucketTable) -> Duration {
    let probes: Vec<(std::net::IpAddr, String)> = NODES
        .iter()
        .filter(|n| **n != NODES[victim])
        .filter_map(|heir| {
            sources(false)
                .into_iter()
                .find(|s| {
                    let b = bucket_of(&safekit_core::farm::FlowKey::Addr(*s), seed_of(1));
                    table3.owner(b) == Some(NODES[victim]) && table2.owner(b) == Some(heir)
                })
                .map(|s| (s, heir.to_string()))
        })
        .collect();
    let t0 = Instant::now();
    let handles: Vec<_> = probes
        .into_iter()
        .map(|(src, heir)| {
            let file = std::fs::File::open(format!("/run/netns/{}", ns("cl"))).unwrap();
            std::thread::spawn(move || {
                nix::sched::setns(std::os::fd::AsFd::as_fd(&file), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                while t0.elapsed() < Duration::from_secs(20) {
                    let vip: std::net::IpAddr = VIP4.parse().unwrap();
                    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                    let _ = s.set_linger(Some(Duration::ZERO));
                    if s.bind(&std::net::SocketAddr::new(src, 0).into()).is_ok()
                        && s.connect_timeout(&std::net::SocketAddr::new(vip, 80).into(), Duration::from_millis(20)).is_ok()
                    {
                        // A short read timeout: a connection the dead node accepted
                        // just before the cut never answers, and must not hold the probe.
                        let stream: std::net::TcpStream = s.into();
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                        if request(stream).is_ok_and(|a| a == heir) {
                            return t0.elapsed();
                        }
                    }
                }
                Duration::from_secs(20)
            })
        })
        .collect();
    run(&["ip", "netns", "exec", &ns("sw"), "ip", "link", "set", &format!("p{victim}"), "down"]).unwrap();
    handles.into_iter().map(|h| h.join().unwrap()).max().unwrap_or_default()
}

/// Requests per second from `threads` client threads for `secs` against `addr`.
fn rate(addr: std::net::SocketAddr, threads: usize, secs: u64) -> f64 {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t0 = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (done, srcs) = (done.clone(), sources(false));
            let file = std::fs::File::open(format!("/run/netns/{}", ns("cl"))).unwrap();
            std::thread::spawn(move || {
                nix::sched::setns(std::os::fd::AsFd::as_fd(&file), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let mut k = t;
                while t0.elapsed() < Duration::from_secs(secs) {
                    let src = srcs[k % srcs.len()];
                    k += threads;
                    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                    let _ = s.set_linger(Some(Duration::ZERO));
                    if s.bind(&std::net::SocketAddr::new(src, 0).into()).is_ok()
                        && s.connect_timeout(&addr.into(), Duration::from_secs(2)).is_ok()
                    {
                        let stream: std::net::TcpStream = s.into();
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        if request(stream).is_ok() {
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    done.load(std::sync::atomic::Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// The farm benchmark (bench/farm.sh): failover time with SafeKit's default
/// `pulse="100ms" slost_count="10"`, requests/s through the VIP vs one node
/// directly, bucket spread vs power. Prints figures; asserts nothing on them.
#[test]
#[ignore = "benchmark: bash bench/farm.sh"]
fn bench_farm() {
    let _serial = common::serial();
    if !common::privileged("farm benchmark needs root, iproute2 and nftables", &["ip", "nft"], false) {
        return;
    }
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let _net = Farm::setup("skf53", Vip::No).unwrap();
    farmnet::wait_apps();
    let d = started(&MODULE.replace(r#"slost_count="5""#, r#"slost_count="10""#));
    let (t3, t2) = (table(&NODES), table(&["n1", "n3"]));
    until_served("3 daemons UP", &t3, Duration::from_secs(20), &d);
    let mut outages = Vec::new();
    for r in 0..runs {
        let o = outage(1, &t3, &t2);
        println!("BENCH farm failover run {}: {} ms", r + 1, o.as_millis());
        outages.push(o);
        run(&["ip", "netns", "exec", &ns("sw"), "ip", "link", "set", "p1", "up"]).unwrap();
        until_served("n2 back", &t3, Duration::from_secs(30), &d);
        std::thread::sleep(Duration::from_millis(1000 + 37 * u64::try_from(r).unwrap_or(0) % 100));
    }
    outages.sort();
    let ms: Vec<u128> = outages.iter().map(Duration::as_millis).collect();
    println!(
        "SUMMARY farm failover (cable cut of n2, pulse 100 ms, slost_count 10): median {} ms, min {} ms, max {} ms over {runs} runs",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1]
    );
    for threads in [4usize] {
        let vip = rate(std::net::SocketAddr::from(([10, 82, 0, 100], 80)), threads, 5);
        let one = rate(std::net::SocketAddr::from(([10, 82, 0, 1], 80)), threads, 5);
        println!("SUMMARY farm requests/s ({threads} client threads, 5 s, new connection per request): through the VIP (3 nodes) {vip:.0}, one node directly {one:.0}");
    }
    for powers in [[1u32, 1, 1], [2, 1, 1], [1, 64, 4096], [0, 1, 1]] {
        let t = assign(&NODES.iter().zip(powers).map(|(n, p)| Member::new(*n, p)).collect::<Vec<_>>());
        let buckets: Vec<usize> = NODES.iter().map(|n| t.owned_by(n).len()).collect();
        println!("SUMMARY farm spread: powers {powers:?} -> buckets {buckets:?}");
    }
}
