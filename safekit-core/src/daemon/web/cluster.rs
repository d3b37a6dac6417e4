//! `GET /api/v1.0/cluster`: the cluster as this node sees it (Monitor): its
//! nodes with their addresses on each network, this node's name and
//! version, and whether each other node's web service answers with the
//! cluster key (an authenticated question, so a machine that merely
//! listens on the port does not count as reachable).
//!
//! `POST /api/v1.0/cluster/probe` (Admin): the cluster wizard's check of
//! addresses typed before cluster.xml is saved. Each address is resolved
//! and asked, with the cluster key, for the name that node gives itself;
//! the console then shows unreachable addresses and names that differ
//! from the ones typed (SafeKit's "reachability and hostname check").

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::api::{Need, ADMIN, MONITOR};
use super::signed::{call, Call, OnBehalf};
use super::Web;

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/v1.0/cluster", get(cluster)).route("/api/v1.0/cluster/probe", post(probe))
}

/// Most addresses one probe asks (a cluster wizard has a few nodes).
const MAX_PROBED: usize = 16;

/// The addresses to probe.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Probe {
    /// IP addresses or host names, as typed for cluster.xml.
    addresses: Vec<String>,
}

/// What one address answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Probed {
    address: String,
    /// What the address resolved to.
    ip: Option<String>,
    /// Its web service answered with the cluster key.
    reachable: bool,
    /// The name that node has in its own cluster.xml.
    node: Option<String>,
    /// Its safekit version.
    version: Option<String>,
    /// Why it is not reachable.
    error: Option<String>,
}

#[utoipa::path(post, path = "/api/v1.0/cluster/probe", tag = "cluster", request_body = Probe,
    responses((status = 200, description = "Each address: resolved, reachable with the cluster key, the node name it answers as (Admin)", body = [Probed]),
        (status = 400, description = "No address, or more than 16")))]
pub(crate) async fn probe(State(web): State<Web>, Need(who): Need<ADMIN, true>, Json(p): Json<Probe>) -> Response {
    if p.addresses.is_empty() || p.addresses.len() > MAX_PROBED {
        return super::api::error(axum::http::StatusCode::BAD_REQUEST, format!("give 1 to {MAX_PROBED} addresses"));
    }
    let on_behalf = OnBehalf { user: format!("{} via {}", who.by, web.node), role: who.role };
    let asks = p.addresses.into_iter().map(|address| {
        let (web, on_behalf) = (web.clone(), &on_behalf);
        async move { probe_one(&web, on_behalf, address).await }
    });
    Json(futures::future::join_all(asks).await).into_response()
}

async fn probe_one(web: &Web, who: &OnBehalf, address: String) -> Probed {
    let mut out = Probed { address: address.trim().to_string(), ip: None, reachable: false, node: None, version: None, error: None };
    let bare = out.address.trim_start_matches('[').trim_end_matches(']');
    let host = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => crate::config::HostAddr::Ip(ip),
        Err(_) if !bare.is_empty() && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') => {
            crate::config::HostAddr::Dns(bare.to_string())
        }
        Err(_) => {
            out.error = Some("not an IP address or a host name".to_string());
            return out;
        }
    };
    let ip = match crate::daemon::modules::resolve_host(&host).await {
        Ok(ip) => ip,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    out.ip = Some(ip.to_string());
    let mut c = Call::new(axum::http::Method::GET, "/api/v1.0/cluster");
    c.timeout = Duration::from_secs(2);
    c.limit = 64 << 10;
    let addr = std::net::SocketAddr::new(ip, web.peers.port);
    match call(addr, web.peers.tls.as_ref(), &web.key, who, &c).await {
        Ok(a) if a.status.is_success() => match serde_json::from_slice::<serde_json::Value>(&a.body) {
            Ok(v) => {
                out.reachable = true;
                out.node = v["node"].as_str().map(str::to_string);
                out.version = v["version"].as_str().map(str::to_string);
            }
            Err(e) => out.error = Some(format!("malformed answer: {e}")),
        },
        Ok(a) => out.error = Some(format!("answered {} (another cluster key?)", a.status)),
        Err(e) => out.error = Some(e),
    }
    out
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
