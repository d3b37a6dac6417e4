//! The configuration endpoints (Admin): read, check and apply cluster.xml
//! and a module's files (`conf/userconfig.xml` and `bin/` scripts), with
//! the config reader's diagnostics as JSON (`file`, `pos.line`,
//! `pos.column`, `message`, `severity`); a module's configuration applies
//! only while it is STOP (the daemon decides, as for `safekit config`),
//! and the last 3 applied are kept and can be applied again. To apply to
//! every node, call these through `/api/v1.0/nodes/*/…`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::{error, Need, ADMIN};
use super::Web;
use crate::config::{ConfigError, Diagnostic};
use crate::daemon::control::{Request, Response as ControlResponse};
use crate::modules::files::{self, Files};

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/api/v1.0/config/cluster", get(cluster).put(save_cluster))
        .route("/api/v1.0/config/cluster/check", post(check_cluster))
        .route("/api/v1.0/config/modules/{module}", get(module).put(apply))
        .route("/api/v1.0/config/modules/{module}/check", post(check))
        .route("/api/v1.0/config/modules/{module}/history", get(history))
        .route("/api/v1.0/config/modules/{module}/history/{id}/restore", post(restore))
}

/// Refuses a module name that is not one (so no path is built from it).
fn checked(module: &str) -> Result<(), Box<Response>> {
    if super::node::valid_module(module) {
        Ok(())
    } else {
        Err(Box::new(error(StatusCode::BAD_REQUEST, "invalid module name")))
    }
}

/// A configuration checked: valid, its warnings, its errors.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Checked {
    valid: bool,
    #[schema(value_type = Vec<Object>)]
    errors: Vec<Diagnostic>,
    #[schema(value_type = Vec<Object>)]
    warnings: Vec<Diagnostic>,
}

impl Checked {
    fn of(r: Result<Vec<Diagnostic>, ConfigError>) -> Self {
        match r {
            Ok(warnings) => Self { valid: true, errors: Vec::new(), warnings },
            Err(e) => {
                let (errors, warnings) = e.diagnostics.into_iter().partition(|d| d.severity == crate::config::Severity::Error);
                Self { valid: false, errors, warnings }
            }
        }
    }

    fn response(self) -> Response {
        let code = if self.valid { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
        (code, Json(self)).into_response()
    }
}

/// cluster.xml's text.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterText {
    text: String,
}

#[utoipa::path(get, path = "/api/v1.0/config/cluster", tag = "config",
    responses((status = 200, description = "This node's cluster.xml (Admin)", body = ClusterText)))]
pub(crate) async fn cluster(State(web): State<Web>, _: Need<ADMIN, false>) -> Response {
    match std::fs::read_to_string(web.layout.cluster_xml()) {
        Ok(text) => Json(ClusterText { text }).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, format!("{}: {e}", web.layout.cluster_xml().display())),
    }
}

#[utoipa::path(post, path = "/api/v1.0/config/cluster/check", tag = "config", request_body = ClusterText,
    responses((status = 200, description = "Valid, with its warnings (Admin)", body = Checked),
        (status = 422, description = "The errors, each with its line and column", body = Checked)))]
pub(crate) async fn check_cluster(_: Need<ADMIN, true>, Json(c): Json<ClusterText>) -> Response {
    Checked::of(crate::config::parse_cluster(&c.text, "cluster.xml").map(|p| p.warnings)).response()
}

#[utoipa::path(put, path = "/api/v1.0/config/cluster", tag = "config", request_body = ClusterText,
    responses((status = 200, description = "Checked and saved; the daemon reads it when it restarts (Admin)", body = Checked),
        (status = 422, description = "Not saved: the errors", body = Checked)))]
pub(crate) async fn save_cluster(State(web): State<Web>, Need(who): Need<ADMIN, true>, Json(c): Json<ClusterText>) -> Response {
    let checked = Checked::of(crate::config::parse_cluster(&c.text, "cluster.xml").map(|p| p.warnings));
    if !checked.valid {
        return checked.response();
    }
    let dest = web.layout.cluster_xml();
    let tmp = dest.with_extension("xml.safekit-new");
    let saved = std::fs::create_dir_all(dest.parent().unwrap_or(&web.layout.safevar))
        .and_then(|()| std::fs::write(&tmp, &c.text))
        .and_then(|()| std::fs::rename(&tmp, &dest));
    match saved {
        Ok(()) => {
            tracing::info!(by = who.by, "cluster.xml saved; applied when the daemon restarts");
            checked.response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", dest.display())),
    }
}

/// A module's files, by path (`conf/userconfig.xml`, `bin/<name>`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ModuleFiles {
    files: Files,
}

/// Changes to a module's files: a text replaces or adds one, `null`
/// removes a script; files not named stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Changes {
    files: BTreeMap<String, Option<String>>,
}

#[utoipa::path(get, path = "/api/v1.0/config/modules/{module}", tag = "config",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "The module's userconfig.xml and scripts (Admin)", body = ModuleFiles),
        (status = 404, description = "Not installed", body = super::api::ErrorBody)))]
pub(crate) async fn module(State(web): State<Web>, _: Need<ADMIN, false>, Path(module): Path<String>) -> Response {
    if let Err(r) = checked(&module) {
        return *r;
    }
    match files::current(&web.layout, &module) {
        Ok(files) => Json(ModuleFiles { files }).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

/// The module's files with `changes`, checked: the new set, or the answer.
fn proposed(web: &Web, module: &str, changes: &Changes) -> Result<(Files, Checked), Box<Response>> {
    checked(module)?;
    let now = files::current(&web.layout, module).map_err(|e| Box::new(error(StatusCode::NOT_FOUND, e)))?;
    let new = files::merge(now, &changes.files).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, e)))?;
    let c = Checked::of(files::check(&new, &web.cluster));
    Ok((new, c))
}

#[utoipa::path(post, path = "/api/v1.0/config/modules/{module}/check", tag = "config",
    params(("module" = String, Path, description = "Module name")), request_body = Changes,
    responses((status = 200, description = "The module's files with these changes are valid (Admin)", body = Checked),
        (status = 422, description = "The errors, each with its file, line and column", body = Checked)))]
pub(crate) async fn check(State(web): State<Web>, _: Need<ADMIN, true>, Path(module): Path<String>, Json(c): Json<Changes>) -> Response {
    match proposed(&web, &module, &c) {
        Ok((_, checked)) => checked.response(),
        Err(r) => *r,
    }
}

/// Asks the daemon to apply `files` to `module`, as `safekit config` does.
async fn apply_files(web: &Web, module: String, files: Files, checked: Checked, by: String) -> Response {
    if !checked.valid {
        return checked.response();
    }
    match web.actions.control(Request::Config { module, files: Some(files) }, by).await {
        ControlResponse::Error(e) => error(StatusCode::CONFLICT, e),
        _ => checked.response(),
    }
}

#[utoipa::path(put, path = "/api/v1.0/config/modules/{module}", tag = "config",
    params(("module" = String, Path, description = "Module name")), request_body = Changes,
    responses((status = 200, description = "Checked, written and applied (Admin); kept in the history", body = Checked),
        (status = 409, description = "Not applied, files unchanged: the module is not STOP, or the daemon refused", body = super::api::ErrorBody),
        (status = 422, description = "Not applied: the errors", body = Checked)))]
pub(crate) async fn apply(
    State(web): State<Web>,
    Need(who): Need<ADMIN, true>,
    Path(module): Path<String>,
    Json(c): Json<Changes>,
) -> Response {
    match proposed(&web, &module, &c) {
        Ok((new, checked)) => apply_files(&web, module, new, checked, who.by).await,
        Err(r) => *r,
    }
}

/// One kept configuration, without its files.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Kept {
    id: u64,
    /// Seconds since 1970.
    applied: u64,
    by: String,
    files: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1.0/config/modules/{module}/history", tag = "config",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "The last 3 applied configurations, newest first (Admin)", body = [Kept])))]
pub(crate) async fn history(State(web): State<Web>, _: Need<ADMIN, false>, Path(module): Path<String>) -> Response {
    if let Err(r) = checked(&module) {
        return *r;
    }
    let kept: Vec<Kept> = files::history(&web.layout, &module)
        .into_iter()
        .map(|a| Kept { id: a.id, applied: a.applied, by: a.by, files: a.files.into_keys().collect() })
        .collect();
    Json(kept).into_response()
}

#[utoipa::path(post, path = "/api/v1.0/config/modules/{module}/history/{id}/restore", tag = "config",
    params(("module" = String, Path, description = "Module name"), ("id" = u64, Path, description = "A kept configuration's id")),
    responses((status = 200, description = "Applied again (Admin)", body = Checked),
        (status = 404, description = "No such kept configuration", body = super::api::ErrorBody),
        (status = 409, description = "Not applied: the module is not STOP, or the daemon refused", body = super::api::ErrorBody)))]
pub(crate) async fn restore(State(web): State<Web>, Need(who): Need<ADMIN, true>, Path((module, id)): Path<(String, u64)>) -> Response {
    if let Err(r) = checked(&module) {
        return *r;
    }
    let Some(kept) = files::history(&web.layout, &module).into_iter().find(|a| a.id == id) else {
        return error(StatusCode::NOT_FOUND, format!("module {module} has no kept configuration {id}"));
    };
    let c = Checked::of(files::check(&kept.files, &web.cluster));
    apply_files(&web, module, kept.files, c, who.by).await
}
