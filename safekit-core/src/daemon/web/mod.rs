//! The node's web service on TCP 9010 (SafeKit's port), on the node's
//! cluster addresses and localhost: the load balancers' health check
//! (`health`) and the node-to-node API other nodes' `<module>` checkers
//! call (`node`). axum routes, hyper serves; the accept loop bounds what a
//! flood can take: at most [`MAX_CONNECTIONS`] connections are served at
//! once, a request's headers must arrive within [`HEADER_TIME`], a body is
//! at most [`MAX_BODY`] bytes, and a connection lasts at most
//! [`CONNECTION_TIME`] (a client reconnects). The module engines run on
//! their own tasks, so nothing here can delay a heartbeat.

pub mod accounts;
pub(crate) mod api;
pub mod cli;
pub(crate) mod cluster;
pub(crate) mod config;
pub mod console;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod metrics;
pub mod node;
pub(crate) mod packages;
pub mod proxy;
pub(crate) mod records;
pub mod signed;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_config;
#[cfg(test)]
mod tests_console;
#[cfg(test)]
mod tests_nodes;
#[cfg(test)]
mod tests_tls;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use super::Directory;
use crate::key::ClusterKey;

/// SafeKit's web-service port.
pub const PORT: u16 = 9010;

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;

/// Time a client has to send a request's headers.
pub const HEADER_TIME: Duration = Duration::from_secs(2);

/// Longest life of one connection.
pub const CONNECTION_TIME: Duration = Duration::from_secs(60);

/// Largest request body.
pub const MAX_BODY: usize = 1 << 20;

/// What the API asks of the node's modules: the CLI's own requests,
/// answered by the same code as the control socket's.
#[async_trait::async_trait]
pub(crate) trait Actions: Send + Sync {
    /// Answers `req`; `by` names the caller in the module log.
    async fn control(&self, req: crate::daemon::control::Request, by: String) -> crate::daemon::control::Response;
}

/// What the handlers read.
#[derive(Clone)]
pub(crate) struct Web {
    pub(crate) key: ClusterKey,
    pub(crate) directory: Arc<Directory>,
    pub(crate) accounts: accounts::Accounts,
    pub(crate) keys: accounts::ApiKeys,
    /// Where the node keeps its modules (snapshots read them).
    pub(crate) layout: crate::layout::Layout,
    /// The cluster and this node's name in it.
    pub(crate) cluster: Arc<crate::config::ClusterConfig>,
    pub(crate) node: String,
    pub(crate) sessions: Arc<api::Sessions>,
    /// Challenges issued to other nodes' calls.
    pub(crate) challenges: Arc<signed::Challenges>,
    /// How the other nodes' web services are reached.
    pub(crate) peers: signed::Transport,
    /// This node serves HTTPS: session cookies are `Secure`.
    pub(crate) https: bool,
    pub(crate) actions: Arc<dyn Actions>,
}

/// The OpenAPI document of every route, served at `/api/v1.0/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "safekit web service", description = "SafeKit-compatible REST API of one node (docs/API.md)"),
    paths(
        api::login,
        api::list_keys,
        cluster::cluster,
        cluster::probe,
        api::snapshot,
        api::create_key,
        api::revoke_key,
        api::logout,
        api::session,
        api::modules,
        api::module,
        api::log,
        api::action,
        health::ready,
        metrics::metrics,
        node::status,
        signed::challenge,
        cli::cli,
        proxy::proxy,
        config::cluster,
        config::check_cluster,
        config::save_cluster,
        config::module,
        config::check,
        config::apply,
        config::history,
        config::restore,
        tls::certificate,
        records::userlogs,
        records::userlog,
        records::timeline,
        records::resource_history,
        records::rfsverify,
        records::rfsdiff,
        packages::templates,
        packages::install,
        packages::package,
        packages::uninstall,
        events::events,
        openapi
    )
)]
pub(crate) struct ApiDoc;

#[utoipa::path(get, path = "/api/v1.0/openapi.json", tag = "meta", responses((status = 200, description = "This document")))]
async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// What every port serves, HTTP or HTTPS: the load balancers' health
/// check, the metrics and the node-to-node endpoints (their answers need
/// no secret or are authenticated with the cluster key).
fn open_routes() -> Router<Web> {
    Router::new().merge(health::routes()).merge(metrics::routes()).merge(node::routes()).merge(signed::routes()).merge(tls::routes())
}

/// `routes` with node calls checked, bodies bounded, and the state.
fn finish(routes: Router<Web>, web: Web) -> Router {
    routes
        .layer(axum::middleware::from_fn_with_state(web.clone(), signed::verify))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(web)
}

/// Every route of the web service.
pub(crate) fn router(web: Web) -> Router {
    let routes = open_routes()
        .merge(api::routes())
        .merge(cluster::routes())
        .merge(cli::routes())
        .merge(proxy::routes())
        .merge(config::routes())
        .merge(records::routes())
        .merge(packages::routes())
        .merge(events::routes())
        .merge(console::routes())
        .route("/api/v1.0/openapi.json", axum::routing::get(openapi));
    finish(routes, web)
}

/// What port 9010 still serves when the node serves HTTPS: the open
/// routes; everything else is redirected to HTTPS.
pub(crate) fn redirecting_router(web: Web) -> Router {
    finish(open_routes().fallback(to_https), web)
}

async fn to_https(headers: axum::http::HeaderMap, uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    // The host without its port (an IPv6 literal keeps its brackets).
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{name}:{}{target}", tls::HTTPS_PORT);
    match axum::http::HeaderValue::from_str(&location) {
        Ok(v) => (axum::http::StatusCode::PERMANENT_REDIRECT, [(axum::http::header::LOCATION, v)]).into_response(),
        Err(_) => axum::http::StatusCode::BAD_REQUEST.into_response(),
    }
}

/// Serves `router` on `listen` (over TLS with `tls`) until the task is
/// aborted.
pub(crate) async fn serve(
    listen: SocketAddr,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let l = tokio::net::TcpListener::bind(listen).await?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    Ok(tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let Ok((stream, peer)) = l.accept().await else {
                // Out of descriptors (or a reset): do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let service = TowerToHyperService::new(router.clone().layer(axum::Extension(api::Peer(peer))));
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match acceptor {
                    // The handshake has the same time as a request's headers.
                    Some(a) => {
                        if let Ok(Ok(s)) = tokio::time::timeout(HEADER_TIME, a.accept(stream)).await {
                            serve_connection(s, service).await;
                        }
                    }
                    None => serve_connection(stream, service).await,
                }
            });
        }
    }))
}

async fn serve_connection<S>(stream: S, service: TowerToHyperService<Router>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIME).keep_alive(true);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    // Whatever a client does, the connection ends within a bound.
    let _ = tokio::time::timeout(CONNECTION_TIME, conn).await;
}
