//! kube-proxy's `TestCategorizeEndpoints` (pkg/proxy/topology_test.go, the
//! 26 cases of the version without feature gates), written as our own
//! cases. This node is `node-1`; a "local" endpoint runs on it, a remote
//! one on `node-2`. Upstream's `nodePort: 8080` (externally accessible)
//! becomes a NodePort Service.
//!
//! Adaptation: current kube-proxy uses hints whenever every ready endpoint
//! has them; nftopo uses them only when the Service asks. So every case
//! here asks, with `trafficDistribution: PreferClose`; it changes nothing
//! where the endpoints have no hints.

use crate::test_support::{ZONE, *};
use api_watch::{Endpoint, Service};

use Ready::{No, ServingTerminating as St, Yes};

struct Case {
    name: &'static str,
    /// This node's zone label: `None` = no label.
    zone: Option<&'static str>,
    service: Service,
    endpoints: Vec<Endpoint>,
    /// `None`: the port does not use this kind of endpoints.
    cluster: Option<&'static [&'static str]>,
    local: Option<&'static [&'static str]>,
    has_any: bool,
}

fn svc() -> Service {
    distribution(service(), "PreferClose")
}

/// An endpoint on this node (`local`) or another one, with zone hints.
fn e(ip: &str, local: bool, hints: &[&str], ready: Ready) -> Endpoint {
    zones(
        ep(ip, if local { "node-1" } else { "node-2" }, ready),
        hints,
    )
}

#[test]
fn endpoints_are_categorized_like_kube_proxy() {
    let four = |local: [bool; 2]| {
        vec![
            e("10.1.2.3", local[0], &["zone-a"], Yes),
            e("10.1.2.4", local[1], &["zone-b"], Yes),
            e("10.1.2.5", false, &["zone-c"], Yes),
            e("10.1.2.6", false, &["zone-a"], Yes),
        ]
    };
    let two = |ready: [Ready; 2], local: [bool; 2]| {
        vec![
            e("10.0.0.0", local[0], &[], ready[0]),
            e("10.0.0.1", local[1], &[], ready[1]),
        ]
    };
    let cases = vec![
        // "should use topology since all endpoints have hints, node has a zone label and and there are endpoints for the node's zone"
        Case {
            name: "zone hints narrow the cluster set when every endpoint has one and one matches this node's zone",
            zone: Some("zone-a"),
            service: svc(),
            endpoints: four([false, false]),
            cluster: Some(&["10.1.2.3", "10.1.2.6"]),
            local: None,
            has_any: true,
        },
        // "externalTrafficPolicy: Local, topology ignored for Local endpoints"
        Case {
            name: "with externalTrafficPolicy Local the local set ignores the hints the cluster set uses",
            zone: Some("zone-a"),
            service: etp_local(node_port(svc())),
            endpoints: four([true, true]),
            cluster: Some(&["10.1.2.3", "10.1.2.6"]),
            local: Some(&["10.1.2.3", "10.1.2.4"]),
            has_any: true,
        },
        // "internalTrafficPolicy: Local, topology ignored for Local endpoints"
        Case {
            name: "with internalTrafficPolicy Local on a NodePort service the local set ignores hints and the cluster set uses them",
            zone: Some("zone-a"),
            service: itp_local(node_port(svc())),
            endpoints: four([true, true]),
            cluster: Some(&["10.1.2.3", "10.1.2.6"]),
            local: Some(&["10.1.2.3", "10.1.2.4"]),
            has_any: true,
        },
        // "empty node labels"
        Case {
            name: "a node without labels does not filter by hints",
            zone: None,
            service: svc(),
            endpoints: vec![e("10.1.2.3", false, &["zone-a"], Yes)],
            cluster: Some(&["10.1.2.3"]),
            local: None,
            has_any: true,
        },
        // "empty zone label"
        Case {
            name: "a node with an empty zone label does not filter by hints",
            zone: Some(""),
            service: svc(),
            endpoints: vec![e("10.1.2.3", false, &["zone-a"], Yes)],
            cluster: Some(&["10.1.2.3"]),
            local: None,
            has_any: true,
        },
        // "node in different zone, no endpoint filtering"
        Case {
            name: "a node in a zone no endpoint is hinted for does not filter",
            zone: Some("zone-b"),
            service: svc(),
            endpoints: vec![e("10.1.2.3", false, &["zone-a"], Yes)],
            cluster: Some(&["10.1.2.3"]),
            local: None,
            has_any: true,
        },
        // "unready endpoint"
        Case {
            name: "an unready endpoint hinted for this zone is left out",
            zone: Some("zone-a"),
            service: svc(),
            endpoints: vec![
                e("10.1.2.3", false, &["zone-a"], Yes),
                e("10.1.2.4", false, &["zone-b"], Yes),
                e("10.1.2.5", false, &["zone-c"], Yes),
                e("10.1.2.6", false, &["zone-a"], No),
            ],
            cluster: Some(&["10.1.2.3"]),
            local: None,
            has_any: true,
        },
        // "only unready endpoints in same zone (should not filter)"
        Case {
            name: "when only unready endpoints are hinted for this zone the hints are not used",
            zone: Some("zone-a"),
            service: svc(),
            endpoints: vec![
                e("10.1.2.3", false, &["zone-a"], No),
                e("10.1.2.4", false, &["zone-b"], Yes),
                e("10.1.2.5", false, &["zone-c"], Yes),
                e("10.1.2.6", false, &["zone-a"], No),
            ],
            cluster: Some(&["10.1.2.4", "10.1.2.5"]),
            local: None,
            has_any: true,
        },
        // "missing hints, no filtering applied"
        Case {
            name: "one ready endpoint without a hint turns the hints off",
            zone: Some("zone-a"),
            service: svc(),
            endpoints: vec![
                e("10.1.2.3", false, &["zone-a"], Yes),
                e("10.1.2.4", false, &["zone-b"], Yes),
                e("10.1.2.5", false, &[], Yes),
                e("10.1.2.6", false, &["zone-a"], Yes),
            ],
            cluster: Some(&["10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"]),
            local: None,
            has_any: true,
        },
        // "multiple hints per endpoint, filtering includes any endpoint with zone included"
        Case {
            name: "an endpoint hinted for several zones is kept when one of them is this node's",
            zone: Some("zone-c"),
            service: svc(),
            endpoints: vec![
                e("10.1.2.3", false, &["zone-a", "zone-b", "zone-c"], Yes),
                e("10.1.2.4", false, &["zone-b", "zone-c"], Yes),
                e("10.1.2.5", false, &["zone-b", "zone-d"], Yes),
                e("10.1.2.6", false, &["zone-c"], Yes),
            ],
            cluster: Some(&["10.1.2.3", "10.1.2.4", "10.1.2.6"]),
            local: None,
            has_any: true,
        },
        // "conflicting topology and localness require merging allEndpoints"
        Case {
            name: "a local endpoint hinted for another zone is local but not in the cluster set",
            zone: Some("zone-a"),
            service: etp_local(node_port(svc())),
            endpoints: vec![
                e("10.0.0.0", true, &["zone-a"], Yes),
                e("10.0.0.1", true, &["zone-b"], Yes),
                e("10.0.0.2", false, &["zone-a"], Yes),
                e("10.0.0.3", false, &["zone-b"], Yes),
            ],
            cluster: Some(&["10.0.0.0", "10.0.0.2"]),
            local: Some(&["10.0.0.0", "10.0.0.1"]),
            has_any: true,
        },
        // "internalTrafficPolicy: Local, with empty endpoints"
        Case {
            name: "internalTrafficPolicy Local without endpoints has an empty local set and nothing anywhere",
            zone: None,
            service: itp_local(svc()),
            endpoints: vec![],
            cluster: None,
            local: Some(&[]),
            has_any: false,
        },
        // "internalTrafficPolicy: Local, but all endpoints are remote"
        Case {
            name: "internalTrafficPolicy Local with only remote endpoints has an empty local set but endpoints elsewhere",
            zone: None,
            service: itp_local(svc()),
            endpoints: two([Yes, Yes], [false, false]),
            cluster: None,
            local: Some(&[]),
            has_any: true,
        },
        // "internalTrafficPolicy: Local, all endpoints are local"
        Case {
            name: "internalTrafficPolicy Local keeps every endpoint when all are local",
            zone: None,
            service: itp_local(svc()),
            endpoints: two([Yes, Yes], [true, true]),
            cluster: None,
            local: Some(&["10.0.0.0", "10.0.0.1"]),
            has_any: true,
        },
        // "internalTrafficPolicy: Local, some endpoints are local"
        Case {
            name: "internalTrafficPolicy Local keeps only the local endpoints",
            zone: None,
            service: itp_local(svc()),
            endpoints: two([Yes, Yes], [true, false]),
            cluster: None,
            local: Some(&["10.0.0.0"]),
            has_any: true,
        },
        // "Cluster traffic policy, endpoints not Ready"
        Case {
            name: "with no ready and no terminating endpoint the cluster set is empty and there is nothing anywhere",
            zone: None,
            service: svc(),
            endpoints: two([No, No], [false, false]),
            cluster: Some(&[]),
            local: None,
            has_any: false,
        },
        // "Cluster traffic policy, some endpoints are Ready"
        Case {
            name: "the cluster set keeps the ready endpoints only",
            zone: None,
            service: svc(),
            endpoints: two([No, Yes], [false, false]),
            cluster: Some(&["10.0.0.1"]),
            local: None,
            has_any: true,
        },
        // "Cluster traffic policy, all endpoints are terminating"
        Case {
            name: "when no endpoint is ready the cluster set falls back to the serving terminating ones",
            zone: None,
            service: svc(),
            endpoints: two([St, St], [true, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: None,
            has_any: true,
        },
        // "iTP: Local, eTP: Cluster, some endpoints local"
        Case {
            name: "iTP Local with eTP Cluster on a NodePort service uses both sets",
            zone: None,
            service: itp_local(node_port(svc())),
            endpoints: two([Yes, Yes], [true, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&["10.0.0.0"]),
            has_any: true,
        },
        // "iTP: Cluster, eTP: Local, some endpoints local"
        Case {
            name: "iTP Cluster with eTP Local uses both sets",
            zone: None,
            service: etp_local(node_port(svc())),
            endpoints: two([Yes, Yes], [true, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&["10.0.0.0"]),
            has_any: true,
        },
        // "iTP: Local, eTP: Local, some endpoints local"
        Case {
            name: "iTP Local with eTP Local still uses the cluster set, for short-circuit traffic",
            zone: None,
            service: itp_local(etp_local(node_port(svc()))),
            endpoints: two([Yes, Yes], [true, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&["10.0.0.0"]),
            has_any: true,
        },
        // "iTP: Local, eTP: Local, all endpoints remote"
        Case {
            name: "iTP and eTP Local with only remote endpoints have an empty local set and a full cluster set",
            zone: None,
            service: itp_local(etp_local(node_port(svc()))),
            endpoints: two([Yes, Yes], [false, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&[]),
            has_any: true,
        },
        // "iTP: Local, eTP: Local, all endpoints remote and terminating"
        Case {
            name: "iTP and eTP Local with only remote terminating endpoints fall back in the cluster set only",
            zone: None,
            service: itp_local(etp_local(node_port(svc()))),
            endpoints: two([St, St], [false, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&[]),
            has_any: true,
        },
        // "iTP: Cluster, eTP: Local, with terminating endpoints"
        Case {
            name: "the local set falls back to a local terminating endpoint while the cluster set keeps the ready remote one",
            zone: None,
            service: etp_local(node_port(svc())),
            endpoints: vec![
                e("10.0.0.0", false, &[], Yes),
                e("10.0.0.1", true, &[], No),
                e("10.0.0.2", true, &[], St),
                e("10.0.0.3", false, &[], St),
            ],
            cluster: Some(&["10.0.0.0"]),
            local: Some(&["10.0.0.2"]),
            has_any: true,
        },
        // "externalTrafficPolicy ignored if not externally accessible"
        Case {
            name: "externalTrafficPolicy Local is ignored on a service that is not externally accessible",
            zone: None,
            service: etp_local(svc()),
            endpoints: two([Yes, Yes], [false, true]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: None,
            has_any: true,
        },
        // "no cluster endpoints for iTP:Local internal-only service"
        Case {
            name: "an internal-only service with iTP Local uses no cluster set",
            zone: None,
            service: itp_local(svc()),
            endpoints: two([Yes, Yes], [false, true]),
            cluster: None,
            local: Some(&["10.0.0.1"]),
            has_any: true,
        },
    ];
    assert_eq!(cases.len(), 26);
    for case in cases {
        let this = match case.zone {
            Some(z) => node("node-1", &[(ZONE, z)]),
            None => node("node-1", &[]),
        };
        let st = state(case.service, case.endpoints, vec![this]);
        let p = port_plan(&st, "node-1");
        let name = case.name;
        assert_eq!(p.uses_cluster_endpoints, case.cluster.is_some(), "{name}");
        assert_eq!(
            ips(&p.cluster_endpoints),
            strings(case.cluster.unwrap_or(&[])),
            "{name}"
        );
        assert_eq!(p.uses_local_endpoints, case.local.is_some(), "{name}");
        assert_eq!(
            ips(&p.local_endpoints),
            strings(case.local.unwrap_or(&[])),
            "{name}"
        );
        assert_eq!(p.has_any_endpoints, case.has_any, "{name}");
        for d in &p.decisions {
            let in_cluster = p.cluster_endpoints.iter().any(|t| t.ip == d.ip);
            let in_local = p.local_endpoints.iter().any(|t| t.ip == d.ip);
            assert_eq!(
                (d.for_cluster, d.for_local),
                (in_cluster, in_local),
                "{name}: {d:?}"
            );
        }
    }
}
