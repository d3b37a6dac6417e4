//! The node daemon: reads `cluster.xml` and the modules, runs each module's
//! engine with the Linux services, and answers the CLI on a Unix socket.

mod checks;
pub mod control;
mod farm;
mod modules;
pub mod snapshot;
pub mod web;

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{oneshot, watch, RwLock};

use crate::engine::Command;
use crate::layout::Layout;
use crate::runtime::module::{ModuleHandle, RunningModule};
use crate::runtime::ModuleReport;
use control::{Request, Response};
pub use modules::{load_key, node_name};

/// The control socket of a node.
pub fn socket_path(layout: &Layout) -> PathBuf {
    layout.safevar.join("run").join("safekit.sock")
}

/// A module's runtime and how to reach it.
struct Running {
    module: RunningModule,
    /// The `<rfs>` it runs with: a different one after `safekit config`
    /// means a full reintegration next time.
    rfs: Option<crate::config::Rfs>,
}

/// The modules running on this node, by name: where a `<module>` checker
/// reads another module's status (injected into the checker, so no module
/// calls its own daemon's socket) and where the node API answers other
/// nodes' checkers.
#[derive(Default)]
pub(crate) struct Directory(std::sync::RwLock<BTreeMap<String, watch::Receiver<ModuleReport>>>);

impl Directory {
    fn insert(&self, name: &str, report: watch::Receiver<ModuleReport>) {
        if let Ok(mut map) = self.0.write() {
            map.insert(name.to_string(), report);
        }
    }

    fn remove(&self, name: &str) {
        if let Ok(mut map) = self.0.write() {
            map.remove(name);
        }
    }

    /// Every running module's report now, by name.
    pub(crate) fn reports(&self) -> Vec<ModuleReport> {
        self.0.read().map(|m| m.values().map(|r| r.borrow().clone()).collect()).unwrap_or_default()
    }

    /// The module's status now, `None` if it does not run here.
    pub(crate) fn status(&self, module: &str) -> Option<crate::engine::Status> {
        self.0.read().ok()?.get(module).map(|r| r.borrow().status)
    }
}

/// The web service's actions: the CLI's command path.
struct CliActions(Arc<Daemon>);

#[async_trait::async_trait]
impl web::Actions for CliActions {
    async fn control(&self, req: Request, by: String) -> Response {
        answer(&self.0, req, (!by.is_empty()).then_some(by)).await
    }
}

/// The node: what modules are loaded from, and the running modules.
struct Daemon {
    layout: Layout,
    cluster: crate::config::ClusterConfig,
    node: String,
    key: crate::key::ClusterKey,
    modules: RwLock<BTreeMap<String, Running>>,
    directory: Arc<Directory>,
    /// Modules whose configuration could not be loaded, with why (shown by
    /// `safekit state`; `safekit config -m AM` retries).
    broken: RwLock<BTreeMap<String, String>>,
}

/// Runs a loaded module: the builder filled with what the daemon loaded.
fn spawn(m: modules::Loaded, rfs: Option<crate::config::Rfs>, directory: &Directory) -> Running {
    let name = m.report.name.clone();
    let module = m.module.spawn();
    directory.insert(&name, module.watch());
    Running { module, rfs }
}

/// `safekit release`: removes every module's virtual IPs from this node.
/// The systemd unit runs it after the daemon's death (`ExecStopPost`), so
/// a daemon killed with SIGKILL does not leave its VIPs answering for an
/// application that is gone. Refused while the daemon answers: it owns
/// the VIPs then. One line per address removed or per module that failed.
pub async fn release_vips(layout: &Layout) -> Result<Vec<String>, String> {
    if control::call(&socket_path(layout), &Request::State { module: None }).await.is_ok() {
        return Err("the safekit daemon is running and owns the virtual IPs: stop the modules instead".into());
    }
    let cluster = layout.load_cluster().map_err(|e| e.to_string())?.value;
    let mut out = Vec::new();
    for name in modules::module_ids(layout)?.into_keys() {
        let specs = match layout.load_module(&name, &cluster, false) {
            Ok(cfg) => modules::vip_specs(&name, &cfg.value).await,
            Err(e) => Err(e.to_string()),
        };
        match specs {
            Ok(specs) if specs.is_empty() => {}
            Ok(specs) => {
                let vip = crate::linux::vip::NetlinkVip::new(specs, false);
                match crate::services::VirtualIp::remove(&vip).await {
                    Ok(()) => {
                        for ip in crate::services::VirtualIp::addresses(&vip) {
                            out.push(format!("module {name}: virtual IP {ip} is not configured any more"));
                        }
                    }
                    Err(e) => out.push(format!("module {name}: virtual IP not removed: {e}")),
                }
            }
            Err(e) => out.push(format!("module {name}: {e}")),
        }
    }
    Ok(out)
}

/// Runs the daemon of node `node` until `shutdown` resolves; then stops
/// every module (scripts, VIP removal) before returning.
pub async fn run(layout: Layout, node: Option<String>, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    // HTTPS on 9453 when the node has certificates (then 9010 keeps the
    // health check, the metrics and the node endpoints, and redirects the
    // rest); HTTP on 9010 otherwise. Bad certificates stop the daemon
    // before any module starts, rather than fall back to HTTP.
    let tls = match web::tls::server_config(&layout) {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            return Err(format!("HTTPS: {e} (fix the certificates in {}, or safekit rmcerts)", web::tls::ssl_dir(&layout).display()))
        }
        None => None,
    };
    let peers = web::signed::Transport::of(&layout)?;
    let directory = Arc::new(Directory::default());
    let loaded = modules::load(&layout, node, &directory).await?;
    let mut running = BTreeMap::new();
    for (m, rfs) in loaded.modules {
        let boot = m.boot_start;
        let r = spawn(m, rfs, &directory);
        if let Some(delay) = boot {
            // SafeKit: "Action start called at boot time" (also when the
            // daemon comes back after a crash: modules start as at a boot).
            let commands = r.module.commands();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let (tx, _rx) = oneshot::channel();
                let _ = commands.send((Command::at_boot(crate::engine::CommandKind::Start), tx)).await;
            });
        }
        let name = r.module.report().name;
        running.insert(name, r);
    }
    let sock = socket_path(&layout);
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    tracing::info!(node = %loaded.node, modules = running.len(), socket = %sock.display(), "safekit daemon running");
    let daemon = Arc::new(Daemon {
        layout,
        cluster: loaded.cluster,
        node: loaded.node,
        key: loaded.key,
        modules: RwLock::new(running),
        directory,
        broken: RwLock::new(loaded.broken),
    });
    // The web service on this node's cluster addresses and localhost.
    let mut api_servers = Vec::new();
    let mut api_addrs = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    for lan in &daemon.cluster.lans {
        for n in lan.nodes.iter().filter(|n| n.name == daemon.node) {
            if let Ok(ip) = modules::resolve_host(n.laddr.as_ref().unwrap_or(&n.addr)).await {
                if !api_addrs.contains(&ip) {
                    api_addrs.push(ip);
                }
            }
        }
    }
    let site = web::Web {
        key: daemon.key.clone(),
        directory: daemon.directory.clone(),
        accounts: web::accounts::Accounts::new(&daemon.layout.web_conf()),
        keys: web::accounts::ApiKeys::new(&daemon.layout.web_conf()),
        layout: daemon.layout.clone(),
        cluster: Arc::new(daemon.cluster.clone()),
        node: daemon.node.clone(),
        sessions: Arc::default(),
        challenges: Arc::default(),
        peers,
        https: tls.is_some(),
        actions: Arc::new(CliActions(daemon.clone())),
    };
    let mut listeners = Vec::new();
    match &tls {
        Some(config) => {
            listeners.push((web::tls::HTTPS_PORT, web::router(site.clone()), Some(config.clone())));
            listeners.push((web::PORT, web::redirecting_router(site), None));
        }
        None => listeners.push((web::PORT, web::router(site), None)),
    }
    for ip in api_addrs {
        for (port, router, tls) in &listeners {
            let listen = std::net::SocketAddr::new(ip, *port);
            match web::serve(listen, router.clone(), tls.clone()).await {
                Ok(task) => api_servers.push(task),
                Err(e) => tracing::warn!(%e, %listen, "web service not available on this address"),
            }
        }
    }
    let server = {
        let daemon = daemon.clone();
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let daemon = daemon.clone();
                tokio::spawn(async move {
                    // SafeKit names the caller in "Action … called by …":
                    // here the Unix user behind the control socket.
                    let caller = stream
                        .peer_cred()
                        .ok()
                        .and_then(|c| nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(c.uid())).ok().flatten())
                        .map(|u| u.name);
                    let (r, mut w) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(r).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let resp = match serde_json::from_str::<Request>(&line) {
                        Ok(req) => answer(&daemon, req, caller).await,
                        Err(e) => Response::Error(format!("malformed request: {e}")),
                    };
                    let mut out = serde_json::to_string(&resp).unwrap_or_else(|_| "\"Ok\"".into());
                    out.push('\n');
                    let _ = w.write_all(out.as_bytes()).await;
                });
            }
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = server => {}
    }
    for t in api_servers {
        t.abort();
    }
    let all = std::mem::take(&mut *daemon.modules.write().await);
    for r in all.values() {
        r.module.request_stop();
    }
    for (_, r) in all {
        r.module.join().await;
    }
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

impl Daemon {
    async fn get(&self, m: &str) -> Result<ModuleHandle, String> {
        if let Some(why) = self.broken.read().await.get(m) {
            return Err(format!("module {m} is not running: {why} (fix it, then safekit config -m {m})"));
        }
        let map = self.modules.read().await;
        map.get(m)
            .map(|r| r.module.handle().clone())
            .ok_or_else(|| format!("no module {m} on this node (running: {})", map.keys().cloned().collect::<Vec<_>>().join(", ")))
    }

    /// `safekit module uninstall -m AM`: refused unless the module is STOP;
    /// its runtime ends, then its files in SAFE/modules go.
    async fn uninstall(&self, name: &str) -> Response {
        let mut map = self.modules.write().await;
        if let Some(r) = map.get(name) {
            let status = r.module.status();
            if status.state != crate::engine::State::Stop {
                return Response::Error(format!("module {name} is {status}: stop it first (safekit stop -m {name})"));
            }
        }
        if let Some(old) = map.remove(name) {
            self.directory.remove(name);
            old.module.shutdown().await;
        }
        self.broken.write().await.remove(name);
        match crate::modules::uninstall(&self.layout, name) {
            Ok(()) => Response::Ok,
            Err(e) => Response::Error(e),
        }
    }

    /// `safekit config -m AM`: checks the module's userconfig.xml and
    /// (re)starts its runtime with it. The module must be stopped; a changed
    /// `<rfs>` makes the next reintegration full. With `files`, they first
    /// become the module's files, and the previous ones are put back if
    /// they do not apply. An applied configuration is kept in the module's
    /// history (the last 3). cluster.xml changes need a restart of the
    /// daemon.
    async fn apply_config(&self, name: &str, files: Option<crate::modules::files::Files>, by: &str) -> Response {
        use crate::modules::files;
        let ids = match modules::module_ids(&self.layout) {
            Ok(ids) => ids,
            Err(e) => return Response::Error(e),
        };
        let Some(&id) = ids.get(name) else {
            return Response::Error(format!(
                "module {name} is not installed ({} has no conf/userconfig.xml)",
                self.layout.module_dir(name).display()
            ));
        };
        let mut map = self.modules.write().await;
        if let Some(r) = map.get(name) {
            let status = r.module.status();
            if status.state != crate::engine::State::Stop {
                return Response::Error(format!("module {name} is {status}: stop it first (safekit stop -m {name})"));
            }
        }
        let previous = match &files {
            Some(new) => {
                let old = match files::current(&self.layout, name) {
                    Ok(old) => old,
                    Err(e) => return Response::Error(e),
                };
                if let Err(e) = files::replace(&self.layout, name, new) {
                    let _ = files::replace(&self.layout, name, &old);
                    return Response::Error(e);
                }
                Some(old)
            }
            None => None,
        };
        let put_back = |why: String| {
            if let Some(old) = &previous {
                let _ = files::replace(&self.layout, name, old);
            }
            Response::Error(why)
        };
        let cfg = match self.layout.load_module(name, &self.cluster, true) {
            Ok(p) => p.value,
            Err(e) => return put_back(e.to_string()),
        };
        let mut full = cfg.service.rfs.is_some();
        if let Some(r) = map.get(name) {
            full = r.rfs != cfg.service.rfs && cfg.service.rfs.is_some();
        }
        // The old runtime goes first: the new one binds the same ports
        // and mounts the same directories.
        let old_rfs = map.remove(name).map(|old| {
            self.directory.remove(name);
            (old.module, old.rfs)
        });
        let old_rfs = match old_rfs {
            Some((module, rfs)) => {
                module.shutdown().await;
                Some(rfs)
            }
            None => None,
        };
        let site =
            modules::Site { layout: &self.layout, cluster: &self.cluster, node: &self.node, key: &self.key, directory: &self.directory };
        let loaded = match modules::load_module(&site, name.to_string(), id, full).await {
            Ok(m) => m,
            Err(e) => {
                let answer = put_back(e.clone());
                // Back to the configuration it had, stopped, if there was one.
                match (previous.is_some(), old_rfs) {
                    (true, Some(rfs)) => match modules::load_module(&site, name.to_string(), id, false).await {
                        Ok(m) => {
                            map.insert(name.to_string(), spawn(m, rfs, &self.directory));
                        }
                        Err(e2) => {
                            self.broken.write().await.insert(name.to_string(), e2);
                        }
                    },
                    _ => {
                        self.broken.write().await.insert(name.to_string(), e);
                    }
                }
                return answer;
            }
        };
        self.broken.write().await.remove(name);
        loaded.log.write("config", crate::engine::LogLevel::U, &format!("Configuration applied by {by}"));
        map.insert(name.to_string(), spawn(loaded, cfg.service.rfs, &self.directory));
        if let Ok(now) = files::current(&self.layout, name) {
            if let Err(e) = files::record(&self.layout, name, &now, by) {
                tracing::warn!(module = name, e, "applied configuration not kept in the history");
            }
        }
        Response::Ok
    }
}

/// `safekit boot on|off|status -m AM`: the node's switch, and what decides.
async fn boot(daemon: &Daemon, module: &str, on: Option<bool>, by: &str) -> Response {
    let setting = match daemon.layout.load_module(module, &daemon.cluster, false) {
        Ok(c) => c.value.service.boot,
        Err(e) => return Response::Error(e.to_string()),
    };
    if let Some(on) = on {
        if let Err(e) = crate::modules::boot::set(&daemon.layout, module, on) {
            return Response::Error(e);
        }
        if let Ok(h) = daemon.get(module).await {
            h.log().write("cli", crate::engine::LogLevel::U, &format!("Action boot {} called by {by}", if on { "on" } else { "off" }));
        }
    }
    Response::Lines(vec![crate::modules::boot::describe(setting, crate::modules::boot::switch(&daemon.layout, module))])
}

async fn answer(daemon: &Daemon, req: Request, caller: Option<String>) -> Response {
    match req {
        Request::State { module } => {
            let mut out = Vec::new();
            for (name, r) in daemon.modules.read().await.iter() {
                if module.as_ref().is_none_or(|m| m == name) {
                    let mut report = r.module.report();
                    let boot = if crate::modules::boot::switch(&daemon.layout, name) { "on" } else { "off" };
                    report.resources.insert("usersetting.boot".into(), boot.into());
                    out.push(report);
                }
            }
            for (name, why) in daemon.broken.read().await.iter() {
                if module.as_ref().is_none_or(|m| m == name) {
                    out.push(ModuleReport {
                        name: name.clone(),
                        id: 0,
                        status: crate::engine::Status::new(crate::engine::State::Stop, crate::engine::Readiness::NotReady),
                        peer: None,
                        resources: [("config.error".to_string(), why.clone())].into_iter().collect(),
                        data_version: None,
                        metrics: Default::default(),
                        heartbeats_dropped: 0,
                        heartbeat_lans: Vec::new(),
                        replication: None,
                        farm: None,
                    });
                }
            }
            if out.is_empty() {
                if let Some(m) = module {
                    return Response::Error(daemon.get(&m).await.err().unwrap_or_default());
                }
            }
            Response::States(out)
        }
        Request::Uninstall { module } => daemon.uninstall(&module).await,
        Request::Boot { module, on } => boot(daemon, &module, on, caller.as_deref().unwrap_or("admin")).await,
        Request::Config { module, files } => daemon.apply_config(&module, files, caller.as_deref().unwrap_or("admin")).await,
        Request::Set { module, resource, value, identity } => {
            let h = match daemon.get(&module).await {
                Ok(h) => h,
                Err(e) => return Response::Error(e),
            };
            let state: crate::engine::ResourceState = match value.parse() {
                Ok(s) => s,
                Err(e) => return Response::Error(e),
            };
            if !resource.split_once('.').is_some_and(|(c, i)| !c.is_empty() && !i.is_empty()) {
                return Response::Error(format!("'{resource}' is not a resource name (expected class.ident, e.g. custom.mycheck)"));
            }
            // SafeKit's wording: a custom checker's report is "by customscript".
            let by = identity
                .or_else(|| resource.starts_with("custom.").then(|| "customscript".to_string()))
                .or(caller)
                .unwrap_or_else(|| "admin".into());
            match h.inputs().send(crate::engine::Input::Resource { name: resource, state, by }).await {
                Ok(()) => Response::Ok,
                Err(_) => Response::Error(format!("module {module} is shutting down")),
            }
        }
        Request::Get { module, resource } => match daemon.get(&module).await {
            Ok(h) => {
                let all = h.report().resources;
                match resource {
                    Some(r) => match all.get(&r) {
                        Some(v) => Response::Lines(vec![format!("{r}={v}")]),
                        None => Response::Error(format!("module {module} has no resource {r}")),
                    },
                    None => Response::Lines(all.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
                }
            }
            Err(e) => Response::Error(e),
        },
        Request::Command { module, kind, identity } => {
            let h = match daemon.get(&module).await {
                Ok(h) => h,
                Err(e) => return Response::Error(e),
            };
            let (tx, rx) = oneshot::channel();
            if h.commands().send((Command { kind, identity, admin: caller, from_rule: false, at_boot: false }, tx)).await.is_err() {
                return Response::Error(format!("module {module} is shutting down"));
            }
            match rx.await {
                Ok(Ok(())) => Response::Ok,
                Ok(Err(e)) => Response::Error(e.to_string()),
                Err(_) => Response::Error(format!("module {module} is shutting down")),
            }
        }
        Request::Log { module, lines, verbose } => match daemon.get(&module).await {
            Ok(h) => Response::Lines(h.log().tail(lines, verbose)),
            Err(e) => Response::Error(e),
        },
        Request::Rfsverify { module } => match daemon.get(&module).await {
            Ok(h) => match h.replicator().verify().await {
                Ok(lines) => Response::Lines(lines),
                Err(e) => Response::Error(e.to_string()),
            },
            Err(e) => Response::Error(e),
        },
        Request::Rfsdiff { module } => match daemon.get(&module).await {
            Ok(h) => Response::Lines(h.replicator().estimate()),
            Err(e) => Response::Error(e),
        },
        Request::Print { module, level, message } => match daemon.get(&module).await {
            Ok(h) => {
                h.log().write("script", level, &message);
                Response::Ok
            }
            Err(e) => Response::Error(e),
        },
    }
}
