//! The `safekit` command. It parses arguments and calls the library: the
//! daemon, the control client and the configuration checks all live in
//! `safekit-core`.

mod cli;
mod httpload;
mod templates;
mod tools;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // SafeKit spells `webservercfg -passwd PWD -user NAME` with one dash.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "webservercfg") {
        for a in argv.iter_mut().skip(2) {
            if a == "-passwd" || a == "-user" {
                *a = format!("-{}", a.to_string_lossy()).into();
            }
        }
    }
    // `safekit -r saferpc_send …`, `safekit -r vip_if_ctrl -l`: SafeKit's special commands.
    if argv.get(1).is_some_and(|a| a == "-r") {
        argv[1] = "special".into();
    }
    let args = cli::Cli::parse_from(argv);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("safekit: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(cli::run(args))
}
