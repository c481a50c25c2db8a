//! Manifests read as kube-proxy reads the same objects from the API: which
//! Services and slices it proxies at all, how it parses addresses, and how
//! it reads slice ports and endpoint conditions. Each case names the
//! upstream rule it follows.

use std::net::IpAddr;

use super::*;
use crate::{Conditions, ObjectKey};

fn load(text: &str) -> (ClusterState, Vec<LoadError>) {
    let mut state = ClusterState::default();
    let errors = load_str("test.yaml", text, &mut state);
    (state, errors)
}

fn ips(written: &[&str]) -> Vec<IpAddr> {
    written.iter().map(|s| s.parse().unwrap()).collect()
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("default", name)
}

#[test]
fn services_and_slices_kube_proxy_does_not_select_are_left_out() {
    // cmd/kube-proxy/app/server.go: Services and EndpointSlices are listed
    // and watched with
    // `!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless`.
    let cases: &[(&str, &str, bool)] = &[
        (
            "a Service labelled service-proxy-name belongs to another proxy and is left out",
            "{apiVersion: v1, kind: Service, metadata: {name: web, labels: {service.kubernetes.io/service-proxy-name: cilium}}, spec: {clusterIP: 10.43.0.1, ports: [{port: 80}]}}",
            false,
        ),
        (
            "the proxy-name label excludes a Service whatever its value, even empty (an existence selector)",
            "{apiVersion: v1, kind: Service, metadata: {name: web, labels: {service.kubernetes.io/service-proxy-name: ''}}, spec: {clusterIP: 10.43.0.1}}",
            false,
        ),
        (
            "a Service labelled headless is left out",
            "{apiVersion: v1, kind: Service, metadata: {name: web, labels: {service.kubernetes.io/headless: ''}}, spec: {clusterIP: 10.43.0.1}}",
            false,
        ),
        (
            "a Service with other labels is proxied",
            "{apiVersion: v1, kind: Service, metadata: {name: web, labels: {app: web, service.kubernetes.io/topology-mode: Auto}}, spec: {clusterIP: 10.43.0.1}}",
            true,
        ),
        (
            "a Service that another proxy would take but that is broken is left out without an error",
            "{apiVersion: v1, kind: Service, metadata: {name: web, labels: {service.kubernetes.io/service-proxy-name: other}}, spec: {type: Magic}}",
            false,
        ),
    ];
    for (name, text, kept) in cases {
        let (state, errors) = load(text);
        assert_eq!(errors, vec![], "{name}");
        assert_eq!(state.services.contains_key(&key("web")), *kept, "{name}");
    }

    let slices: &[(&str, &str, bool)] = &[
        (
            "a slice of a headless Service (labelled headless by the EndpointSlice controller) is left out",
            "service.kubernetes.io/headless: ''",
            false,
        ),
        (
            "a slice carrying its Service's proxy-name label is left out",
            "service.kubernetes.io/service-proxy-name: other",
            false,
        ),
        ("a slice without those labels is used", "app: web", true),
    ];
    let relabelled = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 10.43.0.1}
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {service.kubernetes.io/service-proxy-name: other}}
spec: {clusterIP: 10.43.0.1}
";
    let (state, errors) = load(relabelled);
    assert_eq!(errors, vec![]);
    assert!(
        state.services.is_empty(),
        "a later copy handed to another proxy replaces the earlier one: the last one read wins"
    );

    for (name, label, kept) in slices {
        let text = format!(
            "{{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {{name: s, labels: {{kubernetes.io/service-name: web, {label}}}}}, addressType: IPv4, endpoints: [{{addresses: [10.42.0.5]}}]}}"
        );
        let (state, errors) = load(&text);
        assert_eq!(errors, vec![], "{name}");
        assert_eq!(
            state.endpoint_slices.contains_key(&key("s")),
            *kept,
            "{name}"
        );
    }
}

#[test]
fn addresses_with_leading_zeros_are_decimal_in_every_field() {
    // k8s.io/utils netutils.ParseIPSloppy / ParseCIDRSloppy (issue 100895):
    // kube-proxy reads every address of a Service, a slice and a Node
    // through them, so `172.30.0.071` is 172.30.0.71.
    let service = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  clusterIP: 172.30.0.071
  clusterIPs: [172.30.0.071, 'fd00::0a']
  externalIPs: [192.0.2.010, 198.051.100.7]
  loadBalancerSourceRanges: [010.0.0.0/08, ' 192.000.002.000/24 ']
  ports: [{port: 80}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.009}]
";
    let (state, errors) = load(service);
    assert_eq!(errors, vec![]);
    let s = &state.services[&key("web")];
    let cases = [
        (
            "cluster IPs with leading zeros are read as decimal, not skipped",
            s.cluster_ips.clone(),
            ips(&["172.30.0.71", "fd00::a"]),
        ),
        (
            "external IPs with leading zeros are read as decimal",
            s.external_ips.clone(),
            ips(&["192.0.2.10", "198.51.100.7"]),
        ),
        (
            "load-balancer ingress IPs with leading zeros are read as decimal",
            s.load_balancer_ips.clone(),
            ips(&["203.0.113.9"]),
        ),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(
        s.load_balancer_source_ranges,
        ["10.0.0.0/8", "192.0.2.0/24"],
        "source ranges with leading zeros (ParseCIDRSloppy, after TrimSpace) are read as decimal"
    );

    let only_spec_cluster_ip =
        "{apiVersion: v1, kind: Service, metadata: {name: web}, spec: {clusterIP: 10.043.000.001}}";
    let (state, errors) = load(only_spec_cluster_ip);
    assert_eq!(errors, vec![]);
    assert_eq!(
        state.services[&key("web")].cluster_ips,
        ips(&["10.43.0.1"]),
        "a spec.clusterIP with leading zeros is read as decimal"
    );

    let slice = "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s, labels: {kubernetes.io/service-name: web}}, addressType: IPv4, ports: [{port: 80}], endpoints: [{addresses: [10.042.001.005]}, {addresses: ['::ffff:10.42.1.6']}]}";
    let (state, errors) = load(slice);
    assert_eq!(errors, vec![]);
    let addresses: Vec<IpAddr> = state.endpoint_slices[&key("s")]
        .endpoints
        .iter()
        .filter_map(|e| e.address)
        .collect();
    assert_eq!(
        addresses,
        ips(&["10.42.1.5", "10.42.1.6"]),
        "endpoint addresses with leading zeros are decimal, and an IPv4-mapped one is IPv4 (Go's To4)"
    );

    let node = "{apiVersion: v1, kind: Node, metadata: {name: n}, status: {addresses: [{type: InternalIP, address: 172.031.011.157}]}}";
    let (state, errors) = load(node);
    assert_eq!(errors, vec![]);
    assert_eq!(
        state.nodes["n"].addresses,
        [("InternalIP".to_string(), ips(&["172.31.11.157"])[0])],
        "node addresses with leading zeros are decimal (GetNodeHostIPs uses ParseIPSloppy)"
    );
}

#[test]
fn addresses_upstream_rejects_are_still_errors_naming_the_field() {
    let cases = [
        (
            "an octet above 255 is no address, leading zeros or not",
            "spec: {clusterIP: 10.43.0.0256}",
            "spec.clusterIP",
        ),
        (
            "a zone is no address",
            "spec: {externalIPs: ['fe80::1%eth0']}",
            "spec.externalIPs[0]",
        ),
        (
            "an IPv6 group above 16 bits is no address",
            "spec: {clusterIPs: ['fd00::10000']}",
            "spec.clusterIPs[0]",
        ),
        (
            "a prefix length above 32 is rejected even with leading zeros",
            "spec: {loadBalancerSourceRanges: [10.0.0.0/033]}",
            "spec.loadBalancerSourceRanges[0]",
        ),
    ];
    for (name, spec, field) in cases {
        let text = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\n{spec}\n");
        let (state, errors) = load(&text);
        assert!(state.services.is_empty(), "{name}");
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.object.as_str(), e.field.as_str()))
            .collect();
        assert_eq!(got, [("Service default/web", field)], "{name}");
    }
}

#[test]
fn slice_ports_and_conditions_are_read_as_kube_proxy_reads_them() {
    struct Case {
        name: &'static str,
        body: &'static str,
        ports: &'static [u16],
        conditions: Conditions,
    }
    let ready = Conditions {
        ready: true,
        serving: true,
        terminating: false,
    };
    let cases = [
        Case {
            // endpointslicecache.go: "Ignoring invalid endpoint port".
            name: "a port with port: null is skipped and the slice's other ports are kept",
            body: "ports: [{name: a, port: null}, {name: b, port: 8080}]\nendpoints: [{addresses: [10.42.0.5]}]",
            ports: &[8080],
            conditions: ready,
        },
        Case {
            name: "a port without a port field is skipped like port: null",
            body: "ports: [{name: http}]\nendpoints: [{addresses: [10.42.0.5]}]",
            ports: &[],
            conditions: ready,
        },
        Case {
            name: "a port of 0 is skipped, as upstream skips it",
            body: "ports: [{name: a, port: 0}, {name: b, port: 9090}]\nendpoints: [{addresses: [10.42.0.5]}]",
            ports: &[9090],
            conditions: ready,
        },
        Case {
            // endpointslicecache.go: Serving == nil || *Serving.
            name: "serving: null means serving even when the endpoint is not ready",
            body: "ports: [{port: 80}]\nendpoints: [{addresses: [10.42.0.5], conditions: {ready: false, serving: null, terminating: true}}]",
            ports: &[80],
            conditions: Conditions { ready: false, serving: true, terminating: true },
        },
        Case {
            name: "missing conditions mean ready, serving and not terminating",
            body: "ports: [{port: 80}]\nendpoints: [{addresses: [10.42.0.5], conditions: {}}]",
            ports: &[80],
            conditions: ready,
        },
        Case {
            name: "serving: false is kept as written",
            body: "ports: [{port: 80}]\nendpoints: [{addresses: [10.42.0.5], conditions: {ready: false, serving: false, terminating: true}}]",
            ports: &[80],
            conditions: Conditions { ready: false, serving: false, terminating: true },
        },
    ];
    for case in cases {
        let text = format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\n{}\n",
            case.body
        );
        let (state, errors) = load(&text);
        assert_eq!(errors, vec![], "{}", case.name);
        let slice = &state.endpoint_slices[&key("s")];
        let ports: Vec<u16> = slice.ports.iter().map(|p| p.port).collect();
        assert_eq!(ports, case.ports, "{}", case.name);
        assert_eq!(
            slice.endpoints[0].conditions, case.conditions,
            "{}",
            case.name
        );
    }
}

#[test]
fn only_vip_mode_load_balancer_ingress_is_proxied() {
    // pkg/proxy/serviceport.go newBaseServiceInfo: ingress entries that
    // are not IsVIPMode (ipMode unset or VIP) are not LoadBalancerVIPs.
    let text = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: LoadBalancer, clusterIP: 10.43.0.1, ports: [{port: 80}]}
status:
  loadBalancer:
    ingress:
    - {ip: 203.0.113.1}
    - {ip: 203.0.113.2, ipMode: VIP}
    - {ip: 203.0.113.3, ipMode: Proxy}
    - {ip: 203.0.113.4, ipMode: Something}
";
    let (state, errors) = load(text);
    assert_eq!(errors, vec![]);
    assert_eq!(
        state.services[&key("web")].load_balancer_ips,
        ips(&["203.0.113.1", "203.0.113.2"]),
        "ipMode unset and VIP are kept; Proxy (and any other mode) is left out"
    );
}

#[test]
fn service_cidrs_load_and_their_prefixes_are_merged() {
    // pkg/proxy/config/config.go ServiceCIDRConfig: the union of every
    // ServiceCIDR's spec.cidrs.
    let text = "
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: kubernetes}
spec: {cidrs: [10.43.0.0/16, 'fd00:43::/112']}
---
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: extra}
spec: {cidrs: [10.96.0.0/20, 10.43.0.0/16]}
---
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: broken}
spec: {cidrs: [not-a-prefix]}
";
    let (state, errors) = load(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].object, "ServiceCIDR broken");
    assert_eq!(errors[0].field, "spec.cidrs[0]");
    assert_eq!(
        state.service_cidr_prefixes(),
        vec!["10.43.0.0/16", "10.96.0.0/20", "fd00:43::/112"]
    );
}
