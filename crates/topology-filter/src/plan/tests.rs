//! The JSON of a [`ServicePortPlan`] (what `nftopo explain --output json`,
//! `/debug/plan` and `/debug/explain/…` print) is kept byte for byte now
//! that `endpoints` is computed from the two stored sets.

use crate::test_support::{
    ep, etp_local, itp_local, node, node_port, port_plan, service, state, Ready,
};
use crate::ServicePortPlan;
use api_watch::Service;

fn plan_of(service: Service) -> ServicePortPlan {
    let endpoints = vec![
        ep("10.0.0.1", "node-1", Ready::Yes),
        ep("10.0.0.2", "node-2", Ready::Yes),
        ep("10.0.0.3", "node-1", Ready::ServingTerminating),
        ep("10.0.0.4", "", Ready::No),
    ];
    let nodes = vec![node("node-1", &[]), node("node-2", &[])];
    port_plan(&state(service, endpoints, nodes), "node-1")
}

fn json(service: Service) -> (ServicePortPlan, String) {
    let plan = plan_of(service);
    let json = serde_json::to_string(&plan).unwrap();
    (plan, json)
}

/// The JSON is byte for byte what the stored `endpoints` field gave (the
/// strings were printed at the commit before this change), for each way
/// of choosing the list.
#[test]
fn the_json_of_a_port_plan_is_unchanged() {
    let cases = [
        ("cluster", service(), CLUSTER),
        ("itp_local", itp_local(service()), ITP_LOCAL),
        (
            "etp_local_node_port",
            etp_local(node_port(service())),
            ETP_LOCAL_NODE_PORT,
        ),
        (
            "itp_and_etp_local_node_port",
            itp_local(etp_local(node_port(service()))),
            ITP_AND_ETP_LOCAL_NODE_PORT,
        ),
    ];
    for (name, service, want) in cases {
        let (_, got) = json(service);
        assert_eq!(got, want, "{name}");
    }
}

/// `endpoints` is the chosen list, in the JSON as through the method, and
/// it sits between `session_affinity_timeout` and
/// `uses_cluster_endpoints`.
#[test]
fn endpoints_in_the_json_are_the_chosen_list_in_place() {
    for (service, local) in [
        (service(), false),
        (itp_local(service()), true),
        (etp_local(node_port(service())), false),
        (itp_local(etp_local(node_port(service()))), true),
    ] {
        let (plan, text) = json(service);
        let chosen = if local {
            &plan.local_endpoints
        } else {
            &plan.cluster_endpoints
        };
        assert_eq!(plan.endpoints(), chosen.as_slice(), "{text}");
        assert!(!plan.endpoints().is_empty(), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["endpoints"], serde_json::to_value(chosen).unwrap());
        let at = |key: &str| text.find(&format!("\"{key}\":")).expect(key);
        assert!(at("session_affinity_timeout") < at("endpoints"), "{text}");
        assert!(at("endpoints") < at("uses_cluster_endpoints"), "{text}");
    }
}

/// The serving endpoints are kept only where they are not the cluster
/// set's addresses; read through the method, they are the same either way.
#[test]
fn serving_endpoints_are_kept_only_where_they_differ_from_the_cluster_set() {
    // 10.0.0.3 serves while terminating: not in the cluster set.
    let plan = plan_of(service());
    assert_eq!(
        plan.serving_if_other.as_deref(),
        Some(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"].map(|a| a.parse().unwrap())[..])
    );
    assert_eq!(
        plan.serving_endpoints(),
        plan.serving_if_other.clone().unwrap()
    );
    // Every serving endpoint ready: the cluster set's addresses.
    let endpoints = vec![
        ep("10.0.0.1", "node-1", Ready::Yes),
        ep("10.0.0.2", "node-2", Ready::Yes),
        ep("10.0.0.4", "", Ready::No),
    ];
    let nodes = vec![node("node-1", &[]), node("node-2", &[])];
    let plan = port_plan(&state(service(), endpoints, nodes), "node-1");
    assert_eq!(plan.serving_if_other, None);
    let want: Vec<std::net::SocketAddr> = vec![
        "10.0.0.1:80".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    ];
    assert_eq!(plan.serving_endpoints(), want);
    let value: serde_json::Value = serde_json::to_value(&plan).unwrap();
    assert_eq!(
        value["serving_endpoints"],
        serde_json::json!(["10.0.0.1:80", "10.0.0.2:80"])
    );
}

/// `cluster` as serialized before `endpoints` became a method.
const CLUSTER: &str = r#"{"service":{"namespace":"default","name":"svc"},"port_name":"","protocol":"TCP","cluster_ips":["10.43.0.1"],"port":80,"node_port":null,"external_ips":[],"load_balancer_ips":[],"load_balancer_source_ranges":[],"external_policy_local":false,"internal_policy_local":false,"session_affinity_timeout":null,"endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false},{"ip":"10.0.0.2","port":80,"node_name":"node-2","terminating":false}],"uses_cluster_endpoints":true,"uses_local_endpoints":false,"cluster_endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false},{"ip":"10.0.0.2","port":80,"node_name":"node-2","terminating":false}],"local_endpoints":[],"has_any_endpoints":true,"has_any_ipv4_endpoints":true,"has_any_ipv6_endpoints":false,"serving_endpoints":["10.0.0.1:80","10.0.0.2:80","10.0.0.3:80"],"rule":"none","traffic_distribution":null,"decisions":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","for_cluster":true,"for_local":false,"reason":"kept: no topology rules"},{"ip":"10.0.0.2","port":80,"node_name":"node-2","for_cluster":true,"for_local":false,"reason":"kept: no topology rules"},{"ip":"10.0.0.3","port":80,"node_name":"node-1","for_cluster":false,"for_local":false,"reason":"dropped: serving but terminating, used only when no endpoint is ready"},{"ip":"10.0.0.4","port":80,"node_name":null,"for_cluster":false,"for_local":false,"reason":"dropped: not ready"}]}"#;

/// `itp_local` as serialized before `endpoints` became a method.
const ITP_LOCAL: &str = r#"{"service":{"namespace":"default","name":"svc"},"port_name":"","protocol":"TCP","cluster_ips":["10.43.0.1"],"port":80,"node_port":null,"external_ips":[],"load_balancer_ips":[],"load_balancer_source_ranges":[],"external_policy_local":false,"internal_policy_local":true,"session_affinity_timeout":null,"endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false}],"uses_cluster_endpoints":false,"uses_local_endpoints":true,"cluster_endpoints":[],"local_endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false}],"has_any_endpoints":true,"has_any_ipv4_endpoints":true,"has_any_ipv6_endpoints":false,"serving_endpoints":["10.0.0.1:80","10.0.0.2:80","10.0.0.3:80"],"rule":"internalTrafficPolicy: Local","traffic_distribution":null,"decisions":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","for_cluster":false,"for_local":true,"reason":"kept: internalTrafficPolicy Local and the endpoint runs on this node"},{"ip":"10.0.0.2","port":80,"node_name":"node-2","for_cluster":false,"for_local":false,"reason":"dropped: internalTrafficPolicy Local and the endpoint runs on node node-2"},{"ip":"10.0.0.3","port":80,"node_name":"node-1","for_cluster":false,"for_local":false,"reason":"dropped: serving but terminating, used only when no endpoint on this node is ready"},{"ip":"10.0.0.4","port":80,"node_name":null,"for_cluster":false,"for_local":false,"reason":"dropped: internalTrafficPolicy Local and the endpoint's node is not known"}]}"#;

/// `etp_local_node_port` as serialized before `endpoints` became a method.
const ETP_LOCAL_NODE_PORT: &str = r#"{"service":{"namespace":"default","name":"svc"},"port_name":"","protocol":"TCP","cluster_ips":["10.43.0.1"],"port":80,"node_port":30080,"external_ips":[],"load_balancer_ips":[],"load_balancer_source_ranges":[],"external_policy_local":true,"internal_policy_local":false,"session_affinity_timeout":null,"endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false},{"ip":"10.0.0.2","port":80,"node_name":"node-2","terminating":false}],"uses_cluster_endpoints":true,"uses_local_endpoints":true,"cluster_endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false},{"ip":"10.0.0.2","port":80,"node_name":"node-2","terminating":false}],"local_endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false}],"has_any_endpoints":true,"has_any_ipv4_endpoints":true,"has_any_ipv6_endpoints":false,"serving_endpoints":["10.0.0.1:80","10.0.0.2:80","10.0.0.3:80"],"rule":"none","traffic_distribution":null,"decisions":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","for_cluster":true,"for_local":true,"reason":"cluster: kept: no topology rules; local: kept: externalTrafficPolicy Local and the endpoint runs on this node"},{"ip":"10.0.0.2","port":80,"node_name":"node-2","for_cluster":true,"for_local":false,"reason":"cluster: kept: no topology rules; local: dropped: externalTrafficPolicy Local and the endpoint runs on node node-2"},{"ip":"10.0.0.3","port":80,"node_name":"node-1","for_cluster":false,"for_local":false,"reason":"cluster: dropped: serving but terminating, used only when no endpoint is ready; local: dropped: serving but terminating, used only when no endpoint on this node is ready"},{"ip":"10.0.0.4","port":80,"node_name":null,"for_cluster":false,"for_local":false,"reason":"cluster: dropped: not ready; local: dropped: externalTrafficPolicy Local and the endpoint's node is not known"}]}"#;

/// `itp_and_etp_local_node_port` as serialized before `endpoints` became a method.
const ITP_AND_ETP_LOCAL_NODE_PORT: &str = r#"{"service":{"namespace":"default","name":"svc"},"port_name":"","protocol":"TCP","cluster_ips":["10.43.0.1"],"port":80,"node_port":30080,"external_ips":[],"load_balancer_ips":[],"load_balancer_source_ranges":[],"external_policy_local":true,"internal_policy_local":true,"session_affinity_timeout":null,"endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false}],"uses_cluster_endpoints":true,"uses_local_endpoints":true,"cluster_endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false},{"ip":"10.0.0.2","port":80,"node_name":"node-2","terminating":false}],"local_endpoints":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","terminating":false}],"has_any_endpoints":true,"has_any_ipv4_endpoints":true,"has_any_ipv6_endpoints":false,"serving_endpoints":["10.0.0.1:80","10.0.0.2:80","10.0.0.3:80"],"rule":"internalTrafficPolicy: Local","traffic_distribution":null,"decisions":[{"ip":"10.0.0.1","port":80,"node_name":"node-1","for_cluster":true,"for_local":true,"reason":"cluster: kept: no topology rules; local: kept: internalTrafficPolicy and externalTrafficPolicy Local and the endpoint runs on this node"},{"ip":"10.0.0.2","port":80,"node_name":"node-2","for_cluster":true,"for_local":false,"reason":"cluster: kept: no topology rules; local: dropped: internalTrafficPolicy and externalTrafficPolicy Local and the endpoint runs on node node-2"},{"ip":"10.0.0.3","port":80,"node_name":"node-1","for_cluster":false,"for_local":false,"reason":"cluster: dropped: serving but terminating, used only when no endpoint is ready; local: dropped: serving but terminating, used only when no endpoint on this node is ready"},{"ip":"10.0.0.4","port":80,"node_name":null,"for_cluster":false,"for_local":false,"reason":"cluster: dropped: not ready; local: dropped: internalTrafficPolicy and externalTrafficPolicy Local and the endpoint's node is not known"}]}"#;
