//! The console's files and its live feed, served for real on loopback
//! (the browser test in safekit-bin/tests/t50_netns_console.rs drives them
//! in Chromium on a two-node cluster).

use std::time::Duration;

use http_body_util::BodyExt;

use super::tests::{call, login, start_with};
use crate::engine::{Readiness, State, Status};

#[tokio::test]
async fn the_console_is_served_from_this_origin_only() {
    let conf = std::env::temp_dir().join(format!("safekit-web-console-{}", std::process::id()));
    let (addr, _tx, task, _) = start_with(Status::new(State::Alone, Readiness::Ready), &conf).await;
    let (code, headers, _) = call(addr, "GET", "/", &[], "").await;
    assert!((300..400).contains(&code) && headers["location"] == "/console/", "{code} {headers:?}");
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/module.js", "text/javascript"),
        ("/console/config.js", "text/javascript"),
        ("/console/cluster.js", "text/javascript"),
        ("/console/widgets.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let (code, headers, body) = call(addr, "GET", path, &[], "").await;
        assert_eq!(code, 200, "{path}");
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}: {headers:?}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self'") && !policy.contains("unsafe"), "{policy}");
        // Nothing from elsewhere: no absolute URL in any file (no CDN).
        assert!(!body.contains("://"), "{path} names another origin");
    }
    let (_, _, page) = call(addr, "GET", "/console/", &[], "").await;
    assert!(page.contains(r#"src="/console/app.js""#) && page.contains(r#"href="/console/app.css""#));
    task.abort();
}

/// The next server-sent event's data from `body`, within 10 s.
async fn next_event(body: &mut hyper::body::Incoming, pending: &mut String) -> serde_json::Value {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = pending.find("\n\n") {
            let event: String = pending.drain(..i + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                assert!(event.contains("event: cluster"), "{event}");
                return serde_json::from_str(data).unwrap();
            }
            continue;
        }
        let frame = tokio::time::timeout_at(end, body.frame()).await.expect("an event within 10 s").unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            pending.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_shows_every_node_and_follows_the_module() {
    let conf = std::env::temp_dir().join(format!("safekit-web-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&conf);
    super::accounts::Accounts::new(&conf).set_password("admin", "password-1").unwrap();
    let (addr, tx, task, _) = start_with(Status::new(State::Alone, Readiness::Ready), &conf).await;
    let (code, _, _) = call(addr, "GET", "/api/v1.0/events", &[], "").await;
    assert_eq!(code, 401, "no session, no feed");
    let (cookie, _) = login(addr, "admin", "password-1").await.unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let req = hyper::Request::get(format!("http://{addr}/api/v1.0/events")).header("cookie", &cookie).body(Default::default()).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut pending = String::new();
    let first = next_event(&mut body, &mut pending).await;
    assert_eq!(first[0]["node"], "node1");
    assert_eq!(first[0]["reachable"], true);
    assert_eq!(first[0]["modules"][0]["status"]["state"], "Alone");
    // node2 (127.0.0.2, nothing listening) is shown, red, with the reason.
    assert_eq!(first[1]["node"], "node2");
    assert_eq!(first[1]["reachable"], false);
    assert!(first[1]["error"].as_str().is_some_and(|e| !e.is_empty()), "{first}");
    // A state change is sent without being asked for.
    tx.send_modify(|r| r.status = Status::new(State::Second, Readiness::Transient));
    let mut seen = first;
    for _ in 0..20 {
        if seen[0]["modules"][0]["status"]["state"] == "Second" {
            break;
        }
        seen = next_event(&mut body, &mut pending).await;
    }
    assert_eq!(seen[0]["modules"][0]["status"]["readiness"], "Transient", "{seen}");
    task.abort();
    let _ = std::fs::remove_dir_all(&conf);
}
