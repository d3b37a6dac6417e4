//! The web service on a real two-node cluster (network namespaces):
//! thousands of idle connections and a stream of requests on the
//! primary's port 9010 cost its peer no heartbeat and leave the service
//! answering; then, from one node, the proxy and `safekit -H` reach both.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{pair, rt, safekit_in_ns};
use safekit_bin::demo::{in_client_ns, web_call, web_get, Demo};
use safekit_core::engine::State;

fn privileged() -> bool {
    common::privileged("network-namespace test needs root, iproute2 and curl", &["ip", "curl"], false)
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

/// Logs in on node `i` from the client: (cookie, CSRF token).
fn login(demo: &Demo, i: usize) -> (String, String) {
    safekit_core::daemon::web::accounts::Accounts::new(&demo.node_dir(i).join("safe/web/conf"))
        .set_password("admin", "admin-password")
        .unwrap();
    let form = "httpd_username=admin&httpd_password=admin-password&login=Login";
    let (code, head, body) =
        web_call(i, "POST", "/login", &[("Content-Type", "application/x-www-form-urlencoded")], form).expect("node answers");
    assert_eq!(code, 200, "{head}{body}");
    let cookie = head.lines().find_map(|l| l.strip_prefix("set-cookie: ")).and_then(|c| c.split(';').next()).unwrap().to_string();
    let csrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"].as_str().unwrap().to_string();
    (cookie, csrf)
}

/// The proxy of node1 and `safekit -H` run on node2 as the caller.
async fn one_node_reaches_both(demo: &Demo) {
    let (cookie, csrf) = login(demo, 0);
    let auth = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let (code, _, body) = web_call(0, "GET", "/api/v1.0/nodes/node2/modules/demo", &auth, "").expect("node1 answers");
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"]["state"], "Second", "node2's module, through node1");
    let off = web_call(0, "POST", "/api/v1.0/nodes/node2/modules/demo/actions/failover", &auth, r#"{"on":false}"#);
    assert_eq!(off.as_ref().map(|r| r.0), Some(204), "{off:?}");
    let log2 = demo.log(1, 300).await;
    assert!(log2.iter().any(|l| l.ends_with("Action failover called by admin@10.77.0.10 via node1")), "{log2:?}");
    let (code, _, body) = web_call(0, "GET", "/api/v1.0/nodes/*/modules/demo", &auth, "").expect("node1 answers");
    assert_eq!(code, 200, "{body}");
    let states: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} {}", a["node"].as_str().unwrap_or("?"), a["body"]["status"]["state"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(states, ["node1 Prim", "node2 Second"], "{body}");

    // What node1's module left: the userlog of its start_prim run, and its timeline.
    let (code, _, body) = web_call(0, "GET", "/api/v1.0/modules/demo/userlogs", &auth, "").expect("node1 answers");
    assert_eq!(code, 200, "{body}");
    let logs: serde_json::Value = serde_json::from_str(&body).unwrap();
    let run = logs.as_array().unwrap().iter().find(|u| u["script"] == "start_prim").unwrap_or_else(|| panic!("{body}"));
    let path = format!("/api/v1.0/modules/demo/userlogs/{}", run["file"].as_str().unwrap());
    assert_eq!(web_call(0, "GET", &path, &auth, "").map(|r| r.0), Some(200));
    let (code, _, body) = web_call(0, "GET", "/api/v1.0/nodes/node1/modules/demo/timeline", &auth, "").expect("node1 answers");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""side":"local","state":"PRIM Ready""#) && body.contains(r#""side":"remote","state":"SECOND Ready""#),
        "{body}"
    );

    // safekit -H from node1: the command runs on each node, as root@node1.
    let (code, out) = safekit_in_ns(demo, 0, &["-H", "*", "state", "-m", "demo"]);
    assert_eq!(code, 0, "{out}");
    let n1 = out.find("node1").unwrap_or(usize::MAX);
    let n2 = out.find("node2").unwrap_or(usize::MAX);
    assert!(n1 < n2 && out[n1..n2].contains("PRIM") && out[n2..].contains("SECOND"), "{out}");
    let (code, out) = safekit_in_ns(demo, 0, &["-H", "node2", "failover", "on", "-m", "demo"]);
    assert_eq!(code, 0, "{out}");
    let log2 = demo.log(1, 300).await;
    assert!(log2.iter().any(|l| l.ends_with("Action failover called by root@node1")), "{log2:?}");
    let (code, out) = safekit_in_ns(demo, 0, &["-H", "node3", "state"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no node node3"), "{out}");
}

/// A configuration applied to both nodes through node1: refused while
/// the module runs, applied (and kept) on both once stopped.
async fn configuration_applied_to_both_nodes(demo: &Demo) {
    let (cookie, csrf) = login(demo, 0);
    let auth = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str()), ("Content-Type", "application/json")];
    let conf = std::fs::read_to_string(demo.node_dir(0).join("safe/modules/demo/conf/userconfig.xml")).unwrap();
    let changed = conf.replace(r#"nicestoptimeout="10s""#, r#"nicestoptimeout="12s""#);
    assert_ne!(conf, changed, "the demo's userconfig.xml has nicestoptimeout=\"10s\"");
    let body = serde_json::json!({ "files": { "conf/userconfig.xml": changed, "bin/start_both": "#!/bin/sh\nexit 0\n" } }).to_string();
    let per_node = |answer: Option<(u16, String, String)>| -> Vec<(String, u64)> {
        let (code, _, body) = answer.expect("node1 answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["node"].as_str().unwrap_or("?").to_string(), a["status"].as_u64().unwrap_or(0)))
            .collect()
    };
    let running = per_node(web_call(0, "PUT", "/api/v1.0/nodes/*/config/modules/demo", &auth, &body));
    assert_eq!(running, [("node1".to_string(), 409), ("node2".to_string(), 409)], "refused while the module runs");
    let (code, out) = safekit_in_ns(demo, 0, &["-H", "node2,node1", "stop", "-m", "demo"]);
    assert_eq!(code, 0, "{out}");
    common::wait_status(demo, 0, State::Stop).await;
    common::wait_status(demo, 1, State::Stop).await;
    let applied = per_node(web_call(0, "PUT", "/api/v1.0/nodes/*/config/modules/demo", &auth, &body));
    assert_eq!(applied, [("node1".to_string(), 200), ("node2".to_string(), 200)]);
    for i in 0..2 {
        let dir = demo.node_dir(i).join("safe/modules/demo");
        assert_eq!(std::fs::read_to_string(dir.join("conf/userconfig.xml")).unwrap(), changed, "node{}", i + 1);
        assert!(dir.join("bin/start_both").exists(), "node{}", i + 1);
        let log = demo.log(i, 300).await;
        assert!(log.iter().any(|l| l.ends_with("Configuration applied by admin@10.77.0.10 via node1")), "{log:?}");
    }
    let (code, _, kept) = web_call(0, "GET", "/api/v1.0/nodes/node2/config/modules/demo/history", &auth, "").expect("answers");
    assert_eq!(code, 200, "{kept}");
    assert!(kept.contains("admin@10.77.0.10 via node1"), "{kept}");
}

/// curl from the client's namespace: (exit code, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &Demo::client_ns(), "curl", "-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

/// HTTPS with the cluster's CA: made on node1, node2's certificate from
/// node1, both daemons restarted; a real client (curl) checks the chain.
async fn https_with_the_cluster_ca(demo: &mut Demo) {
    // node2's module starts with its daemon from now on (set from node1).
    let (code, out) = safekit_in_ns(demo, 0, &["-H", "node2", "boot", "on", "-m", "demo"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("demo: boot on"), "{out}");
    let (code, out) = safekit_in_ns(demo, 0, &["initssl", "ca"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = safekit_in_ns(demo, 1, &["initssl", "req", "--ca", "node1"]);
    assert_eq!(code, 0, "{out}");
    for i in 0..2 {
        demo.stop_daemon(i);
        demo.start_daemon(i, &common::exe()).unwrap();
        demo.wait_daemon(i, Duration::from_secs(30)).await.unwrap();
    }
    let ca = demo.node_dir(0).join("safe/web/conf/ssl/ca.crt");
    let ca = ca.to_str().unwrap();
    for node in ["10.77.0.1", "10.77.0.2"] {
        let (code, out) = curl(&["--cacert", ca, "-w", " %{http_code}", &format!("https://{node}:9453/api/v1.0/session")]);
        assert_eq!(code, 0, "{out}");
        assert!(out.ends_with(" 401") && out.contains("log in first"), "{node}: {out}");
    }
    let (code, out) = curl(&["https://10.77.0.1:9453/api/v1.0/session"]);
    assert_ne!(code, 0, "a client without the cluster's CA does not trust the node: {out}");
    let (_, out) = curl(&["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://10.77.0.1:9010/api/v1.0/modules"]);
    assert_eq!(out, "308 https://10.77.0.1:9453/api/v1.0/modules");
    let (_, out) = curl(&["-o", "/dev/null", "-w", "%{http_code}", "http://10.77.0.1:9010/metrics"]);
    assert_eq!(out, "200", "metrics stay on 9010");
    // A login over HTTPS: the session cookie is Secure.
    safekit_core::daemon::web::accounts::Accounts::new(&demo.node_dir(1).join("safe/web/conf"))
        .set_password("admin", "admin-password")
        .unwrap();
    let (code, out) =
        curl(&["--cacert", ca, "-i", "-d", "httpd_username=admin&httpd_password=admin-password", "https://10.77.0.2:9453/login"]);
    assert_eq!(code, 0, "{out}");
    let cookie = out.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_default().to_string();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{out}");
    common::wait_log(demo, 1, "Action start called at boot time").await;
    let (code, out) = safekit_in_ns(demo, 1, &["boot", "status", "-m", "demo"]);
    assert_eq!((code, out.trim()), (0, "demo: boot on"), "{out}");
    // safekit -H over HTTPS.
    let (code, out) = safekit_in_ns(demo, 0, &["-H", "*", "state"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("node1") && out.contains("node2") && out.lines().filter(|l| l.starts_with("demo")).count() == 2, "{out}");
}

#[test]
fn the_web_service_under_a_flood_and_across_both_nodes() {
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
        one_node_reaches_both(&demo).await;
        configuration_applied_to_both_nodes(&demo).await;
        https_with_the_cluster_ca(&mut demo).await;
    });
}
