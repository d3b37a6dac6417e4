//! `POST /api/v1.0/cli`: one request of the CLI's control protocol, so
//! that `safekit -H "*" <command>` runs a command on other nodes. The node
//! answers it with the same code as its control socket; the role the
//! request needs is that of the command (reading: Monitor, module
//! commands: Control, configuration and resources: Admin).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::accounts::Role;
use super::signed::{Call, OnBehalf};
use super::Web;
use crate::config::ClusterConfig;
use crate::daemon::control::{Request, Response as ControlResponse};
use crate::key::ClusterKey;

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/v1.0/cli", post(cli))
}

/// The least role that may make `req`.
fn needs(req: &Request) -> Role {
    match req {
        Request::State { .. } | Request::Log { .. } | Request::Get { .. } | Request::Rfsverify { .. } | Request::Rfsdiff { .. } => {
            Role::Monitor
        }
        Request::Command { .. } | Request::Boot { on: Some(_), .. } => Role::Control,
        Request::Boot { on: None, .. } => Role::Monitor,
        Request::Config { .. } | Request::Set { .. } | Request::Print { .. } | Request::Uninstall { .. } => Role::Admin,
    }
}

#[utoipa::path(post, path = "/api/v1.0/cli", tag = "cli",
    request_body(description = "One request of the control protocol (safekit_core::daemon::control::Request), e.g. {\"State\":{\"module\":null}}", content_type = "application/json"),
    responses((status = 200, description = "The daemon's answer (control::Response): \"Ok\", {\"Error\":…}, {\"States\":[…]} or {\"Lines\":[…]}"),
        (status = 400, description = "Not a request of the control protocol", body = super::api::ErrorBody),
        (status = 403, description = "The caller's role may not make this request", body = super::api::ErrorBody)))]
pub(crate) async fn cli(State(web): State<Web>, parts: axum::http::request::Parts, body: Bytes) -> Response {
    let req: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return super::api::error(StatusCode::BAD_REQUEST, format!("request: {e}")),
    };
    let who = match super::api::caller(&web, &parts, needs(&req), true) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    Json(web.actions.control(req, who.by).await).into_response()
}

/// Sends `req` to `node`'s daemon through its web service, as `by` (an
/// Admin: the caller holds the cluster key, so is root on a node).
pub async fn remote(
    cluster: &ClusterConfig,
    transport: &super::signed::Transport,
    node: &str,
    key: &ClusterKey,
    by: &str,
    req: &Request,
) -> Result<ControlResponse, String> {
    let who = OnBehalf { user: by.to_string(), role: Role::Admin };
    let mut call = Call::new(axum::http::Method::POST, "/api/v1.0/cli");
    call.body = serde_json::to_vec(req).map_err(|e| e.to_string())?.into();
    call.timeout = std::time::Duration::from_secs(60);
    let a = super::signed::call_node(cluster, transport, node, key, &who, &call).await?;
    if !a.status.is_success() {
        return Err(format!("node {node} answered {}: {}", a.status, String::from_utf8_lossy(&a.body)));
    }
    serde_json::from_slice(&a.body).map_err(|e| format!("node {node}: malformed answer: {e}"))
}
