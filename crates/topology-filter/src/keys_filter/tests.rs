//! kube-proxy 1.17–1.21's `TestFilterTopologyEndpoint` (pkg/proxy/
//! topology_test.go, cases 0–10), written as our own cases. Adapted to our
//! model: an endpoint's labels are those of its Node object, found by the
//! endpoint's `nodeName`; upstream's test node names `testNodeN` become
//! `node-N`, zones 90001… become zone-1…, every node is in region `cd`.

use crate::test_support::{HOSTNAME, ZONE, *};
use crate::Rule;
use api_watch::{Endpoint, Node};

const REGION: &str = "topology.kubernetes.io/region";

struct Case {
    name: &'static str,
    /// (node, zone) of every node in the cluster.
    nodes: &'static [(&'static str, &'static str)],
    /// (address, node) of every endpoint.
    endpoints: &'static [(&'static str, &'static str)],
    this_node: &'static str,
    keys: &'static [&'static str],
    want: &'static [&'static str],
}

fn nodes(list: &[(&str, &str)]) -> Vec<Node> {
    list.iter()
        .map(|&(name, zone)| node(name, &[(HOSTNAME, name), (ZONE, zone), (REGION, "cd")]))
        .collect()
}

fn endpoints(list: &[(&str, &str)]) -> Vec<Endpoint> {
    list.iter()
        .map(|&(ip, on)| ep(ip, on, Ready::Yes))
        .collect()
}

const TWO_NODES: &[(&str, &str)] = &[("node-1", "zone-1"), ("node-2", "zone-1")];
const FOUR_EPS: &[(&str, &str)] = &[
    ("1.1.1.1", "node-1"),
    ("1.1.1.2", "node-1"),
    ("1.1.2.1", "node-2"),
    ("1.1.2.2", "node-2"),
];
const EIGHT_EPS: &[(&str, &str)] = &[
    ("1.1.1.1", "node-1"),
    ("1.1.1.2", "node-1"),
    ("1.1.2.1", "node-2"),
    ("1.1.2.2", "node-2"),
    ("1.1.3.1", "node-3"),
    ("1.1.3.2", "node-3"),
    ("1.1.4.1", "node-4"),
    ("1.1.4.2", "node-4"),
];
const FIVE_NODES_NEW_ZONE: &[(&str, &str)] = &[
    ("node-1", "zone-1"),
    ("node-2", "zone-1"),
    ("node-3", "zone-2"),
    ("node-4", "zone-2"),
    ("node-5", "zone-3"),
];

#[test]
fn topology_keys_filter_like_kube_proxy_1_17_to_1_21() {
    let cases = [
        // Case[0] "no topology key and endpoints"
        Case {
            name: "without keys and without endpoints there is nothing",
            nodes: &[("node-1", "zone-1")],
            endpoints: &[],
            this_node: "node-1",
            keys: &[],
            want: &[],
        },
        // Case[1] "no topology key but have endpoints"
        Case {
            name: "without keys every endpoint is kept",
            nodes: TWO_NODES,
            endpoints: FOUR_EPS,
            this_node: "node-1",
            keys: &[],
            want: &["1.1.1.1", "1.1.1.2", "1.1.2.1", "1.1.2.2"],
        },
        // Case[2] "one topology key with one node matched"
        Case {
            name: "the hostname key keeps this node's endpoints",
            nodes: TWO_NODES,
            endpoints: FOUR_EPS,
            this_node: "node-1",
            keys: &[HOSTNAME],
            want: &["1.1.1.1", "1.1.1.2"],
        },
        // Case[3] "one topology key without node matched"
        Case {
            name: "the hostname key alone keeps nothing on a node without endpoints",
            nodes: &[
                ("node-1", "zone-1"),
                ("node-2", "zone-1"),
                ("node-3", "zone-1"),
            ],
            endpoints: FOUR_EPS,
            this_node: "node-3",
            keys: &[HOSTNAME],
            want: &[],
        },
        // Case[4] "one topology key with multiple nodes matched"
        Case {
            name: "the zone key keeps the endpoints of every node in this node's zone",
            nodes: &[
                ("node-1", "zone-1"),
                ("node-2", "zone-1"),
                ("node-3", "zone-2"),
                ("node-4", "zone-2"),
            ],
            endpoints: EIGHT_EPS,
            this_node: "node-2",
            keys: &[ZONE],
            want: &["1.1.1.1", "1.1.1.2", "1.1.2.1", "1.1.2.2"],
        },
        // Case[5] "early match in multiple topology keys" (upstream lists only
        // the hostname key, as here)
        Case {
            name: "an early match wins over later keys",
            nodes: &[
                ("node-1", "zone-1"),
                ("node-2", "zone-1"),
                ("node-3", "zone-2"),
                ("node-4", "zone-2"),
            ],
            endpoints: EIGHT_EPS,
            this_node: "node-2",
            keys: &[HOSTNAME],
            want: &["1.1.2.1", "1.1.2.2"],
        },
        // Case[6] "later match in multiple topology keys"
        Case {
            name: "a later key matches when the earlier ones do not",
            nodes: &[
                ("node-1", "zone-1"),
                ("node-2", "zone-1"),
                ("node-3", "zone-2"),
                ("node-4", "zone-2"),
                ("node-5", "zone-2"),
            ],
            endpoints: EIGHT_EPS,
            this_node: "node-5",
            keys: &[HOSTNAME, ZONE],
            want: &["1.1.3.1", "1.1.3.2", "1.1.4.1", "1.1.4.2"],
        },
        // Case[7] "multiple topology keys without node matched"
        Case {
            name: "no key matching keeps nothing",
            nodes: FIVE_NODES_NEW_ZONE,
            endpoints: EIGHT_EPS,
            this_node: "node-5",
            keys: &[HOSTNAME, ZONE],
            want: &[],
        },
        // Case[8] "multiple topology keys matched node when 'Any' key ignored"
        Case {
            name: "a matching key before \"*\" makes \"*\" irrelevant",
            nodes: TWO_NODES,
            endpoints: FOUR_EPS,
            this_node: "node-1",
            keys: &[HOSTNAME, "*"],
            want: &["1.1.1.1", "1.1.1.2"],
        },
        // Case[9] "two topology keys matched node with 'Any' key"
        Case {
            name: "\"*\" keeps every endpoint when the hostname key does not match",
            nodes: &[
                ("node-1", "zone-1"),
                ("node-2", "zone-1"),
                ("node-3", "zone-1"),
            ],
            endpoints: FOUR_EPS,
            this_node: "node-3",
            keys: &[HOSTNAME, "*"],
            want: &["1.1.1.1", "1.1.1.2", "1.1.2.1", "1.1.2.2"],
        },
        // Case[10] "multiple topology keys matched node with 'Any' key"
        Case {
            name: "\"*\" keeps every endpoint when neither hostname nor zone match",
            nodes: FIVE_NODES_NEW_ZONE,
            endpoints: EIGHT_EPS,
            this_node: "node-5",
            keys: &[HOSTNAME, ZONE, "*"],
            want: &[
                "1.1.1.1", "1.1.1.2", "1.1.2.1", "1.1.2.2", "1.1.3.1", "1.1.3.2", "1.1.4.1",
                "1.1.4.2",
            ],
        },
    ];
    for case in cases {
        let svc = if case.keys.is_empty() {
            service()
        } else {
            keys(service(), case.keys)
        };
        let st = state_with_port(svc, 11, endpoints(case.endpoints), nodes(case.nodes));
        let p = port_plan(&st, case.this_node);
        assert_eq!(ips(p.endpoints()), strings(case.want), "{}", case.name);
        assert_eq!(p.endpoints(), p.cluster_endpoints, "{}", case.name);
        assert!(p.endpoints().iter().all(|t| t.port == 11), "{}", case.name);
        if case.keys.is_empty() {
            assert_eq!(p.rule, Rule::None, "{}", case.name);
        } else {
            let matched = matches!(
                p.rule,
                Rule::TopologyKeys {
                    matched: Some(_),
                    ..
                }
            );
            assert_eq!(matched, !case.want.is_empty(), "{}: {}", case.name, p.rule);
        }
    }
}

#[test]
fn the_rule_names_the_keys_and_the_key_that_matched() {
    let eps = || endpoints(FOUR_EPS);
    let cases = [
        (
            "the first key matching is named by its position",
            keys(service(), &[HOSTNAME]),
            "node-1",
            "topologyKeys [kubernetes.io/hostname] (key 1 matched)",
        ),
        (
            "\"*\" matching is named like any key",
            keys(service(), &[HOSTNAME, ZONE, "*"]),
            "node-3",
            "topologyKeys [kubernetes.io/hostname, topology.kubernetes.io/zone, *] (key 3 matched)",
        ),
        (
            "no key matching is said",
            keys(service(), &[HOSTNAME]),
            "node-3",
            "topologyKeys [kubernetes.io/hostname] (no key matched)",
        ),
    ];
    for (name, svc, this_node, want) in cases {
        let all = nodes(&[
            ("node-1", "zone-1"),
            ("node-2", "zone-1"),
            ("node-3", "zone-2"),
        ]);
        let p = port_plan(&state(svc, eps(), all), this_node);
        assert_eq!(p.rule.to_string(), want, "{name}");
    }
}
