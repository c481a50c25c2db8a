//! Builders shared by the table tests: a one-port Service `default/svc`,
//! its endpoints on named nodes, and the resulting sets as strings.

use std::collections::BTreeMap;

use api_watch::{
    AddressType, ClusterState, Conditions, Endpoint, EndpointPort, EndpointSlice, Node, ObjectKey,
    Protocol, Service, ServicePort, ServiceType, TargetPort, TrafficPolicy,
};

use crate::{plan, EndpointTarget, ServicePortPlan};

pub(crate) const HOSTNAME: &str = "kubernetes.io/hostname";
pub(crate) const ZONE: &str = "topology.kubernetes.io/zone";

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn node(name: &str, pairs: &[(&str, &str)]) -> Node {
    Node {
        name: name.into(),
        labels: labels(pairs),
        ..Node::default()
    }
}

/// Service `default/svc` on 10.43.0.1, one TCP port 80 → 80.
pub(crate) fn service() -> Service {
    Service {
        key: ObjectKey::new("default", "svc"),
        cluster_ips: vec!["10.43.0.1".parse().unwrap()],
        ports: vec![ServicePort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: TargetPort::Number(80),
            node_port: None,
        }],
        ..Service::default()
    }
}

/// The Service as type NodePort with node port 30080 (externally
/// accessible).
pub(crate) fn node_port(mut s: Service) -> Service {
    s.service_type = ServiceType::NodePort;
    s.ports[0].node_port = Some(30080);
    s
}

pub(crate) fn itp_local(mut s: Service) -> Service {
    s.internal_traffic_policy = TrafficPolicy::Local;
    s
}

pub(crate) fn etp_local(mut s: Service) -> Service {
    s.external_traffic_policy = TrafficPolicy::Local;
    s
}

pub(crate) fn distribution(mut s: Service, value: &str) -> Service {
    s.traffic_distribution = Some(value.into());
    s
}

pub(crate) fn annotated(mut s: Service, pairs: &[(&str, &str)]) -> Service {
    s.annotations.extend(labels(pairs));
    s
}

pub(crate) fn keys(mut s: Service, keys: &[&str]) -> Service {
    s.topology_keys = Some(keys.iter().map(|k| k.to_string()).collect());
    s
}

/// Readiness as kube-proxy's tests write it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ready {
    /// ready (and serving).
    Yes,
    /// not ready, not serving, not terminating.
    No,
    /// not ready, serving, terminating.
    ServingTerminating,
}

/// An endpoint at `ip` on `node`.
pub(crate) fn ep(ip: &str, node: &str, ready: Ready) -> Endpoint {
    let conditions = match ready {
        Ready::Yes => Conditions::default(),
        Ready::No => Conditions {
            ready: false,
            serving: false,
            terminating: false,
        },
        Ready::ServingTerminating => Conditions {
            ready: false,
            serving: true,
            terminating: true,
        },
    };
    let e = Endpoint::new(ip.parse().unwrap(), conditions);
    if node.is_empty() {
        e
    } else {
        e.on_node(node)
    }
}

pub(crate) fn zones(e: Endpoint, zones: &[&str]) -> Endpoint {
    e.for_zones(zones.iter().copied())
}

pub(crate) fn for_nodes(e: Endpoint, nodes: &[&str]) -> Endpoint {
    e.for_nodes(nodes.iter().copied())
}

/// The Service, one slice with its endpoints (port 80, or `port`), and
/// the nodes.
pub(crate) fn state_with_port(
    service: Service,
    port: u16,
    endpoints: Vec<Endpoint>,
    nodes: Vec<Node>,
) -> ClusterState {
    let slice = EndpointSlice {
        key: ObjectKey::new("default", "svc-1"),
        service_name: "svc".into(),
        address_type: AddressType::IPv4,
        ports: vec![EndpointPort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port,
        }],
        endpoints,
    };
    cluster_state(vec![service], vec![slice], nodes)
}

/// A state holding `services`, `slices` and `nodes`, keyed as the store
/// keys them.
pub(crate) fn cluster_state(
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    nodes: Vec<Node>,
) -> ClusterState {
    ClusterState {
        services: services
            .into_iter()
            .map(|s| (s.key.clone(), Box::new(s)))
            .collect(),
        endpoint_slices: slices
            .into_iter()
            .map(|s| (s.key.clone(), Box::new(s)))
            .collect(),
        nodes: nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
        ..ClusterState::default()
    }
}

pub(crate) fn state(service: Service, endpoints: Vec<Endpoint>, nodes: Vec<Node>) -> ClusterState {
    state_with_port(service, 80, endpoints, nodes)
}

/// The plan of the only service port, for `node`.
pub(crate) fn port_plan(state: &ClusterState, node: &str) -> ServicePortPlan {
    let plan = plan(state, node);
    assert_eq!(plan.services.len(), 1, "{plan:?}");
    plan.services.into_iter().next().unwrap()
}

/// Addresses of a set, in plan order.
pub(crate) fn ips(set: &[EndpointTarget]) -> Vec<String> {
    set.iter().map(|t| t.ip.to_string()).collect()
}

pub(crate) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
