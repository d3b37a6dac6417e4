//! The safekit binary's configuration commands, run as a user would.

use std::path::Path;
use std::process::Command;

mod common;

use common::tempdir;

fn node_dir(name: &str, userconfig: &str) -> tempdir::Dir {
    let d = tempdir::Dir::new(name);
    std::fs::create_dir_all(d.path().join("safe/modules/mariadb/conf")).unwrap();
    std::fs::create_dir_all(d.path().join("var/cluster")).unwrap();
    std::fs::write(d.path().join("safe/modules/mariadb/conf/userconfig.xml"), userconfig).unwrap();
    std::fs::write(d.path().join("var/cluster/cluster.xml"), include_str!("../../tests/fixtures/cluster-two-nodes.xml")).unwrap();
    d
}

fn safekit(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_safekit"))
        .args(args)
        .env("SAFE", dir.join("safe"))
        .env("SAFEVAR", dir.join("var"))
        .output()
        .expect("safekit runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn confcheck_names_the_placeholder_with_file_line_column() {
    let d = node_dir("placeholder", include_str!("../../tests/fixtures/seeds/mariadb-linux.userconfig.xml"));
    let (code, _, err) = safekit(d.path(), &["confcheck", "-m", "mariadb"]);
    assert_eq!(code, 1);
    assert!(err.contains("userconfig.xml:18:15: virtual address 'VIRTUAL_TO_BE_DEFINED' is a placeholder"), "{err}");
}

#[test]
fn confcheck_accepts_a_complete_module() {
    let text = include_str!("../../tests/fixtures/seeds/mariadb-linux.userconfig.xml").replace("VIRTUAL_TO_BE_DEFINED", "10.77.0.100");
    let d = node_dir("valid", &text);
    let (code, out, err) = safekit(d.path(), &["confcheck", "-m", "mariadb"]);
    assert_eq!((code, out.trim()), (0, "module mariadb: valid configuration"), "{err}");
    let (code, json, _) = safekit(d.path(), &["config", "-m", "mariadb", "--show"]);
    assert_eq!(code, 0);
    assert!(json.contains("\"dir\": \"/var/lib/mysql\""), "{json}");
    // No daemon runs here: config checks and says when it will apply.
    let (code, out, err) = safekit(d.path(), &["config", "-m", "mariadb"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("module mariadb: the daemon is not running; it applies this configuration when it starts"), "{out}");
}

#[test]
fn a_missing_module_is_one_clear_sentence() {
    let d = node_dir("missing", "<safe/>");
    let (code, _, err) = safekit(d.path(), &["confcheck", "-m", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("modules/nosuch/conf/userconfig.xml:1:1: cannot read the file"), "{err}");
}

#[test]
fn cluster_confcheck_reports_errors_and_success() {
    let d = node_dir("cluster", "<safe/>");
    let (code, out, _) = safekit(d.path(), &["cluster", "confcheck"]);
    assert_eq!(code, 0);
    assert!(out.contains("valid cluster configuration (2 lans, nodes: node1, node2)"), "{out}");
    let bad = d.path().join("bad.xml");
    std::fs::write(&bad, "<cluster><lans><lan name=\"x\"><node name=\"a\"/></lan></lans></cluster>").unwrap();
    let (code, _, err) = safekit(d.path(), &["cluster", "confcheck", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.xml:1:30: <node> needs attribute addr"), "{err}");
}

#[test]
fn module_install_list_uninstall_from_a_directory_and_a_safe_file() {
    let d = node_dir("modules", "<safe/>");
    let repo_module = concat!(env!("CARGO_MANIFEST_DIR"), "/../modules/mariadb");
    let (code, out, err) = safekit(d.path(), &["module", "install", "-m", "db", "-M", "7", repo_module]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("module db installed"), "{out}");
    let (code, _, err) = safekit(d.path(), &["module", "install", "-m", "db", repo_module]);
    assert_eq!(code, 1);
    assert!(err.contains("already installed") && err.contains("-r"), "{err}");
    // A .safe file is a zip of the same layout.
    let safe = d.path().join("web.safe");
    {
        let f = std::fs::File::create(&safe).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("conf/userconfig.xml", opts).unwrap();
        std::io::Write::write_all(&mut z, b"<safe><service mode=\"light\"><user/></service></safe>").unwrap();
        z.start_file("bin/start_both", opts).unwrap();
        std::io::Write::write_all(&mut z, b"#!/bin/sh\nexit 0\n").unwrap();
        z.finish().unwrap();
    }
    let (code, _, err) = safekit(d.path(), &["module", "install", safe.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = safekit(d.path(), &["module", "list"]);
    assert!(out.contains("db (id 7)") && out.contains("web"), "{out}");
    // An entry escaping the module directory is refused, nothing is installed.
    let evil = d.path().join("evil.safe");
    {
        let f = std::fs::File::create(&evil).unwrap();
        let mut z = zip::ZipWriter::new(f);
        z.start_file("../../outside", zip::write::SimpleFileOptions::default()).unwrap();
        z.finish().unwrap();
    }
    let (code, _, err) = safekit(d.path(), &["module", "install", evil.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("outside the module"), "{err}");
    assert!(!d.path().join("outside").exists());
    let (code, _, _) = safekit(d.path(), &["module", "uninstall", "-m", "web"]);
    assert_eq!(code, 0);
    let (_, out, _) = safekit(d.path(), &["module", "list"]);
    assert!(!out.contains("web"), "{out}");
}

#[test]
fn cluster_config_installs_a_checked_file_and_refuses_a_bad_one() {
    let d = node_dir("clusterconfig", "<safe/>");
    let new = d.path().join("new.xml");
    std::fs::write(
        &new,
        "<cluster><lans><lan name=\"x\"><node name=\"a\" addr=\"10.9.0.1\"/><node name=\"b\" addr=\"10.9.0.2\"/></lan></lans></cluster>",
    )
    .unwrap();
    let (code, out, err) = safekit(d.path(), &["cluster", "config", new.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restart the daemon"), "{out}");
    assert!(std::fs::read_to_string(d.path().join("var/cluster/cluster.xml")).unwrap().contains("10.9.0.1"));
    std::fs::write(&new, "<cluster><lans/></cluster>").unwrap();
    let (code, _, err) = safekit(d.path(), &["cluster", "config", new.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("<lans> needs at least one <lan>"), "{err}");
    assert!(
        std::fs::read_to_string(d.path().join("var/cluster/cluster.xml")).unwrap().contains("10.9.0.1"),
        "the installed file is untouched"
    );
}

#[test]
fn one_invalid_module_does_not_keep_the_daemon_from_running_the_others() {
    // Loopback only: node1 is 127.0.0.1, node2 127.0.0.2 (nothing answers there).
    let d = tempdir::Dir::new("broken-module");
    let cluster = r#"<cluster><lans><lan name="default"><node name="node1" addr="127.0.0.1"/><node name="node2" addr="127.0.0.2"/></lan></lans></cluster>"#;
    let good = r#"<safe><service mode="mirror"><heart pulse="100ms" timeout="1000ms"><heartbeat name="default"/></heart></service></safe>"#;
    let bad = r#"<safe><service mode="mirror"><heart><heartbeat name="nosuchlan"/></heart></service></safe>"#;
    for (m, text) in [("good", good), ("bad", bad)] {
        std::fs::create_dir_all(d.path().join(format!("safe/modules/{m}/conf"))).unwrap();
        std::fs::write(d.path().join(format!("safe/modules/{m}/conf/userconfig.xml")), text).unwrap();
    }
    std::fs::create_dir_all(d.path().join("var/cluster")).unwrap();
    std::fs::write(d.path().join("var/cluster/cluster.xml"), cluster).unwrap();
    std::fs::write(d.path().join("var/cluster/cluster.key"), "ab".repeat(32)).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_safekit"))
        .args(["daemon", "--node", "node1"])
        .env("SAFE", d.path().join("safe"))
        .env("SAFEVAR", d.path().join("var"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let out = loop {
        let (code, out, err) = safekit(d.path(), &["state", "-v"]);
        if code == 0 || std::time::Instant::now() > end || matches!(daemon.try_wait(), Ok(Some(_))) {
            break format!("{out}{err}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(daemon.id()).unwrap()), nix::sys::signal::Signal::SIGTERM);
    let status = daemon.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(daemon.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(out.contains("good") && out.contains("STOP"), "the valid module runs: {out}\n{stderr}");
    assert!(out.contains("config.error") && out.contains("nosuchlan"), "the invalid one is reported: {out}\n{stderr}");
    assert!(status.success(), "{stderr}");
}

#[test]
fn webservercfg_sets_hashed_passwords_in_safekits_syntax() {
    let d = tempdir::Dir::new("webservercfg");
    let (code, out, err) = safekit(d.path(), &["webservercfg", "-passwd", "first-password"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web-service user admin"), "{out}");
    let path = d.path().join("safe/web/conf/user.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("admin:$argon2id$") && !text.contains("first-password"), "{text}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "readable by root only");
    // -passwd - reads the password from the standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_safekit"))
        .args(["webservercfg", "-passwd", "-", "-user", "operator1"])
        .env("SAFE", d.path().join("safe"))
        .env("SAFEVAR", d.path().join("var"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"from-stdin-pw\n").unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().any(|l| l.starts_with("operator1:$argon2id$")) && text.lines().count() == 2, "{text}");
    let (code, _, err) = safekit(d.path(), &["webservercfg", "-passwd", "short"]);
    assert_ne!(code, 0);
    assert!(err.contains("at least 8 characters"), "{err}");
}

#[test]
fn snapshot_writes_a_zip_without_a_running_daemon() {
    let d = node_dir("snapshot", "<safe><service mode=\"light\"><user/></service></safe>");
    std::fs::write(d.path().join("var/cluster/cluster.key"), "00").unwrap();
    let zip = d.path().join("snap.zip");
    let (code, out, err) = safekit(d.path(), &["snapshot", "-m", "mariadb", zip.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let mut a = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).expect("a zip");
    assert!(a.by_name("mariadb/SAFE/conf/userconfig.xml").is_ok());
    assert!(a.by_name("mariadb/system.txt").is_ok());
    let mut report = String::new();
    std::io::Read::read_to_string(&mut a.by_name("mariadb/report.json").unwrap(), &mut report).unwrap();
    assert!(report.contains("does not run"), "{report}");
}

/// Each template of `modules/` as a user meets it: the .safe the binary
/// writes into SAFE/Application_Modules/generic/, installed with its blanks
/// (each listed with `file:line:column`), `confcheck` listing exactly those
/// and nothing else, then filled as the README says: valid.
#[test]
fn every_template_installs_with_its_blanks_and_is_valid_once_filled() {
    let d = tempdir::Dir::new("templates");
    std::fs::create_dir_all(d.path().join("var/cluster")).unwrap();
    std::fs::write(d.path().join("var/cluster/cluster.xml"), include_str!("../../tests/fixtures/cluster-two-nodes.xml")).unwrap();
    let data = d.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let data = data.to_str().unwrap().to_string();
    // (template, its blanks, what else to fill for this machine)
    let templates: [Template; 5] = [
        ("mirror", &["VIRTUAL_IP", "REPLICATED_DIR", "SERVICES"], vec![fill("REPLICATED_DIR", &data), fill("SERVICES", "myapp")]),
        (
            "mariadb",
            &["VIRTUAL_IP"],
            vec![(r#"name="DATADIR" value="/var/lib/mysql""#.into(), format!(r#"name="DATADIR" value="{data}""#))],
        ),
        ("postgresql", &["VIRTUAL_IP", "PGDATA"], vec![fill("PGDATA", &data)]),
        ("farm", &["VIRTUAL_IP", "PORT", "SERVICES"], vec![fill("PORT", "8080"), fill("SERVICES", "php8.2-fpm nginx")]),
        ("nginx_farm", &["VIRTUAL_IP"], vec![]),
    ];
    // The binary carries them as .safe files and writes them where the console looks.
    let (code, out, err) = safekit(d.path(), &["module", "templates"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().filter(|l| l.ends_with(".safe (written)")).count(), out.lines().count(), "{out}");
    for (name, blanks, mut filled) in templates {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../modules/").to_string() + name;
        let package = d.path().join("safe/Application_Modules/generic").join(format!("{name}.safe"));
        assert!(out.contains(&package.display().to_string()), "{name}: {out}");
        let src = package.to_str().unwrap().to_string();
        for script in std::fs::read_dir(Path::new(&dir).join("bin")).unwrap().flatten() {
            let ok = Command::new("sh").arg("-n").arg(script.path()).status().unwrap().success();
            assert!(ok, "{}: shell syntax", script.path().display());
        }
        let (code, out, err) = safekit(d.path(), &["module", "install", "-m", name, &src]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(err.contains(&format!("module {name} cannot start until its blanks are filled")), "{name}: {err}");
        for b in blanks {
            let line = out
                .lines()
                .find(|l| l.contains(&format!("macro {b} is blank")))
                .unwrap_or_else(|| panic!("{name}: {b} not listed:\n{out}"));
            assert!(line.trim_start().starts_with("conf/userconfig.xml:"), "{name}: file:line:column first: {line}");
        }
        let (code, out, err) = safekit(d.path(), &["confcheck", "-m", name]);
        assert_eq!(code, 1, "{name}: {out}");
        let listed: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(listed.len(), blanks.len(), "{name}: exactly the blanks:\n{err}");
        filled.push(fill("VIRTUAL_IP", "10.77.0.100"));
        let conf = d.path().join("safe/modules").join(name).join("conf/userconfig.xml");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        for (from, to) in &filled {
            assert!(text.contains(from.as_str()), "{name}: {from}");
            text = text.replace(from.as_str(), to);
        }
        std::fs::write(&conf, text).unwrap();
        let (code, out, err) = safekit(d.path(), &["confcheck", "-m", name]);
        assert_eq!(code, 0, "{name} filled: {err}");
        assert!(out.contains(&format!("module {name}: valid configuration")), "{name}: {out}");
    }
    // The ports a firewall must open, derived from the ids (rank by name here).
    let (code, out, err) = safekit(d.path(), &["module", "getports", "-m", "mirror"]);
    assert_eq!(code, 0, "{err}");
    for want in
        ["module mirror (id 3):", "UDP 8890  heart (heartbeats)", "TCP 5608  rfs (replication and reintegration)", "TCP 9010  webconsole"]
    {
        assert!(out.contains(want), "{want}\nnot in\n{out}");
    }
    let (_, out, _) = safekit(d.path(), &["module", "getports", "-m", "farm"]);
    assert!(out.contains("module farm (id 1):") && out.contains("UDP 4803  farm (membership)"), "{out}");
}

/// A template's name, its blanks, and the other values to replace.
type Template = (&'static str, &'static [&'static str], Vec<(String, String)>);

/// The blank macro `name` and its filled form.
fn fill(name: &str, value: &str) -> (String, String) {
    (format!(r#"name="{name}" value="""#), format!(r#"name="{name}" value="{value}""#))
}
