//! The incremental path against the full one: random sequences of cluster
//! changes (endpoints added, removed, readiness flipped; Services added,
//! removed, ports and policies changed; Node labels and this node's
//! address changed; topology annotations changed; duplicate and IPv6
//! addresses) applied through `topology_filter::replan`,
//! `IncrementalPlanner::update` and `Syncer::sync_changes` end, after
//! every step, in exactly what a full replace of
//! `plan_ruleset(plan(state))` gives: on the fake kernel after every step
//! (once as it is, with the deferred deletions still to come as empty
//! leftovers, and once after they landed), and on the real kernel in a
//! network namespace at checkpoints.
//!
//! `NFTOPO_EQUIVALENCE_STEPS` and `NFTOPO_EQUIVALENCE_SEEDS` make the run
//! longer.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use api_watch::{
    AddressType, ClusterState, Conditions, Endpoint, EndpointPort, EndpointSlice, Node, ObjectKey,
    Protocol, Service, ServicePort, ServiceType, TargetPort, TrafficPolicy,
    TOPOLOGY_KEYS_ANNOTATION,
};
use common::canonical;
use nft_writer::{
    names, plan_ruleset, Changes, Cidr, Dirty, FakeKernel, IncrementalPlanner, Kernel,
    NetlinkKernel, PlannerConfig, Rule, Ruleset, Syncer, Transaction,
};
use topology_filter::ProxyPlan;

const NODE: &str = "node-0";
const ZONE: &str = "topology.kubernetes.io/zone";
const SLOTS: u32 = 24;

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn node(i: u32, zone: &str, addr_last: u8) -> Node {
    let name = format!("node-{i}");
    Node {
        labels: [
            ("kubernetes.io/hostname".to_string(), name.clone()),
            (ZONE.to_string(), zone.to_string()),
        ]
        .into(),
        addresses: vec![(
            "InternalIP".into(),
            IpAddr::V4(Ipv4Addr::new(172, 31, i as u8, addr_last)),
        )],
        name,
        ..Node::default()
    }
}

fn skey(i: u32) -> ObjectKey {
    ObjectKey::new("eq", format!("svc-{i}"))
}

/// A cluster IP from a small pool, so that Services collide now and then.
fn cluster_ip(r: &mut Rng) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1 + r.below(30) as u8))
}

fn random_port(r: &mut Rng, name: &str) -> ServicePort {
    ServicePort {
        name: name.to_string(),
        protocol: if r.chance(20) {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        port: [80, 443, 53][r.below(3) as usize],
        target_port: TargetPort::Number(8080),
        node_port: r.chance(30).then(|| 30000 + r.below(12) as u16),
    }
}

fn random_service(r: &mut Rng, i: u32) -> Service {
    let mut s = Service {
        key: skey(i),
        cluster_ips: vec![cluster_ip(r)],
        ports: vec![random_port(r, "")],
        ..Service::default()
    };
    if r.chance(20) {
        s.ports[0].name = "a".into();
        s.ports.push(random_port(r, "b"));
    }
    if r.chance(15) {
        s.session_affinity_timeout = Some(10800);
    }
    if r.chance(20) {
        s.annotations.insert(
            TOPOLOGY_KEYS_ANNOTATION.into(),
            [
                "kubernetes.io/hostname,*",
                "topology.kubernetes.io/zone",
                "x,*,y",
            ][r.below(3) as usize]
                .into(),
        );
    }
    retype(&mut s);
    s
}

/// Type follows the fields: a node port makes a NodePort Service,
/// load-balancer IPs a LoadBalancer one.
fn retype(s: &mut Service) {
    s.service_type = if !s.load_balancer_ips.is_empty() {
        ServiceType::LoadBalancer
    } else if s.ports.iter().any(|p| p.node_port.is_some()) {
        ServiceType::NodePort
    } else {
        ServiceType::ClusterIp
    };
}

fn endpoint(r: &mut Rng, v6: bool) -> Endpoint {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            42,
            0,
            0,
            0,
            0,
            0,
            1 + r.below(20) as u16,
        ))
    } else {
        // A small pool: the same endpoint backs several Services.
        IpAddr::V4(Ipv4Addr::new(10, 42, 0, 1 + r.below(60) as u8))
    };
    let e = Endpoint::new(ip, Conditions::default())
        .on_node(format!("node-{}", r.below(3)))
        .in_zone(["a", "b"][r.below(2) as usize]);
    if r.chance(50) {
        e.for_zones(["a"])
    } else {
        e
    }
}

fn slice_for(s: &Service, r: &mut Rng, n: u32, v6: bool) -> EndpointSlice {
    EndpointSlice {
        key: ObjectKey::new(
            "eq",
            format!("{}-{}", s.key.name, if v6 { "v6" } else { "a" }),
        ),
        service_name: s.key.name.to_string(),
        address_type: if v6 {
            AddressType::IPv6
        } else {
            AddressType::IPv4
        },
        ports: s
            .ports
            .iter()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                protocol: p.protocol,
                port: 8080,
            })
            .collect(),
        endpoints: (0..n).map(|_| endpoint(r, v6)).collect(),
    }
}

/// What a step changed, as the API source reports it.
#[derive(Default)]
struct Dirt {
    services: BTreeSet<ObjectKey>,
    nodes: bool,
}

/// The slices of service `k` (by name prefix, as built here).
fn slices_of(st: &ClusterState, k: &ObjectKey) -> Vec<ObjectKey> {
    st.endpoint_slices
        .values()
        .filter(|s| s.service_key() == *k)
        .map(|s| s.key.clone())
        .collect()
}

/// Applies one random change to `st`.
fn change(r: &mut Rng, st: &mut ClusterState, dirt: &mut Dirt) -> &'static str {
    let i = r.below(SLOTS);
    let k = skey(i);
    let present = st.services.contains_key(&k);
    let kind = r.below(100);
    if !present || kind < 8 {
        if present {
            st.services.remove(&k);
            if r.chance(80) {
                for sk in slices_of(st, &k) {
                    st.endpoint_slices.remove(&sk);
                }
            }
            dirt.services.insert(k);
            return "service removed";
        }
        let s = random_service(r, i);
        let n = r.below(5);
        let sl = slice_for(&s, r, n, false);
        st.endpoint_slices.insert(sl.key.clone(), Box::new(sl));
        st.services.insert(k.clone(), Box::new(s));
        dirt.services.insert(k);
        return "service added";
    }
    // Node changes below take it out again unless an earlier change of
    // the step dirtied it.
    let had = !dirt.services.insert(k.clone());
    let slices = slices_of(st, &k);
    let svc = st.services.get_mut(&k).expect("present");
    match kind {
        8..=27 => {
            let Some(sk) = slices.first() else {
                return "nothing";
            };
            let v6 = st.endpoint_slices[sk].address_type == AddressType::IPv6;
            let e = endpoint(r, v6);
            st.endpoint_slices.get_mut(sk).unwrap().endpoints.push(e);
            "endpoint added"
        }
        28..=42 => {
            let Some(sk) = slices.first() else {
                return "nothing";
            };
            let eps = &mut st.endpoint_slices.get_mut(sk).unwrap().endpoints;
            if !eps.is_empty() {
                let j = r.below(eps.len() as u32) as usize;
                eps.remove(j);
            }
            "endpoint removed"
        }
        43..=55 => {
            let Some(sk) = slices.first() else {
                return "nothing";
            };
            let eps = &mut st.endpoint_slices.get_mut(sk).unwrap().endpoints;
            if let Some(e) = eps.first_mut() {
                let c = &mut e.conditions;
                // ready -> serving and terminating -> not serving -> ready
                *c = match (c.ready, c.serving) {
                    (true, _) => Conditions {
                        ready: false,
                        serving: true,
                        terminating: true,
                    },
                    (false, true) => Conditions {
                        ready: false,
                        serving: false,
                        terminating: true,
                    },
                    (false, false) => Conditions::default(),
                };
            }
            "readiness changed"
        }
        56..=65 => {
            match r.below(5) {
                0 => svc.ports[0].port = [80, 443, 53, 8443][r.below(4) as usize],
                1 => {
                    svc.ports[0].node_port = match svc.ports[0].node_port {
                        Some(_) => None,
                        None => Some(30000 + r.below(12) as u16),
                    }
                }
                2 => {
                    svc.ports[0].protocol = match svc.ports[0].protocol {
                        Protocol::Tcp => Protocol::Udp,
                        _ => Protocol::Tcp,
                    }
                }
                3 if svc.ports.len() == 1 => {
                    svc.ports[0].name = "a".into();
                    let p = random_port(r, "b");
                    svc.ports.push(p);
                }
                _ => {
                    svc.ports.truncate(1);
                    svc.ports[0].name.clear();
                }
            }
            retype(svc);
            // Keep the slices' ports in step with the Service's names.
            let ports: Vec<EndpointPort> = svc
                .ports
                .iter()
                .map(|p| EndpointPort {
                    name: p.name.clone(),
                    protocol: p.protocol,
                    port: 8080,
                })
                .collect();
            for sk in &slices {
                st.endpoint_slices.get_mut(sk).unwrap().ports = ports.clone();
            }
            "port changed"
        }
        66..=73 => {
            let a = &mut svc.annotations;
            match r.below(4) {
                0 => {
                    a.remove(TOPOLOGY_KEYS_ANNOTATION);
                }
                1 => {
                    a.insert(TOPOLOGY_KEYS_ANNOTATION.into(), format!("{ZONE},*"));
                }
                2 => {
                    a.insert(
                        TOPOLOGY_KEYS_ANNOTATION.into(),
                        "kubernetes.io/hostname".into(),
                    );
                }
                _ => {
                    let on = a.contains_key(topology_filter::TOPOLOGY_MODE_ANNOTATION);
                    if on {
                        a.remove(topology_filter::TOPOLOGY_MODE_ANNOTATION);
                    } else {
                        a.insert(
                            topology_filter::TOPOLOGY_MODE_ANNOTATION.into(),
                            "Auto".into(),
                        );
                    }
                }
            }
            "topology annotation changed"
        }
        74..=85 => {
            match r.below(7) {
                0 => {
                    svc.session_affinity_timeout = match svc.session_affinity_timeout {
                        Some(_) => None,
                        None => Some(60 + r.below(2) * 100),
                    }
                }
                1 => {
                    svc.external_traffic_policy = match svc.external_traffic_policy {
                        TrafficPolicy::Local => TrafficPolicy::Cluster,
                        TrafficPolicy::Cluster => TrafficPolicy::Local,
                    }
                }
                2 => {
                    svc.internal_traffic_policy = match svc.internal_traffic_policy {
                        TrafficPolicy::Local => TrafficPolicy::Cluster,
                        TrafficPolicy::Cluster => TrafficPolicy::Local,
                    }
                }
                3 => {
                    if svc.load_balancer_ips.is_empty() {
                        svc.load_balancer_ips =
                            vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + r.below(3) as u8))];
                        svc.load_balancer_source_ranges = vec!["10.0.0.0/8".into()];
                    } else {
                        svc.load_balancer_ips.clear();
                        svc.load_balancer_source_ranges.clear();
                    }
                }
                4 => {
                    svc.external_ips = if svc.external_ips.is_empty() {
                        vec![IpAddr::V4(Ipv4Addr::new(
                            198,
                            51,
                            100,
                            1 + r.below(3) as u8,
                        ))]
                    } else {
                        Vec::new()
                    }
                }
                5 => svc.cluster_ips = vec![cluster_ip(r)],
                _ => {
                    // Dual stack (rare): the ip6 table comes and goes.
                    if svc.cluster_ips.len() == 1 && r.chance(30) {
                        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 43, 0, 0, 0, 0, 0, 1 + i as u16));
                        svc.cluster_ips.push(v6);
                        let s = svc.clone();
                        let sl = slice_for(&s, r, 2, true);
                        st.endpoint_slices.insert(sl.key.clone(), Box::new(sl));
                    } else {
                        svc.cluster_ips.truncate(1);
                    }
                }
            }
            if let Some(s) = st.services.get_mut(&k) {
                retype(s);
            }
            "service policy changed"
        }
        86..=95 => {
            if !had {
                dirt.services.remove(&k);
            }
            dirt.nodes = true;
            let n = r.below(3);
            let zone = ["a", "b", "c"][r.below(3) as usize];
            let last = st.nodes[&format!("node-{n}")].addresses[0].1;
            let IpAddr::V4(last) = last else {
                unreachable!()
            };
            st.nodes
                .insert(format!("node-{n}"), node(n, zone, last.octets()[3]));
            "node label changed"
        }
        _ => {
            if !had {
                dirt.services.remove(&k);
            }
            dirt.nodes = true;
            let last = 10 + r.below(2) as u8;
            let zone = st.nodes["node-0"].labels[ZONE].clone();
            st.nodes.insert("node-0".into(), node(0, &zone, last));
            "this node's address changed"
        }
    }
}

fn config() -> PlannerConfig {
    PlannerConfig {
        detect_local: nft_writer::DetectLocal::ClusterCidr(
            Cidr::parse("10.42.0.0/16").into_iter().collect(),
        ),
        ..PlannerConfig::default()
    }
}

fn initial(r: &mut Rng) -> ClusterState {
    let mut st = ClusterState::default();
    for i in 0..3 {
        let n = node(i, if i == 2 { "b" } else { "a" }, 10);
        st.nodes.insert(n.name.clone(), n);
    }
    for i in 0..SLOTS / 2 {
        let s = random_service(r, i);
        let n = r.below(5);
        let sl = slice_for(&s, r, n, false);
        st.endpoint_slices.insert(sl.key.clone(), Box::new(sl));
        st.services.insert(s.key.clone(), Box::new(s));
    }
    st
}

/// The dirty set the daemon derives: the changed Services, and when a
/// Node changed, every Service that depends on Nodes.
fn dirty_set(st: &ClusterState, dirt: Dirt) -> BTreeSet<ObjectKey> {
    let mut keys = dirt.services;
    if dirt.nodes {
        keys.extend(topology_filter::node_dependents(st));
    }
    keys
}

fn full_dump(rs: &Ruleset) -> String {
    let mut k = FakeKernel::new();
    k.apply(&Transaction::replace(rs)).unwrap();
    k.dump()
}

fn is_spread(chain: &str) -> bool {
    chain == names::SPREAD || chain == names::SPREAD_PORT
}

/// The incremental planner keeps the `spread` rule of every endpoint
/// count it has seen, new ones appended: `held` holds the planned rules,
/// maybe in another order, and maybe more, each once.
fn kept_spread(held: &[Rule], planned: &[Rule]) -> bool {
    let distinct = held.iter().collect::<std::collections::HashSet<_>>().len() == held.len();
    distinct && planned.iter().all(|r| held.contains(r))
}

/// `rs` with the `spread` chains of `want` where they keep its rules.
fn pruned_spreads(mut rs: Ruleset, want: &Ruleset) -> Ruleset {
    for t in &mut rs.tables {
        let Some(w) = want.tables.iter().find(|w| w.family == t.family) else {
            continue;
        };
        for (name, c) in t.chains.iter_mut() {
            if let (true, Some(wc)) = (is_spread(name), w.chains.get(name)) {
                if kept_spread(&c.rules, &wc.rules) {
                    c.rules = wc.rules.clone();
                }
            }
        }
    }
    rs
}

/// `kernel` equals `want` but for chains and sets `want` lacks, which
/// must be empty, endpoint elements `want` lacks (deletions deferred
/// to the next sync), and `spread` rules kept for counts no longer used.
fn equal_but_leftovers(kernel: &Ruleset, want: &Ruleset) -> Result<(), String> {
    if kernel.tables.len() != want.tables.len() {
        return Err(format!(
            "{} tables, want {}",
            kernel.tables.len(),
            want.tables.len()
        ));
    }
    for w in &want.tables {
        let k = kernel
            .tables
            .iter()
            .find(|t| t.family == w.family)
            .ok_or("a table is missing")?;
        for (name, c) in &k.chains {
            match w.chains.get(name) {
                Some(wc) if wc == c => {}
                Some(wc) if is_spread(name) && kept_spread(&c.rules, &wc.rules) => {}
                Some(_) => return Err(format!("chain {name} differs")),
                None if c.rules.is_empty() => {}
                None => return Err(format!("leftover chain {name} has rules")),
            }
        }
        for name in w.chains.keys() {
            if !k.chains.contains_key(name) {
                return Err(format!("chain {name} is missing"));
            }
        }
        for (name, m) in &k.maps {
            // Endpoint elements that went away in a batch that rewrote
            // chains are deleted one sync later (engine::Batch).
            let endpoints = name == names::SERVICE_ENDPOINTS || name == names::NODEPORT_ENDPOINTS;
            match w.maps.get(name) {
                Some(wm) if wm == m => {}
                Some(wm)
                    if endpoints
                        && wm.kind == m.kind
                        && wm
                            .elements
                            .iter()
                            .all(|(k, v)| m.elements.get(k) == Some(v)) => {}
                Some(_) => return Err(format!("map {name} differs")),
                None if m.elements.is_empty() => {}
                None => return Err(format!("leftover map {name} has elements")),
            }
        }
        for name in w.maps.keys() {
            if !k.maps.contains_key(name) {
                return Err(format!("map {name} is missing"));
            }
        }
    }
    Ok(())
}

/// The ruleset a full sync converges to, put together from the planner's
/// frame and, map by map, the elements it streams.
fn from_frame(planner: &IncrementalPlanner) -> Ruleset {
    let mut rs = planner.frame();
    for t in &mut rs.tables {
        for m in t.maps.values_mut() {
            if let Some(elements) = planner.elements(t.family, &m.name) {
                assert!(
                    m.elements.is_empty(),
                    "{}: in the frame and streamed",
                    m.name
                );
                assert!(
                    elements.windows(2).all(|w| w[0].0 < w[1].0),
                    "{}: streamed out of order or twice",
                    m.name
                );
                m.elements = elements.into_iter().collect();
            }
        }
    }
    rs
}

/// One random walk; calls `check` after every step with the step number,
/// the syncer, the planner and the expected ruleset; `check` returns
/// whether it made the next sync fail (any other refusal fails the test).
fn walk<K: Kernel>(
    seed: u64,
    steps: u64,
    syncer: &mut Syncer<K>,
    mut check: impl FnMut(u64, &str, &mut Syncer<K>, &IncrementalPlanner, &Ruleset) -> bool,
) {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let cfg = config();
    let mut st = initial(&mut r);
    let mut plan: ProxyPlan = topology_filter::plan(&st, NODE);
    let mut planner = IncrementalPlanner::new(cfg.clone());
    let changes = planner.update(&plan, Dirty::All);
    assert!(changes.full);
    syncer.sync_changes(&planner, changes, false).unwrap();
    let mut may_fail = check(0, "start", syncer, &planner, &plan_ruleset(&plan, &cfg).0);
    for step in 1..=steps {
        let mut dirt = Dirt::default();
        let mut what = Vec::new();
        for _ in 0..1 + r.below(3) {
            what.push(change(&mut r, &mut st, &mut dirt));
        }
        let keys = dirty_set(&st, dirt);
        topology_filter::replan(&mut plan, &st, &keys);
        let fresh = topology_filter::plan(&st, NODE);
        if plan != fresh {
            let differs = plan
                .services
                .iter()
                .zip(&fresh.services)
                .find(|(a, b)| a != b);
            panic!(
                "seed {seed} step {step} ({what:?}): replan differs from plan: {} vs {} ports, \
                 first difference {differs:#?}; problems {:?} vs {:?}",
                plan.services.len(),
                fresh.services.len(),
                plan.problems,
                fresh.problems
            );
        }
        let changes = planner.update(&plan, Dirty::Services(&keys));
        let (want, problems) = plan_ruleset(&fresh, &cfg);
        let assembled = planner.ruleset();
        assert_eq!(
            from_frame(&planner),
            assembled,
            "seed {seed} step {step} ({what:?}): the frame and the streamed elements"
        );
        let assembled = pruned_spreads(assembled, &want);
        if assembled != want {
            let why = equal_but_leftovers(&assembled, &want).err();
            panic!("seed {seed} step {step} ({what:?}): assembled ruleset differs: {why:?}");
        }
        let mut got: Vec<String> = planner.problems().map(|p| p.message.clone()).collect();
        let mut wanted: Vec<String> = problems.into_iter().map(|p| p.message).collect();
        got.sort();
        wanted.sort();
        assert_eq!(got, wanted, "seed {seed} step {step}: problems");
        // Now and then a periodic full sync.
        let full = r.chance(3);
        if let Err(e) = syncer.sync_changes(&planner, changes, full) {
            assert!(may_fail, "seed {seed} step {step} ({what:?}): refused: {e}");
            // A refused transaction (injected by `check`): the next sync
            // is a full one, as in the daemon.
            let st = syncer
                .sync_changes(&planner, Changes::default(), false)
                .unwrap();
            assert!(st.full, "a sync after a failure is full");
        }
        may_fail = check(step, &what.join(", "), syncer, &planner, &want);
    }
}

#[test]
fn random_changes_applied_incrementally_end_where_a_full_replace_does() {
    let steps = env("NFTOPO_EQUIVALENCE_STEPS", 400);
    let seeds = env("NFTOPO_EQUIVALENCE_SEEDS", 6);
    let mut total = 0;
    let mut incremental = 0;
    for seed in 1..=seeds {
        let mut syncer = Syncer::new(FakeKernel::new());
        walk(seed, steps, &mut syncer, |step, what, s, planner, want| {
            total += 1;
            let kernel = &s.kernel().ruleset;
            if let Err(e) = equal_but_leftovers(kernel, want) {
                panic!(
                    "seed {seed} step {step} ({what}): {e}\nlast transaction:\n{}",
                    s.kernel().last.clone().unwrap_or_default()
                );
            }
            if s.kernel()
                .last
                .as_ref()
                .is_some_and(|t| !t.to_string().contains("delete table"))
            {
                incremental += 1;
            }
            // The deferred deletions land with the next sync, changes or
            // not: then the kernel is exactly the full replace.
            let mut probe = s.clone();
            probe.kernel_mut().fail_at = None;
            probe
                .sync_changes(planner, Changes::default(), false)
                .unwrap();
            assert_eq!(
                full_dump(&pruned_spreads(probe.kernel().ruleset.clone(), want)),
                full_dump(want),
                "seed {seed} step {step} ({what}): after the deferred deletions"
            );
            // Now and then the kernel refuses the next transaction.
            // (An injection lasts until a transaction is sent.)
            if (step * 7 + seed) % 41 == 0 {
                s.kernel_mut().fail_at = Some(0);
            }
            s.kernel().fail_at.is_some()
        });
    }
    eprintln!("{total} steps checked, {incremental} of them applied incrementally");
    assert!(incremental * 2 > total, "most steps must be incremental");
}

/// Moves this thread into a network namespace of its own; returns the
/// path of that namespace for `nsenter`.
fn own_netns() -> String {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    format!(
        "/proc/{}/task/{}/ns/net",
        std::process::id(),
        nix::unistd::gettid()
    )
}

fn list(ns: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .args(["nft", "list", "ruleset"])
        .output()
        .expect("nsenter nft");
    assert!(out.status.success(), "{out:?}");
    // The `spread` rules are compared by the fake-kernel walk
    // (`kept_spread`): incremental syncs keep more of them than a fresh
    // replace plans.
    let text = String::from_utf8(out.stdout).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !(l.contains("numgen random mod") && l.contains("-endpoints")))
        .map(|l| format!("{l}\n"))
        .collect();
    canonical(&text)
}

/// The same random walks on the real kernel, in a namespace of this test:
/// at every third step (after the deferred deletions landed) `nft list
/// ruleset` equals the listing of a fresh replace of the full plan's
/// ruleset, made in a second namespace.
#[test]
fn random_changes_on_the_kernel_list_like_a_full_replace() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let steps = env("NFTOPO_EQUIVALENCE_KERNEL_STEPS", 120);
    let (to_fresh, rulesets) = std::sync::mpsc::channel::<Ruleset>();
    let (to_walk, listings) = std::sync::mpsc::channel::<String>();
    let fresh = std::thread::spawn(move || {
        let ns = own_netns();
        let mut k = NetlinkKernel::open().unwrap();
        for rs in rulesets {
            k.apply(&Transaction::replace(&rs)).unwrap();
            to_walk.send(list(&ns)).unwrap();
        }
    });
    let walker = std::thread::spawn(move || {
        let ns = own_netns();
        let mut checked = 0;
        for seed in 1..=2 {
            let mut syncer = Syncer::new(NetlinkKernel::open().unwrap());
            walk(seed, steps, &mut syncer, |step, what, s, planner, want| {
                if step % 3 != 0 {
                    return false;
                }
                s.sync_changes(planner, Changes::default(), false).unwrap();
                to_fresh.send(want.clone()).unwrap();
                let expected = listings.recv().unwrap();
                assert_eq!(
                    list(&ns),
                    expected,
                    "seed {seed} step {step} ({what}): the kernel after incremental syncs"
                );
                checked += 1;
                false
            });
        }
        drop(to_fresh);
        eprintln!("{checked} kernel listings compared");
    });
    walker.join().expect("walk thread");
    fresh.join().expect("fresh-replace thread");
}
