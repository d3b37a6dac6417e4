//! The browser console: one page, its scripts and style sheet, written
//! by hand (no framework, no build step: `cargo build` embeds them as
//! they are) and served by the web service from the binary. It uses only
//! the public API (`/login`, `/api/v1.0/…`, the server-sent events of
//! `/api/v1.0/events`), so whatever it does a script can do too, and the
//! server enforces every role itself. Nothing is loaded from elsewhere:
//! the Content-Security-Policy allows this origin only (no CDN, no inline
//! script), which also keeps injected markup from running.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::Web;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const MODULE: &str = include_str!("assets/module.js");
const CONFIG: &str = include_str!("assets/config.js");
const CLUSTER: &str = include_str!("assets/cluster.js");
const WIDGETS: &str = include_str!("assets/widgets.js");
const STYLE: &str = include_str!("assets/app.css");
const JS: &str = "text/javascript; charset=utf-8";

/// Only this origin; no inline script or style; no framing.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                      frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/console/app.js", get(|| async { asset(JS, SCRIPT) }))
        .route("/console/module.js", get(|| async { asset(JS, MODULE) }))
        .route("/console/config.js", get(|| async { asset(JS, CONFIG) }))
        .route("/console/cluster.js", get(|| async { asset(JS, CLUSTER) }))
        .route("/console/widgets.js", get(|| async { asset(JS, WIDGETS) }))
        .route("/console/app.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// The console's bytes, for the page-weight figure in docs/PERFORMANCE.md.
pub fn weight() -> [(&'static str, usize); 7] {
    [
        ("index.html", INDEX.len()),
        ("app.js", SCRIPT.len()),
        ("module.js", MODULE.len()),
        ("config.js", CONFIG.len()),
        ("cluster.js", CLUSTER.len()),
        ("widgets.js", WIDGETS.len()),
        ("app.css", STYLE.len()),
    ]
}
