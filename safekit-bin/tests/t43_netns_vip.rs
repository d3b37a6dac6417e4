//! Virtual IP placement and announcements in network namespaces (root
//! only): `safekit config` applies a changed module to a stopped module and
//! is refused on a running one; `where="one_side"` makes the VIP (IPv4 and
//! IPv6) the source of the primary's outgoing connections; an IPv6 VIP is announced with an
//! unsolicited neighbour advertisement that moves the client's neighbour
//! entry to the new primary; `tcpreset="on"` resets VIP-sourced connections
//! when the VIP leaves; "called by root" names the CLI's user.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{exe, rt, safekit};
use safekit_bin::demo::Demo;
use safekit_core::engine::{CommandKind, State};

const LONG: Duration = Duration::from_secs(30);

fn privileged() -> bool {
    common::privileged("network-namespace VIP test needs root, iproute2 (ip, ss) and ping", &["ip", "ss", "ping"], false)
}

/// Runs `f` on a thread moved into network namespace `ns`; sockets it
/// makes stay in that namespace.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn out(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

fn mac(ns: &str) -> String {
    out(&["ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/address"]).trim().to_string()
}

/// The client's neighbour entry for the IPv6 VIP ("lladdr …").
fn client_neighbour() -> String {
    out(&["ip", "-n", &Demo::client_ns(), "-6", "neigh", "show", "fd77::100"])
}

#[test]
fn config_apply_one_side_ipv6_announcement_and_tcpreset() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        for (i, addr) in [(Some(0), "fd77::1/64"), (Some(1), "fd77::2/64"), (None, "fd77::10/64")] {
            let ns = i.map_or_else(Demo::client_ns, |i| demo.node_ns(i).to_string());
            assert!(Command::new("ip").args(["-n", &ns, "addr", "add", addr, "dev", "eth0", "nodad"]).status().unwrap().success());
        }
        demo.start_daemon(0, &exe()).unwrap();
        demo.start_daemon(1, &exe()).unwrap();
        demo.wait_daemon(0, LONG).await.unwrap();
        demo.wait_daemon(1, LONG).await.unwrap();

        // The daemons run the demo module as installed; the new VIP
        // settings only count once `safekit config` applied them.
        for i in 0..2 {
            let conf = demo.node_dir(i).join("safe/modules/demo/conf/userconfig.xml");
            let text = std::fs::read_to_string(&conf).unwrap();
            let text = text.replace("<vip>", "<vip tcpreset=\"on\">").replace(
                r#"<virtual_addr addr="10.77.0.100" where="one_side_alias" check="off"/>"#,
                r#"<virtual_addr addr="10.77.0.100" where="one_side" check="off"/>
          <virtual_addr addr="fd77::100" where="one_side" check="off"/>"#,
            );
            std::fs::write(&conf, text).unwrap();
            let (code, said) = safekit(&demo, i, &["config", "-m", "demo"]);
            assert_eq!(code, 0, "{said}");
            assert!(said.contains("module demo: configuration applied"), "{said}");
        }
        demo.command(0, CommandKind::Prim { fullsync: false }).await.unwrap();
        demo.wait_state(0, State::Alone, LONG).await.unwrap();
        demo.command(1, CommandKind::Second { fullsync: false }).await.unwrap();
        demo.wait_state(1, State::Second, LONG).await.unwrap();
        demo.wait_state(0, State::Prim, LONG).await.unwrap();
        // A running module keeps its configuration.
        let (code, said) = safekit(&demo, 0, &["config", "-m", "demo"]);
        assert_eq!(code, 1, "{said}");
        assert!(said.contains("module demo is PRIM Ready: stop it first (safekit stop -m demo)"), "{said}");
        assert!(demo.log(0, 200).await.iter().any(|l| l.ends_with("Action prim called by root")), "{:#?}", demo.log(0, 200).await);

        // one_side: node1's connections leave from the VIP.
        let route = out(&["ip", "-n", demo.node_ns(0), "route", "get", "10.77.0.10"]);
        assert!(route.contains("src 10.77.0.100"), "{route}");
        let route6 = out(&["ip", "-n", demo.node_ns(0), "-6", "route", "get", "fd77::10"]);
        assert!(route6.contains("src fd77::100"), "{route6}");
        // IPv6 VIP on node1; the client learns node1's MAC for it.
        let ping = out(&["ip", "netns", "exec", &Demo::client_ns(), "ping", "-6", "-c", "1", "-W", "5", "fd77::100"]);
        assert!(ping.contains("1 received"), "{ping}");
        let (mac1, mac2) = (mac(demo.node_ns(0)), mac(demo.node_ns(1)));
        assert!(client_neighbour().contains(&mac1), "{} vs node1 {mac1}", client_neighbour());

        // A connection node1 opened from the VIP to the client.
        let listener = in_netns(&Demo::client_ns(), || TcpListener::bind("10.77.0.10:9000").unwrap());
        let from_node1 = in_netns(demo.node_ns(0), || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::from(([10, 77, 0, 100], 0)).into()).unwrap();
            s.connect(&SocketAddr::from(([10, 77, 0, 10], 9000)).into()).unwrap();
            TcpStream::from(s)
        });
        let (mut at_client, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip().to_string(), "10.77.0.100");
        at_client.set_read_timeout(Some(LONG)).unwrap();
        // And one from the IPv6 VIP.
        let listener6 = in_netns(&Demo::client_ns(), || TcpListener::bind("[fd77::10]:9001").unwrap());
        let from_node1_v6 = in_netns(demo.node_ns(0), || {
            let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
            s.bind(&"[fd77::100]:0".parse::<SocketAddr>().unwrap().into()).unwrap();
            s.connect(&"[fd77::10]:9001".parse::<SocketAddr>().unwrap().into()).unwrap();
            TcpStream::from(s)
        });
        let (mut at_client6, _) = listener6.accept().unwrap();
        at_client6.set_read_timeout(Some(LONG)).unwrap();

        // node1 stops: tcpreset resets the connection; node2 takes the VIPs
        // and announces the IPv6 one.
        demo.command(0, CommandKind::Stop).await.unwrap();
        let mut buf = [0u8; 16];
        let read = at_client.read(&mut buf);
        assert_eq!(read.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset), "the client's connection was not reset");
        let read = at_client6.read(&mut buf);
        assert_eq!(read.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset), "the IPv6 connection was not reset");
        drop((from_node1, from_node1_v6));
        demo.wait_state(1, State::Alone, LONG).await.unwrap();
        let end = Instant::now() + LONG;
        while !client_neighbour().contains(&mac2) {
            assert!(Instant::now() < end, "the client still maps fd77::100 to {} (node2 is {mac2})", client_neighbour());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // node1's routes are back to their own source, none lost.
        let route = out(&["ip", "-n", demo.node_ns(0), "route", "get", "10.77.0.10"]);
        assert!(route.contains("src 10.77.0.1 "), "{route}");
        let routes = out(&["ip", "-n", demo.node_ns(0), "route"]);
        assert!(routes.contains("10.77.0.0/24 dev eth0"), "{routes}");
        let route6 = out(&["ip", "-n", demo.node_ns(0), "-6", "route", "get", "fd77::10"]);
        assert!(route6.contains("src fd77::1 "), "{route6}");
        let routes6 = out(&["ip", "-n", demo.node_ns(0), "-6", "route"]);
        assert!(routes6.contains("fd77::/64 dev eth0"), "{routes6}");
    });
}
