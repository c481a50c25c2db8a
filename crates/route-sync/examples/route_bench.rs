//! `route_bench [--nodes N] [--runs R]`: programs this node's routes to N
//! other nodes' pod CIDRs with route-sync (direct mode, over a veth) in a
//! network namespace of its own, then single changes, and the same N
//! routes with `ip -batch` in a fresh namespace as the baseline. Prints a
//! Markdown table. Run by `make bench` (integration/src/bin/bench); needs
//! root and `ip`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use api_watch::Node;
use route_sync::{plan_routes, sync, Mode, NetlinkRoutes, RouteConfig, DEFAULT_PROTOCOL};

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?} failed");
}

/// A fresh network namespace for this process: `lo` up and a veth pair
/// whose end `veth0` holds 172.16.0.1/16, so every node address is on link.
fn fresh_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare: run as root");
    ip(&["link", "set", "lo", "up"]);
    ip(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
    ]);
    ip(&["addr", "add", "172.16.0.1/16", "dev", "veth0"]);
    ip(&["link", "set", "veth0", "up"]);
    ip(&["link", "set", "veth1", "up"]);
}

fn node_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xac10_0001 + i)
}

fn pod_cidr(i: u32, generation: u32) -> String {
    format!(
        "{}/24",
        Ipv4Addr::from(0x0a80_0000 + (i << 8) + (generation << 24))
    )
}

fn node(i: u32, generation: u32) -> Node {
    Node {
        name: format!("node-{i}"),
        addresses: vec![("InternalIP".into(), IpAddr::V4(node_ip(i)))],
        pod_cidrs: vec![pod_cidr(i, generation)],
        ..Node::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |name: &str, default: u32| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = num("--nodes", 5000);
    let runs = num("--runs", 3);
    let cfg = RouteConfig {
        mode: Mode::Direct,
        ..RouteConfig::default()
    };
    let proto = DEFAULT_PROTOCOL.to_string();
    let mut nodes: Vec<Node> = (0..=n).map(|i| node(i, 0)).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| operation | routes changed | time ms | baseline (`ip -batch`) ms | ratio |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");

    // Baseline first: the same routes through `ip -batch`, best of runs.
    fresh_netns();
    let batch = std::env::temp_dir().join(format!("route-bench-{}.txt", std::process::id()));
    let mut text = String::new();
    for i in 1..=n {
        let _ = writeln!(
            text,
            "route add {} via {} proto {proto}",
            pod_cidr(i, 0),
            node_ip(i)
        );
    }
    let _ = writeln!(text, "route add blackhole {} proto {proto}", pod_cidr(0, 0));
    std::fs::write(&batch, text).expect("batch file");
    let mut baseline = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        ip(&["-batch", batch.to_str().unwrap()]);
        baseline = baseline.min(t.elapsed());
        ip(&["route", "flush", "proto", &proto]);
    }
    let _ = std::fs::remove_file(&batch);

    // route-sync in a fresh namespace.
    fresh_netns();
    let mut kernel = NetlinkRoutes::open().expect("rtnetlink");
    let t = Instant::now();
    let desired = plan_routes(&nodes, &[], "node-0", &cfg).expect("plan");
    let plan_t = t.elapsed();
    assert!(desired.problems.is_empty(), "{:?}", desired.problems);
    let mut full = Duration::MAX;
    let mut applied = 0;
    for r in 0..runs {
        if r > 0 {
            ip(&["route", "flush", "proto", &proto]);
        }
        let t = Instant::now();
        let report = sync(&mut kernel, &desired, cfg.protocol).expect("sync");
        full = full.min(t.elapsed());
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        applied = report.applied.len();
    }
    let _ = writeln!(
        out,
        "| plan {n} nodes (pure) | – | {:.1} | – | – |",
        ms(plan_t)
    );
    let _ = writeln!(
        out,
        "| program {} routes into an empty table (dump, reconcile, one request per route) | {applied} | {:.1} | {:.1} | {:.2}x |",
        applied,
        ms(full),
        ms(baseline),
        ms(full) / ms(baseline)
    );
    let t = Instant::now();
    let report = sync(&mut kernel, &desired, cfg.protocol).expect("sync");
    let _ = writeln!(
        out,
        "| resync with nothing to do (dump {} routes, reconcile) | {} | {:.1} | – | – |",
        applied,
        report.applied.len(),
        ms(t.elapsed())
    );
    // One node's pod CIDR changes, ten times: plan and sync each time.
    let mut times = Vec::new();
    let mut changed = 0;
    for k in 0..10u32 {
        let i = 1 + (k * 97) % n;
        nodes[i as usize] = node(i, 1 + k % 2);
        let t = Instant::now();
        let desired = plan_routes(&nodes, &[], "node-0", &cfg).expect("plan");
        let report = sync(&mut kernel, &desired, cfg.protocol).expect("sync");
        times.push(t.elapsed());
        changed = changed.max(report.applied.len());
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }
    times.sort();
    let _ = writeln!(
        out,
        "| one node's pod CIDR changed: plan + sync (median of 10; max {:.1} ms) | {changed} | {:.1} | – | – |",
        ms(times[9]),
        ms(times[5])
    );
    // One node added.
    nodes.push(node(n + 1, 0));
    let t = Instant::now();
    let desired = plan_routes(&nodes, &[], "node-0", &cfg).expect("plan");
    let report = sync(&mut kernel, &desired, cfg.protocol).expect("sync");
    let _ = writeln!(
        out,
        "| one node added: plan + sync | {} | {:.1} | – | – |",
        report.applied.len(),
        ms(t.elapsed())
    );
    print!("{out}");
}
