//! `--detect-local-mode` with real traffic in the edge cluster
//! (`integration/src/edge.rs`; needs root): for each of kube-proxy's four
//! modes, a source that counts as a pod reaches a cluster IP with its own
//! address, one that does not is masqueraded (the backend sees node-2,
//! 172.31.11.85), and the pod reaches the external IP and the node port
//! of an externalTrafficPolicy Local service whose only endpoints are on
//! node-3 (the short-circuit to every endpoint), where a source that is
//! not a pod is dropped (no local endpoint). After each apply, `nftopo
//! diff` finds the kernel in step (the `iifname` matches read back as
//! they were sent) and `nft` itself lists the match the mode asks for.
//!
//! Sources, besides the edge cluster's:
//! * `client`: a pod of node-2, on its veth `cali…` (Calico style),
//!   address 10.42.187.80, inside node-2's pod CIDR 10.42.187.64/26;
//! * `bpod`: a namespace this suite adds, attached to a bridge `cbr0` on
//!   node-2 (kubenet style), address 10.42.99.10: inside the cluster CIDR
//!   10.42.0.0/16 but outside node-2's pod CIDR, and not on a `cali`
//!   interface;
//! * `outside`: a client on the underlay, outside the cluster CIDR.
//!
//! The service: `web` of svc-lb-local.yaml (cluster IP 10.43.20.1:80,
//! external IP 198.51.100.10:80, node port 30080, eTP Local) with the
//! endpoints c and d of slices-node-3.yaml.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use nftopo_integration::edge::*;
use nftopo_integration::outcome::{ok, Scratch};
use nftopo_integration::{nft_list, nftopo_bin, require_root, unique_prefix, Netns, Probe};

/// Connections per probe: over two endpoints a working spread misses one
/// with probability 2 * 0.5^16.
const CONNS: usize = 16;
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 20, 1);
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const NODE_PORT: u16 = 30080;
/// The source a masqueraded connection arrives with.
const MASQ: Ipv4Addr = NODE2_IP4;
/// `bpod`'s address and its bridge on node-2.
const BPOD: Ipv4Addr = Ipv4Addr::new(10, 42, 99, 10);
const BRIDGE: &str = "cbr0";
const BRIDGE_NET: &str = "10.42.99.0/24";
const BRIDGE_GW: &str = "10.42.99.1";

/// The edge cluster's nodes with their `spec.podCIDRs` (NodeCIDR reads
/// node-2's).
const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {kubernetes.io/hostname: node-2}}
spec: {podCIDR: 10.42.187.64/26, podCIDRs: [10.42.187.64/26, "fd00:42:0:2::/64"]}
status:
  addresses:
  - {type: InternalIP, address: 172.31.11.85}
  - {type: InternalIP, address: "fd00:31::85"}
---
apiVersion: v1
kind: Node
metadata: {name: node-3, labels: {kubernetes.io/hostname: node-3}}
spec: {podCIDR: 10.42.54.128/26, podCIDRs: [10.42.54.128/26, "fd00:42:0:3::/64"]}
status:
  addresses:
  - {type: InternalIP, address: 172.31.11.157}
  - {type: InternalIP, address: "fd00:31::157"}
"#;

/// The edge cluster, `bpod` on node-2's bridge, and the routes the
/// suite's flows need.
struct World {
    // Dropped first: `bpod` before the cluster.
    bpod: Netns,
    c: EdgeCluster,
    nodes: String,
    _scratch: Scratch,
}

fn world() -> World {
    require_root();
    let c = ok(
        EdgeCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))),
        "edge cluster",
    );
    let bpod = ok(Netns::create(format!("{}-bp", unique_prefix())), "bpod");
    let node2 = c.node(THIS_NODE);
    let n2 = NODE2_IP4.to_string();
    let bpod_addr = format!("{BPOD}/24");
    let steps: [(&str, &Netns, &[&str]); 10] = [
        (
            "node-2's bridge",
            node2,
            &["link", "add", BRIDGE, "type", "bridge"],
        ),
        (
            "the bridge's address",
            node2,
            &["addr", "add", "10.42.99.1/24", "dev", BRIDGE],
        ),
        ("the bridge up", node2, &["link", "set", BRIDGE, "up"]),
        (
            "bpod's veth, its node end on node-2",
            node2,
            &[
                "link",
                "add",
                "vbpod",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                bpod.name(),
            ],
        ),
        (
            "the node end on the bridge",
            node2,
            &["link", "set", "vbpod", "master", BRIDGE, "up"],
        ),
        (
            "bpod's address",
            &bpod,
            &["addr", "add", &bpod_addr, "dev", "eth0"],
        ),
        ("bpod's link", &bpod, &["link", "set", "eth0", "up"]),
        (
            "bpod's default route",
            &bpod,
            &["route", "add", "default", "via", BRIDGE_GW],
        ),
        (
            "node-3 answers bpod through node-2",
            c.node("node-3"),
            &["route", "add", BRIDGE_NET, "via", &n2],
        ),
        (
            "outside's route to the service range",
            c.ns("outside"),
            &["route", "add", "10.43.0.0/16", "via", &n2],
        ),
    ];
    for (what, ns, args) in steps {
        ok(ns.ip(args), what);
    }
    let scratch = Scratch::new();
    let nodes = scratch.file("nodes.yaml", NODES);
    World {
        bpod,
        c,
        nodes,
        _scratch: scratch,
    }
}

/// Where a probe comes from: a namespace of the edge cluster, or `bpod`.
#[derive(Clone, Copy)]
enum Src {
    Edge(&'static str, Ipv4Addr),
    Bpod,
}

impl Src {
    fn client() -> Src {
        Src::Edge("client", pod_spec("client").ip4)
    }

    fn outside() -> Src {
        Src::Edge("outside", outside_spec("outside").ip4)
    }

    fn addr(self) -> Ipv4Addr {
        match self {
            Src::Edge(_, a) => a,
            Src::Bpod => BPOD,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Src::Edge(n, _) => n,
            Src::Bpod => "bpod",
        }
    }
}

impl World {
    /// `nftopo apply` with the nodes, `web` of svc-lb-local.yaml and
    /// `flags`, then `nftopo diff` with the same: nothing to change.
    fn apply(&self, flags: &[&str]) {
        self.apply_files(&["svc-lb-local.yaml", "slices-node-3.yaml"], flags);
    }

    fn apply_files(&self, edge_files: &[&str], flags: &[&str]) {
        let mut files = vec![self.nodes.as_str()];
        files.extend(edge_files);
        ok(self.c.apply(&files, flags), "apply");
        let bin = ok(nftopo_bin(), "nftopo");
        let mut args = vec!["diff", "--node", THIS_NODE];
        let paths: Vec<String> = files
            .iter()
            .map(|f| edge_manifests_dir().join(f).display().to_string())
            .collect();
        for p in &paths {
            args.extend(["--manifests", p.as_str()]);
        }
        if !flags.contains(&"--cluster-cidr") {
            args.extend(["--cluster-cidr", CLUSTER_CIDRS]);
        }
        args.extend(flags);
        let out = ok(
            self.c.node(THIS_NODE).command(&bin, &args).output(),
            "nftopo diff",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            (out.status.code(), text.as_ref()),
            (Some(0), ""),
            "read-back after apply {flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn run(&self, from: Src, p: &Probe) -> nftopo_integration::ProbeResult {
        match from {
            Src::Edge(name, _) => self.c.run_probe(name, p),
            Src::Bpod => ok(p.run(&self.bpod, self.c.testpod()), "probe from bpod"),
        }
    }

    /// Every connection served by c and d, which saw `peer`.
    fn served(&self, from: Src, target: SocketAddr, peer: Ipv4Addr, case: &str) {
        let p = Probe::tcp(target, CONNS);
        let r = self.run(from, &p);
        let ctx = format!("{case}: {target} from {}", from.name());
        assert_eq!(r.pods(), ips4(&["c", "d"]), "{ctx}: who answered: {r}");
        assert_eq!(r.answered_count(), CONNS, "{ctx}: all answered: {r}");
        assert_eq!(
            r.peers(),
            BTreeSet::from([IpAddr::V4(peer)]),
            "{ctx}: the source c and d saw: {r}"
        );
    }

    /// Time-outs only.
    fn dropped(&self, from: Src, target: SocketAddr, case: &str) {
        let p = Probe::tcp(target, 2).timeout_ms(700).give_up_after(2);
        let r = self.run(from, &p);
        assert_eq!(
            r.count(nftopo_integration::TIMEOUT),
            2,
            "{case}: {target} from {} must be dropped: {r}",
            from.name()
        );
    }

    /// The mode's contract: `pod` is a pod, `other` is not.
    fn check(&self, mode: &str, pod: Src, other: Src) {
        let cip = sa(CLUSTER_IP, 80);
        self.served(
            pod,
            cip,
            pod.addr(),
            &format!("{mode}: a pod keeps its source"),
        );
        self.served(other, cip, MASQ, &format!("{mode}: not a pod: masqueraded"));
        for (target, what) in [
            (sa(EXTERNAL_IP, 80), "external IP"),
            (sa(NODE2_IP4, NODE_PORT), "node port"),
        ] {
            self.served(
                pod,
                target,
                pod.addr(),
                &format!("{mode}: a pod to the eTP Local {what} uses every endpoint"),
            );
        }
        self.dropped(
            other,
            sa(EXTERNAL_IP, 80),
            &format!("{mode}: not a pod: the eTP Local external IP has no local endpoint"),
        );
    }

    /// `nft list ruleset` holds each of `wanted` (what `nft` reads back from
    /// the kernel: our bytes decoded by nft itself).
    fn listed(&self, wanted: &[&str]) {
        let text = ok(nft_list(self.c.node(THIS_NODE)), "nft list");
        for w in wanted {
            assert!(text.contains(w), "no {w:?} in\n{text}");
        }
    }
}

#[test]
fn cluster_cidr_counts_sources_in_the_cluster_cidr_as_pods() {
    let w = world();
    // --cluster-cidr 10.42.0.0/16,fd00:42::/48 (the edge cluster's).
    w.apply(&["--detect-local-mode", "ClusterCIDR"]);
    w.listed(&["ip saddr != 10.42.0.0/16", "ip saddr 10.42.0.0/16 goto"]);
    w.check("ClusterCIDR", Src::client(), Src::outside());
    // bpod is inside the cluster CIDR: a pod here, whatever its interface.
    w.served(
        Src::Bpod,
        sa(CLUSTER_IP, 80),
        BPOD,
        "ClusterCIDR: bpod's address is in the cluster CIDR",
    );
}

#[test]
fn node_cidr_counts_sources_in_this_nodes_pod_cidr_as_pods() {
    let w = world();
    w.apply(&["--detect-local-mode", "NodeCIDR"]);
    w.listed(&[
        "ip saddr != 10.42.187.64/26",
        "ip saddr 10.42.187.64/26 goto",
    ]);
    // bpod is in the cluster CIDR but not in node-2's pod CIDR.
    w.check("NodeCIDR", Src::client(), Src::Bpod);
}

#[test]
fn bridge_interface_counts_what_arrives_on_the_bridge_as_pods() {
    let w = world();
    w.apply(&[
        "--detect-local-mode",
        "BridgeInterface",
        "--pod-bridge-interface",
        BRIDGE,
    ]);
    w.listed(&["iifname != \"cbr0\"", "iifname \"cbr0\" goto"]);
    // client is a pod of the cluster CIDR, but not on the bridge.
    w.check("BridgeInterface", Src::Bpod, Src::client());
}

#[test]
fn interface_name_prefix_counts_what_arrives_on_cali_interfaces_as_pods() {
    let w = world();
    w.apply(&[
        "--detect-local-mode=InterfaceNamePrefix",
        "--pod-interface-name-prefix=cali",
    ]);
    w.listed(&["iifname != \"cali*\"", "iifname \"cali*\" goto"]);
    // bpod's address is in the cluster CIDR, but it arrives on cbr0.
    w.check("InterfaceNamePrefix", Src::client(), Src::Bpod);
    w.served(
        Src::outside(),
        sa(CLUSTER_IP, 80),
        MASQ,
        "InterfaceNamePrefix: outside arrives on eth0",
    );
}

#[test]
fn node_cidr_detects_ipv6_pods_by_the_nodes_ipv6_pod_cidr() {
    let w = world();
    ok(
        w.c.ns("outside").ip(&[
            "-6",
            "route",
            "add",
            "fd00:43::/112",
            "via",
            &NODE2_IP6.to_string(),
        ]),
        "outside's IPv6 route to the service range",
    );
    // web dual stack (cluster IP fd00:43::14), its IPv6 endpoint c.
    w.apply_files(
        &["svc-dual.yaml", "slices-node-3.yaml", "slices-v6-c.yaml"],
        &["--detect-local-mode", "NodeCIDR"],
    );
    w.listed(&[
        "ip6 saddr != fd00:42:0:2::/64",
        "ip saddr != 10.42.187.64/26",
    ]);
    let probe = Probe::tcp(sa("fd00:43::14".parse::<IpAddr>().unwrap(), 80), CONNS);
    let client = IpAddr::V6(pod_spec("client").ip6);
    w.c.expect_served_from(
        "client",
        &probe,
        &ips6(&["c"]),
        client,
        "a pod of fd00:42:0:2::/64",
    );
    w.c.expect_served_from(
        "outside",
        &probe,
        &ips6(&["c"]),
        NODE2_IP6,
        "not a pod: masqueraded",
    );
}
