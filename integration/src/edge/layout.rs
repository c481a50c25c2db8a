//! The edge cluster's fixed layout: nodes, pods and outside clients, with
//! their addresses (the picture in the parent module).

use super::*;

/// The node nftopo programs.
pub const THIS_NODE: &str = "node-2";
/// `--cluster-cidr` for both families.
pub const CLUSTER_CIDRS: &str = "10.42.0.0/16,fd00:42::/48";
/// The fabric's addresses (the nodes' default gateways).
pub const GATEWAY4: Ipv4Addr = Ipv4Addr::new(172, 31, 11, 1);
/// IPv6 gateway on the underlay.
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x31, 0, 0, 0, 0, 0, 1);
/// node-2's InternalIP (IPv4).
pub const NODE2_IP4: Ipv4Addr = Ipv4Addr::new(172, 31, 11, 85);
/// node-2's InternalIP (IPv6).
pub const NODE2_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x31, 0, 0, 0, 0, 0, 0x85);
/// A second address tests may add to node-2's eth0 (not an InternalIP).
pub const NODE2_SECOND_IP4: Ipv4Addr = Ipv4Addr::new(172, 31, 11, 86);
/// Route for the external IPs (`spec.externalIPs`), to node-2.
pub const EXTERNAL_NET: &str = "198.51.100.0/24";
/// Route for the LoadBalancer ingress IPs, to node-2.
pub const LB_NET: &str = "203.0.113.0/24";
/// Ports every backend listens on (TCP and UDP, both families).
pub const BACKEND_PORTS: &[u16] = &[5000, 5001, 6000];
/// Node ports the node-2 sentinel holds (TCP and UDP).
pub const SENTINEL_PORTS: &[u16] = &[30080, 30053];

/// One node.
#[derive(Debug, Clone, Copy)]
pub struct EdgeNode {
    /// Node name.
    pub name: &'static str,
    /// Underlay IPv4 address.
    pub ip4: Ipv4Addr,
    /// Underlay IPv6 address.
    pub ip6: Ipv6Addr,
    /// IPv4 pod block.
    pub block4: &'static str,
    /// IPv6 pod block.
    pub block6: &'static str,
}

/// One pod.
#[derive(Debug, Clone, Copy)]
pub struct EdgePod {
    /// Pod name (`"a"`, `"client"`).
    pub name: &'static str,
    /// Node it runs on.
    pub node: &'static str,
    /// IPv4 address.
    pub ip4: Ipv4Addr,
    /// IPv6 address.
    pub ip6: Ipv6Addr,
    /// Whether it runs `testpod serve` (an endpoint in the manifests).
    pub backend: bool,
}

/// A client namespace on the underlay, outside the cluster.
#[derive(Debug, Clone, Copy)]
pub struct EdgeOutside {
    /// Name (`"outside"`, `"outside2"`).
    pub name: &'static str,
    /// IPv4 address.
    pub ip4: Ipv4Addr,
    /// IPv6 address.
    pub ip6: Ipv6Addr,
}

/// A pod's IPv6 address, `fd00:42:0:<node>::<last>`: inside the IPv6
/// cluster CIDR fd00:42::/48, one /64 block per node.
const fn v6(node: u16, last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x42, 0, node, 0, 0, 0, last)
}

/// node-2 and node-3.
pub const NODES: [EdgeNode; 2] = [
    EdgeNode {
        name: "node-2",
        ip4: NODE2_IP4,
        ip6: NODE2_IP6,
        block4: "10.42.187.64/26",
        block6: "fd00:42:0:2::/64",
    },
    EdgeNode {
        name: "node-3",
        ip4: Ipv4Addr::new(172, 31, 11, 157),
        ip6: Ipv6Addr::new(0xfd00, 0x31, 0, 0, 0, 0, 0, 0x157),
        block4: "10.42.54.128/26",
        block6: "fd00:42:0:3::/64",
    },
];

/// Four backends (two per node) and two clients on node-2.
pub const PODS: [EdgePod; 6] = [
    EdgePod {
        name: "a",
        node: "node-2",
        ip4: Ipv4Addr::new(10, 42, 187, 66),
        ip6: v6(2, 0x66),
        backend: true,
    },
    EdgePod {
        name: "b",
        node: "node-2",
        ip4: Ipv4Addr::new(10, 42, 187, 67),
        ip6: v6(2, 0x67),
        backend: true,
    },
    EdgePod {
        name: "client",
        node: "node-2",
        ip4: Ipv4Addr::new(10, 42, 187, 80),
        ip6: v6(2, 0x80),
        backend: false,
    },
    EdgePod {
        name: "client2",
        node: "node-2",
        ip4: Ipv4Addr::new(10, 42, 187, 81),
        ip6: v6(2, 0x81),
        backend: false,
    },
    EdgePod {
        name: "c",
        node: "node-3",
        ip4: Ipv4Addr::new(10, 42, 54, 130),
        ip6: v6(3, 0x130),
        backend: true,
    },
    EdgePod {
        name: "d",
        node: "node-3",
        ip4: Ipv4Addr::new(10, 42, 54, 131),
        ip6: v6(3, 0x131),
        backend: true,
    },
];

/// The clients outside the cluster.
pub const OUTSIDE: [EdgeOutside; 2] = [
    EdgeOutside {
        name: "outside",
        ip4: Ipv4Addr::new(172, 31, 11, 200),
        ip6: Ipv6Addr::new(0xfd00, 0x31, 0, 0, 0, 0, 0, 0x200),
    },
    EdgeOutside {
        name: "outside2",
        ip4: Ipv4Addr::new(172, 31, 11, 201),
        ip6: Ipv6Addr::new(0xfd00, 0x31, 0, 0, 0, 0, 0, 0x201),
    },
];

/// A pod by name.
pub fn pod_spec(name: &str) -> &'static EdgePod {
    PODS.iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pod {name}"))
}

/// An outside client by name.
pub fn outside_spec(name: &str) -> &'static EdgeOutside {
    OUTSIDE
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no outside client {name}"))
}

/// IPv4 addresses of the named pods.
pub fn ips4(pods: &[&str]) -> BTreeSet<IpAddr> {
    pods.iter().map(|p| IpAddr::V4(pod_spec(p).ip4)).collect()
}

/// IPv6 addresses of the named pods.
pub fn ips6(pods: &[&str]) -> BTreeSet<IpAddr> {
    pods.iter().map(|p| IpAddr::V6(pod_spec(p).ip6)).collect()
}

/// `ip:port` as a socket address.
pub fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// The edge manifests directory (`integration/manifests/edge`).
pub fn edge_manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/edge")
}
