//! The order of the rules (topology keys, then traffic policies, then
//! hints), the reasons when a port uses both sets, the JSON form of the
//! plan, and determinism.

use crate::test_support::{HOSTNAME, ZONE, *};
use crate::{plan, ProblemKind, Rule};
use api_watch::{Endpoint, Node};

fn nodes() -> Vec<Node> {
    ["node-1", "node-2", "node-3"]
        .iter()
        .zip(["zone-a", "zone-a", "zone-b"])
        .map(|(n, z)| node(n, &[(HOSTNAME, n), (ZONE, z)]))
        .collect()
}

/// One ready endpoint on each node, hinted for its node and zone.
fn hinted() -> Vec<Endpoint> {
    nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let e = ep(&format!("10.42.{}.5", i + 1), &n.name, Ready::Yes);
            for_nodes(zones(e, &[n.labels[ZONE].as_str()]), &[n.name.as_str()])
        })
        .collect()
}

struct Case {
    name: &'static str,
    service: api_watch::Service,
    endpoints: Vec<Endpoint>,
    endpoints_used: &'static [&'static str],
    cluster: &'static [&'static str],
    local: &'static [&'static str],
    rule: &'static str,
}

#[test]
fn topology_keys_then_traffic_policies_then_hints() {
    let cases = vec![
        Case {
            name: "valid topology keys override internalTrafficPolicy Local for cluster-IP traffic",
            service: itp_local(keys(service(), &[ZONE])),
            endpoints: hinted(),
            endpoints_used: &["10.42.1.5", "10.42.2.5"],
            cluster: &["10.42.1.5", "10.42.2.5"],
            local: &[],
            rule: "topologyKeys [topology.kubernetes.io/zone] (key 1 matched)",
        },
        Case {
            name: "valid topology keys override hints the service asks for",
            service: distribution(keys(service(), &[ZONE]), "PreferSameNode"),
            endpoints: hinted(),
            endpoints_used: &["10.42.1.5", "10.42.2.5"],
            cluster: &["10.42.1.5", "10.42.2.5"],
            local: &[],
            rule: "topologyKeys [topology.kubernetes.io/zone] (key 1 matched)",
        },
        Case {
            name: "invalid topology keys leave internalTrafficPolicy Local in charge",
            service: itp_local(keys(service(), &["*", ZONE])),
            endpoints: hinted(),
            endpoints_used: &["10.42.1.5"],
            cluster: &[],
            local: &["10.42.1.5"],
            rule: "internalTrafficPolicy: Local",
        },
        Case {
            name: "internalTrafficPolicy Local overrides hints for cluster-IP traffic",
            service: itp_local(distribution(service(), "PreferClose")),
            endpoints: hinted(),
            endpoints_used: &["10.42.1.5"],
            cluster: &[],
            local: &["10.42.1.5"],
            rule: "internalTrafficPolicy: Local",
        },
        Case {
            name: "with topology keys and externalTrafficPolicy Local the keys choose the cluster set and the local set stays this node's",
            service: etp_local(node_port(keys(service(), &[ZONE]))),
            endpoints: hinted(),
            endpoints_used: &["10.42.1.5", "10.42.2.5"],
            cluster: &["10.42.1.5", "10.42.2.5"],
            local: &["10.42.1.5"],
            rule: "topologyKeys [topology.kubernetes.io/zone] (key 1 matched)",
        },
        Case {
            name: "topology keys still apply when only terminating endpoints are left",
            service: keys(service(), &[HOSTNAME]),
            endpoints: vec![
                ep("10.42.1.5", "node-1", Ready::ServingTerminating),
                ep("10.42.2.5", "node-2", Ready::ServingTerminating),
            ],
            endpoints_used: &["10.42.1.5"],
            cluster: &["10.42.1.5"],
            local: &[],
            rule: "topologyKeys [kubernetes.io/hostname] (key 1 matched)",
        },
        Case {
            name: "hints apply when nothing else does",
            service: distribution(service(), "PreferSameNode"),
            endpoints: hinted(),
            endpoints_used: &["10.42.1.5"],
            cluster: &["10.42.1.5"],
            local: &[],
            rule: "hints: PreferSameNode (node node-1)",
        },
    ];
    for case in cases {
        let p = port_plan(&state(case.service, case.endpoints, nodes()), "node-1");
        let name = case.name;
        assert_eq!(ips(p.endpoints()), strings(case.endpoints_used), "{name}");
        assert_eq!(ips(&p.cluster_endpoints), strings(case.cluster), "{name}");
        assert_eq!(ips(&p.local_endpoints), strings(case.local), "{name}");
        assert_eq!(p.rule.to_string(), case.rule, "{name}");
    }
}

#[test]
fn a_port_using_both_sets_gives_one_reason_per_set() {
    let svc = etp_local(node_port(distribution(service(), "PreferClose")));
    // Zone hints only, as the EndpointSlice controller writes them for
    // PreferClose.
    let mut eps: Vec<Endpoint> = hinted().into_iter().map(|e| for_nodes(e, &[])).collect();
    eps.push(ep("10.42.1.6", "node-1", Ready::No));
    let p = port_plan(&state(svc, eps, nodes()), "node-1");
    let got: Vec<String> = p
        .decisions
        .iter()
        .map(|d| format!("{} {} {} {}", d.ip, d.for_cluster, d.for_local, d.reason))
        .collect();
    assert_eq!(
        got,
        [
            "10.42.1.5 true true cluster: kept: hinted for this node's zone zone-a (PreferSameZone); local: kept: externalTrafficPolicy Local and the endpoint runs on this node",
            "10.42.1.6 false false dropped: not ready",
            "10.42.2.5 true false cluster: kept: hinted for this node's zone zone-a (PreferSameZone); local: dropped: externalTrafficPolicy Local and the endpoint runs on node node-2",
            "10.42.3.5 false false cluster: dropped: hinted for zone zone-b, not this node's zone zone-a (PreferSameZone); local: dropped: externalTrafficPolicy Local and the endpoint runs on node node-3",
        ]
    );
    assert_eq!(p.node_port, Some(30080));
    assert_eq!(p.traffic_distribution.as_deref(), Some("PreferClose"));
}

#[test]
fn the_plan_serializes_to_json_for_explain() {
    let svc = keys(service(), &["*", ZONE]);
    let eps = vec![ep("10.42.1.5", "node-1", Ready::ServingTerminating)];
    let plan = plan(&state(svc, eps, nodes()), "node-1");
    assert_eq!(plan.problems[0].kind, ProblemKind::InvalidTopologyKeys);
    let json = serde_json::to_value(&plan).unwrap();
    let port = &json["services"][0];
    assert_eq!(
        port["service"],
        serde_json::json!({"namespace": "default", "name": "svc"})
    );
    assert_eq!(port["protocol"], "TCP");
    assert_eq!(port["cluster_ips"], serde_json::json!(["10.43.0.1"]));
    assert_eq!(port["rule"], "none");
    assert_eq!(
        port["endpoints"],
        serde_json::json!([{"ip": "10.42.1.5", "port": 80, "node_name": "node-1", "terminating": true}])
    );
    assert_eq!(port["decisions"][0]["for_cluster"], true);
    assert_eq!(json["problems"][0]["kind"], "InvalidTopologyKeys");
    assert_eq!(
        Rule::InternalLocal.to_string(),
        "internalTrafficPolicy: Local"
    );
}

#[test]
fn every_rule_gives_the_same_plan_for_the_same_state_built_in_any_order() {
    let services = || {
        vec![
            distribution(service(), "PreferSameNode"),
            {
                let mut s = etp_local(node_port(keys(service(), &[ZONE, "*"])));
                s.key.name = "keys".into();
                s
            },
            {
                let mut s = itp_local(annotated(
                    service(),
                    &[("service.kubernetes.io/topology-mode", "Auto")],
                ));
                s.key.name = "local".into();
                s
            },
        ]
    };
    let build = |reverse: bool| {
        let mut eps = hinted();
        eps.push(ep("10.42.1.9", "node-1", Ready::ServingTerminating));
        let mut all_nodes = nodes();
        let mut svcs = services();
        if reverse {
            eps.reverse();
            all_nodes.reverse();
            svcs.reverse();
        }
        let mut st = state(service(), vec![], all_nodes);
        for s in svcs {
            let mut slice = st.endpoint_slices.values().next().unwrap().clone();
            slice.key.name = format!("{}-1", s.key.name).into();
            slice.service_name = s.key.name.to_string();
            slice.endpoints = eps.clone();
            st.endpoint_slices.insert(slice.key.clone(), slice);
            st.services.insert(s.key.clone(), Box::new(s));
        }
        st
    };
    let (a, b) = (plan(&build(false), "node-1"), plan(&build(true), "node-1"));
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_eq!(a.services.len(), 3);
}
