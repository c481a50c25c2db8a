//! Which hints a Service asks for (the annotation parser: it decides
//! nothing since 1.33, but unknown values are reported), and node and zone
//! hints (kube-proxy 1.35's `topologyModeFromHints`, pkg/proxy/topology.go)
//! over the whole plan.

use super::*;
use crate::test_support::{ZONE, *};
use crate::ProblemKind;
use api_watch::Endpoint;

#[test]
fn the_service_asks_for_hints_by_field_or_annotation() {
    let mode = |v: &str| annotated(service(), &[(TOPOLOGY_MODE_ANNOTATION, v)]);
    let old = |v: &str| annotated(service(), &[(TOPOLOGY_AWARE_HINTS_ANNOTATION, v)]);
    let bad_annotation = ProblemKind::UnknownHintsAnnotation;
    let cases: Vec<(&str, api_watch::Service, Request, Vec<ProblemKind>)> = vec![
        (
            "a service without settings asks for nothing",
            service(),
            Request::Off,
            vec![],
        ),
        (
            "trafficDistribution PreferClose asks for zone hints",
            distribution(service(), "PreferClose"),
            Request::Zone,
            vec![],
        ),
        (
            "trafficDistribution PreferSameZone asks for zone hints",
            distribution(service(), "PreferSameZone"),
            Request::Zone,
            vec![],
        ),
        (
            "trafficDistribution PreferSameNode asks for node hints",
            distribution(service(), "PreferSameNode"),
            Request::Node,
            vec![],
        ),
        (
            "an unknown trafficDistribution asks for nothing and is reported",
            distribution(service(), "PreferSameRack"),
            Request::Off,
            vec![ProblemKind::UnknownTrafficDistribution],
        ),
        (
            "topology-mode Auto asks for zone hints",
            mode("Auto"),
            Request::Zone,
            vec![],
        ),
        (
            "topology-mode auto asks for zone hints",
            mode("auto"),
            Request::Zone,
            vec![],
        ),
        (
            "topology-mode disabled asks for nothing",
            mode("disabled"),
            Request::Off,
            vec![],
        ),
        (
            "topology-mode Disabled asks for nothing",
            mode("Disabled"),
            Request::Off,
            vec![],
        ),
        (
            "an empty topology-mode asks for nothing",
            mode(""),
            Request::Off,
            vec![],
        ),
        (
            "topology-mode aUto asks for nothing and is reported",
            mode("aUto"),
            Request::Off,
            vec![bad_annotation],
        ),
        (
            "the older topology-aware-hints annotation asks for zone hints too",
            old("Auto"),
            Request::Zone,
            vec![],
        ),
        (
            "when both annotations are set the older one wins, even when it is Disabled",
            annotated(old("Disabled"), &[(TOPOLOGY_MODE_ANNOTATION, "Auto")]),
            Request::Off,
            vec![],
        ),
        (
            "when both annotations are set the newer one is not even checked",
            annotated(old("auto"), &[(TOPOLOGY_MODE_ANNOTATION, "Bogus")]),
            Request::Zone,
            vec![],
        ),
        (
            "trafficDistribution wins over an annotation that says Disabled",
            distribution(mode("Disabled"), "PreferClose"),
            Request::Zone,
            vec![],
        ),
        (
            "a bad annotation is reported even when trafficDistribution asks",
            distribution(mode("yes"), "PreferSameNode"),
            Request::Node,
            vec![bad_annotation],
        ),
    ];
    for (name, svc, want, problems) in cases {
        let (got, got_problems) = request(&svc);
        assert_eq!(got, want, "{name}");
        let kinds: Vec<ProblemKind> = got_problems.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, problems, "{name}");
    }
}

#[test]
fn problems_name_the_setting_and_what_was_done() {
    let svc = annotated(
        distribution(service(), "Nearest"),
        &[(TOPOLOGY_MODE_ANNOTATION, "aUto")],
    );
    let plan = crate::plan(&state(svc, vec![], vec![]), "node-1");
    let got: Vec<String> = plan
        .problems
        .iter()
        .map(|p| format!("{} {}: {}", p.object, p.kind, p.message))
        .collect();
    assert_eq!(
        got,
        [
            "default/svc unknown_traffic_distribution: spec.trafficDistribution \"Nearest\" ignored: expected PreferClose, PreferSameZone or PreferSameNode; hints are used where the EndpointSlices have them, whatever the Service asks",
            "default/svc unknown_hints_annotation: annotation service.kubernetes.io/topology-mode \"aUto\" ignored: expected Auto, auto, Disabled, disabled or empty; hints are used where the EndpointSlices have them, whatever the Service asks",
        ]
    );
}

struct Case {
    name: &'static str,
    service: api_watch::Service,
    endpoints: Vec<Endpoint>,
    cluster: &'static [&'static str],
    rule: &'static str,
    /// A piece of the reason of the first decision.
    reason: &'static str,
}

/// An endpoint on `on` with node and zone hints.
fn e(ip: &str, on: &str, nodes: &[&str], zone_hints: &[&str]) -> Endpoint {
    zones(for_nodes(ep(ip, on, Ready::Yes), nodes), zone_hints)
}

#[test]
fn hints_choose_the_cluster_set_as_kube_proxy_does() {
    let same_node = || distribution(service(), "PreferSameNode");
    let cases = vec![
        // upstream 1.33+: all endpoints have node hints and one is for this node
        Case {
            name: "PreferSameNode keeps the endpoints hinted for this node",
            service: same_node(),
            endpoints: vec![
                e("10.0.0.1", "node-1", &["node-1"], &["zone-a"]),
                e("10.0.0.2", "node-2", &["node-2"], &["zone-a"]),
                e("10.0.0.3", "node-3", &["node-3"], &["zone-b"]),
            ],
            cluster: &["10.0.0.1"],
            rule: "hints: PreferSameNode (node node-1)",
            reason: "kept: hinted for this node node-1 (PreferSameNode)",
        },
        // upstream 1.33+: an endpoint missing a node hint → zone hints
        Case {
            name: "PreferSameNode falls back to zone hints when an endpoint has no node hint",
            service: same_node(),
            endpoints: vec![
                e("10.0.0.1", "node-1", &["node-1"], &["zone-a"]),
                e("10.0.0.2", "node-2", &[], &["zone-a"]),
                e("10.0.0.3", "node-3", &["node-3"], &["zone-b"]),
            ],
            cluster: &["10.0.0.1", "10.0.0.2"],
            rule: "hints: PreferSameZone (zone zone-a)",
            reason: "kept: hinted for this node's zone zone-a (PreferSameZone)",
        },
        // upstream 1.33+: no endpoint hinted for this node → zone hints
        Case {
            name: "PreferSameNode falls back to zone hints when no endpoint is hinted for this node",
            service: same_node(),
            endpoints: vec![
                e("10.0.0.2", "node-2", &["node-2"], &["zone-a"]),
                e("10.0.0.3", "node-3", &["node-3"], &["zone-b"]),
            ],
            cluster: &["10.0.0.2"],
            rule: "hints: PreferSameZone (zone zone-a)",
            reason: "kept: hinted for this node's zone zone-a",
        },
        Case {
            name: "PreferSameNode filters nothing when neither node nor zone hints can be used, and says why",
            service: same_node(),
            endpoints: vec![
                e("10.0.0.2", "node-2", &["node-2"], &["zone-b"]),
                e("10.0.0.3", "node-3", &["node-3"], &[]),
            ],
            cluster: &["10.0.0.2", "10.0.0.3"],
            rule: "none",
            reason: "kept: topology-aware hints not used: no endpoint is hinted for node node-1, and endpoint 10.0.0.3 has no zone hint",
        },
        Case {
            name: "zone hints drop the endpoints hinted for other zones and name them",
            service: distribution(service(), "PreferSameZone"),
            endpoints: vec![
                e("10.0.0.1", "node-3", &[], &["zone-b", "zone-c"]),
                e("10.0.0.2", "node-2", &[], &["zone-a"]),
            ],
            cluster: &["10.0.0.2"],
            rule: "hints: PreferSameZone (zone zone-a)",
            reason: "dropped: hinted for zones zone-b, zone-c, not this node's zone zone-a (PreferSameZone)",
        },
        // topology.go: node hints are checked first, whatever the Service asks
        Case {
            name: "node hints are used even when the Service asks for zone hints",
            service: distribution(service(), "PreferClose"),
            endpoints: vec![
                e("10.0.0.1", "node-1", &["node-1"], &["zone-a"]),
                e("10.0.0.2", "node-2", &["node-2"], &["zone-a"]),
            ],
            cluster: &["10.0.0.1"],
            rule: "hints: PreferSameNode (node node-1)",
            reason: "kept: hinted for this node node-1 (PreferSameNode)",
        },
        // topology.go (1.33+): hints are used whatever the Service asks
        Case {
            name: "hints are used when the Service asks for nothing",
            service: service(),
            endpoints: vec![
                e("10.0.0.1", "node-1", &[], &["zone-b"]),
                e("10.0.0.2", "node-2", &[], &["zone-a"]),
            ],
            cluster: &["10.0.0.2"],
            rule: "hints: PreferSameZone (zone zone-a)",
            reason: "dropped: hinted for zone zone-b, not this node's zone zone-a (PreferSameZone)",
        },
        Case {
            name: "hints are used when the annotation says Disabled",
            service: annotated(service(), &[(TOPOLOGY_MODE_ANNOTATION, "Disabled")]),
            endpoints: vec![e("10.0.0.1", "node-3", &[], &["zone-b"]), e("10.0.0.2", "node-2", &[], &["zone-a"])],
            cluster: &["10.0.0.2"],
            rule: "hints: PreferSameZone (zone zone-a)",
            reason: "dropped: hinted for zone zone-b",
        },
        Case {
            name: "without any hint nothing is filtered and nothing about hints is said",
            service: distribution(service(), "PreferSameNode"),
            endpoints: vec![e("10.0.0.1", "node-3", &[], &[]), e("10.0.0.2", "node-2", &[], &[])],
            cluster: &["10.0.0.1", "10.0.0.2"],
            rule: "none",
            reason: "kept: no topology rules",
        },
        Case {
            name: "node hints alone that name another node filter nothing and say why",
            service: service(),
            endpoints: vec![e("10.0.0.1", "node-3", &["node-3"], &[]), e("10.0.0.2", "node-2", &["node-2"], &[])],
            cluster: &["10.0.0.1", "10.0.0.2"],
            rule: "none",
            reason: "kept: topology-aware hints not used: no endpoint is hinted for node node-1",
        },
        Case {
            name: "zone hints on a node without a zone label filter nothing and say why",
            service: service(),
            endpoints: vec![e("10.0.0.1", "node-3", &[], &["zone-b"]), e("10.0.0.2", "node-2", &[], &["zone-a"])],
            cluster: &["10.0.0.1", "10.0.0.2"],
            rule: "none",
            reason: "kept: topology-aware hints not used: this node has no topology.kubernetes.io/zone label",
        },
        Case {
            name: "the terminating fallback ignores hints",
            service: distribution(service(), "PreferClose"),
            endpoints: vec![
                zones(ep("10.0.0.1", "node-3", Ready::ServingTerminating), &["zone-b"]),
                zones(ep("10.0.0.2", "node-2", Ready::ServingTerminating), &["zone-a"]),
            ],
            cluster: &["10.0.0.1", "10.0.0.2"],
            rule: "none",
            reason: "kept: serving but terminating, used because no endpoint is ready (topology is not applied)",
        },
    ];
    for case in cases {
        let zoneless = case.name.contains("without a zone label");
        let this = if zoneless {
            node("node-1", &[])
        } else {
            node("node-1", &[(ZONE, "zone-a")])
        };
        let nodes = vec![
            this,
            node("node-2", &[(ZONE, "zone-a")]),
            node("node-3", &[(ZONE, "zone-b")]),
        ];
        let p = port_plan(&state(case.service, case.endpoints, nodes), "node-1");
        let name = case.name;
        assert_eq!(ips(&p.cluster_endpoints), strings(case.cluster), "{name}");
        assert_eq!(p.endpoints(), p.cluster_endpoints, "{name}");
        assert_eq!(p.rule.to_string(), case.rule, "{name}");
        let first = &p.decisions[0].reason;
        assert!(first.contains(case.reason), "{name}: {first}");
    }
}

/// Hints are used whatever the Service asks, so a Service whose slices
/// carry hints depends on this node's zone even when it asks for nothing:
/// re-planning [`crate::node_dependents`] after the zone changes gives
/// the plan of the new state.
#[test]
fn a_zone_change_re_plans_every_service_with_hinted_endpoints() {
    let hinted = || {
        vec![
            e("10.0.0.1", "node-1", &[], &["zone-a"]),
            e("10.0.0.2", "node-2", &[], &["zone-b"]),
        ]
    };
    let mut before = state(
        service(),
        hinted(),
        vec![node("node-1", &[(ZONE, "zone-a")])],
    );
    // A second Service without hints in its slice.
    let mut plain = service();
    plain.key = api_watch::ObjectKey::new("default", "plain");
    plain.cluster_ips = vec!["10.43.0.2".parse().unwrap()];
    let mut slice = before.endpoint_slices.values().next().unwrap().clone();
    slice.key = api_watch::ObjectKey::new("default", "plain-1");
    slice.service_name = "plain".into();
    slice.endpoints = vec![ep("10.0.0.3", "node-2", Ready::Yes)];
    before.endpoint_slices.insert(slice.key.clone(), slice);
    before.services.insert(plain.key.clone(), Box::new(plain));

    assert_eq!(
        crate::node_dependents(&before),
        [api_watch::ObjectKey::new("default", "svc")].into(),
        "the Service with hinted endpoints, which asks for nothing"
    );
    let mut kept = crate::plan(&before, "node-1");
    assert_eq!(ips(kept.services[1].endpoints()), strings(&["10.0.0.1"]));
    let mut after = before.clone();
    after
        .nodes
        .insert("node-1".into(), node("node-1", &[(ZONE, "zone-b")]));
    crate::replan(&mut kept, &after, &crate::node_dependents(&after));
    assert_eq!(kept, crate::plan(&after, "node-1"));
    assert_eq!(ips(kept.services[1].endpoints()), strings(&["10.0.0.2"]));
}
