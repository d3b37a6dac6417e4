//! `safekit demo-httpload`: a small HTTP/1.1 load generator for the web
//! service benchmark (bench/api-latency.sh). `conns` threads each keep
//! one connection open and send GET requests one after another for
//! `seconds`; each request's time from send to the end of its body is
//! recorded. Prints requests, errors, requests/s and the p50/p99 latency.
//! With a TLS client configuration (the node's CA: `--https`), every
//! connection is HTTPS, handshake included in the first request's time.
//! Loopback or namespace addresses only: the benchmark gives it the node's
//! 127.0.0.1 inside the node's namespace.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection, plain or TLS.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

type Tls = Option<Arc<rustls::ClientConfig>>;

fn connect(addr: SocketAddr, tls: &Tls) -> Result<Box<dyn Stream>, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    match tls {
        None => Ok(Box::new(s)),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let c = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
            Ok(Box::new(rustls::StreamOwned::new(c, s)))
        }
    }
}

/// Most requests one thread sends, whatever the time.
const MAX_REQUESTS: usize = 10_000_000;

fn one(reader: &mut BufReader<Box<dyn Stream>>, request: &[u8]) -> Result<u16, String> {
    reader.get_mut().write_all(request).map_err(|e| e.to_string())?;
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| e.to_string())?;
    let code = status.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad status line {status:?}"))?;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().map_err(|_| format!("bad length {v}"))?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(code)
}

fn worker(addr: SocketAddr, tls: &Tls, request: &[u8], end: Instant) -> (Vec<u32>, usize) {
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut conn: Option<BufReader<Box<dyn Stream>>> = None;
    for _ in 0..MAX_REQUESTS {
        if Instant::now() >= end {
            break;
        }
        if conn.is_none() {
            match connect(addr, tls) {
                Ok(s) => conn = Some(BufReader::new(s)),
                Err(_) => {
                    errors += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let t = Instant::now();
        match one(c, request) {
            Ok(200) => lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX)),
            _ => {
                errors += 1;
                conn = None; // reconnect (the server ends a connection after 60 s)
            }
        }
    }
    (lat, errors)
}

/// Runs the load and prints one summary line; `tls`: HTTPS trusting that
/// configuration's CA.
pub(crate) fn run(addr: SocketAddr, tls: Tls, path: &str, bearer: Option<&str>, seconds: u64, conns: usize) -> Result<(), String> {
    let auth = bearer.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\n").into_bytes();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..conns.max(1))
        .map(|_| {
            let (r, tls) = (request.clone(), tls.clone());
            std::thread::spawn(move || worker(addr, &tls, &r, end))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().map_err(|_| "a load thread panicked".to_string())?;
        all.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    println!("requests {} errors {errors} req/s {:.0} p50_us {} p99_us {}", all.len(), all.len() as f64 / secs, pct(0.50), pct(0.99));
    if all.is_empty() {
        return Err("no request answered 200".into());
    }
    Ok(())
}
