//! What a module leaves behind, for people looking into it (Monitor):
//! the userlog of each script run (`userlog_<time>_<script>.ulog` in
//! `SAFEVAR/modules/AM`, named by the module log's "Script start_prim >
//! userlog_…" line, so the console opens a run's output from its line),
//! the timeline of its states and its peer's read from the module log,
//! the history of its resources (the log's "Resource X set to Y by Z"
//! lines, as SafeKit keeps each assignment of a resource),
//! and the replication checks `rfsverify` (on the secondary: files that
//! differ) and `rfsdiff` (on the primary: what a reintegration would copy).

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::{error, Need, MONITOR};
use super::Web;
use crate::daemon::control::{Request, Response as ControlResponse};

/// Most of a userlog sent back: its end.
pub(crate) const MAX_USERLOG: u64 = 1 << 20;

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/api/v1.0/modules/{module}/userlogs", get(userlogs))
        .route("/api/v1.0/modules/{module}/userlogs/{file}", get(userlog))
        .route("/api/v1.0/modules/{module}/timeline", get(timeline))
        .route("/api/v1.0/modules/{module}/resources/history", get(resource_history))
        .route("/api/v1.0/modules/{module}/rfsverify", get(rfsverify))
        .route("/api/v1.0/modules/{module}/rfsdiff", get(rfsdiff))
}

/// One script run's userlog.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Userlog {
    /// Its file name, to fetch it.
    file: String,
    /// The script.
    script: String,
    /// When it started (UTC, `2026-12-02T101500`).
    time: String,
    bytes: u64,
}

/// `userlog_<time>_<script>.ulog` → (time, script).
fn parse_userlog(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("userlog_")?.strip_suffix(".ulog")?;
    let (time, script) = rest.split_once('_')?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) && !s.starts_with('.');
    (ok(time) && ok(script) && !name.contains("..")).then(|| (time.to_string(), script.to_string()))
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}/userlogs", tag = "modules",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "The script runs' userlogs, newest first, at most 500 (Monitor)", body = [Userlog])))]
pub(crate) async fn userlogs(State(web): State<Web>, _: Need<MONITOR, false>, Path(module): Path<String>) -> Response {
    if !super::node::valid_module(&module) {
        return error(StatusCode::BAD_REQUEST, "invalid module name");
    }
    let mut out: Vec<Userlog> = std::fs::read_dir(web.layout.module_var(&module))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let (time, script) = parse_userlog(&file)?;
            let bytes = e.metadata().ok()?.len();
            Some(Userlog { file, script, time, bytes })
        })
        .collect();
    out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.file.cmp(&a.file)));
    out.truncate(500);
    Json(out).into_response()
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}/userlogs/{file}", tag = "modules",
    params(("module" = String, Path, description = "Module name"), ("file" = String, Path, description = "A userlog's file name")),
    responses((status = 200, description = "The run's output (its last MiB) (Monitor)", content_type = "text/plain"),
        (status = 400, description = "Not a userlog's name", body = super::api::ErrorBody),
        (status = 404, description = "No such userlog", body = super::api::ErrorBody)))]
pub(crate) async fn userlog(State(web): State<Web>, _: Need<MONITOR, false>, Path((module, file)): Path<(String, String)>) -> Response {
    if !super::node::valid_module(&module) || parse_userlog(&file).is_none() {
        return error(StatusCode::BAD_REQUEST, "expected a module name and a userlog_<time>_<script>.ulog file name");
    }
    let path = web.layout.module_var(&module).join(&file);
    let read = || -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let mut f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        f.seek(std::io::SeekFrom::Start(len.saturating_sub(MAX_USERLOG)))?;
        let mut out = Vec::new();
        f.take(MAX_USERLOG).read_to_end(&mut out)?;
        Ok(out)
    };
    match read() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, format!("{file}: {e}")),
    }
}

/// One state change, of this node or of its peer as heard.
#[derive(Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct Change {
    /// The module log's time stamp (UTC).
    time: String,
    /// `local` or `remote`.
    side: String,
    /// `ALONE Ready`, `SECOND Transient`, ...
    state: String,
}

/// A module log line `| time | component | level | message` → (time, message).
fn stamped(line: &str) -> Option<(String, &str)> {
    let mut parts = line.split(" | ");
    let time = parts.next()?.trim_start_matches('|').trim().to_string();
    let (_component, _level, msg) = (parts.next()?, parts.next()?, parts.next()?);
    Some((time, msg))
}

/// The state changes among module log lines, oldest first.
fn changes(lines: &[String]) -> Vec<Change> {
    lines
        .iter()
        .filter_map(|l| {
            let (time, msg) = stamped(l)?;
            let (side, state) =
                if let Some(s) = msg.strip_prefix("Local state ") { ("local", s) } else { ("remote", msg.strip_prefix("Remote state ")?) };
            Some(Change { time, side: side.into(), state: state.trim().into() })
        })
        .collect()
}

/// `?lines=N`: how much of the module log to read (default 10,000).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimelineQuery {
    lines: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}/timeline", tag = "modules",
    params(("module" = String, Path, description = "Module name"), ("lines" = Option<usize>, Query, description = "Module log lines to read, default 10000, at most 100000")),
    responses((status = 200, description = "This node's and its peer's state changes, oldest first (Monitor)", body = [Change]),
        (status = 404, description = "No such module", body = super::api::ErrorBody)))]
pub(crate) async fn timeline(
    State(web): State<Web>,
    _: Need<MONITOR, false>,
    Path(module): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Response {
    match module_log(&web, module, q.lines).await {
        Ok(l) => Json(changes(&l)).into_response(),
        Err(refused) => refused,
    }
}

/// The last `lines` (default 10,000, at most 100,000) lines of the module log.
async fn module_log(web: &Web, module: String, lines: Option<usize>) -> Result<Vec<String>, Response> {
    let lines = lines.unwrap_or(10_000).min(100_000);
    match web.actions.control(Request::Log { module, lines, verbose: false }, String::new()).await {
        ControlResponse::Lines(l) => Ok(l),
        ControlResponse::Error(e) => Err(error(StatusCode::NOT_FOUND, e)),
        other => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected answer {other:?}"))),
    }
}

/// One assignment of a resource.
#[derive(Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct Assignment {
    /// The module log's time stamp (UTC).
    time: String,
    /// `rfs.uptodate`, `heartbeat.default`, ...
    resource: String,
    /// `up`, `down`, `init`, ...
    value: String,
    /// The component that set it.
    by: String,
}

/// The resource assignments among module log lines (of `only` if given), oldest first.
fn assignments(lines: &[String], only: Option<&str>) -> Vec<Assignment> {
    lines
        .iter()
        .filter_map(|l| {
            let (time, msg) = stamped(l)?;
            let (resource, rest) = msg.strip_prefix("Resource ")?.split_once(" set to ")?;
            let (value, by) = rest.split_once(" by ")?;
            if only.is_some_and(|o| o != resource) {
                return None;
            }
            Some(Assignment { time, resource: resource.into(), value: value.into(), by: by.trim().into() })
        })
        .collect()
}

/// `?lines=N&resource=R`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    lines: Option<usize>,
    resource: Option<String>,
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}/resources/history", tag = "modules",
    params(("module" = String, Path, description = "Module name"),
        ("resource" = Option<String>, Query, description = "Only this resource (e.g. rfs.uptodate)"),
        ("lines" = Option<usize>, Query, description = "Module log lines to read, default 10000, at most 100000")),
    responses((status = 200, description = "Each assignment of the module's resources, oldest first (Monitor)", body = [Assignment]),
        (status = 404, description = "No such module", body = super::api::ErrorBody)))]
pub(crate) async fn resource_history(
    State(web): State<Web>,
    _: Need<MONITOR, false>,
    Path(module): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    match module_log(&web, module, q.lines).await {
        Ok(l) => Json(assignments(&l, q.resource.as_deref())).into_response(),
        Err(refused) => refused,
    }
}

async fn lines(web: &Web, req: Request) -> Response {
    match web.actions.control(req, String::new()).await {
        ControlResponse::Lines(l) => Json(l).into_response(),
        ControlResponse::Error(e) => error(StatusCode::CONFLICT, e),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected answer {other:?}")),
    }
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}/rfsverify", tag = "modules",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "On the secondary: the replicated files that differ from the primary's, empty when none (Monitor)", body = [String]),
        (status = 409, description = "Not possible now (not a secondary, no replication), with why", body = super::api::ErrorBody)))]
pub(crate) async fn rfsverify(State(web): State<Web>, _: Need<MONITOR, false>, Path(module): Path<String>) -> Response {
    lines(&web, Request::Rfsverify { module }).await
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}/rfsdiff", tag = "modules",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "On the primary: what a reintegration would copy now (Monitor)", body = [String]),
        (status = 409, description = "Not possible now, with why", body = super::api::ErrorBody)))]
pub(crate) async fn rfsdiff(State(web): State<Web>, _: Need<MONITOR, false>, Path(module): Path<String>) -> Response {
    lines(&web, Request::Rfsdiff { module }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_history_is_read_from_its_assignment_lines() {
        let log: Vec<String> = [
            "| 2026-12-02 10:00:00.000001 | heart | E | Resource heartbeat.default set to up by heart",
            "| 2026-12-02 10:00:01.000002 | rfs | E | Resource rfs.uptodate set to down by rfs",
            "| 2026-12-02 10:00:02.000003 | heart | E | Local state WAIT Transient",
            "| 2026-12-02 10:00:03.000004 | rfs | E | Resource rfs.uptodate set to up by rfs reintegration",
            "Resource x set to",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let all = assignments(&log, None);
        assert_eq!(all.len(), 3);
        let uptodate = assignments(&log, Some("rfs.uptodate"));
        let got: Vec<(&str, &str, &str)> = uptodate.iter().map(|a| (a.time.as_str(), a.value.as_str(), a.by.as_str())).collect();
        assert_eq!(got, [("2026-12-02 10:00:01.000002", "down", "rfs"), ("2026-12-02 10:00:03.000004", "up", "rfs reintegration")]);
    }

    #[test]
    fn the_timeline_is_read_from_the_state_lines_only() {
        let log: Vec<String> = [
            "| 2026-12-02 10:00:00.000001 | heart | I | Heartbeat sent",
            "| 2026-12-02 10:00:01.000002 | heart | E | Local state WAIT Transient",
            "| 2026-12-02 10:00:02.000003 | heart | E | Remote state PRIM Ready",
            "| 2026-12-02 10:00:03.000004 | userplug | S | Script start_second > userlog_2026-12-02T100003_start_second.ulog: exit status: 0",
            "| 2026-12-02 10:00:04.000005 | heart | E | Local state SECOND Ready",
            "garbage",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = changes(&log);
        let got: Vec<(&str, &str, &str)> = c.iter().map(|c| (c.time.as_str(), c.side.as_str(), c.state.as_str())).collect();
        assert_eq!(
            got,
            [
                ("2026-12-02 10:00:01.000002", "local", "WAIT Transient"),
                ("2026-12-02 10:00:02.000003", "remote", "PRIM Ready"),
                ("2026-12-02 10:00:04.000005", "local", "SECOND Ready"),
            ]
        );
    }

    #[test]
    fn only_userlog_names_are_read() {
        assert_eq!(parse_userlog("userlog_2026-12-02T100003_start_second.ulog"), Some(("2026-12-02T100003".into(), "start_second".into())));
        for bad in
            ["../etc/passwd", "userlog_x_../../a.ulog", "userlog_.ulog", "state.json", "userlog_a_b/c.ulog", "userlog_a_.hidden.ulog"]
        {
            assert_eq!(parse_userlog(bad), None, "{bad}");
        }
    }
}
