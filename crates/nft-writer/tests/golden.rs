//! Planner golden tests (normalised `nft` text) and packet traces over the
//! fake kernel, for the ClusterIP cases of the seed scenario.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::Protocol;
use common::*;
use nft_writer::{trace, FakeKernel, Family, Kernel, Outcome, Packet, Path, Refusal, Transaction};

const CLIENT_POD: &str = "10.42.187.70";
const NODE_IP: &str = "172.31.11.85";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Applies the node's ruleset to a fake kernel and traces a new TCP (or
/// UDP) connection to 10.43.0.10:`port` from `src` along `path`.
fn outcomes(
    docs: &[&str],
    node: &str,
    src: &str,
    path: Path,
    proto: Protocol,
    port: u16,
) -> BTreeSet<Outcome> {
    let rs = ruleset(&state(docs), node);
    let mut k = FakeKernel::new();
    k.apply(&Transaction::replace(&rs))
        .expect("the fake accepts the plan");
    let table = k.table(Family::Ip, "nftopo").expect("table exists");
    trace(
        table,
        &Packet {
            src: ip(src),
            dst: ip("10.43.0.10"),
            proto,
            dport: port,
            path,
            iifname: String::new(),
            node_addrs: vec![ip(NODE_IP)],
        },
    )
}

fn dnat_to(ips: &[&str], port: u16, masquerade: bool) -> BTreeSet<Outcome> {
    ips.iter()
        .map(|i| Outcome::Accepted {
            dnat: Some((ip(i), port)),
            masquerade,
        })
        .collect()
}

fn rejected() -> BTreeSet<Outcome> {
    [Outcome::Rejected(Refusal::TcpReset)].into_iter().collect()
}

const ALL: [&str; 5] = [
    "10.42.187.66",
    "10.42.187.67",
    "10.42.54.130",
    "10.42.54.131",
    "10.42.201.2",
];
const NODE2: [&str; 2] = ["10.42.187.66", "10.42.187.67"];
const NODE3: [&str; 2] = ["10.42.54.130", "10.42.54.131"];

#[test]
fn one_service_renders_as_this_golden_ruleset() {
    let st = state(&[NODES, &service("", ""), &slice(&FIVE[..2])]);
    let text = ruleset(&st, "node-2").to_string();
    let want = "\
table ip nftopo
delete table ip nftopo
table ip6 nftopo
delete table ip6 nftopo
table ip nftopo {
\tcomment \"nftopo layout 4\"
\tset cluster-ips {
\t\ttype ipv4_addr
\t\telements = {
\t\t\t10.43.0.10
\t\t}
\t}
\tmap firewall-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t}
\tset hairpin {
\t\ttype ipv4_addr . ipv4_addr
\t\telements = {
\t\t\t10.42.187.66 . 10.42.187.66,
\t\t\t10.42.187.67 . 10.42.187.67
\t\t}
\t}
\tset no-endpoint-drop {
\t\ttype ipv4_addr . inet_proto . inet_service
\t}
\tset no-endpoint-nodeports-drop {
\t\ttype inet_proto . inet_service
\t}
\tset no-endpoint-nodeports-reject {
\t\ttype inet_proto . inet_service
\t}
\tset no-endpoint-reject {
\t\ttype ipv4_addr . inet_proto . inet_service
\t}
\tmap nodeport-endpoints {
\t\ttypeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport
\t}
\tset plain-cluster-ips {
\t\ttype ipv4_addr . inet_proto . inet_service
\t\telements = {
\t\t\t10.43.0.10 . tcp . 80
\t\t}
\t}
\tset plain-external-ips {
\t\ttype ipv4_addr . inet_proto . inet_service
\t}
\tset plain-nodeports {
\t\ttype inet_proto . inet_service
\t}
\tmap service-endpoints {
\t\ttypeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport
\t\telements = {
\t\t\t10.43.0.10 . tcp . 80 . 1 : 10.42.187.66 . 5000,
\t\t\t10.43.0.10 . tcp . 80 . 2 : 10.42.187.67 . 5000
\t\t}
\t}
\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t}
\tmap service-nodeports {
\t\ttype inet_proto . inet_service : verdict
\t}
\tchain cluster-ips-check {
\t\tip daddr @cluster-ips goto reject-chain
\t}
\tchain filter-forward {
\t\ttype filter hook forward priority -110; policy accept;
\t\tct state new ip daddr . meta l4proto . th dport @no-endpoint-reject goto reject-chain
\t\tct state new ip daddr . meta l4proto . th dport @no-endpoint-drop drop
\t\tct state new jump cluster-ips-check
\t}
\tchain filter-input {
\t\ttype filter hook input priority -110; policy accept;
\t\tct state new ip daddr . meta l4proto . th dport @no-endpoint-reject goto reject-chain
\t\tct state new ip daddr . meta l4proto . th dport @no-endpoint-drop drop
\t}
\tchain filter-output {
\t\ttype filter hook output priority -110; policy accept;
\t\tct state new ip daddr . meta l4proto . th dport @no-endpoint-reject goto reject-chain
\t\tct state new ip daddr . meta l4proto . th dport @no-endpoint-drop drop
\t\tct state new ip daddr . meta l4proto . th dport vmap @firewall-ips
\t}
\tchain filter-output-post-dnat {
\t\ttype filter hook output priority -90; policy accept;
\t\tct state new jump cluster-ips-check
\t}
\tchain filter-prerouting {
\t\ttype filter hook prerouting priority -110; policy accept;
\t\tct state new ip daddr . meta l4proto . th dport vmap @firewall-ips
\t}
\tchain nat-output {
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}
\tchain nat-postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tip saddr . ip daddr @hairpin meta mark set meta mark | 0x00004000
\t\tmeta mark & 0x00004000 == 0x00000000 return
\t\tmeta mark set meta mark ^ 0x00004000
\t\tmasquerade fully-random
\t}
\tchain nat-prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump services
\t}
\tchain reject-chain {
\t\tmeta l4proto tcp reject with tcp reset
\t\treject
\t}
\tchain services {
\t\tip daddr . meta l4proto . th dport @plain-cluster-ips ip saddr != 10.42.0.0/16 meta mark set meta mark | 0x00004000
\t\tip daddr . meta l4proto . th dport @plain-cluster-ips goto spread
\t\tip daddr . meta l4proto . th dport @plain-external-ips meta mark set meta mark | 0x00004000 goto spread
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t}
\tchain spread {
\t\tdnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 offset 1 map @service-endpoints
\t}
\tchain spread-port {
\t}
}
";
    assert_eq!(text, want, "\n--- got ---\n{text}");
}

#[test]
fn a_service_without_endpoints_renders_a_reject_entry_and_no_service_chain() {
    let st = state(&[NODES, &service("", "")]);
    let text = ruleset(&st, "node-2").to_string();
    let refused = text
        .split("set no-endpoint-reject {")
        .nth(1)
        .and_then(|rest| rest.split("\n\t}").next())
        .unwrap_or_default();
    assert!(refused.contains("10.43.0.10 . tcp . 80"), "{text}");
    assert!(!text.contains("svc-"), "{text}");
    assert!(!text.contains("dnat ip to"), "{text}");
}

#[test]
fn the_same_input_renders_byte_identical_output() {
    let st = state(&[NODES, &service("", ""), &slice(&FIVE)]);
    assert_eq!(
        ruleset(&st, "node-2").to_string(),
        ruleset(&st, "node-2").to_string()
    );
}

/// How traffic without a usable endpoint ends.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// Refused at once (TCP reset).
    Rejected,
    /// Silently dropped.
    Dropped,
}

struct Case {
    name: &'static str,
    spec: &'static str,
    annotations: &'static str,
    endpoints: &'static [(&'static str, &'static str, &'static str)],
    want: Result<&'static [&'static str], Refused>,
}

const WITHOUT_NODE2: [(&str, &str, &str); 3] = [FIVE[2], FIVE[3], FIVE[4]];

const CASES: &[Case] = &[
    Case {
        name: "without topology every ready endpoint gets traffic",
        spec: "",
        annotations: "",
        endpoints: &FIVE,
        want: Ok(&ALL),
    },
    Case {
        name: "topologyKeys hostname keeps traffic on this node",
        spec: "  topologyKeys: [\"kubernetes.io/hostname\"]",
        annotations: "",
        endpoints: &FIVE,
        want: Ok(&NODE2),
    },
    Case {
        name: "the annotation works like the spec field",
        spec: "",
        annotations: "nftopo.io/topology-keys: \"kubernetes.io/hostname\"",
        endpoints: &FIVE,
        want: Ok(&NODE2),
    },
    Case {
        name: "hostname then zone falls back to the same zone when this node has no endpoint",
        spec: "  topologyKeys: [\"kubernetes.io/hostname\", \"topology.kubernetes.io/zone\"]",
        annotations: "",
        endpoints: &WITHOUT_NODE2,
        want: Ok(&NODE3),
    },
    Case {
        name: "a trailing wildcard falls back to every endpoint",
        spec: "  topologyKeys: [\"kubernetes.io/hostname\", \"*\"]",
        annotations: "",
        endpoints: &WITHOUT_NODE2,
        want: Ok(&["10.42.54.130", "10.42.54.131", "10.42.201.2"]),
    },
    Case {
        name: "no matching key means the service is rejected on this node",
        spec: "  topologyKeys: [\"kubernetes.io/hostname\"]",
        annotations: "",
        endpoints: &WITHOUT_NODE2,
        want: Err(Refused::Rejected),
    },
    Case {
        name: "internalTrafficPolicy Local keeps only this node's endpoints",
        spec: "  internalTrafficPolicy: Local",
        annotations: "",
        endpoints: &FIVE,
        want: Ok(&NODE2),
    },
    Case {
        name: "internalTrafficPolicy Local without a local endpoint drops, as kube-proxy does",
        spec: "  internalTrafficPolicy: Local",
        annotations: "",
        endpoints: &WITHOUT_NODE2,
        want: Err(Refused::Dropped),
    },
];

#[test]
fn traffic_from_a_pod_and_from_the_node_reaches_the_endpoints_topology_allows() {
    for case in CASES {
        let svc = service(case.spec, case.annotations);
        let sl = slice(case.endpoints);
        let docs = [NODES, svc.as_str(), sl.as_str()];
        let from_pod = outcomes(
            &docs,
            "node-2",
            CLIENT_POD,
            Path::Forwarded,
            Protocol::Tcp,
            80,
        );
        let from_node = outcomes(&docs, "node-2", NODE_IP, Path::Local, Protocol::Tcp, 80);
        match case.want {
            Ok(ips) => {
                assert_eq!(
                    from_pod,
                    dnat_to(ips, 5000, false),
                    "{} (from a pod)",
                    case.name
                );
                // The node's own address is outside the cluster CIDR.
                assert_eq!(
                    from_node,
                    dnat_to(ips, 5000, true),
                    "{} (from the node)",
                    case.name
                );
            }
            Err(how) => {
                let want = match how {
                    Refused::Rejected => rejected(),
                    Refused::Dropped => [Outcome::Dropped].into_iter().collect(),
                };
                assert_eq!(from_pod, want, "{} (from a pod)", case.name);
                assert_eq!(from_node, want, "{} (from the node)", case.name);
            }
        }
    }
}

#[test]
fn several_ports_each_reach_their_own_target_port_and_a_named_one_resolves_through_the_slice() {
    let svc = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.43.0.10
  ports:
  - {name: http, port: 80, targetPort: 5000}
  - {name: admin, port: 8080, targetPort: admin-port}
  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
"#;
    let sl = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 5000}, {name: admin, port: 9090}, {name: dns, port: 5353, protocol: UDP}]
endpoints:
- {addresses: ["10.42.187.66"], nodeName: node-2}
"#;
    let docs = [NODES, svc, sl];
    let one = ["10.42.187.66"];
    let cases = [
        (
            "http goes to 5000",
            Protocol::Tcp,
            80,
            dnat_to(&one, 5000, false),
        ),
        (
            "the named target port resolves to 9090",
            Protocol::Tcp,
            8080,
            dnat_to(&one, 9090, false),
        ),
        (
            "udp 53 goes to 5353",
            Protocol::Udp,
            53,
            dnat_to(&one, 5353, false),
        ),
        (
            "tcp 53 is no service port of the cluster IP and is refused (kube-proxy's cluster-ips-check)",
            Protocol::Tcp,
            53,
            rejected(),
        ),
    ];
    for (name, proto, port, want) in cases {
        assert_eq!(
            outcomes(&docs, "node-2", CLIENT_POD, Path::Forwarded, proto, port),
            want,
            "{name}"
        );
    }
}

#[test]
fn traffic_to_other_addresses_is_not_touched() {
    let (svc, sl) = (service("", ""), slice(&FIVE));
    let rs = ruleset(&state(&[NODES, &svc, &sl]), "node-2");
    let table = &rs.tables[0];
    let got = trace(
        table,
        &Packet {
            src: ip(CLIENT_POD),
            dst: ip("10.43.0.11"),
            proto: Protocol::Tcp,
            dport: 80,
            path: Path::Forwarded,
            iifname: String::new(),
            node_addrs: vec![ip(NODE_IP)],
        },
    );
    assert_eq!(
        got,
        [Outcome::Accepted {
            dnat: None,
            masquerade: false
        }]
        .into_iter()
        .collect()
    );
}

#[test]
fn a_second_service_claiming_the_same_ip_and_port_is_reported_and_left_out() {
    let twin = r#"
apiVersion: v1
kind: Service
metadata: {name: zz-twin, namespace: default}
spec: {clusterIP: 10.43.0.10, ports: [{port: 80, targetPort: 5000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: zz-twin-1, namespace: default, labels: {kubernetes.io/service-name: zz-twin}}
addressType: IPv4
ports: [{port: 5000}]
endpoints:
- {addresses: ["10.42.9.9"], nodeName: node-3}
"#;
    let (svc, sl) = (service("", ""), slice(&FIVE));
    let st = state(&[NODES, &svc, &sl, twin]);
    let (rs, problems) = ruleset_and_problems(&st, "node-2");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].object.to_string(), "default/zz-twin");
    let text = rs.to_string();
    assert!(
        !text.contains("10.42.9.9"),
        "the twin's endpoint must not mix in:\n{text}"
    );
    assert_eq!(text.matches(" : 10.42.").count(), 5);
}

#[test]
fn without_endpoints_tcp_is_reset_and_udp_gets_port_unreachable() {
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {clusterIP: 10.43.0.10, ports: [{name: a, port: 80}, {name: b, port: 53, protocol: UDP}]}\n";
    let docs = [NODES, svc];
    for path in [Path::Forwarded, Path::Local] {
        let src = if path == Path::Local {
            NODE_IP
        } else {
            CLIENT_POD
        };
        assert_eq!(
            outcomes(&docs, "node-2", src, path, Protocol::Tcp, 80),
            rejected(),
            "tcp {path:?}"
        );
        assert_eq!(
            outcomes(&docs, "node-2", src, path, Protocol::Udp, 53),
            [Outcome::Rejected(Refusal::Icmp)].into_iter().collect(),
            "udp {path:?}"
        );
    }
}
