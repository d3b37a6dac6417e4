//! `GET /api/v1.0/cluster`: the cluster as this node sees it (Monitor): its
//! nodes with their addresses on each network, this node's name and
//! version, and whether each other node's web service answers with the
//! cluster key (an authenticated question, so a machine that merely
//! listens on the port does not count as reachable).

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::api::{Need, MONITOR};
use super::Web;

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/v1.0/cluster", get(cluster))
}

/// One node of the cluster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Node {
    name: String,
    /// (network, address) pairs from cluster.xml.
    addresses: Vec<(String, String)>,
    /// The node answering this call.
    this: bool,
    /// Its web service answered with the cluster key (always true for this node).
    reachable: bool,
}

/// The cluster as this node sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Cluster {
    node: String,
    version: String,
    nodes: Vec<Node>,
}

#[utoipa::path(get, path = "/api/v1.0/cluster", tag = "cluster",
    responses((status = 200, description = "Nodes, addresses, this node's version, reachability (Monitor)", body = Cluster)))]
pub(crate) async fn cluster(State(web): State<Web>, _: Need<MONITOR, false>) -> Response {
    let names: Vec<String> = web.cluster.node_names().into_iter().map(str::to_string).collect();
    let mut nodes = Vec::new();
    for name in names {
        let addresses: Vec<(String, String)> = web
            .cluster
            .lans
            .iter()
            .flat_map(|l| l.nodes.iter().filter(|n| n.name == name).map(move |n| (l.name.clone(), n.addr.to_string())))
            .collect();
        let this = name == web.node;
        let mut reachable = this;
        if !this {
            // Any of its addresses answering authentically will do (bounded: 2 s each).
            for n in web.cluster.lans.iter().flat_map(|l| &l.nodes).filter(|n| n.name == name) {
                let Ok(ip) = crate::daemon::modules::resolve_host(&n.addr).await else { continue };
                let addr = std::net::SocketAddr::new(ip, super::PORT);
                if super::node::ask(addr, &web.key, "reachability", Duration::from_secs(2)).await.is_ok() {
                    reachable = true;
                    break;
                }
            }
        }
        nodes.push(Node { name, addresses, this, reachable });
    }
    Json(Cluster { node: web.node.clone(), version: env!("CARGO_PKG_VERSION").to_string(), nodes }).into_response()
}
