//! The `safekit` command. It only parses arguments and calls the library;
//! all behaviour lives in `safekit-core`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use safekit_core::config::{ConfigError, Diagnostic};
use safekit_core::layout::{load_cluster_file, Layout};

/// SafeKit-compatible high-availability cluster: mirror (replication +
/// failover), farm and light modules.
#[derive(Parser)]
#[command(name = "safekit", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a module's configuration (SAFE/modules/AM/conf/userconfig.xml)
    /// against cluster.xml without applying it; placeholders such as
    /// VIRTUAL_TO_BE_DEFINED are refused.
    Confcheck {
        /// Module name.
        #[arg(short = 'm')]
        module: String,
    },
    /// Show a module's configuration as the daemon reads it (JSON).
    Config {
        /// Module name.
        #[arg(short = 'm')]
        module: String,
    },
    /// Cluster configuration commands.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Check a cluster.xml file (default: SAFEVAR/cluster/cluster.xml).
    Confcheck {
        /// The file to check.
        file: Option<PathBuf>,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let layout = Layout::from_env();
    match cli.command {
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
        Cmd::Confcheck { module } => module_cmd(&layout, &module, true),
        Cmd::Config { module } => module_cmd(&layout, &module, false),
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
