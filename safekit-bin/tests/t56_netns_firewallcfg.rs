//! `safekit firewallcfg add|del [AM]` on a node whose nftables input
//! chain drops by default (namespace n1 of the farm network, a client
//! beside it): the module's ports are closed before, open after `add`
//! (a TCP connection to the replication port, a UDP datagram to the
//! heartbeat port answered), `add` again changes nothing, `del` closes
//! them and removes exactly the rules it added; `add` without a module
//! also opens the web service's port, under its own tag. The same with ufw
//! enabled in that namespace, where a port the administrator allowed
//! before stays allowed after `del`.

mod common;
mod farmnet;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use farmnet::{in_ns, ns, Farm, Vip};

const FIREWALL: &str = "table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iif \"lo\" accept
    icmp type echo-request accept
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, echo-request } accept
  }
}
";

/// `safekit` run inside n1's namespace with its SAFE and SAFEVAR under `dir`.
fn safekit_on_n1(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns("n1")])
        .arg(common::exe())
        .args(args)
        .env("SAFE", dir.join("safe"))
        .env("SAFEVAR", dir.join("var"))
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A TCP listener on `tcp` and a UDP echo on `udp`, in n1, until `stop`.
fn listeners(tcp: u16, udp: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let file = std::fs::File::open(format!("/run/netns/{}", ns("n1"))).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(std::os::fd::AsFd::as_fd(&file), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let t = std::net::TcpListener::bind(("0.0.0.0", tcp)).unwrap();
        t.set_nonblocking(true).unwrap();
        let u = std::net::UdpSocket::bind(("0.0.0.0", udp)).unwrap();
        u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 16];
        while !stop.load(Ordering::Relaxed) {
            let _ = t.accept();
            if let Ok((n, from)) = u.recv_from(&mut buf) {
                let _ = u.send_to(&buf[..n], from);
            }
        }
    })
}

/// From the client: (TCP connect to n1:`tcp` works, UDP to n1:`udp` answered).
fn reachable(tcp: u16, udp: u16) -> (bool, bool) {
    in_ns("cl", move || {
        let to = |p| std::net::SocketAddr::from(([10, 82, 0, 1], p));
        let t = std::net::TcpStream::connect_timeout(&to(tcp), Duration::from_millis(500)).is_ok();
        let s = std::net::UdpSocket::bind("10.82.0.10:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        s.send_to(b"hb", to(udp)).unwrap();
        let mut buf = [0u8; 16];
        (t, s.recv_from(&mut buf).is_ok())
    })
}

fn tagged_rules() -> String {
    let out = Command::new("ip").args(["netns", "exec", &ns("n1"), "nft", "list", "chain", "inet", "filter", "input"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("safekit:")).collect::<Vec<_>>().join("\n")
}

/// n1's SAFE and SAFEVAR under a fresh temporary directory named `name`:
/// the cluster n1/n2 and a mirror module `db` with a fixed id 3
/// (heartbeats UDP 8890, replication TCP 5608).
fn node_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("var/cluster")).unwrap();
    let pair =
        r#"<cluster><lans><lan name="default"><node name="n1" addr="10.82.0.1"/><node name="n2" addr="10.82.0.2"/></lan></lans></cluster>"#;
    std::fs::write(dir.join("var/cluster/cluster.xml"), pair).unwrap();
    let conf = dir.join("safe/modules/db/conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(dir.join("safe/modules/db/id"), "3").unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        conf.join("userconfig.xml"),
        format!(
            r#"<safe><service mode="mirror"><heart><heartbeat name="default"/></heart>
<rfs><replicated dir="{}"/></rfs></service></safe>"#,
            data.display()
        ),
    )
    .unwrap();
    dir
}

#[test]
fn firewallcfg_opens_and_closes_exactly_the_module_ports() {
    let _serial = common::serial();
    if !common::privileged("firewall test needs root, iproute2 and nftables (apt-get install iproute2 nftables)", &["ip", "nft"], false) {
        return;
    }
    let _net = Farm::setup("skf56", Vip::No).unwrap();
    let dir = node_dir("safekit-t56");
    let (ok, said) = safekit_on_n1(&dir, &["module", "getports", "-m", "db"]);
    assert!(ok && said.contains("UDP 8890") && said.contains("TCP 5608"), "{said}");

    // Nothing filters yet: nothing to open, and it says so.
    let (ok, said) = safekit_on_n1(&dir, &["firewallcfg", "add", "db"]);
    assert!(ok && said.contains("nothing to open"), "{said}");

    let nft_in_n1 = Command::new("ip").args(["netns", "exec", &ns("n1"), "nft", "-f", "-"]).stdin(std::process::Stdio::piped()).spawn();
    let mut child = nft_in_n1.unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), FIREWALL.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let stop = Arc::new(AtomicBool::new(false));
    let l = listeners(5608, 8890, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(reachable(5608, 8890), (false, false), "the firewall drops them at first");

    let (ok, said) = safekit_on_n1(&dir, &["firewallcfg", "add", "db"]);
    println!("firewallcfg add db:\n{}", said.trim_end());
    assert!(ok, "{said}");
    assert_eq!(reachable(5608, 8890), (true, true), "open after add");
    let once = tagged_rules();
    assert_eq!(once.lines().count(), 2, "{once}");
    let (ok, said) = safekit_on_n1(&dir, &["firewallcfg", "add", "db"]);
    assert!(ok, "{said}");
    assert_eq!(tagged_rules(), once, "add twice: one copy");

    let (ok, said) = safekit_on_n1(&dir, &["firewallcfg", "add"]);
    assert!(ok && said.contains("node: nftables inet filter input: 9010/tcp accepted"), "{said}");
    let (ok, said) = safekit_on_n1(&dir, &["firewallcfg", "del", "db"]);
    println!("firewallcfg del db:\n{}", said.trim_end());
    assert!(ok && said.contains("2 rule(s) tagged safekit:db removed"), "{said}");
    assert_eq!(reachable(5608, 8890), (false, false), "closed after del");
    assert!(tagged_rules().contains("tcp dport 9010") && !tagged_rules().contains("5608"), "only db's rules removed: {}", tagged_rules());
    let (ok, said) = safekit_on_n1(&dir, &["firewallcfg", "del"]);
    assert!(ok, "{said}");
    assert!(tagged_rules().is_empty(), "{}", tagged_rules());

    stop.store(true, Ordering::Relaxed);
    let _ = l.join();
    let _ = std::fs::remove_dir_all(&dir);
}

/// ufw in namespace n1 with a private copy of its configuration: each call
/// runs in a mount namespace of its own where the copy is bound over
/// /etc/ufw (this machine's ufw files never change; the rules live in n1's
/// netfilter and go with the namespace).
struct Ufw {
    conf: std::path::PathBuf,
    safe: std::path::PathBuf,
}

impl Ufw {
    fn new(dir: &Path) -> Self {
        let conf = dir.join("etc-ufw");
        let copy = Command::new("cp").arg("-a").arg("/etc/ufw").arg(&conf).status().unwrap();
        assert!(copy.success());
        // No sysctl changes from ufw.
        std::fs::write(conf.join("sysctl.conf"), "").unwrap();
        Self { conf, safe: dir.to_path_buf() }
    }

    /// `script` in n1 with the private /etc/ufw, SAFE and SAFEVAR set, the
    /// binary under test first on PATH: (success, output).
    fn sh(&self, script: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns("n1"), "unshare", "--mount", "sh", "-ec"])
            .arg(format!("mount --make-rprivate /\nmount --bind \"$1\" /etc/ufw\nexport PATH=\"$2:$PATH\"\n{script}"))
            .arg("ufw-n1")
            .arg(&self.conf)
            .arg(common::exe().parent().unwrap())
            .env("SAFE", self.safe.join("safe"))
            .env("SAFEVAR", self.safe.join("var"))
            .output()
            .unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    fn status(&self) -> String {
        let (ok, text) = self.sh("ufw status");
        assert!(ok, "{text}");
        text
    }
}

#[test]
fn firewallcfg_with_ufw_opens_and_closes_only_its_own_rules() {
    let _serial = common::serial();
    if !common::privileged(
        "ufw firewall test needs root, iproute2 and ufw (apt-get install iproute2 ufw)",
        &["ip", "ufw", "unshare"],
        false,
    ) {
        return;
    }
    let _net = Farm::setup("skf56", Vip::No).unwrap();
    let dir = node_dir("safekit-t56u");
    let ufw = Ufw::new(&dir);
    // ufw on, denying input; the administrator allowed the web port already.
    let (ok, said) = ufw.sh("ufw --force enable\nufw allow 9010/tcp");
    assert!(ok, "{said}");
    let stop = Arc::new(AtomicBool::new(false));
    let l = listeners(5608, 8890, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(reachable(5608, 8890), (false, false), "ufw drops them at first");

    let (ok, said) = ufw.sh("safekit firewallcfg add db");
    println!("firewallcfg add db (ufw):\n{}", said.trim_end());
    assert!(ok && said.contains("ufw: 5608/tcp allowed") && said.contains("ufw: 8890/udp allowed"), "{said}");
    assert_eq!(reachable(5608, 8890), (true, true), "open after add");
    let once = ufw.status();
    let (ok, said) = ufw.sh("safekit firewallcfg add db");
    assert!(ok, "{said}");
    assert_eq!(ufw.status(), once, "add twice: the same rules");

    let (ok, said) = ufw.sh("safekit firewallcfg add");
    assert!(ok && said.contains("ufw: 9010/tcp already allowed by another rule"), "{said}");
    let (ok, said) = ufw.sh("safekit firewallcfg del db");
    println!("firewallcfg del db (ufw):\n{}", said.trim_end());
    assert!(ok && said.contains("rule(s) tagged safekit:db removed"), "{said}");
    assert_eq!(reachable(5608, 8890), (false, false), "closed after del");
    let (ok, said) = ufw.sh("safekit firewallcfg del");
    assert!(ok, "{said}");
    let after = ufw.status();
    assert!(!after.contains("safekit:") && after.contains("9010/tcp"), "only safekit's rules removed, the administrator's kept:\n{after}");

    stop.store(true, Ordering::Relaxed);
    let _ = l.join();
    let _ = std::fs::remove_dir_all(&dir);
}
