//! The demo's application and its client: the HTTP answer naming the
//! serving node, the probe through the VIP, and calls to a node's web service.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Demo, APP_PORT, VIP};

/// The demo application: answers every HTTP request with the serving node
/// (IPv6 and IPv4 when the kernel has IPv6, else IPv4). It answers once
/// the request's head has arrived, or after 5 s without one.
pub fn serve_app(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|_| TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))))?;
    let node = std::env::var("SAFEKIT_NODE").unwrap_or_else(|_| "unknown".into());
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let body = format!("{node}\n");
        let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
    Ok(())
}

/// One probe result: when, and which node answered (None = failure).
pub type Sample = (Duration, Option<String>);

/// Probes `http://VIP:8080/` every 10 ms from inside namespace `ns` (a
/// thread of its own, moved into that namespace) until `stop` is set.
pub fn probe(ns: &str, stop: Arc<AtomicBool>, out: Arc<Mutex<Vec<Sample>>>) -> Result<std::thread::JoinHandle<()>, String> {
    probe_from(ns, Instant::now(), stop, out)
}

/// [`probe`] with sample times counted from `start`.
pub fn probe_from(
    ns: &str,
    start: Instant,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Sample>>>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("namespace {ns}: {e}"))?;
    Ok(std::thread::spawn(move || {
        if nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return;
        }
        let addr: SocketAddr = format!("{VIP}:{APP_PORT}").parse().unwrap_or_else(|_| SocketAddr::from(([10, 77, 0, 100], APP_PORT)));
        // Bounded: at most ten minutes of probing.
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(600) {
            let t = start.elapsed();
            let answer = (|| -> Option<String> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
                s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
                let mut r = String::new();
                s.read_to_string(&mut r).ok()?;
                r.rsplit("\r\n\r\n").next().map(|b| b.trim().to_string()).filter(|b| !b.is_empty())
            })();
            if let Ok(mut v) = out.lock() {
                v.push((t, answer));
            }
            std::thread::sleep(Duration::from_millis(10).saturating_sub(start.elapsed() - t));
        }
    }))
}

/// `GET path` on node `i`'s web service (port 9010), from the client's
/// namespace: the status code and the body, `None` if nothing answered
/// within two seconds.
pub fn web_get(i: usize, path: &str) -> Option<(u16, String)> {
    web_call(i, "GET", path, &[], "").map(|(code, _, body)| (code, body))
}

/// One HTTP/1.0 request to node `i`'s web service from the client's
/// namespace: the status code, the response headers and the body.
pub fn web_call(i: usize, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String, String)> {
    let addr = SocketAddr::from(([10, 77, 0, u8::try_from(i + 1).unwrap_or(1)], 9010));
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let request = format!("{method} {path} HTTP/1.0\r\nHost: 10.77.0.{}\r\nContent-Length: {}\r\n{extra}\r\n{body}", i + 1, body.len());
    in_client_ns(move || -> Option<(u16, String, String)> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        let code = r.split(' ').nth(1)?.parse().ok()?;
        let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
        Some((code, head.to_string(), body.to_string()))
    })
    .join()
    .ok()
    .flatten()
    .flatten()
}

/// Runs `f` on a thread of its own inside the client's namespace (its
/// sockets reach only 10.77.0.0/24); `None` if the namespace cannot be
/// entered.
pub fn in_client_ns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<Option<T>> {
    let file = std::fs::File::open(format!("/run/netns/{}", Demo::client_ns()));
    std::thread::spawn(move || {
        nix::sched::setns(file.ok()?.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        Some(f())
    })
}

/// The outage seen by the probe: from the last answer of `from` to the first
/// answer of another node.
pub fn outage(samples: &[Sample], from: &str) -> Option<Duration> {
    let last_old = samples.iter().rposition(|(_, a)| a.as_deref() == Some(from))?;
    let first_new = samples[last_old..].iter().find(|(_, a)| a.as_ref().is_some_and(|n| n != from))?;
    Some(first_new.0 - samples[last_old].0)
}

/// A writing application (a child process) that prints the number of each
/// record once it is acknowledged (0, 1, 2…; `safekit demo-writer` prints
/// it after the record's fsync returned): `acked` is one more than the
/// last number printed (0 = none).
pub struct Writer {
    child: Child,
    acked: Arc<AtomicU64>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Spawns `cmd`, its standard output read here.
    pub fn spawn(cmd: &mut Command) -> Result<Self, String> {
        let mut child = cmd.stdout(Stdio::piped()).spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
        let out = child.stdout.take().ok_or("no standard output")?;
        let acked = Arc::new(AtomicU64::new(0));
        let a = acked.clone();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(n) = l.trim().parse::<u64>() {
                    a.store(n + 1, Ordering::SeqCst);
                }
            }
        });
        Ok(Self { child, acked, reader: Some(reader) })
    }

    /// How many records were acknowledged (0..n).
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until `n` records are acknowledged; the time it took.
    pub fn wait_for(&self, n: u64, limit: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        while self.acked() < n {
            if start.elapsed() > limit {
                return Err(format!("the writer acknowledged only {} records in {} s (waiting for {n})", self.acked(), limit.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(start.elapsed())
    }

    /// Ends the writer (SIGKILL: it dies with its node); what it printed before counts.
    pub fn stop(mut self) -> u64 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.acked()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Record `i` of `safekit demo-writer`, at `i ×` its length in the file.
pub fn record(i: u64) -> String {
    format!("record {i:08}\n")
}

/// Every record below `acked` is in `file` (a node's copy of the journal);
/// else the first missing one.
pub fn missing_record(file: &Path, acked: u64) -> Option<u64> {
    let data = std::fs::read(file).unwrap_or_default();
    (0..acked).find(|&i| {
        let rec = record(i);
        let off = usize::try_from(i).unwrap_or(usize::MAX).saturating_mul(rec.len());
        data.get(off..off.saturating_add(rec.len())) != Some(rec.as_bytes())
    })
}
