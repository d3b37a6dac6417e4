//! The configuration endpoints on loopback: structured diagnostics with
//! line and column, changes merged into the module's files, paths outside
//! conf/ and bin/ refused, an apply passed to the daemon (which refuses
//! while the module runs), and the kept configurations listed.

use super::tests::{call, login};
use crate::modules::files;

const VALID: &str =
    "<!DOCTYPE safe>\n<safe>\n<service mode=\"mirror\">\n  <heart>\n    <heartbeat name=\"default\"/>\n  </heart>\n</service>\n</safe>\n";
const BROKEN: &str = "<!DOCTYPE safe>\n<safe>\n<service mode=\"mirror\">\n  <heart pulse=\"often\">\n    <heartbeat name=\"default\"/>\n  </heart>\n</service>\n</safe>\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_configuration_is_read_checked_with_positions_and_applied_through_the_daemon() {
    let conf = std::env::temp_dir().join(format!("safekit-web-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&conf);
    let accounts = super::accounts::Accounts::new(&conf);
    accounts.set_password("admin", "admin-password").unwrap();
    accounts.set_password("ctl", "control-password").unwrap();
    std::fs::write(conf.join("group.conf"), "Admin : admin\nControl : ctl\n").unwrap();
    let layout = crate::layout::Layout { safe: conf.join("safe"), safevar: conf.join("var") };
    files::replace(
        &layout,
        "m",
        &files::Files::from([(files::USERCONFIG.into(), VALID.into()), ("bin/start_prim".into(), "#!/bin/sh\n".into())]),
    )
    .unwrap();
    std::fs::create_dir_all(layout.cluster_xml().parent().unwrap()).unwrap();
    std::fs::write(layout.cluster_xml(), "<cluster/>").unwrap();
    let status = crate::engine::Status::new(crate::engine::State::Alone, crate::engine::Readiness::Ready);
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let cluster = r#"<cluster><lans><lan name="default"><node name="node1" addr="127.0.0.1"/><node name="node2" addr="127.0.0.2"/></lan></lans></cluster>"#;
    let (addr, _tx, task, _) = super::tests::start_on(status, &conf, "node1", addr, cluster).await;

    let (cookie, csrf) = login(addr, "admin", "admin-password").await.unwrap();
    let h = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str()), ("content-type", "application/json")];
    let (code, _, body) = call(addr, "GET", "/api/v1.0/config/modules/m", &h, "").await;
    assert_eq!(code, 200, "{body}");
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["files"]["conf/userconfig.xml"], VALID);
    assert_eq!(got["files"]["bin/start_prim"], "#!/bin/sh\n");

    // A broken heart: 422 with the place of the error.
    let changes = serde_json::json!({ "files": { "conf/userconfig.xml": BROKEN } }).to_string();
    let (code, _, body) = call(addr, "POST", "/api/v1.0/config/modules/m/check", &h, &changes).await;
    assert_eq!(code, 422, "{body}");
    let checked: serde_json::Value = serde_json::from_str(&body).unwrap();
    let e = &checked["errors"][0];
    assert_eq!((e["file"].as_str(), e["pos"]["line"].as_u64()), (Some("conf/userconfig.xml"), Some(4)), "{checked}");
    assert!(e["pos"]["column"].as_u64().unwrap() > 1 && e["message"].as_str().unwrap().contains("pulse"), "{checked}");
    let (code, _, body) = call(addr, "PUT", "/api/v1.0/config/modules/m", &h, &changes).await;
    assert_eq!(code, 422, "an invalid configuration is not applied: {body}");

    // A valid change: checked, then the daemon decides (here: the module runs).
    let changes = serde_json::json!({ "files": { "bin/stop_prim": "#!/bin/sh\nexit 0\n" } }).to_string();
    assert_eq!(call(addr, "POST", "/api/v1.0/config/modules/m/check", &h, &changes).await.0, 200);
    let (code, _, body) = call(addr, "PUT", "/api/v1.0/config/modules/m", &h, &changes).await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("stop it first"), "{body}");
    assert!(!layout.module_dir("m").join("bin/stop_prim").exists(), "nothing written by the web service itself");

    // Bad paths and bad bodies: clear 4xx.
    for bad in [r#"{"files":{"../../etc/passwd":"x"}}"#, r#"{"files":{"conf/userconfig.xml":null}}"#] {
        assert_eq!(call(addr, "PUT", "/api/v1.0/config/modules/m", &h, bad).await.0, 400, "{bad}");
    }
    assert!(matches!(call(addr, "PUT", "/api/v1.0/config/modules/m", &h, r#"{"files":{},"x":1}"#).await.0, 400 | 422), "unknown field");
    assert!(matches!(call(addr, "PUT", "/api/v1.0/config/modules/m", &h, "{not json").await.0, 400 | 422));
    assert_eq!(call(addr, "GET", "/api/v1.0/config/modules/..%2Fetc", &h, "").await.0, 400);
    assert_eq!(call(addr, "GET", "/api/v1.0/config/modules/nosuch", &h, "").await.0, 404);

    // The kept configurations: listed newest first; restoring asks the daemon.
    files::record(&layout, "m", &files::Files::from([(files::USERCONFIG.into(), VALID.into())]), "admin@10.0.0.7").unwrap();
    let (code, _, body) = call(addr, "GET", "/api/v1.0/config/modules/m/history", &h, "").await;
    assert_eq!(code, 200);
    let kept: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((kept[0]["id"].as_u64(), kept[0]["by"].as_str()), (Some(1), Some("admin@10.0.0.7")), "{kept}");
    assert_eq!(call(addr, "POST", "/api/v1.0/config/modules/m/history/1/restore", &h, "").await.0, 409, "the module runs");
    assert_eq!(call(addr, "POST", "/api/v1.0/config/modules/m/history/7/restore", &h, "").await.0, 404);

    // cluster.xml: read, checked with positions, saved only when valid.
    let (code, _, body) = call(addr, "GET", "/api/v1.0/config/cluster", &h, "").await;
    assert_eq!((code, body.contains("<cluster/>")), (200, true), "{body}");
    let bad = serde_json::json!({ "text": "<cluster>\n<lans>\n<lan name=\"x\"><node name=\"a\"/></lan></lans></cluster>" }).to_string();
    let (code, _, body) = call(addr, "PUT", "/api/v1.0/config/cluster", &h, &bad).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(std::fs::read_to_string(layout.cluster_xml()).unwrap(), "<cluster/>", "not saved");
    let good = serde_json::json!({ "text": cluster }).to_string();
    assert_eq!(call(addr, "PUT", "/api/v1.0/config/cluster", &h, &good).await.0, 200);
    assert_eq!(std::fs::read_to_string(layout.cluster_xml()).unwrap(), cluster);

    // Packages: offered templates, install from one, download, uninstall.
    let kind = layout.safe.join("Application_Modules/generic");
    std::fs::create_dir_all(&kind).unwrap();
    std::fs::write(kind.join("m.safe"), crate::modules::package(&layout, "m").unwrap()).unwrap();
    let (code, _, body) = call(addr, "GET", "/api/v1.0/packages", &h, "").await;
    assert_eq!((code, body.as_str()), (200, r#"["generic/m.safe"]"#));
    let (code, _, body) = call(addr, "POST", "/api/v1.0/modules/copy/install?template=generic/m.safe", &h, "").await;
    assert_eq!(code, 201, "{body}");
    assert!(body.contains(r#""module":"copy""#), "{body}");
    assert_eq!(files::current(&layout, "copy").unwrap(), files::current(&layout, "m").unwrap());
    let again = call(addr, "POST", "/api/v1.0/modules/copy/install?template=generic/m.safe", &h, "").await;
    assert_eq!(again.0, 409, "installed already: {}", again.2);
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/x/install?template=../../etc/passwd", &h, "").await.0, 400);
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/x/install", &h, "").await.0, 400, "no body, no template");
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/x/install", &h, "not a zip").await.0, 400);
    let (code, head, safe) = super::tests::call_raw(addr, "GET", "/api/v1.0/modules/copy/package", &h, "").await;
    assert_eq!((code, head.get("content-type").unwrap().to_str().unwrap()), (200, "application/zip"));
    assert!(zip::ZipArchive::new(std::io::Cursor::new(safe)).unwrap().by_name("conf/userconfig.xml").is_ok());
    assert_eq!(call(addr, "POST", "/api/v1.0/modules/copy/uninstall", &h, "").await.0, 204);

    // Control may act on modules, not configure them.
    let (c2, csrf2) = login(addr, "ctl", "control-password").await.unwrap();
    let h2 = [("cookie", c2.as_str()), ("x-csrf-token", csrf2.as_str()), ("content-type", "application/json")];
    assert_eq!(call(addr, "GET", "/api/v1.0/config/modules/m", &h2, "").await.0, 403);
    assert_eq!(call(addr, "PUT", "/api/v1.0/config/cluster", &h2, &good).await.0, 403);
    task.abort();
    let _ = std::fs::remove_dir_all(&conf);
}
