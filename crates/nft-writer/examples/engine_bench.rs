//! `engine_bench [--services N] [--changes C] [--old] [--null-kernel]`: the daemon's
//! incremental sync path for single changes against N services x 10
//! endpoints, in a network namespace of its own (needs root): per change,
//! `topology_filter::replan` of the changed Services (on a Node change:
//! those whose topology depends on Nodes), `IncrementalPlanner::update`
//! and `Syncer::sync_changes` (one netlink batch). Prints, per kind of
//! change, the netlink messages (max) and p50/p99 of the whole sync and of
//! each phase. `--old` times the path before it instead (whole
//! `topology_filter::plan`, `plan_ruleset`, `Syncer::sync`'s diff).
//! Also times `ClusterState::clone`, which `Tracker::take_snapshot` does
//! for every snapshot. `--null-kernel` encodes each batch and drops it
//! instead of sending it (user space alone).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use api_watch::{
    AddressType, ClusterState, Conditions, Endpoint, EndpointPort, EndpointSlice, Node, ObjectKey,
    Protocol, Service, ServicePort, TargetPort, TOPOLOGY_KEYS_ANNOTATION,
};
use nft_writer::{
    plan_ruleset, ApplyStats, Cidr, Dirty, IncrementalPlanner, Kernel, NetlinkKernel,
    PlannerConfig, Syncer, Transaction,
};

const NODES: u32 = 3;
const ZONE: &str = "topology.kubernetes.io/zone";

fn node(i: u32, zone: &str) -> Node {
    let name = format!("node-{i}");
    Node {
        labels: [
            ("kubernetes.io/hostname".to_string(), name.clone()),
            (ZONE.to_string(), zone.to_string()),
        ]
        .into(),
        addresses: vec![(
            "InternalIP".into(),
            IpAddr::V4(Ipv4Addr::new(172, 31, 11, 10 + i as u8)),
        )],
        name,
        ..Node::default()
    }
}

fn service(i: u32) -> Service {
    let mut annotations = BTreeMap::new();
    // Every tenth service routes by zone, so that a node label matters.
    if i.is_multiple_of(10) {
        annotations.insert(TOPOLOGY_KEYS_ANNOTATION.to_string(), format!("{ZONE},*"));
    }
    Service {
        key: ObjectKey::new("bench", format!("svc-{i}")),
        cluster_ips: vec![IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + i))],
        ports: vec![ServicePort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: TargetPort::Number(8080),
            node_port: None,
        }],
        annotations,
        ..Service::default()
    }
}

fn slice(i: u32, endpoints: u32) -> EndpointSlice {
    EndpointSlice {
        key: ObjectKey::new("bench", format!("svc-{i}-a")),
        service_name: format!("svc-{i}"),
        address_type: AddressType::IPv4,
        ports: vec![EndpointPort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
        endpoints: (0..endpoints)
            .map(|j| Endpoint {
                addresses: vec![IpAddr::V4(Ipv4Addr::from(0x0a40_0000 + i * 16 + j))],
                conditions: Conditions::default(),
                node_name: Some(format!("node-{}", (i + j) % NODES)),
                ..Endpoint::default()
            })
            .collect(),
    }
}

fn cluster(n: u32) -> ClusterState {
    let mut st = ClusterState::default();
    for i in 0..NODES {
        let n = node(i, if i == 2 { "b" } else { "a" });
        st.nodes.insert(n.name.clone(), n);
    }
    for i in 0..n {
        let s = service(i);
        st.services.insert(s.key.clone(), s);
        let sl = slice(i, 10);
        st.endpoint_slices.insert(sl.key.clone(), sl);
    }
    st
}

/// The netlink kernel (or, with `--null-kernel`, nothing: the batch is
/// encoded and dropped), timing each commit.
struct Timed {
    inner: Option<NetlinkKernel>,
    last: Duration,
}

impl Kernel for Timed {
    fn apply(&mut self, tx: &Transaction) -> Result<ApplyStats, nft_writer::Error> {
        let t = Instant::now();
        let r = match &mut self.inner {
            Some(k) => k.apply(tx),
            None => Ok(ApplyStats {
                operations: tx.ops.len(),
                messages: nft_writer::encode::encode_ops(&tx.ops).len() + 2,
                bytes: 0,
            }),
        };
        self.last = t.elapsed();
        r
    }
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((v.len() as f64) * p).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1].as_secs_f64() * 1000.0
}

/// What a change touched: the Services named, and whether a Node changed.
type Change = fn(&mut ClusterState, u32, u32) -> (Vec<ObjectKey>, bool);

fn kinds() -> [(&'static str, Change); 4] {
    [
        ("one endpoint added, then removed", |st, i, n| {
            let j = (i * 7919) % n;
            let s = st
                .endpoint_slices
                .get_mut(&ObjectKey::new("bench", format!("svc-{j}-a")))
                .unwrap();
            let eps = if s.endpoints.len() == 10 { 11 } else { 10 };
            *s = slice(j, eps);
            (vec![service(j).key], false)
        }),
        ("one endpoint not ready, then ready", |st, i, n| {
            let j = (i * 104_729) % n;
            let k = ObjectKey::new("bench", format!("svc-{j}-a"));
            let e = &mut st.endpoint_slices.get_mut(&k).unwrap().endpoints[3];
            e.conditions.ready = !e.conditions.ready;
            e.conditions.serving = e.conditions.ready;
            (vec![service(j).key], false)
        }),
        ("one service added, then removed", |st, i, n| {
            let j = n + 1 + (i / 2);
            let s = service(j);
            if st.services.remove(&s.key).is_none() {
                st.services.insert(s.key.clone(), s.clone());
                let sl = slice(j, 10);
                st.endpoint_slices.insert(sl.key.clone(), sl);
            } else {
                st.endpoint_slices
                    .remove(&ObjectKey::new("bench", format!("svc-{j}-a")));
            }
            (vec![s.key], false)
        }),
        (
            "node-1's zone label changed (10% of services route by zone)",
            |st, i, _| {
                let zone = if i.is_multiple_of(2) { "b" } else { "a" };
                st.nodes.insert("node-1".into(), node(1, zone));
                (Vec::new(), true)
            },
        ),
    ]
}

#[derive(Default)]
struct Phases {
    topology: Vec<Duration>,
    ruleset: Vec<Duration>,
    sync: Vec<Duration>,
    commit: Vec<Duration>,
    total: Vec<Duration>,
    max_msgs: usize,
    replanned: usize,
}

/// A line of /proc/self/status, e.g. `VmRSS`.
fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num = |name: &str, default: u32| arg(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let n = num("--services", 10_000);
    let changes = num("--changes", 200);
    let old = args.iter().any(|a| a == "--old");
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare: run as root");
    let cfg = PlannerConfig {
        cluster_cidrs: Cidr::parse("10.64.0.0/10").into_iter().collect(),
        ..PlannerConfig::default()
    };
    let mut st = cluster(n);

    // What every snapshot costs before the sync loop sees it.
    let mut clones = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let c = st.clone();
        clones.push(t.elapsed());
        drop(c);
    }

    let null = args.iter().any(|a| a == "--null-kernel");
    let kernel = Timed {
        inner: (!null).then(|| NetlinkKernel::open().expect("netlink")),
        last: Duration::ZERO,
    };
    let mut syncer = Syncer::new(kernel);
    let t = Instant::now();
    let mut plan = topology_filter::plan(&st, "node-0");
    let mut planner = IncrementalPlanner::new(cfg.clone());
    let full = if old {
        syncer.sync(&plan_ruleset(&plan, &cfg).0, false)
    } else {
        let c = planner.update(&plan, Dirty::All);
        syncer.sync_changes(&planner, c, false)
    }
    .expect("full sync");
    let full_time = t.elapsed();

    let mut all = Vec::new();
    for (name, change) in kinds() {
        let mut ph = Phases::default();
        for i in 0..changes {
            let (named, nodes) = change(&mut st, i, n);
            let t0 = Instant::now();
            let (t1, t2, stats);
            if old {
                let topo = topology_filter::plan(&st, "node-0");
                t1 = Instant::now();
                let rs = plan_ruleset(&topo, &cfg).0;
                t2 = Instant::now();
                stats = syncer.sync(&rs, false).expect("incremental sync");
            } else {
                let mut keys: BTreeSet<ObjectKey> = named.into_iter().collect();
                if nodes {
                    keys.extend(
                        st.services
                            .values()
                            .filter(|s| topology_filter::depends_on_nodes(s))
                            .map(|s| s.key.clone()),
                    );
                }
                topology_filter::replan(&mut plan, &st, &keys);
                t1 = Instant::now();
                let c = planner.update(&plan, Dirty::Services(&keys));
                ph.replanned = ph.replanned.max(c.replanned);
                t2 = Instant::now();
                stats = syncer
                    .sync_changes(&planner, c, false)
                    .expect("incremental sync");
            }
            let t3 = Instant::now();
            assert!(!stats.full, "an incremental sync fell back to a full one");
            ph.topology.push(t1 - t0);
            ph.ruleset.push(t2 - t1);
            ph.sync.push((t3 - t2).saturating_sub(syncer.kernel().last));
            ph.commit.push(syncer.kernel().last);
            ph.total.push(t3 - t0);
            ph.max_msgs = ph.max_msgs.max(stats.messages);
        }
        all.push((name, ph));
    }

    let path = if old {
        "before: plan, plan_ruleset, Syncer::sync (diff + clone)"
    } else {
        "after: replan, IncrementalPlanner::update, Syncer::sync_changes"
    };
    println!("{path}; {n} services x 10 endpoints, {changes} changes of each kind\n");
    println!("| change | netlink messages (max) | services re-planned (max) | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for (name, ph) in &all {
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} |",
            ph.max_msgs,
            if old { n as usize } else { ph.replanned },
            pct(&ph.total, 0.5),
            pct(&ph.total, 0.99)
        );
    }
    println!("\np50 ms (p99 ms) per phase:\n");
    println!("| change | topology | ruleset | sync minus commit | kernel commit |");
    println!("|---|---|---|---|---|");
    for (name, ph) in &all {
        let c = |v: &[Duration]| format!("{:.2} ({:.2})", pct(v, 0.5), pct(v, 0.99));
        println!(
            "| {name} | {} | {} | {} | {} |",
            c(&ph.topology),
            c(&ph.ruleset),
            c(&ph.sync),
            c(&ph.commit)
        );
    }
    println!(
        "\nFirst (full) sync: {:.2} s, {} netlink messages. ClusterState::clone \
         (per snapshot, in Tracker::take_snapshot): p50 {:.1} ms, max {:.1} ms. \
         Memory at the end: {}, peak {} (this process: the state, and the plan \
         and planner or the last ruleset).",
        full_time.as_secs_f64(),
        full.messages,
        pct(&clones, 0.5),
        pct(&clones, 1.0),
        status("VmRSS"),
        status("VmHWM")
    );
}
