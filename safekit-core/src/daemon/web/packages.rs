//! Module packages through the web service (Admin): the `.safe` files
//! offered in `SAFE/Application_Modules/<kind>/`, installing a module from
//! one of them or from an uploaded `.safe` (at most 1 MiB, the body
//! limit; SafeKit's own packages are well under it), downloading a module
//! as a `.safe`, and uninstalling one. Install and uninstall go through
//! the same code as `safekit module install|uninstall`; an installed
//! module is then applied (loaded STOP by the daemon, as `safekit config`
//! does), and a template with blanks to fill stays installed with the
//! reader's errors saying what to fill.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::{error, Need, ADMIN};
use super::Web;
use crate::daemon::control::{Request, Response as ControlResponse};

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/api/v1.0/packages", get(templates))
        .route("/api/v1.0/modules/{module}/install", post(install))
        .route("/api/v1.0/modules/{module}/package", get(package))
        .route("/api/v1.0/modules/{module}/uninstall", post(uninstall))
}

#[utoipa::path(get, path = "/api/v1.0/packages", tag = "packages",
    responses((status = 200, description = "The module packages offered on this node, as <kind>/<file>.safe (Admin)", body = [String])))]
pub(crate) async fn templates(State(web): State<Web>, _: Need<ADMIN, false>) -> Response {
    Json(crate::modules::templates(&web.layout)).into_response()
}

/// `?template=generic/mysql.safe` (else the body is the `.safe`), `&replace=true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallQuery {
    template: Option<String>,
    #[serde(default)]
    replace: bool,
}

/// What an install did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Installed {
    module: String,
    /// Loaded by the daemon (STOP); false with `why` when its configuration
    /// is not complete yet (a template's blanks) or not valid.
    applied: bool,
    why: Option<String>,
}

#[utoipa::path(post, path = "/api/v1.0/modules/{module}/install", tag = "packages",
    params(("module" = String, Path, description = "Module name"),
        ("template" = Option<String>, Query, description = "A package of GET /api/v1.0/packages; without it the body is the .safe"),
        ("replace" = Option<bool>, Query, description = "Reinstall over an installed (stopped) module")),
    request_body(content = Vec<u8>, content_type = "application/zip", description = "The .safe, when no template is named"),
    responses((status = 201, description = "Installed (Admin), applied or with why not", body = Installed),
        (status = 400, description = "Invalid name, unknown template, not a .safe", body = super::api::ErrorBody),
        (status = 409, description = "Installed already (no replace), or running", body = super::api::ErrorBody)))]
pub(crate) async fn install(
    State(web): State<Web>,
    Need(who): Need<ADMIN, true>,
    Path(module): Path<String>,
    Query(q): Query<InstallQuery>,
    body: Bytes,
) -> Response {
    if !super::node::valid_module(&module) {
        return error(StatusCode::BAD_REQUEST, "invalid module name");
    }
    if web.directory.status(&module).is_some_and(|s| s.state != crate::engine::State::Stop) {
        return error(StatusCode::CONFLICT, format!("module {module} runs: stop it first (safekit stop -m {module})"));
    }
    let (src, upload) = match &q.template {
        Some(t) => match crate::modules::template_path(&web.layout, t) {
            Some(p) => (p, None),
            None => return error(StatusCode::BAD_REQUEST, format!("no package {t} in SAFE/Application_Modules")),
        },
        None if body.is_empty() => return error(StatusCode::BAD_REQUEST, "send the .safe as the body, or name a ?template="),
        None => {
            let mut r = [0u8; 8];
            let _ = getrandom::fill(&mut r);
            let p = web.layout.safe.join("modules").join(format!(".upload-{}.safe", hex::encode(r)));
            let saved = p.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&p, &body));
            if let Err(e) = saved {
                return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", p.display()));
            }
            (p.clone(), Some(p))
        }
    };
    let installed = crate::modules::install(&web.layout, &src, Some(&module), None, q.replace);
    if let Some(p) = upload {
        let _ = std::fs::remove_file(p);
    }
    let to_fill = match installed {
        Ok(r) => r.to_fill,
        Err(e) => {
            let code = if e.contains("already installed") { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
            return error(code, e);
        }
    };
    if !to_fill.is_empty() {
        tracing::info!(by = who.by, module, "module installed with blanks to fill");
        let why = format!("installed with blanks to fill:\n{}", to_fill.join("\n"));
        return (StatusCode::CREATED, Json(Installed { module, applied: false, why: Some(why) })).into_response();
    }
    tracing::info!(by = who.by, module, template = q.template, "module installed");
    let (applied, why) = match web.actions.control(Request::Config { module: module.clone(), files: None }, who.by).await {
        ControlResponse::Error(e) => (false, Some(e)),
        _ => (true, None),
    };
    (StatusCode::CREATED, Json(Installed { module, applied, why })).into_response()
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}/package", tag = "packages",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "The module as a .safe (Admin)", content_type = "application/zip"),
        (status = 404, description = "Not installed", body = super::api::ErrorBody)))]
pub(crate) async fn package(State(web): State<Web>, _: Need<ADMIN, false>, Path(module): Path<String>) -> Response {
    if !super::node::valid_module(&module) {
        return error(StatusCode::BAD_REQUEST, "invalid module name");
    }
    match crate::modules::package(&web.layout, &module) {
        Ok(z) => {
            let disposition = format!("attachment; filename=\"{module}.safe\"");
            ([(header::CONTENT_TYPE, "application/zip".to_string()), (header::CONTENT_DISPOSITION, disposition)], z).into_response()
        }
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

#[utoipa::path(post, path = "/api/v1.0/modules/{module}/uninstall", tag = "packages",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 204, description = "Uninstalled (Admin)"),
        (status = 409, description = "Running, or not installed", body = super::api::ErrorBody)))]
pub(crate) async fn uninstall(State(web): State<Web>, Need(who): Need<ADMIN, true>, Path(module): Path<String>) -> Response {
    if !super::node::valid_module(&module) {
        return error(StatusCode::BAD_REQUEST, "invalid module name");
    }
    match web.actions.control(Request::Uninstall { module }, who.by).await {
        ControlResponse::Error(e) => error(StatusCode::CONFLICT, e),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}
