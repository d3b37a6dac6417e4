//! HTTPS for the web service: a cluster CA and one server certificate per
//! node, in `SAFE/web/conf/ssl/` (`ca.crt`, `server.crt`, `server.key`,
//! and `ca.key` on the node that is the CA). With them the node serves
//! HTTPS on [`HTTPS_PORT`], and port 9010 keeps only what has no secret
//! and needs no browser (the health check, the metrics, the node-to-node
//! endpoints, whose answers are authenticated with the cluster key) and
//! redirects everything else to HTTPS. Node calls then go over TLS,
//! checked against `ca.crt`.
//!
//! SafeKit's `initssl sca`/`initssl req` flow without a CA daemon:
//! `safekit initssl ca` makes the CA and this node's certificate;
//! `safekit initssl req --ca node1` on another node makes a key that never
//! leaves it and asks node1 for a certificate with a node call signed with
//! the cluster key; node1 writes every address of that node from its
//! cluster.xml into the certificate and answers with it and the CA,
//! authenticated under the cluster key over the call's challenge.
//! External certificates are accepted: put the PEM files in place.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::Mac;
use serde::{Deserialize, Serialize};

use super::accounts::Role;
use super::signed::{Call, OnBehalf};
use super::Web;
use crate::config::ClusterConfig;
use crate::key::ClusterKey;
use crate::layout::Layout;

/// SafeKit's HTTPS port.
pub const HTTPS_PORT: u16 = 9453;

/// Where a node keeps its certificates.
pub fn ssl_dir(layout: &Layout) -> PathBuf {
    layout.web_conf().join("ssl")
}

/// Whether this node serves HTTPS (its server certificate and key exist).
pub fn enabled(layout: &Layout) -> bool {
    let d = ssl_dir(layout);
    d.join("server.crt").exists() && d.join("server.key").exists()
}

use crate::modules::files::write_file as write;

fn ca_params() -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, "safekit cluster CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    p
}

fn serial() -> Result<rcgen::SerialNumber, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| e.to_string())?;
    b[0] &= 0x7f;
    Ok(rcgen::SerialNumber::from_slice(&b))
}

/// The names a node's certificate must hold: its name, its addresses on
/// every network of cluster.xml (and what they resolve to), localhost.
pub async fn node_names(cluster: &ClusterConfig, node: &str) -> Vec<String> {
    let mut out = vec![node.to_string(), "localhost".to_string(), "127.0.0.1".to_string()];
    for n in cluster.lans.iter().flat_map(|l| &l.nodes).filter(|n| n.name == node) {
        for a in [Some(&n.addr), n.laddr.as_ref()].into_iter().flatten() {
            out.push(a.to_string());
            if let Ok(ip) = crate::daemon::modules::resolve_host(a).await {
                out.push(ip.to_string());
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|n| seen.insert(n.clone()));
    out
}

/// A public key received from a node (ECDSA P-256, raw point).
struct NodeKey(Vec<u8>);

impl rcgen::PublicKeyData for NodeKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// The CA of this node's ssl directory, if it is the cluster's CA.
fn load_ca(dir: &Path) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>, String> {
    let pem = std::fs::read_to_string(dir.join("ca.key")).map_err(|_| "this node is not the cluster's CA (no ca.key)".to_string())?;
    let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| format!("ca.key: {e}"))?;
    Ok(rcgen::Issuer::new(ca_params(), key))
}

/// A certificate for `names` and the public key `raw`, signed by the CA in `dir`.
fn issue(dir: &Path, names: Vec<String>, key: &impl rcgen::PublicKeyData) -> Result<String, String> {
    let ca = load_ca(dir)?;
    let mut p = rcgen::CertificateParams::new(names.clone()).map_err(|e| format!("{names:?}: {e}"))?;
    p.distinguished_name.push(rcgen::DnType::CommonName, names.first().cloned().unwrap_or_default());
    p.serial_number = Some(serial()?);
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    Ok(p.signed_by(key, &ca).map_err(|e| e.to_string())?.pem())
}

/// `safekit initssl ca`: a new cluster CA and this node's certificate, for
/// `names`. Refused if a CA exists (remove it with `safekit rmcerts`).
pub fn make_ca(layout: &Layout, names: Vec<String>) -> Result<PathBuf, String> {
    let dir = ssl_dir(layout);
    if dir.join("ca.key").exists() {
        return Err(format!("{} already holds a CA: safekit rmcerts first to make a new one", dir.display()));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = ca_params();
    params.serial_number = Some(serial()?);
    let ca = params.self_signed(&ca_key).map_err(|e| e.to_string())?;
    write(&dir.join("ca.key"), &ca_key.serialize_pem(), 0o600)?;
    write(&dir.join("ca.crt"), &ca.pem(), 0o644)?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = issue(&dir, names, &key)?;
    write(&dir.join("server.key"), &key.serialize_pem(), 0o600)?;
    write(&dir.join("server.crt"), &cert, 0o644)?;
    Ok(dir)
}

/// `safekit rmcerts`: back to HTTP (after the daemon's restart).
pub fn remove(layout: &Layout) -> Result<(), String> {
    let dir = ssl_dir(layout);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// What a node asks the CA node for.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertRequest {
    /// The asking node's name in cluster.xml.
    node: String,
    /// Its ECDSA P-256 public key (raw point, hexadecimal).
    public_key: String,
}

/// The CA node's answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct CertAnswer {
    cert: String,
    ca: String,
    /// HMAC-SHA256 under the cluster key over the call's challenge, the
    /// certificate and the CA.
    mac: String,
}

fn answer_mac(key: &ClusterKey, nonce: &str, cert: &str, ca: &str) -> hmac::Hmac<sha2::Sha256> {
    let mut m = key.mac();
    for part in ["safekit certificate v1", nonce, cert, ca] {
        m.update(part.as_bytes());
        m.update(b"\0");
    }
    m
}

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/v1.0/node/certificate", post(certificate))
}

#[utoipa::path(post, path = "/api/v1.0/node/certificate", tag = "node", request_body = CertRequest,
    responses((status = 200, description = "A certificate for the asking node's addresses, and the CA (a node call as Admin)", body = CertAnswer),
        (status = 401, description = "Not a node call signed with the cluster key"),
        (status = 409, description = "This node is not the CA, or the node is not in its cluster.xml")))]
pub(crate) async fn certificate(State(web): State<Web>, parts: axum::http::request::Parts, Json(req): Json<CertRequest>) -> Response {
    let fail = |code: StatusCode, why: String| super::api::error(code, why);
    let who = match super::api::caller(&web, &parts, Role::Admin, true) {
        Ok(w) if w.forwarded => w,
        Ok(_) => return fail(StatusCode::UNAUTHORIZED, "only a node call signed with the cluster key may ask for a certificate".into()),
        Err(r) => return *r,
    };
    let Some(nonce) = parts.headers.get("x-safekit-nonce").and_then(|v| v.to_str().ok()) else {
        return fail(StatusCode::UNAUTHORIZED, "no challenge".into());
    };
    if !web.cluster.node_names().contains(&req.node.as_str()) {
        return fail(StatusCode::CONFLICT, format!("no node {} in this node's cluster.xml", req.node));
    }
    let Ok(raw) = hex::decode(&req.public_key) else { return fail(StatusCode::BAD_REQUEST, "public_key: hexadecimal expected".into()) };
    let dir = ssl_dir(&web.layout);
    let names = node_names(&web.cluster, &req.node).await;
    let cert = match issue(&dir, names, &NodeKey(raw)) {
        Ok(c) => c,
        Err(e) => return fail(StatusCode::CONFLICT, e),
    };
    let Ok(ca) = std::fs::read_to_string(dir.join("ca.crt")) else { return fail(StatusCode::CONFLICT, "no ca.crt".into()) };
    tracing::info!(node = req.node, by = who.by, "certificate issued");
    let mac = hex::encode(answer_mac(&web.key, nonce, &cert, &ca).finalize().into_bytes());
    Json(CertAnswer { cert, ca, mac }).into_response()
}

/// `safekit initssl req --ca NODE`: a key for this node (`node`), its
/// certificate from the CA node (reached over HTTP on `port`: this node
/// has no CA yet, and the answer is authenticated with the cluster key;
/// nothing secret travels), written with the CA into the ssl directory.
pub async fn request(
    layout: &Layout,
    cluster: &ClusterConfig,
    key: &ClusterKey,
    node: &str,
    ca_node: &str,
    port: u16,
) -> Result<PathBuf, String> {
    let pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&CertRequest { node: node.to_string(), public_key: hex::encode(pair.public_key_raw()) })
        .map_err(|e| e.to_string())?;
    let mut call = Call::new(axum::http::Method::POST, "/api/v1.0/node/certificate");
    call.body = body.into();
    let who = OnBehalf { user: format!("root@{node} (initssl)"), role: Role::Admin };
    let plain = super::signed::Transport::http(port);
    let a = super::signed::call_node(cluster, &plain, ca_node, key, &who, &call).await?;
    if !a.status.is_success() {
        return Err(format!("{ca_node} answered {}: {}", a.status, String::from_utf8_lossy(&a.body)));
    }
    let got: CertAnswer = serde_json::from_slice(&a.body).map_err(|e| format!("malformed answer: {e}"))?;
    let sent = hex::decode(&got.mac).map_err(|_| "the answer's MAC is not hexadecimal".to_string())?;
    answer_mac(key, &a.nonce, &got.cert, &got.ca)
        .verify_slice(&sent)
        .map_err(|_| "the answer is not authentic (another cluster key?)".to_string())?;
    let dir = ssl_dir(layout);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write(&dir.join("server.key"), &pair.serialize_pem(), 0o600)?;
    write(&dir.join("server.crt"), &got.cert, 0o644)?;
    write(&dir.join("ca.crt"), &got.ca, 0o644)?;
    Ok(dir)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> =
        rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?.collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

/// The TLS server of this node: `server.crt` (with its chain) and
/// `server.key`. `None` when the node has no certificate (HTTP only).
pub fn server_config(layout: &Layout) -> Option<Result<Arc<rustls::ServerConfig>, String>> {
    use rustls::pki_types::pem::PemObject;
    if !enabled(layout) {
        return None;
    }
    let dir = ssl_dir(layout);
    Some((|| {
        let chain = certs(&dir.join("server.crt"))?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("server.key")).map_err(|e| format!("server.key: {e}"))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("server.crt and server.key: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    })())
}

/// The TLS client for node calls: trusts `ca.crt` only.
pub fn client_config(layout: &Layout) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&ssl_dir(layout).join("ca.crt"))? {
        roots.add(c).map_err(|e| format!("ca.crt: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name a node call checks the certificate against: the address.
pub(crate) fn server_name(ip: IpAddr) -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::IpAddress(ip.into())
}
