//! `safekit demo --keep`: the demo cluster left running after the demo,
//! to try the console, the CLI and the virtual IP by hand, and `safekit
//! demo --clean` to remove it. What was left is written to [`STATE`]
//! (the daemons', the applications' and the forwarder's PIDs, the
//! namespaces, the files), so the clean-up ends exactly those processes,
//! by PID, after checking each is still a safekit process.
//!
//! The nodes live in network namespaces this machine's browser cannot
//! reach; a small forwarder (`safekit demo-forward`) listens on this
//! machine's 127.0.0.1 and connects, from inside the demo client's
//! namespace, to node1's web service. No other address is used.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where a kept demo is described.
pub const STATE: &str = "/run/safekit-demo.json";

/// Where the console of a kept demo is reached on this machine.
pub const CONSOLE_PORT: u16 = 9010;

/// What a kept demo left running.
#[derive(Debug, Serialize, Deserialize)]
pub struct Kept {
    /// Daemons, applications and the forwarder.
    pub pids: Vec<i32>,
    /// Network namespaces.
    pub namespaces: Vec<String>,
    /// The nodes' files.
    pub root: PathBuf,
}

/// Writes the description of a kept demo.
pub fn save(k: &Kept) -> Result<(), String> {
    let text = serde_json::to_string_pretty(k).map_err(|e| e.to_string())?;
    std::fs::write(STATE, text).map_err(|e| format!("{STATE}: {e}"))
}

/// True if `pid` is a process of this safekit binary (not a PID reused by another program).
fn is_safekit(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).next().is_some_and(|argv0| argv0.ends_with(b"safekit")))
}

/// `safekit demo --clean`: ends a kept demo's processes (SIGTERM, so the
/// daemons run their stop scripts; SIGKILL after 15 s), deletes its
/// namespaces and files.
pub fn clean() -> Result<Vec<String>, String> {
    let text = match std::fs::read_to_string(STATE) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec!["no kept demo (nothing to clean)".into()]),
        Err(e) => return Err(format!("{STATE}: {e}")),
    };
    let k: Kept = serde_json::from_str(&text).map_err(|e| format!("{STATE}: {e}"))?;
    let mut done = Vec::new();
    let ours: Vec<i32> = k.pids.iter().copied().filter(|p| *p > 1 && is_safekit(*p)).collect();
    for pid in &ours {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGTERM);
    }
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && ours.iter().any(|p| is_safekit(*p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in ours.iter().filter(|p| is_safekit(**p)) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
    }
    done.push(format!("ended {} processes", ours.len()));
    for ns in &k.namespaces {
        let _ = std::process::Command::new("ip").args(["netns", "del", ns]).output();
    }
    done.push(format!("deleted namespaces {}", k.namespaces.join(", ")));
    if k.root.starts_with(std::env::temp_dir()) {
        let _ = std::fs::remove_dir_all(&k.root);
        done.push(format!("removed {}", k.root.display()));
    }
    std::fs::remove_file(STATE).map_err(|e| format!("{STATE}: {e}"))?;
    Ok(done)
}

/// Starts the forwarder as a process of its own (it outlives the demo
/// command) and waits (5 s at most) until it accepts, so that the address
/// printed next works at once; its PID.
pub fn spawn_forwarder(exe: &Path, listen: SocketAddr, to: SocketAddr, netns: &str, log: &Path) -> Result<i32, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = std::process::Command::new(exe)
        .args(["demo-forward", "--listen", &listen.to_string(), "--to", &to.to_string(), "--netns", netns])
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the forwarder: {e}"))?;
    let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    for _ in 0..50 {
        if TcpStream::connect_timeout(&listen, Duration::from_millis(100)).is_ok() {
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("the forwarder ended ({status}): {}", said.trim()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("the forwarder does not accept on {listen} after 5 s (see {})", log.display()))
}

/// Connects to `to` from inside network namespace `netns`.
fn connect_in(netns: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let file = std::fs::File::open(format!("/run/netns/{netns}"))?;
    // A thread of its own enters the namespace; the socket it makes stays there.
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            TcpStream::connect_timeout(&to, Duration::from_secs(3))
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("connect thread failed")))
    })
}

/// Copies `from` to `to` until either side ends.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.flush();
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// `safekit demo-forward`: accepts on `listen` (this machine's loopback)
/// and joins each connection to `to` inside `netns`; runs until killed
/// (`safekit demo --clean`). At most 64 connections at once.
pub fn forward(listen: SocketAddr, to: SocketAddr, netns: &str) -> Result<(), String> {
    if !listen.ip().is_loopback() {
        return Err(format!("{listen}: the forwarder listens on loopback only"));
    }
    let l = TcpListener::bind(listen).map_err(|e| format!("{listen}: {e}"))?;
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for client in l.incoming() {
        let Ok(client) = client else { continue };
        if open.load(std::sync::atomic::Ordering::Relaxed) >= 64 {
            continue;
        }
        let Ok(server) = connect_in(netns, to) else { continue };
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let count = open.clone();
        std::thread::spawn(move || pump(c2, server));
        std::thread::spawn(move || {
            pump(s2, client);
            count.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    Ok(())
}
