//! `incremental_bench [--services N] [--changes C]`: the daemon's sync path
//! (topology plan, ruleset plan, diff, one netlink batch) for single
//! changes against N services x 10 endpoints, in a network namespace of
//! its own. Prints a Markdown table: per kind of change, the netlink
//! messages sent and the time to plan and to commit (p50/p99).
//! Run by `make bench` (integration/src/bin/bench.rs); needs root.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use api_watch::{
    AddressType, ClusterState, Conditions, Endpoint, EndpointPort, EndpointSlice, Node, ObjectKey,
    Protocol, Service, ServicePort, TargetPort, TOPOLOGY_KEYS_ANNOTATION,
};
use nft_writer::{plan_ruleset, Cidr, NetlinkKernel, PlannerConfig, Ruleset, Syncer};

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

fn plan(st: &ClusterState, cfg: &PlannerConfig) -> Ruleset {
    plan_ruleset(&topology_filter::plan(st, "node-0"), cfg).0
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u32| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = arg("--services", 10_000);
    let changes = arg("--changes", 200);
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare: run as root");
    let cfg = PlannerConfig {
        cluster_cidrs: Cidr::parse("10.64.0.0/10").into_iter().collect(),
        ..PlannerConfig::default()
    };
    let mut st = cluster(n);
    let mut syncer = Syncer::new(NetlinkKernel::open().expect("netlink"));
    let t = Instant::now();
    let full = syncer.sync(&plan(&st, &cfg), false).expect("full sync");
    let full_time = t.elapsed();

    println!("| change | syncs | netlink messages (max) | plan p50 ms | plan p99 ms | diff+commit p50 ms | diff+commit p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    type Change = fn(&mut ClusterState, u32, u32);
    let kinds: [(&str, Change); 4] = [
        ("one endpoint added, then removed", |st, i, n| {
            let k = ObjectKey::new("bench", format!("svc-{}-a", (i * 7919) % n));
            let s = st.endpoint_slices.get_mut(&k).unwrap();
            let eps = if s.endpoints.len() == 10 { 11 } else { 10 };
            *s = slice((i * 7919) % n, eps);
        }),
        ("one endpoint not ready, then ready", |st, i, n| {
            let k = ObjectKey::new("bench", format!("svc-{}-a", (i * 104_729) % n));
            let e = &mut st.endpoint_slices.get_mut(&k).unwrap().endpoints[3];
            e.conditions.ready = !e.conditions.ready;
            e.conditions.serving = e.conditions.ready;
        }),
        ("one service added, then removed", |st, i, n| {
            let j = n + 1 + (i / 2);
            let s = service(j);
            if st.services.remove(&s.key).is_none() {
                st.services.insert(s.key.clone(), s);
                let sl = slice(j, 10);
                st.endpoint_slices.insert(sl.key.clone(), sl);
            } else {
                st.endpoint_slices
                    .remove(&ObjectKey::new("bench", format!("svc-{j}-a")));
            }
        }),
        (
            "node-1's zone label changed (10% of services route by zone)",
            |st, i, _| {
                let zone = if i.is_multiple_of(2) { "b" } else { "a" };
                st.nodes.insert("node-1".into(), node(1, zone));
            },
        ),
    ];
    for (name, change) in kinds {
        let (mut plan_t, mut sync_t, mut max_msgs) = (Vec::new(), Vec::new(), 0);
        for i in 0..changes {
            change(&mut st, i, n);
            let t = Instant::now();
            let rs = plan(&st, &cfg);
            plan_t.push(t.elapsed());
            let t = Instant::now();
            let stats = syncer.sync(&rs, false).expect("incremental sync");
            sync_t.push(t.elapsed());
            assert!(!stats.full, "an incremental sync fell back to a full one");
            max_msgs = max_msgs.max(stats.messages);
        }
        println!(
            "| {name} | {changes} | {max_msgs} | {:.1} | {:.1} | {:.1} | {:.1} |",
            pct(&mut plan_t, 0.5),
            pct(&mut plan_t, 0.99),
            pct(&mut sync_t, 0.5),
            pct(&mut sync_t, 0.99)
        );
    }
    println!(
        "\nFirst (full) sync of {n} services x 10 endpoints from the same code path: {:.2} s, {} netlink messages.",
        full_time.as_secs_f64(),
        full.messages
    );
}
