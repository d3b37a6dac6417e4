//! `safekit -r …`: SafeKit's special commands that scripts and
//! administrators call — the farm traffic switch under
//! `scriptcontrol="on"` and the farm bucket maps.

use std::process::ExitCode;
use std::time::Duration;

use safekit_core::daemon::control::{Request, Response};
use safekit_core::engine::CommandKind;
use safekit_core::farm::FarmReport;
use safekit_core::layout::Layout;
use safekit_core::runtime::ModuleReport;

use super::ask;

const USAGE: &str = "supported: safekit -r saferpc_send vipd SETGROUPS all all all|none none none (from a farm module's script, \
                     SAFEMODULE set), safekit -r vip_if_ctrl -l [-m AM]";

/// Runs the special command `args` (without the `-r`).
pub(super) async fn run(layout: &Layout, args: &[String]) -> ExitCode {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["saferpc_send", "vipd", "SETGROUPS", groups @ ..] if groups.len() == 3 => {
            let on = if groups.iter().all(|g| *g == "all") {
                true
            } else if groups.iter().all(|g| *g == "none") {
                false
            } else {
                eprintln!("safekit -r saferpc_send vipd SETGROUPS: all all all (open) or none none none (close), not {}", groups.join(" "));
                return ExitCode::FAILURE;
            };
            let Ok(module) = std::env::var("SAFEMODULE") else {
                eprintln!("safekit -r saferpc_send: SAFEMODULE is not set (run it from the module's script, or set SAFEMODULE=AM)");
                return ExitCode::FAILURE;
            };
            traffic(layout, module, on).await
        }
        ["vip_if_ctrl", "-l"] => maps(layout, std::env::var("SAFEMODULE").ok()).await,
        ["vip_if_ctrl", "-l", "-m", module] => maps(layout, Some((*module).to_string())).await,
        _ => {
            eprintln!("safekit -r {}: unknown special command; {USAGE}", args.join(" "));
            ExitCode::FAILURE
        }
    }
}

async fn farms(layout: &Layout, module: Option<String>) -> Result<Vec<(ModuleReport, FarmReport)>, ExitCode> {
    match ask(layout, Request::State { module }).await? {
        Response::States(s) => Ok(s.into_iter().filter_map(|r| r.farm.clone().map(|f| (r, f))).collect()),
        _ => Ok(Vec::new()),
    }
}

/// Opens or closes the traffic and waits (30 s at most) until the daemon reports it done.
async fn traffic(layout: &Layout, module: String, on: bool) -> ExitCode {
    let req = Request::Command { module: module.clone(), kind: CommandKind::Traffic(on), identity: Some("saferpc_send".into()) };
    if let Err(c) = ask(layout, req).await {
        return c;
    }
    for _ in 0..300 {
        match farms(layout, Some(module.clone())).await {
            Ok(f) if f.first().is_some_and(|(_, f)| f.open == on) => return ExitCode::SUCCESS,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(c) => return c,
        }
    }
    eprintln!(
        "safekit -r saferpc_send: the traffic of {module} is not {} after 30 s (see safekit log -m {module})",
        if on { "open" } else { "closed" }
    );
    ExitCode::FAILURE
}

/// Each farm module's bucket maps, one line per node, as SafeKit's `vip_if_ctrl -l`.
async fn maps(layout: &Layout, module: Option<String>) -> ExitCode {
    let farms = match farms(layout, module.clone()).await {
        Ok(f) => f,
        Err(c) => return c,
    };
    if farms.is_empty() {
        eprintln!("no farm module{}", module.map(|m| format!(" named {m}")).unwrap_or_default());
        return ExitCode::FAILURE;
    }
    for (r, f) in farms {
        for g in &f.groups {
            println!(
                "{} (group {}): {} on this node, members {}",
                r.name,
                g.name,
                if f.open { "traffic open" } else { "traffic closed" },
                if f.members.is_empty() { "none".to_string() } else { f.members.join(" ") }
            );
            for n in &g.nodes {
                let note = match (n.local, n.live) {
                    (true, _) => " (this node)",
                    (false, false) => " (lost)",
                    (false, true) => "",
                };
                println!("  {:<16} {}  {:>3}/256{note}", n.node, FarmReport::bitmap(&n.buckets), n.buckets.len());
            }
        }
    }
    ExitCode::SUCCESS
}
