//! The step without root: a step over what changed leaves the proxier
//! with the same outputs as a fresh proxier planning everything, and
//! reports only what changed. Steps after the first find slices through
//! a [`SliceIndex`], as the daemon's do.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use api_watch::*;
use nft_writer::conntrack::{Scope, UdpEntry};
use nft_writer::PlannerConfig;

use super::{Changed, Proxier, Step};
use api_watch::SliceIndex;

const NODE: &str = "node-1";

/// `s{i}`: UDP when `i` is odd, TCP otherwise; every third one a
/// LoadBalancer with `externalTrafficPolicy: Local` and health-check port
/// `31000 + i`; every fifth one `internalTrafficPolicy: Local`. Its slice
/// holds `endpoints(i)` endpoints, endpoint `j` on this node when
/// `i + j` is even.
fn cluster(services: u32, endpoints: impl Fn(u32) -> u32) -> ClusterState {
    let mut st = ClusterState::default();
    st.nodes.insert(
        NODE.into(),
        Node {
            name: NODE.into(),
            addresses: vec![(
                "InternalIP".into(),
                IpAddr::V4(Ipv4Addr::new(172, 31, 0, 1)),
            )],
            ..Node::default()
        },
    );
    for i in 0..services {
        let protocol = if i % 2 == 1 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let local_lb = i % 3 == 0;
        let s = Service {
            key: ObjectKey::new("t", format!("s{i:03}")),
            service_type: if local_lb {
                ServiceType::LoadBalancer
            } else {
                ServiceType::ClusterIp
            },
            cluster_ips: vec![IpAddr::V4(Ipv4Addr::from(0x0a2b_0000 + i))],
            ports: vec![ServicePort {
                name: String::new(),
                protocol,
                port: 80,
                target_port: TargetPort::Number(8080),
                node_port: local_lb.then_some(30000 + i as u16),
            }],
            external_traffic_policy: if local_lb {
                TrafficPolicy::Local
            } else {
                TrafficPolicy::Cluster
            },
            internal_traffic_policy: if i % 5 == 0 {
                TrafficPolicy::Local
            } else {
                TrafficPolicy::Cluster
            },
            health_check_node_port: local_lb.then_some(31000 + i as u16),
            ..Service::default()
        };
        let sl = EndpointSlice {
            key: ObjectKey::new("t", format!("s{i:03}-a")),
            service_name: format!("s{i:03}"),
            address_type: AddressType::IPv4,
            ports: vec![EndpointPort {
                name: String::new(),
                protocol,
                port: 8080,
            }],
            endpoints: (0..endpoints(i))
                .map(|j| {
                    let ip = IpAddr::V4(Ipv4Addr::from(0x0a2a_0000 + i * 16 + j));
                    let node = if (i + j) % 2 == 0 { NODE } else { "node-2" };
                    Endpoint::new(ip, Conditions::default()).on_node(node)
                })
                .collect(),
        };
        st.services.insert(s.key.clone(), Box::new(s));
        st.endpoint_slices.insert(sl.key.clone(), Box::new(sl));
    }
    st
}

fn key(i: u32) -> ObjectKey {
    ObjectKey::new("t", format!("s{i:03}"))
}

fn changed(keys: &[u32]) -> Changed {
    Changed::Some {
        services: keys.iter().map(|i| key(*i)).collect(),
        nodes: false,
        blocks: false,
    }
}

/// What a step's outputs say, comparable.
fn outputs(step: &Step) -> String {
    format!(
        "health {:?} on {:?}; no local {:?}",
        step.health.0, step.health.1, step.no_local_endpoints
    )
}

/// The outputs of a fresh proxier planning all of `state`.
fn fresh(state: &ClusterState) -> (String, String) {
    let mut p = Proxier::new(NODE, PlannerConfig::default());
    let step = p.step(state, None, &Changed::All);
    (outputs(&step), format!("{:?}", p.udp_desired()))
}

#[test]
fn steps_over_what_changed_end_where_a_fresh_plan_is() {
    let mut state = cluster(30, |i| i % 4);
    let mut p = Proxier::new(NODE, PlannerConfig::default());
    let first = p.step(&state, None, &Changed::All);
    assert_eq!(outputs(&first), fresh(&state).0);
    // The fixture has teeth: health ports, no-local counts, UDP ports.
    assert_eq!(first.health.0.len(), 10, "{}", outputs(&first));
    assert_eq!(first.health.0[&31003].local_endpoints, 1);
    assert!(first.no_local_endpoints.0 > 0 && first.no_local_endpoints.1 > 0);
    assert_eq!(p.udp_desired().len(), 15);

    // One endpoint fewer for s003 (LB, Local, UDP), s006 gone, s007's
    // slice emptied, a new s030 (LB Local, TCP).
    let s3 = ObjectKey::new("t", "s003-a");
    state
        .endpoint_slices
        .get_mut(&s3)
        .unwrap()
        .endpoints
        .truncate(1);
    state.services.remove(&key(6));
    state.endpoint_slices.remove(&ObjectKey::new("t", "s006-a"));
    state
        .endpoint_slices
        .get_mut(&ObjectKey::new("t", "s007-a"))
        .unwrap()
        .endpoints
        .clear();
    let more = cluster(31, |_| 2);
    state
        .services
        .insert(key(30), more.services[&key(30)].clone());
    let s30 = ObjectKey::new("t", "s030-a");
    state
        .endpoint_slices
        .insert(s30.clone(), more.endpoint_slices[&s30].clone());
    let step = p.step(
        &state,
        Some(&SliceIndex::build(&state)),
        &changed(&[3, 6, 7, 30]),
    );
    let (want, want_udp) = fresh(&state);
    assert_eq!(outputs(&step), want);
    assert_eq!(format!("{:?}", p.udp_desired()), {
        // The deleted s007 port is not deleted (its slice emptied); s006
        // was TCP: nothing of it in UDP.
        want_udp
    });
    assert_eq!(step.health.0[&31003].local_endpoints, 0);
    assert!(!step.health.0.contains_key(&31006));
    assert!(step.health.0.contains_key(&31030));
    assert!(!step.routes_due, "no Node changed");
}

#[test]
fn the_udp_clean_up_is_due_only_where_a_serving_endpoint_went_away() {
    let mut state = cluster(10, |_| 2);
    let mut p = Proxier::new(NODE, PlannerConfig::default());
    p.step(&state, None, &Changed::All);
    assert_eq!(p.udp_scope(), Scope::Everything, "the first clean-up");
    p.udp_cleaned();

    // s001 (UDP) gains an endpoint, s002 (TCP) loses one: nothing to
    // clean.
    let more = cluster(10, |_| 3);
    let s1 = ObjectKey::new("t", "s001-a");
    state
        .endpoint_slices
        .insert(s1.clone(), more.endpoint_slices[&s1].clone());
    let s2 = ObjectKey::new("t", "s002-a");
    state.endpoint_slices.get_mut(&s2).unwrap().endpoints.pop();
    p.step(&state, Some(&SliceIndex::build(&state)), &changed(&[1, 2]));
    assert_eq!(p.udp_scope(), Scope::Nothing);
    p.udp_cleaned();

    // s005 (UDP) loses one: its cluster IP is looked at, nothing else.
    let s5 = ObjectKey::new("t", "s005-a");
    state.endpoint_slices.get_mut(&s5).unwrap().endpoints.pop();
    p.step(&state, Some(&SliceIndex::build(&state)), &changed(&[5]));
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a2b_0000 + 5));
    assert_eq!(
        p.udp_scope(),
        Scope::Entries(BTreeSet::from([UdpEntry::Addr((ip, 80).into())]))
    );
}

#[test]
fn a_problem_is_reported_when_it_appears_not_at_every_step() {
    let mut state = cluster(4, |_| 1);
    state.services.get_mut(&key(2)).unwrap().topology_keys =
        Some(vec!["*".into(), "kubernetes.io/hostname".into()]);
    let mut p = Proxier::new(NODE, PlannerConfig::default());
    let first = p.step(&state, None, &Changed::All);
    let kinds: Vec<&str> = first.problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, ["invalid_topology_keys"], "{:?}", first.problems);
    assert_eq!(first.problems[0].object, key(2));

    // s002 re-planned, still with the same bad keys: not again.
    let again = p.step(&state, Some(&SliceIndex::build(&state)), &changed(&[2]));
    assert!(again.problems.is_empty(), "{:?}", again.problems);

    // Fixed, then broken again: reported again.
    state.services.get_mut(&key(2)).unwrap().topology_keys = None;
    assert!(p
        .step(&state, Some(&SliceIndex::build(&state)), &changed(&[2]))
        .problems
        .is_empty());
    state.services.get_mut(&key(2)).unwrap().topology_keys =
        Some(vec!["*".into(), "kubernetes.io/hostname".into()]);
    assert_eq!(
        p.step(&state, Some(&SliceIndex::build(&state)), &changed(&[2]))
            .problems
            .len(),
        1
    );
}

#[test]
fn routes_are_due_when_nodes_or_blocks_change_and_after_a_failed_pass() {
    let state = cluster(2, |_| 1);
    let mut p = Proxier::new(NODE, PlannerConfig::default());
    assert!(
        p.step(&state, None, &Changed::All).routes_due,
        "the first step"
    );
    p.routes_done(true);
    assert!(
        !p.step(&state, Some(&SliceIndex::build(&state)), &changed(&[0]))
            .routes_due
    );
    let blocks = Changed::Some {
        services: BTreeSet::new(),
        nodes: false,
        blocks: true,
    };
    assert!(
        p.step(&state, Some(&SliceIndex::build(&state)), &blocks)
            .routes_due
    );
    p.routes_done(false);
    assert!(
        p.step(&state, Some(&SliceIndex::build(&state)), &changed(&[]))
            .routes_due,
        "after a failure"
    );
    p.routes_done(true);
    assert!(
        !p.step(&state, Some(&SliceIndex::build(&state)), &changed(&[]))
            .routes_due
    );
    let nodes = Changed::Some {
        services: BTreeSet::new(),
        nodes: true,
        blocks: false,
    };
    assert!(
        p.step(&state, Some(&SliceIndex::build(&state)), &nodes)
            .routes_due
    );
}

#[test]
fn only_external_local_services_with_a_port_are_wanted() {
    use topology_filter::{EndpointTarget, ServicePortPlan};
    let ep = |ip: &str, terminating| EndpointTarget {
        ip: ip.parse().unwrap(),
        port: 80,
        node_name: Some("n".into()),
        terminating,
    };
    let port = |name: &str, local: bool, eps: Vec<EndpointTarget>| ServicePortPlan {
        service: ObjectKey::new("ns", name),
        port_name: String::new(),
        protocol: api_watch::Protocol::Tcp,
        cluster_ips: vec![],
        port: 80,
        node_port: Some(30080),
        external_ips: vec![],
        load_balancer_ips: vec![],
        load_balancer_source_ranges: vec![],
        external_policy_local: local,
        internal_policy_local: false,
        session_affinity_timeout: None,
        uses_cluster_endpoints: true,
        uses_local_endpoints: local,
        cluster_endpoints: eps.clone(),
        local_endpoints: eps,
        has_any_endpoints: true,
        has_any_ipv4_endpoints: true,
        has_any_ipv6_endpoints: false,
        serving_if_other: None,
        rule: topology_filter::Rule::None,
        traffic_distribution: None,
        decisions: vec![],
    };
    // A Service's health port is wanted only when one of its ports is
    // proxied with an external Local policy; the count is its local
    // endpoints that are not terminating.
    let service = |name: &str, health: u16| Service {
        key: ObjectKey::new("ns", name),
        health_check_node_port: Some(health),
        ..Service::default()
    };
    let local = [port(
        "local",
        true,
        vec![ep("10.0.0.1", false), ep("10.0.0.2", true)],
    )];
    let facts = super::facts_of(&local, Some(&service("local", 30001)));
    assert_eq!(facts.health, Some((30001, 1)));
    let cluster = [port("cluster", false, vec![ep("10.0.0.3", false)])];
    let facts = super::facts_of(&cluster, Some(&service("cluster", 30002)));
    assert_eq!(facts.health, None, "eTP Cluster: no health server");
    let no_port = [port("no-port", true, vec![])];
    assert_eq!(super::facts_of(&no_port, None).health, None);
}
