//! Planner and reconcile cases, table-driven; routes compared as `ip route` text.

use std::collections::BTreeMap;

use api_watch::Node;
use route_sync::*;

fn node(name: &str, ip: &str, cidrs: &[&str], ann: &[(&str, &str)]) -> Node {
    Node {
        name: name.into(),
        labels: BTreeMap::new(),
        annotations: ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        addresses: ip
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| ("InternalIP".to_string(), s.parse().unwrap()))
            .collect(),
        pod_cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
        deleting: false,
    }
}

fn cluster() -> Vec<Node> {
    vec![
        node(
            "node-2",
            "172.31.11.157",
            &["10.42.54.128/26"],
            &[(IPV4_ADDRESS_ANNOTATION, "172.31.11.157/20")],
        ),
        node(
            "node-3",
            "172.31.4.10",
            &["10.42.187.64/26"],
            &[(IPV4_ADDRESS_ANNOTATION, "172.31.4.10/20")],
        ),
        node(
            "node-4",
            "172.31.40.20",
            &["10.42.201.0/26"],
            &[(IPV4_ADDRESS_ANNOTATION, "172.31.40.20/20")],
        ),
    ]
}

fn text(d: &DesiredRoutes) -> Vec<String> {
    d.routes.iter().map(|r| r.to_string()).collect()
}

fn cfg(mode: Mode) -> RouteConfig {
    RouteConfig {
        mode,
        ..RouteConfig::default()
    }
}

#[test]
fn planner_cases() {
    struct Case {
        name: &'static str,
        nodes: Vec<Node>,
        blocks: Vec<BlockAffinity>,
        cfg: RouteConfig,
        want: &'static [&'static str],
        problems: &'static [&'static str],
    }
    let block = |cidr: &str, node: &str, state: &str| BlockAffinity {
        name: format!("{node}-{}", cidr.replace(['.', '/'], "-")),
        cidr: cidr.into(),
        node: node.into(),
        state: state.into(),
        deleted: false,
    };
    let cases = vec![
        Case {
            name: "ipip mode (Calico ipipMode Always) routes every remote CIDR via the node over tunl0 onlink, and blackholes our own",
            nodes: cluster(),
            blocks: vec![],
            cfg: cfg(Mode::Ipip),
            want: &[
                "blackhole 10.42.54.128/26 proto 12",
                "10.42.187.64/26 via 172.31.4.10 dev tunl0 proto 12 onlink",
                "10.42.201.0/26 via 172.31.40.20 dev tunl0 proto 12 onlink",
            ],
            problems: &[],
        },
        Case {
            name: "direct mode (ipipMode Never) routes via the node and lets the kernel pick the device",
            nodes: cluster(),
            blocks: vec![],
            cfg: cfg(Mode::Direct),
            want: &[
                "blackhole 10.42.54.128/26 proto 12",
                "10.42.187.64/26 via 172.31.4.10 proto 12",
                "10.42.201.0/26 via 172.31.40.20 proto 12",
            ],
            problems: &[],
        },
        Case {
            name: "cross-subnet goes direct inside this node's /20 from its Calico annotation and over IPIP beyond it",
            nodes: cluster(),
            blocks: vec![],
            cfg: cfg(Mode::CrossSubnet),
            want: &[
                "blackhole 10.42.54.128/26 proto 12",
                "10.42.187.64/26 via 172.31.4.10 proto 12",
                "10.42.201.0/26 via 172.31.40.20 dev tunl0 proto 12 onlink",
            ],
            problems: &[],
        },
        Case {
            name: "cross-subnet without any known subnet sends every peer over IPIP and says so",
            nodes: vec![node("node-2", "172.31.11.157", &["10.42.54.128/26"], &[]), node("node-3", "172.31.4.10", &["10.42.187.64/26"], &[])],
            blocks: vec![],
            cfg: cfg(Mode::CrossSubnet),
            want: &["blackhole 10.42.54.128/26 proto 12", "10.42.187.64/26 via 172.31.4.10 dev tunl0 proto 12 onlink"],
            problems: &["node node-2: cross-subnet mode but no subnet known for this node: all peers over IPIP"],
        },
        Case {
            name: "cross-subnet takes local subnets from the configuration",
            nodes: vec![node("node-2", "172.31.11.157", &["10.42.54.128/26"], &[]), node("node-3", "172.31.4.10", &["10.42.187.64/26"], &[])],
            blocks: vec![],
            cfg: RouteConfig { mode: Mode::CrossSubnet, local_subnets: vec!["172.31.0.0/16".parse().unwrap()], ..RouteConfig::default() },
            want: &["blackhole 10.42.54.128/26 proto 12", "10.42.187.64/26 via 172.31.4.10 proto 12"],
            problems: &[],
        },
        Case {
            name: "the Calico IPv4Address annotation is the next hop when chosen",
            nodes: vec![node("node-2", "172.31.11.157", &[], &[]), node("node-3", "192.168.0.3", &["10.42.187.64/26"], &[(IPV4_ADDRESS_ANNOTATION, "172.31.4.10/20")])],
            blocks: vec![],
            cfg: RouteConfig { next_hop: NextHopSource::CalicoAnnotation, ..RouteConfig::default() },
            want: &["10.42.187.64/26 via 172.31.4.10 dev tunl0 proto 12 onlink"],
            problems: &[],
        },
        Case {
            name: "a missing or broken Calico address annotation is reported for that node only",
            nodes: vec![
                node("node-2", "172.31.11.157", &[], &[]),
                node("node-3", "172.31.4.10", &["10.42.187.64/26"], &[]),
                node("node-4", "172.31.40.20", &["10.42.201.0/26"], &[(IPV4_ADDRESS_ANNOTATION, "172.31.40.20")]),
                node("node-5", "172.31.40.21", &["10.42.202.0/26"], &[(IPV4_ADDRESS_ANNOTATION, "172.31.40.21/20")]),
            ],
            blocks: vec![],
            cfg: RouteConfig { next_hop: NextHopSource::CalicoAnnotation, mode: Mode::Direct, ..RouteConfig::default() },
            want: &["10.42.202.0/26 via 172.31.40.21 proto 12"],
            problems: &[
                "node node-3: no address of 10.42.187.64/26's family to route it via",
                "node node-4: annotation projectcalico.org/IPv4Address=\"172.31.40.20\" does not parse",
            ],
        },
        Case {
            name: "Calico IPAM routes only confirmed blocks not being deleted, several per node, and reports blocks of unknown nodes",
            nodes: cluster(),
            blocks: vec![
                block("10.42.54.128/26", "node-2", "confirmed"),
                block("10.42.187.64/26", "node-3", "confirmed"),
                block("10.42.187.128/26", "node-3", "confirmed"),
                block("10.42.201.0/26", "node-4", "pending"),
                block("10.42.9.0/26", "node-9", "confirmed"),
                BlockAffinity { deleted: true, ..block("10.42.187.192/26", "node-3", "confirmed") },
            ],
            cfg: RouteConfig { pod_cidr_source: PodCidrSource::CalicoIpam, mode: Mode::Direct, ..RouteConfig::default() },
            want: &[
                "blackhole 10.42.54.128/26 proto 12",
                "10.42.187.64/26 via 172.31.4.10 proto 12",
                "10.42.187.128/26 via 172.31.4.10 proto 12",
            ],
            problems: &["node node-9: block 10.42.9.0/26 belongs to no known node"],
        },
        Case {
            name: "an unparsable CIDR and a node without address are reported while the others are routed",
            nodes: vec![
                node("node-2", "172.31.11.157", &["10.42.54.128/26"], &[]),
                node("node-3", "172.31.4.10", &["10.42.187.64/33", "10.42.187.128/26"], &[]),
                node("node-4", "", &["10.42.201.0/26"], &[]),
            ],
            blocks: vec![],
            cfg: cfg(Mode::Direct),
            want: &["blackhole 10.42.54.128/26 proto 12", "10.42.187.128/26 via 172.31.4.10 proto 12"],
            problems: &[
                "node node-3: pod CIDR \"10.42.187.64/33\" does not parse",
                "node node-4: no address of 10.42.201.0/26's family to route it via",
            ],
        },
        Case {
            name: "IPv6 pod CIDRs are routed directly via the node's IPv6 InternalIP, even in ipip mode",
            nodes: vec![
                node("node-2", "172.31.11.157,fd00:31::2", &["10.42.54.128/26", "fd00:42:2::/64"], &[]),
                node("node-3", "172.31.4.10,fd00:31::3", &["10.42.187.64/26", "fd00:42:3::/64"], &[]),
            ],
            blocks: vec![],
            cfg: cfg(Mode::Ipip),
            want: &[
                "blackhole 10.42.54.128/26 proto 12",
                "10.42.187.64/26 via 172.31.4.10 dev tunl0 proto 12 onlink",
                "blackhole fd00:42:2::/64 proto 12",
                "fd00:42:3::/64 via fd00:31::3 proto 12",
            ],
            problems: &[],
        },
        Case {
            name: "a CIDR claimed by two nodes goes to the first by name, and never over our own blackhole",
            nodes: vec![
                node("node-2", "172.31.11.157", &["10.42.54.128/26"], &[]),
                node("node-1", "172.31.4.1", &["10.42.54.128/26"], &[]),
                node("node-3", "172.31.4.10", &["10.42.187.64/26"], &[]),
                node("node-4", "172.31.4.11", &["10.42.187.64/26"], &[]),
            ],
            blocks: vec![],
            cfg: RouteConfig { protocol: 200, blackhole_own_cidrs: true, ..cfg(Mode::Direct) },
            want: &["blackhole 10.42.54.128/26 proto 200", "10.42.187.64/26 via 172.31.4.10 proto 200"],
            problems: &[
                "node node-1: 10.42.54.128/26 is already routed to node-2",
                "node node-4: 10.42.187.64/26 is already routed to node-3",
            ],
        },
        Case {
            name: "without blackholes our own CIDRs get no route",
            nodes: cluster(),
            blocks: vec![],
            cfg: RouteConfig { blackhole_own_cidrs: false, ..cfg(Mode::Direct) },
            want: &["10.42.187.64/26 via 172.31.4.10 proto 12", "10.42.201.0/26 via 172.31.40.20 proto 12"],
            problems: &[],
        },
    ];
    for c in cases {
        let got = plan_routes(&c.nodes, &c.blocks, "node-2", &c.cfg).unwrap();
        assert_eq!(text(&got), c.want, "{}", c.name);
        let problems: Vec<String> = got.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems, c.problems, "{}", c.name);
    }
}

#[test]
fn the_tunnel_is_planned_only_when_a_route_uses_it_with_the_calico_tunnel_address() {
    let mut nodes = cluster();
    nodes[0]
        .annotations
        .insert(IPIP_TUNNEL_ADDR_ANNOTATION.into(), "10.42.54.128".into());
    let ipip = plan_routes(&nodes, &[], "node-2", &cfg(Mode::Ipip)).unwrap();
    assert_eq!(
        ipip.tunnel,
        Some(TunnelPlan {
            device: "tunl0".into(),
            address: Some("10.42.54.128".parse().unwrap())
        })
    );
    let direct = plan_routes(&nodes, &[], "node-2", &cfg(Mode::Direct)).unwrap();
    assert_eq!(direct.tunnel, None);
}

#[test]
fn planning_for_a_node_that_is_not_in_the_cluster_fails() {
    let err = plan_routes(&cluster(), &[], "node-9", &RouteConfig::default()).unwrap_err();
    assert!(matches!(err, Error::UnknownThisNode(n) if n == "node-9"));
}

fn route(s: &str) -> Route {
    // Tiny parser for the test's own `ip route` text.
    let w: Vec<&str> = s.split_whitespace().collect();
    let proto = |i: usize| w[i].parse().unwrap();
    if w[0] == "blackhole" {
        return Route {
            dst: w[1].parse().unwrap(),
            kind: RouteKind::Blackhole,
            protocol: proto(3),
        };
    }
    let dev = w
        .iter()
        .position(|x| *x == "dev")
        .map(|i| w[i + 1].to_string());
    let p = w.iter().position(|x| *x == "proto").unwrap();
    Route {
        dst: w[0].parse().unwrap(),
        kind: RouteKind::Via {
            gateway: w[2].parse().unwrap(),
            dev,
            onlink: s.ends_with("onlink"),
        },
        protocol: proto(p + 1),
    }
}

/// (case, desired, current, expected operations), routes as `ip route` text.
type ReconcileCase = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn reconcile_cases() {
    let cases: &[ReconcileCase] = &[
        (
            "nothing in the kernel: every route is added",
            &["10.42.1.0/26 via 10.0.0.1 proto 12"],
            &[],
            &["route add 10.42.1.0/26 via 10.0.0.1 proto 12"],
        ),
        (
            "an identical route is left alone",
            &["10.42.1.0/26 via 10.0.0.1 proto 12"],
            &["10.42.1.0/26 via 10.0.0.1 proto 12"],
            &[],
        ),
        (
            "a planned route without device accepts the device the kernel chose",
            &["10.42.1.0/26 via 10.0.0.1 proto 12"],
            &["10.42.1.0/26 via 10.0.0.1 dev eth0 proto 12"],
            &[],
        ),
        (
            "a changed next hop is replaced",
            &["10.42.1.0/26 via 10.0.0.2 dev tunl0 proto 12 onlink"],
            &["10.42.1.0/26 via 10.0.0.1 dev tunl0 proto 12 onlink"],
            &["route replace 10.42.1.0/26 via 10.0.0.2 dev tunl0 proto 12 onlink"],
        ),
        (
            "switching from direct to ipip is a replace",
            &["10.42.1.0/26 via 10.0.0.1 dev tunl0 proto 12 onlink"],
            &["10.42.1.0/26 via 10.0.0.1 dev eth0 proto 12"],
            &["route replace 10.42.1.0/26 via 10.0.0.1 dev tunl0 proto 12 onlink"],
        ),
        (
            "a route of ours no longer wanted is deleted",
            &[],
            &["10.42.1.0/26 via 10.0.0.1 proto 12"],
            &["route del 10.42.1.0/26 via 10.0.0.1 proto 12"],
        ),
        (
            "routes of another protocol are never touched, even with the same prefix",
            &["10.42.1.0/26 via 10.0.0.1 proto 12"],
            &[
                "10.42.1.0/26 via 10.0.0.9 proto 4",
                "10.42.0.0/16 via 10.0.0.9 proto 4",
            ],
            &["route add 10.42.1.0/26 via 10.0.0.1 proto 12"],
        ),
        (
            "deletions come before replacements and additions",
            &[
                "blackhole 10.42.9.0/26 proto 12",
                "10.42.1.0/26 via 10.0.0.2 proto 12",
            ],
            &[
                "10.42.1.0/26 via 10.0.0.1 proto 12",
                "10.42.5.0/26 via 10.0.0.5 proto 12",
            ],
            &[
                "route del 10.42.5.0/26 via 10.0.0.5 proto 12",
                "route replace 10.42.1.0/26 via 10.0.0.2 proto 12",
                "route add blackhole 10.42.9.0/26 proto 12",
            ],
        ),
        (
            "a duplicate of ours for one prefix is deleted and the matching one kept",
            &["fd00:42:3::/64 via fd00::3 proto 12"],
            &[
                "fd00:42:3::/64 via fd00::9 proto 12",
                "fd00:42:3::/64 via fd00::3 proto 12",
            ],
            &["route del fd00:42:3::/64 via fd00::9 proto 12"],
        ),
    ];
    for (name, desired, current, want) in cases {
        let desired: Vec<Route> = desired.iter().map(|s| route(s)).collect();
        let current: Vec<Route> = current.iter().map(|s| route(s)).collect();
        let ops: Vec<String> = reconcile(&desired, &current, 12)
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(ops, *want, "{name}");
    }
}

#[test]
fn sync_over_the_fake_converges_once_and_leaves_a_foreign_route_holding_our_prefix() {
    let foreign = route("10.42.201.0/26 via 172.31.0.1 proto 4");
    let mut k = FakeRoutes {
        routes: vec![
            foreign.clone(),
            route("10.42.9.0/26 via 172.31.0.9 proto 12"),
        ],
        ..FakeRoutes::default()
    };
    let desired = plan_routes(&cluster(), &[], "node-2", &cfg(Mode::Ipip)).unwrap();
    let report = sync(&mut k, &desired, 12).unwrap();
    let applied: Vec<String> = report.applied.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        applied,
        [
            "route del 10.42.9.0/26 via 172.31.0.9 proto 12",
            "route add blackhole 10.42.54.128/26 proto 12",
            "route add 10.42.187.64/26 via 172.31.4.10 dev tunl0 proto 12 onlink",
        ]
    );
    // The add over the foreign route is refused (EEXIST) and reported.
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].1.errno(), Some(17));
    assert!(k.routes.contains(&foreign));
    // A second sync only retries the refused add.
    let again = sync(&mut k, &desired, 12).unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.failed.len(), 1);
}
