//! Commands that run something: the daemon, the witness and the demo.

use std::process::ExitCode;

use safekit_core::layout::Layout;

use super::args::FailureArg;

/// Logs to stderr (journald keeps them under systemd), level from `RUST_LOG`.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

/// Resolves at SIGTERM (systemd's stop) or Ctrl-C.
async fn shutdown() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `safekit daemon`: runs until SIGTERM or Ctrl-C, then stops every module.
pub(super) async fn daemon(layout: Layout, node: Option<String>) -> ExitCode {
    init_tracing();
    // The templates this version carries, for the console and `module install`.
    match crate::templates::write_missing(&layout) {
        Ok(w) if !w.is_empty() => {
            eprintln!("safekit daemon: module templates written to SAFE/Application_Modules/generic: {}", w.join(" "))
        }
        Ok(_) => {}
        Err(e) => eprintln!("safekit daemon: module templates not written: {e}"),
    }
    match safekit_core::daemon::run(layout, node, shutdown()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("safekit daemon: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `safekit witness`: serves leases until SIGTERM or Ctrl-C.
pub(super) async fn witness(layout: &Layout, listen: std::net::SocketAddr, key: Option<std::path::PathBuf>) -> ExitCode {
    init_tracing();
    let path = key.unwrap_or_else(|| layout.safevar.join("cluster").join("cluster.key"));
    let key = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| safekit_core::key::ClusterKey::from_hex(&t).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(e) => {
            eprintln!("safekit witness: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match safekit_core::witness::server::serve(listen, key, shutdown()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("safekit {e}");
            ExitCode::FAILURE
        }
    }
}

/// `safekit demo [--runs N --failure kill9|cut] [--keep | --clean]`.
pub(super) async fn demo(runs: Option<usize>, failure: FailureArg, keep: bool, clean: bool) -> ExitCode {
    if clean {
        return match safekit_bin::demo_keep::clean() {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("safekit demo --clean: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("safekit demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(runs) = runs {
        let f = match failure {
            FailureArg::Kill9 => safekit_bin::demo::Failure::Kill9,
            FailureArg::Cut => safekit_bin::demo::Failure::Cut,
        };
        println!("safekit failover benchmark: {runs} runs, failure {f:?}, pulse 100 ms, timeout 1000 ms, probe every 10 ms");
        let bench = safekit_bin::demo::bench(&exe, runs, f);
        return tokio::select! {
            r = bench => match r {
                Ok(v) => {
                    let max = v.iter().max().copied().unwrap_or_default();
                    println!("SUMMARY safekit {f:?}: median {} ms, max {} ms over {} runs", safekit_bin::demo::median(&v).as_millis(), max.as_millis(), v.len());
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
    let demo = safekit_bin::demo::run(&exe, keep);
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
