//! `nftopo`: the command line. It parses arguments, wires the crates
//! together and reports errors; the decisions live in the libraries.

mod cleanup;
mod cli;
mod explain;
mod man;
mod planner_args;
mod routes;
mod run;

use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = <cli::Cli as clap::CommandFactory>::command().get_matches();
    let args = match <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let (format, verbosity) = args.log_settings();
    match verbosity {
        Some(v) => run::logs::init(format, v, "info"),
        None => run::logs::init(format, 0, "warn"),
    }
    let is_diff = args.is_diff();
    match cli::run(args, &matches) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nftopo: error: {e:#}");
            if is_diff {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
