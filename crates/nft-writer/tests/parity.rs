//! kube-proxy parity of the data plane (issue 14, items 1–7), traced over
//! the fake kernel: each case names the rule of upstream's nftables
//! proxier (kubernetes/kubernetes pkg/proxy/nftables/proxier.go) it
//! follows, and the outcome a packet gets: DNATed to which endpoint (and
//! masqueraded or not), refused, dropped, or left alone.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_watch::Protocol;
use common::state;
use nft_writer::{
    plan_ruleset, trace, trace_established, Cidr, Dirty, FakeKernel, Family, IncrementalPlanner,
    Kernel, Outcome, Packet, Path, PlannerConfig, Refusal, Ruleset, Transaction,
};

const NODE_IP: &str = "172.31.11.85";
/// A second InternalIP of node-2 (not its primary address).
const NODE_IP_2: &str = "172.31.11.86";
const NODE_IP6: &str = "fd00:31::85";
const POD: &str = "10.42.187.70";
const POD6: &str = "fd00:42::70";
/// Outside the cluster, inside loadBalancerSourceRanges.
const IN_RANGE: &str = "198.51.100.9";
/// Outside the cluster and outside loadBalancerSourceRanges.
const OUTSIDE: &str = "192.0.2.99";
const OUTSIDE6: &str = "2001:db8:ff::1";

const NODES: &str = "
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {kubernetes.io/hostname: node-2}}
status:
  addresses:
  - {type: InternalIP, address: 172.31.11.85}
  - {type: InternalIP, address: 172.31.11.86}
  - {type: InternalIP, address: 'fd00:31::85'}
";

/// `web`: dual stack, LoadBalancer (eTP Cluster) with an IPv4 VIP, an
/// IPv6 VIP and an `ipMode: Proxy` ingress, IPv4 source ranges only;
/// endpoints on node-2, on node-3 and one whose slice names no node.
/// `dns`: TCP only. `empty`: a LoadBalancer with source ranges and no
/// endpoint.
fn services(ranges: &str) -> String {
    format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: LoadBalancer
  clusterIPs: [10.43.0.10, 'fd00:43::10']
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  loadBalancerSourceRanges: [{ranges}]
  ports: [{{name: http, port: 80, targetPort: 5000, nodePort: 30080}}]
status:
  loadBalancer:
    ingress: [{{ip: 203.0.113.7}}, {{ip: '2001:db8::7'}}, {{ip: 203.0.113.8, ipMode: Proxy}}]
---
apiVersion: v1
kind: Service
metadata: {{name: dns, namespace: default}}
spec: {{clusterIP: 10.43.0.53, ports: [{{name: dns, port: 53, protocol: TCP, targetPort: 5353}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: empty, namespace: default}}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.40
  loadBalancerSourceRanges: [{ranges}]
  ports: [{{port: 80, nodePort: 30040}}]
status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.40}}]}}}}
"
    )
}

const WEB_SLICES: &str = "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-4, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 5000}]
endpoints:
- {addresses: [10.42.187.66], nodeName: node-2}
- {addresses: [10.42.54.130], nodeName: node-3}
- {addresses: [10.42.99.9]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-6, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{name: http, port: 5000}]
endpoints:
- {addresses: ['fd00:42::66'], nodeName: node-2}
";

const DNS_SLICE: &str = "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-1, namespace: default, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: dns, port: 5353, protocol: TCP}]
endpoints:
- {addresses: [10.42.187.67], nodeName: node-2}
";

const SERVICE_CIDRS: &str = "
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: kubernetes}
spec: {cidrs: [10.43.0.0/16, 'fd00:43::/112']}
";

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;
const FWD: Path = Path::Forwarded;
const LOCAL: Path = Path::Local;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config() -> PlannerConfig {
    PlannerConfig {
        detect_local: nft_writer::DetectLocal::ClusterCidr(
            ["10.42.0.0/16", "fd00:42::/48"]
                .iter()
                .filter_map(|c| Cidr::parse(c).ok())
                .collect(),
        ),
        ..PlannerConfig::default()
    }
}

/// The ruleset of node-2 for `docs`, applied to a fake kernel.
struct World {
    kernel: FakeKernel,
}

/// A cluster: the web and dns Services (with `ranges` as every source
/// range list), their slices unless `without_endpoints`, and `extra`
/// documents.
fn cluster(ranges: &str, without_endpoints: bool, extra: &[&str]) -> Vec<String> {
    let mut docs = vec![NODES.to_string(), services(ranges)];
    if !without_endpoints {
        docs.push(WEB_SLICES.to_string());
        docs.push(DNS_SLICE.to_string());
    }
    docs.extend(extra.iter().map(|d| d.to_string()));
    docs
}

fn ruleset_of(docs: &[String]) -> Ruleset {
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let plan = topology_filter::plan(&state(&docs), "node-2");
    let (rs, problems) = plan_ruleset(&plan, &config());
    assert!(problems.is_empty(), "{problems:?}");
    rs
}

fn world(docs: &[String]) -> World {
    let mut kernel = FakeKernel::new();
    kernel
        .apply(&Transaction::replace(&ruleset_of(docs)))
        .expect("the fake accepts it");
    World { kernel }
}

impl World {
    fn packet(&self, src: &str, dst: &str, proto: Protocol, port: u16, path: Path) -> Packet {
        Packet {
            src: ip(src),
            dst: ip(dst),
            proto,
            dport: port,
            path,
            iifname: String::new(),
            node_addrs: [NODE_IP, NODE_IP_2, NODE_IP6, "127.0.0.1"]
                .iter()
                .map(|a| ip(a))
                .collect(),
        }
    }

    fn table(&self, dst: &str) -> &nft_writer::Table {
        let family = if ip(dst).is_ipv4() {
            Family::Ip
        } else {
            Family::Ip6
        };
        self.kernel.table(family, "nftopo").expect("table")
    }

    /// The first packet of a new connection.
    fn go(
        &self,
        src: &str,
        dst: &str,
        proto: Protocol,
        port: u16,
        path: Path,
    ) -> BTreeSet<Outcome> {
        trace(self.table(dst), &self.packet(src, dst, proto, port, path))
    }

    /// A later packet of a connection conntrack DNATed to `to`.
    fn later(
        &self,
        (src, dst, port, path): (&str, &str, u16, Path),
        to: (&str, u16),
    ) -> BTreeSet<Outcome> {
        let pkt = self.packet(src, dst, TCP, port, path);
        trace_established(self.table(dst), &pkt, Some((ip(to.0), to.1)))
    }
}

fn dnat(targets: &[(&str, bool)]) -> BTreeSet<Outcome> {
    targets
        .iter()
        .map(|(a, m)| Outcome::Accepted {
            dnat: Some((ip(a), 5000)),
            masquerade: *m,
        })
        .collect()
}

fn one(o: Outcome) -> BTreeSet<Outcome> {
    BTreeSet::from([o])
}

fn untouched() -> BTreeSet<Outcome> {
    one(Outcome::Accepted {
        dnat: None,
        masquerade: false,
    })
}

fn reset() -> BTreeSet<Outcome> {
    one(Outcome::Rejected(Refusal::TcpReset))
}

fn dropped() -> BTreeSet<Outcome> {
    one(Outcome::Dropped)
}

/// Every endpoint of web (IPv4), masqueraded or not.
fn web4(masquerade: bool) -> BTreeSet<Outcome> {
    dnat(&[
        ("10.42.187.66", masquerade),
        ("10.42.54.130", masquerade),
        ("10.42.99.9", masquerade),
    ])
}

fn check(cases: Vec<(&str, BTreeSet<Outcome>, BTreeSet<Outcome>)>) {
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn item_1_a_port_no_service_port_defines_on_a_cluster_ip_is_refused() {
    let w = world(&cluster("198.51.100.0/24", false, &[]));
    check(vec![
        (
            "TCP to a cluster IP on a port no service port defines is refused (cluster-ips-check: ip daddr @cluster-ips reject)",
            w.go(POD, "10.43.0.10", TCP, 81, FWD),
            reset(),
        ),
        (
            "UDP to a TCP-only service port is refused with ICMP port unreachable",
            w.go(POD, "10.43.0.53", UDP, 53, FWD),
            one(Outcome::Rejected(Refusal::Icmp)),
        ),
        (
            "the node's own connection is checked after DNAT (filter-output-post-dnat jumps to cluster-ips-check)",
            w.go(NODE_IP, "10.43.0.10", TCP, 81, LOCAL),
            reset(),
        ),
        (
            "an IPv6 cluster IP on an undefined port is refused too",
            w.go(POD6, "fd00:43::10", TCP, 81, FWD),
            reset(),
        ),
        (
            "the defined port is still served (the check runs after the service dispatch)",
            w.go(POD, "10.43.0.10", TCP, 80, FWD),
            web4(false),
        ),
        (
            "the node's own connection to a defined port is served, not refused after DNAT",
            w.go(NODE_IP, "10.43.0.53", TCP, 53, LOCAL),
            one(Outcome::Accepted {
                dnat: Some((ip("10.42.187.67"), 5353)),
                masquerade: true,
            }),
        ),
        (
            "only cluster IPs are in cluster-ips: an undefined port of a load-balancer IP is left alone",
            w.go(OUTSIDE, "203.0.113.7", TCP, 81, FWD),
            untouched(),
        ),
        (
            "without ServiceCIDRs, an address of the service range that is no cluster IP is left alone",
            w.go(POD, "10.43.99.99", TCP, 80, FWD),
            untouched(),
        ),
    ]);
}

#[test]
fn item_2_an_unallocated_address_of_a_service_cidr_is_dropped() {
    let w = world(&cluster("198.51.100.0/24", false, &[SERVICE_CIDRS]));
    check(vec![
        (
            "an address inside a ServiceCIDR that no Service holds is dropped (cluster-ips-check: ip daddr { serviceCIDRs } drop)",
            w.go(POD, "10.43.99.99", TCP, 80, FWD),
            dropped(),
        ),
        (
            "the node's own connection to it is dropped too",
            w.go(NODE_IP, "10.43.99.99", UDP, 53, LOCAL),
            dropped(),
        ),
        (
            "an IPv6 ServiceCIDR drops its unallocated addresses",
            w.go(POD6, "fd00:43::99", TCP, 80, FWD),
            dropped(),
        ),
        (
            "an allocated cluster IP on an undefined port is still refused, not dropped (the reject rule comes first)",
            w.go(POD, "10.43.0.10", TCP, 81, FWD),
            reset(),
        ),
        (
            "an address outside every ServiceCIDR is left alone",
            w.go(POD, "10.44.0.1", TCP, 80, FWD),
            untouched(),
        ),
        (
            "a served cluster IP is still served",
            w.go(POD, "10.43.0.10", TCP, 80, FWD),
            web4(false),
        ),
    ]);
}

#[test]
fn item_2_service_cidrs_alone_make_the_ip6_table() {
    let v4_only = "
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: default}
spec: {clusterIP: 10.43.0.53, ports: [{port: 53}]}
";
    let without = ruleset_of(&[NODES.to_string(), v4_only.to_string()]);
    assert_eq!(without.tables.len(), 1, "no IPv6 address, no ip6 table");
    let with = ruleset_of(&[
        NODES.to_string(),
        v4_only.to_string(),
        SERVICE_CIDRS.to_string(),
    ]);
    let families: Vec<Family> = with.tables.iter().map(|t| t.family).collect();
    assert_eq!(
        families,
        [Family::Ip, Family::Ip6],
        "an IPv6 ServiceCIDR has its unallocated addresses dropped even before any IPv6 Service"
    );
}

#[test]
fn item_2_a_change_of_the_service_cidrs_replans_the_skeleton() {
    let docs = cluster("198.51.100.0/24", false, &[]);
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let mut plan = topology_filter::plan(&state(&refs), "node-2");
    let mut planner = IncrementalPlanner::new(config());
    assert!(planner.update(&plan, Dirty::All).full, "the first plan");
    let none = BTreeSet::new();
    let same = planner.update(&plan, Dirty::Services(&none));
    assert!(!same.full && same.now.is_empty(), "{same:?}");
    plan.service_cidrs = vec!["10.43.0.0/16".parse().unwrap()];
    assert!(
        planner.update(&plan, Dirty::Services(&none)).full,
        "a new ServiceCIDR changes cluster-ips-check"
    );
    assert_eq!(planner.ruleset(), plan_ruleset(&plan, &config()).0);
}

#[test]
fn item_3_established_connections_are_not_cut_by_the_no_endpoint_and_firewall_checks() {
    // Upstream jumps to service-endpoints-check and firewall-check with
    // `ct state new` only.
    let empty = world(&cluster("198.51.100.0/24", true, &[]));
    let narrowed = world(&cluster("203.0.113.0/24", false, &[]));
    check(vec![
        (
            "the node's connection to a cluster IP whose endpoints went away keeps flowing",
            empty.later((NODE_IP, "10.43.0.10", 80, LOCAL), ("10.42.187.66", 5000)),
            dnat(&[("10.42.187.66", false)]),
        ),
        (
            "while a new one is refused",
            empty.go(NODE_IP, "10.43.0.10", TCP, 80, LOCAL),
            reset(),
        ),
        (
            "a client's connection to a load-balancer IP whose endpoints went away keeps flowing",
            empty.later((IN_RANGE, "203.0.113.7", 80, FWD), ("10.42.187.66", 5000)),
            dnat(&[("10.42.187.66", false)]),
        ),
        (
            "a client's connection keeps flowing after loadBalancerSourceRanges stopped holding it",
            narrowed.later((IN_RANGE, "203.0.113.7", 80, FWD), ("10.42.54.130", 5000)),
            dnat(&[("10.42.54.130", false)]),
        ),
        (
            "while a new one from the same client is dropped",
            narrowed.go(IN_RANGE, "203.0.113.7", TCP, 80, FWD),
            dropped(),
        ),
    ]);
}

#[test]
fn item_4_load_balancer_source_ranges_hold_for_the_node_without_endpoints_and_per_family() {
    let w = world(&cluster("198.51.100.0/24", false, &[]));
    let empty = world(&cluster("198.51.100.0/24", true, &[]));
    let node_in_range = world(&cluster("172.31.11.0/24", false, &[]));
    check(vec![
        (
            "a client inside the ranges reaches the load-balancer IP",
            w.go(IN_RANGE, "203.0.113.7", TCP, 80, FWD),
            web4(true),
        ),
        (
            "a client outside the ranges is dropped (firewall-check from filter-prerouting)",
            w.go(OUTSIDE, "203.0.113.7", TCP, 80, FWD),
            dropped(),
        ),
        (
            "the node itself, outside the ranges, is dropped too (firewall-check from filter-output)",
            w.go(NODE_IP, "203.0.113.7", TCP, 80, LOCAL),
            dropped(),
        ),
        (
            "a pod outside the ranges is dropped",
            w.go(POD, "203.0.113.7", TCP, 80, FWD),
            dropped(),
        ),
        (
            "without endpoints, a client outside the ranges is dropped, not refused (firewall-ips are kept without endpoints)",
            empty.go(OUTSIDE, "203.0.113.40", TCP, 80, FWD),
            dropped(),
        ),
        (
            "without endpoints, a client inside the ranges is refused",
            empty.go(IN_RANGE, "203.0.113.40", TCP, 80, FWD),
            reset(),
        ),
        (
            "IPv4 ranges only leave the IPv6 load-balancer IP unfiltered (each family's proxier sees its own ranges)",
            w.go(OUTSIDE6, "2001:db8::7", TCP, 80, FWD),
            one(Outcome::Accepted {
                dnat: Some((ip("fd00:42::66"), 5000)),
                masquerade: true,
            }),
        ),
        (
            "the node port is not subject to the ranges",
            w.go(OUTSIDE, NODE_IP, TCP, 30080, FWD),
            web4(true),
        ),
        (
            "a range holding the node's address lets the node reach the load-balancer IP",
            node_in_range.go(NODE_IP, "203.0.113.7", TCP, 80, LOCAL),
            web4(true),
        ),
        (
            "and then the load-balancer IP itself is an allowed source (allowFromNode: a VIP bound on the node answers from the VIP)",
            node_in_range.go("203.0.113.7", "203.0.113.7", TCP, 80, FWD),
            web4(true),
        ),
        (
            "without a range holding the node's address, the load-balancer IP is no allowed source",
            w.go("203.0.113.7", "203.0.113.7", TCP, 80, FWD),
            dropped(),
        ),
    ]);
}

#[test]
fn item_5_a_load_balancer_ingress_of_ip_mode_proxy_is_not_programmed() {
    let w = world(&cluster("0.0.0.0/0", false, &[]));
    check(vec![
        (
            "ipMode: Proxy is not a LoadBalancerVIP: a pod's connection goes to the load balancer",
            w.go(POD, "203.0.113.8", TCP, 80, FWD),
            untouched(),
        ),
        (
            "an ingress without ipMode (VIP) is programmed",
            w.go(POD, "203.0.113.7", TCP, 80, FWD),
            web4(true),
        ),
    ]);
    let text = w.kernel.dump();
    assert!(!text.contains("203.0.113.8"), "{text}");
}

#[test]
fn item_6_every_endpoint_reaching_itself_is_masqueraded() {
    // Upstream: every endpoint chain starts with
    // `ip saddr <endpoint IP> jump mark-for-masquerade`.
    let w = world(&cluster("198.51.100.0/24", false, &[]));
    let others = |me: &str| -> BTreeSet<Outcome> {
        ["10.42.187.66", "10.42.54.130", "10.42.99.9"]
            .iter()
            .map(|ep| Outcome::Accepted {
                dnat: Some((ip(ep), 5000)),
                masquerade: *ep == me,
            })
            .collect()
    };
    check(vec![
        (
            "an endpoint on this node reaching itself is masqueraded",
            w.go("10.42.187.66", "10.43.0.10", TCP, 80, FWD),
            others("10.42.187.66"),
        ),
        (
            "an endpoint on another node reaching itself through this node is masqueraded",
            w.go("10.42.54.130", "10.43.0.10", TCP, 80, FWD),
            others("10.42.54.130"),
        ),
        (
            "an endpoint whose slice names no node reaching itself is masqueraded",
            w.go("10.42.99.9", "10.43.0.10", TCP, 80, FWD),
            others("10.42.99.9"),
        ),
    ]);
}

#[test]
fn item_7_node_ports_listen_on_the_primary_address_of_each_family() {
    // cmd/kube-proxy/app/server.go: `--nodeport-addresses primary` is
    // the node IP of each family (/32, /128), one per family.
    let w = world(&cluster("198.51.100.0/24", false, &[]));
    check(vec![
        (
            "the first IPv4 InternalIP serves node ports",
            w.go(OUTSIDE, NODE_IP, TCP, 30080, FWD),
            web4(true),
        ),
        (
            "a second IPv4 InternalIP does not",
            w.go(OUTSIDE, NODE_IP_2, TCP, 30080, FWD),
            untouched(),
        ),
        (
            "nor is a node port without endpoints refused there",
            w.go(OUTSIDE, NODE_IP_2, TCP, 30040, FWD),
            untouched(),
        ),
        (
            "the IPv6 InternalIP serves node ports",
            w.go(OUTSIDE6, NODE_IP6, TCP, 30080, FWD),
            one(Outcome::Accepted {
                dnat: Some((ip("fd00:42::66"), 5000)),
                masquerade: true,
            }),
        ),
    ]);
}

#[test]
fn drop_or_reject_is_decided_per_family() {
    // Each of upstream's proxiers sees its own family's endpoints: its
    // `hasEndpoints` decides between `drop` (endpoints elsewhere, none
    // here for a Local policy) and `goto reject-chain` (none at all).
    let local = "
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default}
spec:
  clusterIPs: [10.43.0.60, 'fd00:43::60']
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  internalTrafficPolicy: Local
  ports: [{name: http, port: 80, targetPort: 5000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-4, namespace: default, labels: {kubernetes.io/service-name: local}}
addressType: IPv4
ports: [{name: http, port: 5000}]
endpoints:
- {addresses: [10.42.54.130], nodeName: node-3}
";
    let w = world(&[NODES.to_string(), local.to_string()]);
    check(vec![
        (
            "iTP Local with IPv4 endpoints on other nodes only drops IPv4 traffic",
            w.go(POD, "10.43.0.60", TCP, 80, FWD),
            dropped(),
        ),
        (
            "and without any IPv6 endpoint, IPv6 traffic is refused",
            w.go(POD6, "fd00:43::60", TCP, 80, FWD),
            reset(),
        ),
    ]);
}
