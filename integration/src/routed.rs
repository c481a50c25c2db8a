//! A cluster without pre-installed pod routes, for route-sync: three node
//! namespaces on one bridge, Calico-style pods behind each, and nothing
//! that routes one node's pods to another until `nftopo apply
//! --route-mode …` does it.
//!
//! ```text
//!                 fabric ns: bridge br0 (one L2 segment)
//!        ┌──────────────────────┼───────────────────────┐
//!  node-2 172.31.11.85/20  node-3 172.31.11.157/20  node-4 172.31.11.212/20
//!                                                   (or 172.31.40.20/20:
//!                                                    another subnet)
//!  10.42.187.64/26         10.42.54.128/26          10.42.201.0/26
//!  └ client .80            ├ pod-c .130             └ pod-e .2
//!                          └ pod-d .131
//! ```
//!
//! Each node's default route points at the fabric, which forwards
//! nothing. Every node also has a `tunl0` that is a veth plugged into the same
//! bridge: this kernel cannot create ipip links, so the stand-in carries
//! routes `via NODE dev tunl0 onlink` over plain L2 (no encapsulation).
//! What is tested is the route nftopo chose; the packets really take it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cluster::{plug_calico_pod, NODE_SYSCTLS, TARGET_PORT};
use crate::netns::{sweep_stale, unique_prefix, Error, Netns, Result};
use crate::probe::{Probe, ProbeResult};
use crate::tools;

/// One node of the routed cluster.
#[derive(Debug, Clone)]
pub struct RoutedNode {
    /// `node-2`.
    pub name: &'static str,
    /// Address on the underlay, with its prefix length.
    pub ip: (Ipv4Addr, u8),
    /// Its pod CIDR.
    pub block: &'static str,
    /// Pods on it: (name, address, runs `testpod serve`).
    pub pods: Vec<(&'static str, Ipv4Addr, bool)>,
}

/// The three nodes; with `node4_elsewhere`, node-4 sits in another subnet
/// (172.31.32.0/20) of the same L2 segment.
pub fn routed_nodes(node4_elsewhere: bool) -> Vec<RoutedNode> {
    vec![
        RoutedNode {
            name: "node-2",
            ip: (Ipv4Addr::new(172, 31, 11, 85), 20),
            block: "10.42.187.64/26",
            pods: vec![("client", Ipv4Addr::new(10, 42, 187, 80), false)],
        },
        RoutedNode {
            name: "node-3",
            ip: (Ipv4Addr::new(172, 31, 11, 157), 20),
            block: "10.42.54.128/26",
            pods: vec![
                ("pod-c", Ipv4Addr::new(10, 42, 54, 130), true),
                ("pod-d", Ipv4Addr::new(10, 42, 54, 131), true),
            ],
        },
        RoutedNode {
            name: "node-4",
            ip: if node4_elsewhere {
                (Ipv4Addr::new(172, 31, 40, 20), 20)
            } else {
                (Ipv4Addr::new(172, 31, 11, 212), 20)
            },
            block: "10.42.201.0/26",
            pods: vec![("pod-e", Ipv4Addr::new(10, 42, 201, 2), true)],
        },
    ]
}

/// The Node objects of `nodes` as a YAML stream (InternalIP, podCIDR and
/// Calico's address annotation), for `--manifests`.
pub fn nodes_yaml(nodes: &[RoutedNode]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  annotations:\n    \
                 projectcalico.org/IPv4Address: {ip}/{len}\n  labels:\n    \
                 kubernetes.io/hostname: {name}\nspec:\n  podCIDR: {block}\nstatus:\n  \
                 addresses:\n  - {{type: InternalIP, address: {ip}}}\n",
                name = n.name,
                ip = n.ip.0,
                len = n.ip.1,
                block = n.block,
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Calico BlockAffinity objects for `nodes`' blocks (state `confirmed`).
pub fn block_affinities_yaml(nodes: &[RoutedNode]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "apiVersion: crd.projectcalico.org/v1\nkind: BlockAffinity\nmetadata:\n  \
                 name: {name}-{cidr}\nspec:\n  cidr: {block}\n  node: {name}\n  \
                 state: confirmed\n  deleted: \"false\"\n",
                name = n.name,
                cidr = n.block.replace(['.', '/'], "-"),
                block = n.block,
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A running routed cluster; dropping it deletes every namespace.
pub struct RoutedCluster {
    testpod: PathBuf,
    pods: BTreeMap<&'static str, Netns>,
    nodes: BTreeMap<&'static str, Netns>,
    _fabric: Netns,
    /// The nodes as built.
    pub spec: Vec<RoutedNode>,
}

impl RoutedCluster {
    /// Builds the cluster of `spec` (see [`routed_nodes`]); `with_tunl0`
    /// adds the veth stand-in for the IPIP device on every node.
    pub fn start(testpod: &Path, spec: Vec<RoutedNode>, with_tunl0: bool) -> Result<Self> {
        sweep_stale();
        let prefix = unique_prefix();
        let fabric = Netns::create(format!("{prefix}-rfab"))?;
        fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
        // A gateway in each subnet that forwards nothing: nodes need a
        // default route (proxy ARP answers pods only for routable
        // addresses such as their 169.254.1.1 gateway), and pod traffic
        // without a route of nftopo's must die there.
        for gw in ["172.31.0.1/20", "172.31.32.1/20"] {
            fabric.ip(&["addr", "add", gw, "dev", "br0"])?;
        }
        fabric.ip(&["link", "set", "br0", "up"])?;
        let mut cluster = RoutedCluster {
            testpod: testpod.to_owned(),
            pods: BTreeMap::new(),
            nodes: BTreeMap::new(),
            _fabric: fabric,
            spec: spec.clone(),
        };
        for node in &spec {
            let short = node.name.trim_start_matches("node-");
            let ns = Netns::create(format!("{prefix}-r{short}"))?;
            ns.sysctl(NODE_SYSCTLS)?;
            for (dev, port) in [
                ("eth0", format!("r{short}")),
                ("tunl0", format!("t{short}")),
            ] {
                if dev == "tunl0" && !with_tunl0 {
                    continue;
                }
                cluster._fabric.ip(&[
                    "link",
                    "add",
                    &port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    dev,
                    "netns",
                    ns.name(),
                ])?;
                cluster
                    ._fabric
                    .ip(&["link", "set", &port, "master", "br0", "up"])?;
            }
            let (ip, len) = node.ip;
            ns.ip(&["addr", "add", &format!("{ip}/{len}"), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            let gateway = if ip.octets()[2] >= 32 {
                "172.31.32.1"
            } else {
                "172.31.0.1"
            };
            ns.ip(&["route", "add", "default", "via", gateway])?;
            for (i, (pod, pod_ip, serve)) in node.pods.iter().enumerate() {
                let pns = Netns::create(format!("{prefix}-r{short}p{i}"))?;
                plug_calico_pod(&ns, &pns, *pod_ip, None)?;
                if *serve {
                    pns.spawn(testpod, &["serve", "--port", &TARGET_PORT.to_string()])?;
                }
                cluster.pods.insert(pod, pns);
            }
            cluster.nodes.insert(node.name, ns);
        }
        Ok(cluster)
    }

    /// The namespace of a node.
    pub fn node(&self, name: &str) -> &Netns {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// `nftopo apply --node NODE --manifests FILES… EXTRA…` in that node.
    pub fn apply(&self, node: &str, manifests: &[PathBuf], extra: &[&str]) -> Result<String> {
        tools::apply(self.node(node), node, manifests, extra)
    }

    /// Our routes in `node` (`proto bird`), one per line as `ip route`
    /// prints them, sorted.
    pub fn bird_routes(&self, node: &str) -> Result<Vec<String>> {
        let out = self.node(node).ip(&["route", "show", "proto", "bird"])?;
        let mut lines: Vec<String> = out
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect();
        lines.sort();
        Ok(lines)
    }

    /// `count` TCP connections from pod `from` to `to`'s port 5000.
    pub fn probe(&self, from: &str, to: Ipv4Addr, count: usize) -> Result<ProbeResult> {
        let pod = self
            .pods
            .get(from)
            .unwrap_or_else(|| panic!("no pod {from}"));
        Probe::tcp(SocketAddrV4::new(to, TARGET_PORT), count)
            .timeout_ms(500)
            .give_up_after(2)
            .run(pod, &self.testpod)
    }

    /// Probes until `to` answers from `from` or `limit` passes (servers
    /// take a moment to start, neighbours to resolve).
    pub fn wait_reachable(&self, from: &str, to: Ipv4Addr, limit: Duration) -> Result<ProbeResult> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.probe(from, to, 1)?;
            if r.answered().contains(&to) || Instant::now() > deadline {
                return Ok(r);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RoutedCluster {
    fn drop(&mut self) {
        // Pods first: their veths live in the nodes.
        self.pods.clear();
        self.nodes.clear();
    }
}

/// Writes `text` to a fresh file under the system temp dir; removed by
/// the returned guard.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// Creates it.
    pub fn new(name: &str, text: &str) -> Result<TempFile> {
        let path = std::env::temp_dir().join(format!("{}-{name}", unique_prefix()));
        std::fs::write(&path, text).map_err(|e| Error(format!("{}: {e}", path.display())))?;
        Ok(TempFile(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
