//! Section 6: node routes with route-sync (its `route_bench` example,
//! which links the crate; this one does not) against `ip -batch`.

use std::fmt::Write as _;
use std::process::Command;

use crate::util::run_ok;
use crate::Config;

/// Runs the section; returns its Markdown.
pub fn run(cfg: &Config) -> String {
    let mut md = String::from("## 6. Routes\n\n");
    let Some(example) = cfg.example("route_bench") else {
        md.push_str(
            "Skipped: `route_bench` not built (cargo build --release -p route-sync --examples).\n",
        );
        return md;
    };
    let (nodes, runs) = if cfg.quick { (1000, 1) } else { (5000, 3) };
    let out = run_ok(Command::new(&example).args([
        "--nodes",
        &nodes.to_string(),
        "--runs",
        &runs.to_string(),
    ]));
    let _ = writeln!(
        md,
        "This node's routes to {nodes} other nodes' pod CIDRs (`10.x.y.0/24 via NODE proto bird`, \
         route-sync's direct mode over a veth whose /16 holds every node address), plus the \
         blackhole for its own CIDR, in a namespace of its own: route-sync's `sync` (dump our \
         protocol's routes, reconcile, one rtnetlink request per route, each acknowledged) \
         against `ip -batch` of the same routes in a fresh namespace. Minimum of {runs} run(s) \
         for the full programming; the table was emptied between runs.\n\n{out}"
    );
    // What the kernel side costs per step (route-sync's rtnetlink choice).
    if let Some(cost) = cfg.example("netlink_cost") {
        let out = run_ok(Command::new(&cost).args([
            "--nodes",
            &nodes.to_string(),
            "--runs",
            &runs.max(5).to_string(),
        ]));
        let _ = writeln!(
            md,
            "\nroute-sync's kernel side alone (`netlink_cost`: rtnetlink, up to 32 requests in \
             flight), median of {} runs; CPU is user + system of every thread, allocations are \
             every thread's:\n\n{out}",
            runs.max(5)
        );
    }
    md
}
