//! `safekit demo --keep` leaves the demo cluster running with its console
//! reachable on this machine's loopback (through the forwarder into the
//! client's namespace), and `safekit demo --clean` removes it: processes,
//! namespaces, files.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::exe;

fn http(method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], safekit_bin::demo_keep::CONSOLE_PORT));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    let code = r.split(' ').nth(1)?.parse().ok()?;
    Some((code, r))
}

#[test]
fn a_kept_demo_serves_its_console_on_loopback_until_cleaned() {
    let _serial = common::serial();
    if !common::privileged("demo --keep needs root, FUSE, iproute2 and nsenter", &["ip", "nsenter", "dd"], true) {
        return;
    }
    let out = Command::new(exe()).args(["demo", "--keep"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Whatever happens next, the kept cluster is removed.
    struct Clean;
    impl Drop for Clean {
        fn drop(&mut self) {
            let _ = Command::new(exe()).args(["demo", "--clean"]).output();
        }
    }
    let _clean = Clean;
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // The demo checked each node's copy of what the other acknowledged, and shows both synchronisations.
    for line in
        ["data: node2's copy holds all", "data: node1's copy holds all", "node2: synchronisation copied", "node1: synchronisation copied"]
    {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    let password = text.split("password ").nth(1).and_then(|r| r.split_whitespace().next()).expect("a console password").to_string();
    assert_eq!(http("GET", "/console/", "").map(|r| r.0), Some(200), "the console through the forwarder");
    let (code, answer) = http("POST", "/login", &format!("httpd_username=admin&httpd_password={password}")).unwrap();
    assert_eq!(code, 200, "{answer}");
    // A second demo is refused while this one runs.
    let again = Command::new(exe()).arg("demo").output().unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--clean"));

    let clean = Command::new(exe()).args(["demo", "--clean"]).output().unwrap();
    assert!(clean.status.success(), "{clean:?}");
    let namespaces = String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).to_string();
    assert!(!namespaces.contains("skd-"), "{namespaces}");
    assert!(!std::path::Path::new(safekit_bin::demo_keep::STATE).exists());
    assert_eq!(http("GET", "/console/", "").map(|r| r.0), None, "the forwarder is gone");
}
