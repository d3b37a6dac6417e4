//! HTTPS on loopback: a CA made on node1, node2's certificate issued by
//! node1 over an authenticated node call (its key stays on node2), both
//! served over TLS and reached by node calls that trust the CA only; the
//! HTTP port redirects what needs a login and still answers the health
//! check and node endpoints.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::Method;
use tokio::sync::watch;

use super::signed::{call, Call, OnBehalf, Transport};
use super::tests::{call as http, report, Recorder};
use super::{redirecting_router, router, serve, tls, Web};
use crate::daemon::Directory;
use crate::engine::{Readiness, State, Status};
use crate::key::ClusterKey;
use crate::layout::Layout;

const CLUSTER: &str = r#"<cluster><lans><lan name="default"><node name="node1" addr="127.0.0.2"/><node name="node2" addr="127.0.0.3"/></lan></lans></cluster>"#;

fn web(layout: &Layout, node: &str, https: bool, peers: Transport) -> (Web, watch::Sender<crate::runtime::ModuleReport>) {
    let directory = Arc::new(Directory::default());
    let (tx, rx) = watch::channel(report("m", Status::new(State::Alone, Readiness::Ready)));
    directory.insert("m", rx);
    let w = Web {
        key: ClusterKey::new([9; 32]),
        directory,
        accounts: super::accounts::Accounts::new(&layout.web_conf()),
        keys: super::accounts::ApiKeys::new(&layout.web_conf()),
        layout: layout.clone(),
        cluster: Arc::new(crate::config::parse_cluster(CLUSTER, "cluster.xml").unwrap().value),
        node: node.into(),
        sessions: Arc::default(),
        challenges: Arc::default(),
        peers,
        https,
        actions: Arc::new(Recorder::default()),
    };
    (w, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_ca_secures_node_calls_and_http_redirects() {
    let root = std::env::temp_dir().join(format!("safekit-web-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let l1 = Layout { safe: root.join("1/safe"), safevar: root.join("1/var") };
    let l2 = Layout { safe: root.join("2/safe"), safevar: root.join("2/var") };
    let cluster = crate::config::parse_cluster(CLUSTER, "cluster.xml").unwrap().value;
    let key = ClusterKey::new([9; 32]);
    let ports = super::tests_nodes::free_ports(2);
    let (http_port, https_port) = (ports[0], ports[1]);
    let (a1, a2) = (SocketAddr::from(([127, 0, 0, 2], http_port)), SocketAddr::from(([127, 0, 0, 3], http_port)));

    // node1 makes the CA; node2, still on HTTP, asks node1 for its certificate.
    tls::make_ca(&l1, tls::node_names(&cluster, "node1").await).unwrap();
    assert!(tls::make_ca(&l1, vec!["node1".into()]).is_err(), "a second CA is refused");
    let (w1, _t1) = web(&l1, "node1", false, Transport::http(http_port));
    let (w2, _t2) = web(&l2, "node2", false, Transport::http(http_port));
    let plain1 = serve(a1, router(w1), None).await.unwrap();
    let plain2 = serve(a2, router(w2), None).await.unwrap();
    let e = tls::request(&l2, &cluster, &ClusterKey::new([1; 32]), "node2", "node1", http_port).await.unwrap_err();
    assert!(e.contains("401"), "another cluster key gets no certificate: {e}");
    assert!(tls::request(&l2, &cluster, &key, "node2", "node2", http_port).await.is_err(), "node2 is not the CA");
    tls::request(&l2, &cluster, &key, "node2", "node1", http_port).await.unwrap();
    assert!(!tls::ssl_dir(&l2).join("ca.key").exists(), "the CA's key stays on node1");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(tls::ssl_dir(&l2).join("server.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    for t in [plain1, plain2] {
        t.abort();
        let _ = t.await; // the listener is closed
    }

    // Both serve HTTPS; node calls trust the cluster's CA only.
    let mut tasks = Vec::new();
    for (l, node, ip) in [(&l1, "node1", [127, 0, 0, 2]), (&l2, "node2", [127, 0, 0, 3])] {
        let server = tls::server_config(l).expect("certificates").unwrap();
        let peers = Transport { port: https_port, tls: Some(tls::client_config(l).unwrap()) };
        let (w, tx) = web(l, node, true, peers);
        std::mem::forget(tx);
        tasks.push(serve(SocketAddr::from((ip, https_port)), router(w.clone()), Some(server)).await.unwrap());
        tasks.push(serve(SocketAddr::from((ip, http_port)), redirecting_router(w), None).await.unwrap());
    }
    let admin = OnBehalf { user: "root@node1".into(), role: super::accounts::Role::Admin };
    let c1 = tls::client_config(&l1).unwrap();
    let over_tls =
        call(SocketAddr::from(([127, 0, 0, 3], https_port)), Some(&c1), &key, &admin, &Call::new(Method::GET, "/api/v1.0/modules")).await;
    assert_eq!(over_tls.map(|a| a.status.as_u16()), Ok(200), "node1 reaches node2 over TLS");
    let transport = Transport { port: https_port, tls: Some(c1) };
    let r = super::cli::remote(&cluster, &transport, "node2", &key, "root@node1", &crate::daemon::control::Request::State { module: None })
        .await;
    assert!(r.is_ok(), "safekit -H over HTTPS: {r:?}");

    // A client that does not trust the cluster's CA is refused.
    let stranger = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let e = call(
        SocketAddr::from(([127, 0, 0, 3], https_port)),
        Some(&Arc::new(stranger)),
        &key,
        &admin,
        &Call::new(Method::GET, "/api/v1.0/modules"),
    )
    .await
    .unwrap_err();
    assert!(e.contains("TLS"), "{e}");

    // Port 9010's role under HTTPS: redirect what needs a login, serve the rest.
    let (code, head, _) = http(a1, "GET", "/api/v1.0/modules?x=1", &[("host", "10.0.0.1:9010")], "").await;
    assert_eq!(code, 308);
    assert_eq!(head.get("location").unwrap(), &format!("https://10.0.0.1:{}/api/v1.0/modules?x=1", tls::HTTPS_PORT));
    assert_eq!(http(a1, "GET", "/var/modules/m/ready.txt", &[], "").await.0, 200, "the health check stays on HTTP");
    assert_eq!(http(a1, "GET", "/metrics", &[], "").await.0, 200);
    assert_eq!(http(a1, "GET", "/api/v1.0/node/challenge", &[], "").await.0, 200);
    assert_eq!(http(a1, "POST", "/login", &[], "").await.0, 308, "no password over plain HTTP");

    for t in tasks {
        t.abort();
    }
    tls::remove(&l1).unwrap();
    assert!(!tls::enabled(&l1) && tls::server_config(&l1).is_none(), "rmcerts: back to HTTP");
    let _ = std::fs::remove_dir_all(&root);
}
