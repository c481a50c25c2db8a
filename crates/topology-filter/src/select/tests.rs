use std::collections::BTreeMap;
use std::net::SocketAddr;

use api_watch::{
    AddressType, ClusterState, Conditions, Endpoint, EndpointPort, EndpointSlice, Node, ObjectKey,
    Protocol, Service, ServicePort, ServiceType, TargetPort, TrafficPolicy,
    TOPOLOGY_KEYS_ANNOTATION,
};

use crate::{plan, ProxyPlan};

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A node with its hostname label and a zone.
fn node(name: &str, zone: &str) -> Node {
    Node {
        name: name.into(),
        labels: map(&[(HOSTNAME, name), (ZONE, zone)]),
        ..Node::default()
    }
}

fn port(name: &str, protocol: Protocol, port: u16, target: TargetPort) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol,
        port,
        target_port: target,
        node_port: None,
    }
}

/// Service `default/web` on 10.43.0.10 with one port `http` 80 → `http`.
fn web() -> Service {
    Service {
        key: ObjectKey::new("default", "web"),
        cluster_ips: vec!["10.43.0.10".parse().unwrap()],
        ports: vec![port(
            "http",
            Protocol::Tcp,
            80,
            TargetPort::Name("http".into()),
        )],
        ..Service::default()
    }
}

fn with_keys(mut service: Service, keys: &[&str]) -> Service {
    service.topology_keys = Some(keys.iter().map(|k| k.to_string()).collect());
    service
}

fn with_annotation(mut service: Service, keys: &str) -> Service {
    service
        .annotations
        .insert(TOPOLOGY_KEYS_ANNOTATION.into(), keys.into());
    service
}

fn local(mut service: Service) -> Service {
    service.internal_traffic_policy = TrafficPolicy::Local;
    service
}

fn endpoint(ip: &str, node: Option<&str>) -> Endpoint {
    let e = Endpoint::new(ip.parse().unwrap(), Conditions::default());
    match node {
        Some(node) => e.on_node(node),
        None => e,
    }
}

fn not_ready(mut e: Endpoint) -> Endpoint {
    e.conditions = Conditions {
        ready: false,
        serving: false,
        terminating: false,
    };
    e
}

/// A slice of Service `default/{service}` with ports (name, protocol, number).
fn slice(
    name: &str,
    service: &str,
    ports: &[(&str, Protocol, u16)],
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        key: ObjectKey::new("default", name),
        service_name: service.into(),
        address_type: AddressType::IPv4,
        ports: ports
            .iter()
            .map(|&(name, protocol, port)| EndpointPort {
                name: name.into(),
                protocol,
                port,
            })
            .collect(),
        endpoints,
    }
}

/// One endpoint on each of node-1 (zone-a), node-2 (zone-a), node-3 (zone-b).
fn web_slice() -> EndpointSlice {
    slice(
        "web-1",
        "web",
        &[("http", Protocol::Tcp, 8080)],
        vec![
            endpoint("10.42.3.5", Some("node-3")),
            endpoint("10.42.1.5", Some("node-1")),
            endpoint("10.42.2.5", Some("node-2")),
        ],
    )
}

/// Nodes node-1 and node-2 in zone-a, node-3 and node-4 in zone-b.
fn cluster(services: Vec<Service>, slices: Vec<EndpointSlice>) -> ClusterState {
    let nodes = vec![
        node("node-1", "zone-a"),
        node("node-2", "zone-a"),
        node("node-3", "zone-b"),
        node("node-4", "zone-b"),
    ];
    crate::test_support::cluster_state(services, slices, nodes)
}

/// One line per service port: `default/web http/tcp 80 -> 10.42.1.5:8080 …`.
fn endpoints(plan: &ProxyPlan) -> Vec<String> {
    plan.services
        .iter()
        .map(|p| {
            let targets: Vec<String> = p
                .endpoints()
                .iter()
                .map(|e| SocketAddr::new(e.ip, e.port).to_string())
                .collect();
            format!(
                "{} {}/{} {} -> {}",
                p.service,
                p.port_name,
                p.protocol,
                p.port,
                targets.join(" ")
            )
            .trim_end()
            .to_string()
        })
        .collect()
}

/// `ip reason` for every decision of the first service port.
fn decisions(plan: &ProxyPlan) -> Vec<String> {
    plan.services.first().map_or_else(Vec::new, |p| {
        p.decisions
            .iter()
            .map(|d| {
                assert_eq!(d.kept(), d.reason.starts_with("kept:"), "{d:?}");
                format!("{} {}", d.ip, d.reason)
            })
            .collect()
    })
}

struct Case {
    name: &'static str,
    state: ClusterState,
    node: &'static str,
    endpoints: &'static [&'static str],
    /// Checked when not empty.
    decisions: &'static [&'static str],
    problems: &'static [&'static str],
}

#[test]
fn endpoints_are_selected_by_readiness_and_topology() {
    let cases = vec![
        Case {
            name: "one service with one port keeps every ready endpoint, sorted by address",
            state: cluster(vec![web()], vec![web_slice()]),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080 10.42.2.5:8080 10.42.3.5:8080"],
            decisions: &[
                "10.42.1.5 kept: no topology rules",
                "10.42.2.5 kept: no topology rules",
                "10.42.3.5 kept: no topology rules",
            ],
            problems: &[],
        },
        Case {
            name: "several ports are planned by name then protocol, each with its slice port",
            state: cluster(
                vec![Service {
                    ports: vec![
                        port("metrics", Protocol::Tcp, 9090, TargetPort::Number(9091)),
                        port("dns", Protocol::Udp, 53, TargetPort::Number(5353)),
                        port("dns", Protocol::Tcp, 53, TargetPort::Number(5354)),
                    ],
                    ..web()
                }],
                vec![slice(
                    "web-1",
                    "web",
                    &[
                        ("dns", Protocol::Udp, 5353),
                        ("metrics", Protocol::Tcp, 9091),
                        ("dns", Protocol::Tcp, 5354),
                    ],
                    vec![endpoint("10.42.1.5", Some("node-1"))],
                )],
            ),
            node: "node-1",
            endpoints: &[
                "default/web dns/tcp 53 -> 10.42.1.5:5354",
                "default/web dns/udp 53 -> 10.42.1.5:5353",
                "default/web metrics/tcp 9090 -> 10.42.1.5:9091",
            ],
            decisions: &[],
            problems: &[],
        },
        Case {
            name: "a named targetPort resolves per slice through the slice port of the same name and protocol",
            state: cluster(
                vec![web()],
                vec![
                    slice("web-a", "web", &[("http", Protocol::Tcp, 8080)], vec![endpoint("10.42.1.5", Some("node-1"))]),
                    slice("web-b", "web", &[("http", Protocol::Tcp, 8081)], vec![endpoint("10.42.2.5", Some("node-2"))]),
                    slice("web-c", "web", &[("admin", Protocol::Tcp, 9000)], vec![endpoint("10.42.3.5", Some("node-3"))]),
                    slice("web-d", "web", &[("http", Protocol::Udp, 8082)], vec![endpoint("10.42.4.5", Some("node-4"))]),
                ],
            ),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080 10.42.2.5:8081"],
            decisions: &[],
            problems: &[],
        },
        Case {
            name: "an endpoint that is not ready is dropped",
            state: cluster(
                vec![web()],
                vec![slice(
                    "web-1",
                    "web",
                    &[("http", Protocol::Tcp, 8080)],
                    vec![endpoint("10.42.1.5", Some("node-1")), not_ready(endpoint("10.42.2.5", Some("node-2")))],
                )],
            ),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080"],
            decisions: &["10.42.1.5 kept: no topology rules", "10.42.2.5 dropped: not ready"],
            problems: &[],
        },
        Case {
            name: "an endpoint listed in two slices is planned once and an FQDN slice is skipped with one problem",
            state: cluster(
                vec![web()],
                vec![web_slice(), {
                    let mut s = web_slice();
                    s.key.name = "web-2".into();
                    s
                }, {
                    let mut s = slice("web-fqdn", "web", &[("http", Protocol::Tcp, 8080)], vec![endpoint("10.42.9.9", None)]);
                    s.address_type = AddressType::Fqdn;
                    s
                }],
            ),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080 10.42.2.5:8080 10.42.3.5:8080"],
            decisions: &[],
            problems: &["default/web: EndpointSlice default/web-fqdn has addressType FQDN; not proxied"],
        },
        Case {
            // endpointslicecache.go addEndpoints: of two copies of one
            // address, the one that is not terminating wins.
            name: "an address terminating in one slice and running in another is the running endpoint, as upstream prefers the copy that is not terminating",
            state: cluster(
                vec![web()],
                vec![
                    slice("web-1", "web", &[("http", Protocol::Tcp, 8080)], vec![{
                        let mut e = endpoint("10.42.1.5", Some("node-1"));
                        e.conditions = Conditions { ready: false, serving: true, terminating: true };
                        e
                    }]),
                    slice("web-2", "web", &[("http", Protocol::Tcp, 8080)], vec![
                        endpoint("10.42.1.5", Some("node-2")),
                        endpoint("10.42.2.5", Some("node-2")),
                    ]),
                ],
            ),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080 10.42.2.5:8080"],
            decisions: &["10.42.1.5 kept: no topology rules", "10.42.2.5 kept: no topology rules"],
            problems: &[],
        },
        Case {
            name: "topologyKeys kubernetes.io/hostname keeps only this node's endpoints",
            state: cluster(vec![with_keys(web(), &[HOSTNAME, ZONE, "*"])], vec![web_slice()]),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080"],
            decisions: &[
                "10.42.1.5 kept: topology key kubernetes.io/hostname (1 of 3): endpoint's node node-1 has node-1 like this node",
                "10.42.2.5 dropped: topology key kubernetes.io/hostname (1 of 3): endpoint's node node-2 has node-2, this node has node-1",
                "10.42.3.5 dropped: topology key kubernetes.io/hostname (1 of 3): endpoint's node node-3 has node-3, this node has node-1",
            ],
            problems: &[],
        },
        Case {
            name: "the zone key is used when no endpoint runs on this node",
            state: cluster(vec![with_keys(web(), &[HOSTNAME, ZONE, "*"])], vec![web_slice()]),
            node: "node-4",
            endpoints: &["default/web http/tcp 80 -> 10.42.3.5:8080"],
            decisions: &[
                "10.42.1.5 dropped: topology key topology.kubernetes.io/zone (2 of 3): endpoint's node node-1 has zone-a, this node has zone-b",
                "10.42.2.5 dropped: topology key topology.kubernetes.io/zone (2 of 3): endpoint's node node-2 has zone-a, this node has zone-b",
                "10.42.3.5 kept: topology key topology.kubernetes.io/zone (2 of 3): endpoint's node node-3 has zone-b like this node",
            ],
            problems: &[],
        },
        Case {
            name: "\"*\" keeps every endpoint when no earlier key matches",
            state: cluster(vec![with_keys(web(), &[HOSTNAME, "*"])], vec![web_slice()]),
            node: "node-4",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080 10.42.2.5:8080 10.42.3.5:8080"],
            decisions: &[
                "10.42.1.5 kept: topology key * (2 of 2) matches every endpoint",
                "10.42.2.5 kept: topology key * (2 of 2) matches every endpoint",
                "10.42.3.5 kept: topology key * (2 of 2) matches every endpoint",
            ],
            problems: &[],
        },
        Case {
            name: "no key matching leaves no endpoints, so traffic is rejected",
            state: cluster(vec![with_keys(web(), &[HOSTNAME])], vec![web_slice()]),
            node: "node-4",
            endpoints: &["default/web http/tcp 80 ->"],
            decisions: &[
                "10.42.1.5 dropped: no topology key matched; traffic is rejected",
                "10.42.2.5 dropped: no topology key matched; traffic is rejected",
                "10.42.3.5 dropped: no topology key matched; traffic is rejected",
            ],
            problems: &[],
        },
        Case {
            name: "a key this node has no label for is skipped, even when no endpoint's node has it either",
            state: cluster(vec![with_keys(web(), &["example.com/rack", HOSTNAME])], vec![web_slice()]),
            node: "node-2",
            endpoints: &["default/web http/tcp 80 -> 10.42.2.5:8080"],
            decisions: &[],
            problems: &[],
        },
        Case {
            name: "when this node's Node object is unknown only \"*\" can match",
            state: cluster(vec![with_keys(web(), &[HOSTNAME])], vec![web_slice()]),
            node: "node-9",
            endpoints: &["default/web http/tcp 80 ->"],
            decisions: &[
                "10.42.1.5 dropped: no topology key matched; traffic is rejected (this node's Node object is not known)",
                "10.42.2.5 dropped: no topology key matched; traffic is rejected (this node's Node object is not known)",
                "10.42.3.5 dropped: no topology key matched; traffic is rejected (this node's Node object is not known)",
            ],
            problems: &[],
        },
        Case {
            name: "an endpoint whose Node is unknown is matched by its v1beta1 topology map, then by its zone",
            state: cluster(
                vec![with_keys(web(), &[ZONE])],
                vec![slice(
                    "web-1",
                    "web",
                    &[("http", Protocol::Tcp, 8080)],
                    vec![
                        endpoint("10.42.7.5", Some("node-7"))
                            .with_topology(map(&[(HOSTNAME, "node-7"), (ZONE, "zone-a")])),
                        endpoint("10.42.8.5", None).with_topology(map(&[(ZONE, "zone-b")])),
                        endpoint("10.42.9.5", Some("node-9")).in_zone("zone-a"),
                    ],
                )],
            ),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.7.5:8080 10.42.9.5:8080"],
            decisions: &[
                "10.42.7.5 kept: topology key topology.kubernetes.io/zone (1 of 1): endpoint on unknown node node-7 (per its EndpointSlice) has zone-a like this node",
                "10.42.8.5 dropped: topology key topology.kubernetes.io/zone (1 of 1): endpoint without a node (per its EndpointSlice) has zone-b, this node has zone-a",
                "10.42.9.5 kept: topology key topology.kubernetes.io/zone (1 of 1): endpoint on unknown node node-9 (per its EndpointSlice) has zone-a like this node",
            ],
            problems: &[],
        },
        Case {
            name: "an endpoint whose Node is unknown is matched on hostname by its node name",
            state: {
                let mut state = cluster(
                    vec![with_keys(web(), &[HOSTNAME])],
                    vec![slice("web-1", "web", &[("http", Protocol::Tcp, 8080)], vec![endpoint("10.42.5.5", Some("host-5"))])],
                );
                // This node's hostname label differs from its Node name, as on some clouds.
                state.nodes.get_mut("node-1").unwrap().labels.insert(HOSTNAME.into(), "host-5".into());
                state
            },
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.5.5:8080"],
            decisions: &[],
            problems: &[],
        },
        Case {
            name: "the annotation wins over spec.topologyKeys",
            state: cluster(vec![with_annotation(with_keys(web(), &[ZONE]), "kubernetes.io/hostname")], vec![web_slice()]),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080"],
            decisions: &[],
            problems: &[],
        },
        Case {
            name: "invalid topology keys are reported and leave the endpoints unfiltered",
            state: cluster(vec![with_keys(web(), &["*", HOSTNAME])], vec![web_slice()]),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080 10.42.2.5:8080 10.42.3.5:8080"],
            decisions: &[],
            problems: &["default/web: spec.topologyKeys ignored: \"*\" must be the last topology key, but it is key 0 of 2; endpoints are not filtered by topology keys"],
        },
        Case {
            name: "an invalid annotation is reported as the annotation",
            state: cluster(vec![with_annotation(web(), "zone,,*")], vec![web_slice()]),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080 10.42.2.5:8080 10.42.3.5:8080"],
            decisions: &[],
            problems: &["default/web: annotation nftopo.io/topology-keys ignored: topology key 1 is empty; endpoints are not filtered by topology keys"],
        },
        Case {
            name: "internalTrafficPolicy Local keeps only this node's endpoints",
            state: cluster(vec![local(web())], vec![web_slice()]),
            node: "node-2",
            endpoints: &["default/web http/tcp 80 -> 10.42.2.5:8080"],
            decisions: &[
                "10.42.1.5 dropped: internalTrafficPolicy Local and the endpoint runs on node node-1",
                "10.42.2.5 kept: internalTrafficPolicy Local and the endpoint runs on this node",
                "10.42.3.5 dropped: internalTrafficPolicy Local and the endpoint runs on node node-3",
            ],
            problems: &[],
        },
        Case {
            name: "topology keys take precedence over internalTrafficPolicy Local",
            state: cluster(vec![local(with_keys(web(), &[ZONE]))], vec![web_slice()]),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080 10.42.2.5:8080"],
            decisions: &[
                "10.42.1.5 kept: topology key topology.kubernetes.io/zone (1 of 1): endpoint's node node-1 has zone-a like this node; internalTrafficPolicy Local is ignored because topology keys take precedence",
                "10.42.2.5 kept: topology key topology.kubernetes.io/zone (1 of 1): endpoint's node node-2 has zone-a like this node; internalTrafficPolicy Local is ignored because topology keys take precedence",
                "10.42.3.5 dropped: topology key topology.kubernetes.io/zone (1 of 1): endpoint's node node-3 has zone-b, this node has zone-a; internalTrafficPolicy Local is ignored because topology keys take precedence",
            ],
            problems: &[],
        },
        Case {
            name: "ExternalName and headless services are not planned",
            state: cluster(
                vec![
                    Service {
                        key: ObjectKey::new("default", "alias"),
                        service_type: ServiceType::ExternalName,
                        ..web()
                    },
                    Service {
                        key: ObjectKey::new("default", "headless"),
                        cluster_ips: vec![],
                        ..web()
                    },
                    web(),
                ],
                vec![web_slice()],
            ),
            node: "node-1",
            endpoints: &["default/web http/tcp 80 -> 10.42.1.5:8080 10.42.2.5:8080 10.42.3.5:8080"],
            decisions: &[],
            problems: &[],
        },
    ];
    for case in cases {
        let plan = plan(&case.state, case.node);
        assert_eq!(plan.node, case.node, "{}", case.name);
        assert_eq!(endpoints(&plan), case.endpoints, "{}", case.name);
        if !case.decisions.is_empty() {
            assert_eq!(decisions(&plan), case.decisions, "{}", case.name);
        }
        let problems: Vec<String> = plan
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.object, p.message))
            .collect();
        assert_eq!(problems, case.problems, "{}", case.name);
    }
}

#[test]
fn the_same_state_built_in_any_order_gives_the_same_plan() {
    let services = || {
        vec![
            with_keys(web(), &[ZONE, "*"]),
            Service {
                key: ObjectKey::new("a", "first"),
                ..web()
            },
        ]
    };
    let mut reversed = web_slice();
    reversed.endpoints.reverse();
    let one = cluster(services(), vec![web_slice()]);
    let mut other = cluster(services().into_iter().rev().collect(), vec![reversed]);
    other.nodes = other.nodes.into_iter().rev().collect();
    let (a, b) = (plan(&one, "node-3"), plan(&other, "node-3"));
    assert_eq!(a, b);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_eq!(a.services[0].service, ObjectKey::new("a", "first"));
}
