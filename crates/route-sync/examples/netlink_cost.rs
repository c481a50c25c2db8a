//! `netlink_cost [--nodes N] [--changes C] [--runs R]`: what route-sync's
//! kernel side costs, in time and heap allocations (every thread's,
//! counted by an instrumented global allocator), for the three things a
//! node agent does: program N routes into an empty table (a dump, then
//! one add per route), read N routes back (the dump every pass starts
//! with), and a pass where C nodes changed address (a dump of N, then C
//! replaces). Direct mode over a veth in a network namespace of its own,
//! like `route_bench`. Median of R runs; CPU time is the process's (user
//! and system, every thread), which a busy machine disturbs less than the
//! wall time. Needs root and `ip`. This is the
//! measurement behind the choice of netlink library in the crate docs.

use std::alloc::System;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use api_watch::Node;
use nix::sys::resource::{getrusage, UsageWho};
use route_sync::{
    plan_routes, sync, Mode, NetlinkRoutes, RouteConfig, RouteKernel, DEFAULT_PROTOCOL,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?} failed");
}

fn node(i: u32, moved: bool) -> Node {
    let host = 0xac10_0001 + i + if moved { 20_000 } else { 0 };
    Node {
        name: format!("node-{i}"),
        addresses: vec![("InternalIP".into(), IpAddr::V4(Ipv4Addr::from(host)))],
        pod_cidrs: vec![format!("{}/24", Ipv4Addr::from(0x0a80_0000 + (i << 8)))],
        ..Node::default()
    }
}

/// One measured step: wall time, CPU time and allocations (count, bytes).
#[derive(Clone, Copy)]
struct Cost {
    time: Duration,
    cpu: Duration,
    allocs: usize,
    bytes: usize,
}

/// User plus system time of the whole process so far.
fn cpu_time() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let d = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    d(u.user_time()) + d(u.system_time())
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Cost) {
    let region = Region::new(GLOBAL);
    let (t, cpu) = (Instant::now(), cpu_time());
    let out = f();
    let (time, cpu) = (t.elapsed(), cpu_time() - cpu);
    let c = region.change();
    (
        out,
        Cost {
            time,
            cpu,
            allocs: c.allocations,
            bytes: c.bytes_allocated,
        },
    )
}

fn median(mut v: Vec<Cost>) -> Cost {
    v.sort_by_key(|c| c.time);
    let mut m = v[v.len() / 2];
    let mut a: Vec<usize> = v.iter().map(|c| c.allocs).collect();
    a.sort();
    m.allocs = a[a.len() / 2];
    let mut c: Vec<Duration> = v.iter().map(|c| c.cpu).collect();
    c.sort();
    m.cpu = c[c.len() / 2];
    m
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
    let changes = num("--changes", 100).min(n);
    let runs = num("--runs", 5).max(1);
    let cfg = RouteConfig {
        mode: Mode::Direct,
        ..RouteConfig::default()
    };
    let proto = DEFAULT_PROTOCOL.to_string();

    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare: run as root");
    ip(&["link", "set", "lo", "up"]);
    ip(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
    ]);
    ip(&["addr", "add", "172.16.0.1/16", "dev", "veth0"]);
    ip(&["link", "set", "veth0", "up"]);
    ip(&["link", "set", "veth1", "up"]);

    let nodes: Vec<Node> = (0..=n).map(|i| node(i, false)).collect();
    let moved: Vec<Node> = (0..=n).map(|i| node(i, i >= 1 && i <= changes)).collect();
    let desired = plan_routes(&nodes, &[], "node-0", &cfg).expect("plan");
    let desired_moved = plan_routes(&moved, &[], "node-0", &cfg).expect("plan");

    let (kernel, open) = measure(|| NetlinkRoutes::open().expect("open"));
    let mut kernel = kernel;
    let (mut program, mut dump, mut change) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        ip(&["route", "flush", "proto", &proto]);
        let (report, c) = measure(|| sync(&mut kernel, &desired, cfg.protocol).expect("sync"));
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.applied.len(), desired.routes.len());
        program.push(c);
        let (routes, c) = measure(|| kernel.dump(cfg.protocol).expect("dump"));
        assert_eq!(routes.len(), desired.routes.len());
        dump.push(c);
        let (report, c) =
            measure(|| sync(&mut kernel, &desired_moved, cfg.protocol).expect("sync"));
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.applied.len(), changes as usize);
        change.push(c);
    }
    let routes = desired.routes.len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| step | time ms | CPU ms | allocations | allocated KiB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut row = |what: String, c: Cost| {
        let _ = writeln!(
            out,
            "| {what} | {:.1} | {:.1} | {} | {} |",
            c.time.as_secs_f64() * 1000.0,
            c.cpu.as_secs_f64() * 1000.0,
            c.allocs,
            c.bytes / 1024
        );
    };
    row("open the socket".into(), open);
    row(
        format!("program {routes} routes into an empty table (dump + {routes} adds)"),
        median(program),
    );
    row(format!("dump {routes} routes of ours"), median(dump));
    row(
        format!("{changes} nodes moved (dump {routes} + {changes} replaces)"),
        median(change),
    );
    print!("{out}");
}
