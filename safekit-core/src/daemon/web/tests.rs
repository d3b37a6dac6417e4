//! The web service served for real on loopback: the health check's codes,
//! authentic node-to-node answers only, bad requests refused, and a flood
//! of idle connections that does not stop the answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::sync::watch;

use super::{node, router, serve, Web, HEADER_TIME, MAX_CONNECTIONS};
use crate::daemon::control::{Request, Response};
use crate::daemon::Directory;
use crate::engine::{Readiness, State, Status};
use crate::key::ClusterKey;
use crate::runtime::ModuleReport;

pub(super) fn report(name: &str, status: Status) -> ModuleReport {
    ModuleReport {
        name: name.into(),
        id: 1,
        status,
        peer: None,
        resources: Default::default(),
        data_version: None,
        metrics: Default::default(),
        heartbeats_dropped: 0,
        heartbeat_lans: Vec::new(),
        replication: None,
        farm: None,
    }
}

/// Records the actions the API asks for.
#[derive(Default)]
pub(super) struct Recorder(pub(super) std::sync::Mutex<Vec<(String, crate::engine::CommandKind, String)>>);

#[async_trait::async_trait]
impl super::Actions for Recorder {
    async fn control(&self, req: Request, by: String) -> Response {
        match req {
            Request::Command { module, .. } | Request::Log { module, .. } if module != "m" => {
                Response::Error(format!("no module {module}"))
            }
            Request::Command { module, kind, .. } => {
                self.0.lock().unwrap().push((module, kind, by));
                Response::Ok
            }
            Request::Log { lines, verbose, .. } => {
                let all = [
                    "| 2026-12-02 10:00:00 | heart | I | Heartbeat sent",
                    "| 2026-12-02 10:00:01 | heart | E | Local state ALONE Ready",
                    "| 2026-12-02 10:00:02 | userplug | S | Script start_prim",
                    "| 2026-12-02 10:00:03 | heart | D | debug detail",
                    "| 2026-12-02 10:00:04 | cli | U | Action swap called by admin@127.0.0.1",
                ];
                let kept: Vec<String> =
                    all.iter().filter(|l| verbose || !(l.contains(" | I | ") || l.contains(" | D | "))).map(|l| l.to_string()).collect();
                Response::Lines(kept[kept.len().saturating_sub(lines)..].to_vec())
            }
            Request::State { .. } => Response::States(vec![report("m", Status::new(State::Alone, Readiness::Ready))]),
            Request::Uninstall { .. } => Response::Ok,
            Request::Boot { on, .. } => Response::Lines(vec![format!("boot {}", if on == Some(true) { "on" } else { "off" })]),
            // The daemon's answer while the module runs.
            Request::Config { module, .. } => Response::Error(format!("module {module} is ALONE (Ready): stop it first")),
            other => Response::Error(format!("the recorder does not answer {other:?}")),
        }
    }
}

/// A web service on a free loopback port whose module `m` has the status
/// the returned sender sets.
async fn start(status: Status) -> (SocketAddr, watch::Sender<ModuleReport>, tokio::task::JoinHandle<()>) {
    let (addr, tx, task, _) = start_with(status, &std::env::temp_dir().join("safekit-web-no-users")).await;
    (addr, tx, task)
}

const CLUSTER: &str = r#"<cluster><lans><lan name="default"><node name="node1" addr="127.0.0.1"/><node name="node2" addr="127.0.0.2"/></lan></lans></cluster>"#;

/// [`start`] with the accounts of `conf` and the recorder of actions.
pub(super) async fn start_with(
    status: Status,
    conf: &std::path::Path,
) -> (SocketAddr, watch::Sender<ModuleReport>, tokio::task::JoinHandle<()>, Arc<Recorder>) {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    start_on(status, conf, "node1", addr, CLUSTER).await
}

/// Node `node` of `cluster_xml` serving on `addr` (the other nodes are
/// called on the same port), its module `m` in `status`, accounts in `conf`.
pub(super) async fn start_on(
    status: Status,
    conf: &std::path::Path,
    node: &str,
    addr: SocketAddr,
    cluster_xml: &str,
) -> (SocketAddr, watch::Sender<ModuleReport>, tokio::task::JoinHandle<()>, Arc<Recorder>) {
    let directory = Arc::new(Directory::default());
    let (tx, rx) = watch::channel(report("m", status));
    directory.insert("m", rx);
    let recorder = Arc::new(Recorder::default());
    let web = Web {
        key: ClusterKey::new([9; 32]),
        directory,
        accounts: super::accounts::Accounts::new(conf),
        keys: super::accounts::ApiKeys::new(conf),
        layout: crate::layout::Layout { safe: conf.join("safe"), safevar: conf.join("var") },
        cluster: Arc::new(crate::config::parse_cluster(cluster_xml, "cluster.xml").unwrap().value),
        node: node.into(),
        sessions: Arc::default(),
        challenges: Arc::default(),
        peers: super::signed::Transport::http(addr.port()),
        https: false,
        actions: recorder.clone(),
    };
    let task = serve(addr, router(web), None).await.unwrap();
    (addr, tx, task, recorder)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (code, _, body) = call(addr, "GET", path, &[], "").await;
    (code, body)
}

#[tokio::test]
async fn the_health_check_is_200_only_where_clients_are_served() {
    let (addr, tx, task) = start(Status::new(State::Alone, Readiness::Ready)).await;
    assert_eq!(get(addr, "/var/modules/m/ready.txt").await.0, 200);
    for (state, readiness) in [
        (State::Prim, Readiness::Ready),
        (State::Up, Readiness::Ready),
        (State::Second, Readiness::Ready),
        (State::Alone, Readiness::Transient),
        (State::Wait, Readiness::NotReady),
        (State::Stop, Readiness::NotReady),
    ] {
        tx.send_replace(report("m", Status::new(state, readiness)));
        let want = if readiness == Readiness::Ready && state != State::Second { 200 } else { 404 };
        assert_eq!(get(addr, "/var/modules/m/ready.txt").await.0, want, "{state} {readiness}");
    }
    assert_eq!(get(addr, "/var/modules/other/ready.txt").await.0, 404, "a module that does not run here");
    assert_eq!(get(addr, "/var/modules/..%2F..%2Fetc/ready.txt").await.0, 404, "names are looked up, never opened");
    task.abort();
}

#[tokio::test]
async fn node_answers_are_authentic_and_bad_requests_are_refused() {
    let status = Status::new(State::Alone, Readiness::Ready);
    let (addr, _tx, task) = start(status).await;
    let key = ClusterKey::new([9; 32]);
    let t = Duration::from_secs(5);
    assert_eq!(node::ask(addr, &key, "m", t).await, Ok(Some(status)));
    assert_eq!(node::ask(addr, &key, "nosuch", t).await, Ok(None));
    let err = node::ask(addr, &ClusterKey::new([1; 32]), "m", t).await.unwrap_err();
    assert!(err.contains("not authentic"), "{err}");
    assert!(node::ask(addr, &key, "../m", t).await.is_err());
    assert_eq!(get(addr, "/api/v1.0/node/modules/m/status?nonce=xyz").await.0, 400, "a nonce that is not hex");
    assert_eq!(get(addr, "/api/v1.0/node/modules/m/status").await.0, 400, "no nonce");
    assert_eq!(get(addr, "/api/v1.0/node/modules/m/status?nonce=00112233445566778899&x=1").await.0, 400, "unknown field");
    assert_eq!(get(addr, "/nothing/here").await.0, 404);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_does_not_stop_the_answers() {
    let status = Status::new(State::Prim, Readiness::Ready);
    let (addr, _tx, task) = start(status).await;
    // More silent connections than slots: each is dropped once its headers
    // are late, and the slots serve real requests again.
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS + 200 {
        if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
            idle.push(c);
        }
    }
    let answer = node::ask(addr, &ClusterKey::new([9; 32]), "m", HEADER_TIME * 10).await;
    assert_eq!(answer, Ok(Some(status)), "answered once the idle connections timed out");
    drop(idle);
    task.abort();
}

/// The value of `name` with every label in `want`, in `text` parsed by a
/// Prometheus text parser.
fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the exposition parses");
    scrape.samples.iter().find(|s| s.metric == name && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(|s| match s.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    })
}

#[tokio::test]
async fn metrics_parse_and_follow_the_module() {
    let (addr, tx, task) = start(Status::new(State::Second, Readiness::Transient)).await;
    tx.send_modify(|r| {
        r.peer = Some(Status::new(State::Prim, Readiness::Ready));
        r.data_version = Some((2, 41));
        r.heartbeats_dropped = 3;
        r.metrics.lans = vec![("flow".into(), true)];
        r.metrics.reintegration = Some((1000, 4000));
        r.metrics.failovers = 2;
        r.metrics.reintegration_eta = Some(30);
        r.metrics.reintegration_rate = Some(2_500_000);
        r.metrics.resources = vec![("tcp.app".into(), crate::engine::ResourceState::Init)];
        r.heartbeat_lans = vec![crate::services::LanStats { received: 120, lost: 2 }];
        r.replication = Some(crate::services::ReplicationStats {
            bytes_sent: 9000,
            ops_sent: 30,
            inflight_bytes: 512,
            lag_micros: 1_500,
            ops_applied: 7,
        });
    });
    let (code, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    let m = [("module", "m")];
    assert_eq!(sample(&text, "safekit_module_state", &[("module", "m"), ("state", "SECOND")]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "safekit_module_state", &[("module", "m"), ("state", "ALONE")]), Some(0.0));
    assert_eq!(sample(&text, "safekit_module_ready", &m), Some(0.0));
    assert_eq!(sample(&text, "safekit_peer_state", &[("module", "m"), ("state", "PRIM")]), Some(1.0));
    assert_eq!(sample(&text, "safekit_heartbeat_up", &[("module", "m"), ("lan", "flow")]), Some(1.0));
    assert_eq!(sample(&text, "safekit_heartbeats_dropped_total", &m), Some(3.0));
    assert_eq!(sample(&text, "safekit_data_generation", &m), Some(41.0));
    assert_eq!(sample(&text, "safekit_failovers_total", &m), Some(2.0));
    assert_eq!(sample(&text, "safekit_reintegration_eta_seconds", &m), Some(30.0));
    assert_eq!(sample(&text, "safekit_reintegration_bytes_done", &m), Some(1000.0));
    assert_eq!(sample(&text, "safekit_reintegration_bytes_total", &m), Some(4000.0));
    assert_eq!(sample(&text, "safekit_resource_state", &[("module", "m"), ("resource", "tcp.app"), ("state", "init")]), Some(1.0));
    assert_eq!(sample(&text, "safekit_reintegration_rate_bytes_per_second", &m), Some(2_500_000.0));
    let flow = [("module", "m"), ("lan", "flow")];
    assert_eq!(sample(&text, "safekit_heartbeats_received_total", &flow), Some(120.0));
    assert_eq!(sample(&text, "safekit_heartbeats_lost_total", &flow), Some(2.0));
    assert_eq!(sample(&text, "safekit_replication_sent_bytes_total", &m), Some(9000.0));
    assert_eq!(sample(&text, "safekit_replication_sent_ops_total", &m), Some(30.0));
    assert_eq!(sample(&text, "safekit_replication_applied_ops_total", &m), Some(7.0));
    assert_eq!(sample(&text, "safekit_replication_inflight_bytes", &m), Some(512.0));
    assert_eq!(sample(&text, "safekit_replication_lag_seconds", &m), Some(0.0015));

    // The reintegration ends: SECOND Ready, no progress any more.
    tx.send_modify(|r| {
        r.status = Status::new(State::Second, Readiness::Ready);
        r.metrics.reintegration = None;
        r.metrics.resources = vec![("tcp.app".into(), crate::engine::ResourceState::Up)];
    });
    let (_, text) = get(addr, "/metrics").await;
    assert_eq!(sample(&text, "safekit_module_ready", &m), Some(1.0));
    assert_eq!(sample(&text, "safekit_reintegration_bytes_done", &m), None);
    assert_eq!(sample(&text, "safekit_resource_state", &[("module", "m"), ("resource", "tcp.app"), ("state", "up")]), Some(1.0));
    task.abort();
}

#[tokio::test]
async fn farm_metrics_show_the_share_and_every_live_node() {
    let (addr, tx, task) = start(Status::new(State::Up, Readiness::Ready)).await;
    let node =
        |name: &str, local, live, n: u8| crate::farm::NodeBuckets { node: name.into(), local, live, up: true, buckets: (0..n).collect() };
    tx.send_modify(|r| {
        r.farm = Some(crate::farm::FarmReport {
            members: vec!["n1".into(), "n2".into()],
            open: true,
            groups: vec![crate::farm::FarmGroup {
                name: "web".into(),
                nodes: vec![node("n1", true, true, 128), node("n2", false, true, 128), node("n3", false, false, 0)],
            }],
            datagrams_dropped: 4,
        });
    });
    let (_, text) = get(addr, "/metrics").await;
    let m = [("module", "m")];
    assert_eq!(sample(&text, "safekit_farm_buckets", &[("module", "m"), ("group", "web")]), Some(128.0), "{text}");
    assert_eq!(sample(&text, "safekit_farm_members", &m), Some(2.0));
    assert_eq!(sample(&text, "safekit_farm_traffic_open", &m), Some(1.0));
    assert_eq!(sample(&text, "safekit_farm_datagrams_dropped_total", &m), Some(4.0));
    let node = |n| [("module", "m"), ("group", "web"), ("node", n)];
    assert_eq!(sample(&text, "safekit_farm_node_buckets", &node("n2")), Some(128.0));
    assert_eq!(sample(&text, "safekit_farm_node_buckets", &node("n3")), None, "a lost node is not shown");
    task.abort();
}

/// A web service whose accounts (in a fresh directory named after `test`)
/// hold `users` (name, password) and, if given, `group.conf`.
async fn start_with_users(
    test: &str,
    users: &[(&str, &str)],
    groups: Option<&str>,
) -> (std::path::PathBuf, SocketAddr, tokio::task::JoinHandle<()>, Arc<Recorder>) {
    let conf = std::env::temp_dir().join(format!("safekit-web-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&conf);
    let accounts = super::accounts::Accounts::new(&conf);
    for (user, password) in users {
        accounts.set_password(user, password).unwrap();
    }
    if let Some(g) = groups {
        std::fs::write(conf.join("group.conf"), g).unwrap();
    }
    let (addr, _tx, task, recorder) = start_with(Status::new(State::Alone, Readiness::Ready), &conf).await;
    (conf, addr, task, recorder)
}

/// One request with a method, headers and a body: (code, headers, body).
pub(super) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, hyper::HeaderMap, String) {
    let (code, headers, body) = call_raw(addr, method, path, headers, body).await;
    (code, headers, String::from_utf8_lossy(&body).into_owned())
}

/// [`call`] with the body's bytes as they came.
pub(super) async fn call_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(http_body_util::Full::new(hyper::body::Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status.as_u16(), parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
}

/// Logs in: the session cookie and the CSRF token.
pub(super) async fn login(addr: SocketAddr, user: &str, password: &str) -> Result<(String, String), u16> {
    let form = format!("httpd_username={user}&httpd_password={password}&login=Login");
    let (code, headers, body) = call(addr, "POST", "/login", &[("content-type", "application/x-www-form-urlencoded")], &form).await;
    if code != 200 {
        return Err(code);
    }
    let set = headers.get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"].as_str().unwrap().to_string();
    Ok((cookie, csrf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_roles_and_csrf_guard_the_api() {
    let users = [("admin", "admin-password"), ("op", "operator-password")];
    let (conf, addr, task, recorder) = start_with_users("accounts", &users, Some("Admin : admin\nMonitor : op\n")).await;

    assert_eq!(call(addr, "GET", "/api/v1.0/modules", &[], "").await.0, 401, "no session");
    assert_eq!(login(addr, "admin", "wrong").await, Err(401));

    // Monitor reads, cannot act.
    let (cookie, csrf) = login(addr, "op", "operator-password").await.unwrap();
    let (code, _, body) = call(addr, "GET", "/api/v1.0/modules/m", &[("cookie", &cookie)], "").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"Alone\"") || body.contains("ALONE"), "{body}");
    let stop = call(addr, "POST", "/api/v1.0/modules/m/actions/stop", &[("cookie", &cookie), ("x-csrf-token", &csrf)], "").await;
    assert_eq!(stop.0, 403, "a Monitor cannot stop: {}", stop.2);

    // Admin acts, only with the CSRF token.
    let (cookie, csrf) = login(addr, "admin", "admin-password").await.unwrap();
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/stop", &[("cookie", &cookie)], "").await.0, 403, "no CSRF token");
    let bad = [("cookie", cookie.as_str()), ("x-csrf-token", "0000")];
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/stop", &bad, "").await.0, 403, "a wrong CSRF token");
    let ok = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/prim", &ok, r#"{"fullsync": true}"#).await.0, 204);
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/failover", &ok, r#"{"on": false}"#).await.0, 204);
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/boot", &ok, r#"{"on": true}"#).await.0, 204);
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/boot", &ok, "").await.0, 400, "boot needs on");
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/failover", &ok, "").await.0, 400, "failover needs on");
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/dance", &ok, "").await.0, 400);
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/stop", &ok, r#"{"colour": 1}"#).await.0, 400, "unknown field");
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/stop", &ok, "{not json").await.0, 400);
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/other/actions/stop", &ok, "").await.0, 409, "the command's own refusal");
    let done = recorder.0.lock().unwrap().clone();
    assert_eq!(
        done.iter().map(|(m, k, by)| (m.as_str(), k.clone(), by.as_str())).collect::<Vec<_>>(),
        [
            ("m", crate::engine::CommandKind::Prim { fullsync: true }, "admin@127.0.0.1"),
            ("m", crate::engine::CommandKind::Failover(false), "admin@127.0.0.1")
        ],
        "the module log will name the caller"
    );

    // The module log, filtered by level and cut to the last lines.
    let (code, _, body) = call(addr, "GET", "/api/v1.0/modules/m/log?levels=EU", &[("cookie", &cookie)], "").await;
    assert_eq!(code, 200);
    let lines: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with("Local state ALONE Ready") && lines[1].ends_with("called by admin@127.0.0.1"), "{lines:?}");
    let (_, _, body) = call(addr, "GET", "/api/v1.0/modules/m/log?levels=DIEUSC&lines=2", &[("cookie", &cookie)], "").await;
    let lines: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!(lines.len() == 2 && lines[0].ends_with("debug detail"), "{lines:?}");
    // Paging back: the two lines before the last two.
    let (_, _, body) = call(addr, "GET", "/api/v1.0/modules/m/log?levels=DIEUSC&lines=2&skip=2", &[("cookie", &cookie)], "").await;
    let lines: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!(lines.len() == 2 && lines[0].ends_with("Local state ALONE Ready") && lines[1].ends_with("Script start_prim"), "{lines:?}");
    let (_, _, body) = call(addr, "GET", "/api/v1.0/modules/m/log?levels=DIEUSC&skip=99", &[("cookie", &cookie)], "").await;
    assert_eq!(body, "[]", "paged past the beginning");
    assert_eq!(call(addr, "GET", "/api/v1.0/modules/m/log?levels=X", &[("cookie", &cookie)], "").await.0, 400);
    assert_eq!(call(addr, "GET", "/api/v1.0/modules/other/log", &[("cookie", &cookie)], "").await.0, 404);

    // The cluster: both nodes, this one reachable, the other not listening.
    let (code, _, body) = call(addr, "GET", "/api/v1.0/cluster", &[("cookie", &cookie)], "").await;
    assert_eq!(code, 200, "{body}");
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["node"], "node1");
    assert_eq!(c["nodes"][0]["name"], "node1");
    assert_eq!(c["nodes"][0]["reachable"], true);
    assert_eq!(c["nodes"][1]["name"], "node2");
    assert_eq!(c["nodes"][1]["addresses"][0][1], "127.0.0.2");
    assert_eq!(c["nodes"][1]["reachable"], false, "nothing answers on 127.0.0.2:9010");

    // A snapshot for support: a zip, for an Admin only.
    std::fs::create_dir_all(conf.join("var/modules/m")).unwrap();
    std::fs::write(conf.join("var/modules/m/log.txt"), "| d | heart | E | Local state ALONE Ready\n").unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let req = hyper::Request::get(format!("http://{addr}/api/v1.0/modules/m/snapshot"))
        .header("cookie", &cookie)
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let zip = resp.into_body().collect().await.unwrap().to_bytes();
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).expect("a zip");
    assert!(a.by_name("m/SAFEVAR/log.txt").is_ok() && a.by_name("m/report.json").is_ok());
    let (op_cookie, _) = login(addr, "op", "operator-password").await.unwrap();
    assert_eq!(call(addr, "GET", "/api/v1.0/modules/m/snapshot", &[("cookie", &op_cookie)], "").await.0, 403, "Monitor: no snapshot");

    // Logged out: the cookie no longer works.
    assert_eq!(call(addr, "POST", "/logout", &[("cookie", &cookie)], "").await.0, 204);
    assert_eq!(call(addr, "GET", "/api/v1.0/modules", &[("cookie", &cookie)], "").await.0, 401);
    task.abort();
    let _ = std::fs::remove_dir_all(&conf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_block_the_address() {
    let (conf, addr, task, _) = start_with_users("throttle", &[("admin", "admin-password")], None).await;
    for _ in 0..super::api::MAX_FAILURES {
        assert_eq!(login(addr, "admin", "guess").await, Err(401));
    }
    assert_eq!(login(addr, "admin", "admin-password").await, Err(429), "blocked, even with the right password");
    task.abort();
    let _ = std::fs::remove_dir_all(&conf);
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let (addr, _tx, task) = start(Status::new(State::Alone, Readiness::Ready)).await;
    let (code, body) = get(addr, "/api/v1.0/openapi.json").await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/login", "post"),
        ("/logout", "post"),
        ("/api/v1.0/session", "get"),
        ("/api/v1.0/modules", "get"),
        ("/api/v1.0/modules/{module}", "get"),
        ("/api/v1.0/modules/{module}/log", "get"),
        ("/api/v1.0/modules/{module}/actions/{action}", "post"),
        ("/var/modules/{module}/ready.txt", "get"),
        ("/metrics", "get"),
        ("/api/v1.0/node/modules/{module}/status", "get"),
        ("/api/v1.0/openapi.json", "get"),
        ("/api/v1.0/apikey", "get"),
        ("/api/v1.0/cluster", "get"),
        ("/api/v1.0/cluster/probe", "post"),
        ("/api/v1.0/modules/{module}/resources/history", "get"),
        ("/api/v1.0/modules/{module}/snapshot", "get"),
        ("/api/v1.0/apikey/{role}/{name}", "post"),
        ("/api/v1.0/apikey/{name}", "delete"),
        ("/api/v1.0/node/challenge", "get"),
        ("/api/v1.0/cli", "post"),
        ("/api/v1.0/nodes/{nodes}/{rest}", "get"),
        ("/api/v1.0/config/cluster", "get"),
        ("/api/v1.0/config/cluster", "put"),
        ("/api/v1.0/config/cluster/check", "post"),
        ("/api/v1.0/config/modules/{module}", "get"),
        ("/api/v1.0/config/modules/{module}", "put"),
        ("/api/v1.0/config/modules/{module}/check", "post"),
        ("/api/v1.0/config/modules/{module}/history", "get"),
        ("/api/v1.0/config/modules/{module}/history/{id}/restore", "post"),
        ("/api/v1.0/node/certificate", "post"),
        ("/api/v1.0/modules/{module}/userlogs", "get"),
        ("/api/v1.0/modules/{module}/userlogs/{file}", "get"),
        ("/api/v1.0/modules/{module}/timeline", "get"),
        ("/api/v1.0/modules/{module}/rfsverify", "get"),
        ("/api/v1.0/modules/{module}/rfsdiff", "get"),
        ("/api/v1.0/packages", "get"),
        ("/api/v1.0/modules/{module}/install", "post"),
        ("/api/v1.0/modules/{module}/package", "get"),
        ("/api/v1.0/modules/{module}/uninstall", "post"),
        ("/api/v1.0/events", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing from the document");
        // And the route exists: anything but 404/405 for a request without a session
        // (the health check's 404 is its answer for a module not ready).
        let concrete = path
            .replace("{module}", "m")
            .replace("{action}", "start")
            .replace("{role}", "Monitor")
            .replace("{name}", "k")
            .replace("{nodes}", "node2")
            .replace("{rest}", "modules")
            .replace("{id}", "1")
            .replace("{file}", "userlog_x_start_prim.ulog");
        let (code, _, _) = call(addr, &method.to_uppercase(), &concrete, &[], "").await;
        assert!(code != 405 && (code != 404 || concrete.ends_with("ready.txt")), "{method} {concrete} answered {code}");
    }
    assert_eq!(paths.len(), 38, "a route the test does not know: {:?}", paths.keys().collect::<Vec<_>>());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_shown_once_act_with_their_role_and_can_be_revoked() {
    let (conf, addr, task, recorder) = start_with_users("keys", &[("admin", "admin-password")], None).await;
    let (cookie, csrf) = login(addr, "admin", "admin-password").await.unwrap();
    let admin = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let made = |role: &str, name: &str| format!("/api/v1.0/apikey/{role}/{name}");
    let (code, _, body) = call(addr, "POST", &made("Monitor", "grafana"), &admin, "").await;
    assert_eq!(code, 201, "{body}");
    let monitor_key = serde_json::from_str::<serde_json::Value>(&body).unwrap()["key"].as_str().unwrap().to_string();
    let (_, _, body) = call(addr, "POST", &made("Control", "runbook"), &admin, "").await;
    let control_key = serde_json::from_str::<serde_json::Value>(&body).unwrap()["key"].as_str().unwrap().to_string();
    assert_eq!(call(addr, "POST", &made("Control", "runbook"), &admin, "").await.0, 409, "names are unique");
    assert_eq!(call(addr, "POST", &made("Root", "x"), &admin, "").await.0, 400);
    let stored = std::fs::read_to_string(conf.join("apikeys.conf")).unwrap();
    assert!(!stored.contains(&monitor_key) && !stored.contains(&control_key), "only digests are kept: {stored}");
    let (_, _, list) = call(addr, "GET", "/api/v1.0/apikey", &[("cookie", &cookie)], "").await;
    assert!(list.contains("grafana") && list.contains("runbook") && !list.contains("sk_"), "{list}");

    let bearer = |k: &str| format!("Bearer {k}");
    let m = bearer(&monitor_key);
    assert_eq!(call(addr, "GET", "/api/v1.0/modules/m", &[("authorization", &m)], "").await.0, 200, "a Monitor key reads");
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/stop", &[("authorization", &m)], "").await.0, 403, "and cannot act");
    let c = bearer(&control_key);
    assert_eq!(
        call(addr, "POST", "/api/v1.0/modules/m/actions/stop", &[("authorization", &c)], "").await.0,
        204,
        "no CSRF token for a key"
    );
    assert_eq!(call(addr, "POST", &made("Admin", "escalate"), &[("authorization", &c)], "").await.0, 403, "Control cannot make keys");
    assert_eq!(recorder.0.lock().unwrap().last().map(|r| r.2.clone()), Some("apikey:runbook@127.0.0.1".to_string()));

    assert_eq!(call(addr, "DELETE", "/api/v1.0/apikey/runbook", &admin, "").await.0, 204);
    assert_eq!(call(addr, "DELETE", "/api/v1.0/apikey/runbook", &admin, "").await.0, 404);
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/m/actions/stop", &[("authorization", &c)], "").await.0, 401, "revoked");
    assert_eq!(call(addr, "GET", "/api/v1.0/modules", &[("authorization", "Bearer sk_forged")], "").await.0, 401);
    task.abort();
    let _ = std::fs::remove_dir_all(&conf);
}
