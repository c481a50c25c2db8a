//! Issue 14's parity suite, traffic policies: upstream kube-proxy's own
//! packet-tracer scenarios from kubernetes/kubernetes
//! `pkg/proxy/nftables/proxier_test.go` as of commit 030880a5
//! (TestExternalTrafficPolicyLocal, TestExternalTrafficPolicyCluster,
//! TestInternalTrafficPolicy, TestTerminatingEndpointsTrafficPolicyLocal
//! and …Cluster), replayed with real connections in the edge cluster
//! (`integration/src/edge.rs`; needs root). One `#[test]` per upstream
//! function; every case carries the name of its upstream row
//! (`packetFlowTest.name`, prefixed with the table entry's `name` where
//! upstream has a table).
//!
//! What upstream reads from its tracer is observed here: which endpoints
//! answered (pod address *and* port: see below), which source address they
//! saw (the client's own: unmasqueraded; node-2's 172.31.11.85:
//! masqueraded), a refusal within 1 s (`REJECT`) or time-outs only
//! (`DROP`).
//!
//! ## Upstream's addresses in the edge cluster
//!
//! | upstream | here |
//! |---|---|
//! | `test-node`, the node being programmed | node-2 |
//! | any other node (`node-1`, `node1`, `node2`, `another-node`, …) | node-3 |
//! | service CIDR 172.30.0.0/16, `172.30.x.y` | 10.43.0.0/16, `10.43.x.y` |
//! | external IP 192.168.99.11 | 198.51.100.11 (routed to node-2) |
//! | load-balancer IP 1.2.3.4 | 203.0.113.4 (routed to node-2) |
//! | node IP 192.168.0.2, node port 3001 | 172.31.11.85, node port 30080 |
//! | pod source 10.0.0.2 | pod `client` (10.42.187.80, on node-2) |
//! | external client 203.0.113.2 | `outside` (172.31.11.200, on the underlay) |
//! | masqueraded (`masq: true`) | the endpoint sees 172.31.11.85 |
//! | endpoint port 80 | the backends' 5000 (or 6000, below) |
//! | namespace/service `ns1/svc1` | `ns1/svc1` |
//!
//! Endpoints: upstream's endpoints are addresses only; the edge cluster has
//! four backends (a, b on node-2; c, d on node-3), each listening on 5000,
//! 5001 and 6000 and saying which address and port it was reached on. An
//! endpoint is an (address, port) pair (kube-proxy's `ip:port` key), so
//! where a table needs more endpoints than pods on a node, the same pod
//! stands for a second endpoint on port 6000 through a second slice of the
//! Service (`svc1-2`). Every endpoint is a live server: an endpoint that
//! must not be used would answer, with its port, if it were. Each
//! endpoint line in the slices below names the upstream address it
//! stands for.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use nftopo_integration::edge::*;
use nftopo_integration::outcome::{ok, Scratch};
use nftopo_integration::{require_root, Probe};

/// `172.30.0.41` (TestExternalTrafficPolicy*).
const SVC_41: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 41);
/// `172.30.1.1` (TestInternalTrafficPolicy, TestTerminatingEndpoints*).
const SVC_1_1: Ipv4Addr = Ipv4Addr::new(10, 43, 1, 1);
/// `192.168.99.11`.
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
/// `1.2.3.4`.
const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 4);
/// Upstream's service port 80.
const PORT: u16 = 80;
/// Upstream's node port 3001 (node-2's sentinel holds it too, so a
/// connection nftopo did not intercept is answered by node-2 itself).
const NODE_PORT: u16 = 30080;

/// Where a row's traffic comes from.
#[derive(Debug, Clone, Copy)]
enum Src {
    /// Upstream's `10.0.0.2`: pod `client` on node-2.
    Pod,
    /// Upstream's `testExternalClient` 203.0.113.2: `outside`.
    External,
}

impl Src {
    fn ns(self) -> &'static str {
        match self {
            Src::Pod => "client",
            Src::External => "outside",
        }
    }

    /// The source address an endpoint sees when nothing masquerades.
    fn ip(self) -> IpAddr {
        match self {
            Src::Pod => pod_spec("client").ip4.into(),
            Src::External => outside_spec("outside").ip4.into(),
        }
    }
}

/// Upstream's `output` (and `masq`).
#[derive(Debug, Clone, Copy)]
enum Out {
    /// Answered by exactly these endpoints (pod, port); `masq`: the
    /// endpoints see node-2's address instead of the client's.
    Endpoints(&'static [(&'static str, u16)], bool),
    /// `"DROP"`: time-outs only.
    Drop,
    /// `"REJECT"`: refused at once (a TCP reset where kube-proxy sends ICMP
    /// port unreachable; both are an immediate refusal for the client).
    Reject,
}

/// One `packetFlowTest` row (TCP, as upstream's).
struct Row {
    name: &'static str,
    from: Src,
    to: SocketAddr,
    out: Out,
}

fn row(name: &'static str, from: Src, to: SocketAddr, out: Out) -> Row {
    Row {
        name,
        from,
        to,
        out,
    }
}

fn cluster() -> EdgeCluster {
    require_root();
    // Every outcome below is also checked against `nftopo trace`.
    nftopo_integration::trace_check::enable();
    ok(
        EdgeCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
        "edge cluster",
    )
}

/// `nftopo apply` in node-2 with `nodes.yaml` and these manifests (the
/// daemon's view after upstream's `syncProxyRules`).
fn sync(c: &EdgeCluster, files: &[&str]) {
    let mut all = vec!["nodes.yaml"];
    all.extend_from_slice(files);
    ok(c.apply(&all, &[]), &format!("nftopo apply {all:?}"));
}

/// Runs every row, each case named `<table entry>: <row>` (or `<row>`).
fn run_rows(c: &EdgeCluster, table_entry: &str, rows: &[Row]) {
    for r in rows {
        let case = if table_entry.is_empty() {
            r.name.to_string()
        } else {
            format!("{table_entry}: {}", r.name)
        };
        let from = r.from.ns();
        match r.out {
            Out::Endpoints(eps, masq) => {
                // 15 connections per endpoint: each endpoint is missed
                // with a chance below (1 - 1/3)^45 ≈ 1e-8.
                let p = Probe::tcp(r.to, 15 * eps.len().max(1));
                let pods: BTreeSet<IpAddr> = eps
                    .iter()
                    .map(|(pod, _)| pod_spec(pod).ip4.into())
                    .collect();
                let peer = if masq {
                    IpAddr::V4(NODE2_IP4)
                } else {
                    r.from.ip()
                };
                let got = c.expect_served_from(from, &p, &pods, peer, &case);
                let want: BTreeSet<(IpAddr, u16)> = eps
                    .iter()
                    .map(|&(pod, port)| (pod_spec(pod).ip4.into(), port))
                    .collect();
                assert_eq!(
                    got.pod_ports(),
                    want,
                    "{case}: tcp {} from {from}: the endpoints (address, port) that answered: {got}",
                    r.to
                );
            }
            Out::Drop => c.expect_dropped(from, r.to, false, &case),
            Out::Reject => c.expect_refused(from, &Probe::tcp(r.to, 5), &case),
        }
    }
}

/// An EndpointSlice `name` of ns1/svc1 with one port (upstream's unnamed
/// port, `name: ""`, TCP) at `port`, and `endpoints` (YAML sequence items).
fn slice(name: &str, port: u16, endpoints: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}
addressType: IPv4
ports: [{{name: '', port: {port}, protocol: TCP}}]
endpoints:{endpoints}
"
    )
}

// ------------------------------------------- TestExternalTrafficPolicy*

/// Upstream's service of both TestExternalTrafficPolicy* functions:
/// LoadBalancer `ns1/svc1`, cluster IP 172.30.0.41, external IP
/// 192.168.99.11, port p80 80/TCP node port 3001, ingress 1.2.3.4.
fn etp_service(policy: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: {policy}
  clusterIP: 10.43.0.41
  clusterIPs: [10.43.0.41]
  externalIPs: [198.51.100.11]
  healthCheckNodePort: 30000
  ports: [{{name: p80, port: 80, protocol: TCP, nodePort: 30080, targetPort: 5000}}]
status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.4}}]}}}}
"
    )
}

/// Both TestExternalTrafficPolicy* functions' slice: epIP1 10.180.0.1
/// without a node name (so not local), epIP2 10.180.2.1 on this node.
const ETP_SLICE: &str = "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
ports: [{name: p80, port: 5000, protocol: TCP}]
endpoints:
- {addresses: [10.42.54.130]}                   # epIP1 10.180.0.1, no nodeName: c
- {addresses: [10.42.187.66], nodeName: node-2} # epIP2 10.180.2.1, test-node: a
";

/// epIP1 and epIP2.
const BOTH: &[(&str, u16)] = &[("a", 5000), ("c", 5000)];
/// epIP2, the local one.
const LOCAL: &[(&str, u16)] = &[("a", 5000)];

/// Upstream TestExternalTrafficPolicyLocal: traffic to the externally
/// facing addresses is never masqueraded with eTP Local; from outside it
/// reaches only the local endpoint, from a pod every endpoint (the
/// short-circuit). 7 rows.
#[test]
fn test_external_traffic_policy_local() {
    let c = cluster();
    let s = Scratch::new();
    let svc = s.file("svc1.yaml", &etp_service("Local"));
    let eps = s.file("svc1-1.yaml", ETP_SLICE);
    sync(&c, &[&svc, &eps]);
    let node_port = sa(NODE2_IP4, NODE_PORT);
    use Src::{External, Pod};
    run_rows(
        &c,
        "",
        &[
            row(
                "pod to cluster IP hits both endpoints, unmasqueraded",
                Pod,
                sa(SVC_41, PORT),
                Out::Endpoints(BOTH, false),
            ),
            row(
                "pod to external IP hits both endpoints, unmasqueraded",
                Pod,
                sa(EXTERNAL_IP, PORT),
                Out::Endpoints(BOTH, false),
            ),
            row(
                "external to external IP hits only local endpoint, unmasqueraded",
                External,
                sa(EXTERNAL_IP, PORT),
                Out::Endpoints(LOCAL, false),
            ),
            row(
                "pod to LB IP hits only both endpoints, unmasqueraded",
                Pod,
                sa(LB_IP, PORT),
                Out::Endpoints(BOTH, false),
            ),
            row(
                "external to LB IP hits only local endpoint, unmasqueraded",
                External,
                sa(LB_IP, PORT),
                Out::Endpoints(LOCAL, false),
            ),
            row(
                "pod to NodePort hits both endpoints, unmasqueraded",
                Pod,
                node_port,
                Out::Endpoints(BOTH, false),
            ),
            row(
                "external to NodePort hits only local endpoint, unmasqueraded",
                External,
                node_port,
                Out::Endpoints(LOCAL, false),
            ),
        ],
    );
}

/// Upstream TestExternalTrafficPolicyCluster: with eTP Cluster, traffic to
/// the externally facing addresses is masqueraded, whoever sends it, and
/// reaches every endpoint; a pod's traffic to the cluster IP is not. 7
/// rows.
#[test]
fn test_external_traffic_policy_cluster() {
    let c = cluster();
    let s = Scratch::new();
    let svc = s.file("svc1.yaml", &etp_service("Cluster"));
    let eps = s.file("svc1-1.yaml", ETP_SLICE);
    sync(&c, &[&svc, &eps]);
    let node_port = sa(NODE2_IP4, NODE_PORT);
    use Src::{External, Pod};
    run_rows(
        &c,
        "",
        &[
            row(
                "pod to cluster IP hits both endpoints, unmasqueraded",
                Pod,
                sa(SVC_41, PORT),
                Out::Endpoints(BOTH, false),
            ),
            row(
                "pod to external IP hits both endpoints, masqueraded",
                Pod,
                sa(EXTERNAL_IP, PORT),
                Out::Endpoints(BOTH, true),
            ),
            row(
                "external to external IP hits both endpoints, masqueraded",
                External,
                sa(EXTERNAL_IP, PORT),
                Out::Endpoints(BOTH, true),
            ),
            row(
                "pod to LB IP hits both endpoints, masqueraded",
                Pod,
                sa(LB_IP, PORT),
                Out::Endpoints(BOTH, true),
            ),
            row(
                "external to LB IP hits both endpoints, masqueraded",
                External,
                sa(LB_IP, PORT),
                Out::Endpoints(BOTH, true),
            ),
            row(
                "pod to NodePort hits both endpoints, masqueraded",
                Pod,
                node_port,
                Out::Endpoints(BOTH, true),
            ),
            row(
                "external to NodePort hits both endpoints, masqueraded",
                External,
                node_port,
                Out::Endpoints(BOTH, true),
            ),
        ],
    );
}

// ----------------------------------------------- TestInternalTrafficPolicy

/// Upstream TestInternalTrafficPolicy: ClusterIP `ns1/svc1` 172.30.1.1,
/// one unnamed port 80/TCP, iTP Cluster or Local; ready endpoints (only
/// `ready: true` set, as upstream) on this node or others. Each table
/// entry runs its row, then deletes the slice: "endpoints deleted" must be
/// refused. Upstream's remote endpoints sit on up to three other nodes;
/// here they are c and d on node-3 (only "this node or not" matters).
/// 4 table entries, 8 rows.
#[test]
fn test_internal_traffic_policy() {
    let c = cluster();
    let s = Scratch::new();
    let service = |policy: &str| {
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  clusterIP: 10.43.1.1
  clusterIPs: [10.43.1.1]
  selector: {{foo: bar}}
  internalTrafficPolicy: {policy}
  ports: [{{port: 80, protocol: TCP, targetPort: 5000}}]
"
        )
    };
    let cluster_policy = s.file("svc1-cluster.yaml", &service("Cluster"));
    let local_policy = s.file("svc1-local.yaml", &service("Local"));
    let to = sa(SVC_1_1, PORT);

    let entries: [(&str, &str, &str, Row); 4] = [
        (
            "internalTrafficPolicy is cluster",
            &cluster_policy,
            "
- {addresses: [10.42.187.66], conditions: {ready: true}, nodeName: node-2} # 10.0.1.1 test-node: a
- {addresses: [10.42.54.130], conditions: {ready: true}, nodeName: node-3} # 10.0.1.2 node1: c
- {addresses: [10.42.54.131], conditions: {ready: true}, nodeName: node-3} # 10.0.1.3 node2: d",
            row(
                "pod to ClusterIP hits all endpoints",
                Src::Pod,
                to,
                Out::Endpoints(&[("a", 5000), ("c", 5000), ("d", 5000)], false),
            ),
        ),
        (
            "internalTrafficPolicy is local and there is one local endpoint",
            &local_policy,
            "
- {addresses: [10.42.187.66], conditions: {ready: true}, nodeName: node-2} # 10.0.1.1 test-node: a
- {addresses: [10.42.54.130], conditions: {ready: true}, nodeName: node-3} # 10.0.1.2 node1: c
- {addresses: [10.42.54.131], conditions: {ready: true}, nodeName: node-3} # 10.0.1.3 node2: d",
            row(
                "pod to ClusterIP hits only local endpoint",
                Src::Pod,
                to,
                Out::Endpoints(&[("a", 5000)], false),
            ),
        ),
        (
            "internalTrafficPolicy is local and there are multiple local endpoints",
            &local_policy,
            "
- {addresses: [10.42.187.66], conditions: {ready: true}, nodeName: node-2} # 10.0.1.1 test-node: a
- {addresses: [10.42.187.67], conditions: {ready: true}, nodeName: node-2} # 10.0.1.2 test-node: b
- {addresses: [10.42.54.131], conditions: {ready: true}, nodeName: node-3} # 10.0.1.3 node2: d",
            row(
                "pod to ClusterIP hits all local endpoints",
                Src::Pod,
                to,
                Out::Endpoints(&[("a", 5000), ("b", 5000)], false),
            ),
        ),
        (
            "internalTrafficPolicy is local and there are no local endpoints",
            &local_policy,
            "
- {addresses: [10.42.54.130], conditions: {ready: true}, nodeName: node-3} # 10.0.1.1 node0, 10.0.1.2 node1: c
- {addresses: [10.42.54.131], conditions: {ready: true}, nodeName: node-3} # 10.0.1.3 node2: d",
            row("no endpoints", Src::Pod, to, Out::Drop),
        ),
    ];
    for (entry, svc, endpoints, flow) in entries {
        let eps = s.file("svc1-1.yaml", &slice("svc1-1", 5000, endpoints));
        sync(&c, &[svc, &eps]);
        run_rows(&c, entry, &[flow]);
        sync(&c, &[svc]);
        run_rows(
            &c,
            entry,
            &[row("endpoints deleted", Src::Pod, to, Out::Reject)],
        );
    }
}

// ----------------------------------------- TestTerminatingEndpoints*

/// Upstream's service of both TestTerminatingEndpointsTrafficPolicy*
/// functions: LoadBalancer `ns1/svc1`, cluster IP 172.30.1.1, one unnamed
/// port 80/TCP without a node port, ingress 1.2.3.4.
fn terminating_service(policy: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: {policy}
  clusterIP: 10.43.1.1
  clusterIPs: [10.43.1.1]
  healthCheckNodePort: 30000
  ports: [{{port: 80, protocol: TCP, targetPort: 80}}]
status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.4}}]}}}}
"
    )
}

/// One table entry of the terminating tests: its name, the endpoints of
/// slice `svc1-1` (port 5000) and `svc1-2` (port 6000, none when empty),
/// and its two rows with their upstream names: pod to the cluster IP,
/// external client to the load-balancer IP.
struct Entry {
    name: &'static str,
    on_5000: &'static str,
    on_6000: &'static str,
    pod_to_cluster_ip: (&'static str, Out),
    external_to_lb: (&'static str, Out),
}

/// Runs the entries of a TestTerminatingEndpoints* table on one cluster:
/// each entry's slices and rows, then upstream's rows after the slices are
/// deleted (both refused).
fn run_terminating_table(policy: &str, entries: &[Entry]) {
    let c = cluster();
    let s = Scratch::new();
    let svc = s.file("svc1.yaml", &terminating_service(policy));
    let cluster_ip = sa(SVC_1_1, PORT);
    let lb = sa(LB_IP, PORT);
    for e in entries {
        let mut slices = slice("svc1-1", 5000, e.on_5000);
        if !e.on_6000.is_empty() {
            slices.push_str("---\n");
            slices.push_str(&slice("svc1-2", 6000, e.on_6000));
        }
        let eps = s.file("svc1-slices.yaml", &slices);
        sync(&c, &[&svc, &eps]);
        let (pod_name, pod_out) = e.pod_to_cluster_ip;
        let (external_name, external_out) = e.external_to_lb;
        run_rows(
            &c,
            e.name,
            &[
                row(pod_name, Src::Pod, cluster_ip, pod_out),
                row(external_name, Src::External, lb, external_out),
            ],
        );
        sync(&c, &[&svc]);
        run_rows(
            &c,
            e.name,
            &[
                row(
                    "pod to clusterIP after endpoints deleted",
                    Src::Pod,
                    cluster_ip,
                    Out::Reject,
                ),
                row(
                    "external to LB after endpoints deleted",
                    Src::External,
                    lb,
                    Out::Reject,
                ),
            ],
        );
    }
}

/// Upstream TestTerminatingEndpointsTrafficPolicyLocal (eTP Local): when
/// ready endpoints exist, serving-and-terminating ones are left out; when
/// none is ready, the serving-and-terminating ones are used, per set (the
/// cluster set for the pod, the node's local set for the outside client);
/// without a locally usable endpoint external traffic is dropped; without
/// any usable endpoint both are refused.
///
/// Upstream's 5 endpoints 10.0.1.1–10.0.1.5: 10.0.1.1–.4 on this node
/// become a:5000, b:5000, a:6000, b:6000; 10.0.1.5 (on node-1) becomes
/// c:5000. "no usable endpoints on any node" lists 10.0.1.5 twice, on this
/// node and on node-1 (neither ready nor serving); here c:5000 twice, on
/// node-2 and node-3. 4 table entries, 16 rows.
#[test]
fn test_terminating_endpoints_traffic_policy_local() {
    run_terminating_table(
        "Local",
        &[
            Entry {
                name: "ready endpoints exist",
                on_5000: "
- {addresses: [10.42.187.66], conditions: {ready: true, serving: true, terminating: false}, nodeName: node-2} # 10.0.1.1: a:5000
- {addresses: [10.42.187.67], conditions: {ready: true, serving: true, terminating: false}, nodeName: node-2} # 10.0.1.2: b:5000
- {addresses: [10.42.54.130], conditions: {ready: true, serving: true, terminating: false}, nodeName: node-3} # 10.0.1.5 node-1: c:5000",
                on_6000: "
- {addresses: [10.42.187.66], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-2} # 10.0.1.3: a:6000
- {addresses: [10.42.187.67], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-2} # 10.0.1.4: b:6000",
                // "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", masq false
                pod_to_cluster_ip: (
                    "pod to clusterIP",
                    Out::Endpoints(&[("a", 5000), ("b", 5000), ("c", 5000)], false),
                ),
                // "10.0.1.1:80, 10.0.1.2:80", masq false
                external_to_lb: (
                    "external to LB",
                    Out::Endpoints(&[("a", 5000), ("b", 5000)], false),
                ),
            },
            Entry {
                name: "only terminating endpoints exist",
                on_5000: "
- {addresses: [10.42.187.67], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-2} # 10.0.1.2: b:5000
- {addresses: [10.42.54.130], conditions: {ready: true, serving: true, terminating: false}, nodeName: node-3} # 10.0.1.5 node-1: c:5000",
                on_6000: "
- {addresses: [10.42.187.66], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-2} # 10.0.1.3: a:6000
- {addresses: [10.42.187.67], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-2} # 10.0.1.4: b:6000",
                // "10.0.1.5:80", masq false
                pod_to_cluster_ip: ("pod to clusterIP", Out::Endpoints(&[("c", 5000)], false)),
                // "10.0.1.2:80, 10.0.1.3:80", masq false
                external_to_lb: (
                    "external to LB",
                    Out::Endpoints(&[("a", 6000), ("b", 5000)], false),
                ),
            },
            Entry {
                name: "terminating endpoints on remote node",
                on_5000: "
- {addresses: [10.42.54.130], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-3} # 10.0.1.5 node-1: c:5000",
                on_6000: "",
                // "10.0.1.5:80"
                pod_to_cluster_ip: ("pod to clusterIP", Out::Endpoints(&[("c", 5000)], false)),
                external_to_lb: ("external to LB, no locally-usable endpoints", Out::Drop),
            },
            Entry {
                name: "no usable endpoints on any node",
                on_5000: "
- {addresses: [10.42.54.130], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-2} # 10.0.1.5 test-node: c:5000
- {addresses: [10.42.54.130], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-3} # 10.0.1.5 node-1: c:5000",
                on_6000: "",
                pod_to_cluster_ip: ("pod to clusterIP, no usable endpoints", Out::Reject),
                external_to_lb: ("external to LB, no usable endpoints", Out::Reject),
            },
        ],
    );
}

/// Upstream TestTerminatingEndpointsTrafficPolicyCluster (eTP Cluster):
/// the same tables, every endpoint anywhere counts for both the pod and
/// the outside client (masqueraded).
///
/// Upstream's 10.0.1.1–.2 (this node) become a:5000 and b:5000, or, in
/// "only terminating endpoints exist", 10.0.1.2–.3 (this node) b:5000 and
/// a:6000; 10.0.1.3–.5 on another node become d:5000, d:6000 and c:5000.
/// 4 table entries, 16 rows.
#[test]
fn test_terminating_endpoints_traffic_policy_cluster() {
    let ready3 = &[("a", 5000), ("b", 5000), ("c", 5000)];
    let terminating3 = &[("a", 6000), ("b", 5000), ("c", 5000)];
    run_terminating_table(
        "Cluster",
        &[
            Entry {
                name: "ready endpoints exist",
                on_5000: "
- {addresses: [10.42.187.66], conditions: {ready: true, serving: true, terminating: false}, nodeName: node-2} # 10.0.1.1: a:5000
- {addresses: [10.42.187.67], conditions: {ready: true, serving: true, terminating: false}, nodeName: node-2} # 10.0.1.2: b:5000
- {addresses: [10.42.54.131], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-3} # 10.0.1.3 another-node: d:5000
- {addresses: [10.42.54.130], conditions: {ready: true, serving: true, terminating: false}, nodeName: node-3} # 10.0.1.5 another-node: c:5000",
                on_6000: "
- {addresses: [10.42.54.131], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-3} # 10.0.1.4 another-node: d:6000",
                // "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", masq false
                pod_to_cluster_ip: ("pod to clusterIP", Out::Endpoints(ready3, false)),
                // the same, masq true
                external_to_lb: ("external to LB", Out::Endpoints(ready3, true)),
            },
            Entry {
                name: "only terminating endpoints exist",
                on_5000: "
- {addresses: [10.42.187.67], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-2} # 10.0.1.2: b:5000
- {addresses: [10.42.54.130], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-3} # 10.0.1.5 another-node: c:5000",
                on_6000: "
- {addresses: [10.42.187.66], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-2} # 10.0.1.3: a:6000
- {addresses: [10.42.54.131], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-3} # 10.0.1.4 another-node: d:6000",
                // "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80", masq false
                pod_to_cluster_ip: ("pod to clusterIP", Out::Endpoints(terminating3, false)),
                // the same, masq true
                external_to_lb: ("external to LB", Out::Endpoints(terminating3, true)),
            },
            Entry {
                name: "terminating endpoints on remote node",
                on_5000: "
- {addresses: [10.42.54.130], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-3} # 10.0.1.5 node-1: c:5000",
                on_6000: "",
                // "10.0.1.5:80", masq false, then masq true
                pod_to_cluster_ip: ("pod to clusterIP", Out::Endpoints(&[("c", 5000)], false)),
                external_to_lb: ("external to LB", Out::Endpoints(&[("c", 5000)], true)),
            },
            Entry {
                name: "no usable endpoints on any node",
                on_5000: "
- {addresses: [10.42.54.130], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-2} # 10.0.1.5 test-node: c:5000
- {addresses: [10.42.54.130], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-3} # 10.0.1.5 node-1: c:5000",
                on_6000: "",
                pod_to_cluster_ip: ("pod to clusterIP", Out::Reject),
                external_to_lb: ("external to LB", Out::Reject),
            },
        ],
    );
}
