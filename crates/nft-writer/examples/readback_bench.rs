//! `readback_bench --manifests FILE… [--node N] [--cluster-cidr C]
//! [--runs R]`: the cost of reading nftopo's tables back from the
//! kernel (`NetlinkKernel::read_back`, what `nftopo apply`, `nftopo diff`
//! and the daemon's full syncs do first), in a network namespace of its
//! own. It plans the manifests' ruleset as `nftopo apply` does
//! (`api_watch::file::load_files`, `topology_filter::plan`,
//! `plan_ruleset`), loads it with one `Transaction::replace`, then times R
//! read-backs in a child process that does nothing else, so that its
//! memory figures are the read-back's alone: VmRSS before, VmRSS while
//! one read-back is held, VmHWM (peak) over all of them. Last, the parent
//! checks the read-back against the plan (`converge` of the two: 0
//! operations when they are equal). Prints a Markdown table of one row,
//! then one line on the load and the check; run by `make bench`
//! (integration/src/bin/bench, section `converge`); needs root.

use std::process::Command;
use std::time::{Duration, Instant};

use nft_writer::{
    converge, plan_ruleset, Cidr, Kernel, NetlinkKernel, PlannerConfig, Ruleset, Transaction,
};

/// A field of /proc/self/status, KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Chains, rules, maps and map elements of a ruleset.
fn size(r: &Ruleset) -> (usize, usize, usize, usize) {
    let mut n = (0, 0, 0, 0);
    for t in &r.tables {
        n.0 += t.chains.len();
        n.1 += t.chains.values().map(|c| c.rules.len()).sum::<usize>();
        n.2 += t.maps.len();
        n.3 += t.maps.values().map(|m| m.elements.len()).sum::<usize>();
    }
    n
}

/// The child: `runs` read-backs of the tables in this namespace, and
/// nothing else in the process (its heap holds only what they allocate).
fn measure(runs: usize) {
    let before = status_kib("VmRSS:");
    let mut kernel = NetlinkKernel::open().expect("netlink");
    let mut times = Vec::new();
    let mut held_kib = 0;
    let mut objects = (0, 0, 0, 0);
    for i in 0..runs {
        let t = Instant::now();
        let held = kernel.read_back().expect("read-back");
        times.push(t.elapsed());
        if i == 0 {
            held_kib = status_kib("VmRSS:").saturating_sub(before);
            objects = size(&held);
        }
    }
    let peak = status_kib("VmHWM:");
    times.sort();
    let (chains, rules, maps, elements) = objects;
    println!(
        "| read back | runs | min ms | median ms | max ms | VmRSS before MiB | \
         VmRSS growth, one read-back held, MiB | VmHWM MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {chains} chains, {rules} rules, {maps} maps, {elements} elements | {runs} | {:.0} | \
         {:.0} | {:.0} | {:.1} | {:.1} | {:.1} |",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        mib(before),
        mib(held_kib),
        mib(peak)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(5);
    if args.iter().any(|a| a == "--measure") {
        measure(runs.max(1));
        return;
    }
    let manifests: Vec<String> = args
        .iter()
        .skip_while(|a| *a != "--manifests")
        .skip(1)
        .take_while(|a| !a.starts_with("--"))
        .cloned()
        .collect();
    assert!(
        !manifests.is_empty(),
        "usage: readback_bench --manifests FILE… [--node N] [--cluster-cidr C] [--runs R]"
    );
    let node = arg("--node").unwrap_or_else(|| "node-0".into());
    let cidr = arg("--cluster-cidr").unwrap_or_else(|| "10.0.0.0/8".into());
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare: run as root");

    let (state, errors) = api_watch::file::load_files(&manifests);
    assert!(errors.is_empty(), "manifests: {errors:?}");
    let plan = topology_filter::plan(&state, &node);
    drop(state);
    let cfg = PlannerConfig {
        detect_local: nft_writer::DetectLocal::ClusterCidr(
            Cidr::parse(&cidr).into_iter().collect(),
        ),
        ..PlannerConfig::default()
    };
    let (want, _) = plan_ruleset(&plan, &cfg);
    drop(plan);
    let mut kernel = NetlinkKernel::open().expect("netlink");
    let t = Instant::now();
    kernel
        .apply(&Transaction::replace(&want))
        .expect("loading the ruleset");
    let load = t.elapsed();

    // The child inherits this namespace (unshare moved the process).
    let me = std::env::current_exe().expect("current exe");
    let status = Command::new(me)
        .args(["--measure", "--runs", &runs.to_string()])
        .status()
        .expect("the measuring child");
    assert!(status.success(), "the measuring child failed: {status}");

    let held = kernel.read_back().expect("read-back");
    let c = converge(&held, &want);
    println!(
        "Loaded with one `Transaction::replace` in {:.2} s; `converge(read-back, plan)`: \
         {} operations ({}), {} differences.",
        load.as_secs_f64(),
        c.now.ops.len() + c.later.len(),
        if c.now.ops.is_empty() && c.later.is_empty() {
            "the read-back equals the plan"
        } else {
            "the read-back differs from the plan"
        },
        c.repairs.total()
    );
}
