//! The node daemon: reads `cluster.xml` and the modules, runs each module's
//! engine with the Linux services, and answers the CLI on a Unix socket.

pub mod control;
mod modules;

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::Command;
use crate::layout::Layout;
use crate::runtime::log::ModuleLog;
use crate::runtime::{CommandMsg, ModuleReport};
use control::{Request, Response};

/// The control socket of a node.
pub fn socket_path(layout: &Layout) -> PathBuf {
    layout.safevar.join("run").join("safekit.sock")
}

struct ModuleHandle {
    commands: mpsc::Sender<CommandMsg>,
    report: watch::Receiver<ModuleReport>,
    log: Arc<ModuleLog>,
    replicator: Arc<dyn crate::services::Replicator>,
}

/// Runs the daemon of node `node` until `shutdown` resolves; then stops
/// every module (scripts, VIP removal) before returning.
pub async fn run(layout: Layout, node: Option<String>, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let loaded = modules::load(&layout, node).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles: BTreeMap<String, ModuleHandle> = BTreeMap::new();
    let mut tasks = Vec::new();
    for mut m in loaded.modules {
        let (tx, rx) = mpsc::channel(16);
        m.services.self_commands = Some(tx.clone());
        let (rep_tx, rep_rx) = watch::channel(m.report.clone());
        handles.insert(
            m.report.name.clone(),
            ModuleHandle { commands: tx, report: rep_rx, log: m.services.log.clone(), replicator: m.services.replicator.clone() },
        );
        let stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            match m.engine {
                modules::AnyEngine::Mirror(e) => crate::runtime::drive(*e, m.services, rx, rep_tx, stop).await,
                modules::AnyEngine::Light(e) => crate::runtime::drive(*e, m.services, rx, rep_tx, stop).await,
            }
        }));
    }
    let sock = socket_path(&layout);
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    tracing::info!(node = %loaded.node, modules = handles.len(), socket = %sock.display(), "safekit daemon running");
    let handles = Arc::new(handles);
    let server = {
        let handles = handles.clone();
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handles = handles.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(r).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let resp = match serde_json::from_str::<Request>(&line) {
                        Ok(req) => answer(&handles, req).await,
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
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

async fn answer(handles: &BTreeMap<String, ModuleHandle>, req: Request) -> Response {
    let get = |m: &str| {
        handles
            .get(m)
            .ok_or_else(|| format!("no module {m} on this node (installed: {})", handles.keys().cloned().collect::<Vec<_>>().join(", ")))
    };
    match req {
        Request::State { module } => {
            let mut out = Vec::new();
            for (name, h) in handles {
                if module.as_ref().is_none_or(|m| m == name) {
                    out.push(h.report.borrow().clone());
                }
            }
            if out.is_empty() {
                if let Some(m) = module {
                    return Response::Error(get(&m).err().unwrap_or_default());
                }
            }
            Response::States(out)
        }
        Request::Command { module, kind, identity } => {
            let h = match get(&module) {
                Ok(h) => h,
                Err(e) => return Response::Error(e),
            };
            let (tx, rx) = oneshot::channel();
            if h.commands.send((Command { kind, identity }, tx)).await.is_err() {
                return Response::Error(format!("module {module} is shutting down"));
            }
            match rx.await {
                Ok(Ok(())) => Response::Ok,
                Ok(Err(e)) => Response::Error(e),
                Err(_) => Response::Error(format!("module {module} is shutting down")),
            }
        }
        Request::Log { module, lines, verbose } => match get(&module) {
            Ok(h) => Response::Lines(h.log.tail(lines, verbose)),
            Err(e) => Response::Error(e),
        },
        Request::Rfsverify { module } => match get(&module) {
            Ok(h) => match h.replicator.verify().await {
                Ok(lines) => Response::Lines(lines),
                Err(e) => Response::Error(e),
            },
            Err(e) => Response::Error(e),
        },
        Request::Rfsdiff { module } => match get(&module) {
            Ok(h) => Response::Lines(h.replicator.estimate()),
            Err(e) => Response::Error(e),
        },
        Request::Print { module, level, message } => match get(&module) {
            Ok(h) => {
                h.log.write("script", level, &message);
                Response::Ok
            }
            Err(e) => Response::Error(e),
        },
    }
}
