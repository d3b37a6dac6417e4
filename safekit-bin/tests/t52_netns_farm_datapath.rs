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

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use safekit_core::config::{LbFilter, LbProto};
use safekit_core::farm::{assign, bucket_of, BucketTable, FlowKey, Handover, Member};
use safekit_core::linux::farm::{default_vmac, FarmRules, Rule};

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const PREFIX: &str = "skf52";
const VIP4: &str = "10.82.0.100";
const VIP6: &str = "fd00:82::100";
const SEED: u32 = 0x5afe_0052;

fn ns(name: &str) -> String {
    format!("{PREFIX}-{name}")
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn nx(name: &str, args: &[&str]) -> Result<(), String> {
    let n = ns(name);
    let mut v = vec!["ip", "netns", "exec", n.as_str()];
    v.extend_from_slice(args);
    run(&v)
}

/// The namespaces, their links and the applications; removed on drop,
/// also when the test fails.
struct Farm {
    apps: Vec<Child>,
}

impl Farm {
    fn cleanup() {
        for n in NODES.iter().chain(&["cl", "sw"]) {
            let _ = run(&["ip", "netns", "del", &ns(n)]);
        }
    }

    fn setup() -> Result<Self, String> {
        Self::cleanup();
        let mut farm = Self { apps: Vec::new() };
        run(&["ip", "netns", "add", &ns("sw")])?;
        nx("sw", &["ip", "link", "add", "br0", "type", "bridge"])?;
        nx("sw", &["ip", "link", "set", "br0", "up"])?;
        nx("sw", &["ip", "link", "set", "lo", "up"])?;
        for (i, n) in NODES.iter().chain(&["cl"]).enumerate() {
            let name = ns(n);
            run(&["ip", "netns", "add", &name])?;
            let port = format!("p{i}");
            nx(n, &["ip", "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &ns("sw")])?;
            nx("sw", &["ip", "link", "set", &port, "master", "br0"])?;
            nx("sw", &["ip", "link", "set", &port, "up"])?;
            let mac = format!("02:82:00:00:00:0{}", i + 1);
            nx(n, &["ip", "link", "set", "eth0", "address", &mac])?;
            nx(n, &["ip", "link", "set", "lo", "up"])?;
            nx(n, &["ip", "link", "set", "eth0", "up"])?;
        }
        // The client: 40 source addresses of each family.
        nx("cl", &["ip", "addr", "add", "10.82.0.10/24", "dev", "eth0"])?;
        nx("cl", &["ip", "-6", "addr", "add", "fd00:82::10/64", "dev", "eth0", "nodad"])?;
        for h in 50..90 {
            nx("cl", &["ip", "addr", "add", &format!("10.82.0.{h}/24"), "dev", "eth0"])?;
            nx("cl", &["ip", "-6", "addr", "add", &format!("fd00:82::{h}/64"), "dev", "eth0", "nodad"])?;
        }
        // The nodes: the VIP on each (IPv6: no DAD, never a source), promiscuous,
        // ARP answers and announcements only for their own addresses.
        for (i, n) in NODES.iter().enumerate() {
            nx(n, &["ip", "addr", "add", &format!("10.82.0.{}/24", i + 1), "dev", "eth0"])?;
            nx(n, &["ip", "-6", "addr", "add", &format!("fd00:82::{}/64", i + 1), "dev", "eth0", "nodad"])?;
            nx(n, &["ip", "addr", "add", &format!("{VIP4}/32"), "dev", "eth0"])?;
            nx(n, &["ip", "-6", "addr", "add", &format!("{VIP6}/128"), "dev", "eth0", "nodad", "preferred_lft", "0"])?;
            nx(n, &["ip", "link", "set", "eth0", "promisc", "on"])?;
            for k in ["all", "eth0"] {
                nx(n, &["sysctl", "-qw", &format!("net.ipv4.conf.{k}.arp_announce=2")])?;
                nx(n, &["sysctl", "-qw", &format!("net.ipv4.conf.{k}.arp_ignore=1")])?;
            }
            let app = Command::new("ip")
                .args(["netns", "exec", &ns(n), "env", &format!("SAFEKIT_NODE={n}")])
                .arg(common::exe())
                .args(["demo-app", "--port", "80"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("demo-app: {e}"))?;
            farm.apps.push(app);
        }
        Ok(farm)
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        for a in &mut self.apps {
            let _ = a.kill();
            let _ = a.wait();
        }
        Self::cleanup();
    }
}

/// Runs `f` on a thread inside namespace `name`.
fn in_ns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/run/netns/{}", ns(name))).expect("namespace");
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

fn rules(node: usize, filter: LbFilter) -> FarmRules {
    FarmRules {
        table: "safekit_farm52".into(),
        device: "eth0".into(),
        real_mac: [0x02, 0x82, 0, 0, 0, u8::try_from(node + 1).unwrap()],
        vmac: default_vmac(VIP4.parse().unwrap()),
        vips: vec![VIP4.parse().unwrap(), VIP6.parse().unwrap()],
        rules: vec![Rule { port: Some(80), proto: LbProto::Tcp, filter }],
        seed: SEED,
    }
}

fn install(table: &BucketTable, filter: LbFilter) {
    for (i, n) in NODES.iter().enumerate() {
        let (r, owned) = (rules(i, filter), table.owned_by(n));
        in_ns(n, move || r.install(&owned)).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
}

/// Every node's accepted-connections counter.
fn accepted() -> Vec<u64> {
    NODES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let r = rules(i, LbFilter::OnAddr);
            in_ns(n, move || r.counters()).unwrap_or_else(|e| panic!("{n}: {e}")).0
        })
        .collect()
}

/// Two-phase handover from `old` to `new` on every node.
fn hand_over(old: &BucketTable, new: &BucketTable, filter: LbFilter, skip: Option<&str>) {
    let plans: Vec<(usize, &str, Handover)> =
        NODES.iter().enumerate().filter(|(_, n)| Some(**n) != skip).map(|(i, n)| (i, *n, Handover::between(old, new, n))).collect();
    for phase in [0, 1] {
        for (i, n, h) in &plans {
            let (r, owned) = (rules(*i, filter), if phase == 0 { h.after_release() } else { h.after_acquire() });
            in_ns(n, move || r.set_owned(&owned)).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }
}

fn sources(v6: bool) -> Vec<IpAddr> {
    (50..90).map(|h| if v6 { format!("fd00:82::{h}") } else { format!("10.82.0.{h}") }.parse().unwrap()).collect()
}

/// Connects from `src` to the VIP; the connection and its local address.
fn connect(src: IpAddr) -> Result<(std::net::TcpStream, SocketAddr), String> {
    let vip: IpAddr = if src.is_ipv6() { VIP6.parse().unwrap() } else { VIP4.parse().unwrap() };
    let domain = if src.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
    s.bind(&SocketAddr::new(src, 0).into()).map_err(|e| format!("bind {src}: {e}"))?;
    s.connect_timeout(&SocketAddr::new(vip, 80).into(), Duration::from_secs(4)).map_err(|e| format!("{src}: {e}"))?;
    let local = s.local_addr().map_err(|e| e.to_string())?.as_socket().ok_or("no local address")?;
    let stream: std::net::TcpStream = s.into();
    stream.set_read_timeout(Some(Duration::from_secs(6))).map_err(|e| e.to_string())?;
    Ok((stream, local))
}

fn request(mut s: std::net::TcpStream) -> Result<String, String> {
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut r = String::new();
    s.read_to_string(&mut r).map_err(|e| format!("read: {e}"))?;
    r.rsplit("\r\n\r\n").next().map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).ok_or_else(|| format!("no body in {r:?}"))
}

fn key(local: SocketAddr, filter: LbFilter) -> FlowKey {
    match filter {
        LbFilter::OnPort => FlowKey::AddrPort(local.ip(), local.port()),
        _ => FlowKey::Addr(local.ip()),
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

#[test]
fn three_nodes_share_the_vip_by_buckets_and_hand_them_over() {
    let _serial = common::serial();
    if !common::privileged(
        "farm test needs root, iproute2 and nftables (apt-get install iproute2 nftables)",
        &["ip", "nft", "sysctl"],
        false,
    ) {
        return;
    }
    let _farm = Farm::setup().unwrap();
    // The applications listen before the first probe.
    in_ns("cl", || {
        for n in 1..=3 {
            let a = SocketAddr::from(([10, 82, 0, n], 80));
            let end = std::time::Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_err() {
                assert!(std::time::Instant::now() < end, "demo-app on {a} does not answer");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });

    let three = assign(&view([1, 1, 1]));
    install(&three, LbFilter::OnAddr);
    let shares = check("on_addr IPv4, 3 nodes", &three, LbFilter::OnAddr, false);
    assert!(shares.iter().all(|n| *n > 0), "40 clients spread over the three nodes: {shares:?}");
    check("on_addr IPv6, 3 nodes", &three, LbFilter::OnAddr, true);
    install(&three, LbFilter::OnPort);
    check("on_port IPv4, 3 nodes", &three, LbFilter::OnPort, false);
    check("on_port IPv6, 3 nodes", &three, LbFilter::OnPort, true);
    install(&three, LbFilter::OnAddr);

    // n2 cut off: its buckets handed over to n1 and n3 (n2 itself does not answer).
    run(&["ip", "netns", "exec", &ns("sw"), "ip", "link", "set", "p1", "down"]).unwrap();
    let two = assign(&[Member::new("n1", 1), Member::new("n3", 1)]);
    hand_over(&three, &two, LbFilter::OnAddr, Some("n2"));
    let shares = check("n2 cut off, its buckets on n1 and n3", &two, LbFilter::OnAddr, false);
    assert_eq!(shares[1], 0);

    // n2 back, empty; the table rebalanced while a connection whose bucket
    // moves to n2 is open on its old owner: it finishes there.
    in_ns("n2", || rules(1, LbFilter::OnAddr).set_owned(&[])).unwrap();
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
        let r = rules(i, LbFilter::OnAddr);
        in_ns(n, move || r.remove()).unwrap();
        let left = Command::new("ip").args(["netns", "exec", &ns(n), "nft", "list", "tables"]).output().unwrap();
        assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "{n} keeps tables: {}", String::from_utf8_lossy(&left.stdout));
    }
}
