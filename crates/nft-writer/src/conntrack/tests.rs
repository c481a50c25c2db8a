//! The clean-up's decisions: [`stale_flows`] over hand-made flows (with
//! kube-proxy's `TestCleanStaleEntries` and `TestServiceWithoutEndpoints`,
//! pkg/proxy/conntrack/cleanup_test.go, written as our own cases),
//! [`UdpCleanup`] across plans, and [`crate::udp_services`] over real
//! plans: which endpoints a flow may keep.

use super::*;

use std::net::IpAddr;

use api_watch::{
    AddressType, ClusterState, Conditions, Endpoint, EndpointPort, EndpointSlice, Node, Protocol,
    Service, ServicePort, ServiceType, TargetPort, TrafficPolicy,
};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A flow from `client` to `dst`, answered by `reply` (DNATed when
/// `reply` differs from `dst`).
fn flow(client: &str, dst: &str, reply: &str) -> Flow {
    Flow {
        orig_src: sa(client),
        orig_dst: sa(dst),
        reply_src: sa(reply),
        reply_dst: sa(client),
        dnat: dst != reply,
    }
}

/// Service port `default/<name>` (port name `udp`) with `entries`,
/// served by `serving`.
fn port(name: &str, entries: &[UdpEntry], serving: &[&str]) -> UdpService {
    UdpService {
        service: ObjectKey::new("default", name),
        port_name: "udp".into(),
        entries: entries.to_vec(),
        serving: serving.iter().map(|e| sa(e)).collect(),
    }
}

fn addr(s: &str) -> UdpEntry {
    UdpEntry::Addr(sa(s))
}

struct Case {
    name: &'static str,
    flows: Vec<Flow>,
    desired: Vec<UdpService>,
    stale: Vec<Flow>,
}

fn cases() -> Vec<Case> {
    let dns = |serving: &[&str]| port("dns", &[addr("10.43.0.10:53")], serving);
    let to_a = flow("10.0.1.5:40000", "10.43.0.10:53", "10.42.0.5:5353");
    let to_b = flow("10.0.1.6:40000", "10.43.0.10:53", "10.42.0.6:5353");
    let rejected = flow("10.0.1.7:40000", "10.43.0.10:53", "10.43.0.10:53");
    let np = |serving: &[&str]| port("np", &[UdpEntry::NodePort(30053)], serving);
    let np_a = flow("192.0.2.9:41000", "172.31.0.2:30053", "10.42.0.5:5353");
    let np_b = flow("192.0.2.9:41001", "172.31.0.3:30053", "10.42.0.6:5353");
    let np_rejected = flow("192.0.2.9:41002", "172.31.0.2:30053", "172.31.0.2:30053");
    let elsewhere = flow("10.0.1.5:40001", "10.44.0.1:53", "10.44.0.1:53");
    let direct = flow("10.0.1.5:40002", "10.42.0.5:5353", "10.42.0.5:5353");
    let dns6 = |serving: &[&str]| port("dns6", &[addr("[fd43::a]:53")], serving);
    let v6_a = flow("[fd00::1]:40000", "[fd43::a]:53", "[fd42::5]:5353");
    let v6_b = flow("[fd00::2]:40000", "[fd43::a]:53", "[fd42::6]:5353");
    let v6_rejected = flow("[fd00::3]:40000", "[fd43::a]:53", "[fd43::a]:53");
    vec![
        Case {
            name: "an endpoint that no longer serves: its flows are deleted, the serving endpoint's kept",
            flows: vec![to_a, to_b],
            desired: vec![dns(&["10.42.0.6:5353"])],
            stale: vec![to_a],
        },
        Case {
            name: "an endpoint that only changed its port counts as gone (kube-proxy #130542)",
            flows: vec![to_a],
            desired: vec![dns(&["10.42.0.5:5354"])],
            stale: vec![to_a],
        },
        Case {
            name: "every endpoint still serving: nothing is deleted",
            flows: vec![to_a, to_b],
            desired: vec![dns(&["10.42.0.5:5353", "10.42.0.6:5353"])],
            stale: vec![],
        },
        Case {
            name: "an entry two service ports claim is served by the union of their endpoints",
            flows: vec![to_a, to_b, rejected],
            desired: vec![dns(&["10.42.0.5:5353"]), port("dns-copy", &[addr("10.43.0.10:53")], &["10.42.0.6:5353"])],
            stale: vec![rejected],
        },
        Case {
            name: "the first endpoint: flows to the entry tracked without DNAT are deleted",
            flows: vec![rejected, elsewhere],
            desired: vec![dns(&["10.42.0.5:5353"])],
            stale: vec![rejected],
        },
        Case {
            name: "no serving endpoint: every flow to the entry is deleted, with or without DNAT (kube-proxy #139629)",
            flows: vec![rejected, to_a, elsewhere],
            desired: vec![dns(&[])],
            stale: vec![rejected, to_a],
        },
        Case {
            name: "another port of the same service IP is another entry",
            flows: vec![to_a, flow("10.0.1.5:40003", "10.43.0.10:54", "10.42.0.9:5354")],
            desired: vec![port("other", &[addr("10.43.0.10:54")], &["10.42.0.9:5354"])],
            stale: vec![],
        },
        Case {
            name: "a node port: flows on any local address to an endpoint that no longer serves are deleted",
            flows: vec![np_a, np_b],
            desired: vec![np(&["10.42.0.6:5353"])],
            stale: vec![np_a],
        },
        Case {
            name: "a node port's first endpoint: flows to that port without DNAT are deleted",
            flows: vec![np_rejected, np_b],
            desired: vec![np(&["10.42.0.6:5353"])],
            stale: vec![np_rejected],
        },
        Case {
            name: "an address entry wins over a node port with the same port number",
            flows: vec![flow("10.0.1.5:40004", "10.43.0.20:30053", "10.42.0.7:53")],
            desired: vec![
                port("twenty", &[addr("10.43.0.20:30053")], &["10.42.0.7:53"]),
                np(&["10.42.0.6:5353"]),
            ],
            stale: vec![],
        },
        Case {
            name: "flows to addresses that are no service entry are never touched",
            flows: vec![elsewhere, direct],
            desired: vec![dns(&["10.42.0.6:5353"])],
            stale: vec![],
        },
        Case {
            name: "no desired state deletes nothing (never a flush)",
            flows: vec![to_a, to_b, rejected, np_a, elsewhere],
            desired: vec![],
            stale: vec![],
        },
        Case {
            name: "IPv6: an endpoint that no longer serves, and flows tracked without DNAT once there is one",
            flows: vec![v6_a, v6_b, v6_rejected, to_a],
            desired: vec![dns6(&["[fd42::6]:5353"])],
            stale: vec![v6_a, v6_rejected],
        },
        Case {
            name: "an IPv4 entry never matches an IPv6 flow with the same port",
            flows: vec![v6_a],
            desired: vec![dns(&["10.42.0.6:5353"])],
            stale: vec![],
        },
    ]
}

#[test]
fn stale_flows_follow_the_rules() {
    for c in cases() {
        assert_eq!(stale_flows(&c.flows, &c.desired), c.stale, "{}", c.name);
    }
}

/// kube-proxy's `TestCleanStaleEntries`: a UDP port 8000 on a cluster IP,
/// an external IP and a load-balancer IP, node port 32000; endpoints
/// serving (10.240.0.4), not serving (10.240.1.5) and deleted (10.240.2.6,
/// in no slice). For every DNAT target and every service address at the
/// service port and at a port no service has (3000), plus the node port:
/// only the flows to the service port and the node port whose target does
/// not serve go, and flows without DNAT to the service port go too.
/// (Upstream's TCP and SCTP flows never reach [`stale_flows`]: the dump is
/// UDP only, see the kernel tests.)
#[test]
fn kube_proxys_clean_stale_entries_scenario() {
    let ips = ["172.30.1.1", "1.2.3.4", "192.168.99.100"];
    let mut entries: Vec<UdpEntry> = ips.iter().map(|ip| addr(&format!("{ip}:8000"))).collect();
    entries.push(UdpEntry::NodePort(32000));
    let desired = [port("cleanup-test", &entries, &["10.240.0.4:8000"])];
    let mut flows = Vec::new();
    let mut kept = Vec::new();
    for target in ["10.240.0.4", "10.240.1.5", "10.240.2.6"] {
        let serving = target == "10.240.0.4";
        for ip in ips {
            for dport in [8000, 3000] {
                let f = flow(
                    "10.0.0.1:40000",
                    &format!("{ip}:{dport}"),
                    &format!("{target}:8000"),
                );
                flows.push(f);
                if serving || dport == 3000 {
                    kept.push(f);
                }
            }
        }
        let f = flow(
            "10.0.0.1:40001",
            "10.0.0.2:32000",
            &format!("{target}:8000"),
        );
        flows.push(f);
        if serving {
            kept.push(f);
        }
    }
    for ip in ips {
        for dport in [8000, 3000] {
            let f = flow(
                "10.0.0.1:40002",
                &format!("{ip}:{dport}"),
                &format!("{ip}:{dport}"),
            );
            flows.push(f);
            if dport == 3000 {
                kept.push(f);
            }
        }
    }
    let stale = stale_flows(&flows, &desired);
    let left: Vec<Flow> = flows
        .iter()
        .filter(|f| !stale.contains(f))
        .copied()
        .collect();
    assert_eq!(left, kept);
    assert_eq!(stale.len(), 2 * 3 + 2 + 3);
}

/// kube-proxy's `TestServiceWithoutEndpoints`, as #139629 changed it: a
/// service whose only slice belongs to another service has no serving
/// endpoint, so both its flows go (before #139629 both were kept, and a
/// service scaled to zero kept sending its clients to deleted pods).
#[test]
fn a_service_without_endpoints_loses_every_flow() {
    let desired = [port("cleanup-test", &[addr("192.168.99.100:8000")], &[])];
    let flows = [
        flow("10.0.0.1:40000", "192.168.99.100:8000", "10.240.0.4:8000"),
        flow("10.0.0.1:40001", "192.168.99.100:8000", "10.240.2.6:8000"),
    ];
    assert_eq!(stale_flows(&flows, &desired), flows.to_vec());
}

#[test]
fn a_flow_prints_as_the_conntrack_command_that_deletes_it() {
    let f = flow("10.0.1.5:40000", "10.43.0.10:53", "10.42.0.5:5353");
    assert_eq!(
        f.to_string(),
        "conntrack -D -f ipv4 -p udp --orig-src 10.0.1.5 --orig-dst 10.43.0.10 --sport 40000 --dport 53"
    );
}

/// The entries and serving endpoints of what a clean-up would use, by
/// service name.
fn summary(desired: &[UdpService]) -> Vec<String> {
    desired
        .iter()
        .map(|s| format!("{} {:?} {:?}", s.service.name, s.entries, s.serving))
        .collect()
}

#[test]
fn a_deleted_service_port_is_cleaned_once_as_one_without_endpoints() {
    let dns = port("dns", &[addr("10.43.0.10:53")], &["10.42.0.5:5353"]);
    let web = port(
        "web",
        &[addr("10.43.0.20:53"), UdpEntry::NodePort(30053)],
        &["10.42.0.6:53"],
    );
    let mut cleanup = UdpCleanup::default();
    cleanup.update(vec![dns.clone(), web.clone()]);
    assert_eq!(cleanup.desired(), [dns.clone(), web.clone()]);
    cleanup.cleaned();

    cleanup.update(vec![dns.clone()]);
    let deleted = UdpService {
        serving: BTreeSet::new(),
        ..web.clone()
    };
    assert_eq!(
        cleanup.desired(),
        [dns.clone(), deleted.clone()],
        "web is gone: cleaned with no endpoint"
    );
    let flows = [
        flow("10.0.1.5:40000", "10.43.0.20:53", "10.42.0.6:53"),
        flow("192.0.2.9:41000", "172.31.0.2:30053", "10.42.0.6:53"),
        flow("10.0.1.5:40001", "10.43.0.10:53", "10.42.0.5:5353"),
    ];
    assert_eq!(stale_flows(&flows, &cleanup.desired()), flows[..2].to_vec());

    // A clean-up that fails keeps it for the next one, across updates.
    cleanup.update(vec![dns.clone()]);
    assert_eq!(
        cleanup.desired(),
        [dns.clone(), deleted],
        "kept until a clean-up goes through"
    );
    cleanup.cleaned();
    assert_eq!(
        cleanup.desired(),
        std::slice::from_ref(&dns),
        "cleaned once"
    );
    cleanup.update(vec![dns.clone()]);
    assert_eq!(cleanup.desired(), [dns]);
}

#[test]
fn a_service_port_that_stays_is_not_deleted_whatever_else_changes() {
    let before = port(
        "dns",
        &[addr("10.43.0.10:53"), addr("192.0.2.10:53")],
        &["10.42.0.5:5353"],
    );
    // Same Service and port name: an external IP removed, endpoints
    // changed. As in kube-proxy, the flows to the removed external IP are
    // left to time out.
    let after = port("dns", &[addr("10.43.0.10:53")], &["10.42.0.6:5353"]);
    let mut cleanup = UdpCleanup::default();
    cleanup.update(vec![before]);
    cleanup.update(vec![after.clone()]);
    assert_eq!(summary(&cleanup.desired()), summary(&[after]));
}

/// Deleted and created again between two plans, a service port is seen
/// changed, not deleted (as by kube-proxy's change tracker, which merges
/// the two events): its old address is cleaned only if another service
/// port took it over.
#[test]
fn a_service_port_deleted_and_created_again_between_two_plans_counts_as_changed() {
    let old = port("dns", &[addr("10.43.0.10:53")], &["10.42.0.5:5353"]);
    let new = port("dns", &[addr("10.43.0.11:53")], &["10.42.0.6:5353"]);
    let other = port("other", &[addr("10.43.0.10:53")], &["10.42.0.7:53"]);
    let mut cleanup = UdpCleanup::default();
    cleanup.update(vec![old]);
    cleanup.cleaned();
    cleanup.update(vec![other.clone(), new.clone()]);
    assert_eq!(cleanup.desired(), [new, other], "by Service and port name");
    let flows = [
        flow("10.0.1.5:40000", "10.43.0.10:53", "10.42.0.5:5353"),
        flow("10.0.1.5:40001", "10.43.0.10:53", "10.42.0.7:53"),
    ];
    assert_eq!(stale_flows(&flows, &cleanup.desired()), flows[..1].to_vec());
}

/// The scope of a clean-up follows what changed since the last one that
/// went through: nothing to look at while no serving endpoint went away,
/// one entry's flows when its endpoint did (or its first one came, or its
/// port was deleted), everything before the first clean-up.
#[test]
fn a_clean_up_looks_only_where_a_serving_endpoint_went_away() {
    let entries = |list: &[UdpEntry]| Scope::Entries(list.iter().copied().collect());
    let dns = |eps: &[&str]| port("dns", &[addr("10.43.0.10:53")], eps);
    let web = |eps: &[&str]| {
        port(
            "web",
            &[addr("10.43.0.20:53"), UdpEntry::NodePort(30053)],
            eps,
        )
    };
    let mut cleanup = UdpCleanup::default();
    cleanup.update(vec![dns(&["10.42.0.5:5353"]), web(&[])]);
    assert_eq!(cleanup.scope(), Scope::Everything, "the first clean-up");
    cleanup.cleaned();
    assert_eq!(cleanup.scope(), Scope::Nothing, "nothing changed");

    cleanup.update(vec![dns(&["10.42.0.5:5353", "10.42.0.6:5353"]), web(&[])]);
    assert_eq!(cleanup.scope(), Scope::Nothing, "an endpoint added");
    cleanup.cleaned();

    cleanup.update(vec![dns(&["10.42.0.6:5353"]), web(&[])]);
    assert_eq!(
        cleanup.scope(),
        entries(&[addr("10.43.0.10:53")]),
        "an endpoint went away"
    );
    // Not cleaned (the dump failed): the next sync still looks there.
    cleanup.update(vec![dns(&["10.42.0.6:5353"]), web(&[])]);
    assert_eq!(cleanup.scope(), entries(&[addr("10.43.0.10:53")]));
    cleanup.cleaned();

    cleanup.update(vec![dns(&["10.42.0.6:5353"]), web(&["10.42.0.9:53"])]);
    assert_eq!(
        cleanup.scope(),
        entries(&[addr("10.43.0.20:53"), UdpEntry::NodePort(30053)]),
        "the first endpoint of a port: flows tracked without DNAT"
    );
    cleanup.cleaned();

    cleanup.update(vec![web(&["10.42.0.9:53"])]);
    assert_eq!(
        cleanup.scope(),
        entries(&[addr("10.43.0.10:53")]),
        "a deleted service port"
    );
    cleanup.cleaned();
    assert_eq!(cleanup.scope(), Scope::Nothing, "cleaned once");

    // Many entries at once: one dump of every UDP flow.
    let many: Vec<UdpService> = (0..20)
        .map(|i| {
            port(
                &format!("p{i}"),
                &[addr(&format!("10.43.1.{i}:53"))],
                &["10.42.0.5:53"],
            )
        })
        .collect();
    cleanup.update(many.clone());
    assert_eq!(cleanup.scope(), Scope::Everything);
    cleanup.cleaned();

    // One Service updated: only its entries are looked at, whatever the
    // others hold.
    let mut p3 = many[3].clone();
    p3.serving = ["10.42.0.6:53".parse().unwrap()].into();
    cleanup.update_service(&p3.service.clone(), vec![p3]);
    assert_eq!(cleanup.scope(), entries(&[addr("10.43.1.3:53")]));
    cleanup.cleaned();
    cleanup.update_service(&many[4].service, vec![many[4].clone()]);
    assert_eq!(
        cleanup.scope(),
        Scope::Nothing,
        "updated, nothing went away"
    );
}

/// What serves one UDP service port in real plans: the Service `default/dns`
/// (cluster IP 10.43.0.10, port 53 → 5353) seen from node-1 in zone-a.
mod serving {
    use super::*;

    fn ep(ip: &str, node: &str, (ready, serving, terminating): (bool, bool, bool)) -> Endpoint {
        let conditions = Conditions {
            ready,
            serving,
            terminating,
        };
        Endpoint::new(ip.parse().unwrap(), conditions).on_node(node)
    }

    const READY: (bool, bool, bool) = (true, true, false);
    const SERVING_TERMINATING: (bool, bool, bool) = (false, true, true);
    const NOT_SERVING_TERMINATING: (bool, bool, bool) = (false, false, true);
    const NOT_READY: (bool, bool, bool) = (false, false, false);

    fn service() -> Service {
        Service {
            key: ObjectKey::new("default", "dns"),
            service_type: ServiceType::NodePort,
            cluster_ips: vec!["10.43.0.10".parse().unwrap()],
            external_ips: vec!["192.0.2.10".parse().unwrap()],
            ports: vec![ServicePort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 53,
                target_port: TargetPort::Number(5353),
                node_port: Some(30053),
            }],
            ..Service::default()
        }
    }

    fn plan(service: Service, endpoints: Vec<Endpoint>) -> topology_filter::ProxyPlan {
        let slice = EndpointSlice {
            key: ObjectKey::new("default", "dns-1"),
            service_name: "dns".into(),
            address_type: AddressType::IPv4,
            ports: vec![EndpointPort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 5353,
            }],
            endpoints,
        };
        let node = |name: &str, zone: &str| Node {
            name: name.into(),
            labels: [("topology.kubernetes.io/zone".to_string(), zone.to_string())]
                .into_iter()
                .collect(),
            ..Node::default()
        };
        let state = ClusterState {
            services: [(service.key.clone(), Box::new(service))]
                .into_iter()
                .collect(),
            endpoint_slices: [(slice.key.clone(), Box::new(slice))].into_iter().collect(),
            nodes: [node("node-1", "zone-a"), node("node-2", "zone-b")]
                .into_iter()
                .map(|n| (n.name.clone(), n))
                .collect(),
            ..ClusterState::default()
        };
        topology_filter::plan(&state, "node-1")
    }

    struct Case {
        name: &'static str,
        service: Service,
        endpoints: Vec<Endpoint>,
        /// The endpoints new connections from this node use (for
        /// contrast).
        used: &'static [&'static str],
        serving: &'static [&'static str],
    }

    #[test]
    fn a_flow_may_keep_every_serving_endpoint_whatever_the_policies_and_topology_choose() {
        let hinted = |ip: &str, node: &str, zone: &str| ep(ip, node, READY).for_zones([zone]);
        let mut itp_local = service();
        itp_local.internal_traffic_policy = TrafficPolicy::Local;
        let cases = vec![
            Case {
                name: "a serving and terminating endpoint next to a ready one keeps its flows",
                service: service(),
                endpoints: vec![ep("10.42.0.5", "node-2", SERVING_TERMINATING), ep("10.42.0.6", "node-2", READY)],
                used: &["10.42.0.6"],
                serving: &["10.42.0.5:5353", "10.42.0.6:5353"],
            },
            Case {
                name: "an endpoint hinted for another zone keeps its flows",
                service: service(),
                endpoints: vec![hinted("10.42.0.5", "node-1", "zone-a"), hinted("10.42.0.6", "node-2", "zone-b")],
                used: &["10.42.0.5"],
                serving: &["10.42.0.5:5353", "10.42.0.6:5353"],
            },
            Case {
                name: "an endpoint on another node under internalTrafficPolicy Local keeps its flows",
                service: itp_local,
                endpoints: vec![ep("10.42.0.5", "node-1", READY), ep("10.42.0.6", "node-2", READY)],
                used: &["10.42.0.5"],
                serving: &["10.42.0.5:5353", "10.42.0.6:5353"],
            },
            Case {
                name: "endpoints that do not serve, terminating or not, lose their flows",
                service: service(),
                endpoints: vec![
                    ep("10.42.0.5", "node-2", NOT_SERVING_TERMINATING),
                    ep("10.42.0.6", "node-2", NOT_READY),
                    ep("10.42.0.7", "node-2", READY),
                ],
                used: &["10.42.0.7"],
                serving: &["10.42.0.7:5353"],
            },
            Case {
                name: "a readiness blip of every endpoint leaves no serving endpoint (flows go, as in kube-proxy since #139629)",
                service: service(),
                endpoints: vec![ep("10.42.0.5", "node-2", NOT_READY), ep("10.42.0.6", "node-1", NOT_READY)],
                used: &[],
                serving: &[],
            },
        ];
        for case in cases {
            let name = case.name;
            let plan = plan(case.service, case.endpoints);
            let used: Vec<String> = plan.services[0]
                .endpoints()
                .iter()
                .map(|e| e.ip.to_string())
                .collect();
            assert_eq!(used, case.used, "{name}: new connections");
            let udp = crate::udp_services(&plan);
            assert_eq!(udp.len(), 1, "{name}");
            let want: BTreeSet<SocketAddr> = case.serving.iter().map(|s| sa(s)).collect();
            assert_eq!(udp[0].serving, want, "{name}");
            assert_eq!(
                udp[0].entries,
                [
                    addr("10.43.0.10:53"),
                    addr("192.0.2.10:53"),
                    UdpEntry::NodePort(30053)
                ],
                "{name}"
            );
            assert_eq!(
                (udp[0].service.name.as_ref(), udp[0].port_name.as_str()),
                ("dns", "dns")
            );
        }
    }

    #[test]
    fn tcp_ports_have_no_udp_entries() {
        let mut tcp = service();
        tcp.ports[0].protocol = Protocol::Tcp;
        let plan = plan(tcp, vec![ep("10.42.0.5", "node-2", READY)]);
        assert_eq!(crate::udp_services(&plan), vec![]);
    }

    #[test]
    fn load_balancer_ips_are_entries_too() {
        let mut lb = service();
        lb.service_type = ServiceType::LoadBalancer;
        lb.load_balancer_ips = vec!["198.51.100.7".parse::<IpAddr>().unwrap()];
        let plan = plan(lb, vec![ep("10.42.0.5", "node-2", READY)]);
        let udp = crate::udp_services(&plan);
        assert!(udp[0].entries.contains(&addr("198.51.100.7:53")), "{udp:?}");
    }
}
