//! The REST API for people and their scripts (`/api/v1.0/…`) and its login
//! (SafeKit's `POST /login` form, cookie `sessionSK`). A session lasts 8 h
//! from its last use; every state-changing call must carry the session's
//! CSRF token in `X-CSRF-Token` (a page of another site can make the
//! browser send the cookie, never read the token). Five failed logins from
//! one address within five minutes block it for the rest of the five
//! minutes. Monitor reads, Control also acts on modules; every refused call
//! is logged. An action goes through the same code as the CLI's command,
//! and the module log names the caller ("called by admin@10.0.0.7").

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::accounts::Role;
use super::Web;
use crate::daemon::control::{Request, Response as ControlResponse};
use crate::engine::{CommandKind, SwapKind};

/// Idle time after which a session ends.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Failed logins from one address that block it.
pub(crate) const MAX_FAILURES: u32 = 5;
/// The window of [`MAX_FAILURES`], and how long a block lasts.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(300);

const COOKIE: &str = "sessionSK";

/// The client's address, set by the accept loop on each connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

struct Session {
    user: String,
    role: Role,
    csrf: String,
    last: Instant,
}

/// Open sessions and failed logins (in memory: a restarted daemon asks
/// everyone to log in again).
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// One password check at a time: argon2 is made to be costly, and a
    /// flood of logins must not take the CPU the heartbeats need.
    checking: tokio::sync::Semaphore,
}

impl Default for Sessions {
    fn default() -> Self {
        Self { open: Mutex::default(), failures: Mutex::default(), checking: tokio::sync::Semaphore::new(1) }
    }
}

fn token() -> String {
    let mut b = [0u8; 32];
    // getrandom fails only without a kernel source of randomness; an
    // all-zero token would then be refused by its length check below.
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

impl Sessions {
    fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut f) = self.failures.lock() else { return true };
        f.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        f.get(&ip).is_some_and(|(n, _)| *n >= MAX_FAILURES)
    }

    fn failed(&self, ip: IpAddr, now: Instant) {
        if let Ok(mut f) = self.failures.lock() {
            let e = f.entry(ip).or_insert((0, now));
            e.0 += 1;
        }
    }

    fn open(&self, user: String, role: Role, now: Instant) -> (String, String) {
        let (id, csrf) = (token(), token());
        if let Ok(mut s) = self.open.lock() {
            s.retain(|_, v| now.duration_since(v.last) < SESSION_IDLE);
            s.insert(id.clone(), Session { user, role, csrf: csrf.clone(), last: now });
        }
        (id, csrf)
    }

    /// The session of `id`, refreshed, if it has not expired.
    fn get(&self, id: &str, now: Instant) -> Option<(String, Role, String)> {
        let mut s = self.open.lock().ok()?;
        let v = s.get_mut(id)?;
        if now.duration_since(v.last) >= SESSION_IDLE {
            s.remove(id);
            return None;
        }
        v.last = now;
        Some((v.user.clone(), v.role, v.csrf.clone()))
    }

    fn close(&self, id: &str) {
        if let Ok(mut s) = self.open.lock() {
            s.remove(id);
        }
    }
}

/// An authenticated caller.
pub(crate) struct Caller {
    pub(crate) user: String,
    pub(crate) role: Role,
    /// How the module log names the caller: `admin@10.0.0.7`, or for a
    /// call through another node `admin@10.0.0.7 via node1`.
    pub(crate) by: String,
    /// The call came from another node on a user's behalf.
    pub(crate) forwarded: bool,
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() == 64)
}

/// `{"error": why}` with `code`: every refusal of the API looks the same.
pub(crate) fn error(code: StatusCode, why: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": why.into() }))).into_response()
}

pub(crate) fn refuse(code: StatusCode, why: &str, ip: IpAddr, path: &str) -> Response {
    tracing::warn!(%ip, path, why, "web service call refused");
    error(code, why)
}

/// The caller of a request: another node acting for a user (checked by
/// [`super::signed::verify`]), an API key, or a valid session (then, for a
/// state-changing call, with its CSRF token); with at least `need`.
pub(crate) fn caller(web: &Web, parts: &axum::http::request::Parts, need: Role, changes: bool) -> Result<Caller, Box<Response>> {
    let (headers, path) = (&parts.headers, parts.uri.path());
    let ip = parts.extensions.get::<Peer>().map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
    if let Some(who) = parts.extensions.get::<super::signed::OnBehalf>() {
        if who.role < need {
            let why = format!("{} ({:?}) may not do this: it needs {need:?}", who.user, who.role);
            return Err(Box::new(refuse(StatusCode::FORBIDDEN, &why, ip, path)));
        }
        return Ok(Caller { user: who.user.clone(), role: who.role, by: who.user.clone(), forwarded: true });
    }
    // A script's API key: no cookie, so no CSRF to fear.
    if let Some(bearer) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) {
        let Some(key) = web.keys.verify(bearer.trim()) else {
            return Err(Box::new(refuse(StatusCode::UNAUTHORIZED, "unknown or revoked API key", ip, path)));
        };
        if key.role < need {
            let why = format!("API key {} ({:?}) may not do this: it needs {need:?}", key.name, key.role);
            return Err(Box::new(refuse(StatusCode::FORBIDDEN, &why, ip, path)));
        }
        let user = format!("apikey:{}", key.name);
        return Ok(Caller { by: format!("{user}@{ip}"), user, role: key.role, forwarded: false });
    }
    let Some((user, role, csrf)) = session_id(headers).and_then(|id| web.sessions.get(&id, Instant::now())) else {
        return Err(Box::new(refuse(StatusCode::UNAUTHORIZED, "log in first (POST /login)", ip, path)));
    };
    if changes && headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) != Some(csrf.as_str()) {
        return Err(Box::new(refuse(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token", ip, path)));
    }
    if role < need {
        return Err(Box::new(refuse(StatusCode::FORBIDDEN, &format!("{user} ({role:?}) may not do this: it needs {need:?}"), ip, path)));
    }
    Ok(Caller { by: format!("{user}@{ip}"), user, role, forwarded: false })
}

/// Which calls a handler serves: the least role, and whether the call
/// changes something (then a session must also send its CSRF token).
pub(crate) struct Need<const ROLE: u8, const CHANGES: bool>(pub(crate) Caller);

/// [`Need`]'s roles as numbers (const generics take no enums).
pub(crate) const MONITOR: u8 = 0;
pub(crate) const CONTROL: u8 = 1;
pub(crate) const ADMIN: u8 = 2;

impl<const ROLE: u8, const CHANGES: bool> axum::extract::FromRequestParts<Web> for Need<ROLE, CHANGES> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, web: &Web) -> Result<Self, Response> {
        let need = match ROLE {
            MONITOR => Role::Monitor,
            CONTROL => Role::Control,
            _ => Role::Admin,
        };
        caller(web, parts, need, CHANGES).map(Need).map_err(|r| *r)
    }
}

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/v1.0/session", get(session))
        .route("/api/v1.0/modules", get(modules))
        .route("/api/v1.0/modules/{module}", get(module))
        .route("/api/v1.0/modules/{module}/log", get(log))
        .route("/api/v1.0/modules/{module}/actions/{action}", post(action))
        .route("/api/v1.0/modules/{module}/snapshot", get(snapshot))
        .route("/api/v1.0/apikey", get(list_keys))
        .route("/api/v1.0/apikey/{role}/{name}", post(create_key))
        .route("/api/v1.0/apikey/{name}", axum::routing::delete(revoke_key))
}

/// SafeKit's login form.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct Login {
    httpd_username: String,
    httpd_password: String,
    #[serde(default)]
    #[allow(dead_code)]
    login: Option<String>,
}

/// Who is logged in, and the CSRF token of the session.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Who {
    user: String,
    role: Role,
    csrf: String,
}

/// `{"error": "…"}`: why a call was refused, one sentence.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: String,
}

#[utoipa::path(post, path = "/login", tag = "session",
    request_body(content = Login, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Logged in; sets the cookie sessionSK", body = Who),
        (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 429, description = "Too many failed logins from this address", body = ErrorBody)))]
async fn login(State(web): State<Web>, Extension(peer): Extension<Peer>, Form(f): Form<Login>) -> Response {
    let (ip, now) = (peer.0.ip(), Instant::now());
    if web.sessions.blocked(ip, now) {
        return refuse(StatusCode::TOO_MANY_REQUESTS, "too many failed logins from this address: wait five minutes", ip, "/login");
    }
    // argon2 takes tens of milliseconds: off the async workers, one at a
    // time, and a login that would queue behind many others is refused.
    let Ok(_checking) = tokio::time::timeout(Duration::from_secs(2), web.sessions.checking.acquire()).await else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many logins at once: try again", ip, "/login");
    };
    let (accounts, user, password) = (web.accounts.clone(), f.httpd_username.clone(), f.httpd_password);
    let role = tokio::task::spawn_blocking(move || accounts.verify(&user, &password)).await.ok().flatten();
    let Some(role) = role else {
        web.sessions.failed(ip, now);
        return refuse(StatusCode::UNAUTHORIZED, "wrong user name or password", ip, "/login");
    };
    let (id, csrf) = web.sessions.open(f.httpd_username.clone(), role, now);
    let cookie =
        cookie::Cookie::build((COOKIE, id)).path("/").http_only(true).same_site(cookie::SameSite::Strict).secure(web.https).build();
    ([(header::SET_COOKIE, cookie.to_string())], Json(Who { user: f.httpd_username, role, csrf })).into_response()
}

#[utoipa::path(post, path = "/logout", tag = "session", responses((status = 204, description = "The session is closed")))]
async fn logout(State(web): State<Web>, headers: HeaderMap) -> StatusCode {
    if let Some(id) = session_id(&headers) {
        web.sessions.close(&id);
    }
    StatusCode::NO_CONTENT
}

#[utoipa::path(get, path = "/api/v1.0/session", tag = "session",
    responses((status = 200, description = "The session's user, role and CSRF token", body = Who),
        (status = 401, description = "No session", body = ErrorBody)))]
async fn session(State(web): State<Web>, Extension(peer): Extension<Peer>, headers: HeaderMap) -> Response {
    let Some((user, role, csrf)) = session_id(&headers).and_then(|id| web.sessions.get(&id, Instant::now())) else {
        return refuse(StatusCode::UNAUTHORIZED, "log in first (POST /login)", peer.0.ip(), "/api/v1.0/session");
    };
    Json(Who { user, role, csrf }).into_response()
}

#[utoipa::path(get, path = "/api/v1.0/modules", tag = "modules",
    responses((status = 200, description = "Every module running on this node: status, peer, resources, metrics (Monitor)"),
        (status = 401, description = "No session", body = ErrorBody)))]
async fn modules(State(web): State<Web>, _: Need<MONITOR, false>) -> Response {
    Json(web.directory.reports()).into_response()
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}", tag = "modules",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "The module's report: status, peer, resources, metrics (Monitor)"),
        (status = 404, description = "No such module on this node", body = ErrorBody)))]
async fn module(State(web): State<Web>, _: Need<MONITOR, false>, Path(module): Path<String>) -> Response {
    match web.directory.reports().into_iter().find(|r| r.name == module) {
        Some(r) => Json(r).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no module {module} runs on this node")),
    }
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}/snapshot", tag = "modules",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "One zip for support: configuration, scripts, logs, state, system facts; no secret (Admin)", content_type = "application/zip"),
        (status = 400, description = "Invalid module name", body = ErrorBody)))]
async fn snapshot(State(web): State<Web>, Need(who): Need<ADMIN, false>, Path(module): Path<String>) -> Response {
    if !super::node::valid_module(&module) {
        return error(StatusCode::BAD_REQUEST, "invalid module name");
    }
    let report = web.directory.reports().into_iter().find(|r| r.name == module);
    let layout = web.layout.clone();
    let name = module.clone();
    let zip = tokio::task::spawn_blocking(move || {
        super::super::snapshot::write(&layout, &name, report.as_ref(), std::io::Cursor::new(Vec::new()))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match zip {
        Ok(c) => {
            tracing::info!(user = who.user, module, "snapshot taken");
            let disposition = format!("attachment; filename=\"snapshot-{module}.zip\"");
            ([(header::CONTENT_TYPE, "application/zip".to_string()), (header::CONTENT_DISPOSITION, disposition)], c.into_inner())
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A new API key, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct NewKey {
    name: String,
    role: Role,
    key: String,
}

#[utoipa::path(get, path = "/api/v1.0/apikey", tag = "apikeys",
    responses((status = 200, description = "The API keys, without their secrets (Admin)", body = [super::accounts::ApiKey])))]
async fn list_keys(State(web): State<Web>, _: Need<ADMIN, false>) -> Response {
    Json(web.keys.list()).into_response()
}

#[utoipa::path(post, path = "/api/v1.0/apikey/{role}/{name}", tag = "apikeys",
    params(("role" = String, Path, description = "Admin, Control or Monitor"), ("name" = String, Path, description = "Key name")),
    responses((status = 201, description = "The key, shown once (Admin)", body = NewKey),
        (status = 400, description = "Unknown role", body = ErrorBody),
        (status = 409, description = "A key of that name exists", body = ErrorBody)))]
async fn create_key(State(web): State<Web>, Need(who): Need<ADMIN, true>, Path((role, name)): Path<(String, String)>) -> Response {
    let Some(role) = Role::parse(&role) else {
        return error(StatusCode::BAD_REQUEST, "role: Admin, Control or Monitor");
    };
    match web.keys.create(&name, role) {
        Ok(key) => {
            tracing::info!(user = who.user, name, ?role, "API key created");
            (StatusCode::CREATED, Json(NewKey { name, role, key })).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

#[utoipa::path(delete, path = "/api/v1.0/apikey/{name}", tag = "apikeys",
    params(("name" = String, Path, description = "Key name")),
    responses((status = 204, description = "Revoked (Admin)"), (status = 404, description = "No such key", body = ErrorBody)))]
async fn revoke_key(State(web): State<Web>, Need(who): Need<ADMIN, true>, Path(name): Path<String>) -> Response {
    match web.keys.revoke(&name) {
        Ok(true) => {
            tracing::info!(user = who.user, name, "API key revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no API key {name}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `?lines=N&levels=EUSC&skip=M`: the last N lines (default 100, at most
/// 10,000) whose level letter is in `levels` (default: every level but D),
/// before the last M such lines (paging back; within the log's last
/// 10,000 lines).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    lines: Option<usize>,
    levels: Option<String>,
    skip: Option<usize>,
}

/// The level letter of a module log line (`| date | component | L | message`).
fn level_of(line: &str) -> Option<char> {
    line.split(" | ").nth(2).filter(|l| l.len() == 1).and_then(|l| l.chars().next())
}

#[utoipa::path(get, path = "/api/v1.0/modules/{module}/log", tag = "modules",
    params(("module" = String, Path, description = "Module name"),
        ("lines" = Option<usize>, Query, description = "How many lines, default 100, at most 10000"),
        ("levels" = Option<String>, Query, description = "Level letters to keep among D I E U S C, default IEUSC"),
        ("skip" = Option<usize>, Query, description = "Paging back: leave out the last SKIP matching lines, default 0")),
    responses((status = 200, description = "The last lines of the module log (Monitor)", body = [String]),
        (status = 400, description = "Unknown level letter", body = ErrorBody),
        (status = 404, description = "No such module", body = ErrorBody)))]
async fn log(
    State(web): State<Web>,
    _: Need<MONITOR, false>,
    Path(module): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LogQuery>,
) -> Response {
    let lines = q.lines.unwrap_or(100).min(10_000);
    let levels = q.levels.unwrap_or_else(|| "IEUSC".into());
    if !levels.chars().all(|c| "DIEUSC".contains(c)) {
        return error(StatusCode::BAD_REQUEST, "levels: letters among D I E U S C");
    }
    // Read enough to find `lines` matching lines among the others.
    let verbose = levels.contains('D') || levels.contains('I');
    match web.actions.control(Request::Log { module, lines: 10_000, verbose }, String::new()).await {
        ControlResponse::Lines(all) => {
            let mut kept: Vec<String> = all.into_iter().filter(|l| level_of(l).is_some_and(|c| levels.contains(c))).collect();
            kept.truncate(kept.len().saturating_sub(q.skip.unwrap_or(0)));
            let start = kept.len().saturating_sub(lines);
            Json(kept.split_off(start)).into_response()
        }
        ControlResponse::Error(e) => error(StatusCode::NOT_FOUND, e),
        other => (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({ "error": format!("unexpected answer {other:?}") })))
            .into_response(),
    }
}

/// Options of an action (`fullsync` for prim/second, `nosync` for swap,
/// `on` for failover, errd, checker and boot).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    #[serde(default)]
    fullsync: bool,
    #[serde(default)]
    nosync: bool,
    on: Option<bool>,
}

/// The control request an action names, as the CLI spells it: a module
/// command, or the node's boot switch.
fn request(module: String, action: &str, o: &Options) -> Result<Request, String> {
    let on = || o.on.ok_or_else(|| format!("{action} needs {{\"on\": true|false}}"));
    let kind = match action {
        "start" => CommandKind::Start,
        "stop" => CommandKind::Stop,
        "forcestop" => CommandKind::Forcestop,
        "restart" => CommandKind::Restart,
        "stopstart" => CommandKind::Stopstart,
        "prim" => CommandKind::Prim { fullsync: o.fullsync },
        "second" => CommandKind::Second { fullsync: o.fullsync },
        "primforce" => CommandKind::Primforce,
        "swap" => CommandKind::Swap(if o.nosync { SwapKind::NoSync } else { SwapKind::Sync }),
        "failover" => CommandKind::Failover(on()?),
        "errd" => CommandKind::Errd(on()?),
        "checker" => CommandKind::Checker(on()?),
        "boot" => return Ok(Request::Boot { module, on: Some(on()?) }),
        _ => return Err(format!("unknown action {action}")),
    };
    Ok(Request::Command { module, kind, identity: None })
}

#[utoipa::path(post, path = "/api/v1.0/modules/{module}/actions/{action}", tag = "actions",
    params(("module" = String, Path, description = "Module name"),
        ("action" = String, Path, description = "start, stop, forcestop, restart, stopstart, prim, second, primforce, swap, failover, errd, checker, boot"),
        ("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    request_body(content = Option<Options>, description = "fullsync (prim, second), nosync (swap), on (failover, errd, checker, boot)"),
    responses((status = 204, description = "Done, as the CLI's command (Control)"),
        (status = 400, description = "Unknown action or option", body = ErrorBody),
        (status = 403, description = "Missing role or CSRF token", body = ErrorBody),
        (status = 409, description = "The command refused, with its sentence", body = ErrorBody)))]
async fn action(
    State(web): State<Web>,
    Need(who): Need<CONTROL, true>,
    Path((module, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let options: Options = if body.is_empty() {
        Options::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(o) => o,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("options: {e}")),
        }
    };
    tracing::info!(user = who.user, role = ?who.role, %module, action, "web service action");
    let req = match request(module, &action, &options) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match web.actions.control(req, who.by).await {
        ControlResponse::Error(e) => error(StatusCode::CONFLICT, e),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_while_used_and_ends_after_8_hours_idle() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, csrf) = s.open("admin".into(), Role::Admin, t0);
        let minute = Duration::from_secs(60);
        let used = t0 + SESSION_IDLE - minute;
        assert_eq!(s.get(&id, used).map(|(u, _, c)| (u, c)), Some(("admin".to_string(), csrf)), "used within 8 h");
        assert!(s.get(&id, used + SESSION_IDLE - minute).is_some(), "each use starts the 8 h again");
        let idle = used + SESSION_IDLE - minute + SESSION_IDLE;
        assert!(s.get(&id, idle).is_none(), "8 h without use: ended");
        assert!(s.get(&id, t0).is_none(), "and forgotten");
        assert!(s.get("not-a-session", t0).is_none());
    }
}
