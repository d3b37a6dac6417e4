//! Two nodes' web services for real on loopback (127.0.0.2 and 127.0.0.3,
//! one port): node calls are authentic and used once, the proxy reaches
//! the other node as the logged-in user with that user's role, a fan-out
//! answers per node, and `safekit -H`'s requests run on the other node.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::Method;

use super::signed::{call, Call, OnBehalf};
use super::tests::{call as http, login, start_on};
use crate::daemon::control::{Request, Response};
use crate::engine::{CommandKind, Readiness, State, Status};
use crate::key::ClusterKey;

const CLUSTER: &str = r#"<cluster><lans><lan name="default"><node name="node1" addr="127.0.0.2"/><node name="node2" addr="127.0.0.3"/></lan></lans></cluster>"#;

/// `n` ports free on both 127.0.0.2 and 127.0.0.3.
pub(super) fn free_ports(n: usize) -> Vec<u16> {
    let mut found = Vec::new();
    for _ in 0..100 {
        let a = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.3", port)).is_ok() && !found.contains(&port) {
            found.push(port);
            if found.len() == n {
                return found;
            }
        }
    }
    panic!("not {n} ports free on both 127.0.0.2 and 127.0.0.3 after 100 tries");
}

struct Two {
    conf: std::path::PathBuf,
    node1: SocketAddr,
    node2: SocketAddr,
    recorder2: std::sync::Arc<super::tests::Recorder>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Two {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_dir_all(&self.conf);
    }
}

/// node1 with users admin (Admin) and op (Monitor); node2 with nobody.
async fn two(test: &str) -> Two {
    let conf = std::env::temp_dir().join(format!("safekit-web-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&conf);
    let accounts = super::accounts::Accounts::new(&conf.join("1"));
    accounts.set_password("admin", "admin-password").unwrap();
    accounts.set_password("op", "operator-password").unwrap();
    std::fs::write(conf.join("1").join("group.conf"), "Admin : admin\nMonitor : op\n").unwrap();
    let port = free_ports(1)[0];
    let ready = Status::new(State::Alone, Readiness::Ready);
    let (node1, _tx1, t1, _) = start_on(ready, &conf.join("1"), "node1", SocketAddr::from(([127, 0, 0, 2], port)), CLUSTER).await;
    let (node2, tx2, t2, recorder2) = start_on(ready, &conf.join("2"), "node2", SocketAddr::from(([127, 0, 0, 3], port)), CLUSTER).await;
    tx2.send_modify(|r| r.status = Status::new(State::Second, Readiness::Ready));
    std::mem::forget(tx2); // node2's module keeps its status for the test
    Two { conf, node1, node2, recorder2, tasks: vec![t1, t2] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_calls_are_authentic_and_cannot_be_replayed() {
    let t = two("nodecalls").await;
    let key = ClusterKey::new([9; 32]);
    let admin = OnBehalf { user: "root@node1".into(), role: super::accounts::Role::Admin };
    let a = call(t.node2, None, &key, &admin, &Call::new(Method::GET, "/api/v1.0/modules/m")).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let report: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(report["status"]["state"], "Second", "node2's own module: {report}");

    let forged = call(t.node2, None, &ClusterKey::new([1; 32]), &admin, &Call::new(Method::GET, "/api/v1.0/modules")).await.unwrap();
    assert_eq!(forged.status, 401, "another cluster key");

    // A recorded call sent again is refused: its challenge was used.
    let ch = http(t.node2, "GET", "/api/v1.0/node/challenge", &[], "").await;
    let nonce = serde_json::from_str::<serde_json::Value>(&ch.2).unwrap()["nonce"].as_str().unwrap().to_string();
    let mut m = key.mac();
    for part in [b"safekit node call v1".as_slice(), nonce.as_bytes(), b"GET", b"/api/v1.0/modules"] {
        hmac::Mac::update(&mut m, part);
        hmac::Mac::update(&mut m, b"\0");
    }
    hmac::Mac::update(&mut m, b"root@node1\0Admin\0");
    hmac::Mac::update(&mut m, &<sha2::Sha256 as sha2::Digest>::digest(b""));
    let tag = hex::encode(hmac::Mac::finalize(m).into_bytes());
    let headers = [
        ("x-safekit-nonce", nonce.as_str()),
        ("x-safekit-user", "root@node1"),
        ("x-safekit-role", "Admin"),
        ("x-safekit-mac", tag.as_str()),
    ];
    assert_eq!(http(t.node2, "GET", "/api/v1.0/modules", &headers, "").await.0, 200, "the first time");
    assert_eq!(http(t.node2, "GET", "/api/v1.0/modules", &headers, "").await.0, 401, "replayed");
    let role_raised = [headers[0], headers[1], ("x-safekit-role", "Monitor"), headers[3]];
    assert_eq!(http(t.node2, "GET", "/api/v1.0/modules", &role_raised, "").await.0, 401, "the role is under the MAC");

    // The role travels: a Monitor's call cannot act on the other node.
    let monitor = OnBehalf { user: "op@10.0.0.9 via node1".into(), role: super::accounts::Role::Monitor };
    let stop = call(t.node2, None, &key, &monitor, &Call::new(Method::POST, "/api/v1.0/modules/m/actions/stop")).await.unwrap();
    assert_eq!(stop.status, 403, "{}", String::from_utf8_lossy(&stop.body));
    assert!(t.recorder2.0.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_reaches_the_other_node_as_the_user() {
    let t = two("proxy").await;
    let (cookie, csrf) = login(t.node1, "admin", "admin-password").await.unwrap();
    let c = [("cookie", cookie.as_str())];
    let with_csrf = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];

    let (code, _, body) = http(t.node1, "GET", "/api/v1.0/nodes/node2/modules/m", &c, "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"]["state"], "Second", "node2's answer, through node1");

    assert_eq!(http(t.node1, "POST", "/api/v1.0/nodes/node2/modules/m/actions/stop", &c, "").await.0, 403, "no CSRF token");
    assert_eq!(http(t.node1, "POST", "/api/v1.0/nodes/node2/modules/m/actions/stop", &with_csrf, "").await.0, 204);
    let done = t.recorder2.0.lock().unwrap().clone();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1, CommandKind::Stop);
    assert_eq!(done[0].2, "admin@127.0.0.1 via node1", "node2's module log names the user and the way");

    // Fan-out: every node's answer, the same call.
    let (code, _, body) = http(t.node1, "GET", "/api/v1.0/nodes/*/modules/m", &c, "").await;
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let states: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["node"].as_str().unwrap().into(), a["body"]["status"]["state"].as_str().unwrap().into()))
        .collect();
    assert_eq!(states, [("node1".to_string(), "Alone".to_string()), ("node2".to_string(), "Second".to_string())]);

    // A snapshot of every node: one zip of each node's zip.
    let (code, head, zip) = super::tests::call_raw(t.node1, "GET", "/api/v1.0/nodes/*/modules/m/snapshot", &c, "").await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&zip));
    assert_eq!(head.get("content-type").unwrap(), "application/zip");
    let mut outer = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let names: std::collections::BTreeSet<String> =
        (0..outer.len()).map(|i| outer.by_index(i).unwrap().name().unwrap().to_string()).collect();
    assert_eq!(names, ["node1.zip".to_string(), "node2.zip".to_string()].into());
    let mut inner = Vec::new();
    std::io::Read::read_to_end(&mut outer.by_name("node2.zip").unwrap(), &mut inner).unwrap();
    let mut node2 = zip::ZipArchive::new(std::io::Cursor::new(inner)).unwrap();
    let mut report = String::new();
    std::io::Read::read_to_string(&mut node2.by_name("m/report.json").unwrap(), &mut report).unwrap();
    assert!(report.contains("Second"), "node2's own report: {report}");

    assert_eq!(http(t.node1, "GET", "/api/v1.0/nodes/node3/modules/m", &c, "").await.0, 400, "unknown node");
    assert_eq!(http(t.node1, "GET", "/api/v1.0/nodes/node2/modules/../apikey", &c, "").await.0, 400, "dot segments");
    assert_eq!(http(t.node1, "GET", "/api/v1.0/nodes/node2/modules/m", &[], "").await.0, 401, "no session");

    // A Monitor reads through the proxy, and node2 refuses its actions.
    let (op, op_csrf) = login(t.node1, "op", "operator-password").await.unwrap();
    let op_h = [("cookie", op.as_str()), ("x-csrf-token", op_csrf.as_str())];
    assert_eq!(http(t.node1, "GET", "/api/v1.0/nodes/node2/modules", &op_h, "").await.0, 200);
    assert_eq!(http(t.node1, "POST", "/api/v1.0/nodes/node2/modules/m/actions/start", &op_h, "").await.0, 403);
    assert_eq!(t.recorder2.0.lock().unwrap().len(), 1, "nothing more ran on node2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_requests_run_on_the_other_node() {
    let t = two("remotecli").await;
    let cluster = crate::config::parse_cluster(CLUSTER, "cluster.xml").unwrap().value;
    let key = ClusterKey::new([9; 32]);
    let port = super::signed::Transport::http(t.node2.port());
    let r = super::cli::remote(&cluster, &port, "node2", &key, "root@node1", &Request::State { module: None }).await.unwrap();
    assert!(matches!(&r, Response::States(s) if s.len() == 1), "{r:?}");
    let cmd = Request::Command { module: "m".into(), kind: CommandKind::Swap(crate::engine::SwapKind::Sync), identity: None };
    assert!(matches!(super::cli::remote(&cluster, &port, "node2", &key, "root@node1", &cmd).await.unwrap(), Response::Ok));
    assert_eq!(t.recorder2.0.lock().unwrap()[0].2, "root@node1");
    let e = super::cli::remote(&cluster, &port, "node2", &ClusterKey::new([2; 32]), "root@node1", &cmd).await.unwrap_err();
    assert!(e.contains("401"), "{e}");
    let e = super::cli::remote(&cluster, &port, "node9", &key, "root@node1", &cmd).await.unwrap_err();
    assert!(e.contains("no node node9"), "{e}");
    // A node that does not answer: an error within the bound, not a hang.
    let e = tokio::time::timeout(
        Duration::from_secs(90),
        super::cli::remote(&cluster, &super::signed::Transport::http(1), "node2", &key, "x", &cmd),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(e.contains("did not answer"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_addresses_are_probed_for_reachability_and_the_name_they_answer_as() {
    let t = two("probe").await;
    let (cookie, csrf) = login(t.node1, "admin", "admin-password").await.unwrap();
    let h = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str()), ("content-type", "application/json")];
    let body = r#"{"addresses":["127.0.0.3","127.0.0.9","no such host!"]}"#;
    let (code, _, answer) = http(t.node1, "POST", "/api/v1.0/cluster/probe", &h, body).await;
    assert_eq!(code, 200, "{answer}");
    let list: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(list[0]["reachable"], true, "{list}");
    assert_eq!(list[0]["node"], "node2", "the name node2 gives itself: {list}");
    assert_eq!(list[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(list[1]["reachable"], false, "nothing listens on 127.0.0.9: {list}");
    assert_eq!(list[1]["ip"], "127.0.0.9");
    assert!(list[1]["error"].as_str().is_some_and(|e| !e.is_empty()), "{list}");
    assert_eq!(list[2]["reachable"], false);
    assert_eq!(list[2]["error"], "not an IP address or a host name");

    assert_eq!(http(t.node1, "POST", "/api/v1.0/cluster/probe", &h, r#"{"addresses":[]}"#).await.0, 400);
    let (op, op_csrf) = login(t.node1, "op", "operator-password").await.unwrap();
    let op_h = [("cookie", op.as_str()), ("x-csrf-token", op_csrf.as_str()), ("content-type", "application/json")];
    assert_eq!(http(t.node1, "POST", "/api/v1.0/cluster/probe", &op_h, body).await.0, 403, "Admin only");
}
