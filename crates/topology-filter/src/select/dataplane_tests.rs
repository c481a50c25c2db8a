//! What the plan carries for the data plane beyond endpoint selection:
//! external addresses, source ranges, which set each kind of traffic uses,
//! session affinity, this node's addresses, FQDN slices, and dual stack.

use std::net::IpAddr;

use api_watch::{
    AddressType, ClusterState, EndpointPort, EndpointSlice, Node, ObjectKey, Protocol, Service,
    ServiceType,
};

use crate::test_support::{HOSTNAME, *};
use crate::{plan, ProblemKind, Rule};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips_of(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|s| ip(s)).collect()
}

/// The external-traffic fields of a port plan, compared as one value.
#[derive(Debug, PartialEq)]
struct External {
    external_ips: Vec<IpAddr>,
    load_balancer_ips: Vec<IpAddr>,
    load_balancer_source_ranges: Vec<String>,
    external_policy_local: bool,
    internal_policy_local: bool,
    session_affinity_timeout: Option<u32>,
}

fn external(
    external_ips: &[&str],
    load_balancer_ips: &[&str],
    ranges: &[&str],
    (external_policy_local, internal_policy_local): (bool, bool),
    session_affinity_timeout: Option<u32>,
) -> External {
    External {
        external_ips: ips_of(external_ips),
        load_balancer_ips: ips_of(load_balancer_ips),
        load_balancer_source_ranges: strings(ranges),
        external_policy_local,
        internal_policy_local,
        session_affinity_timeout,
    }
}

fn with_external_ips(mut s: Service, v: &[&str]) -> Service {
    s.external_ips = ips_of(v);
    s
}

fn load_balancer(mut s: Service, lb: &[&str], ranges: &[&str]) -> Service {
    s.service_type = ServiceType::LoadBalancer;
    s.ports[0].node_port = Some(30080);
    s.load_balancer_ips = ips_of(lb);
    s.load_balancer_source_ranges = strings(ranges);
    s
}

fn affinity(mut s: Service, timeout: u32) -> Service {
    s.session_affinity_timeout = Some(timeout);
    s
}

#[test]
fn each_port_plan_carries_the_services_external_addresses_policies_and_affinity() {
    let cases = [
        (
            "a plain ClusterIP service has no external addresses, no local policy and no affinity",
            service(),
            external(&[], &[], &[], (false, false), None),
        ),
        (
            "eTP Local on a ClusterIP service without external addresses is not an external local policy",
            etp_local(service()),
            external(&[], &[], &[], (false, false), None),
        ),
        (
            "eTP Local on a NodePort service makes external traffic local",
            etp_local(node_port(service())),
            external(&[], &[], &[], (true, false), None),
        ),
        (
            "eTP Local on a ClusterIP service with external IPs makes external traffic local",
            etp_local(with_external_ips(service(), &["192.0.2.10", "2001:db8::10"])),
            external(&["192.0.2.10", "2001:db8::10"], &[], &[], (true, false), None),
        ),
        (
            "a LoadBalancer service carries its ingress IPs and source ranges",
            load_balancer(service(), &["198.51.100.7"], &["203.0.113.0/24", "2001:db8::/32"]),
            external(&[], &["198.51.100.7"], &["203.0.113.0/24", "2001:db8::/32"], (false, false), None),
        ),
        (
            "iTP Local without topology keys makes internal traffic local",
            itp_local(service()),
            external(&[], &[], &[], (false, true), None),
        ),
        (
            "iTP Local with valid topology keys leaves internal traffic to the keys",
            itp_local(keys(service(), &[HOSTNAME, "*"])),
            external(&[], &[], &[], (false, false), None),
        ),
        (
            "iTP Local with invalid topology keys still makes internal traffic local",
            itp_local(keys(service(), &["*", HOSTNAME])),
            external(&[], &[], &[], (false, true), None),
        ),
        (
            "both policies Local on a NodePort service make both kinds of traffic local",
            itp_local(etp_local(node_port(service()))),
            external(&[], &[], &[], (true, true), None),
        ),
        (
            "ClientIP affinity carries its timeout",
            affinity(service(), 600),
            external(&[], &[], &[], (false, false), Some(600)),
        ),
    ];
    let nodes = || vec![node("node-1", &[(HOSTNAME, "node-1")])];
    for (name, svc, want) in cases {
        let p = port_plan(
            &state(svc, vec![ep("10.42.1.5", "node-1", Ready::Yes)], nodes()),
            "node-1",
        );
        let got = External {
            external_ips: p.external_ips.clone(),
            load_balancer_ips: p.load_balancer_ips.clone(),
            load_balancer_source_ranges: p
                .load_balancer_source_ranges
                .iter()
                .map(ToString::to_string)
                .collect(),
            external_policy_local: p.external_policy_local,
            internal_policy_local: p.internal_policy_local,
            session_affinity_timeout: p.session_affinity_timeout,
        };
        assert_eq!(got, want, "{name}");
        assert_eq!(
            p.internal_policy_local,
            p.rule == Rule::InternalLocal,
            "{name}"
        );
        if p.internal_policy_local {
            assert_eq!(
                p.endpoints(),
                p.local_endpoints,
                "{name}: endpoints is the local set"
            );
        }
    }
}

fn addressed(name: &str, addresses: &[(&str, &str)]) -> Node {
    Node {
        addresses: addresses
            .iter()
            .map(|(t, a)| (t.to_string(), ip(a)))
            .collect(),
        ..node(name, &[(HOSTNAME, name)])
    }
}

#[test]
fn the_plan_lists_this_nodes_internal_addresses_else_its_external_ones() {
    let cases = [
        (
            "internal addresses of both families are listed in Node order, external ones left out",
            vec![addressed(
                "node-1",
                &[
                    ("ExternalIP", "203.0.113.1"),
                    ("InternalIP", "fd00::11"),
                    ("InternalIP", "172.31.0.11"),
                ],
            )],
            &["fd00::11", "172.31.0.11"][..],
        ),
        (
            "a node without internal addresses lists its external ones",
            vec![addressed(
                "node-1",
                &[("ExternalIP", "203.0.113.1"), ("ExternalIP", "2001:db8::1")],
            )],
            &["203.0.113.1", "2001:db8::1"][..],
        ),
        (
            "a node with neither lists nothing",
            vec![addressed("node-1", &[])],
            &[][..],
        ),
        (
            "an unknown node lists nothing, whatever other nodes have",
            vec![addressed("node-2", &[("InternalIP", "172.31.0.12")])],
            &[][..],
        ),
    ];
    for (name, nodes, want) in cases {
        let p = plan(&state(service(), vec![], nodes), "node-1");
        assert_eq!(p.node_addresses, ips_of(want), "{name}");
    }
}

fn slice_of(
    service: &str,
    name: &str,
    address_type: AddressType,
    ports: &[(&str, u16)],
    endpoints: Vec<api_watch::Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        key: ObjectKey::new("default", name),
        service_name: service.into(),
        address_type,
        ports: ports
            .iter()
            .map(|&(name, port)| EndpointPort {
                name: name.into(),
                protocol: Protocol::Tcp,
                port,
            })
            .collect(),
        endpoints,
    }
}

fn cluster(services: Vec<Service>, slices: Vec<EndpointSlice>) -> ClusterState {
    cluster_state(services, slices, Vec::new())
}

fn named(mut s: Service, name: &str) -> Service {
    s.key = ObjectKey::new("default", name);
    s
}

fn two_ports(mut s: Service) -> Service {
    let mut second = s.ports[0].clone();
    second.name = "b".into();
    second.port = 81;
    s.ports[0].name = "a".into();
    s.ports.push(second);
    s
}

fn fqdn(service: &str, name: &str) -> EndpointSlice {
    slice_of(
        service,
        name,
        AddressType::Fqdn,
        &[("", 80), ("a", 80), ("b", 81)],
        vec![],
    )
}

#[test]
fn fqdn_slices_of_proxied_services_are_reported_once_per_slice() {
    let headless = || {
        let mut s = named(service(), "headless");
        s.cluster_ips.clear();
        s
    };
    let external_name = || {
        let mut s = named(service(), "alias");
        s.service_type = ServiceType::ExternalName;
        s
    };
    let cases = [
        (
            "a service with one FQDN slice gets one problem naming the slice",
            cluster(vec![service()], vec![fqdn("svc", "svc-abc")]),
            &["default/svc: EndpointSlice default/svc-abc has addressType FQDN; not proxied"][..],
        ),
        (
            "a two-port service with two FQDN slices gets one problem per slice, in slice-name order",
            cluster(vec![two_ports(service())], vec![fqdn("svc", "svc-z"), fqdn("svc", "svc-a")]),
            &[
                "default/svc: EndpointSlice default/svc-a has addressType FQDN; not proxied",
                "default/svc: EndpointSlice default/svc-z has addressType FQDN; not proxied",
            ][..],
        ),
        (
            "FQDN slices of headless and ExternalName services, and of no service, are not reported",
            cluster(
                vec![headless(), external_name()],
                vec![fqdn("headless", "headless-1"), fqdn("alias", "alias-1"), fqdn("gone", "gone-1")],
            ),
            &[][..],
        ),
        (
            "IPv4 and IPv6 slices are not reported",
            cluster(
                vec![service()],
                vec![
                    slice_of("svc", "svc-4", AddressType::IPv4, &[("", 80)], vec![]),
                    slice_of("svc", "svc-6", AddressType::IPv6, &[("", 80)], vec![]),
                ],
            ),
            &[][..],
        ),
    ];
    for (name, state, want) in cases {
        let p = plan(&state, "node-1");
        let got: Vec<String> = p
            .problems
            .iter()
            .map(|p| {
                assert_eq!(p.kind, ProblemKind::FqdnSliceIgnored, "{name}");
                format!("{}: {}", p.object, p.message)
            })
            .collect();
        assert_eq!(got, want, "{name}");
        assert_eq!(
            plan(&state, "node-1"),
            p,
            "{name}: the plan is deterministic"
        );
        assert!(
            p.services.iter().all(|s| s.endpoints().is_empty()),
            "{name}"
        );
    }
    assert_eq!(ProblemKind::FqdnSliceIgnored.as_str(), "fqdn_slice_ignored");
}

#[test]
fn a_dual_stack_service_gets_endpoints_and_cluster_ips_of_both_families() {
    let mut svc = service();
    svc.cluster_ips = ips_of(&["10.43.0.1", "fd00:43::1"]);
    svc.ip_families = vec![api_watch::IpFamily::V4, api_watch::IpFamily::V6];
    svc.ip_family_policy = Some("RequireDualStack".into());
    let cases = [
        (
            "every family's endpoints are in the cluster set",
            svc.clone(),
            &["10.42.1.5", "10.42.2.5", "fd00:42::5", "fd00:42::6"][..],
        ),
        (
            "with iTP Local the local set keeps this node's endpoint of each family",
            itp_local(svc),
            &["10.42.1.5", "fd00:42::5"][..],
        ),
    ];
    for (name, svc, want) in cases {
        let slices = vec![
            slice_of(
                "svc",
                "svc-v6",
                AddressType::IPv6,
                &[("", 8080)],
                vec![
                    ep("fd00:42::6", "node-2", Ready::Yes),
                    ep("fd00:42::5", "node-1", Ready::Yes),
                ],
            ),
            slice_of(
                "svc",
                "svc-v4",
                AddressType::IPv4,
                &[("", 8080)],
                vec![
                    ep("10.42.2.5", "node-2", Ready::Yes),
                    ep("10.42.1.5", "node-1", Ready::Yes),
                ],
            ),
            fqdn("svc", "svc-dns"),
        ];
        let p = port_plan(&cluster(vec![svc], slices), "node-1");
        assert_eq!(
            p.cluster_ips,
            ips_of(&["10.43.0.1", "fd00:43::1"]),
            "{name}"
        );
        assert_eq!(ips(p.endpoints()), strings(want), "{name}");
        assert!(p.endpoints().iter().all(|e| e.port == 8080), "{name}");
    }
}

#[test]
fn the_new_fields_serialize_for_explain() {
    let svc = affinity(
        etp_local(load_balancer(
            service(),
            &["198.51.100.7"],
            &["203.0.113.0/24"],
        )),
        600,
    );
    let nodes = vec![addressed("node-1", &[("InternalIP", "172.31.0.11")])];
    let plan = plan(&state(svc, vec![], nodes), "node-1");
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["node_addresses"], serde_json::json!(["172.31.0.11"]));
    let port = &json["services"][0];
    assert_eq!(port["external_ips"], serde_json::json!([]));
    assert_eq!(
        port["load_balancer_ips"],
        serde_json::json!(["198.51.100.7"])
    );
    assert_eq!(
        port["load_balancer_source_ranges"],
        serde_json::json!(["203.0.113.0/24"])
    );
    assert_eq!(port["external_policy_local"], true);
    assert_eq!(port["internal_policy_local"], false);
    assert_eq!(port["session_affinity_timeout"], 600);
    assert_eq!(
        serde_json::to_value(ProblemKind::FqdnSliceIgnored).unwrap(),
        "FqdnSliceIgnored"
    );
}
