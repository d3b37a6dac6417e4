//! The node-to-node API: a `<module>` checker on another node asks for a
//! module's status with `GET /api/v1.0/node/modules/<AM>/status?nonce=N`.
//! Read-only; the answer is authenticated with HMAC-SHA256 under the
//! cluster key over the asker's fresh nonce, so a checker cannot be fed a
//! forged or replayed status (modules of clusters sharing a key can watch
//! each other, as SafeKit's do when their web-service passwords match).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use hmac::Mac;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::Web;
use crate::engine::Status;
use crate::key::ClusterKey;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ask {
    nonce: String,
}

/// The answer: the status (`None`: no such module here) and its MAC.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer {
    status: Option<Status>,
    mac: String,
}

fn mac(key: &ClusterKey, nonce: &str, module: &str, status: Option<Status>) -> String {
    let mut m = key.mac();
    m.update(nonce.as_bytes());
    m.update(b"\0");
    m.update(module.as_bytes());
    m.update(b"\0");
    m.update(serde_json::to_string(&status).unwrap_or_default().as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// A module name as SafeKit allows it (and safe in a URL path).
pub(crate) fn valid_module(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/v1.0/node/modules/{module}/status", get(status))
}

#[utoipa::path(get, path = "/api/v1.0/node/modules/{module}/status", tag = "node",
    params(("module" = String, Path, description = "Module name"),
        ("nonce" = String, Query, description = "16 to 128 hexadecimal digits, fresh for each question")),
    responses((status = 200, description = "The status and its HMAC-SHA256 under the cluster key over nonce, module and status"),
        (status = 400, description = "Invalid module name or nonce")))]
pub(crate) async fn status(
    State(web): State<Web>,
    Path(module): Path<String>,
    Query(ask): Query<Ask>,
) -> Result<Json<Answer>, (StatusCode, String)> {
    if !valid_module(&module) {
        return Err((StatusCode::BAD_REQUEST, "invalid module name".into()));
    }
    if !(16..=128).contains(&ask.nonce.len()) || !ask.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err((StatusCode::BAD_REQUEST, "nonce: 16 to 128 hexadecimal digits expected".into()));
    }
    let status = web.directory.status(&module);
    Ok(Json(Answer { status, mac: mac(&web.key, &ask.nonce, &module, status) }))
}

/// Asks node `addr` for `module`'s status: `Ok(None)` if it has no such
/// module; `Err` if it does not answer within `timeout` or the answer is
/// not authentic.
pub async fn ask(addr: SocketAddr, key: &ClusterKey, module: &str, timeout: Duration) -> Result<Option<Status>, String> {
    if !valid_module(module) {
        return Err(format!("invalid module name {module:?}"));
    }
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).map_err(|e| e.to_string())?;
    let nonce = hex::encode(n);
    let uri: hyper::Uri =
        format!("http://{addr}/api/v1.0/node/modules/{module}/status?nonce={nonce}").parse().map_err(|e| format!("{e}"))?;
    let work = async {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
        let resp = client.get(uri).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{addr} answered {}", resp.status()));
        }
        let body = http_body_util::Limited::new(resp.into_body(), 4096).collect().await.map_err(|e| e.to_string())?.to_bytes();
        let a: Answer = serde_json::from_slice(&body).map_err(|e| format!("malformed answer: {e}"))?;
        if a.mac != mac(key, &nonce, module, a.status) {
            return Err("the answer is not authentic (another cluster key?)".to_string());
        }
        Ok(a.status)
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| format!("no answer from {addr}"))?
}
