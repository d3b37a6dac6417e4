//! `GET /api/v1.0/events`: the whole cluster's module states as
//! server-sent events, for the console's live monitoring page. The node
//! you talk to gathers every node's `GET /api/v1.0/modules` twice a second
//! (its own reports directly, the others' through authenticated node calls
//! for the same user and role, each bounded to [`NODE_TIME`]) and sends a
//! `cluster` event whenever that view changed: one JSON list of
//! `{node, reachable, error, modules}`. A node that does not answer is
//! `reachable: false` with the reason, so the console shows it red at
//! once. A stream lasts [`STREAM_TIME`] (under the server's connection
//! limit); the browser's `EventSource` reconnects after the `retry` given.
//! A call that came from another node sees only that node (never fanned
//! out again).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::accounts::Role;
use super::signed::{call_node, Call, OnBehalf};
use super::Web;

/// How often the view is gathered.
pub(crate) const PERIOD: Duration = Duration::from_millis(500);

/// How long another node may take to answer one gathering.
pub(crate) const NODE_TIME: Duration = Duration::from_millis(1500);

/// One stream's life; the client reconnects after it.
pub(crate) const STREAM_TIME: Duration = Duration::from_secs(50);

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/v1.0/events", get(events))
}

/// One node as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct NodeView {
    node: String,
    /// Its web service answered.
    reachable: bool,
    /// Why its modules are not shown (unreachable, or its refusal).
    error: Option<String>,
    /// Its `GET /api/v1.0/modules` answer (empty when not reachable).
    #[schema(value_type = Vec<Object>)]
    modules: serde_json::Value,
}

/// Every node's view, in cluster.xml order (only this node for a call
/// forwarded by another node).
async fn gather(web: &Web, who: &OnBehalf, forwarded: bool) -> Vec<NodeView> {
    let names: Vec<String> =
        if forwarded { vec![web.node.clone()] } else { web.cluster.node_names().into_iter().map(str::to_string).collect() };
    let one = |node: String| async move {
        if node == web.node {
            let modules = serde_json::to_value(web.directory.reports()).unwrap_or_default();
            return NodeView { node, reachable: true, error: None, modules };
        }
        let mut call = Call::new(Method::GET, "/api/v1.0/modules");
        call.timeout = NODE_TIME;
        call.limit = 4 << 20;
        match call_node(&web.cluster, &web.peers, &node, &web.key, who, &call).await {
            Ok(a) if a.status == StatusCode::OK => {
                let modules = serde_json::from_slice(&a.body).unwrap_or_default();
                NodeView { node, reachable: true, error: None, modules }
            }
            Ok(a) => {
                let why = format!("{}: {}", a.status, String::from_utf8_lossy(&a.body));
                NodeView { node, reachable: true, error: Some(why), modules: serde_json::Value::Array(Vec::new()) }
            }
            Err(e) => NodeView { node, reachable: false, error: Some(e), modules: serde_json::Value::Array(Vec::new()) },
        }
    };
    futures::future::join_all(names.into_iter().map(one)).await
}

struct Stream {
    web: Web,
    who: OnBehalf,
    forwarded: bool,
    last: Option<String>,
    end: Instant,
    first: bool,
}

#[utoipa::path(get, path = "/api/v1.0/events", tag = "cluster",
    responses((status = 200, description = "Server-sent events: `cluster`, data = [NodeView], sent when the view changes (Monitor)", content_type = "text/event-stream", body = [NodeView]),
        (status = 401, description = "No session", body = super::api::ErrorBody)))]
pub(crate) async fn events(State(web): State<Web>, parts: axum::http::request::Parts) -> Response {
    let caller = match super::api::caller(&web, &parts, Role::Monitor, false) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let who = OnBehalf { user: format!("{} via {}", caller.by, web.node), role: caller.role };
    let start = Stream { web, who, forwarded: caller.forwarded, last: None, end: Instant::now() + STREAM_TIME, first: true };
    let stream = futures::stream::unfold(start, |mut s| async move {
        loop {
            if !s.first {
                tokio::time::sleep(PERIOD).await;
            }
            if Instant::now() >= s.end {
                return None;
            }
            let view = gather(&s.web, &s.who, s.forwarded).await;
            let text = serde_json::to_string(&view).unwrap_or_default();
            if s.last.as_deref() == Some(text.as_str()) {
                s.first = false;
                continue;
            }
            let mut event = Event::default().event("cluster").data(&text);
            if s.first {
                event = event.retry(Duration::from_secs(1));
            }
            s.first = false;
            s.last = Some(text);
            return Some((Ok::<_, std::convert::Infallible>(event), s));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))).into_response()
}
