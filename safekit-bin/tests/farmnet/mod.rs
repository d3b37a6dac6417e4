//! Three farm nodes and a client in network namespaces joined by a
//! bridge (`<prefix>-n1..n3`, `-cl`, `-sw`; 10.82.0.0/24 and
//! fd00:82::/64 with the client on .10 and 40 more source addresses
//! .50–.89), the demo application answering with its node's name on port
//! 80 of each node, and the client's side of a connection. Shared by the
//! farm data-path test and the farm daemon test (each with its own prefix).

#![allow(dead_code)] // each test uses part of it

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use safekit_core::config::LbFilter;
use safekit_core::farm::FlowKey;

pub(crate) mod daemons;

pub(crate) const NODES: [&str; 3] = ["n1", "n2", "n3"];
pub(crate) const VIP4: &str = "10.82.0.100";
pub(crate) const VIP6: &str = "fd00:82::100";

static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub(crate) fn ns(name: &str) -> String {
    format!("{}-{name}", PREFIX.get().map_or("skf", String::as_str))
}

pub(crate) fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub(crate) fn nx(name: &str, args: &[&str]) -> Result<(), String> {
    let n = ns(name);
    let mut v = vec!["ip", "netns", "exec", n.as_str()];
    v.extend_from_slice(args);
    run(&v)
}

/// Whether the nodes carry the VIP, set up by hand (what a farm daemon does itself).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vip {
    /// Not set: a daemon will.
    No,
    /// On every node, promiscuous (vmac_invisible).
    Invisible,
    /// On every node, each answering with its own MAC (vmac_directed).
    Directed,
}

/// The namespaces, their links and the applications; removed on drop,
/// also when the test fails.
pub(crate) struct Farm {
    apps: Vec<Child>,
}

impl Farm {
    pub(crate) fn cleanup() {
        for n in NODES.iter().chain(&["cl", "sw"]) {
            let _ = run(&["ip", "netns", "del", &ns(n)]);
        }
    }

    /// The namespaces under `prefix`, the nodes made ready for the VIP as `vip` says.
    pub(crate) fn setup(prefix: &str, vip: Vip) -> Result<Self, String> {
        let _ = PREFIX.set(prefix.to_string());
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
            if vip != Vip::No {
                nx(n, &["ip", "addr", "add", &format!("{VIP4}/32"), "dev", "eth0"])?;
                nx(n, &["ip", "-6", "addr", "add", &format!("{VIP6}/128"), "dev", "eth0", "nodad", "preferred_lft", "0"])?;
            }
            if vip == Vip::Invisible {
                nx(n, &["ip", "link", "set", "eth0", "promisc", "on"])?;
            }
            if vip != Vip::No {
                for k in ["all", "eth0"] {
                    nx(n, &["sysctl", "-qw", &format!("net.ipv4.conf.{k}.arp_announce=2")])?;
                    nx(n, &["sysctl", "-qw", &format!("net.ipv4.conf.{k}.arp_ignore=1")])?;
                }
            }
            let app = Command::new("ip")
                .args(["netns", "exec", &ns(n), "env", &format!("SAFEKIT_NODE={n}")])
                .arg(super::common::exe())
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
pub(crate) fn in_ns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/run/netns/{}", ns(name))).expect("namespace");
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

pub(crate) fn sources(v6: bool) -> Vec<IpAddr> {
    (50..90).map(|h| if v6 { format!("fd00:82::{h}") } else { format!("10.82.0.{h}") }.parse().unwrap()).collect()
}

/// Connects from `src` to the VIP's port 80; the connection and its local address.
pub(crate) fn connect(src: IpAddr) -> Result<(std::net::TcpStream, SocketAddr), String> {
    connect_port(src, 80)
}

/// Connects from `src` to the VIP's `port`; the connection and its local address.
pub(crate) fn connect_port(src: IpAddr, port: u16) -> Result<(std::net::TcpStream, SocketAddr), String> {
    let vip: IpAddr = if src.is_ipv6() { VIP6.parse().unwrap() } else { VIP4.parse().unwrap() };
    let domain = if src.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
    s.bind(&SocketAddr::new(src, 0).into()).map_err(|e| format!("bind {src}: {e}"))?;
    s.connect_timeout(&SocketAddr::new(vip, port).into(), Duration::from_secs(4)).map_err(|e| format!("{src}: {e}"))?;
    let local = s.local_addr().map_err(|e| e.to_string())?.as_socket().ok_or("no local address")?;
    let stream: std::net::TcpStream = s.into();
    stream.set_read_timeout(Some(Duration::from_secs(6))).map_err(|e| e.to_string())?;
    Ok((stream, local))
}

pub(crate) fn request(mut s: std::net::TcpStream) -> Result<String, String> {
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut r = String::new();
    s.read_to_string(&mut r).map_err(|e| format!("read: {e}"))?;
    r.rsplit("\r\n\r\n").next().map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).ok_or_else(|| format!("no body in {r:?}"))
}

pub(crate) fn key(local: SocketAddr, filter: LbFilter) -> FlowKey {
    match filter {
        LbFilter::OnPort => FlowKey::AddrPort(local.ip(), local.port()),
        _ => FlowKey::Addr(local.ip()),
    }
}

/// Waits until the demo application answers on every node's own address.
pub(crate) fn wait_apps() {
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
}
