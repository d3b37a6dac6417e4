//! The `safekit` command. It parses arguments and calls the library: the
//! daemon, the control client and the configuration checks all live in
//! `safekit-core`.

mod cli;
mod tools;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("safekit: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(cli::run(args))
}
