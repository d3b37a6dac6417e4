//! Arguments (SafeKit's syntax) and what each command calls.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use safekit_core::config::{ConfigError, Diagnostic};
use safekit_core::daemon::control::{call, Request, Response};
use safekit_core::daemon::socket_path;
use safekit_core::engine::{CommandKind, LogLevel, Readiness, State, Status, SwapKind};
use safekit_core::layout::{load_cluster_file, Layout};

/// SafeKit-compatible high-availability cluster: mirror (replication +
/// failover), farm and light modules. `SAFE` and `SAFEVAR` select the
/// node's directories (default /opt/safekit and /var/safekit).
#[derive(Parser)]
#[command(name = "safekit", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The module argument: `-m AM`, or `SAFEMODULE` inside scripts.
#[derive(clap::Args, Clone)]
struct Module {
    /// Module name.
    #[arg(short = 'm', env = "SAFEMODULE")]
    module: String,
}

/// `-i identity`: a command issued by a detector or a script (counts for maxloop).
#[derive(clap::Args, Clone)]
struct Identity {
    /// Identity of the issuer; without it the command is an administrator's
    /// and resets the maxloop counter.
    #[arg(short = 'i')]
    identity: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailureArg {
    /// kill -9 of the primary's daemon and application.
    Kill9,
    /// The primary's cable is cut.
    Cut,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the node daemon (normally started by systemd).
    Daemon {
        /// This node's name in cluster.xml (default: SAFEKIT_NODE, else the host name).
        #[arg(long)]
        node: Option<String>,
    },
    /// Start the module; the role is chosen automatically.
    Start {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        i: Identity,
    },
    /// Stop the module (on the primary: failover to the secondary).
    Stop {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        i: Identity,
    },
    /// Stop at once when a stop is stuck (kills the running script).
    Forcestop {
        #[command(flatten)]
        m: Module,
    },
    /// Run stop_xx then start_xx of the current state (no failover).
    Restart {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        i: Identity,
    },
    /// Stop then start again (on the primary: failover).
    Stopstart {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        i: Identity,
    },
    /// Force start as primary (refused if the other node is primary).
    Prim {
        #[command(flatten)]
        m: Module,
        /// Fully resynchronise the secondary when it joins.
        #[arg(value_parser = ["fullsync"])]
        fullsync: Option<String>,
    },
    /// Force start as secondary (refused if the other node is not primary).
    Second {
        #[command(flatten)]
        m: Module,
        /// Copy every file.
        #[arg(value_parser = ["fullsync"])]
        fullsync: Option<String>,
    },
    /// Start as primary even after an interrupted reintegration.
    Primforce {
        #[command(flatten)]
        m: Module,
    },
    /// Exchange the primary and secondary roles.
    Swap {
        #[command(flatten)]
        m: Module,
        /// Swap without synchronising the replicated directories.
        #[arg(value_parser = ["nosync"])]
        nosync: Option<String>,
        #[command(flatten)]
        i: Identity,
    },
    /// Turn automatic failover on or off (persisted).
    Failover {
        /// on or off.
        value: OnOff,
        #[command(flatten)]
        m: Module,
    },
    /// Turn process monitoring (errd) on or off (persisted maintenance switch).
    Errd {
        /// on or off.
        value: OnOff,
        #[command(flatten)]
        m: Module,
    },
    /// Turn checkers on or off (persisted maintenance switch).
    Checker {
        /// on or off.
        value: OnOff,
        #[command(flatten)]
        m: Module,
    },
    /// Show module states; -q: exit code STOP 0, WAIT 1, ALONE/UP 2, PRIM 3, SECOND 4.
    State {
        /// One module (default: all).
        #[arg(short = 'm', env = "SAFEMODULE")]
        module: Option<String>,
        /// List resources.
        #[arg(short = 'v')]
        verbose: bool,
        /// Local state only (with -q).
        #[arg(short = 'l')]
        local: bool,
        /// Quiet: the state is the exit code.
        #[arg(short = 'q')]
        quiet: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Wait until the module reaches STATE (STOP, WAIT, ALONE, UP, PRIM, SECOND) and is Ready.
    Waitstate {
        #[command(flatten)]
        m: Module,
        /// The state to wait for.
        state: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Wait until a start is over: a Ready state (exit 0) or WAIT NotReady (exit 1).
    Waitstart {
        #[command(flatten)]
        m: Module,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Wait until the module is stopped.
    Waitstop {
        #[command(flatten)]
        m: Module,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Show the module log.
    Log {
        #[command(flatten)]
        m: Module,
        /// Number of lines.
        #[arg(short = 's', default_value_t = 300)]
        lines: usize,
        /// Verbose: include I and D messages.
        #[arg(short = 'A')]
        all: bool,
    },
    /// Follow the module log in real time (Ctrl-C to quit).
    Logview {
        #[command(flatten)]
        m: Module,
        /// Number of past lines shown first.
        #[arg(short = 's', default_value_t = 300)]
        lines: usize,
        /// Verbose: include I and D messages.
        #[arg(short = 'A')]
        all: bool,
    },
    /// From a script: write an information message into the module log.
    Printi {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        msg: Message,
    },
    /// From a script: write a warning into the module log.
    Printw {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        msg: Message,
    },
    /// From a script: write an error message into the module log.
    Printe {
        #[command(flatten)]
        m: Module,
        #[command(flatten)]
        msg: Message,
    },
    /// On the secondary: list the replicated files that differ from the primary's.
    Rfsverify {
        #[command(flatten)]
        m: Module,
    },
    /// On the primary: what a reintegration would copy now (modified entries, bytes).
    Rfsdiff {
        #[command(flatten)]
        m: Module,
    },
    /// Check a module's configuration without applying it (placeholders refused).
    Confcheck {
        #[command(flatten)]
        m: Module,
    },
    /// Check a module's configuration and apply it: the daemon restarts the
    /// (stopped) module's runtime with it; a changed <rfs> makes the next
    /// reintegration full. Apply the same configuration on every node.
    Config {
        #[command(flatten)]
        m: Module,
        /// Only show the configuration as the daemon reads it (JSON).
        #[arg(long)]
        show: bool,
    },
    /// Cluster configuration commands.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Module packages: install, uninstall, list.
    #[command(subcommand)]
    Module(ModuleCmd),
    /// Two-node cluster and a client on this machine in network namespaces:
    /// start, failover after a kill -9 of the primary, measured outage (root).
    Demo {
        /// Benchmark instead: repeat the failover RUNS times and print the
        /// client's outage per run, median and max.
        #[arg(long)]
        runs: Option<usize>,
        /// With --runs: how the primary fails.
        #[arg(long, value_enum, default_value = "kill9")]
        failure: FailureArg,
    },
    /// The demo's application (started by the demo module's start_prim).
    #[command(hide = true)]
    DemoApp {
        /// TCP port.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Test tool: writes fsynced records, printing each acknowledged one.
    #[command(hide = true)]
    DemoWriter {
        /// File to write.
        #[arg(long)]
        file: PathBuf,
        /// Number of records.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
    },
    /// Test tool: random file operations (fsx-like) under a directory.
    #[command(hide = true)]
    DemoFsx {
        /// Directory.
        #[arg(long)]
        dir: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of operations.
        #[arg(long, default_value_t = 200)]
        ops: u64,
        /// The secondary's real directory: compare after every operation.
        #[arg(long)]
        mirror: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone)]
struct Message {
    /// The message.
    message: String,
}

#[derive(Subcommand)]
enum ModuleCmd {
    /// Install a module from a .safe (zip) file or a directory into SAFE/modules.
    Install {
        /// Module name (default: the file name without extension).
        #[arg(short = 'm')]
        module: Option<String>,
        /// Fixed module id (the same on every node; ports derive from it).
        #[arg(short = 'M')]
        id: Option<u16>,
        /// Reinstall over an installed module.
        #[arg(short = 'r')]
        replace: bool,
        /// The .safe file or directory.
        path: PathBuf,
    },
    /// Remove an installed module (restart the daemon afterwards).
    Uninstall {
        #[command(flatten)]
        m: Module,
    },
    /// List installed modules.
    List,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Check a cluster.xml file (default: SAFEVAR/cluster/cluster.xml).
    Confcheck {
        /// The file to check.
        file: Option<PathBuf>,
    },
    /// Check a cluster.xml and install it as SAFEVAR/cluster/cluster.xml
    /// (restart the daemon to apply; copy the same file to every node).
    Config {
        /// The new cluster.xml.
        file: PathBuf,
    },
    /// Make a new cluster key in SAFEVAR/cluster/cluster.key (copy it to every node).
    Genkey,
}

fn print_diagnostics(ds: &[Diagnostic]) {
    for d in ds {
        eprintln!("{d}");
    }
}

fn fail(e: &ConfigError) -> ExitCode {
    print_diagnostics(&e.diagnostics);
    ExitCode::FAILURE
}

async fn ask(layout: &Layout, req: Request) -> Result<Response, ExitCode> {
    match call(&socket_path(layout), &req).await {
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
    match cli.command {
        Cmd::Daemon { node } => {
            let filter =
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
            let shutdown = async {
                let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            };
            match safekit_core::daemon::run(layout, node, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("safekit daemon: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
        Cmd::State { module, verbose, local: _, quiet, json } => {
            let states = match ask(&layout, Request::State { module: module.clone() }).await {
                Ok(Response::States(s)) => s,
                Ok(_) => Vec::new(),
                Err(c) => return c,
            };
            if quiet {
                let code = states.first().map_or(0, |s| s.status.state.exit_code());
                return ExitCode::from(u8::try_from(code).unwrap_or(0));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&states).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            for s in &states {
                let remote = s.peer.map_or_else(|| "UNKNOWN".to_string(), |p| p.to_string());
                println!("{:<16} {:<18} (remote: {remote})  id {}", s.name, s.status.to_string(), s.id);
                if verbose {
                    for (k, v) in &s.resources {
                        println!("    {k:<28} {v}");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Cmd::Waitstate { m, state, timeout } => {
            let want = state.to_uppercase();
            wait_for(&layout, &m.module, timeout, &format!("{want} (Ready)"), |st| {
                (st.state.as_str() == want && (want == "STOP" || st.readiness == Readiness::Ready)).then_some(true)
            })
            .await
        }
        Cmd::Waitstart { m, timeout } => {
            wait_for(&layout, &m.module, timeout, "the end of its start", |st| match (st.state, st.readiness) {
                (State::Stop, _) | (_, Readiness::Transient) => None,
                (_, Readiness::Ready) => Some(true),
                (_, Readiness::NotReady) => Some(false),
            })
            .await
        }
        Cmd::Waitstop { m, timeout } => wait_for(&layout, &m.module, timeout, "STOP", |st| (st.state == State::Stop).then_some(true)).await,
        Cmd::Log { m, lines, all } => match ask(&layout, Request::Log { module: m.module, lines, verbose: all }).await {
            Ok(Response::Lines(l)) => {
                for line in l {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(c) => c,
        },
        Cmd::Rfsverify { m } => match ask(&layout, Request::Rfsverify { module: m.module }).await {
            Ok(Response::Lines(l)) if l.is_empty() => {
                println!("no difference with the primary");
                ExitCode::SUCCESS
            }
            Ok(Response::Lines(l)) => {
                for line in &l {
                    println!("{line}");
                }
                eprintln!("{} differences with the primary", l.len());
                ExitCode::FAILURE
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(c) => c,
        },
        Cmd::Rfsdiff { m } => match ask(&layout, Request::Rfsdiff { module: m.module }).await {
            Ok(Response::Lines(l)) => {
                for line in l {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(c) => c,
        },
        Cmd::Printi { m, msg } => print(&layout, m, LogLevel::I, msg).await,
        Cmd::Printw { m, msg } => print(&layout, m, LogLevel::E, msg).await,
        Cmd::Printe { m, msg } => print(&layout, m, LogLevel::E, msg).await,
        Cmd::Cluster(ClusterCmd::Confcheck { file }) => {
            let path = file.unwrap_or_else(|| layout.cluster_xml());
            match load_cluster_file(&path) {
                Ok(p) => {
                    print_diagnostics(&p.warnings);
                    println!(
                        "{}: valid cluster configuration ({} lans, nodes: {})",
                        path.display(),
                        p.value.lans.len(),
                        p.value.node_names().join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Cmd::Cluster(ClusterCmd::Config { file }) => match load_cluster_file(&file) {
            Ok(p) => {
                print_diagnostics(&p.warnings);
                let dest = layout.cluster_xml();
                let copy = std::fs::create_dir_all(dest.parent().unwrap_or(&layout.safevar)).and_then(|()| std::fs::copy(&file, &dest));
                match copy {
                    Ok(_) => {
                        println!("{} installed as {}; restart the daemon to apply it", file.display(), dest.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", dest.display());
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => fail(&e),
        },
        Cmd::Logview { m, lines, all } => {
            let mut seen: Vec<String> = Vec::new();
            loop {
                let now = match ask(&layout, Request::Log { module: m.module.clone(), lines: lines.max(1000), verbose: all }).await {
                    Ok(Response::Lines(l)) => l,
                    Ok(_) => Vec::new(),
                    Err(c) => return c,
                };
                // Print what follows the last line already shown.
                let start = seen
                    .last()
                    .and_then(|last| now.iter().rposition(|l| l == last))
                    .map_or_else(|| now.len().saturating_sub(lines), |i| i + 1);
                for l in &now[start..] {
                    println!("{l}");
                }
                seen = now;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
                }
            }
        }
        Cmd::Cluster(ClusterCmd::Genkey) => {
            let mut key = [0u8; 32];
            if let Err(e) = getrandom::fill(&mut key) {
                eprintln!("no randomness for the key: {e}");
                return ExitCode::FAILURE;
            }
            let path = layout.safevar.join("cluster").join("cluster.key");
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::create_dir_all(path.parent().unwrap_or(&layout.safevar))?;
                let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
                f.write_all(hex::encode(key).as_bytes())?;
                f.sync_all()
            };
            match write() {
                Ok(()) => {
                    println!("{}: new cluster key; copy it to every node, then restart the daemons", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Demo { runs, failure } => {
            let exe = match std::env::current_exe() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("safekit demo: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(runs) = runs {
                let f = match failure {
                    FailureArg::Kill9 => safekit_core::demo::Failure::Kill9,
                    FailureArg::Cut => safekit_core::demo::Failure::Cut,
                };
                println!("safekit failover benchmark: {runs} runs, failure {f:?}, pulse 100 ms, timeout 1000 ms, probe every 10 ms");
                let bench = safekit_core::demo::bench(&exe, runs, f);
                return tokio::select! {
                    r = bench => match r {
                        Ok(v) => {
                            let max = v.iter().max().copied().unwrap_or_default();
                            println!("SUMMARY safekit {f:?}: median {} ms, max {} ms over {} runs", safekit_core::demo::median(&v).as_millis(), max.as_millis(), v.len());
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("safekit demo: {e}");
                            ExitCode::FAILURE
                        }
                    },
                    _ = tokio::signal::ctrl_c() => {
                        eprintln!("safekit demo: interrupted; cleaned up");
                        ExitCode::FAILURE
                    }
                };
            }
            let demo = safekit_core::demo::run(&exe);
            tokio::select! {
                r = demo => match r {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("safekit demo: {e}");
                        ExitCode::FAILURE
                    }
                },
                _ = tokio::signal::ctrl_c() => {
                    // Dropping the demo future removes the namespaces and files.
                    eprintln!("safekit demo: interrupted; cleaned up");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::DemoApp { port } => match safekit_core::demo::serve_app(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo-app: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::DemoWriter { file, records } => tool(crate::tools::writer(&file, records)),
        Cmd::DemoFsx { dir, seed, ops, mirror } => tool(crate::tools::fsx(&dir, seed, ops, mirror.as_deref())),
        Cmd::Module(ModuleCmd::Install { module, id, replace, path }) => {
            match safekit_core::modules::install(&layout, &path, module.as_deref(), id, replace) {
                Ok(name) => {
                    println!("module {name} installed in {}; start or restart the daemon to run it", layout.module_dir(&name).display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Module(ModuleCmd::Uninstall { m }) => match safekit_core::modules::uninstall(&layout, &m.module) {
            Ok(()) => {
                println!("module {} uninstalled", m.module);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Module(ModuleCmd::List) => {
            for m in safekit_core::modules::list(&layout) {
                println!("{}{}", m.name, m.id.map(|i| format!(" (id {i})")).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Cmd::Confcheck { m } => module_cmd(&layout, &m.module, true),
        Cmd::Config { m, show: true } => module_cmd(&layout, &m.module, false),
        Cmd::Config { m, show: false } => apply_config(&layout, &m.module).await,
    }
}

/// Polls the module's status until `done` says Some: true = success.
async fn wait_for(layout: &Layout, module: &str, timeout: u64, what: &str, done: impl Fn(Status) -> Option<bool>) -> ExitCode {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        match call(&socket_path(layout), &Request::State { module: Some(module.to_string()) }).await {
            Ok(Response::States(s)) => {
                if let Some(st) = s.first().map(|s| s.status) {
                    match done(st) {
                        Some(true) => return ExitCode::SUCCESS,
                        Some(false) => {
                            eprintln!("module {module} is {st}");
                            return ExitCode::FAILURE;
                        }
                        None => {}
                    }
                }
            }
            Ok(Response::Error(e)) | Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            Ok(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!("module {module} did not reach {what} within {timeout} s");
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn print(layout: &Layout, m: Module, level: LogLevel, msg: Message) -> ExitCode {
    match ask(layout, Request::Print { module: m.module, level, message: msg.message }).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(c) => c,
    }
}

fn module_cmd(layout: &Layout, module: &str, confcheck: bool) -> ExitCode {
    let cluster = match layout.load_cluster() {
        Ok(c) => c.value,
        Err(e) => return fail(&e),
    };
    match layout.load_module(module, &cluster, confcheck) {
        Ok(p) => {
            print_diagnostics(&p.warnings);
            if confcheck {
                println!("module {module}: valid configuration");
            } else {
                match serde_json::to_string_pretty(&p.value) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("cannot show the configuration: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

async fn apply_config(layout: &Layout, module: &str) -> ExitCode {
    let code = module_cmd(layout, module, true);
    if code != ExitCode::SUCCESS {
        return code;
    }
    match call(&socket_path(layout), &Request::Config { module: module.to_string() }).await {
        Ok(Response::Error(e)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Ok(_) => {
            println!("module {module}: configuration applied");
            ExitCode::SUCCESS
        }
        Err(_) => {
            println!("module {module}: the daemon is not running; it applies this configuration when it starts");
            ExitCode::SUCCESS
        }
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
