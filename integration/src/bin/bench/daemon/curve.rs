//! Section 5: event to kernel as a curve over the sizes of the run, with
//! the two goals judged from the measured figures.

use std::fmt::Write as _;

use crate::plot::{self, Chart, Series};
use crate::util::pct;
use crate::Config;

use super::{verdict, Point};

/// The goals (issue 15): p99 at 10k, and 100k against 1k.
const GOAL_P99_MS: f64 = 10.0;
const GOAL_AT: u32 = 10000;
const FLAT_FROM: u32 = 1000;
const FLAT_TO: u32 = 100000;
const FLAT_FACTOR: f64 = 2.0;

fn all(p: &Point) -> Vec<f64> {
    let mut v = p.changes.added.clone();
    v.extend_from_slice(&p.changes.removed);
    v
}

pub fn section(cfg: &Config, points: &[Point]) -> String {
    let mut md = String::new();
    let sizes: Vec<String> = points.iter().map(|p| p.services.to_string()).collect();
    let checked: usize = points.iter().map(|p| p.changes.checked).sum();
    let wrong: usize = points.iter().map(|p| p.changes.wrong).sum();
    let _ = writeln!(
        md,
        "## 5. Event to kernel ({} services x 10 endpoints)\n\n\
         The same daemons as section 4, right after the memory figure of their first sync. \
         The stand-in applies an EndpointSlice change (one endpoint added to a service, then \
         removed again, over services spread through the cluster); the time runs from just \
         before the stand-in's apply to the end of the daemon's next sync, by the daemon's own \
         `kubeproxy_sync_proxy_rules_last_timestamp_seconds` (wall clock, set when the kernel \
         has acknowledged the transaction; polled every 2 ms, the poll does not add to the \
         figure). Includes the watch event, the daemon's re-plan of the changed Service and \
         the commit; `--min-sync-period 0s`. The kernel is the witness after both directions \
         of every tenth change: the bench asks it for that one element of \
         `service-endpoints` (an `NFT_MSG_GETSETELEM` request for the key, answered by the \
         kernel's own lookup): {checked} checked, {wrong} not as expected. (`nft monitor \
         elements` was tried first: nft 1.0.6's monitor printed the first add and delete, \
         then nothing more; and `nft get element` reads the whole ruleset into its cache \
         first, 170 ms at 1k services and over a minute and 2.7 GiB at 100k.) `changes`: of \
         each direction.\n",
        sizes.join(" / ")
    );
    let _ = writeln!(
        md,
        "| services | changes | added p50 / p99 ms | removed p50 / p99 ms | all p50 ms | all p99 ms | max ms (which change) | checked / wrong |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for p in points {
        let c = &p.changes;
        let v = all(p);
        let max = v.iter().cloned().fold(f64::NAN, f64::max);
        // Which change took longest: the first (an endpoint count no
        // service had before) costs the kernel a walk of the whole map.
        let nth = |v: &[f64]| v.iter().position(|&x| x == max);
        let which = match (nth(&c.added), nth(&c.removed)) {
            (Some(k), _) => format!("added #{}", k + 1),
            (None, Some(k)) => format!("removed #{}", k + 1),
            _ => "–".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} | {:.1} | {:.1} ({which}) | {} / {} |",
            p.services,
            c.added.len().max(c.removed.len()),
            pct(&c.added, 0.5),
            pct(&c.added, 0.99),
            pct(&c.removed, 0.5),
            pct(&c.removed, 0.99),
            pct(&v, 0.5),
            pct(&v, 0.99),
            max,
            c.checked,
            c.wrong
        );
        if c.lost > 0 {
            let _ = writeln!(
                md,
                "| {} | {} changes never showed up within 30 s | | | | | | |",
                p.services, c.lost
            );
        }
    }
    let at = |n: u32| points.iter().find(|p| p.services == n).map(all);
    let p99 = |n: u32| at(n).map_or(f64::NAN, |v| pct(&v, 0.99));
    let p50 = |n: u32| at(n).map_or(f64::NAN, |v| pct(&v, 0.5));
    let (base, far) = (p99(FLAT_FROM), p99(FLAT_TO));
    let _ = writeln!(md, "\nGoals (all changes of a size, both directions):\n");
    let _ = writeln!(
        md,
        "* p99 ≤ {GOAL_P99_MS} ms at {GOAL_AT} services: {}",
        verdict(p99(GOAL_AT), GOAL_P99_MS, "ms")
    );
    let flat = if base.is_nan() || far.is_nan() {
        "not measured in this run".to_string()
    } else {
        format!(
            "{} against a limit of {:.1} ms ({FLAT_FACTOR} x {base:.1} ms at {FLAT_FROM}; \
             the ratio is {:.1}x; p50 {:.1} against {:.1} ms: {:.1}x)",
            verdict(far, FLAT_FACTOR * base, "ms"),
            FLAT_FACTOR * base,
            far / base,
            p50(FLAT_TO),
            p50(FLAT_FROM),
            p50(FLAT_TO) / p50(FLAT_FROM)
        )
    };
    let _ = writeln!(
        md,
        "* p99 at {FLAT_TO} services within {FLAT_FACTOR}x of the {FLAT_FROM} figure: {flat}\n"
    );

    let line = |label: &str, f: &dyn Fn(&[f64]) -> f64| Series {
        label: label.into(),
        points: points
            .iter()
            .map(|p| (p.services as f64, f(&all(p))))
            .collect(),
    };
    let mut series = vec![
        line("p50, all changes", &|v| pct(v, 0.5)),
        line("p99, all changes", &|v| pct(v, 0.99)),
    ];
    if let (false, Some(first), Some(last)) = (base.is_nan(), points.first(), points.last()) {
        series.push(Series {
            label: format!("goal at {FLAT_TO}: {FLAT_FACTOR} x p99 at {FLAT_FROM}"),
            points: vec![
                (first.services as f64, FLAT_FACTOR * base),
                (last.services as f64, FLAT_FACTOR * base),
            ],
        });
    }
    let png = plot::chart(
        cfg,
        &Chart {
            file: "event-to-kernel.png",
            title: "EndpointSlice change to kernel (services x 10 endpoints)",
            x: "services (log)",
            y: "ms",
            log_x: true,
            log_y: false,
            goal: Some((GOAL_P99_MS, "goal: p99 ≤ 10 ms at 10k")),
        },
        &series,
    );
    let _ = writeln!(md, "{png}\n");
    md
}
