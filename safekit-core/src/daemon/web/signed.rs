//! Node-to-node calls: one node (or `safekit -H` run as root on a node)
//! calls any endpoint of another node's web service on behalf of a user.
//! The caller first fetches a fresh challenge (`GET
//! /api/v1.0/node/challenge`), then sends its request with an HMAC-SHA256
//! under the cluster key over the challenge, the method, the path and
//! query, the user it acts for, that user's role and the body's digest.
//! The callee accepts each challenge once, within [`CHALLENGE_TTL`]: a
//! recorded call cannot be replayed, and no clock needs to agree between
//! nodes. The callee then serves the call as that user with that role: the
//! roles are enforced where the endpoint is, the same as for a local call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hmac::Mac;
use http_body_util::{BodyExt, Full};
use sha2::Digest;

use super::accounts::Role;
use super::Web;
use crate::key::ClusterKey;

/// How long a challenge may wait for its call.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(30);

/// Challenges outstanding at once; past it new ones are refused (503)
/// until the oldest expire, so a flood of questions cannot grow memory.
pub const MAX_CHALLENGES: usize = 4096;

/// Challenges outstanding for one address: one flooding client cannot
/// take the others' (the nodes') challenges.
pub const MAX_CHALLENGES_PER_ADDRESS: usize = 256;

const H_NONCE: &str = "x-safekit-nonce";
const H_USER: &str = "x-safekit-user";
const H_ROLE: &str = "x-safekit-role";
const H_MAC: &str = "x-safekit-mac";

/// The challenges this node issued and not yet seen used, with when and
/// to whom.
#[derive(Default)]
pub(crate) struct Challenges(Mutex<HashMap<String, (Instant, std::net::IpAddr)>>);

impl Challenges {
    fn issue(&self, now: Instant, to: std::net::IpAddr) -> Option<String> {
        let mut map = self.0.lock().ok()?;
        map.retain(|_, (at, _)| now.duration_since(*at) < CHALLENGE_TTL);
        if map.len() >= MAX_CHALLENGES || map.values().filter(|(_, ip)| *ip == to).count() >= MAX_CHALLENGES_PER_ADDRESS {
            return None;
        }
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).ok()?;
        let nonce = hex::encode(b);
        map.insert(nonce.clone(), (now, to));
        Some(nonce)
    }

    /// Whether `nonce` was issued here, is fresh, and was not used before
    /// (it cannot be used again).
    fn consume(&self, nonce: &str, now: Instant) -> bool {
        let Ok(mut map) = self.0.lock() else { return false };
        map.remove(nonce).is_some_and(|(at, _)| now.duration_since(at) < CHALLENGE_TTL)
    }
}

/// The user a node call acts for (`admin@10.0.0.7 via node1`) and the
/// role that user has where the call came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnBehalf {
    /// Who, and from where, as the module log shows it.
    pub user: String,
    /// What they may do.
    pub role: Role,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Admin => "Admin",
        Role::Control => "Control",
        Role::Monitor => "Monitor",
    }
}

fn mac(key: &ClusterKey, nonce: &str, method: &Method, target: &str, who: &OnBehalf, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    let mut m = key.mac();
    for part in [b"safekit node call v1".as_slice(), nonce.as_bytes(), method.as_str().as_bytes(), target.as_bytes()] {
        m.update(part);
        m.update(b"\0");
    }
    m.update(who.user.as_bytes());
    m.update(b"\0");
    m.update(role_name(who.role).as_bytes());
    m.update(b"\0");
    m.update(&sha2::Sha256::digest(body));
    m
}

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/v1.0/node/challenge", get(challenge))
}

/// A fresh challenge for one node call.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Challenge {
    nonce: String,
}

#[utoipa::path(get, path = "/api/v1.0/node/challenge", tag = "node",
    responses((status = 200, description = "A challenge for one node-to-node call, valid 30 s, usable once", body = Challenge),
        (status = 503, description = "Too many challenges outstanding")))]
pub(crate) async fn challenge(State(web): State<Web>, peer: Option<axum::Extension<super::api::Peer>>) -> Response {
    let to = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0 .0.ip());
    match web.challenges.issue(Instant::now(), to) {
        Some(nonce) => Json(Challenge { nonce }).into_response(),
        None => super::api::error(StatusCode::SERVICE_UNAVAILABLE, "too many node calls at once"),
    }
}

/// The middleware that checks a node call: a request that carries
/// `X-Safekit-Mac` is served only if the MAC is right and its challenge is
/// fresh and unused, and then as [`OnBehalf`]'s user and role (an
/// extension the endpoints' role checks read). Other requests pass as
/// they are.
pub(crate) async fn verify(State(web): State<Web>, req: Request, next: Next) -> Response {
    if !req.headers().contains_key(H_MAC) {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<super::api::Peer>().map(|p| p.0.ip());
    let refuse = |why: &str| {
        tracing::warn!(?peer, why, "node call refused");
        super::api::error(StatusCode::UNAUTHORIZED, why)
    };
    let (mut parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (Some(nonce), Some(user), Some(role), Some(sent)) = (header(H_NONCE), header(H_USER), header(H_ROLE), header(H_MAC)) else {
        return refuse("a node call needs X-Safekit-Nonce, -User, -Role and -Mac");
    };
    let Some(role) = Role::parse(&role) else { return refuse("X-Safekit-Role: Admin, Control or Monitor") };
    let Ok(sent) = hex::decode(sent) else { return refuse("X-Safekit-Mac: hexadecimal expected") };
    let Ok(body) = axum::body::to_bytes(body, super::MAX_BODY).await else {
        return super::api::error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    };
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let who = OnBehalf { user, role };
    if mac(&web.key, &nonce, &parts.method, &target, &who, &body).verify_slice(&sent).is_err() {
        return refuse("the node call is not authentic (another cluster key?)");
    }
    if !web.challenges.consume(&nonce, Instant::now()) {
        return refuse("the node call's challenge is unknown, used or expired");
    }
    parts.extensions.insert(who);
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// What a node answered.
#[derive(Debug)]
pub struct Answer {
    /// Its HTTP status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body (at most the call's limit).
    pub body: Bytes,
    /// The challenge the call was made with (an answer authenticated by
    /// the endpoint itself is bound to it).
    pub nonce: String,
}

/// How this node reaches the other nodes' web services: HTTP on 9010, or
/// HTTPS on 9453 trusting the cluster's CA only (when this node has
/// certificates, so do the others).
#[derive(Clone)]
pub struct Transport {
    /// The port.
    pub port: u16,
    /// TLS, checked against the cluster's CA.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Transport {
    /// Plain HTTP on `port`.
    pub fn http(port: u16) -> Self {
        Self { port, tls: None }
    }

    /// What the node of `layout` uses: HTTPS when it has certificates.
    pub fn of(layout: &crate::layout::Layout) -> Result<Self, String> {
        if super::tls::enabled(layout) {
            Ok(Self { port: super::tls::HTTPS_PORT, tls: Some(super::tls::client_config(layout)?) })
        } else {
            Ok(Self::http(super::PORT))
        }
    }
}

type Exchanged = (hyper::http::response::Parts, Bytes);

/// One HTTP/1.1 connection to a node (TLS if `tls`): a call's challenge
/// and the call itself go on it, one after the other.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Connection {
    async fn open(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Self, String> {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match tls {
            Some(config) => {
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(super::tls::server_name(addr.ip()), tcp)
                    .await
                    .map_err(|e| format!("{addr}: TLS: {e}"))?;
                Self::over(stream).await
            }
            None => Self::over(tcp).await,
        }
    }

    async fn over<S>(stream: S) -> Result<Self, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender, driver })
    }

    /// Sends `req` and reads its answer, the body cut at `limit` bytes.
    async fn send(&mut self, req: hyper::Request<Full<Bytes>>, limit: usize) -> Result<Exchanged, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self.sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        http_body_util::Limited::new(body, limit).collect().await.map(|b| (parts, b.to_bytes())).map_err(|e| format!("answer: {e}"))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// One call to make on another node.
#[derive(Debug, Clone)]
pub struct Call {
    /// GET, POST, PUT, DELETE.
    pub method: Method,
    /// Path and query, e.g. `/api/v1.0/modules/mysql`.
    pub target: String,
    /// The body (sent as JSON when not empty).
    pub body: Bytes,
    /// The answer's body is cut at this many bytes.
    pub limit: usize,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Call {
    /// A call without a body, answers up to 16 MiB, 10 s.
    pub fn new(method: Method, target: impl Into<String>) -> Self {
        Self { method, target: target.into(), body: Bytes::new(), limit: 16 << 20, timeout: Duration::from_secs(10) }
    }
}

/// Makes `c` on the node at `addr` (over TLS if `tls`) for `who`. `Err`
/// when the node does not answer within the call's timeout.
pub async fn call(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    key: &ClusterKey,
    who: &OnBehalf,
    c: &Call,
) -> Result<Answer, String> {
    let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
    let work = async {
        let ask = hyper::Request::get("/api/v1.0/node/challenge")
            .header(axum::http::header::HOST, host.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let mut conn = Connection::open(addr, tls).await?;
        let (parts, body) = conn.send(ask, 4096).await?;
        if !parts.status.is_success() {
            return Err(format!("{addr} gave no challenge: {}", parts.status));
        }
        let Challenge { nonce } = serde_json::from_slice(&body).map_err(|e| format!("malformed challenge: {e}"))?;
        let tag = hex::encode(mac(key, &nonce, &c.method, &c.target, who, &c.body).finalize().into_bytes());
        let user = HeaderValue::from_str(&who.user).map_err(|_| format!("user {:?} cannot be sent in a header", who.user))?;
        let mut req = hyper::Request::builder().method(c.method.clone()).uri(c.target.as_str());
        if let Some(h) = req.headers_mut() {
            h.insert(axum::http::header::HOST, host.clone());
            h.insert(H_NONCE, HeaderValue::from_str(&nonce).map_err(|e| e.to_string())?);
            h.insert(H_USER, user);
            h.insert(H_ROLE, HeaderValue::from_static(role_name(who.role)));
            h.insert(H_MAC, HeaderValue::from_str(&tag).map_err(|e| e.to_string())?);
            if !c.body.is_empty() {
                h.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        let req = req.body(Full::new(c.body.clone())).map_err(|e| e.to_string())?;
        let (parts, body) = conn.send(req, c.limit).await?;
        Ok(Answer { status: parts.status, headers: parts.headers, body, nonce })
    };
    tokio::time::timeout(c.timeout, work).await.map_err(|_| format!("no answer from {addr} within {:?}", c.timeout))?
}

/// The addresses of `node`'s web service, one per network of cluster.xml
/// it is on, in cluster.xml's order.
pub async fn node_addresses(cluster: &crate::config::ClusterConfig, node: &str, port: u16) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for n in cluster.lans.iter().flat_map(|l| &l.nodes).filter(|n| n.name == node) {
        if let Ok(ip) = crate::daemon::modules::resolve_host(&n.addr).await {
            let a = SocketAddr::new(ip, port);
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// [`call`] on `node`, trying each of its addresses until one answers.
pub async fn call_node(
    cluster: &crate::config::ClusterConfig,
    transport: &Transport,
    node: &str,
    key: &ClusterKey,
    who: &OnBehalf,
    c: &Call,
) -> Result<Answer, String> {
    let addrs = node_addresses(cluster, node, transport.port).await;
    if addrs.is_empty() {
        return Err(format!("no node {node} in cluster.xml (nodes: {})", cluster.node_names().join(", ")));
    }
    let mut errors = Vec::new();
    for addr in addrs {
        match call(addr, transport.tls.as_ref(), key, who, c).await {
            Ok(a) => return Ok(a),
            Err(e) => errors.push(e),
        }
    }
    Err(format!("node {node} did not answer: {}", errors.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_challenge_and_each_is_used_once() {
        let c = Challenges::default();
        let t0 = Instant::now();
        let flood = std::net::IpAddr::from([10, 0, 0, 66]);
        let issued = (0..MAX_CHALLENGES).filter_map(|_| c.issue(t0, flood)).count();
        assert_eq!(issued, MAX_CHALLENGES_PER_ADDRESS);
        let node = c.issue(t0, std::net::IpAddr::from([10, 0, 0, 2])).expect("another address still gets one");
        assert!(c.consume(&node, t0) && !c.consume(&node, t0), "once");
        let late = c.issue(t0, std::net::IpAddr::from([10, 0, 0, 2])).unwrap();
        assert!(!c.consume(&late, t0 + CHALLENGE_TTL), "expired");
        assert!(c.issue(t0 + CHALLENGE_TTL, flood).is_some(), "the flood's challenges expire too");
    }
}
