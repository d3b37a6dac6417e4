//! Commands that show a module: state, log, logview, get, rfsverify.

use std::process::ExitCode;
use std::time::Duration;

use safekit_core::daemon::control::{Request, Response};
use safekit_core::engine::Status;
use safekit_core::layout::Layout;

use super::ask;

/// `safekit state [-m AM] [-v] [-lq] [--json]`.
pub(super) async fn state(layout: &Layout, module: Option<String>, verbose: bool, quiet: bool, json: bool) -> ExitCode {
    let layout = layout.clone();
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
        // A mirror shows its peer; a farm its load share per group; a light module nothing more.
        let extra = if s.peer.is_some() || s.resources.contains_key("state.remote") {
            format!("(remote: {})", s.peer.map_or_else(|| "UNKNOWN".to_string(), |p| p.to_string()))
        } else {
            let load: Vec<String> = s.resources.iter().filter(|(k, _)| k.ends_with("_0")).map(|(k, v)| format!("{k} {v}%")).collect();
            if load.is_empty() {
                String::new()
            } else {
                format!("(load: {})", load.join(", "))
            }
        };
        println!("{:<16} {:<18} {extra}  id {}", s.name, s.status.to_string(), s.id);
        if verbose {
            for (k, v) in &s.resources {
                println!("    {k:<28} {v}");
            }
        }
    }
    ExitCode::SUCCESS
}

/// Prints the lines of an answer.
pub(super) async fn lines(layout: &Layout, req: Request) -> ExitCode {
    match ask(layout, req).await {
        Ok(Response::Lines(l)) => {
            for line in l {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(c) => c,
    }
}

/// `safekit rfsverify -m AM`: exit 1 when files differ.
pub(super) async fn rfsverify(layout: &Layout, module: String) -> ExitCode {
    match ask(layout, Request::Rfsverify { module }).await {
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
    }
}

/// `safekit logview -m AM`: follows the module log until Ctrl-C.
pub(super) async fn logview(layout: &Layout, m: super::args::Module, lines: usize, all: bool) -> ExitCode {
    let layout = layout.clone();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let now = match ask(&layout, Request::Log { module: m.module.clone(), lines: lines.max(1000), verbose: all }).await {
            Ok(Response::Lines(l)) => l,
            Ok(_) => Vec::new(),
            Err(c) => return c,
        };
        // Print what follows the last line already shown.
        let start =
            seen.last().and_then(|last| now.iter().rposition(|l| l == last)).map_or_else(|| now.len().saturating_sub(lines), |i| i + 1);
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

/// Polls the module's status until `done` says Some: true = success.
pub(super) async fn wait_for(layout: &Layout, module: &str, timeout: u64, what: &str, done: impl Fn(Status) -> Option<bool>) -> ExitCode {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        match super::nodes::send(layout, &Request::State { module: Some(module.to_string()) }).await {
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

/// `safekit snapshot -m AM file.zip`: with the module's report when the
/// daemon answers, without it otherwise (a snapshot is most wanted when
/// something is wrong).
pub(super) async fn snapshot(layout: &Layout, module: &str, file: &std::path::Path) -> ExitCode {
    let report = match super::nodes::send(layout, &Request::State { module: Some(module.to_string()) }).await {
        Ok(Response::States(s)) => s.into_iter().find(|r| r.name == module),
        _ => None,
    };
    let out = match std::fs::File::create(file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("safekit snapshot: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match safekit_core::daemon::snapshot::write(layout, module, report.as_ref(), out) {
        Ok(_) => {
            println!("snapshot of module {module} written to {}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("safekit snapshot: {e}");
            ExitCode::FAILURE
        }
    }
}
