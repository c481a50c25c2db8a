//! `incremental_bench [--services N] [--changes C] [--samples FILE] [--routine]`: the
//! daemon's sync path for single changes against N services x 10
//! endpoints, in a network namespace of its own: the changed Services
//! re-planned (`topology_filter::replan`; on a Node change, the Services
//! whose topology depends on Nodes), their ruleset parts re-planned
//! (`IncrementalPlanner::update`), their operations sent in one netlink
//! batch (`Syncer::sync_changes`), as `nftopo run` does. Prints two
//! Markdown tables: per kind of change (C changes of each kind), the
//! netlink messages sent and the whole time per change (p50/p99); then
//! that time split by phase: topology re-plan, ruleset re-plan,
//! `Syncer::sync_changes` minus the commit, the kernel's commit (a timing
//! wrapper around the netlink kernel), and, on every tenth change, what a
//! convergence costs without the read-back (`converge` of two whole
//! rulesets, as the periodic full sync does, and a `Ruleset::clone`),
//! timed on their own.
//! `--samples` writes every change's whole time as CSV (`kind,ms`), and
//! its commit time and messages (`kind,ms,commit_ms,messages`).
//! `--routine` leaves out the Node change (it re-plans a tenth of the
//! Services: slow at 100k, and no routine change).
//! Last, the memory each stage holds (VmRSS growth while it is built).
//! Run by `make bench` (integration/src/bin/bench); needs root.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use api_watch::{
    AddressType, ClusterState, Conditions, Endpoint, EndpointPort, EndpointSlice, Node, ObjectKey,
    Protocol, Service, ServicePort, TargetPort, TOPOLOGY_KEYS_ANNOTATION,
};
use nft_writer::{
    converge, ApplyStats, Cidr, Dirty, IncrementalPlanner, Kernel, NetlinkKernel, PlannerConfig,
    Syncer, Transaction,
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
            .map(|j| {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a40_0000 + i * 16 + j));
                Endpoint::new(ip, Conditions::default())
                    .on_node(format!("node-{}", (i + j) % NODES))
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
        st.services.insert(s.key.clone(), Box::new(s));
        let sl = slice(i, 10);
        st.endpoint_slices.insert(sl.key.clone(), Box::new(sl));
    }
    st
}

/// The netlink kernel, timing each commit.
struct Timed {
    inner: NetlinkKernel,
    last: Duration,
}

impl Kernel for Timed {
    fn apply(&mut self, tx: &Transaction) -> Result<ApplyStats, nft_writer::Error> {
        let t = Instant::now();
        let r = self.inner.apply(tx);
        self.last = t.elapsed();
        r
    }
    fn read_back(&mut self) -> Result<nft_writer::Ruleset, nft_writer::Error> {
        self.inner.read_back()
    }
}

/// This process's VmRSS, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((v.len() as f64) * p).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1].as_secs_f64() * 1000.0
}

/// Per-phase times of one kind of change.
#[derive(Default)]
struct Phases {
    topology: Vec<Duration>,
    ruleset: Vec<Duration>,
    sync: Vec<Duration>,
    diff_clone: Vec<Duration>,
    commit: Vec<Duration>,
    total: Vec<Duration>,
    diff_alone: Vec<Duration>,
    clone_alone: Vec<Duration>,
    max_msgs: usize,
    msgs: Vec<usize>,
}

/// A change; returns the Services it named and whether a Node changed
/// (what the daemon's snapshots say).
type Change = fn(&mut ClusterState, u32, u32) -> (Vec<ObjectKey>, bool);

fn kinds() -> [(&'static str, Change); 4] {
    [
        ("one endpoint added, then removed", |st, i, n| {
            let k = ObjectKey::new("bench", format!("svc-{}-a", (i * 7919) % n));
            let s = st.endpoint_slices.get_mut(&k).unwrap();
            let eps = if s.endpoints.len() == 10 { 11 } else { 10 };
            **s = slice((i * 7919) % n, eps);
            (vec![service((i * 7919) % n).key], false)
        }),
        ("one endpoint not ready, then ready", |st, i, n| {
            let k = ObjectKey::new("bench", format!("svc-{}-a", (i * 104_729) % n));
            let e = &mut st.endpoint_slices.get_mut(&k).unwrap().endpoints[3];
            e.conditions.ready = !e.conditions.ready;
            e.conditions.serving = e.conditions.ready;
            (vec![service((i * 104_729) % n).key], false)
        }),
        ("one service added, then removed", |st, i, n| {
            let j = n + 1 + (i / 2);
            let s = service(j);
            if st.services.remove(&s.key).is_none() {
                st.services.insert(s.key.clone(), Box::new(s.clone()));
                let sl = slice(j, 10);
                st.endpoint_slices.insert(sl.key.clone(), Box::new(sl));
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
    let routine = args.iter().any(|a| a == "--routine");
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare: run as root");
    let cfg = PlannerConfig {
        detect_local: nft_writer::DetectLocal::ClusterCidr(
            Cidr::parse("10.64.0.0/10").into_iter().collect(),
        ),
        ..PlannerConfig::default()
    };
    // Memory by stage: VmRSS growth while each structure is built (all
    // of them stay alive, so the growth is what each one holds).
    let rss0 = rss_kib();
    let mut st = cluster(n);
    let rss_model = rss_kib();
    let mut topo = topology_filter::plan(&st, "node-0");
    let rss_topo = rss_kib();
    let mut planner = IncrementalPlanner::new(cfg.clone());
    let first = planner.update(&topo, Dirty::All);
    let rss_ruleset = rss_kib();
    let mut prev = planner.ruleset();
    let kernel = Timed {
        inner: NetlinkKernel::open().expect("netlink"),
        last: Duration::ZERO,
    };
    let mut syncer = Syncer::new(kernel);
    let t = Instant::now();
    let full = syncer
        .sync_changes(&planner, first, false)
        .expect("full sync");
    let full_time = t.elapsed();
    let rss_synced = rss_kib();
    let memory = format!(
        "| stage (at {n} services x 10 endpoints) | VmRSS growth MiB |\n|---|---|\n\
         | cluster model (api-watch `ClusterState`) | {:.1} |\n\
         | topology plan (`topology_filter::plan`, kept for re-plans) | {:.1} |\n\
         | ruleset as per-Service parts (`IncrementalPlanner`) | {:.1} |\n\
         | first full sync (the ruleset assembled for it, the batch; \
         `Syncer` keeps no copy) | {:.1} |\n\
         | process before the cluster (binary, libc) | {:.1} (VmRSS) |\n",
        mib(rss_model - rss0),
        mib(rss_topo - rss_model),
        mib(rss_ruleset - rss_topo),
        mib(rss_synced.saturating_sub(rss_ruleset)),
        mib(rss0)
    );

    let mut all = Vec::new();
    for (name, change) in kinds().into_iter().take(if routine { 3 } else { 4 }) {
        let mut ph = Phases::default();
        for i in 0..changes {
            let (named, nodes) = change(&mut st, i, n);
            let t0 = Instant::now();
            let mut keys: BTreeSet<ObjectKey> = named.into_iter().collect();
            if nodes {
                keys.extend(topology_filter::node_dependents(&st));
            }
            topology_filter::replan(&mut topo, &st, &keys);
            let t1 = Instant::now();
            let changes = planner.update(&topo, Dirty::Services(&keys));
            let t2 = Instant::now();
            let stats = syncer
                .sync_changes(&planner, changes, false)
                .expect("incremental sync");
            let t3 = Instant::now();
            assert!(!stats.full, "an incremental sync fell back to a full one");
            let commit = syncer.kernel().last;
            ph.topology.push(t1 - t0);
            ph.ruleset.push(t2 - t1);
            ph.sync.push(t3 - t2);
            ph.commit.push(commit);
            ph.diff_clone.push((t3 - t2).saturating_sub(commit));
            ph.total.push(t3 - t0);
            ph.max_msgs = ph.max_msgs.max(stats.messages);
            ph.msgs.push(stats.messages);
            if i % 10 == 0 {
                // What the path before spent on top, for reference.
                let rs = planner.ruleset();
                let t = Instant::now();
                let d = converge(&prev, &rs);
                ph.diff_alone.push(t.elapsed());
                drop(d);
                let t = Instant::now();
                let c = rs.clone();
                ph.clone_alone.push(t.elapsed());
                drop(c);
                prev = rs;
            }
        }
        all.push((name, ph));
    }

    println!("| change | syncs | netlink messages (max) | p50 ms | p99 ms | p99 / goal (5 ms) |");
    println!("|---|---|---|---|---|---|");
    for (name, ph) in &all {
        println!(
            "| {name} | {changes} | {} | {:.1} | {:.1} | {:.0}x |",
            ph.max_msgs,
            pct(&ph.total, 0.5),
            pct(&ph.total, 0.99),
            pct(&ph.total, 0.99) / 5.0
        );
    }
    println!(
        "\nWhere the time goes, p50 ms (p99 ms) per phase: the changed Services' \
         topology re-plan and ruleset re-plan, `Syncer::sync_changes` minus the commit, \
         the commit; the last two columns time, on every tenth change, what a full \
         sync adds besides its read-back (`converge` of the whole rulesets, one against \
         ten changes back, and a `Ruleset::clone`).\n"
    );
    println!("| change | topology re-plan | ruleset re-plan | sync minus commit | kernel commit | whole converge | whole clone |");
    println!("|---|---|---|---|---|---|---|");
    for (name, ph) in &all {
        let c = |v: &[Duration]| format!("{:.1} ({:.1})", pct(v, 0.5), pct(v, 0.99));
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            c(&ph.topology),
            c(&ph.ruleset),
            c(&ph.diff_clone),
            c(&ph.commit),
            c(&ph.diff_alone),
            c(&ph.clone_alone)
        );
    }
    println!(
        "\nFirst (full) sync of {n} services x 10 endpoints from the same code path: {:.2} s, {} netlink messages.",
        full_time.as_secs_f64(),
        full.messages
    );
    println!("\nMemory the sync path holds, by stage:\n\n{memory}");
    if let Some(path) = arg("--samples") {
        let mut csv = String::from("kind,ms,commit_ms,messages\n");
        for (name, ph) in &all {
            for ((d, c), m) in ph.total.iter().zip(&ph.commit).zip(&ph.msgs) {
                csv.push_str(&format!(
                    "{name},{:.3},{:.3},{m}\n",
                    d.as_secs_f64() * 1000.0,
                    c.as_secs_f64() * 1000.0
                ));
            }
        }
        std::fs::write(&path, csv).expect("--samples file");
    }
}
