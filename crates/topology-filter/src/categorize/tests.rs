//! kube-proxy's `TestCategorizeEndpoints` (kubernetes/kubernetes
//! pkg/proxy/topology_test.go, the 26 rows of the current version, commit
//! 6c039d90), one case per upstream row, written as our own cases: each
//! case carries the upstream row's name (`upstream`) and a sentence of
//! ours (`name`). This node is `node-1`; a "local" endpoint runs on it, a
//! remote one on `node-2`. Upstream's `nodePort: 8080` (externally
//! accessible) becomes a NodePort Service.
//!
//! As upstream since 1.33, no case asks for hints: they are used whenever
//! every ready endpoint has them, whatever the Service asks. The rows of
//! the older version about the `topology-mode` annotation ("hints
//! annotation == disabled, hints ignored", …) are gone upstream; what is
//! left of them is [`hints_are_used_whatever_the_service_asks`].
//!
//! The current upstream table has no node-hint rows (its
//! `CategorizeEndpoints` still took no node name); node hints
//! (`PreferSameNode`, 1.35) and the per-family decisions are cased from
//! upstream's topology.go (`topologyModeFromHints`, and one
//! `CategorizeEndpoints` call per family's proxier) in
//! [`node_hints_and_families_as_kube_proxy_1_35`] and in
//! `hints/tests.rs`.

use crate::test_support::{ZONE, *};
use api_watch::{Endpoint, Service};

use Ready::{No, ServingTerminating as St, Yes};

struct Case {
    /// The upstream row's name.
    upstream: &'static str,
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
        Case {
            upstream: "should use topology since all endpoints have hints, node has a zone label and and there are endpoints for the node's zone",
            name: "zone hints narrow the cluster set when every endpoint has one and one matches this node's zone",
            zone: Some("zone-a"),
            service: service(),
            endpoints: four([false, false]),
            cluster: Some(&["10.1.2.3", "10.1.2.6"]),
            local: None,
            has_any: true,
        },
        Case {
            upstream: "externalTrafficPolicy: Local, topology ignored for Local endpoints",
            name: "with externalTrafficPolicy Local the local set ignores the hints the cluster set uses",
            zone: Some("zone-a"),
            service: etp_local(node_port(service())),
            endpoints: four([true, true]),
            cluster: Some(&["10.1.2.3", "10.1.2.6"]),
            local: Some(&["10.1.2.3", "10.1.2.4"]),
            has_any: true,
        },
        Case {
            upstream: "internalTrafficPolicy: Local, topology ignored for Local endpoints",
            name: "with internalTrafficPolicy Local on a NodePort service the local set ignores hints and the cluster set uses them",
            zone: Some("zone-a"),
            service: itp_local(node_port(service())),
            endpoints: four([true, true]),
            cluster: Some(&["10.1.2.3", "10.1.2.6"]),
            local: Some(&["10.1.2.3", "10.1.2.4"]),
            has_any: true,
        },
        Case {
            upstream: "empty node labels",
            name: "a node without labels does not filter by hints",
            zone: None,
            service: service(),
            endpoints: vec![e("10.1.2.3", false, &["zone-a"], Yes)],
            cluster: Some(&["10.1.2.3"]),
            local: None,
            has_any: true,
        },
        Case {
            upstream: "empty zone label",
            name: "a node with an empty zone label does not filter by hints",
            zone: Some(""),
            service: service(),
            endpoints: vec![e("10.1.2.3", false, &["zone-a"], Yes)],
            cluster: Some(&["10.1.2.3"]),
            local: None,
            has_any: true,
        },
        Case {
            upstream: "node in different zone, no endpoint filtering",
            name: "a node in a zone no endpoint is hinted for does not filter",
            zone: Some("zone-b"),
            service: service(),
            endpoints: vec![e("10.1.2.3", false, &["zone-a"], Yes)],
            cluster: Some(&["10.1.2.3"]),
            local: None,
            has_any: true,
        },
        Case {
            upstream: "unready endpoint",
            name: "an unready endpoint hinted for this zone is left out",
            zone: Some("zone-a"),
            service: service(),
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
        Case {
            upstream: "only unready endpoints in same zone (should not filter)",
            name: "when only unready endpoints are hinted for this zone the hints are not used",
            zone: Some("zone-a"),
            service: service(),
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
        Case {
            upstream: "missing hints, no filtering applied",
            name: "one ready endpoint without a hint turns the hints off",
            zone: Some("zone-a"),
            service: service(),
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
        Case {
            upstream: "multiple hints per endpoint, filtering includes any endpoint with zone included",
            name: "an endpoint hinted for several zones is kept when one of them is this node's",
            zone: Some("zone-c"),
            service: service(),
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
        Case {
            upstream: "conflicting topology and localness require merging allEndpoints",
            name: "a local endpoint hinted for another zone is local but not in the cluster set",
            zone: Some("zone-a"),
            service: etp_local(node_port(service())),
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
        Case {
            upstream: "internalTrafficPolicy: Local, with empty endpoints",
            name: "internalTrafficPolicy Local without endpoints has an empty local set and nothing anywhere",
            zone: None,
            service: itp_local(service()),
            endpoints: vec![],
            cluster: None,
            local: Some(&[]),
            has_any: false,
        },
        Case {
            upstream: "internalTrafficPolicy: Local, but all endpoints are remote",
            name: "internalTrafficPolicy Local with only remote endpoints has an empty local set but endpoints elsewhere",
            zone: None,
            service: itp_local(service()),
            endpoints: two([Yes, Yes], [false, false]),
            cluster: None,
            local: Some(&[]),
            has_any: true,
        },
        Case {
            upstream: "internalTrafficPolicy: Local, all endpoints are local",
            name: "internalTrafficPolicy Local keeps every endpoint when all are local",
            zone: None,
            service: itp_local(service()),
            endpoints: two([Yes, Yes], [true, true]),
            cluster: None,
            local: Some(&["10.0.0.0", "10.0.0.1"]),
            has_any: true,
        },
        Case {
            upstream: "internalTrafficPolicy: Local, some endpoints are local",
            name: "internalTrafficPolicy Local keeps only the local endpoints",
            zone: None,
            service: itp_local(service()),
            endpoints: two([Yes, Yes], [true, false]),
            cluster: None,
            local: Some(&["10.0.0.0"]),
            has_any: true,
        },
        Case {
            upstream: "Cluster traffic policy, endpoints not Ready",
            name: "with no ready and no terminating endpoint the cluster set is empty and there is nothing anywhere",
            zone: None,
            service: service(),
            endpoints: two([No, No], [false, false]),
            cluster: Some(&[]),
            local: None,
            has_any: false,
        },
        Case {
            upstream: "Cluster traffic policy, some endpoints are Ready",
            name: "the cluster set keeps the ready endpoints only",
            zone: None,
            service: service(),
            endpoints: two([No, Yes], [false, false]),
            cluster: Some(&["10.0.0.1"]),
            local: None,
            has_any: true,
        },
        Case {
            upstream: "Cluster traffic policy, all endpoints are terminating",
            name: "when no endpoint is ready the cluster set falls back to the serving terminating ones",
            zone: None,
            service: service(),
            endpoints: two([St, St], [true, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: None,
            has_any: true,
        },
        Case {
            upstream: "iTP: Local, eTP: Cluster, some endpoints local",
            name: "iTP Local with eTP Cluster on a NodePort service uses both sets",
            zone: None,
            service: itp_local(node_port(service())),
            endpoints: two([Yes, Yes], [true, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&["10.0.0.0"]),
            has_any: true,
        },
        Case {
            upstream: "iTP: Cluster, eTP: Local, some endpoints local",
            name: "iTP Cluster with eTP Local uses both sets",
            zone: None,
            service: etp_local(node_port(service())),
            endpoints: two([Yes, Yes], [true, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&["10.0.0.0"]),
            has_any: true,
        },
        Case {
            upstream: "iTP: Local, eTP: Local, some endpoints local",
            name: "iTP Local with eTP Local still uses the cluster set, for short-circuit traffic",
            zone: None,
            service: itp_local(etp_local(node_port(service()))),
            endpoints: two([Yes, Yes], [true, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&["10.0.0.0"]),
            has_any: true,
        },
        Case {
            upstream: "iTP: Local, eTP: Local, all endpoints remote",
            name: "iTP and eTP Local with only remote endpoints have an empty local set and a full cluster set",
            zone: None,
            service: itp_local(etp_local(node_port(service()))),
            endpoints: two([Yes, Yes], [false, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&[]),
            has_any: true,
        },
        Case {
            upstream: "iTP: Local, eTP: Local, all endpoints remote and terminating",
            name: "iTP and eTP Local with only remote terminating endpoints fall back in the cluster set only",
            zone: None,
            service: itp_local(etp_local(node_port(service()))),
            endpoints: two([St, St], [false, false]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: Some(&[]),
            has_any: true,
        },
        Case {
            upstream: "iTP: Cluster, eTP: Local, with terminating endpoints",
            name: "the local set falls back to a local terminating endpoint while the cluster set keeps the ready remote one",
            zone: None,
            service: etp_local(node_port(service())),
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
        Case {
            upstream: "externalTrafficPolicy ignored if not externally accessible",
            name: "externalTrafficPolicy Local is ignored on a service that is not externally accessible",
            zone: None,
            service: etp_local(service()),
            endpoints: two([Yes, Yes], [false, true]),
            cluster: Some(&["10.0.0.0", "10.0.0.1"]),
            local: None,
            has_any: true,
        },
        Case {
            upstream: "no cluster endpoints for iTP:Local internal-only service",
            name: "an internal-only service with iTP Local uses no cluster set",
            zone: None,
            service: itp_local(service()),
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
        let name = format!("{} (upstream: {:?})", case.name, case.upstream);
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

/// What is left of the older upstream rows about the annotation ("hints,
/// hints annotation == disabled, hints ignored", "… aUto (wrong
/// capitalization) …", "… empty …"): since 1.33 kube-proxy no longer reads
/// what the Service asks; the hints decide.
#[test]
fn hints_are_used_whatever_the_service_asks() {
    let four = || {
        vec![
            e("10.1.2.3", false, &["zone-a"], Yes),
            e("10.1.2.4", false, &["zone-b"], Yes),
            e("10.1.2.5", false, &["zone-c"], Yes),
            e("10.1.2.6", false, &["zone-a"], Yes),
        ]
    };
    let services = [
        ("nothing", service()),
        (
            "topology-mode Disabled",
            annotated(service(), &[(crate::TOPOLOGY_MODE_ANNOTATION, "Disabled")]),
        ),
        (
            "topology-mode aUto",
            annotated(service(), &[(crate::TOPOLOGY_MODE_ANNOTATION, "aUto")]),
        ),
        ("PreferSameNode", distribution(service(), "PreferSameNode")),
        ("PreferClose", distribution(service(), "PreferClose")),
    ];
    for (asks, svc) in services {
        let st = state(svc, four(), vec![node("node-1", &[(ZONE, "zone-a")])]);
        let p = port_plan(&st, "node-1");
        assert_eq!(
            ips(&p.cluster_endpoints),
            strings(&["10.1.2.3", "10.1.2.6"]),
            "a Service that asks for {asks}"
        );
        assert_eq!(
            p.rule.to_string(),
            "hints: PreferSameZone (zone zone-a)",
            "{asks}"
        );
    }
}

/// One family's part of a plan: (cluster set, local set) of that family.
fn family(p: &crate::ServicePortPlan, v6: bool) -> (Vec<String>, Vec<String>) {
    let of = |set: &[crate::EndpointTarget]| {
        set.iter()
            .filter(|t| t.ip.is_ipv6() == v6)
            .map(|t| t.ip.to_string())
            .collect()
    };
    (of(&p.cluster_endpoints), of(&p.local_endpoints))
}

struct FamilyCase {
    name: &'static str,
    service: Service,
    endpoints: Vec<Endpoint>,
    v4: (&'static [&'static str], &'static [&'static str]),
    v6: (&'static [&'static str], &'static [&'static str]),
    /// has any endpoint: (IPv4, IPv6).
    has_any: (bool, bool),
    rule: &'static str,
}

/// An endpoint like [`e`], with node hints too.
fn with_nodes(
    ip: &str,
    local: bool,
    nodes: &[&str],
    zone_hints: &[&str],
    ready: Ready,
) -> Endpoint {
    for_nodes(e(ip, local, zone_hints, ready), nodes)
}

/// Node hints as 1.35's topology.go reads them, and each IP family decided
/// apart, as kube-proxy's two proxiers (one per family, each handed only
/// its family's endpoints) do.
#[test]
fn node_hints_and_families_as_kube_proxy_1_35() {
    let cases = vec![
        FamilyCase {
            name: "node hints win over zone hints when every ready endpoint has one and one names this node",
            service: service(),
            endpoints: vec![
                with_nodes("10.0.0.1", true, &["node-1"], &["zone-a"], Yes),
                with_nodes("10.0.0.2", false, &["node-2"], &["zone-a"], Yes),
            ],
            v4: (&["10.0.0.1"], &[]),
            v6: (&[], &[]),
            has_any: (true, false),
            rule: "hints: PreferSameNode (node node-1)",
        },
        FamilyCase {
            name: "the readiness fallback is decided per family: IPv6 falls back to its terminating endpoints while IPv4 has a ready one",
            service: service(),
            endpoints: vec![
                e("10.0.0.1", false, &[], Yes),
                e("10.0.0.2", false, &[], St),
                e("fd00::1", false, &[], St),
                e("fd00::2", false, &[], No),
            ],
            v4: (&["10.0.0.1"], &[]),
            v6: (&["fd00::1"], &[]),
            has_any: (true, true),
            rule: "none",
        },
        FamilyCase {
            name: "hints are decided per family: IPv4 endpoints all hinted are filtered, IPv6 ones with a hint missing are not",
            service: service(),
            endpoints: vec![
                e("10.0.0.1", false, &["zone-a"], Yes),
                e("10.0.0.2", false, &["zone-b"], Yes),
                e("fd00::1", false, &["zone-a"], Yes),
                e("fd00::2", false, &[], Yes),
            ],
            v4: (&["10.0.0.1"], &[]),
            v6: (&["fd00::1", "fd00::2"], &[]),
            has_any: (true, true),
            rule: "IPv4: hints: PreferSameZone (zone zone-a); IPv6: none",
        },
        FamilyCase {
            name: "has any endpoint is decided per family: iTP Local with remote IPv4 endpoints only has none in IPv6",
            service: itp_local(service()),
            endpoints: vec![e("10.0.0.1", false, &[], Yes), e("fd00::1", false, &[], No)],
            v4: (&[], &[]),
            v6: (&[], &[]),
            has_any: (true, false),
            rule: "internalTrafficPolicy: Local",
        },
        FamilyCase {
            name: "the local fallback is decided per family too",
            service: itp_local(service()),
            endpoints: vec![
                e("10.0.0.1", true, &[], Yes),
                e("10.0.0.2", true, &[], St),
                e("fd00::1", true, &[], St),
            ],
            v4: (&[], &["10.0.0.1"]),
            v6: (&[], &["fd00::1"]),
            has_any: (true, true),
            rule: "internalTrafficPolicy: Local",
        },
    ];
    for case in cases {
        let st = state(
            case.service,
            case.endpoints,
            vec![node("node-1", &[(ZONE, "zone-a")])],
        );
        let p = port_plan(&st, "node-1");
        let name = case.name;
        let want = |(c, l): (&[&str], &[&str])| (strings(c), strings(l));
        assert_eq!(family(&p, false), want(case.v4), "{name}: IPv4");
        assert_eq!(family(&p, true), want(case.v6), "{name}: IPv6");
        assert_eq!(
            (p.has_any_ipv4_endpoints, p.has_any_ipv6_endpoints),
            case.has_any,
            "{name}"
        );
        let v4: std::net::IpAddr = "10.43.0.1".parse().unwrap();
        let v6: std::net::IpAddr = "fd43::1".parse().unwrap();
        assert_eq!(
            (p.has_any_endpoints_for(&v4), p.has_any_endpoints_for(&v6)),
            case.has_any,
            "{name}"
        );
        assert_eq!(
            p.has_any_endpoints,
            case.has_any.0 || case.has_any.1,
            "{name}"
        );
        assert_eq!(p.rule.to_string(), case.rule, "{name}");
    }
}
