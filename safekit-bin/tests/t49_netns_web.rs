//! The web service under load on a real two-node cluster (network
//! namespaces): thousands of idle connections and a stream of requests on
//! the primary's port 9010 cost its peer no heartbeat and leave the
//! service answering.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{pair, rt};
use safekit_bin::demo::{in_client_ns, web_get, Demo};
use safekit_core::engine::State;

fn privileged() -> bool {
    common::privileged("network-namespace test needs root and iproute2", &["ip"], false)
}

/// From the client's namespace: `idle` silent connections to node1:9010
/// held for `hold`, while one thread sends requests one after another.
/// Returns (connections made, requests answered 200).
fn flood(idle: usize, hold: Duration) -> (usize, usize) {
    let addr = SocketAddr::from(([10, 77, 0, 1], 9010));
    let open = in_client_ns(move || {
        let mut held = Vec::new();
        for _ in 0..idle {
            if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                held.push(s);
            }
        }
        let n = held.len();
        std::thread::sleep(hold);
        n
    });
    let ask = in_client_ns(move || {
        let end = Instant::now() + hold;
        let mut ok = 0;
        // Bounded by time and count.
        for _ in 0..100_000 {
            if Instant::now() >= end {
                break;
            }
            let answered = (|| -> Option<bool> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
                let mut r = String::new();
                s.read_to_string(&mut r).ok()?;
                Some(r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
            })();
            ok += usize::from(answered == Some(true));
        }
        ok
    });
    (open.join().ok().flatten().unwrap_or(0), ask.join().ok().flatten().unwrap_or(0))
}

#[test]
fn a_flooded_web_service_costs_the_peer_no_heartbeat() {
    let _g = common::serial();
    if !privileged() {
        return;
    }
    // The test process holds the idle connections: allow it enough descriptors.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 8192, 8192);
    rt().block_on(async {
        let mut demo = Demo::setup().unwrap();
        pair(&mut demo, 0).await;
        let (idle, answered) = tokio::task::spawn_blocking(|| flood(2_000, Duration::from_secs(8))).await.unwrap();
        println!("flood: {idle} idle connections held, {answered} requests answered meanwhile");
        assert!(idle >= 1_000, "the flood did not happen ({idle} connections)");
        assert!(answered > 0, "the web service stopped answering under the flood");
        let log2 = demo.log(1, 500).await;
        assert!(!log2.iter().any(|l| l.contains("Resource heartbeat.") && l.ends_with("set to down by heart")), "{log2:?}");
        demo.wait_state(0, State::Prim, Duration::from_secs(5)).await.unwrap();
        demo.wait_state(1, State::Second, Duration::from_secs(5)).await.unwrap();
        // After the flood, the service answers at once.
        assert_eq!(web_get(0, "/var/modules/demo/ready.txt").map(|r| r.0), Some(200));
    });
}
