//! `safekit -H "*"|"node1,node2" <command>`: the command runs on each
//! chosen node, one after the other, through that node's web service (a
//! node call signed with the cluster key, so only root on a node of the
//! cluster can make it). The command's code is the same as for this node:
//! only where its requests go changes, for the time it runs.

use std::process::ExitCode;
use std::sync::Arc;

use safekit_core::config::ClusterConfig;
use safekit_core::daemon::control::{call, Request, Response};
use safekit_core::daemon::socket_path;
use safekit_core::daemon::web::signed::Transport;
use safekit_core::key::ClusterKey;
use safekit_core::layout::Layout;

use super::args::Cmd;

/// Where the requests of the command running now go: another node.
#[derive(Clone)]
struct Remote {
    cluster: Arc<ClusterConfig>,
    /// HTTP, or HTTPS trusting the cluster's CA: read once per `-H` run.
    transport: Transport,
    node: String,
    key: ClusterKey,
    by: String,
}

tokio::task_local! {
    static REMOTE: Remote;
}

/// Sends `req` to this node's daemon, or to the node `-H` chose.
pub(super) async fn send(layout: &Layout, req: &Request) -> Result<Response, String> {
    match REMOTE.try_with(Clone::clone) {
        Ok(r) => safekit_core::daemon::web::cli::remote(&r.cluster, &r.transport, &r.node, &r.key, &r.by, req).await,
        Err(_) => call(&socket_path(layout), req).await,
    }
}

/// Whether the command running now was sent to another node by `-H`.
pub(super) fn is_remote() -> bool {
    REMOTE.try_with(|_| ()).is_ok()
}

/// Whether `cmd` only asks the daemon (so it can run on another node).
fn through_daemon(cmd: &Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Start { .. }
            | Cmd::Stop { .. }
            | Cmd::Forcestop { .. }
            | Cmd::Restart { .. }
            | Cmd::Stopstart { .. }
            | Cmd::Prim { .. }
            | Cmd::Second { .. }
            | Cmd::Primforce { .. }
            | Cmd::Swap { .. }
            | Cmd::Failover { .. }
            | Cmd::Errd { .. }
            | Cmd::Checker { .. }
            | Cmd::State { .. }
            | Cmd::Waitstate { .. }
            | Cmd::Waitstart { .. }
            | Cmd::Waitstop { .. }
            | Cmd::Log { .. }
            | Cmd::Set { .. }
            | Cmd::Get { .. }
            | Cmd::Rfsverify { .. }
            | Cmd::Rfsdiff { .. }
            | Cmd::Config { show: false, .. }
            | Cmd::Boot { module: Some(_), .. }
    )
}

/// Who the other nodes' module logs name: `root@node1`.
fn caller() -> String {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map_or_else(|| "root".into(), |u| u.name);
    let here = std::env::var("SAFEKIT_NODE")
        .ok()
        .or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()))
        .unwrap_or_else(|| "?".into());
    format!("{user}@{here}")
}

/// Runs `cmd` on each node of `hosts`.
pub(super) async fn run(layout: Layout, hosts: &str, cmd: Cmd) -> ExitCode {
    if !through_daemon(&cmd) {
        eprintln!("safekit -H: this command runs on this node only; -H works with the commands the daemon answers (state, start, stop, swap, prim, second, log, get, set, rfsverify, rfsdiff, config, wait...)");
        return ExitCode::FAILURE;
    }
    let cluster = match layout.load_cluster() {
        Ok(c) => Arc::new(c.value),
        Err(e) => {
            eprintln!("safekit -H: {e}");
            return ExitCode::FAILURE;
        }
    };
    let key = match safekit_core::daemon::load_key(&layout) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("safekit -H: {e}");
            return ExitCode::FAILURE;
        }
    };
    let transport = match Transport::of(&layout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("safekit -H: {e}");
            return ExitCode::FAILURE;
        }
    };
    let all: Vec<String> = cluster.node_names().into_iter().map(str::to_string).collect();
    let chosen: Vec<String> = if hosts.trim() == "*" { all.clone() } else { hosts.split(',').map(|h| h.trim().to_string()).collect() };
    if let Some(unknown) = chosen.iter().find(|n| !all.contains(n)) {
        eprintln!("safekit -H: no node {unknown} in cluster.xml (nodes: {})", all.join(", "));
        return ExitCode::FAILURE;
    }
    let by = caller();
    let mut code = ExitCode::SUCCESS;
    for node in chosen {
        println!("----------------------  {node}  ----------------------");
        let remote = Remote { cluster: cluster.clone(), transport: transport.clone(), node, key: key.clone(), by: by.clone() };
        let c = REMOTE.scope(remote, super::run_here(layout.clone(), cmd.clone())).await;
        if c != ExitCode::SUCCESS {
            code = c;
        }
    }
    code
}
