//! The `nginx_farm` template of `modules/`, walked as a user does:
//! installed with its blank (`safekit module install` says what to fill),
//! filled, checked. It has the shape of SafeKit's `apache_farm`:
//! vmac_directed, a rule by client address on the web port, a TCP checker
//! on the VIP — run by three real daemons in namespaces with real nginx:
//! every client answered by the nginx of the node the bucket table
//! predicts, a node stopped → its clients served by the others, nginx
//! stopped with the module.

mod common;
mod farmnet;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use farmnet::daemons::{started_farm, table, until_served_over, CLUSTER};
use farmnet::{Farm, Vip, NODES, VIP4};

const PORT: u16 = 8080;

fn template(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules").join(name)
}

/// `safekit` with this node's SAFE and SAFEVAR under `dir`: (success, stdout + stderr).
fn safekit(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(common::exe())
        .args(args)
        .env("SAFE", dir.join("safe"))
        .env("SAFEVAR", dir.join("var"))
        .env("SAFEKIT_NODE", "n1")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn fill(conf: &Path, pairs: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(conf).unwrap();
    for (from, to) in pairs {
        assert!(text.contains(from), "{from} not in {}", conf.display());
        text = text.replace(from, to);
    }
    std::fs::write(conf, text).unwrap();
}

/// Ends the nginx masters the module started (their pid files), also when the test fails.
struct Nginx(Vec<PathBuf>);

impl Drop for Nginx {
    fn drop(&mut self) {
        for pid_file in &self.0 {
            let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok()) else { continue };
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
}

#[test]
fn nginx_farm_runs_on_three_nodes_with_its_blanks_filled() {
    let _serial = common::serial();
    if !common::privileged(
        "farm template test needs root, iproute2, nftables and nginx (apt-get install iproute2 nftables nginx-light)",
        &["ip", "nft", "nginx"],
        false,
    ) {
        return;
    }
    let _net = Farm::setup("skf55", Vip::No).unwrap();
    farmnet::wait_apps();
    let pids = std::sync::Mutex::new(Vec::<PathBuf>::new());
    // Each node: the template installed as a user would, then filled: the
    // VIP, the port, and nginx started directly with this node's file
    // (no systemd in a namespace), which answers with the node's name.
    let prepare = |i: usize, dir: &Path| {
        let src = template("nginx_farm");
        let (ok, said) = safekit(dir, &["module", "install", "-m", "nginx_farm", "-M", "1", src.to_str().unwrap()]);
        assert!(ok && said.contains("macro VIRTUAL_IP is blank"), "{said}");
        let work = dir.join("nginx");
        std::fs::create_dir_all(work.join("tmp")).unwrap();
        let conf = work.join("nginx.conf");
        let pid = work.join("nginx.pid");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\npid {pid};\nerror_log {err};\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {tmp};\n  server {{\n    listen {PORT};\n    location / {{ return 200 \"{node}\"; }}\n  }}\n}}\n",
                pid = pid.display(),
                err = work.join("error.log").display(),
                tmp = work.join("tmp").display(),
                node = NODES[i],
            ),
        )
        .unwrap();
        pids.lock().unwrap().push(pid);
        fill(
            &dir.join("safe/modules/nginx_farm/conf/userconfig.xml"),
            &[
                (r#"name="VIRTUAL_IP" value="""#, &format!(r#"name="VIRTUAL_IP" value="{VIP4}""#)),
                (r#"name="NGINX_PORT" value="80""#, &format!(r#"name="NGINX_PORT" value="{PORT}""#)),
                (r#"<var name="NGINX_CONF" value=""/>"#, &format!(r#"<var name="NGINX_CONF" value="{}"/>"#, conf.display())),
            ],
        );
        let (ok, said) = safekit(dir, &["confcheck", "-m", "nginx_farm"]);
        assert!(ok, "{said}");
    };
    let d = started_farm(CLUSTER, &[], &prepare, "nginx_farm");
    let _nginx = Nginx(pids.lock().unwrap().clone());
    until_served_over("nginx_farm UP on 3 nodes", &table(&NODES), Duration::from_secs(30), &d, (false, PORT));
    let promisc = Command::new("ip").args(["netns", "exec", &farmnet::ns("n1"), "ip", "link", "show", "eth0"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&promisc.stdout).contains("PROMISC"), "vmac_directed: no promiscuous mode");
    let log = d.log_of(0, "nginx_farm");
    assert!(log.contains("start_both: starting nginx"), "{log}");
    // The TCP checker on VIP:port (the node's own connection, not load-balanced) is up.
    let state = d.cli(0, &["state", "-v", "-m", "nginx_farm"]);
    println!("nginx_farm: n1 `safekit state -v`:\n{}", state.trim_end());
    assert!(state.contains("UP Ready") && state.contains("(load: nginx_0 33%)"), "{state}");
    assert!(state.lines().any(|l| l.contains("tcp.nginx") && l.trim_end().ends_with("up")), "{state}");

    // n2 stopped: its clients are served by n1 and n3; its nginx is gone.
    println!("nginx_farm: n2 stop: {}", d.cli(1, &["stop", "-m", "nginx_farm"]).trim());
    until_served_over("n2 stopped", &table(&["n1", "n3"]), Duration::from_secs(30), &d, (false, PORT));
    let pid2 = d.dir(1).join("nginx/nginx.pid");
    assert!(!pid2.exists(), "stop_both stopped n2's nginx ({} still there)", pid2.display());
    for i in [0, 2] {
        d.cli(i, &["stop", "-m", "nginx_farm"]);
    }
}
