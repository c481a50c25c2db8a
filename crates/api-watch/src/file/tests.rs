use std::net::IpAddr;

use super::*;
use crate::{
    AddressType, Conditions, IpFamily, ObjectKey, Protocol, ServiceType, TargetPort, TrafficPolicy,
};

fn load(text: &str) -> (ClusterState, Vec<LoadError>) {
    let mut state = ClusterState::default();
    let errors = load_str("test.yaml", text, &mut state);
    (state, errors)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(namespace, name)
}

const WEB: &str = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.43.0.10
  ports: [{name: http, port: 80, targetPort: 8080}]
";

const WEB_SLICE: &str = "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.42.1.5]
  nodeName: node-1
  zone: zone-a
  conditions: {ready: false, terminating: true}
  hints: {forZones: [{name: zone-a}], forNodes: [{name: node-1}]}
";

struct Loads {
    name: &'static str,
    text: &'static str,
    check: fn(&ClusterState),
}

#[test]
fn valid_manifests_load() {
    let cases = [
        Loads {
            name: "a service with every field set keeps them all",
            text: "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, annotations: {a: b}}
spec:
  type: NodePort
  clusterIP: 10.43.0.10
  clusterIPs: [10.43.0.10, 'fd00::10']
  ports:
  - {name: http, protocol: UDP, port: 80, targetPort: 8080, nodePort: 30080}
  topologyKeys: [kubernetes.io/hostname, '*']
  internalTrafficPolicy: Local
  externalTrafficPolicy: Local
  trafficDistribution: PreferClose
",
            check: |state| {
                let s = &state.services[&key("shop", "web")];
                assert_eq!(s.service_type, ServiceType::NodePort);
                assert_eq!(s.cluster_ips, vec![ip("10.43.0.10"), ip("fd00::10")]);
                let p = &s.ports[0];
                assert_eq!((p.name.as_str(), p.protocol, p.port), ("http", Protocol::Udp, 80));
                assert_eq!((p.target_port.clone(), p.node_port), (TargetPort::Number(8080), Some(30080)));
                assert_eq!(s.topology_keys, Some(vec!["kubernetes.io/hostname".into(), "*".into()]));
                assert_eq!(s.internal_traffic_policy, TrafficPolicy::Local);
                assert_eq!(s.external_traffic_policy, TrafficPolicy::Local);
                assert_eq!(s.traffic_distribution.as_deref(), Some("PreferClose"));
                assert_eq!(s.annotations["a"], "b");
            },
        },
        Loads {
            name: "kubectl's last-applied-configuration is not kept, the other annotations are",
            text: "
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{\"kind\":\"Service\"}'
    nftopo.io/topology-keys: kubernetes.io/hostname
spec: {clusterIP: 10.43.0.10, ports: [{port: 80}]}
",
            check: |state| {
                let s = &state.services[&key("shop", "web")];
                assert_eq!(s.annotations.keys().collect::<Vec<_>>(), ["nftopo.io/topology-keys"]);
            },
        },
        Loads {
            name: "external IPs and load-balancer ingress IPs are kept, hostname-only ingress entries are left out",
            text: "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.10
  externalIPs: [192.0.2.10, '2001:db8::10']
  ports: [{port: 80}]
status:
  loadBalancer:
    ingress: [{ip: 198.51.100.7}, {hostname: lb.example.com}, {ip: '2001:db8::7', hostname: lb6.example.com}]
",
            check: |state| {
                let s = &state.services[&key("shop", "web")];
                assert_eq!(s.external_ips, vec![ip("192.0.2.10"), ip("2001:db8::10")]);
                assert_eq!(s.load_balancer_ips, vec![ip("198.51.100.7"), ip("2001:db8::7")]);
                assert!(s.is_externally_accessible());
            },
        },
        Loads {
            name: "a ClusterIP service with external IPs is externally accessible, one without is not",
            text: "
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {clusterIP: 10.43.0.1, externalIPs: [192.0.2.1]}}
- {apiVersion: v1, kind: Service, metadata: {name: b}, spec: {clusterIP: 10.43.0.2}, status: {loadBalancer: {}}}
- {apiVersion: v1, kind: Service, metadata: {name: c}, spec: {clusterIP: 10.43.0.3, type: NodePort}}
",
            check: |state| {
                let accessible = |name: &str| state.services[&key("default", name)].is_externally_accessible();
                assert!(accessible("a"));
                assert!(!accessible("b"));
                assert!(accessible("c"));
                assert!(state.services[&key("default", "b")].load_balancer_ips.is_empty());
            },
        },
        Loads {
            name: "missing service fields take the Kubernetes defaults",
            text: "
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.43.0.10
  ports: [{port: 80}]
",
            check: |state| {
                let s = &state.services[&key("default", "web")];
                assert_eq!(s.service_type, ServiceType::ClusterIp);
                assert_eq!(s.internal_traffic_policy, TrafficPolicy::Cluster);
                assert_eq!(s.external_traffic_policy, TrafficPolicy::Cluster);
                assert_eq!(s.topology_keys, None);
                let p = &s.ports[0];
                assert_eq!((p.name.as_str(), p.protocol), ("", Protocol::Tcp));
                assert_eq!((p.target_port.clone(), p.node_port), (TargetPort::Number(80), None));
            },
        },
        Loads {
            name: "a named targetPort is kept as a name",
            text: "
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 10.43.0.10, ports: [{name: http, port: 80, targetPort: http-alt}]}
",
            check: |state| {
                let p = &state.services[&key("default", "web")].ports[0];
                assert_eq!(p.target_port, TargetPort::Name("http-alt".into()));
            },
        },
        Loads {
            name: "a headless service has no cluster IPs",
            text: "
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, clusterIPs: [None], ports: [{port: 5432}]}
",
            check: |state| assert!(state.services[&key("default", "db")].cluster_ips.is_empty()),
        },
        Loads {
            name: "trafficDistribution PreferSameNode and PreferSameZone (1.35) are kept as written",
            text: "
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: node}, spec: {clusterIP: 10.43.0.1, trafficDistribution: PreferSameNode}}
- {apiVersion: v1, kind: Service, metadata: {name: zone}, spec: {clusterIP: 10.43.0.2, trafficDistribution: PreferSameZone}}
",
            check: |state| {
                let td = |name: &str| state.services[&key("default", name)].traffic_distribution.clone();
                assert_eq!(td("node").as_deref(), Some("PreferSameNode"));
                assert_eq!(td("zone").as_deref(), Some("PreferSameZone"));
            },
        },
        Loads {
            name: "a v1 slice keeps addresses, node, zone, hints and conditions",
            text: WEB_SLICE,
            check: |state| {
                let s = &state.endpoint_slices[&key("shop", "web-abc")];
                assert_eq!(s.service_key(), key("shop", "web"));
                assert_eq!(s.address_type, AddressType::IPv4);
                assert_eq!((s.ports[0].name.as_str(), s.ports[0].protocol, s.ports[0].port), ("http", Protocol::Tcp, 8080));
                let e = &s.endpoints[0];
                assert_eq!(e.address, Some(ip("10.42.1.5")));
                assert_eq!((e.node_name.as_deref(), e.zone.as_deref()), (Some("node-1"), Some("zone-a")));
                assert_eq!((e.hint_zones(), e.hint_nodes()), (&["zone-a".to_string()][..], &["node-1".to_string()][..]));
                // A missing serving condition means serving (upstream reads nil as true).
                assert_eq!(e.conditions, Conditions { ready: false, serving: true, terminating: true });
                assert!(e.topology().is_empty());
            },
        },
        Loads {
            name: "an endpoint keeps its first address (kube-proxy's), and the slices share one copy of each node and zone name",
            text: "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- {addresses: [10.0.0.1, 10.0.0.2], nodeName: node-1, zone: zone-a}
- {addresses: [10.0.0.3], nodeName: node-1, zone: zone-a}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: t, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.4], nodeName: node-1}]
",
            check: |state| {
                let (s, t) = (&state.endpoint_slices[&key("default", "s")], &state.endpoint_slices[&key("default", "t")]);
                assert_eq!(s.endpoints.iter().map(|e| e.address).collect::<Vec<_>>(), vec![Some(ip("10.0.0.1")), Some(ip("10.0.0.3"))]);
                let names = |e: &crate::Endpoint| (e.node_name.clone().unwrap(), e.zone.clone());
                let ((n0, z0), (n1, z1), (n2, _)) = (names(&s.endpoints[0]), names(&s.endpoints[1]), names(&t.endpoints[0]));
                assert!(std::sync::Arc::ptr_eq(&n0, &n1) && std::sync::Arc::ptr_eq(&n0, &n2), "one copy of node-1");
                assert!(std::sync::Arc::ptr_eq(&z0.unwrap(), &z1.unwrap()), "one copy of zone-a");
            },
        },
        Loads {
            name: "missing endpoint conditions default to ready, serving and not terminating",
            text: "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{port: 80}]
endpoints: [{addresses: ['fd00::5']}]
",
            check: |state| {
                let s = &state.endpoint_slices[&key("default", "s")];
                assert_eq!((s.ports[0].name.as_str(), s.ports[0].protocol), ("", Protocol::Tcp));
                assert_eq!(s.endpoints[0].conditions, Conditions { ready: true, serving: true, terminating: false });
            },
        },
        Loads {
            name: "an FQDN slice keeps its endpoints without addresses",
            text: "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s, labels: {kubernetes.io/service-name: ext}}
addressType: FQDN
endpoints: [{addresses: [example.com]}]
",
            check: |state| {
                let s = &state.endpoint_slices[&key("default", "s")];
                assert_eq!(s.address_type, AddressType::Fqdn);
                assert_eq!(s.endpoints[0].address, None);
            },
        },
        Loads {
            name: "a v1beta1 topology map names the endpoint's node and is kept whole",
            text: "
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata: {name: web-xyz, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.42.2.7]
  topology: {kubernetes.io/hostname: node-2}
- addresses: [10.42.3.7]
  topology: {kubernetes.io/hostname: node-3, topology.kubernetes.io/zone: zone-b, rack: r1}
  hints: {forZones: [{name: zone-b}]}
",
            check: |state| {
                let s = &state.endpoint_slices[&key("shop", "web-xyz")];
                let (a, b) = (&s.endpoints[0], &s.endpoints[1]);
                assert_eq!((a.node_name.as_deref(), a.zone.as_deref()), (Some("node-2"), None));
                assert_eq!(a.topology().len(), 1);
                assert_eq!((b.node_name.as_deref(), b.zone.as_deref()), (Some("node-3"), Some("zone-b")));
                assert_eq!(b.topology()["rack"], "r1");
                assert_eq!(b.hint_zones(), ["zone-b".to_string()]);
            },
        },
        Loads {
            name: "a node keeps labels, IP addresses and pod CIDRs but not its host name",
            text: "
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {topology.kubernetes.io/zone: zone-a}, annotations: {x: y}}
spec: {podCIDR: 10.42.1.0/24}
status:
  addresses:
  - {type: InternalIP, address: 172.31.11.157}
  - {type: Hostname, address: node-1}
",
            check: |state| {
                let n = &state.nodes["node-1"];
                assert_eq!(n.labels["topology.kubernetes.io/zone"], "zone-a");
                assert_eq!(n.annotations["x"], "y");
                assert_eq!(n.addresses, vec![("InternalIP".to_string(), ip("172.31.11.157"))]);
                assert_eq!(n.pod_cidrs, vec!["10.42.1.0/24".to_string()]);
            },
        },
        Loads {
            name: "a multi-document file loads every object and skips empty documents",
            text: "---\n# nothing here\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.43.0.1}\n---\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n}\n",
            check: |state| {
                assert!(state.services.contains_key(&key("default", "a")));
                assert!(state.nodes.contains_key("n"));
            },
        },
        Loads {
            name: "a List loads its items",
            text: "
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {clusterIP: 10.43.0.1}}
- {apiVersion: v1, kind: Node, metadata: {name: n}}
",
            check: |state| {
                assert!(state.services.contains_key(&key("default", "a")));
                assert!(state.nodes.contains_key("n"));
            },
        },
        Loads {
            name: "JSON loads like YAML, also several concatenated values",
            text: r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
	"spec": {"clusterIP": "10.43.0.1", "ports": [{"port": 80, "targetPort": "http"}]}}
{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}]}"#,
            check: |state| {
                let s = &state.services[&key("default", "a")];
                assert_eq!(s.ports[0].target_port, TargetPort::Name("http".into()));
                assert!(state.nodes.contains_key("n"));
            },
        },
        Loads {
            name: "a later object with the same key replaces the earlier one",
            text: "
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {clusterIP: 10.43.0.1}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: default}
spec: {clusterIP: 10.43.0.2}
",
            check: |state| {
                assert_eq!(state.services.len(), 1);
                assert_eq!(state.services[&key("default", "a")].cluster_ips, vec![ip("10.43.0.2")]);
            },
        },
        Loads {
            name: "unknown kinds and versions are ignored",
            text: "
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
---
apiVersion: v1
kind: Endpoints
metadata: {name: e}
---
apiVersion: apps/v1
kind: Service
metadata: {name: odd}
",
            check: |state| assert_eq!(*state, ClusterState::default()),
        },
    ];
    for case in cases {
        let (state, errors) = load(case.text);
        assert_eq!(errors, vec![], "{}", case.name);
        (case.check)(&state);
    }
}

/// What the dual-stack, source-range and affinity fields of `default/web`
/// load as.
#[derive(Debug, PartialEq)]
struct StackAndAffinity {
    cluster_ips: Vec<IpAddr>,
    ip_families: Vec<IpFamily>,
    ip_family_policy: Option<String>,
    load_balancer_source_ranges: Vec<String>,
    session_affinity_timeout: Option<u32>,
}

fn stack_and_affinity(
    cluster_ips: &[&str],
    ip_families: &[IpFamily],
    ip_family_policy: Option<&str>,
    load_balancer_source_ranges: &[&str],
    session_affinity_timeout: Option<u32>,
) -> StackAndAffinity {
    StackAndAffinity {
        cluster_ips: cluster_ips.iter().map(|s| ip(s)).collect(),
        ip_families: ip_families.to_vec(),
        ip_family_policy: ip_family_policy.map(str::to_string),
        load_balancer_source_ranges: load_balancer_source_ranges
            .iter()
            .map(|s| s.to_string())
            .collect(),
        session_affinity_timeout,
    }
}

#[test]
fn ip_families_source_ranges_and_session_affinity_load() {
    use IpFamily::{V4, V6};
    let cases = [
        (
            "a service without these fields is single-stack as its cluster IP says, open to all and without affinity",
            "spec: {clusterIP: 10.43.0.1}",
            stack_and_affinity(&["10.43.0.1"], &[], None, &[], None),
        ),
        (
            "a dual-stack service keeps its cluster IPs, families and policy in order",
            "spec: {clusterIPs: ['fd00::1', 10.43.0.1], ipFamilies: [IPv6, IPv4], ipFamilyPolicy: RequireDualStack}",
            stack_and_affinity(&["fd00::1", "10.43.0.1"], &[V6, V4], Some("RequireDualStack"), &[], None),
        ),
        (
            "a PreferDualStack service that got one cluster IP proxies only that one",
            "spec: {clusterIPs: [10.43.0.1], ipFamilies: [IPv4, IPv6], ipFamilyPolicy: PreferDualStack}",
            stack_and_affinity(&["10.43.0.1"], &[V4, V6], Some("PreferDualStack"), &[], None),
        ),
        (
            "a SingleStack service with one family loads",
            "spec: {clusterIP: 10.43.0.1, ipFamilies: [IPv4], ipFamilyPolicy: SingleStack}",
            stack_and_affinity(&["10.43.0.1"], &[V4], Some("SingleStack"), &[], None),
        ),
        (
            "a headless service keeps its families without cluster IPs",
            "spec: {clusterIP: None, ipFamilies: [IPv6]}",
            stack_and_affinity(&[], &[V6], None, &[], None),
        ),
        (
            "source ranges of both families lose their host bits and surrounding spaces",
            "spec: {clusterIP: 10.43.0.1, loadBalancerSourceRanges: [10.1.2.3/8, ' 192.0.2.0/24 ', '2001:db8::1/32', 0.0.0.0/0, 198.51.100.7/32, '::/0', 'fd00::1:2/128']}",
            stack_and_affinity(
                &["10.43.0.1"],
                &[],
                None,
                &["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "0.0.0.0/0", "198.51.100.7/32", "::/0", "fd00::1:2/128"],
                None,
            ),
        ),
        (
            "ClientIP affinity without a config times out after the default 10800 seconds",
            "spec: {clusterIP: 10.43.0.1, sessionAffinity: ClientIP}",
            stack_and_affinity(&["10.43.0.1"], &[], None, &[], Some(10800)),
        ),
        (
            "ClientIP affinity with timeoutSeconds uses it, up to one day",
            "spec: {clusterIP: 10.43.0.1, sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 86400}}}",
            stack_and_affinity(&["10.43.0.1"], &[], None, &[], Some(86400)),
        ),
        (
            "ClientIP affinity with a one-second timeout is kept",
            "spec: {clusterIP: 10.43.0.1, sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 1}}}",
            stack_and_affinity(&["10.43.0.1"], &[], None, &[], Some(1)),
        ),
        (
            "sessionAffinity None ignores any affinity config",
            "spec: {clusterIP: 10.43.0.1, sessionAffinity: None, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}}",
            stack_and_affinity(&["10.43.0.1"], &[], None, &[], None),
        ),
    ];
    for (name, spec, want) in cases {
        let (state, errors) = load(&service_with(spec));
        assert_eq!(errors, vec![], "{name}");
        let s = &state.services[&key("default", "web")];
        let got = StackAndAffinity {
            cluster_ips: s.cluster_ips.clone(),
            ip_families: s.ip_families.clone(),
            ip_family_policy: s.ip_family_policy.clone(),
            load_balancer_source_ranges: s.load_balancer_source_ranges.clone(),
            session_affinity_timeout: s.session_affinity_timeout,
        };
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn ip_families_are_read_from_addresses_and_kubernetes_spelling() {
    let cases = [
        (
            "an IPv4 address is IPv4",
            IpFamily::of(ip("10.0.0.1")),
            IpFamily::V4,
        ),
        (
            "an IPv6 address is IPv6",
            IpFamily::of(ip("fd00::1")),
            IpFamily::V6,
        ),
        (
            "an IPv4-mapped IPv6 address is IPv6",
            IpFamily::of(ip("::ffff:10.0.0.1")),
            IpFamily::V6,
        ),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
    for family in [IpFamily::V4, IpFamily::V6] {
        assert_eq!(IpFamily::from_k8s(family.as_str()), Some(family));
        assert_eq!(family.to_string(), family.as_str());
    }
    assert_eq!(IpFamily::from_k8s("ipv4"), None, "the spelling is exact");
}

struct Fails {
    name: &'static str,
    text: String,
    /// document, object, field, and a piece of the message.
    want: (usize, &'static str, &'static str, &'static str),
}

const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n";
const SLICE: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: web}}\n";

#[test]
fn each_bad_object_is_reported_with_file_document_object_and_field() {
    let cases = [
        Fails {
            name: "a service without a name names metadata.name",
            text: "apiVersion: v1\nkind: Service\nspec: {clusterIP: 10.43.0.1}\n".into(),
            want: (1, "Service (unnamed)", "metadata.name", "missing"),
        },
        Fails {
            name: "an unknown service type names spec.type",
            text: service_with("spec: {type: Magic}"),
            want: (1, "Service default/web", "spec.type", "unknown type \"Magic\""),
        },
        Fails {
            name: "an invalid cluster IP names its index in spec.clusterIPs",
            text: service_with("spec: {clusterIPs: [10.43.0.1, 'fd00::zz']}"),
            want: (1, "Service default/web", "spec.clusterIPs[1]", "not an IP address"),
        },
        Fails {
            name: "an invalid spec.clusterIP names spec.clusterIP",
            text: service_with("spec: {clusterIP: 10.43.0.300}"),
            want: (1, "Service default/web", "spec.clusterIP", "not an IP address"),
        },
        Fails {
            name: "an unknown port protocol names the port's protocol",
            text: service_with("spec: {ports: [{port: 80}, {port: 81, protocol: ICMP}]}"),
            want: (1, "Service default/web", "spec.ports[1].protocol", "unknown protocol \"ICMP\""),
        },
        Fails {
            name: "a port above 65535 names the port",
            text: service_with("spec: {ports: [{port: 70000}]}"),
            want: (1, "Service default/web", "spec.ports[0].port", "not in 1..=65535"),
        },
        Fails {
            name: "a port of zero names the port",
            text: service_with("spec: {ports: [{port: 0}]}"),
            want: (1, "Service default/web", "spec.ports[0].port", "port 0"),
        },
        Fails {
            name: "a negative targetPort names the targetPort",
            text: service_with("spec: {ports: [{port: 80, targetPort: -1}]}"),
            want: (1, "Service default/web", "spec.ports[0].targetPort", "port -1"),
        },
        Fails {
            name: "a nodePort above 65535 names the nodePort",
            text: service_with("spec: {ports: [{port: 80, nodePort: 65536}]}"),
            want: (1, "Service default/web", "spec.ports[0].nodePort", "port 65536"),
        },
        Fails {
            name: "an invalid external IP names its index in spec.externalIPs",
            text: service_with("spec: {externalIPs: [192.0.2.1, lb.example.com]}"),
            want: (1, "Service default/web", "spec.externalIPs[1]", "\"lb.example.com\" is not an IP address"),
        },
        Fails {
            name: "an invalid load-balancer ingress IP names its index in status.loadBalancer.ingress",
            text: format!("{SVC}status: {{loadBalancer: {{ingress: [{{hostname: a.example}}, {{ip: 300.1.1.1}}]}}}}\n"),
            want: (1, "Service default/web", "status.loadBalancer.ingress[1].ip", "not an IP address"),
        },
        Fails {
            name: "an unknown internalTrafficPolicy names the field",
            text: service_with("spec: {internalTrafficPolicy: Nearby}"),
            want: (1, "Service default/web", "spec.internalTrafficPolicy", "\"Nearby\""),
        },
        Fails {
            name: "an unknown externalTrafficPolicy names the field",
            text: service_with("spec: {externalTrafficPolicy: local}"),
            want: (1, "Service default/web", "spec.externalTrafficPolicy", "\"local\""),
        },
        Fails {
            name: "an unknown IP family names its index in spec.ipFamilies",
            text: service_with("spec: {ipFamilies: [IPv4, IPv7]}"),
            want: (1, "Service default/web", "spec.ipFamilies[1]", "unknown IP family \"IPv7\""),
        },
        Fails {
            name: "a family listed twice names the second one",
            text: service_with("spec: {ipFamilies: [IPv6, IPv6]}"),
            want: (1, "Service default/web", "spec.ipFamilies[1]", "IPv6 is listed twice"),
        },
        Fails {
            name: "an unknown ipFamilyPolicy names the field",
            text: service_with("spec: {ipFamilyPolicy: DualStack}"),
            want: (1, "Service default/web", "spec.ipFamilyPolicy", "unknown IP family policy \"DualStack\""),
        },
        Fails {
            name: "a SingleStack service with two cluster IPs names ipFamilyPolicy",
            text: service_with("spec: {clusterIPs: [10.43.0.1, 'fd00::1'], ipFamilyPolicy: SingleStack}"),
            want: (1, "Service default/web", "spec.ipFamilyPolicy", "SingleStack, but the service has 2 cluster IPs"),
        },
        Fails {
            name: "a SingleStack service with two families names ipFamilyPolicy",
            text: service_with("spec: {clusterIPs: [10.43.0.1], ipFamilies: [IPv4, IPv6], ipFamilyPolicy: SingleStack}"),
            want: (1, "Service default/web", "spec.ipFamilyPolicy", "SingleStack, but the service has 2 IP families"),
        },
        Fails {
            name: "a cluster IP of another family than its ipFamilies entry names the cluster IP",
            text: service_with("spec: {clusterIPs: ['fd00::1'], ipFamilies: [IPv4]}"),
            want: (1, "Service default/web", "spec.clusterIPs[0]", "fd00::1 is IPv6 but spec.ipFamilies[0] is IPv4"),
        },
        Fails {
            name: "cluster IPs in the other order than ipFamilies name the first cluster IP",
            text: service_with("spec: {clusterIPs: [10.43.0.1, 'fd00::1'], ipFamilies: [IPv6, IPv4]}"),
            want: (1, "Service default/web", "spec.clusterIPs[0]", "10.43.0.1 is IPv4 but spec.ipFamilies[0] is IPv6"),
        },
        Fails {
            name: "a single spec.clusterIP of the wrong family names spec.clusterIP",
            text: service_with("spec: {clusterIP: 10.43.0.1, ipFamilies: [IPv6]}"),
            want: (1, "Service default/web", "spec.clusterIP", "is IPv4 but spec.ipFamilies[0] is IPv6"),
        },
        Fails {
            name: "a second cluster IP without a family in ipFamilies names that cluster IP",
            text: service_with("spec: {clusterIPs: [10.43.0.1, 'fd00::1'], ipFamilies: [IPv4]}"),
            want: (1, "Service default/web", "spec.clusterIPs[1]", "no family in spec.ipFamilies"),
        },
        Fails {
            name: "two cluster IPs of one family name the second one",
            text: service_with("spec: {clusterIPs: [10.43.0.1, 10.43.0.2]}"),
            want: (1, "Service default/web", "spec.clusterIPs[1]", "is IPv4 like spec.clusterIPs[0]"),
        },
        Fails {
            name: "a source range without a prefix length names its index",
            text: service_with("spec: {loadBalancerSourceRanges: [10.0.0.0/8, 192.0.2.1]}"),
            want: (1, "Service default/web", "spec.loadBalancerSourceRanges[1]", "\"192.0.2.1\" is not an IP prefix"),
        },
        Fails {
            name: "an IPv4 source range longer than 32 bits names its index",
            text: service_with("spec: {loadBalancerSourceRanges: [10.0.0.0/33]}"),
            want: (1, "Service default/web", "spec.loadBalancerSourceRanges[0]", "not an IP prefix"),
        },
        Fails {
            name: "an IPv6 source range longer than 128 bits names its index",
            text: service_with("spec: {loadBalancerSourceRanges: ['fd00::/129']}"),
            want: (1, "Service default/web", "spec.loadBalancerSourceRanges[0]", "not an IP prefix"),
        },
        Fails {
            name: "a source range with a signed or empty length names its index",
            text: service_with("spec: {loadBalancerSourceRanges: [10.0.0.0/8, 10.0.0.0/+8, 10.0.0.0/]}"),
            want: (1, "Service default/web", "spec.loadBalancerSourceRanges[1]", "not an IP prefix"),
        },
        Fails {
            name: "a source range that is a host name names its index",
            text: service_with("spec: {loadBalancerSourceRanges: [office.example/24]}"),
            want: (1, "Service default/web", "spec.loadBalancerSourceRanges[0]", "not an IP prefix"),
        },
        Fails {
            name: "an unknown sessionAffinity names the field",
            text: service_with("spec: {sessionAffinity: Cookie}"),
            want: (1, "Service default/web", "spec.sessionAffinity", "unknown session affinity \"Cookie\""),
        },
        Fails {
            name: "a zero affinity timeout names timeoutSeconds",
            text: service_with("spec: {sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}}"),
            want: (1, "Service default/web", "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "0 is not in 1..=86400"),
        },
        Fails {
            name: "an affinity timeout above one day names timeoutSeconds",
            text: service_with("spec: {sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}}"),
            want: (1, "Service default/web", "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "86401 is not in 1..=86400"),
        },
        Fails {
            name: "a negative affinity timeout names timeoutSeconds",
            text: service_with("spec: {sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: -5}}}"),
            want: (1, "Service default/web", "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "-5 is not in"),
        },
        Fails {
            name: "topologyKeys that are not strings name the key",
            text: service_with("spec: {topologyKeys: [a, {b: c}]}"),
            want: (1, "Service default/web", "spec.topologyKeys[1]", "expected a string"),
        },
        Fails {
            name: "a field of the wrong type is reported by serde without a field",
            text: service_with("spec: {ports: [{port: http}]}"),
            want: (1, "Service default/web", "", "not a valid Service: invalid type"),
        },
        Fails {
            name: "a slice without the service-name label names the label",
            text: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\n".into(),
            want: (1, "EndpointSlice default/s", "metadata.labels[\"kubernetes.io/service-name\"]", "missing"),
        },
        Fails {
            name: "a slice without an addressType names addressType",
            text: slice_with(""),
            want: (1, "EndpointSlice default/s", "addressType", "missing"),
        },
        Fails {
            name: "a slice with an unknown addressType names addressType",
            text: slice_with("addressType: IPv5"),
            want: (1, "EndpointSlice default/s", "addressType", "unknown address type \"IPv5\""),
        },
        Fails {
            name: "a slice port above 65535 names the port",
            text: slice_with("addressType: IPv4\nports: [{name: http, port: 70000}]"),
            want: (1, "EndpointSlice default/s", "ports[0].port", "port 70000 is not in 1..=65535"),
        },
        Fails {
            name: "a slice port with an unknown protocol names the protocol",
            text: slice_with("addressType: IPv4\nports: [{port: 53, protocol: QUIC}]"),
            want: (1, "EndpointSlice default/s", "ports[0].protocol", "\"QUIC\""),
        },
        Fails {
            name: "an IPv6 address in an IPv4 slice names the address",
            text: slice_with("addressType: IPv4\nendpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2, 'fd00::1']}]"),
            want: (1, "EndpointSlice default/s", "endpoints[1].addresses[1]", "not an IPv4 address"),
        },
        Fails {
            name: "an unparsable endpoint address names the address",
            text: slice_with("addressType: IPv6\nendpoints: [{addresses: [pod.local]}]"),
            want: (1, "EndpointSlice default/s", "endpoints[0].addresses[0]", "not an IP address"),
        },
        Fails {
            name: "a v1beta1 topology value that is not a string names the key",
            text: "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1], topology: {rack: [1]}}]\n".into(),
            want: (1, "EndpointSlice default/s", "endpoints[0].topology[\"rack\"]", "expected a string"),
        },
        Fails {
            name: "an unparsable node IP names the address",
            text: "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 172.31.11}]}\n".into(),
            want: (1, "Node node-1", "status.addresses[0].address", "not an IP address"),
        },
        Fails {
            name: "a document that is not an object is reported as a document",
            text: "just a string\n".into(),
            want: (1, "document", "", "found a string"),
        },
        Fails {
            name: "a document without a kind names kind",
            text: "apiVersion: v1\nmetadata: {name: x}\n".into(),
            want: (1, "document", "kind", "missing"),
        },
        Fails {
            name: "a List without items names items",
            text: "apiVersion: v1\nkind: List\nmetadata: {name: l}\n".into(),
            want: (1, "List l", "items", "found nothing"),
        },
        Fails {
            name: "a nameless List item is named by its index",
            text: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Node}\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n- {apiVersion: v1, kind: Service, metadata: {}}\n".into(),
            want: (1, "Service items[2]", "metadata.name", "missing"),
        },
        Fails {
            name: "a YAML syntax error names its document",
            text: "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n---\nkey: [unclosed\n".into(),
            want: (2, "document", "", "unclosed bracket '[' at line 5"),
        },
    ];
    for case in cases {
        let (_, errors) = load(&case.text);
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.document, e.object.as_str(), e.field.as_str()))
            .collect();
        let (document, object, field, message) = case.want;
        // The nameless Node in the List case is reported too; compare the last error.
        let last = errors
            .last()
            .unwrap_or_else(|| panic!("{}: no error", case.name));
        assert_eq!(
            got.last(),
            Some(&(document, object, field)),
            "{}: {errors:?}",
            case.name
        );
        assert_eq!(last.file, "test.yaml", "{}", case.name);
        assert!(
            last.message.contains(message),
            "{}: {:?} lacks {message:?}",
            case.name,
            last.message
        );
    }
}

/// A Service `default/web` with the given spec line.
fn service_with(spec: &str) -> String {
    format!("{SVC}{spec}\n")
}

/// The EndpointSlice `default/s` of Service `web` with the given body.
fn slice_with(body: &str) -> String {
    format!("{SLICE}{body}\n")
}

#[test]
fn one_bad_object_does_not_stop_the_others() {
    let text = format!("{WEB}---\n{SVC}spec: {{type: Magic}}\n---\n{WEB_SLICE}");
    let (state, errors) = load(&text);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].document, errors[0].object.as_str()),
        (2, "Service default/web")
    );
    assert!(state.services.contains_key(&key("shop", "web")));
    assert!(state.endpoint_slices.contains_key(&key("shop", "web-abc")));
}

#[test]
fn an_unreadable_file_is_one_error_and_the_other_files_still_load() {
    let dir = std::env::temp_dir().join(format!("api-watch-file-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, WEB).unwrap();
    let missing = dir.join("missing.yaml");
    let (state, errors) = load_files(&[missing.clone(), good]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(state.services.contains_key(&key("shop", "web")));
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(
        (e.file.as_str(), e.document, e.field.as_str()),
        (missing.to_str().unwrap(), 0, "")
    );
    assert_eq!(
        e.to_string(),
        format!("{}: {}", missing.display(), e.message)
    );
}

#[test]
fn errors_read_as_one_line_leaving_out_unknown_parts() {
    let error = |document, object: &str, field: &str| LoadError {
        file: "a.yaml".into(),
        document,
        object: object.into(),
        field: field.into(),
        message: "bad".into(),
    };
    let cases = [
        (
            error(2, "Service default/web", "spec.ports[0].port"),
            "a.yaml: document 2: Service default/web: spec.ports[0].port: bad",
        ),
        (
            error(1, "document", ""),
            "a.yaml: document 1: document: bad",
        ),
        (error(0, "", ""), "a.yaml: bad"),
    ];
    for (error, want) in cases {
        assert_eq!(error.to_string(), want);
    }
}

#[test]
fn health_check_node_ports_and_nodes_being_deleted_load() {
    let (state, errors) = load(
        "
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: shop}
spec: {type: LoadBalancer, clusterIP: 10.43.0.11, externalTrafficPolicy: Local,
       healthCheckNodePort: 31000, ports: [{port: 80, nodePort: 30080}]}
---
apiVersion: v1
kind: Service
metadata: {name: bad, namespace: shop}
spec: {clusterIP: 10.43.0.12, healthCheckNodePort: 70000, ports: [{port: 80}]}
---
apiVersion: v1
kind: Node
metadata: {name: going, deletionTimestamp: '2024-01-01T00:00:00Z'}
---
apiVersion: v1
kind: Node
metadata: {name: scaled-down}
spec: {taints: [{key: ToBeDeletedByClusterAutoscaler, effect: NoSchedule}]}
---
apiVersion: v1
kind: Node
metadata: {name: staying}
spec: {taints: [{key: other, effect: NoSchedule}]}
",
    );
    assert_eq!(
        state.services[&key("shop", "lb")].health_check_node_port,
        Some(31000)
    );
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["test.yaml: document 2: Service shop/bad: spec.healthCheckNodePort: port 70000 is not in 1..=65535"]
    );
    let deleting: Vec<_> = state
        .nodes
        .values()
        .map(|n| (n.name.as_str(), n.deleting))
        .collect();
    assert_eq!(
        deleting,
        [("going", true), ("scaled-down", true), ("staying", false)]
    );
}

#[test]
fn calico_block_affinities_load_and_bad_ones_are_named() {
    let (state, errors) = load(
        "
apiVersion: crd.projectcalico.org/v1
kind: BlockAffinity
metadata: {name: node-3-10-42-54-128-26}
spec: {cidr: 10.42.54.128/26, node: node-3, state: confirmed, deleted: 'false'}
---
apiVersion: crd.projectcalico.org/v1
kind: BlockAffinity
metadata: {name: broken}
spec: {node: node-4, state: confirmed}
",
    );
    let b = &state.block_affinities["node-3-10-42-54-128-26"];
    assert_eq!(
        (
            b.cidr.as_str(),
            b.node.as_str(),
            b.state.as_str(),
            b.deleted
        ),
        ("10.42.54.128/26", "node-3", "confirmed", false)
    );
    assert_eq!(state.block_affinities.len(), 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].object, "BlockAffinity broken");
    assert_eq!(errors[0].field, "spec.cidr");
}

#[test]
fn objects_of_kinds_nftopo_does_not_read_are_counted_by_kind() {
    let text = format!(
        "{WEB}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: a}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: b}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: c}}
---
apiVersion: v1
kind: Servcie
metadata: {{name: typo}}
---
apiVersion: v2
kind: Service
metadata: {{name: wrong-version}}
---
apiVersion: v1
kind: List
items: [{{apiVersion: v1, kind: ConfigMap, metadata: {{name: d}}}}]
"
    );
    let mut state = ClusterState::default();
    let (errors, ignored) = load_text("test.yaml", &text, false, &mut state);
    assert_eq!(errors, []);
    assert_eq!(state.services.len(), 1);
    assert_eq!(ignored.total(), 6);
    assert_eq!(ignored.count("Servcie"), 1, "a typo in kind is counted");
    assert_eq!(
        ignored.to_string(),
        "2 ConfigMap, 2 Deployment, 1 Servcie, 1 Service (apiVersion v2)"
    );
}

#[test]
fn ignored_kinds_are_summed_over_files_and_the_line_stays_short() {
    let dir = std::env::temp_dir().join(format!("api-watch-ignored-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for i in 0..12 {
        let path = dir.join(format!("{i}.yaml"));
        let text = format!(
            "{WEB}---\napiVersion: x/v1\nkind: Kind{i}\n---\napiVersion: x/v1\nkind: Common\n"
        );
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let loaded = read_files(&paths);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(loaded.errors, []);
    assert_eq!(loaded.state.services.len(), 1);
    assert_eq!(loaded.ignored.total(), 24);
    assert_eq!(loaded.ignored.count("Common"), 12);
    let line = loaded.ignored.to_string();
    assert!(
        line.starts_with("12 Common, 1 Kind0, 1 Kind1, 1 Kind10,"),
        "{line}"
    );
    assert!(line.ends_with(" and 5 of 5 other kinds"), "{line}");
    assert!(IgnoredKinds::default().is_empty());
}

#[test]
fn a_hostile_kind_is_counted_escaped_and_short() {
    let kind = format!("a\\nb\\\"{}", "k".repeat(200));
    let text = format!("apiVersion: v1\nkind: \"{kind}\"\n");
    let mut state = ClusterState::default();
    let (_, ignored) = load_text("test.yaml", &text, false, &mut state);
    let line = ignored.to_string();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.len() < 120, "{line}");
    assert!(line.starts_with("1 a\\nb\\\""), "{line}");
}
