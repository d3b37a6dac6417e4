//! `/api/v1.0/nodes/<node>/…`: any endpoint of any node, through the node
//! you talk to (SafeKit's proxy mode), so a workstation that reaches one
//! node manages the whole cluster. The caller is authenticated here (any
//! role; the CSRF token for a state-changing call); the call goes on as a
//! node call ([`super::signed`]) for that user and role, and the other
//! node enforces the endpoint's role and logs "called by admin@10.0.0.7
//! via node1". `<node>` is one node (its answer is passed through as it
//! is), or `*` or `node1,node2` (a fan-out: one JSON list with each node's
//! status and body or error, e.g. to apply a configuration to all nodes;
//! when the answers are zips, one zip of them: a snapshot of the cluster).
//! A call that came from another node is never forwarded again.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde::Serialize;

use super::accounts::Role;
use super::signed::{call_node, Call, OnBehalf};
use super::Web;

/// Largest answer passed through (a snapshot fits).
pub const MAX_ANSWER: usize = 256 << 20;

/// How long the other node may take (a stop runs scripts).
pub const TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/v1.0/nodes/{nodes}/{*rest}", any(proxy))
}

/// One node's answer to a fan-out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NodeAnswer {
    node: String,
    /// Its HTTP status; absent when it did not answer.
    status: Option<u16>,
    /// Its body: JSON as JSON, other text as a string, empty as null.
    body: serde_json::Value,
    /// Why it did not answer.
    error: Option<String>,
}

fn json_of(body: &[u8]) -> serde_json::Value {
    if body.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(body).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn bad(why: &str) -> Response {
    super::api::error(StatusCode::BAD_REQUEST, why)
}

#[utoipa::path(get, path = "/api/v1.0/nodes/{nodes}/{rest}", tag = "cluster",
    params(("nodes" = String, Path, description = "A node name: its answer as it is; * or node1,node2: each node's answer in a list"),
        ("rest" = String, Path, description = "The endpoint under /api/v1.0/ on that node, e.g. modules/mysql/actions/stop (any method)")),
    responses((status = 200, description = "The node's own answer, or with * or a list the answers of each node", body = [NodeAnswer]),
        (status = 400, description = "Unknown node, a path with . or .. segments, or a call already forwarded", body = super::api::ErrorBody),
        (status = 502, description = "The node did not answer", body = super::api::ErrorBody)))]
pub(crate) async fn proxy(
    State(web): State<Web>,
    Path((nodes, _)): Path<(String, String)>,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let changes = !matches!(parts.method, Method::GET | Method::HEAD);
    let who = match super::api::caller(&web, &parts, Role::Monitor, changes) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if who.forwarded {
        return bad("a call from another node is not forwarded again");
    }
    // The rest of the path as the client encoded it, so the other node's
    // router reads exactly what this one would have.
    let path = parts.uri.path();
    let Some(rest) = path.strip_prefix("/api/v1.0/nodes/").and_then(|p| p.split_once('/')).map(|(_, r)| r) else {
        return bad("expected /api/v1.0/nodes/<node>/<endpoint>");
    };
    if rest.split('/').any(|s| s == "." || s == ".." || s.is_empty()) {
        return bad("the endpoint's path may not have empty, . or .. segments");
    }
    let target = match parts.uri.query() {
        Some(q) => format!("/api/v1.0/{rest}?{q}"),
        None => format!("/api/v1.0/{rest}"),
    };
    let all: Vec<String> = web.cluster.node_names().into_iter().map(str::to_string).collect();
    let fan_out = nodes == "*" || nodes.contains(',');
    let chosen: Vec<String> = if nodes == "*" { all.clone() } else { nodes.split(',').map(|n| n.trim().to_string()).collect() };
    if let Some(unknown) = chosen.iter().find(|n| !all.contains(n)) {
        return bad(&format!("no node {unknown} in cluster.xml (nodes: {})", all.join(", ")));
    }
    let on_behalf = OnBehalf { user: format!("{} via {}", who.by, web.node), role: who.role };
    let call = Call { method: parts.method.clone(), target, body, limit: MAX_ANSWER, timeout: TIMEOUT };
    tracing::info!(user = who.by, nodes, target = call.target, "web service call forwarded");
    let one = |node: String| {
        let (web, on_behalf, call) = (web.clone(), on_behalf.clone(), call.clone());
        async move {
            let r = call_node(&web.cluster, &web.peers, &node, &web.key, &on_behalf, &call).await;
            (node, r)
        }
    };
    if !fan_out {
        let (node, r) = one(chosen.into_iter().next().unwrap_or_default()).await;
        return match r {
            Ok(a) => {
                let mut resp = (a.status, a.body).into_response();
                for h in [header::CONTENT_TYPE, header::CONTENT_DISPOSITION] {
                    if let Some(v) = a.headers.get(&h) {
                        resp.headers_mut().insert(h, v.clone());
                    }
                }
                resp
            }
            Err(e) => super::api::error(StatusCode::BAD_GATEWAY, format!("{node}: {e}")),
        };
    }
    let answers = futures::future::join_all(chosen.into_iter().map(one)).await;
    let zips = answers.iter().any(|(_, r)| r.as_ref().is_ok_and(is_zip));
    if zips {
        return match zip_of(&answers) {
            Ok(z) => {
                let disposition = "attachment; filename=\"cluster-snapshot.zip\"";
                ([(header::CONTENT_TYPE, "application/zip"), (header::CONTENT_DISPOSITION, disposition)], z).into_response()
            }
            Err(e) => super::api::error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    }
    let out: Vec<NodeAnswer> = answers
        .into_iter()
        .map(|(node, r)| match r {
            Ok(a) => NodeAnswer { node, status: Some(a.status.as_u16()), body: json_of(&a.body), error: None },
            Err(e) => NodeAnswer { node, status: None, body: serde_json::Value::Null, error: Some(e) },
        })
        .collect();
    Json(out).into_response()
}

fn is_zip(a: &super::signed::Answer) -> bool {
    a.status.is_success() && a.headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == b"application/zip")
}

/// A fan-out whose answers are zips (a snapshot of every node): one zip
/// holding `<node>.zip` per node, and `<node>.error.txt` for a node that
/// gave none.
fn zip_of(answers: &[(String, Result<super::signed::Answer, String>)]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (node, r) in answers {
        let (name, data) = match r {
            Ok(a) if is_zip(a) => (format!("{node}.zip"), a.body.to_vec()),
            Ok(a) => (format!("{node}.error.txt"), format!("{}: {}", a.status, String::from_utf8_lossy(&a.body)).into_bytes()),
            Err(e) => (format!("{node}.error.txt"), e.clone().into_bytes()),
        };
        z.start_file(name, stored).map_err(|e| e.to_string())?;
        z.write_all(&data).map_err(|e| e.to_string())?;
    }
    Ok(z.finish().map_err(|e| e.to_string())?.into_inner())
}
