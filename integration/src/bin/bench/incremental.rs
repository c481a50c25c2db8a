//! Section 2: single changes at 10k services through the daemon's code
//! path (nft-writer's `incremental_bench` example, which links the
//! planner; this crate does not), with the time split by phase and, when
//! `perf` is installed, the top symbols of a profile.

use std::fmt::Write as _;
use std::process::Command;

use crate::plot::{self, Chart, Series};
use crate::util::{have, run_ok};
use crate::Config;

/// Runs the section; returns its Markdown.
pub fn run(cfg: &Config) -> String {
    let Some(example) = cfg.example("incremental_bench") else {
        return "## 2. Incremental sync\n\nSkipped: `incremental_bench` not built \
                (cargo build --release -p nft-writer --examples).\n"
            .into();
    };
    let (services, per_kind, profiled) = if cfg.quick {
        (1000, 50, 10)
    } else {
        (10000, 250, 15)
    };
    let samples = cfg.tmp.join("incremental.csv");
    let out = run_ok(Command::new(&example).args([
        "--services",
        &services.to_string(),
        "--changes",
        &per_kind.to_string(),
        "--samples",
        samples.to_str().unwrap(),
    ]));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## 2. Incremental sync ({services} services x 10 endpoints, {} changes: {per_kind} of each kind)\n\n\
         One change at a time through the daemon's path (`Syncer` over the netlink kernel, \
         as `nftopo run` drives it; not the CLI): re-plan of the Services the change touches \
         (topology, then ruleset parts), their changes as one netlink batch. \
         Goals: 5 ms p99 and 20 messages or fewer per single change. The time is wall time \
         per change, in this process, from the changed cluster to the kernel's answer.\n\n{out}",
        4 * per_kind
    );

    // CDF-like plot: per kind, the sorted times against their rank.
    let csv = std::fs::read_to_string(&samples).unwrap_or_default();
    let mut by_kind: Vec<(String, Vec<f64>)> = Vec::new();
    for line in csv.lines().skip(1) {
        // kind,ms,commit_ms,messages (a kind may hold commas).
        let mut fields = line.rsplitn(4, ',');
        let (Some(_), Some(_), Some(ms), Some(kind)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(ms) = ms.parse::<f64>() else { continue };
        match by_kind.iter_mut().find(|(k, _)| k == kind) {
            Some((_, v)) => v.push(ms),
            None => by_kind.push((kind.to_string(), vec![ms])),
        }
    }
    let series: Vec<Series> = by_kind
        .into_iter()
        .map(|(label, mut v)| {
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            Series {
                label,
                points: v
                    .iter()
                    .enumerate()
                    .map(|(i, &ms)| (100.0 * (i + 1) as f64 / n, ms))
                    .collect(),
            }
        })
        .collect();
    let png = plot::chart(
        cfg,
        &Chart {
            file: "incremental.png",
            title: &format!("Single changes at {services} services: time per change"),
            x: "percentile of changes",
            y: "ms per change (log)",
            log_x: false,
            log_y: true,
            goal: Some((5.0, "goal: 5 ms p99")),
        },
        &series,
    );
    let _ = writeln!(md, "\n{png}\n");

    if have("perf") {
        let data = cfg.tmp.join("perf.data");
        let rec = Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                "999",
                "-o",
                data.to_str().unwrap(),
                "--",
            ])
            .arg(&example)
            .args([
                "--services",
                &services.to_string(),
                "--changes",
                &profiled.to_string(),
            ])
            .output();
        let report = rec.ok().filter(|o| o.status.success()).and_then(|_| {
            Command::new("perf")
                .args(["report", "-i", data.to_str().unwrap(), "--no-children"])
                .args(["--sort", "dso,symbol", "--stdio", "--percent-limit", "1"])
                .output()
                .ok()
        });
        let top: Vec<String> = report
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('%'))
            .take(15)
            .map(|l| {
                l.trim()
                    .trim_end_matches(|c: char| c == '-' || c.is_whitespace())
                    .to_string()
            })
            .collect();
        if top.is_empty() {
            let _ = writeln!(md, "(`perf record` gave no profile here.)\n");
        } else {
            let _ = writeln!(
                md,
                "Top symbols by self time, `perf record -F 999` of the example with {profiled} \
                 changes of each kind (the profile also holds the setup: building the cluster and \
                 the first full sync, about a tenth of it):\n\n```text\n{}\n```\n",
                top.join("\n")
            );
        }
    } else {
        let _ = writeln!(
            md,
            "(`perf` not installed: no profile; apt-get install linux-perf.)\n"
        );
    }
    md
}
