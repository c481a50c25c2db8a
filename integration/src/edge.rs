//! The edge cluster: everything issue 4 needs around the seed scenario,
//! dual stack, with clients outside the cluster.
//!
//! ```text
//!        fabric ns: bridge br0 172.31.11.1/24, fd00:31::1/64 (the underlay)
//!   ┌──────────────────┬──────────────┼─────────────────┬─────────────────┐
//!  node-2 .85         node-3 .157    outside .200      outside2 .201
//!  fd00:31::85        fd00:31::157   fd00:31::200      fd00:31::201
//!  10.42.187.64/26    10.42.54.128/26
//!  fd00:42:0:2::/64   fd00:42:0:3::/64
//!  ├ a       .66  ::66   ├ c  .130 ::130
//!  ├ b       .67  ::67   └ d  .131 ::131
//!  ├ client  .80  ::80
//!  └ client2 .81  ::81
//! ```
//!
//! Services live in 10.43.0.0/16 and fd00:43::/112; the outside clients
//! (not in the cluster CIDR `10.42.0.0/16,fd00:42::/48`) route the
//! external IPs (198.51.100.0/24) and LoadBalancer IPs (203.0.113.0/24)
//! to node-2, the node nftopo programs. Pods have one /32 and one /128
//! (`default via 169.254.1.1` and `default via fe80::1`, Calico style).
//! Backends `a`–`d` run `testpod serve --echo-peer` on ports 5000, 5001
//! and 6000: every answer says which pod answered, the source it saw and
//! the port it was reached on. node-2 runs a *sentinel*
//! (`testpod serve --wildcard --echo-peer`) on the node ports 30080 and
//! 30053: a node-port connection that nftopo does not intercept is
//! answered by node-2 itself, so "not served by the pods" is visible as
//! an answer from a node address instead of a refusal any bare port
//! would give.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cluster::{plug_calico_pod, NODE_SYSCTLS};
use crate::netns::{sweep_stale, unique_prefix, Error, Netns, Result};
use crate::probe::{Probe, ProbeResult};
use crate::tools;

mod layout;

pub use layout::*;

/// Settings of every namespace: no duplicate address detection, so IPv6
/// addresses are usable at once.
const NO_DAD: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
];

/// IPv6 forwarding on a node, and no ICMP redirects. The outside clients
/// share the underlay with node-2's default gateway, so a packet to an
/// external IP that node-2 does not DNAT (a service without endpoints)
/// would be routed back out of eth0 and earn the client a redirect; the
/// kernel's redirect path resets the per-peer ICMP budget (`inet_peer`
/// `rate_last`), and the port-unreachable that `reject` sends next would
/// be rate-limited away (IcmpOutRateLimitHost), looking like a drop.
const NODE_SYSCTLS6: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv6.conf.default.forwarding", "1"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
];

/// A running edge cluster; dropping it deletes every namespace (pods,
/// nodes, outside clients, then the fabric) and kills the servers.
pub struct EdgeCluster {
    testpod: PathBuf,
    pods: BTreeMap<&'static str, Netns>,
    nodes: BTreeMap<&'static str, Netns>,
    outside: BTreeMap<&'static str, Netns>,
    fabric: Netns,
}

fn new_ns(name: String) -> Result<Netns> {
    let ns = Netns::create(name)?;
    ns.sysctl(NO_DAD)?;
    Ok(ns)
}

/// Adds a veth `port` in `fabric` on br0 whose peer is `eth0` in `ns`, up.
fn plug(fabric: &Netns, ns: &Netns, port: &str) -> Result<()> {
    fabric.ip(&[
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name(),
    ])?;
    fabric.ip(&["link", "set", port, "master", "br0", "up"])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    Ok(())
}

impl EdgeCluster {
    /// Builds the cluster, starts the backends and node-2's sentinel and
    /// waits until every backend answers by its pod IPs.
    pub fn start(testpod: &Path) -> Result<Self> {
        sweep_stale();
        let prefix = unique_prefix();
        let fabric = new_ns(format!("{prefix}-fab"))?;
        fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
        fabric.ip(&["addr", "add", &format!("{GATEWAY4}/24"), "dev", "br0"])?;
        fabric.ip(&[
            "addr",
            "add",
            &format!("{GATEWAY6}/64"),
            "dev",
            "br0",
            "nodad",
        ])?;
        fabric.ip(&["link", "set", "br0", "up"])?;

        let mut nodes = BTreeMap::new();
        for node in &NODES {
            let short = node.name.trim_start_matches("node-");
            let ns = new_ns(format!("{prefix}-n{short}"))?;
            ns.sysctl(NODE_SYSCTLS)?;
            ns.sysctl(NODE_SYSCTLS6)?;
            plug(&fabric, &ns, &format!("n{short}"))?;
            ns.ip(&["addr", "add", &format!("{}/24", node.ip4), "dev", "eth0"])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/64", node.ip6),
                "dev",
                "eth0",
                "nodad",
            ])?;
            ns.ip(&["route", "add", "default", "via", &GATEWAY4.to_string()])?;
            ns.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &GATEWAY6.to_string(),
            ])?;
            ns.ip(&["route", "add", "blackhole", node.block4, "proto", "bird"])?;
            ns.ip(&[
                "-6",
                "route",
                "add",
                "blackhole",
                node.block6,
                "proto",
                "bird",
            ])?;
            for other in NODES.iter().filter(|o| o.name != node.name) {
                let (via4, via6) = (other.ip4.to_string(), other.ip6.to_string());
                ns.ip(&[
                    "route",
                    "add",
                    other.block4,
                    "via",
                    &via4,
                    "dev",
                    "eth0",
                    "proto",
                    "bird",
                ])?;
                ns.ip(&[
                    "-6",
                    "route",
                    "add",
                    other.block6,
                    "via",
                    &via6,
                    "dev",
                    "eth0",
                    "proto",
                    "bird",
                ])?;
            }
            nodes.insert(node.name, ns);
        }

        let mut outside = BTreeMap::new();
        for (i, o) in OUTSIDE.iter().enumerate() {
            let ns = new_ns(format!("{prefix}-o{i}"))?;
            plug(&fabric, &ns, &format!("o{i}"))?;
            ns.ip(&["addr", "add", &format!("{}/24", o.ip4), "dev", "eth0"])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/64", o.ip6),
                "dev",
                "eth0",
                "nodad",
            ])?;
            let via = NODE2_IP4.to_string();
            ns.ip(&["route", "add", EXTERNAL_NET, "via", &via])?;
            ns.ip(&["route", "add", LB_NET, "via", &via])?;
            outside.insert(o.name, ns);
        }

        let mut cluster = EdgeCluster {
            testpod: testpod.to_owned(),
            pods: BTreeMap::new(),
            nodes,
            outside,
            fabric,
        };
        let backend_ports = BACKEND_PORTS
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        for (i, pod) in PODS.iter().enumerate() {
            let ns = new_ns(format!("{prefix}-p{i}"))?;
            let node = &cluster.nodes[pod.node];
            plug_calico_pod(node, &ns, pod.ip4, Some(pod.ip6))?;
            if pod.backend {
                ns.spawn(
                    testpod,
                    &["serve", "--ports", &backend_ports, "--echo-peer"],
                )?;
            }
            cluster.pods.insert(pod.name, ns);
        }
        let sentinel = SENTINEL_PORTS
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        cluster.node(THIS_NODE).spawn(
            testpod,
            &["serve", "--ports", &sentinel, "--echo-peer", "--wildcard"],
        )?;
        cluster.wait_ready(Duration::from_secs(10))?;
        Ok(cluster)
    }

    /// Waits until each backend answers TCP to its own IPv4 and IPv6
    /// address from node-2, and the sentinel answers on node-2's address.
    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut targets: Vec<(SocketAddr, IpAddr)> = PODS
            .iter()
            .filter(|p| p.backend)
            .flat_map(|p| {
                [
                    (sa(p.ip4, BACKEND_PORTS[0]), IpAddr::V4(p.ip4)),
                    (sa(p.ip6, BACKEND_PORTS[0]), IpAddr::V6(p.ip6)),
                ]
            })
            .collect();
        targets.push((sa(NODE2_IP4, SENTINEL_PORTS[0]), IpAddr::V4(NODE2_IP4)));
        for (target, ip) in targets {
            loop {
                let r = self.probe(THIS_NODE, &Probe::tcp(target, 1).timeout_ms(500))?;
                if r.pods() == BTreeSet::from([ip]) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error(format!("{target} not ready: {r}")));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Any namespace by name: a node (`"node-2"`), a pod (`"a"`,
    /// `"client"`) or an outside client (`"outside"`).
    pub fn ns(&self, name: &str) -> &Netns {
        self.nodes
            .get(name)
            .or_else(|| self.pods.get(name))
            .or_else(|| self.outside.get(name))
            .unwrap_or_else(|| panic!("no namespace {name} in the edge cluster"))
    }

    /// The namespace of a node.
    pub fn node(&self, name: &str) -> &Netns {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The fabric namespace.
    pub fn fabric(&self) -> &Netns {
        &self.fabric
    }

    /// The `testpod` binary.
    pub fn testpod(&self) -> &Path {
        &self.testpod
    }

    /// Runs a probe from the namespace `from` (see [`EdgeCluster::ns`]).
    pub fn probe(&self, from: &str, probe: &Probe) -> Result<ProbeResult> {
        probe
            .run(self.ns(from), &self.testpod)
            .map_err(|e| Error(format!("probe {probe:?} from {from}: {e}")))
    }

    /// `nftopo apply --node node-2 --cluster-cidr 10.42.0.0/16,fd00:42::/48
    /// <extra>` in node-2 with edge manifest files (by name). Returns
    /// (stdout, stderr).
    pub fn apply(&self, files: &[&str], extra: &[&str]) -> Result<(String, String)> {
        let bin = tools::nftopo_bin()?;
        let mut args: Vec<String> = vec!["apply".into(), "--node".into(), THIS_NODE.into()];
        for f in files {
            args.push("--manifests".into());
            args.push(edge_manifests_dir().join(f).display().to_string());
        }
        if !extra.contains(&"--cluster-cidr") {
            args.extend(["--cluster-cidr".into(), CLUSTER_CIDRS.into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = self.node(THIS_NODE);
        let out = node
            .command(&bin, &args)
            .output()
            .map_err(|e| Error(format!("cannot run {}: {e}", bin.display())))?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let what = format!("nftopo {}", args.join(" "));
        let stdout = crate::netns::check(&what, out)?;
        Ok((stdout, stderr))
    }
}
