//! `GET /var/modules/<AM>/ready.txt`: what cloud load balancers poll to
//! send clients to the node that serves them (reference §9.5). 200 while
//! the module is PRIM or ALONE Ready (mirror) or UP Ready (farm, light),
//! 404 otherwise, also for a module that does not run here. No
//! authentication: a load balancer has no credentials, and the answer
//! says only what the VIP already tells anyone.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use super::Web;
use crate::engine::{Readiness, State as ModuleState};

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/var/modules/{module}/ready.txt", get(ready))
}

#[utoipa::path(get, path = "/var/modules/{module}/ready.txt", tag = "health",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "PRIM, ALONE or UP Ready on this node", content_type = "text/plain"),
        (status = 404, description = "Not serving clients here", content_type = "text/plain")))]
pub(crate) async fn ready(State(web): State<Web>, Path(module): Path<String>) -> (StatusCode, &'static str) {
    match web.directory.status(&module) {
        Some(s) if s.readiness == Readiness::Ready && matches!(s.state, ModuleState::Prim | ModuleState::Alone | ModuleState::Up) => {
            (StatusCode::OK, "ready\n")
        }
        _ => (StatusCode::NOT_FOUND, "not ready\n"),
    }
}
