//! `bench [--quick] [--out FILE] [--only S,S…]`: nftopo's benchmark, run
//! by `make bench`. Each section measures nftopo next to what a user
//! would run instead, in the same run on the same machine, and the whole
//! writes a Markdown report (BENCHMARKS.md) with PNG plots next to it
//! (`docs/bench/`):
//!
//! 1. `fullsync`: full sync into an empty namespace at 1k…30k services x
//!    10 endpoints: `nftopo apply`, `nft -f` of `nftopo render`, `nft -f`
//!    of kube-proxy's nftables layout, `iptables-restore` and
//!    `iptables-legacy-restore` of kube-proxy's iptables layout;
//! 2. `incremental`: single changes at 10k services through the daemon's
//!    code path (nft-writer's `incremental_bench` example), time split by
//!    phase, and `perf` top symbols;
//! 3. `dataplane`: new TCP connections per second and connect latency
//!    through one service while 0…30k other services are programmed,
//!    nftopo against the iptables layout;
//! 4. and 5. `daemon`: `nftopo run` fed 1k, 10k, 30k and 100k services by
//!    the API server stand-in: its memory and first sync (at 100k next to
//!    kube-proxy's rulesets, estimated from smaller loads), and the time
//!    from an EndpointSlice change to the element in the kernel as a curve
//!    over the sizes;
//! 6. `routes`: 5,000 node routes and one change (route-sync's
//!    `route_bench` example) against `ip -batch`;
//! 7. `converge`: `nftopo apply` with nothing changed and with 1% of the
//!    services changed against the first apply into an empty namespace,
//!    operations witnessed by `nft monitor`; the read-back alone
//!    (nft-writer's `readback_bench` example); `nftopo run` restarted
//!    over an unchanged cluster against its first start.
//!
//! `--quick` runs every section small (under 3 minutes). Needs root,
//! `nft`, `iptables`, `nsenter`, `/usr/bin/time`; `perf` is optional.

mod converge;
mod daemon;
mod dataplane;
mod fullsync;
mod incremental;
mod layouts;
mod plot;
mod routes;
mod util;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What every section needs to know about this run.
pub struct Config {
    /// `--quick`: small sizes, one run each.
    pub quick: bool,
    /// Scratch directory (removed at the end).
    pub tmp: PathBuf,
    /// Where the PNGs go.
    pub plots: PathBuf,
    /// How the report links them (relative to the report).
    pub plots_link: String,
}

impl Config {
    /// A binary built next to this one; panics with how to build it.
    pub fn bin(&self, name: &str) -> PathBuf {
        let p = util::sibling(name);
        assert!(
            p.exists(),
            "{} missing: cargo build --release --workspace --bins",
            p.display()
        );
        p
    }

    /// An example of a workspace crate (`target/release/examples/<name>`),
    /// if built.
    pub fn example(&self, name: &str) -> Option<PathBuf> {
        let p = util::sibling("examples").join(name);
        p.exists().then_some(p)
    }
}

const SECTIONS: [&str; 6] = [
    "fullsync",
    "incremental",
    "dataplane",
    "daemon",
    "routes",
    "converge",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Anything it does not know stops it before a 20-minute run starts
    // (`--help` used to start the whole bench).
    let known = ["--quick", "--out", "--only"];
    let mut words = args.iter();
    while let Some(a) = words.next() {
        if !known.contains(&a.as_str()) {
            eprintln!(
                "usage: bench [--quick] [--out FILE] [--only S,S…]  (sections: {})",
                SECTIONS.join(",")
            );
            std::process::exit(if a == "--help" || a == "-h" { 0 } else { 2 });
        }
        if a != "--quick" {
            words.next();
        }
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let out_path = PathBuf::from(value("--out").unwrap_or_else(|| "BENCHMARKS.md".into()));
    let only: Vec<String> = value("--only")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| SECTIONS.iter().map(|s| s.to_string()).collect());
    for s in &only {
        assert!(
            SECTIONS.contains(&s.as_str()),
            "unknown section {s}; sections: {SECTIONS:?}"
        );
    }
    nftopo_integration::require_root();
    let report_dir = out_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&report_dir).expect("report directory");
    let tmp = std::env::temp_dir().join(format!("nftopo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let cfg = Config {
        quick,
        tmp,
        plots: report_dir.join("docs/bench"),
        plots_link: "docs/bench".into(),
    };

    let started = Instant::now();
    let mut body = String::new();
    let mut took = Vec::new();
    for s in &only {
        let t = Instant::now();
        eprintln!("bench: section {s}");
        let md = match s.as_str() {
            "fullsync" => fullsync::run(&cfg),
            "incremental" => incremental::run(&cfg),
            "dataplane" => dataplane::run(&cfg),
            "daemon" => daemon::run(&cfg),
            "routes" => routes::run(&cfg),
            "converge" => converge::run(&cfg),
            _ => unreachable!(),
        };
        body.push_str(&md);
        body.push('\n');
        took.push(format!("{s} {:.0} s", t.elapsed().as_secs_f64()));
    }
    std::fs::remove_dir_all(&cfg.tmp).ok();

    let mut report = String::new();
    let _ = writeln!(report, "# Benchmarks\n");
    let _ = writeln!(
        report,
        "Produced by `make bench` (`bench{}`) in {:.1} minutes ({}). Every ratio is to a \
         baseline measured in the same run on this machine:\n",
        if quick { " --quick" } else { "" },
        started.elapsed().as_secs_f64() / 60.0,
        took.join(", ")
    );
    report.push_str(&util::machine());
    if quick {
        let _ = writeln!(
            report,
            "\n**--quick run: small sizes and one run per figure, for development; \
             not the figures to quote.**"
        );
    }
    report.push('\n');
    report.push_str(&body);
    // Hand-written reading of the figures, kept next to the code.
    let notes = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-notes.md");
    if let Ok(text) = std::fs::read_to_string(&notes) {
        let _ = write!(report, "\n{text}");
    }
    std::fs::write(&out_path, &report).unwrap();
    print!("{report}");
}
