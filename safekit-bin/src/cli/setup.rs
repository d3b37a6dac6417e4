//! Commands that configure the node: module and cluster configuration,
//! module installation, the cluster key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use safekit_core::config::{ConfigError, Diagnostic};
use safekit_core::daemon::control::{Request, Response};
use safekit_core::layout::{load_cluster_file, Layout};

pub(super) fn print_diagnostics(ds: &[Diagnostic]) {
    for d in ds {
        eprintln!("{d}");
    }
}

pub(super) fn fail(e: &ConfigError) -> ExitCode {
    print_diagnostics(&e.diagnostics);
    ExitCode::FAILURE
}

/// `safekit cluster confcheck [file]`.
pub(super) fn cluster_confcheck(layout: &Layout, file: Option<PathBuf>) -> ExitCode {
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

/// `safekit cluster config file`.
pub(super) fn cluster_config(layout: &Layout, file: &Path) -> ExitCode {
    match load_cluster_file(file) {
        Ok(p) => {
            print_diagnostics(&p.warnings);
            let dest = layout.cluster_xml();
            let copy = std::fs::create_dir_all(dest.parent().unwrap_or(&layout.safevar)).and_then(|()| std::fs::copy(file, &dest));
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
    }
}

/// `safekit cluster genkey`.
pub(super) fn genkey(layout: &Layout) -> ExitCode {
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

/// `safekit module install`.
pub(super) fn install(layout: &Layout, path: &Path, module: Option<&str>, id: Option<u16>, replace: bool) -> ExitCode {
    match safekit_core::modules::install(layout, path, module, id, replace) {
        Ok(r) if !r.to_fill.is_empty() => {
            let name = &r.name;
            println!("module {name} installed in {}, with blanks to fill:", layout.module_dir(name).display());
            for l in &r.to_fill {
                println!("  {l}");
            }
            println!("fill them in {}, then: safekit confcheck -m {name}", layout.module_dir(name).join("conf/userconfig.xml").display());
            eprintln!("warning: module {name} cannot start until its blanks are filled");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!("module {} installed in {}; start or restart the daemon to run it", r.name, layout.module_dir(&r.name).display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `safekit firewallcfg add|del [AM]`: module AM's ports, or the node's
/// and every module's, each set under its own tag (`node`, the module name).
pub(super) fn firewallcfg(layout: &Layout, add: bool, module: Option<String>) -> ExitCode {
    use safekit_core::modules::ports;
    let cluster = match layout.load_cluster() {
        Ok(c) => c.value,
        Err(e) => return fail(&e),
    };
    let ids = match safekit_core::modules::ids(layout) {
        Ok(ids) => ids,
        Err(e) => return super::tool(Err(e)),
    };
    let mut sets: Vec<(String, Vec<ports::PortUse>)> = Vec::new();
    if module.is_none() {
        sets.push(("node".into(), ports::of_node(safekit_core::daemon::web::tls::enabled(layout))));
    }
    for (name, id) in ids.iter().filter(|(n, _)| module.as_ref().is_none_or(|m| m == *n)) {
        match layout.load_module(name, &cluster, false) {
            Ok(p) => sets.push((name.clone(), ports::of_module(&p.value, *id))),
            Err(e) => return fail(&e),
        }
    }
    if let Some(m) = module.filter(|m| !ids.contains_key(m)) {
        return super::tool(Err(format!("no module {m} is installed")));
    }
    for (tag, set) in sets {
        let done = if add { safekit_core::linux::firewall::add(&set, &tag) } else { safekit_core::linux::firewall::del(&set, &tag) };
        match done {
            Ok(lines) => lines.iter().for_each(|l| println!("{tag}: {l}")),
            Err(e) => return super::tool(Err(format!("firewallcfg {tag}: {e}"))),
        }
    }
    ExitCode::SUCCESS
}

/// `safekit module getports -m AM`: the module's ports, then the node's.
pub(super) fn getports(layout: &Layout, module: &str) -> ExitCode {
    use safekit_core::modules::ports;
    let cluster = match layout.load_cluster() {
        Ok(c) => c.value,
        Err(e) => return fail(&e),
    };
    let cfg = match layout.load_module(module, &cluster, false) {
        Ok(p) => p.value,
        Err(e) => return fail(&e),
    };
    let id = match safekit_core::modules::ids(layout).map(|ids| ids.get(module).copied()) {
        Ok(Some(id)) => id,
        Ok(None) => return super::tool(Err(format!("no module {module} is installed"))),
        Err(e) => return super::tool(Err(e)),
    };
    println!("module {module} (id {id}):");
    for p in ports::of_module(&cfg, id).into_iter().chain(ports::of_node(safekit_core::daemon::web::tls::enabled(layout))) {
        println!("  {} {:<5} {}", p.proto.to_uppercase(), p.port, p.what);
    }
    ExitCode::SUCCESS
}

pub(super) fn module_cmd(layout: &Layout, module: &str, confcheck: bool) -> ExitCode {
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

pub(super) async fn apply_config(layout: &Layout, module: &str) -> ExitCode {
    let code = module_cmd(layout, module, true);
    if code != ExitCode::SUCCESS {
        return code;
    }
    match super::nodes::send(layout, &Request::Config { module: module.to_string(), files: None }).await {
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

/// `safekit webservercfg -passwd PWD [-user NAME]`.
pub(super) fn webservercfg(layout: &Layout, passwd: &str, user: &str) -> ExitCode {
    let password = if passwd == "-" {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            eprintln!("safekit webservercfg: cannot read the password from the standard input");
            return ExitCode::FAILURE;
        }
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        passwd.to_string()
    };
    let accounts = safekit_core::daemon::web::accounts::Accounts::new(&layout.web_conf());
    match accounts.set_password(user, &password) {
        Ok(()) => {
            println!("password of web-service user {user} set in {}", layout.web_conf().join("user.conf").display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("safekit webservercfg: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `safekit initssl ca` (`ca_node` None) or `safekit initssl req --ca NODE`.
pub(super) async fn initssl(layout: &Layout, ca_node: Option<&str>) -> ExitCode {
    use safekit_core::daemon::web::tls;
    let work = async {
        let cluster: safekit_core::config::ClusterConfig = layout.load_cluster().map_err(|e| e.to_string())?.value;
        let node = safekit_core::daemon::node_name(&cluster, None)?;
        match ca_node {
            None => {
                let names = tls::node_names(&cluster, &node).await;
                let dir = tls::make_ca(layout, names.clone())?;
                Ok(format!(
                    "cluster CA and the certificate of {node} ({}) written in {}; on each other node run `safekit initssl req --ca {node}`, then restart the daemons: HTTPS on {}",
                    names.join(", "),
                    dir.display(),
                    tls::HTTPS_PORT
                ))
            }
            Some(ca) => {
                let key = safekit_core::daemon::load_key(layout)?;
                let dir = tls::request(layout, &cluster, &key, &node, ca, safekit_core::daemon::web::PORT).await?;
                Ok::<String, String>(format!(
                    "certificate of {node} from {ca} written in {}; restart the daemon: HTTPS on {}",
                    dir.display(),
                    tls::HTTPS_PORT
                ))
            }
        }
    };
    match work.await {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("safekit initssl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `safekit boot on|off -m AM`, `safekit boot status [-m AM]`: through the
/// daemon (which logs who changed it), or on the files when it does not run.
pub(super) async fn boot(layout: &Layout, module: Option<String>, on: Option<bool>) -> ExitCode {
    use safekit_core::modules::boot;
    let modules = match (module, on) {
        (Some(m), _) => vec![m],
        (None, None) => safekit_core::modules::list(layout).into_iter().map(|m| m.name).collect(),
        (None, Some(_)) => {
            eprintln!("safekit boot on|off: which module? (-m AM)");
            return ExitCode::FAILURE;
        }
    };
    let mut code = ExitCode::SUCCESS;
    for m in modules {
        let line = match super::nodes::send(layout, &Request::Boot { module: m.clone(), on }).await {
            Ok(Response::Lines(l)) => Ok(l.join(" ")),
            Ok(Response::Error(e)) => Err(e),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) if super::nodes::is_remote() => Err(e),
            // No daemon here: the switch is a file.
            Err(_) => (|| {
                let cluster = layout.load_cluster().map_err(|e| e.to_string())?.value;
                let setting = layout.load_module(&m, &cluster, false).map_err(|e| e.to_string())?.value.service.boot;
                if let Some(on) = on {
                    boot::set(layout, &m, on)?;
                }
                Ok(boot::describe(setting, boot::switch(layout, &m)))
            })(),
        };
        match line {
            Ok(l) => println!("{m}: {l}"),
            Err(e) => {
                eprintln!("{m}: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

/// `safekit module uninstall -m AM`: through the daemon (the module must be
/// STOP; its runtime ends), or on the files when no daemon runs.
pub(super) async fn uninstall(layout: &Layout, module: &str) -> ExitCode {
    let done = match super::nodes::send(layout, &Request::Uninstall { module: module.to_string() }).await {
        Ok(Response::Error(e)) => Err(e),
        Ok(_) => Ok(()),
        Err(e) if super::nodes::is_remote() => Err(e),
        Err(_) => safekit_core::modules::uninstall(layout, module),
    };
    match done {
        Ok(()) => {
            println!("module {module} uninstalled");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
