//! Issue 14's parity suite, Service basics: upstream kube-proxy's own
//! nftables scenarios (kubernetes/kubernetes
//! `pkg/proxy/nftables/proxier_test.go`) replayed with real traffic in the
//! edge cluster (`integration/src/edge.rs`), one `#[test]` per upstream
//! test function, each case named after its upstream row (the `name:` of
//! the `packetFlowTest`) and citing it.
//!
//! Outcomes are observed, never read from rules: which backend answered
//! and on which port, which source address it saw (a masqueraded flow
//! shows node-2's address), a refusal within 1 s (upstream `REJECT`;
//! nftopo resets TCP where kube-proxy sends ICMP port unreachable, both
//! an immediate refusal for the client) or time-outs only (upstream
//! `DROP`). Where "not intercepted" must be visible, something answers
//! behind the node: node-2's sentinel on the node ports, or `outside2`
//! holding the address ([`EdgeCluster::answer_behind_node2`]).
//!
//! Upstream's fake proxier and the edge cluster, side by side:
//!
//! | upstream | here |
//! |---|---|
//! | pod CIDR 10.0.0.0/8; a pod client 10.0.0.2 / 10.180.0.2 | `--cluster-cidr 10.42.0.0/16,fd00:42::/48`; pod `client` (10.42.187.80, node-2) |
//! | service CIDR 172.30.0.0/16, cluster IP 172.30.x.y | ServiceCIDR 10.43.0.0/16, cluster IP 10.43.x.y (`fd00:172:30::41` → `fd00:43::41`) |
//! | local node `test-node`, node IP 192.168.0.2 | node-2, 172.31.11.85 / fd00:31::85 |
//! | alternate node IP 192.168.1.2 / 2001:db8:1::2 | 172.31.12.85 / fd00:31:1::85, added to node-2's eth0 |
//! | endpoint on this node (10.180.0.1, NodeName test-node) | pod `a` (10.42.187.66, node-2) |
//! | endpoint elsewhere (10.180.2.1, or no NodeName) | pod `c` (10.42.54.130, node-3) |
//! | endpoint port 80 / 8443 / 53 / 5353 | the pods' 5000 / 5001 / 5000 / 6000 |
//! | external client 203.0.113.2 | `outside` (172.31.11.200) |
//! | blocked external client 203.0.113.130 | `outside2` (172.31.11.201) |
//! | source ranges 192.168.0.0/24 (the node network), " 203.0.113.0/25" | 172.31.11.0/25 (holds node-2, not the clients), " 172.31.11.200/32" |
//! | external IPs 192.168.99.x | 198.51.100.x |
//! | LoadBalancer IPs 1.2.3.4, 5.6.7.8 | 203.0.113.4, 203.0.113.8 |
//! | node port 3001 | 30080 (node-2's sentinel holds it when nftopo does not) |
//!
//! SCTP rows are skipped: this kernel has no SCTP sockets (each is named
//! where it would be).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use nftopo_integration::edge::*;
use nftopo_integration::outcome::{ok, Scratch};
use nftopo_integration::{require_root, Probe};

/// Connections per probe over two endpoints: a working random spread
/// misses one with probability 2 * 0.5^30, about 2e-9.
const CONNS: usize = 30;
/// Connections per probe where one endpoint (or a refusal) is expected.
const FEW: usize = 5;
/// UDP refusals per client and test: within the kernel's ICMP burst.
const UDP_REFUSALS: usize = 2;
const HTTP: u16 = 80;
/// The node port (upstream 3001): node-2's sentinel answers on it when
/// nftopo does not intercept it.
const NODE_PORT: u16 = 30080;
/// The UDP node port the sentinel holds.
const NODE_PORT_UDP: u16 = 30053;
/// node-2's alternate addresses (upstream testNodeIPAlt,
/// testNodeIPv6Alt): another subnet than the InternalIPs, as upstream.
/// The IPv6 one is added deprecated (`preferred_lft 0`): it still takes
/// traffic, but the kernel's source address selection (RFC 6724) would
/// otherwise tie it with fd00:31::85 and may masquerade to it, an address
/// node-3 has no route back to.
const NODE2_ALT4: Ipv4Addr = Ipv4Addr::new(172, 31, 12, 85);
const NODE2_ALT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x31, 1, 0, 0, 0, 0, 0x85);

fn cluster() -> EdgeCluster {
    require_root();
    // Every outcome below is also checked against `nftopo trace`.
    nftopo_integration::trace_check::enable();
    ok(
        EdgeCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
        "edge cluster",
    )
}

/// `nftopo apply` in node-2 with these manifests and flags.
fn apply(c: &EdgeCluster, files: &[&str], extra: &[&str]) {
    ok(
        c.apply(files, extra),
        &format!("nftopo apply {files:?} {extra:?}"),
    );
}

fn set(ips: &[IpAddr]) -> BTreeSet<IpAddr> {
    ips.iter().copied().collect()
}

fn v4(pod: &str) -> IpAddr {
    pod_spec(pod).ip4.into()
}

fn v6(pod: &str) -> IpAddr {
    pod_spec(pod).ip6.into()
}

/// Served by exactly `want` (pod IP, port reached), every pod seeing
/// `peer`: upstream's `output: "ip:port, ..."` with `masq`.
fn served_on(
    c: &EdgeCluster,
    from: &str,
    p: &Probe,
    want: &[(IpAddr, u16)],
    peer: impl Into<IpAddr>,
    case: &str,
) {
    let pods = want.iter().map(|(ip, _)| *ip).collect();
    let r = c.expect_served_from(from, p, &pods, peer, case);
    let ports: BTreeSet<(IpAddr, u16)> = want.iter().copied().collect();
    assert_eq!(
        r.pod_ports(),
        ports,
        "{case}: {} {} from {from}: the ports reached: {r}",
        p.proto,
        p.target
    );
}

/// networking.k8s.io/v1 ServiceCIDRs of the edge cluster (upstream's
/// fake proxier always has `serviceCIDRs` 172.30.0.0/16).
const SERVICE_CIDR: &str = "
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: kubernetes}
spec: {cidrs: [10.43.0.0/16, 'fd00:43::/112']}
";

// ------------------------------------------------------ TestClusterIPGeneral

/// Upstream `TestClusterIPGeneral`: svc1 (one local endpoint) and svc2
/// (a local and a remote endpoint; http, https with a target port, DNS
/// over UDP, TCP with another target port, and SCTP), plus the service
/// range. 9 of its 10 rows (the SCTP row is skipped).
#[test]
fn test_cluster_ip_general() {
    let c = cluster();
    let s = Scratch::new();
    let unallocated = Ipv4Addr::new(10, 43, 0, 50);
    c.answer_behind_node2(unallocated, HTTP);
    let svc1 = Ipv4Addr::new(10, 43, 0, 41);
    let svc2 = Ipv4Addr::new(10, 43, 0, 42);
    let services = s.file(
        "services.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  clusterIP: 10.43.0.41
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 5000}]
---
apiVersion: v1
kind: Service
metadata: {name: svc2, namespace: ns2}
spec:
  clusterIP: 10.43.0.42
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 5000}
  - {name: https, port: 443, protocol: TCP, targetPort: 5001}
  - {name: dns-udp, port: 53, protocol: UDP, targetPort: 5000}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 6000}
  - {name: dns-sctp, port: 53, protocol: SCTP, targetPort: 5000}
",
    );
    let slices = s.file(
        "slices.yaml",
        "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
ports: [{name: http, port: 5000, protocol: TCP}]
endpoints: [{addresses: [10.42.187.66], nodeName: node-2}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc2-1, namespace: ns2, labels: {kubernetes.io/service-name: svc2}}
addressType: IPv4
ports:
- {name: http, port: 5000, protocol: TCP}
- {name: https, port: 5001, protocol: TCP}
- {name: dns-udp, port: 5000, protocol: UDP}
- {name: dns-tcp, port: 6000, protocol: TCP}
- {name: dns-sctp, port: 5000, protocol: SCTP}
endpoints:
- {addresses: [10.42.187.66], nodeName: node-2}
- {addresses: [10.42.54.130], nodeName: node-3}
",
    );
    let cidrs = s.file("service-cidr.yaml", SERVICE_CIDR);
    c.expect_served(
        "client",
        &Probe::tcp(sa(unallocated, HTTP), FEW),
        &set(&[unallocated.into()]),
        "before apply, outside2 answers for the unallocated address",
    );
    apply(&c, &["nodes.yaml", &services, &slices, &cidrs], &[]);
    let (a, cc, client) = (v4("a"), v4("c"), v4("client"));

    // "simple clusterIP": 10.180.0.2 → 172.30.0.41:80 = 10.180.0.1:80, masq false.
    served_on(
        &c,
        "client",
        &Probe::tcp(sa(svc1, HTTP), FEW),
        &[(a, 5000)],
        client,
        "simple clusterIP",
    );
    // "hairpin to cluster IP": the endpoint 10.180.0.1 to its own service,
    // masq true (node-2's address).
    served_on(
        &c,
        "a",
        &Probe::tcp(sa(svc1, HTTP), FEW),
        &[(a, 5000)],
        NODE2_IP4,
        "hairpin to cluster IP",
    );
    // "clusterIP with multiple endpoints": 10.180.0.1:80, 10.180.2.1:80.
    served_on(
        &c,
        "client",
        &Probe::tcp(sa(svc2, HTTP), CONNS),
        &[(a, 5000), (cc, 5000)],
        client,
        "clusterIP with multiple endpoints",
    );
    // "clusterIP with TargetPort": 443 → the endpoints' 8443 (here 5001).
    served_on(
        &c,
        "client",
        &Probe::tcp(sa(svc2, 443), CONNS),
        &[(a, 5001), (cc, 5001)],
        client,
        "clusterIP with TargetPort",
    );
    // "clusterIP with TCP, UDP, and SCTP on same port (TCP)", TCP: 53 →
    // the endpoints' 5353 (here 6000).
    served_on(
        &c,
        "client",
        &Probe::tcp(sa(svc2, 53), CONNS),
        &[(a, 6000), (cc, 6000)],
        client,
        "clusterIP with TCP, UDP, and SCTP on same port (TCP)",
    );
    // Upstream's UDP row carries the same name, "(TCP)", with protocol
    // UDP: 53 → the endpoints' 53 (here 5000).
    served_on(
        &c,
        "client",
        &Probe::udp(sa(svc2, 53), CONNS),
        &[(a, 5000), (cc, 5000)],
        client,
        "clusterIP with TCP, UDP, and SCTP on same port (TCP) [the UDP row]",
    );
    // "clusterIP with TCP, UDP, and SCTP on same port (SCTP)": skipped, no
    // SCTP sockets on this kernel (dns-sctp stays in the manifests).

    // "TCP-only port does not match UDP traffic": UDP to svc2:80, REJECT.
    c.expect_refused(
        "client",
        &Probe::udp(sa(svc2, HTTP), UDP_REFUSALS),
        "TCP-only port does not match UDP traffic",
    );
    // "svc1 does not accept svc2's ports": TCP to svc1:443, REJECT.
    c.expect_refused(
        "client",
        &Probe::tcp(sa(svc1, 443), FEW),
        "svc1 does not accept svc2's ports",
    );
    // "packet to unallocated cluster ip": 172.30.0.50:80, DROP (outside2
    // answered it before the apply).
    c.expect_dropped(
        "client",
        sa(unallocated, HTTP),
        false,
        "packet to unallocated cluster ip",
    );
}

// ----------------------------------------------------- TestNoEndpointsReject

/// Upstream `TestNoEndpointsReject`: a LoadBalancer with an external IP,
/// a node port and an ingress IP, and no EndpointSlice at all, refuses
/// pods and external clients on every address. 6 rows.
#[test]
fn test_no_endpoints_reject() {
    let c = cluster();
    let s = Scratch::new();
    let svc = s.file(
        "svc1.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.41
  externalIPs: [198.51.100.11]
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]
status: {loadBalancer: {ingress: [{ip: 203.0.113.4}]}}
",
    );
    let cluster_ip = sa(Ipv4Addr::new(10, 43, 0, 41), HTTP);
    let external_ip = sa(Ipv4Addr::new(198, 51, 100, 11), HTTP);
    let node_port = sa(NODE2_IP4, NODE_PORT);
    let lb_ip = sa(Ipv4Addr::new(203, 0, 113, 4), HTTP);
    c.expect_served(
        "outside",
        &Probe::tcp(node_port, FEW),
        &set(&[NODE2_IP4.into()]),
        "before apply the sentinel holds the node port",
    );
    apply(&c, &["nodes.yaml", &svc], &[]);

    for (from, target, row) in [
        ("client", cluster_ip, "pod to cluster IP with no endpoints"),
        (
            "outside",
            external_ip,
            "external to external IP with no endpoints",
        ),
        ("client", node_port, "pod to NodePort with no endpoints"),
        (
            "outside",
            node_port,
            "external to NodePort with no endpoints",
        ),
        ("client", lb_ip, "pod to LoadBalancer IP with no endpoints"),
        (
            "outside",
            lb_ip,
            "external to LoadBalancer IP with no endpoints",
        ),
    ] {
        c.expect_refused(from, &Probe::tcp(target, FEW), row);
    }
}

// ---------------------------------------------------------- TestLoadBalancer

/// Upstream `TestLoadBalancer`: two ingress IPs, source ranges
/// `["192.168.0.0/24", " 203.0.113.0/25"]` (the second with the leading
/// space upstream keeps as a regression test), one endpoint without a
/// node name. 13 rows.
#[test]
fn test_load_balancer() {
    let c = cluster();
    let s = Scratch::new();
    let svc = s.file(
        "svc1.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.41
  ports: [{name: p80, port: 80, protocol: TCP, targetPort: 5000, nodePort: 30080}]
  loadBalancerSourceRanges: ['172.31.11.0/25', ' 172.31.11.200/32']
status: {loadBalancer: {ingress: [{ip: 203.0.113.4}, {ip: 203.0.113.8}]}}
",
    );
    let slice = s.file(
        "slice.yaml",
        "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
ports: [{name: p80, port: 5000, protocol: TCP}]
endpoints: [{addresses: [10.42.54.130]}]
",
    );
    apply(&c, &["nodes.yaml", &svc, &slice], &[]);
    let ep = [(v4("c"), 5000)];
    let lb1 = Ipv4Addr::new(203, 0, 113, 4);
    let lb2 = Ipv4Addr::new(203, 0, 113, 8);
    let tcp = |ip: Ipv4Addr, port: u16| Probe::tcp(sa(ip, port), FEW);

    served_on(
        &c,
        "client",
        &tcp(Ipv4Addr::new(10, 43, 0, 41), HTTP),
        &ep,
        v4("client"),
        "pod to cluster IP",
    );
    served_on(
        &c,
        "outside",
        &tcp(NODE2_IP4, NODE_PORT),
        &ep,
        NODE2_IP4,
        "external to nodePort",
    );
    served_on(
        &c,
        "outside2",
        &tcp(NODE2_IP4, NODE_PORT),
        &ep,
        NODE2_IP4,
        "nodePort bypasses LoadBalancerSourceRanges",
    );
    served_on(
        &c,
        "outside",
        &tcp(lb1, HTTP),
        &ep,
        NODE2_IP4,
        "accepted external to LB1",
    );
    served_on(
        &c,
        "outside",
        &tcp(lb2, HTTP),
        &ep,
        NODE2_IP4,
        "accepted external to LB2",
    );
    c.expect_dropped("outside2", sa(lb1, HTTP), false, "blocked external to LB1");
    c.expect_dropped("outside2", sa(lb2, HTTP), false, "blocked external to LB2");
    c.expect_dropped(
        "client",
        sa(lb1, HTTP),
        false,
        "pod to LB1 (blocked by LoadBalancerSourceRanges)",
    );
    c.expect_dropped(
        "client",
        sa(lb2, HTTP),
        false,
        "pod to LB2 (blocked by LoadBalancerSourceRanges)",
    );
    served_on(
        &c,
        THIS_NODE,
        &tcp(lb1, HTTP),
        &ep,
        NODE2_IP4,
        "node to LB1 (allowed by LoadBalancerSourceRanges)",
    );
    served_on(
        &c,
        THIS_NODE,
        &tcp(lb2, HTTP),
        &ep,
        NODE2_IP4,
        "node to LB2 (allowed by LoadBalancerSourceRanges)",
    );

    // Upstream: "something external to kube-proxy" SNATs node-2's
    // connection to the LB IP. Here node-2 holds the LB IPs itself (as
    // some load-balancer agents do), so its connection to one leaves with
    // that IP as source; masquerade then shows node-2's address.
    for ip in [lb1, lb2] {
        ok(
            c.node(THIS_NODE)
                .ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]),
            "LB IP on node-2",
        );
    }
    served_on(
        &c,
        THIS_NODE,
        &tcp(lb1, HTTP),
        &ep,
        NODE2_IP4,
        "same node to LB1, SNATted to LB1 (implicitly allowed)",
    );
    served_on(
        &c,
        THIS_NODE,
        &tcp(lb2, HTTP),
        &ep,
        NODE2_IP4,
        "same node to LB2, SNATted to LB2 (implicitly allowed)",
    );
}

// ------------------------------------------------------------- TestNodePorts

/// Upstream `TestNodePorts`: a NodePort service (here dual stack, so both
/// families' sub-cases use one Service) with a remote endpoint (no node
/// name) and a local one, under four `--nodeport-addresses` settings;
/// node-2 carries an alternate address per family in another subnet.
/// 4 sub-cases x 4 rows.
#[test]
fn test_node_ports() {
    let c = cluster();
    let s = Scratch::new();
    let node2 = c.node(THIS_NODE);
    ok(
        node2.ip(&["addr", "add", &format!("{NODE2_ALT4}/24"), "dev", "eth0"]),
        "alternate IPv4 address on node-2",
    );
    ok(
        node2.ip(&[
            "addr",
            "add",
            &format!("{NODE2_ALT6}/64"),
            "dev",
            "eth0",
            "nodad",
            "preferred_lft",
            "0",
        ]),
        "alternate IPv6 address on node-2",
    );
    let outside = c.ns("outside");
    ok(
        outside.ip(&[
            "route",
            "add",
            "172.31.12.0/24",
            "via",
            &NODE2_IP4.to_string(),
        ]),
        "outside's route to the alternate subnet",
    );
    ok(
        outside.ip(&[
            "-6",
            "route",
            "add",
            "fd00:31:1::/64",
            "via",
            &NODE2_IP6.to_string(),
        ]),
        "outside's IPv6 route to the alternate subnet",
    );
    let svc = s.file(
        "svc1.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.43.0.41
  clusterIPs: [10.43.0.41, 'fd00:43::41']
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: p80, port: 80, protocol: TCP, targetPort: 5000, nodePort: 30080}]
",
    );
    let slices = s.file(
        "slices.yaml",
        "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
ports: [{name: p80, port: 5000, protocol: TCP}]
endpoints:
- {addresses: [10.42.54.130]}
- {addresses: [10.42.187.66], nodeName: node-2}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-2, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv6
ports: [{name: p80, port: 5000, protocol: TCP}]
endpoints:
- {addresses: ['fd00:42:0:3::130']}
- {addresses: ['fd00:42:0:2::66'], nodeName: node-2}
",
    );

    struct Family {
        cluster_ip: IpAddr,
        client: IpAddr,
        node_ip: IpAddr,
        alt_ip: IpAddr,
        endpoints: [(IpAddr, u16); 2],
    }
    let ipv4 = Family {
        cluster_ip: Ipv4Addr::new(10, 43, 0, 41).into(),
        client: v4("client"),
        node_ip: NODE2_IP4.into(),
        alt_ip: NODE2_ALT4.into(),
        endpoints: [(v4("c"), 5000), (v4("a"), 5000)],
    };
    let ipv6 = Family {
        cluster_ip: Ipv6Addr::new(0xfd00, 0x43, 0, 0, 0, 0, 0, 0x41).into(),
        client: v6("client"),
        node_ip: NODE2_IP6.into(),
        alt_ip: NODE2_ALT6.into(),
        endpoints: [(v6("c"), 5000), (v6("a"), 5000)],
    };
    // (upstream sub-case, its --nodeport-addresses, its family, allowAltNodeIP)
    let cases: [(&str, Option<&str>, &Family, bool); 4] = [
        ("ipv4", None, &ipv4, false),
        (
            "ipv4, multiple nodeport-addresses",
            Some("172.31.11.0/24,172.31.12.0/24,fd00:31::/64"),
            &ipv4,
            true,
        ),
        ("ipv6", None, &ipv6, false),
        (
            "ipv6, multiple nodeport-addresses",
            Some("172.31.11.0/24,172.31.12.0/24,fd00:31::/64,fd00:31:1::85/128"),
            &ipv6,
            true,
        ),
    ];
    for (name, addresses, f, allow_alt) in cases {
        let extra: Vec<&str> = addresses
            .map(|a| vec!["--nodeport-addresses", a])
            .unwrap_or_default();
        apply(&c, &["nodes.yaml", &svc, &slices], &extra);
        let row = |r: &str| format!("{name}: {r}");
        served_on(
            &c,
            "client",
            &Probe::tcp(SocketAddr::new(f.cluster_ip, HTTP), CONNS),
            &f.endpoints,
            f.client,
            &row("pod to cluster IP"),
        );
        served_on(
            &c,
            "outside",
            &Probe::tcp(SocketAddr::new(f.node_ip, NODE_PORT), CONNS),
            &f.endpoints,
            f.node_ip,
            &row("external to nodePort"),
        );
        served_on(
            &c,
            THIS_NODE,
            &Probe::tcp(SocketAddr::new(f.node_ip, NODE_PORT), CONNS),
            &f.endpoints,
            f.node_ip,
            &row("node to nodePort"),
        );
        let alt = SocketAddr::new(f.alt_ip, NODE_PORT);
        if allow_alt {
            served_on(
                &c,
                "outside",
                &Probe::tcp(alt, CONNS),
                &f.endpoints,
                f.node_ip,
                &row("external to nodePort on secondary IP"),
            );
        } else {
            // Upstream output "" (no rule matched): here node-2's sentinel
            // answers on the alternate address.
            c.expect_served(
                "outside",
                &Probe::tcp(alt, FEW),
                &set(&[f.alt_ip]),
                &row("secondary nodeIP ignores NodePorts"),
            );
        }
    }
}

// ---------------------------------------------------------------- TestBadIPs

/// Upstream `TestBadIPs`: IPv4 addresses with leading zeros in the
/// cluster IP, ingress IP, external IP, source range and endpoint are
/// read as decimal (`netutils.ParseIPSloppy`). Upstream compares the
/// rules; each case here is the traffic one expected rule stands for,
/// named after it.
#[test]
fn test_bad_ips() {
    let c = cluster();
    let s = Scratch::new();
    let svc = s.file(
        "svc1.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.041
  externalIPs: [198.051.100.022]
  loadBalancerSourceRanges: [172.031.011.200/032]
  ports: [{name: p80, port: 80, protocol: TCP, targetPort: 5000, nodePort: 30080}]
status: {loadBalancer: {ingress: [{ip: 203.0.113.004}]}}
",
    );
    let slice = s.file(
        "slice.yaml",
        "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
ports: [{name: p80, port: 5000, protocol: TCP}]
endpoints: [{addresses: [10.042.054.130]}]
",
    );
    apply(&c, &["nodes.yaml", &svc, &slice], &[]);
    let ep = [(v4("c"), 5000)];
    let lb = Ipv4Addr::new(203, 0, 113, 4);

    served_on(
        &c,
        "client",
        &Probe::tcp(sa(Ipv4Addr::new(10, 43, 0, 41), HTTP), FEW),
        &ep,
        v4("client"),
        "service-ips { 172.30.0.41 . tcp . 80 } (from 172.30.0.041), \
         dnat to 10.180.0.1:80 (from 10.180.00.001)",
    );
    served_on(
        &c,
        "outside",
        &Probe::tcp(sa(Ipv4Addr::new(198, 51, 100, 22), HTTP), FEW),
        &ep,
        NODE2_IP4,
        "service-ips { 192.168.99.22 . tcp . 80 : goto external-… } (from 192.168.099.022)",
    );
    served_on(
        &c,
        "outside",
        &Probe::tcp(sa(lb, HTTP), FEW),
        &ep,
        NODE2_IP4,
        "service-ips { 1.2.3.4 . tcp . 80 } (from 1.2.3.004), \
         firewall ip saddr != { 203.0.113.0/25 } drop (from 203.0.113.000/025): allowed source",
    );
    c.expect_dropped(
        "outside2",
        sa(lb, HTTP),
        false,
        "firewall ip saddr != { 203.0.113.0/25 } drop (from 203.0.113.000/025): other source",
    );
    served_on(
        &c,
        "outside",
        &Probe::tcp(sa(NODE2_IP4, NODE_PORT), FEW),
        &ep,
        NODE2_IP4,
        "service-nodeports { tcp . 3001 : goto external-… }",
    );
}

// ------------------------------------- TestLoadBalancerIngressRouteTypeProxy

/// Upstream `TestLoadBalancerIngressRouteTypeProxy`: an ingress IP of
/// `ipMode: Proxy` gets no `service-ips` element, one of `VIP` or none
/// does. Its three "LoadBalancerIPMode disabled" rows are skipped: they
/// emulate 1.31 with the feature gate off, and LoadBalancerIPMode is GA
/// and always honoured by nftopo (kube-proxy 1.37 cannot turn it off
/// either). The three Services of the enabled rows live side by side;
/// the Proxy one's ingress IP is held by `outside2`, the load balancer.
#[test]
fn test_load_balancer_ingress_route_type_proxy() {
    let c = cluster();
    let s = Scratch::new();
    let proxy_ip = Ipv4Addr::new(203, 0, 113, 4);
    c.answer_behind_node2(proxy_ip, HTTP);
    let mut manifests = String::new();
    for (name, cluster_ip, lb_ip, node_port, ip_mode) in [
        (
            "svc-proxy",
            "10.43.30.41",
            "203.0.113.4",
            30081,
            ", ipMode: Proxy",
        ),
        (
            "svc-vip",
            "10.43.30.42",
            "203.0.113.5",
            30082,
            ", ipMode: VIP",
        ),
        ("svc-nil", "10.43.30.43", "203.0.113.6", 30083, ""),
    ] {
        manifests.push_str(&format!(
            "
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: ns1}}
spec:
  type: LoadBalancer
  clusterIP: {cluster_ip}
  ports: [{{name: p80, port: 80, protocol: TCP, targetPort: 5000, nodePort: {node_port}}}]
status: {{loadBalancer: {{ingress: [{{ip: {lb_ip}{ip_mode}}}]}}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: ns1, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: p80, port: 5000, protocol: TCP}}]
endpoints: [{{addresses: [10.42.54.130]}}]
"
        ));
    }
    let file = s.file("services.yaml", &manifests);
    apply(&c, &["nodes.yaml", &file], &[]);
    let ep = set(&[v4("c")]);

    for from in ["client", THIS_NODE] {
        c.expect_served(
            from,
            &Probe::tcp(sa(proxy_ip, HTTP), FEW),
            &set(&[proxy_ip.into()]),
            "LoadBalancerIPMode enabled, ipMode Proxy (expectedRule false): the load balancer answers",
        );
        c.expect_served(
            from,
            &Probe::tcp(sa(Ipv4Addr::new(10, 43, 30, 41), HTTP), FEW),
            &ep,
            "LoadBalancerIPMode enabled, ipMode Proxy: its cluster IP is still served",
        );
        c.expect_served(
            from,
            &Probe::tcp(sa(Ipv4Addr::new(203, 0, 113, 5), HTTP), FEW),
            &ep,
            "LoadBalancerIPMode enabled, ipMode VIP (expectedRule true)",
        );
        c.expect_served(
            from,
            &Probe::tcp(sa(Ipv4Addr::new(203, 0, 113, 6), HTTP), FEW),
            &ep,
            "LoadBalancerIPMode enabled, ipMode nil (expectedRule true)",
        );
    }
}

// ------------------------------------------------ headless and ExternalName

/// Upstream `TestBuildServiceMapServiceHeadless`: the headless Services
/// `somewhere-else/headless` (port rpc, UDP 1234) and
/// `headless-without-port` are left out of the service map. A headless
/// Service has no address of its own, so the observable is what it
/// leaves behind: `headless` first exists as a ClusterIP Service on
/// 10.43.55.4 (served by its pods), then is recreated headless with the
/// same slice (without the controller's `service.kubernetes.io/headless`
/// label, so the Service alone must decide); 10.43.55.4 then reaches
/// whatever stands behind node-2 (`outside2`), and a neighbouring
/// ClusterIP Service is still served.
#[test]
fn test_build_service_map_service_headless() {
    let c = cluster();
    let s = Scratch::new();
    let addr = Ipv4Addr::new(10, 43, 55, 4);
    c.answer_behind_node2(addr, 1234);
    let slice = s.file(
        "slice.yaml",
        "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: headless-1, namespace: somewhere-else, labels: {kubernetes.io/service-name: headless}}
addressType: IPv4
ports: [{name: rpc, port: 5000, protocol: UDP}]
endpoints:
- {addresses: [10.42.187.66], nodeName: node-2}
- {addresses: [10.42.187.67], nodeName: node-2}
",
    );
    let with_ip = s.file(
        "with-ip.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: somewhere-else}
spec:
  type: ClusterIP
  clusterIP: 10.43.55.4
  ports: [{name: rpc, port: 1234, protocol: UDP, targetPort: 5000}]
",
    );
    let headless = s.file(
        "headless.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: somewhere-else}
spec:
  type: ClusterIP
  clusterIP: None
  clusterIPs: [None]
  ports: [{name: rpc, port: 1234, protocol: UDP, targetPort: 5000}]
---
apiVersion: v1
kind: Service
metadata: {name: headless-without-port, namespace: somewhere-else}
spec:
  type: ClusterIP
  clusterIP: None
",
    );
    let udp = Probe::udp(sa(addr, 1234), CONNS);
    let client = v4("client");

    apply(&c, &["nodes.yaml", &with_ip, &slice], &[]);
    c.expect_served_from(
        "client",
        &udp,
        &set(&[v4("a"), v4("b")]),
        client,
        "before: the same Service with a cluster IP is served by its pods",
    );

    apply(
        &c,
        &[
            "nodes.yaml",
            &headless,
            &slice,
            "svc-cluster-ip.yaml",
            "slices-all.yaml",
        ],
        &[],
    );
    c.expect_served_from(
        "client",
        &Probe::udp(sa(addr, 1234), FEW),
        &set(&[addr.into()]),
        client,
        "headless Service should be ignored: nothing intercepts its former address",
    );
    c.expect_served(
        "client",
        &Probe::tcp(sa(Ipv4Addr::new(10, 43, 20, 1), HTTP), 60),
        &ips4(&["a", "b", "c", "d"]),
        "headless Service should be ignored: the other Services are programmed",
    );
}

/// Upstream `TestBuildServiceMapServiceTypeExternalName`: an ExternalName
/// Service with a cluster IP ("Should be ignored") and a UDP port with a
/// node port gets nothing: its cluster IP reaches what stands behind
/// node-2 (`outside2`), its node port is node-2's own (the sentinel
/// answers), neither is refused as a Service without endpoints would be.
#[test]
fn test_build_service_map_service_type_external_name() {
    let c = cluster();
    let s = Scratch::new();
    let addr = Ipv4Addr::new(10, 43, 55, 4);
    c.answer_behind_node2(addr, 1235);
    let svc = s.file(
        "external-name.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: external-name, namespace: somewhere-else}
spec:
  type: ExternalName
  clusterIP: 10.43.55.4
  externalName: foo2.bar.com
  ports: [{name: blah, port: 1235, protocol: UDP, nodePort: 30053}]
",
    );
    apply(&c, &["nodes.yaml", &svc], &[]);
    c.expect_served_from(
        "client",
        &Probe::udp(sa(addr, 1235), FEW),
        &set(&[addr.into()]),
        v4("client"),
        "ExternalName: its cluster IP is not programmed",
    );
    c.expect_served(
        "outside",
        &Probe::udp(sa(NODE2_IP4, NODE_PORT_UDP), FEW),
        &set(&[NODE2_IP4.into()]),
        "ExternalName: its node port is not programmed",
    );
}
