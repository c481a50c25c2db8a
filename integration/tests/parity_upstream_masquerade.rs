//! Issue 14's parity suite, masquerading: upstream kube-proxy's
//! `TestInternalExternalMasquerade` and `TestOverallNFTablesRules`
//! (kubernetes/kubernetes `pkg/proxy/nftables/proxier_test.go`) replayed
//! with real traffic in the edge cluster (`integration/src/edge.rs`;
//! needs root). Upstream traces packets through a fake ruleset; here
//! every row is TCP connections from a real client namespace, and the
//! outcome is observed: which backends answered (exact set, and the
//! target port they were reached on) and the source address each one saw
//! (the client's own, or node-2's 172.31.11.85 when masqueraded), a
//! refusal within 1 s (reject) or time-outs only (drop).
//!
//! Upstream's addresses mapped onto the edge cluster: pods 10.0.0.0/8 →
//! the cluster CIDR 10.42.0.0/16 (`10.0.0.2`, a pod on this node →
//! `client`), endpoints on this node (`10.180.0.x`) → a, b on node-2,
//! endpoints on `remote` (`10.180.1.x`) → c, d on node-3, cluster IPs
//! 172.30.0.4x → 10.43.0.4x, node IP 192.168.0.2 → node-2 (172.31.11.85),
//! external IPs 192.168.99.x → 198.51.100.x, load-balancer IPs (1.2.3.4,
//! 5.6.7.8, 9.10.11.12) → 203.0.113.4x, the external client 203.0.113.2
//! → `outside` (172.31.11.200), node ports 300x → 3000x.
//!
//! The tests: `test_internal_external_masquerade_*`, one per upstream
//! test case (variant) of TestInternalExternalMasquerade, each its 27
//! flow rows with the variant's overrides plus rows of sources upstream's
//! table lacks (a pod on another node, another node); the "no
//! LocalTrafficDetector" variants run without an IPv4 `--cluster-cidr`.
//! `test_overall_nftables_rules`: TestOverallNFTablesRules's six
//! services, each checked by traffic instead of the golden ruleset.
//!
//! Making masquerade visible takes three arrangements of the test
//! network, made by [`arrange_routes`]:
//! * node-2 connects from a second address, 172.31.11.86, to cluster,
//!   load-balancer and external IPs and to its own node ports, so that a
//!   masqueraded connection (seen from 172.31.11.85) differs from one
//!   that kept its source (upstream's "node to …" rows have source =
//!   the node IP, which masquerade would not change);
//! * `outside` routes the service range to node-2 (upstream's "external
//!   to ClusterIP" rows);
//! * node-3 routes `outside` and the load-balancer range through node-2,
//!   so that an unmasqueraded reply of a node-3 pod to `outside` returns
//!   through node-2's conntrack (on the shared underlay it would go
//!   straight back and the client would reset it), and node-3 and its
//!   pods reach the load-balancer IPs.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use nftopo_integration::edge::*;
use nftopo_integration::outcome::{ok, Scratch};
use nftopo_integration::{require_root, Probe};

/// TCP connections per probe. Over two endpoints, a working random
/// spread misses one with probability 2 * 0.5^24, about 1e-7.
const CONNS: usize = 24;
/// The address node-2 connects from in the "node to …" rows (not an
/// InternalIP; see the module doc).
const NODE_SOURCE: Ipv4Addr = NODE2_SECOND_IP4;
/// The source a masqueraded connection arrives with at any backend:
/// node-2's primary address (`masquerade` picks it on eth0, and on the
/// address-less pod veths too). Pinned by tests/edge.rs's
/// `external_traffic_policy_cluster_masquerades_outside_clients`.
const MASQ: Ipv4Addr = NODE2_IP4;
const HTTP: u16 = 80;

fn cluster() -> EdgeCluster {
    require_root();
    // Every outcome below is also checked against `nftopo trace`.
    nftopo_integration::trace_check::enable();
    ok(
        EdgeCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
        "edge cluster",
    )
}

/// See the module doc: node-2's second source address (also for its own
/// node ports: the local route to 172.31.11.85 prefers 172.31.11.86),
/// `outside`'s route to the services, node-3's routes through node-2.
fn arrange_routes(c: &EdgeCluster) {
    let (node2, node3, outside) = (c.node(THIS_NODE), c.node("node-3"), c.ns("outside"));
    let src = NODE_SOURCE.to_string();
    let src24 = format!("{src}/24");
    let (gw, n2) = (GATEWAY4.to_string(), NODE2_IP4.to_string());
    let outside_ip = outside_spec("outside").ip4.to_string();
    let steps: [(&str, &nftopo_integration::Netns, &[&str]); 5] = [
        (
            "node-2's second address",
            node2,
            &["addr", "add", &src24, "dev", "eth0"],
        ),
        (
            "node-2 reaches its own address from the second one",
            node2,
            &[
                "route", "replace", "table", "local", "local", &n2, "dev", "eth0", "proto",
                "kernel", "scope", "host", "src", &src,
            ],
        ),
        (
            "outside's route to the service range",
            outside,
            &["route", "add", "10.43.0.0/16", "via", &n2],
        ),
        (
            "node-3 reaches outside through node-2",
            node3,
            &["route", "add", &outside_ip, "via", &n2],
        ),
        (
            "node-3 reaches the load-balancer IPs through node-2",
            node3,
            &["route", "add", LB_NET, "via", &n2],
        ),
    ];
    for (what, ns, args) in steps {
        ok(ns.ip(args), what);
    }
    for net in ["10.43.0.0/16", LB_NET, EXTERNAL_NET] {
        ok(
            node2.ip(&["route", "add", net, "via", &gw, "src", &src]),
            "node-2's routes from the second address",
        );
    }
    // node-2's sentinel (nothing is programmed yet) sees where node-2's
    // own connections to its address come from.
    c.expect_served_from(
        THIS_NODE,
        &Probe::tcp(sa(NODE2_IP4, SENTINEL_PORTS[0]), 1),
        &BTreeSet::from([IpAddr::V4(NODE2_IP4)]),
        NODE_SOURCE,
        "arrangement: node-2 connects to itself from its second address",
    );
}

/// A client namespace of the matrix, with the address it connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Upstream's `10.0.0.2`: `client`, a pod on node-2.
    Pod,
    /// Upstream's `testNodeIP`: node-2 itself (from [`NODE_SOURCE`]).
    Node,
    /// Upstream's `testExternalClient`: `outside`, on the underlay.
    External,
    /// Not in upstream's table: pod `c` on node-3, inside the cluster
    /// CIDR, reaching node-2's node ports and load-balancer IPs.
    RemotePod,
    /// Not in upstream's table: node-3 itself (outside the cluster CIDR,
    /// not local to node-2).
    OtherNode,
}

impl Source {
    fn ns(self) -> &'static str {
        match self {
            Source::Pod => "client",
            Source::Node => THIS_NODE,
            Source::External => "outside",
            Source::RemotePod => "c",
            Source::OtherNode => "node-3",
        }
    }

    /// The source the backend sees when nothing masquerades.
    fn ip(self) -> Ipv4Addr {
        match self {
            Source::Pod => pod_spec("client").ip4,
            Source::Node => NODE_SOURCE,
            Source::External => outside_spec("outside").ip4,
            Source::RemotePod => pod_spec("c").ip4,
            Source::OtherNode => NODES[1].ip4,
        }
    }
}

/// Which entry of a service a row connects to.
#[derive(Debug, Clone, Copy)]
enum Entry {
    ClusterIp,
    NodePort,
    Lb,
}

/// One of the matrix's services: `ns1/svc1` (eTP Cluster), `ns2/svc2`
/// (eTP Local), `ns3/svc3` (iTP Local), each a LoadBalancer with one
/// endpoint on node-2 and one on node-3. Each has its own target port,
/// so an answer also says which service took the connection.
struct MatrixService {
    cluster_ip: Ipv4Addr,
    node_port: u16,
    lb_ip: Ipv4Addr,
    target_port: u16,
}

const SVC: [MatrixService; 3] = [
    MatrixService {
        cluster_ip: Ipv4Addr::new(10, 43, 0, 41),
        node_port: 30001,
        lb_ip: Ipv4Addr::new(203, 0, 113, 41),
        target_port: 5000,
    },
    MatrixService {
        cluster_ip: Ipv4Addr::new(10, 43, 0, 42),
        node_port: 30002,
        lb_ip: Ipv4Addr::new(203, 0, 113, 42),
        target_port: 5001,
    },
    MatrixService {
        cluster_ip: Ipv4Addr::new(10, 43, 0, 43),
        node_port: 30003,
        lb_ip: Ipv4Addr::new(203, 0, 113, 43),
        target_port: 6000,
    },
];

impl Entry {
    fn target(self, svc: usize) -> SocketAddr {
        let s = &SVC[svc - 1];
        match self {
            Entry::ClusterIp => sa(s.cluster_ip, HTTP),
            Entry::NodePort => sa(NODE2_IP4, s.node_port),
            Entry::Lb => sa(s.lb_ip, HTTP),
        }
    }
}

/// TestInternalExternalMasquerade's `setupTest`: svc1 (eTP Cluster,
/// endpoints 10.180.0.1 here, 10.180.1.1 remote → a, c), svc2 (eTP
/// Local, 10.180.0.2 / 10.180.1.2 → b, d), svc3 (iTP Local, 10.180.0.3 /
/// 10.180.1.3 → b, c). Health-check node ports 30001-30003 upstream;
/// 32001-32003 here, clear of the node ports (`nftopo apply` serves no
/// health checks).
const MATRIX_MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.41
  clusterIPs: [10.43.0.41]
  healthCheckNodePort: 32001
  ports:
  - {name: p80, port: 80, protocol: TCP, targetPort: 5000, nodePort: 30001}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.41}]
---
apiVersion: v1
kind: Service
metadata: {name: svc2, namespace: ns2}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.42
  clusterIPs: [10.43.0.42]
  healthCheckNodePort: 32002
  externalTrafficPolicy: Local
  ports:
  - {name: p80, port: 80, protocol: TCP, targetPort: 5001, nodePort: 30002}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.42}]
---
apiVersion: v1
kind: Service
metadata: {name: svc3, namespace: ns3}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.43
  clusterIPs: [10.43.0.43]
  healthCheckNodePort: 32003
  internalTrafficPolicy: Local
  ports:
  - {name: p80, port: 80, protocol: TCP, targetPort: 6000, nodePort: 30003}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.43}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc1-1
  namespace: ns1
  labels: {kubernetes.io/service-name: svc1}
addressType: IPv4
ports: [{name: p80, port: 5000, protocol: TCP}]
endpoints:
- {addresses: [10.42.187.66], conditions: {ready: true}, nodeName: node-2}
- {addresses: [10.42.54.130], conditions: {ready: true}, nodeName: node-3}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc2-1
  namespace: ns2
  labels: {kubernetes.io/service-name: svc2}
addressType: IPv4
ports: [{name: p80, port: 5001, protocol: TCP}]
endpoints:
- {addresses: [10.42.187.67], conditions: {ready: true}, nodeName: node-2}
- {addresses: [10.42.54.131], conditions: {ready: true}, nodeName: node-3}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc3-1
  namespace: ns3
  labels: {kubernetes.io/service-name: svc3}
addressType: IPv4
ports: [{name: p80, port: 6000, protocol: TCP}]
endpoints:
- {addresses: [10.42.187.67], conditions: {ready: true}, nodeName: node-2}
- {addresses: [10.42.54.130], conditions: {ready: true}, nodeName: node-3}
"#;

/// One packet-flow row: upstream's name, source, service (1-3) and entry,
/// and what the base variant expects (which pods answer, masqueraded or
/// not).
#[derive(Debug, Clone, Copy)]
struct Row {
    name: &'static str,
    from: Source,
    svc: usize,
    to: Entry,
    pods: &'static [&'static str],
    masq: bool,
}

const fn row(
    name: &'static str,
    from: Source,
    svc: usize,
    to: Entry,
    pods: &'static [&'static str],
    masq: bool,
) -> Row {
    Row {
        name,
        from,
        svc,
        to,
        pods,
        masq,
    }
}

use Entry::{ClusterIp, Lb, NodePort};
use Source::{External, Node, OtherNode, Pod, RemotePod};

/// svc1's endpoints (10.180.0.1, 10.180.1.1), svc2's, svc3's; and the
/// local one of svc2 and of svc3.
const SVC1: &[&str] = &["a", "c"];
const SVC2: &[&str] = &["b", "d"];
const SVC3: &[&str] = &["b", "c"];
const SVC2_LOCAL: &[&str] = &["b"];
const SVC3_LOCAL: &[&str] = &["b"];

/// TestInternalExternalMasquerade's `flowTests`, in upstream's order
/// with upstream's names and base expectations (working local detector,
/// no masqueradeAll). One row per line, as upstream's table reads
/// (rustfmt would spread each over eight lines).
#[rustfmt::skip]
const FLOW_TESTS: [Row; 27] = [
    row("pod to ClusterIP",                     Pod,      1, ClusterIp, SVC1,       false),
    row("pod to NodePort",                      Pod,      1, NodePort,  SVC1,       true),
    row("pod to LB",                            Pod,      1, Lb,        SVC1,       true),
    row("node to ClusterIP",                    Node,     1, ClusterIp, SVC1,       true),
    row("node to NodePort",                     Node,     1, NodePort,  SVC1,       true),
    row("node to LB",                           Node,     1, Lb,        SVC1,       true),
    row("external to ClusterIP",                External, 1, ClusterIp, SVC1,       true),
    row("external to NodePort",                 External, 1, NodePort,  SVC1,       true),
    row("external to LB",                       External, 1, Lb,        SVC1,       true),
    // eTP does not apply to cluster IPs; pods short-circuit to every
    // endpoint, unmasqueraded; the node too, masqueraded.
    row("pod to ClusterIP with eTP:Local",      Pod,      2, ClusterIp, SVC2,       false),
    row("pod to NodePort with eTP:Local",       Pod,      2, NodePort,  SVC2,       false),
    row("pod to LB with eTP:Local",             Pod,      2, Lb,        SVC2,       false),
    row("node to ClusterIP with eTP:Local",     Node,     2, ClusterIp, SVC2,       true),
    // Upstream's row connects to 3001, svc1's node port (its destPort
    // says so, its name says eTP:Local): svc1's endpoints answer, as its
    // expected output says. EXTRA_ROWS has svc2's own node port.
    row("node to NodePort with eTP:Local",      Node,     1, NodePort,  SVC1,       true),
    row("node to LB with eTP:Local",            Node,     2, Lb,        SVC2,       true),
    row("external to ClusterIP with eTP:Local", External, 2, ClusterIp, SVC2,       true),
    row("external to NodePort with eTP:Local",  External, 2, NodePort,  SVC2_LOCAL, false),
    row("external to LB with eTP:Local",        External, 2, Lb,        SVC2_LOCAL, false),
    // iTP applies to cluster IPs only and does not change masquerading.
    row("pod to ClusterIP with iTP:Local",      Pod,      3, ClusterIp, SVC3_LOCAL, false),
    row("pod to NodePort with iTP:Local",       Pod,      3, NodePort,  SVC3,       true),
    row("pod to LB with iTP:Local",             Pod,      3, Lb,        SVC3,       true),
    row("node to ClusterIP with iTP:Local",     Node,     3, ClusterIp, SVC3_LOCAL, true),
    row("node to NodePort with iTP:Local",      Node,     3, NodePort,  SVC3,       true),
    row("node to LB with iTP:Local",            Node,     3, Lb,        SVC3,       true),
    row("external to ClusterIP with iTP:Local", External, 3, ClusterIp, SVC3_LOCAL, true),
    row("external to NodePort with iTP:Local",  External, 3, NodePort,  SVC3,       true),
    row("external to LB with iTP:Local",        External, 3, Lb,        SVC3,       true),
];

/// Rows upstream does not have, the same in every variant.
///
/// * What upstream's typo'd row names: node-2 to svc2's own node port
///   (3002) short-circuits to every endpoint, masqueraded (`fib saddr
///   type local`).
/// * A pod on another node is a pod (cluster CIDR): masqueraded on
///   svc1's and svc3's node port and LB IP, like `client`. Its svc2 (eTP
///   Local) rows short-circuit unmasqueraded to b and d, and d's answer
///   goes straight back to c on node-3, past node-2's conntrack
///   (kube-proxy's rules do the same): not observable, so they are in
///   the no-detector variants only, where only b answers.
/// * Another node is external: neither a pod nor local to node-2.
#[rustfmt::skip]
const EXTRA_ROWS: [Row; 11] = [
    row("node to NodePort with eTP:Local (svc2's own, 3002)", Node, 2, NodePort, SVC2, true),
    row("pod on another node to NodePort",                RemotePod, 1, NodePort, SVC1,       true),
    row("pod on another node to LB",                      RemotePod, 1, Lb,       SVC1,       true),
    row("pod on another node to NodePort with iTP:Local", RemotePod, 3, NodePort, SVC3,       true),
    row("pod on another node to LB with iTP:Local",       RemotePod, 3, Lb,       SVC3,       true),
    row("other node to NodePort",                         OtherNode, 1, NodePort, SVC1,       true),
    row("other node to LB",                               OtherNode, 1, Lb,       SVC1,       true),
    row("other node to NodePort with eTP:Local",          OtherNode, 2, NodePort, SVC2_LOCAL, false),
    row("other node to LB with eTP:Local",                OtherNode, 2, Lb,       SVC2_LOCAL, false),
    row("other node to NodePort with iTP:Local",          OtherNode, 3, NodePort, SVC3,       true),
    row("other node to LB with iTP:Local",                OtherNode, 3, Lb,       SVC3,       true),
];

/// Without a local detector there is no short-circuit: a pod on another
/// node gets svc2's local endpoint only, unmasqueraded (b answers
/// through node-2, so this is observable).
#[rustfmt::skip]
const NO_DETECTOR_EXTRA_ROWS: [Row; 2] = [
    row("pod on another node to NodePort with eTP:Local", RemotePod, 2, NodePort, SVC2_LOCAL, false),
    row("pod on another node to LB with eTP:Local",       RemotePod, 2, Lb,       SVC2_LOCAL, false),
];

/// A variant's change to one base row: other pods, or masquerade flipped.
#[derive(Debug, Clone, Copy)]
enum Override {
    Pods(&'static [&'static str]),
    Masq(bool),
}

/// Upstream's `testCases`: the flags and the overrides of the base rows.
struct Variant {
    name: &'static str,
    masquerade_all: bool,
    local_detector: bool,
    overrides: &'static [(&'static str, Override)],
}

/// "no LocalTrafficDetector": traffic to a cluster IP is taken for pod
/// traffic (not masqueraded), and pods get no eTP:Local short-circuit.
const NO_DETECTOR_OVERRIDES: &[(&str, Override)] = &[
    ("node to ClusterIP", Override::Masq(false)),
    ("node to ClusterIP with eTP:Local", Override::Masq(false)),
    ("node to ClusterIP with iTP:Local", Override::Masq(false)),
    ("external to ClusterIP", Override::Masq(false)),
    (
        "external to ClusterIP with eTP:Local",
        Override::Masq(false),
    ),
    (
        "external to ClusterIP with iTP:Local",
        Override::Masq(false),
    ),
    ("pod to NodePort with eTP:Local", Override::Pods(SVC2_LOCAL)),
    ("pod to LB with eTP:Local", Override::Pods(SVC2_LOCAL)),
];

/// "masqueradeAll": every pod connection to a cluster IP is masqueraded.
const MASQUERADE_ALL_OVERRIDES: &[(&str, Override)] = &[
    ("pod to ClusterIP", Override::Masq(true)),
    ("pod to ClusterIP with eTP:Local", Override::Masq(true)),
    ("pod to ClusterIP with iTP:Local", Override::Masq(true)),
];

/// "masqueradeAll, no LocalTrafficDetector": both sets (upstream lists
/// the masqueradeAll ones and the two eTP:Local short-circuit ones; the
/// node/external-to-ClusterIP ones stay masqueraded by masqueradeAll).
const MASQUERADE_ALL_NO_DETECTOR_OVERRIDES: &[(&str, Override)] = &[
    ("pod to ClusterIP", Override::Masq(true)),
    ("pod to ClusterIP with eTP:Local", Override::Masq(true)),
    ("pod to ClusterIP with iTP:Local", Override::Masq(true)),
    ("pod to NodePort with eTP:Local", Override::Pods(SVC2_LOCAL)),
    ("pod to LB with eTP:Local", Override::Pods(SVC2_LOCAL)),
];

/// Upstream's rows with the variant's overrides applied (each override
/// must name a row and change it, as upstream checks), then the rows of
/// other sources.
fn rows(v: &Variant) -> Vec<Row> {
    for (name, _) in v.overrides {
        assert!(
            FLOW_TESTS.iter().any(|r| r.name == *name),
            "{}: override {name:?} names no row",
            v.name
        );
    }
    let mut rows: Vec<Row> = FLOW_TESTS
        .iter()
        .map(|r| {
            let mut r = *r;
            for (_, o) in v.overrides.iter().filter(|(n, _)| *n == r.name) {
                match *o {
                    Override::Pods(p) => {
                        assert_ne!(r.pods, p, "{}: {}: same pods", v.name, r.name);
                        r.pods = p;
                    }
                    Override::Masq(m) => {
                        assert_ne!(r.masq, m, "{}: {}: same masq", v.name, r.name);
                        r.masq = m;
                    }
                }
            }
            r
        })
        .collect();
    rows.extend(EXTRA_ROWS);
    if !v.local_detector {
        rows.extend(NO_DETECTOR_EXTRA_ROWS);
    }
    rows
}

/// Every connection answered by exactly `pods`, each reached on
/// `port`, each seeing `peer`.
fn expect_row(
    c: &EdgeCluster,
    from: &str,
    target: SocketAddr,
    pods: &[&str],
    port: u16,
    peer: Ipv4Addr,
    case: &str,
) {
    let r = c.expect_served_from(from, &Probe::tcp(target, CONNS), &ips4(pods), peer, case);
    let want: BTreeSet<(IpAddr, u16)> = ips4(pods).into_iter().map(|ip| (ip, port)).collect();
    assert_eq!(
        r.pod_ports(),
        want,
        "{case}: {target} from {from}: the target port says which service answered: {r}"
    );
}

/// Runs one variant of TestInternalExternalMasquerade: apply the three
/// services with the variant's flags, then every row.
fn internal_external_masquerade(v: &Variant) {
    let c = cluster();
    arrange_routes(&c);
    let scratch = Scratch::new();
    let matrix = scratch.file("matrix.yaml", MATRIX_MANIFEST);
    let mut args = Vec::new();
    if v.masquerade_all {
        args.push("--masquerade-all");
    }
    if !v.local_detector {
        // nftopo's local detector is `--cluster-cidr`, one prefix per
        // family (crates/nft-writer/src/planner.rs, PlannerConfig
        // cluster_cidrs: "Empty: neither" masquerade by source nor the
        // eTP Local short-circuit). `EdgeCluster::apply` passes both
        // families unless told otherwise: giving only the IPv6 prefix
        // leaves the IPv4 table, which every row uses, without one.
        args.extend(["--cluster-cidr", "fd00:42::/48"]);
    }
    ok(
        c.apply(&["nodes.yaml", &matrix], &args),
        &format!("{}: nftopo apply", v.name),
    );
    for r in rows(v) {
        let peer = if r.masq { MASQ } else { r.from.ip() };
        let case = format!(
            "TestInternalExternalMasquerade/{}: {:?} (svc{} {:?}, masq {})",
            v.name, r.name, r.svc, r.to, r.masq
        );
        expect_row(
            &c,
            r.from.ns(),
            r.to.target(r.svc),
            r.pods,
            SVC[r.svc - 1].target_port,
            peer,
            &case,
        );
    }
}

/// Upstream TestInternalExternalMasquerade, case "base": a working local
/// detector (`--cluster-cidr`), no masqueradeAll. 27 upstream rows and 11
/// of other sources.
#[test]
fn test_internal_external_masquerade_base() {
    internal_external_masquerade(&Variant {
        name: "base",
        masquerade_all: false,
        local_detector: true,
        overrides: &[],
    });
}

/// Upstream TestInternalExternalMasquerade, case "no
/// LocalTrafficDetector": without `--cluster-cidr` for IPv4. 27 upstream
/// rows (8 overridden) and 13 of other sources.
#[test]
fn test_internal_external_masquerade_no_local_traffic_detector() {
    internal_external_masquerade(&Variant {
        name: "no LocalTrafficDetector",
        masquerade_all: false,
        local_detector: false,
        overrides: NO_DETECTOR_OVERRIDES,
    });
}

/// Upstream TestInternalExternalMasquerade, case "masqueradeAll":
/// `--masquerade-all`. 27 upstream rows (3 overridden) and 11 of other
/// sources.
#[test]
fn test_internal_external_masquerade_masquerade_all() {
    internal_external_masquerade(&Variant {
        name: "masqueradeAll",
        masquerade_all: true,
        local_detector: true,
        overrides: MASQUERADE_ALL_OVERRIDES,
    });
}

/// Upstream TestInternalExternalMasquerade, case "masqueradeAll, no
/// LocalTrafficDetector". 27 upstream rows (5 overridden) and 13 of
/// other sources.
#[test]
fn test_internal_external_masquerade_masquerade_all_no_local_traffic_detector() {
    internal_external_masquerade(&Variant {
        name: "masqueradeAll, no LocalTrafficDetector",
        masquerade_all: true,
        local_detector: false,
        overrides: MASQUERADE_ALL_NO_DETECTOR_OVERRIDES,
    });
}

// ------------------------------------------------ TestOverallNFTablesRules

/// TestOverallNFTablesRules's six services on the edge cluster. Upstream
/// compares the whole ruleset with a golden text; here each service's
/// rules are checked by what they do to traffic.
///
/// * ns1/svc1: ClusterIP 10.43.0.41, endpoint 10.180.0.1 without a node
///   name → a (port 5000).
/// * ns2/svc2: LoadBalancer, eTP Local, 10.43.0.42, node port 3001 →
///   30001, LB IP 1.2.3.4 → 203.0.113.42, external IP 192.168.99.22 →
///   198.51.100.22, health-check node port 30000; endpoint 10.180.0.2
///   *without a node name* (so not local: "this endpoint will be
///   considered non-local and ignored") → b, which does run on node-2:
///   only the slice's nodeName makes an endpoint local.
/// * ns3/svc3: NodePort 10.43.0.43, node port 3003 → 30003, endpoint
///   10.180.0.3 → c (port 5000).
/// * ns4/svc4: type NodePort without a node port, external IP
///   192.168.99.33 → 198.51.100.33, endpoints 10.180.0.4 (no node name)
///   and 10.180.0.5 (this node) → d and a (port 5001).
/// * ns5/svc5: LoadBalancer, eTP Cluster, 10.43.0.45, node port 3002 →
///   30002, LB IP 5.6.7.8 → 203.0.113.45, source range " 203.0.113.0/25"
///   (leading space kept) → " 172.31.11.200/32" (`outside` only),
///   ClientIP affinity 10800 s; endpoint 10.180.0.3 → c, *plus d*
///   (port 6000): with upstream's single endpoint, affinity could not be
///   seen.
/// * ns6/svc6: ClusterIP 10.43.0.46, no endpoints.
const OVERALL_MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  clusterIP: 10.43.0.41
  clusterIPs: [10.43.0.41]
  ports: [{name: p80, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: svc2, namespace: ns2}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  clusterIP: 10.43.0.42
  clusterIPs: [10.43.0.42]
  externalIPs: [198.51.100.22]
  healthCheckNodePort: 30000
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30001}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.42}]
---
apiVersion: v1
kind: Service
metadata: {name: svc3, namespace: ns3}
spec:
  type: NodePort
  clusterIP: 10.43.0.43
  clusterIPs: [10.43.0.43]
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30003}]
---
apiVersion: v1
kind: Service
metadata: {name: svc4, namespace: ns4}
spec:
  type: NodePort
  clusterIP: 10.43.0.44
  clusterIPs: [10.43.0.44]
  externalIPs: [198.51.100.33]
  ports: [{name: p80, port: 80, protocol: TCP, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: svc5, namespace: ns5}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Cluster
  clusterIP: 10.43.0.45
  clusterIPs: [10.43.0.45]
  healthCheckNodePort: 30000
  loadBalancerSourceRanges: [" 172.31.11.200/32"]
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP: {timeoutSeconds: 10800}
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30002}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.45}]
---
apiVersion: v1
kind: Service
metadata: {name: svc6, namespace: ns6}
spec:
  type: ClusterIP
  clusterIP: 10.43.0.46
  clusterIPs: [10.43.0.46]
  ports: [{name: p80, port: 80, protocol: TCP, targetPort: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc1-1
  namespace: ns1
  labels: {kubernetes.io/service-name: svc1}
addressType: IPv4
ports: [{name: p80, port: 5000, protocol: TCP}]
endpoints:
- {addresses: [10.42.187.66]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc2-1
  namespace: ns2
  labels: {kubernetes.io/service-name: svc2}
addressType: IPv4
ports: [{name: p80, port: 5000, protocol: TCP}]
endpoints:
- {addresses: [10.42.187.67]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc3-1
  namespace: ns3
  labels: {kubernetes.io/service-name: svc3}
addressType: IPv4
ports: [{name: p80, port: 5000, protocol: TCP}]
endpoints:
- {addresses: [10.42.54.130]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc4-1
  namespace: ns4
  labels: {kubernetes.io/service-name: svc4}
addressType: IPv4
ports: [{name: p80, port: 5001, protocol: TCP}]
endpoints:
- {addresses: [10.42.54.131]}
- {addresses: [10.42.187.66], nodeName: node-2}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc5-1
  namespace: ns5
  labels: {kubernetes.io/service-name: svc5}
addressType: IPv4
ports: [{name: p80, port: 6000, protocol: TCP}]
endpoints:
- {addresses: [10.42.54.130]}
- {addresses: [10.42.54.131]}
"#;

/// An overall case: (name, from, target, pods, target port, the source
/// the pods see).
type Served = (
    &'static str,
    &'static str,
    SocketAddr,
    &'static [&'static str],
    u16,
    Ipv4Addr,
);

/// Every connection answered by one and the same pod among `candidates`
/// (ClientIP affinity), on `port`, seeing `peer`; returns that pod.
fn expect_sticky(
    c: &EdgeCluster,
    from: &str,
    target: SocketAddr,
    candidates: &[&'static str],
    port: u16,
    peer: Ipv4Addr,
    case: &str,
) -> &'static str {
    let r = c.run_probe(from, &Probe::tcp(target, CONNS));
    let ctx = format!("{case}: {target} from {from}");
    let chosen = candidates
        .iter()
        .copied()
        .find(|p| r.pods() == ips4(&[p]))
        .unwrap_or_else(|| panic!("{ctx}: one of {candidates:?} must answer (affinity): {r}"));
    assert_eq!(r.answered_count(), CONNS, "{ctx}: all answered: {r}");
    assert_eq!(
        r.pod_ports(),
        BTreeSet::from([(IpAddr::V4(pod_spec(chosen).ip4), port)]),
        "{ctx}: the target port: {r}"
    );
    assert_eq!(
        r.peers(),
        BTreeSet::from([IpAddr::V4(peer)]),
        "{ctx}: the source the pod saw: {r}"
    );
    chosen
}

/// Upstream TestOverallNFTablesRules: its six services, each checked by
/// traffic (served, by whom, masqueraded or not; affinity sticks; the
/// source range drops; no endpoints refuses; eTP Local with only a
/// non-local endpoint drops external traffic): 21 served cases, 3
/// affinity cases, 5 drops, 2 refusals. Not replayed: the health check
/// node port 30000 of svc2 and svc5 (`nftopo apply` runs no health
/// servers; the daemon's are tested in tests/daemon.rs).
#[test]
fn test_overall_nftables_rules() {
    let c = cluster();
    arrange_routes(&c);
    let scratch = Scratch::new();
    let overall = scratch.file("overall.yaml", OVERALL_MANIFEST);
    ok(c.apply(&["nodes.yaml", &overall], &[]), "nftopo apply");
    let client = pod_spec("client").ip4;
    let cip = |last: u8| sa([10, 43, 0, last], HTTP);
    let (svc2_lb, svc2_ext, svc2_np) = (
        sa([203, 0, 113, 42], HTTP),
        sa([198, 51, 100, 22], HTTP),
        sa(NODE2_IP4, 30001),
    );
    let svc3_np = sa(NODE2_IP4, 30003);
    let svc4_ext = sa([198, 51, 100, 33], HTTP);
    let (svc5_lb, svc5_np) = (sa([203, 0, 113, 45], HTTP), sa(NODE2_IP4, 30002));

    // One case per line (rustfmt would spread each over eight).
    #[rustfmt::skip]
    let served: [Served; 21] = [
        // svc1: `ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump
        // mark-for-masquerade`; the endpoint chain's hairpin mark.
        ("svc1: pod to cluster IP",       "client",  cip(41), &["a"], 5000, client),
        ("svc1: node to cluster IP",      THIS_NODE, cip(41), &["a"], 5000, MASQ),
        ("svc1: external to cluster IP",  "outside", cip(41), &["a"], 5000, MASQ),
        ("svc1: hairpin 10.180.0.1",      "a",       cip(41), &["a"], 5000, MASQ),
        // svc2 (eTP Local, its endpoint not local): `external-…`: `ip
        // saddr 10.0.0.0/8 goto service-…` (pods short-circuit,
        // unmasqueraded), `fib saddr type local jump mark-for-masquerade`
        // (the node, masqueraded).
        ("svc2: pod to cluster IP",       "client",  cip(42),  &["b"], 5000, client),
        ("svc2: pod to LB IP",            "client",  svc2_lb,  &["b"], 5000, client),
        ("svc2: pod to external IP",      "client",  svc2_ext, &["b"], 5000, client),
        ("svc2: pod to node port",        "client",  svc2_np,  &["b"], 5000, client),
        ("svc2: node to LB IP",           THIS_NODE, svc2_lb,  &["b"], 5000, MASQ),
        ("svc2: node to external IP",     THIS_NODE, svc2_ext, &["b"], 5000, MASQ),
        ("svc2: node to node port",       THIS_NODE, svc2_np,  &["b"], 5000, MASQ),
        // svc3: `external-…`: `jump mark-for-masquerade`, for everyone.
        ("svc3: pod to cluster IP",       "client",  cip(43), &["c"], 5000, client),
        ("svc3: external to cluster IP",  "outside", cip(43), &["c"], 5000, MASQ),
        ("svc3: pod to node port",        "client",  svc3_np, &["c"], 5000, MASQ),
        ("svc3: node to node port",       THIS_NODE, svc3_np, &["c"], 5000, MASQ),
        ("svc3: external to node port",   "outside", svc3_np, &["c"], 5000, MASQ),
        // svc4: both endpoints, the local one and the nameless one; the
        // external IP masquerades everyone; no node port.
        ("svc4: pod to cluster IP",       "client",  cip(44),  &["a", "d"], 5001, client),
        ("svc4: node to cluster IP",      THIS_NODE, cip(44),  &["a", "d"], 5001, MASQ),
        ("svc4: pod to external IP",      "client",  svc4_ext, &["a", "d"], 5001, MASQ),
        ("svc4: node to external IP",     THIS_NODE, svc4_ext, &["a", "d"], 5001, MASQ),
        ("svc4: external to external IP", "outside", svc4_ext, &["a", "d"], 5001, MASQ),
    ];
    for (case, from, target, pods, port, peer) in served {
        let case = format!("TestOverallNFTablesRules: {case}");
        expect_row(&c, from, target, pods, port, peer, &case);
    }

    // Drops: svc2's external entries for clients outside the cluster
    // (`no-endpoint-services`/`no-endpoint-nodeports` `: drop`); svc5's
    // LB IP for sources outside its range, arriving or the node's own
    // (`firewall-…`: `ip saddr != { 203.0.113.0/25 } drop`, hooked in
    // prerouting and output).
    #[rustfmt::skip]
    let dropped = [
        ("svc2: external to LB IP",                          "outside",  svc2_lb),
        ("svc2: external to external IP",                    "outside",  svc2_ext),
        ("svc2: external to node port",                      "outside",  svc2_np),
        ("svc5: external outside the source range to LB IP", "outside2", svc5_lb),
        ("svc5: node (outside the source range) to LB IP",   THIS_NODE,  svc5_lb),
    ];
    for (case, from, target) in dropped {
        let case = format!("TestOverallNFTablesRules: {case}");
        c.expect_dropped(from, target, false, &case);
    }

    // svc5: ClientIP affinity, one set per endpoint shared by every entry
    // (`ip saddr @affinity-… goto endpoint-…` in the service chain that
    // the LB IP and the node port go on to); the node port is not
    // filtered by the source range; eTP Cluster masquerades.
    let svc5 = ["c", "d"];
    let case = "TestOverallNFTablesRules: svc5: external in the source range to LB IP, affinity";
    let chosen = expect_sticky(&c, "outside", svc5_lb, &svc5, 6000, MASQ, case);
    let case = "TestOverallNFTablesRules: svc5: the same client to the node port, same endpoint";
    expect_row(&c, "outside", svc5_np, &[chosen], 6000, MASQ, case);
    let case = "TestOverallNFTablesRules: svc5: external outside the source range to node port";
    expect_sticky(&c, "outside2", svc5_np, &svc5, 6000, MASQ, case);
    let case = "TestOverallNFTablesRules: svc5: pod to cluster IP, affinity";
    expect_sticky(&c, "client", cip(45), &svc5, 6000, client, case);

    // svc6: `no-endpoint-services { 172.30.0.46 . tcp . 80 : goto
    // reject-chain }` (a TCP reset here, ICMP from kube-proxy: README).
    for from in ["client", THIS_NODE] {
        let case = "TestOverallNFTablesRules: svc6: no endpoints";
        c.expect_refused(from, &Probe::tcp(cip(46), 2), case);
    }
}
