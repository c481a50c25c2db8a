//! `nftopo`: the command line. It parses arguments, wires the crates
//! together and reports errors; the decisions live in the libraries.

mod cleanup;
mod cli;
mod explain;
mod man;
mod planner_args;
mod routes;
mod run;
mod trace_cmd;

use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: the binary must keep its memory
/// down with no environment variable set (`MALLOC_ARENA_MAX` is only in
/// the systemd unit and the DaemonSet), and glibc keeps what the first
/// sync frees (296 MiB resident at 10k services x 10 endpoints, still
/// after 1,000 changes) where jemalloc gives it back (164 MiB), at the
/// same peak. mimalloc gave back less and peaked higher.
/// integration/bench-notes.md (2026-12-06) has the comparison. Built with
/// one arena (`.cargo/config.toml`, `narenas:1`): 5-7 MiB less at the peak
/// at 10k, and no arena per CPU on large nodes; and freed pages given
/// back after 100 ms, not 10 s (`dirty_decay_ms:100`): 11-13 MiB less.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
