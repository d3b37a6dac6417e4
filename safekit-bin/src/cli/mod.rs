//! What each command calls; the arguments are in [`args`].

mod args;
mod nodes;
mod run;
mod setup;
mod special;
mod status;

use std::process::ExitCode;

use safekit_core::daemon::control::{Request, Response};
use safekit_core::engine::{CommandKind, LogLevel, Readiness, State, SwapKind};
use safekit_core::layout::Layout;

pub(crate) use args::Cli;
use args::{AddDel, BootArg, ClusterCmd, Cmd, InitsslCmd, Message, Module, ModuleCmd, OnOff};

async fn ask(layout: &Layout, req: Request) -> Result<Response, ExitCode> {
    match nodes::send(layout, &req).await {
        Ok(Response::Error(e)) => {
            eprintln!("{e}");
            Err(ExitCode::FAILURE)
        }
        Ok(r) => Ok(r),
        Err(e) => {
            eprintln!("{e}");
            Err(ExitCode::FAILURE)
        }
    }
}

async fn command(layout: &Layout, module: String, kind: CommandKind, identity: Option<String>) -> ExitCode {
    match ask(layout, Request::Command { module, kind, identity }).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(c) => c,
    }
}

pub(crate) async fn run(cli: Cli) -> ExitCode {
    let layout = Layout::from_env();
    match cli.hosts {
        Some(hosts) => nodes::run(layout, &hosts, cli.command).await,
        None => run_here(layout, cli.command).await,
    }
}

/// Runs `cmd`: on this node, or under `-H` on the node [`nodes`] chose.
async fn run_here(layout: Layout, cmd: Cmd) -> ExitCode {
    match cmd {
        Cmd::Daemon { node } => run::daemon(layout, node).await,
        Cmd::Witness { listen, key } => run::witness(&layout, listen, key).await,
        Cmd::Webservercfg { passwd, user } => setup::webservercfg(&layout, &passwd, &user),
        Cmd::Initssl(InitsslCmd::Ca) => setup::initssl(&layout, None).await,
        Cmd::Initssl(InitsslCmd::Req { ca }) => setup::initssl(&layout, Some(&ca)).await,
        Cmd::Rmcerts => match safekit_core::daemon::web::tls::remove(&layout) {
            Ok(()) => {
                println!("certificates removed: restart the daemon to serve HTTP on 9010");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("safekit rmcerts: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Snapshot { m, file } => status::snapshot(&layout, &m.module, &file).await,
        Cmd::Start { m, i } => command(&layout, m.module, CommandKind::Start, i.identity).await,
        Cmd::Stop { m, i } => command(&layout, m.module, CommandKind::Stop, i.identity).await,
        Cmd::Forcestop { m } => command(&layout, m.module, CommandKind::Forcestop, None).await,
        Cmd::Restart { m, i } => command(&layout, m.module, CommandKind::Restart, i.identity).await,
        Cmd::Stopstart { m, i } => command(&layout, m.module, CommandKind::Stopstart, i.identity).await,
        Cmd::Prim { m, fullsync } => command(&layout, m.module, CommandKind::Prim { fullsync: fullsync.is_some() }, None).await,
        Cmd::Second { m, fullsync } => command(&layout, m.module, CommandKind::Second { fullsync: fullsync.is_some() }, None).await,
        Cmd::Primforce { m } => command(&layout, m.module, CommandKind::Primforce, None).await,
        Cmd::Swap { m, nosync, i } => {
            let kind = if nosync.is_some() { SwapKind::NoSync } else { SwapKind::Sync };
            command(&layout, m.module, CommandKind::Swap(kind), i.identity).await
        }
        Cmd::Errd { value, m } => command(&layout, m.module, CommandKind::Errd(matches!(value, OnOff::On)), None).await,
        Cmd::Checker { value, m } => command(&layout, m.module, CommandKind::Checker(matches!(value, OnOff::On)), None).await,
        Cmd::Failover { value, m } => command(&layout, m.module, CommandKind::Failover(matches!(value, OnOff::On)), None).await,
        Cmd::Boot { value, module } => {
            let on = match value {
                BootArg::On => Some(true),
                BootArg::Off => Some(false),
                BootArg::Status => None,
            };
            setup::boot(&layout, module, on).await
        }
        Cmd::State { module, verbose, local: _, quiet, json } => status::state(&layout, module, verbose, quiet, json).await,
        Cmd::Waitstate { m, state, timeout } => {
            let want = state.to_uppercase();
            status::wait_for(&layout, &m.module, timeout, &format!("{want} (Ready)"), |st| {
                (st.state.as_str() == want && (want == "STOP" || st.readiness == Readiness::Ready)).then_some(true)
            })
            .await
        }
        Cmd::Waitstart { m, timeout } => {
            status::wait_for(&layout, &m.module, timeout, "the end of its start", |st| match (st.state, st.readiness) {
                (State::Stop, _) | (_, Readiness::Transient) => None,
                (_, Readiness::Ready) => Some(true),
                (_, Readiness::NotReady) => Some(false),
            })
            .await
        }
        Cmd::Waitstop { m, timeout } => {
            status::wait_for(&layout, &m.module, timeout, "STOP", |st| (st.state == State::Stop).then_some(true)).await
        }
        Cmd::Log { m, lines, all } => status::lines(&layout, Request::Log { module: m.module, lines, verbose: all }).await,
        Cmd::Rfsverify { m } => status::rfsverify(&layout, m.module).await,
        Cmd::Rfsdiff { m } => status::lines(&layout, Request::Rfsdiff { module: m.module }).await,
        Cmd::Get { m, resource } => status::lines(&layout, Request::Get { module: m.module, resource }).await,
        Cmd::Set { m, resource, value, i } => {
            match ask(&layout, Request::Set { module: m.module, resource, value, identity: i.identity }).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(c) => c,
            }
        }
        Cmd::Printi { m, msg } => print(&layout, m, LogLevel::I, msg).await,
        Cmd::Printw { m, msg } => print(&layout, m, LogLevel::E, msg).await,
        Cmd::Printe { m, msg } => print(&layout, m, LogLevel::E, msg).await,
        Cmd::Cluster(ClusterCmd::Confcheck { file }) => setup::cluster_confcheck(&layout, file),
        Cmd::Cluster(ClusterCmd::Config { file }) => setup::cluster_config(&layout, &file),
        Cmd::Cluster(ClusterCmd::Genkey) => setup::genkey(&layout),
        Cmd::Logview { m, lines, all } => status::logview(&layout, m, lines, all).await,
        Cmd::Special { args } => special::run(&layout, &args).await,
        Cmd::Firewallcfg { action, module } => setup::firewallcfg(&layout, matches!(action, AddDel::Add), module),
        Cmd::Demo { runs, failure, keep, clean } => run::demo(runs, failure, keep, clean).await,
        Cmd::DemoForward { listen, to, netns } => tool(safekit_bin::demo_keep::forward(listen, to, &netns)),
        Cmd::Release => match safekit_core::daemon::release_vips(&layout).await {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("safekit release: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::DemoApp { port } => match safekit_bin::demo::serve_app(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo-app: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::DemoWriter { file, records } => tool(crate::tools::writer(&file, records)),
        Cmd::DemoHttpload { addr, path, bearer, seconds, conns, https } => {
            let tls = if https { safekit_core::daemon::web::tls::client_config(&layout).map(Some) } else { Ok(None) };
            tool(tls.and_then(|tls| crate::httpload::run(addr, tls, &path, bearer.as_deref(), seconds, conns)))
        }
        Cmd::DemoFsx { dir, seed, ops, mirror } => tool(crate::tools::fsx(&dir, seed, ops, mirror.as_deref())),
        Cmd::Module(ModuleCmd::Install { module, id, replace, path }) => setup::install(&layout, &path, module.as_deref(), id, replace),
        Cmd::Module(ModuleCmd::Uninstall { m }) => setup::uninstall(&layout, &m.module).await,
        Cmd::Module(ModuleCmd::Getports { m }) => setup::getports(&layout, &m.module),
        Cmd::Module(ModuleCmd::Templates) => match crate::templates::write_missing(&layout) {
            Ok(written) => {
                let dir = layout.safe.join("Application_Modules/generic");
                for (name, _) in crate::templates::TEMPLATES {
                    let note = if written.iter().any(|w| w == name) { " (written)" } else { "" };
                    println!("{}{note}", dir.join(format!("{name}.safe")).display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => tool(Err(e)),
        },
        Cmd::Module(ModuleCmd::Package { m, file }) => {
            match safekit_core::modules::package(&layout, &m.module)
                .and_then(|z| std::fs::write(&file, z).map_err(|e| format!("{}: {e}", file.display())))
            {
                Ok(()) => {
                    println!("module {} written as {}", m.module, file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Module(ModuleCmd::List) => {
            for m in safekit_core::modules::list(&layout) {
                println!("{}{}", m.name, m.id.map(|i| format!(" (id {i})")).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Cmd::Confcheck { m } => setup::module_cmd(&layout, &m.module, true),
        Cmd::Config { m, show: true } => setup::module_cmd(&layout, &m.module, false),
        Cmd::Config { m, show: false } => setup::apply_config(&layout, &m.module).await,
    }
}

async fn print(layout: &Layout, m: Module, level: LogLevel, msg: Message) -> ExitCode {
    match ask(layout, Request::Print { module: m.module, level, message: msg.message }).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(c) => c,
    }
}

fn tool(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
