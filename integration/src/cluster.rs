//! The seed article's cluster, built from network namespaces:
//!
//! ```text
//!                 fabric ns: bridge br0 172.31.11.1/24 (the underlay)
//!        ┌──────────────────────┼───────────────────────┐
//!  node-2 172.31.11.85    node-3 172.31.11.157    node-4 172.31.11.212
//!  10.42.187.64/26        10.42.54.128/26         10.42.201.0/26
//!  ├ api-a .66            ├ api-c .130            └ api-e .2
//!  ├ api-b .67            └ api-d .131
//!  └ client .80
//! ```
//!
//! Nodes route each other's pod blocks via the node IPs
//! (`10.42.54.128/26 via 172.31.11.157 dev eth0 proto bird`), hold a
//! blackhole for their own block and a default route to the fabric (so
//! cluster IPs in 10.43.0.0/16 are routed). Pods follow Calico's model:
//! one /32 on `eth0`, `default via 169.254.1.1 dev eth0 onlink`, and on
//! the node a `cali…` veth with proxy ARP and a /32 host route. Every
//! `swansea-city-api` pod runs `testpod serve` on TCP and UDP port 5000.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::netns::{sweep_stale, unique_prefix, Error, Netns, Result};
use crate::probe::{Probe, ProbeResult};
use crate::tools;

/// Kernel settings of every node namespace: forwarding on and no
/// reverse-path filter. The ICMP rate limits stay at the kernel's defaults
/// on purpose: nftopo refuses TCP with a reset, which they do not throttle
/// (ICMP port unreachable is limited to a burst of 6 then one a second per
/// client, kubernetes/kubernetes#90810), so "refused at once" is tested
/// under the limits a real node has.
pub const NODE_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
];

/// The node nftopo programs in the seed scenario.
pub const THIS_NODE: &str = "node-2";
/// The cluster (pod) CIDR passed as `--cluster-cidr`.
pub const CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The fabric's address: every node's default gateway.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 31, 11, 1);
/// ClusterIP of `default/swansea-city-api` in every seed manifest.
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 118, 32);
/// The service's TCP port.
pub const SERVICE_PORT: u16 = 80;
/// The service's UDP port (in `svc-udp.yaml`).
pub const SERVICE_UDP_PORT: u16 = 53;
/// The port every backend pod's `testpod serve` listens on (TCP and UDP).
pub const TARGET_PORT: u16 = 5000;

/// One node of the seed cluster.
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec {
    /// Node name (`kubernetes.io/hostname`).
    pub name: &'static str,
    /// Address on the underlay.
    pub ip: Ipv4Addr,
    /// The node's pod block (Calico IPAM block), address and prefix length.
    pub block: (Ipv4Addr, u8),
}

/// One pod of the seed cluster.
#[derive(Debug, Clone, Copy)]
pub struct PodSpec {
    /// Pod name.
    pub name: &'static str,
    /// Node it runs on.
    pub node: &'static str,
    /// Its one address.
    pub ip: Ipv4Addr,
    /// Whether it is a `swansea-city-api` backend running `testpod serve`.
    pub backend: bool,
}

/// The three nodes (names, zones and labels match `manifests/seed/nodes.yaml`).
pub const NODES: [NodeSpec; 3] = [
    NodeSpec {
        name: "node-2",
        ip: Ipv4Addr::new(172, 31, 11, 85),
        block: (Ipv4Addr::new(10, 42, 187, 64), 26),
    },
    NodeSpec {
        name: "node-3",
        ip: Ipv4Addr::new(172, 31, 11, 157),
        block: (Ipv4Addr::new(10, 42, 54, 128), 26),
    },
    NodeSpec {
        name: "node-4",
        ip: Ipv4Addr::new(172, 31, 11, 212),
        block: (Ipv4Addr::new(10, 42, 201, 0), 26),
    },
];

/// Five backends (two on node-2, two on node-3, one on node-4) and a client.
pub const PODS: [PodSpec; 6] = [
    PodSpec {
        name: "swansea-city-api-a",
        node: "node-2",
        ip: Ipv4Addr::new(10, 42, 187, 66),
        backend: true,
    },
    PodSpec {
        name: "swansea-city-api-b",
        node: "node-2",
        ip: Ipv4Addr::new(10, 42, 187, 67),
        backend: true,
    },
    PodSpec {
        name: "swansea-city-api-c",
        node: "node-3",
        ip: Ipv4Addr::new(10, 42, 54, 130),
        backend: true,
    },
    PodSpec {
        name: "swansea-city-api-d",
        node: "node-3",
        ip: Ipv4Addr::new(10, 42, 54, 131),
        backend: true,
    },
    PodSpec {
        name: "swansea-city-api-e",
        node: "node-4",
        ip: Ipv4Addr::new(10, 42, 201, 2),
        backend: true,
    },
    PodSpec {
        name: "client",
        node: "node-2",
        ip: Ipv4Addr::new(10, 42, 187, 80),
        backend: false,
    },
];

/// The client pod's name.
pub const CLIENT: &str = "client";

/// IPs of all `swansea-city-api` backends.
pub fn backends() -> BTreeSet<Ipv4Addr> {
    PODS.iter().filter(|p| p.backend).map(|p| p.ip).collect()
}

/// IPs of the backends on the given nodes.
pub fn backends_on(nodes: &[&str]) -> BTreeSet<Ipv4Addr> {
    PODS.iter()
        .filter(|p| p.backend && nodes.contains(&p.node))
        .map(|p| p.ip)
        .collect()
}

/// The service's TCP address, `10.43.118.32:80`.
pub fn service_addr() -> SocketAddrV4 {
    SocketAddrV4::new(SERVICE_IP, SERVICE_PORT)
}

/// The node-side veth name for a pod, Calico style (`cali` + hex of its IP).
fn cali_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("cali{:02x}{:02x}{:02x}{:02x}", o[0], o[1], o[2], o[3])
}

/// Plugs the namespace `pod` into `node` as Calico does: a veth `cali…` on
/// the node with proxy ARP and a host route to the pod's /32, and in the
/// pod an `eth0` with that /32 and a default route via 169.254.1.1
/// onlink. With an IPv6 address, also its /128 route, fe80::1 on the node
/// side and the pod's IPv6 default route via it.
pub(crate) fn plug_calico_pod(
    node: &Netns,
    pod: &Netns,
    ip4: Ipv4Addr,
    ip6: Option<std::net::Ipv6Addr>,
) -> Result<()> {
    let cali = cali_name(ip4);
    node.ip(&[
        "link",
        "add",
        &cali,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name(),
    ])?;
    node.sysctl(&[
        (&format!("net.ipv4.conf.{cali}.proxy_arp"), "1"),
        (&format!("net.ipv4.neigh.{cali}.proxy_delay"), "0"),
    ])?;
    node.ip(&["link", "set", &cali, "up"])?;
    if ip6.is_some() {
        node.ip(&["addr", "add", "fe80::1/64", "dev", &cali, "nodad"])?;
    }
    let host4 = format!("{ip4}/32");
    node.ip(&["route", "add", &host4, "dev", &cali, "scope", "link"])?;
    if let Some(ip6) = ip6 {
        node.ip(&["-6", "route", "add", &format!("{ip6}/128"), "dev", &cali])?;
    }
    pod.ip(&["addr", "add", &host4, "dev", "eth0"])?;
    if let Some(ip6) = ip6 {
        pod.ip(&["addr", "add", &format!("{ip6}/128"), "dev", "eth0", "nodad"])?;
    }
    pod.ip(&["link", "set", "eth0", "up"])?;
    pod.ip(&[
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
        "onlink",
    ])?;
    if ip6.is_some() {
        pod.ip(&[
            "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
        ])?;
    }
    Ok(())
}

/// A running seed cluster. Dropping it deletes every namespace (pods,
/// then nodes, then the fabric) and kills the servers.
pub struct SeedCluster {
    testpod: PathBuf,
    pods: BTreeMap<&'static str, Netns>,
    nodes: BTreeMap<&'static str, Netns>,
    fabric: Netns,
}

impl SeedCluster {
    /// Builds the cluster and waits until every backend answers by its
    /// pod IP. `testpod` is the `testpod` binary to run in the pods.
    pub fn start(testpod: &Path) -> Result<Self> {
        sweep_stale();
        let prefix = unique_prefix();
        let fabric = Netns::create(format!("{prefix}-fab"))?;
        fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
        fabric.ip(&["addr", "add", &format!("{GATEWAY}/24"), "dev", "br0"])?;
        fabric.ip(&["link", "set", "br0", "up"])?;

        let mut nodes = BTreeMap::new();
        for node in &NODES {
            let short = node.name.trim_start_matches("node-");
            let ns = Netns::create(format!("{prefix}-n{short}"))?;
            ns.sysctl(NODE_SYSCTLS)?;
            let port = format!("n{short}");
            fabric.ip(&[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])?;
            fabric.ip(&["link", "set", &port, "master", "br0", "up"])?;
            ns.ip(&["addr", "add", &format!("{}/24", node.ip), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            ns.ip(&["route", "add", "default", "via", &GATEWAY.to_string()])?;
            let (net, len) = node.block;
            ns.ip(&[
                "route",
                "add",
                "blackhole",
                &format!("{net}/{len}"),
                "proto",
                "bird",
            ])?;
            for other in NODES.iter().filter(|o| o.name != node.name) {
                let (net, len) = other.block;
                let (cidr, via) = (format!("{net}/{len}"), other.ip.to_string());
                ns.ip(&[
                    "route", "add", &cidr, "via", &via, "dev", "eth0", "proto", "bird",
                ])?;
            }
            nodes.insert(node.name, ns);
        }

        let mut cluster = SeedCluster {
            testpod: testpod.to_owned(),
            pods: BTreeMap::new(),
            nodes,
            fabric,
        };
        for (i, pod) in PODS.iter().enumerate() {
            let ns = Netns::create(format!("{prefix}-p{i}"))?;
            let node = &cluster.nodes[pod.node];
            plug_calico_pod(node, &ns, pod.ip, None)?;
            if pod.backend {
                ns.spawn(testpod, &["serve", "--port", &TARGET_PORT.to_string()])?;
            }
            cluster.pods.insert(pod.name, ns);
        }
        cluster.wait_ready(Duration::from_secs(10))?;
        Ok(cluster)
    }

    /// Waits until each backend answers a TCP connection to its own pod IP
    /// from node-2 with that IP.
    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        for ip in backends() {
            let target = SocketAddrV4::new(ip, TARGET_PORT);
            loop {
                let r = self.probe_from_node(THIS_NODE, target, 1, false)?;
                if r.answered() == BTreeSet::from([ip]) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error(format!("backend {ip} not ready: {r}")));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The namespace of a node (`"node-2"`).
    pub fn node(&self, name: &str) -> &Netns {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The namespace of a pod (`"client"`, `"swansea-city-api-c"`).
    pub fn pod(&self, name: &str) -> &Netns {
        self.pods
            .get(name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// The fabric namespace (the underlay bridge).
    pub fn fabric(&self) -> &Netns {
        &self.fabric
    }

    /// The `testpod` binary the cluster runs.
    pub fn testpod(&self) -> &Path {
        &self.testpod
    }

    /// `nftopo apply --node node-2 --cluster-cidr 10.42.0.0/16` in node-2,
    /// with the given seed manifest files (by name, e.g. `"nodes.yaml"`).
    pub fn apply(&self, files: &[&str], extra: &[&str]) -> Result<String> {
        let manifests: Vec<PathBuf> = files.iter().map(|f| tools::seed_manifest(f)).collect();
        let mut args = vec!["--cluster-cidr", CLUSTER_CIDR];
        args.extend_from_slice(extra);
        tools::apply(self.node(THIS_NODE), THIS_NODE, &manifests, &args)
    }

    /// `nftopo cleanup` in node-2.
    pub fn cleanup(&self) -> Result<String> {
        tools::cleanup(self.node(THIS_NODE))
    }

    /// `count` fresh connections (TCP, or UDP datagrams) from a pod.
    pub fn probe_from_pod(
        &self,
        pod: &str,
        target: SocketAddrV4,
        count: usize,
        udp: bool,
    ) -> Result<ProbeResult> {
        probe(self.pod(pod), &self.testpod, target, count, udp)
    }

    /// `count` fresh connections (TCP, or UDP datagrams) from a node itself.
    pub fn probe_from_node(
        &self,
        node: &str,
        target: SocketAddrV4,
        count: usize,
        udp: bool,
    ) -> Result<ProbeResult> {
        probe(self.node(node), &self.testpod, target, count, udp)
    }
}

/// Runs `testpod probe` inside `ns` and parses its counts. A connection
/// waits at most one second; the probe gives up after five timeouts, so a
/// broken ruleset fails a test in seconds, not minutes.
pub fn probe(
    ns: &Netns,
    testpod: &Path,
    target: SocketAddrV4,
    count: usize,
    udp: bool,
) -> Result<ProbeResult> {
    Probe::new(target, count, udp).run(ns, testpod)
}
