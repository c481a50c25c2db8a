//! The planner: Nodes (and Calico blocks) in, the routes this node should
//! hold out. Pure: no sockets, no clock, no files.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

pub use api_watch::BlockAffinity;
use api_watch::Node;

use crate::{Cidr, Error, Route, RouteKind, DEFAULT_PROTOCOL, TUNNEL_DEVICE};

/// Calico's node address annotation, CIDR form (`172.31.11.157/20`).
pub const IPV4_ADDRESS_ANNOTATION: &str = "projectcalico.org/IPv4Address";
/// Calico's IPv6 node address annotation, CIDR form.
pub const IPV6_ADDRESS_ANNOTATION: &str = "projectcalico.org/IPv6Address";
/// Calico's annotation with the node's `tunl0` address.
pub const IPIP_TUNNEL_ADDR_ANNOTATION: &str = "projectcalico.org/IPv4IPIPTunnelAddr";

/// How remote pod CIDRs are reached (Calico's `ipipMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `Always`: every IPv4 route `via NODE dev tunl0 onlink`.
    #[default]
    Ipip,
    /// `Never`: `via NODE`, the kernel picks the interface that reaches it.
    Direct,
    /// `CrossSubnet`: direct to peers in one of this node's subnets, IPIP
    /// to the others.
    CrossSubnet,
}

/// Where each node's pod CIDRs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodCidrSource {
    /// `spec.podCIDRs` / `spec.podCIDR` of the Node.
    #[default]
    NodeSpec,
    /// Calico IPAM `BlockAffinity` objects (only `confirmed` ones that are
    /// not being deleted).
    CalicoIpam,
}

/// Which address of a node is the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NextHopSource {
    /// The first `InternalIP` of the CIDR's family in `status.addresses`.
    #[default]
    InternalIp,
    /// `projectcalico.org/IPv4Address` (`IPv6Address` for IPv6 CIDRs).
    CalicoAnnotation,
}

/// Everything the planner needs besides the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Direct, IPIP or cross-subnet.
    pub mode: Mode,
    /// Node spec or Calico blocks.
    pub pod_cidr_source: PodCidrSource,
    /// InternalIP or Calico annotation.
    pub next_hop: NextHopSource,
    /// Protocol number our routes carry (see [`crate::parse_protocol`]).
    pub protocol: u8,
    /// Add a `blackhole` route for each of this node's own CIDRs.
    pub blackhole_own_cidrs: bool,
    /// Subnets of this node's interfaces, for cross-subnet mode, in
    /// addition to the one in this node's `projectcalico.org/IPv4Address`.
    pub local_subnets: Vec<Cidr>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            mode: Mode::Ipip,
            pod_cidr_source: PodCidrSource::NodeSpec,
            next_hop: NextHopSource::InternalIp,
            protocol: DEFAULT_PROTOCOL,
            blackhole_own_cidrs: true,
            local_subnets: Vec::new(),
        }
    }
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DesiredRoutes {
    /// Routes, sorted by destination.
    pub routes: Vec<Route>,
    /// Nodes (or objects) that could not be routed, and why; the other
    /// nodes are planned regardless.
    pub problems: Vec<NodeProblem>,
    /// Set when some route goes over the tunnel device.
    pub tunnel: Option<TunnelPlan>,
}

/// The tunnel device the plan needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPlan {
    /// Device name (`tunl0`).
    pub device: String,
    /// This node's tunnel address, from `projectcalico.org/IPv4IPIPTunnelAddr`.
    pub address: Option<Ipv4Addr>,
}

/// Why one node (or one of its CIDRs) got no route. Log it, skip it,
/// retry on the next Node change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProblem {
    /// The node's name.
    pub node: String,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a node's routing data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A pod CIDR that does not parse.
    BadCidr(String),
    /// An address annotation that does not parse.
    BadAnnotation(String, String),
    /// No next hop of the CIDR's family.
    NoAddress(Cidr),
    /// The CIDR is already routed to another node (or is this node's own).
    DuplicateCidr(Cidr, String),
    /// A confirmed block for a node that is not in the cluster.
    UnknownNode(Cidr),
    /// Cross-subnet mode without any known subnet for this node: every
    /// IPv4 peer goes over IPIP.
    NoLocalSubnet,
}

impl fmt::Display for NodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: ", self.node)?;
        match &self.problem {
            Problem::BadCidr(s) => write!(f, "pod CIDR {s:?} does not parse"),
            Problem::BadAnnotation(k, v) => write!(f, "annotation {k}={v:?} does not parse"),
            Problem::NoAddress(c) => write!(f, "no address of {c}'s family to route it via"),
            Problem::DuplicateCidr(c, owner) => write!(f, "{c} is already routed to {owner}"),
            Problem::UnknownNode(c) => write!(f, "block {c} belongs to no known node"),
            Problem::NoLocalSubnet => write!(
                f,
                "cross-subnet mode but no subnet known for this node: all peers over IPIP"
            ),
        }
    }
}

/// Plans this node's routes: for every other node's pod CIDR one route via
/// that node's address (over `tunl0` onlink in IPIP mode, directly
/// otherwise), and a blackhole for each of this node's own CIDRs. IPv6
/// CIDRs are always routed directly (IPIP carries IPv4 only). `blocks` is
/// read only with [`PodCidrSource::CalicoIpam`].
///
/// Fails only when `this_node` is not among `nodes`; a bad node is
/// reported in [`DesiredRoutes::problems`] and the rest are planned.
pub fn plan_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    blocks: &[BlockAffinity],
    this_node: &str,
    cfg: &RouteConfig,
) -> Result<DesiredRoutes, Error> {
    let nodes: BTreeMap<&str, &Node> = nodes.into_iter().map(|n| (n.name.as_str(), n)).collect();
    let me = *nodes
        .get(this_node)
        .ok_or_else(|| Error::UnknownThisNode(this_node.to_string()))?;
    let mut out = DesiredRoutes::default();
    let problem = |node: &str, problem| NodeProblem {
        node: node.to_string(),
        problem,
    };

    // Pod CIDRs per node, as written.
    let mut cidrs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    match cfg.pod_cidr_source {
        PodCidrSource::NodeSpec => {
            for n in nodes.values() {
                cidrs.insert(&n.name, n.pod_cidrs.iter().map(String::as_str).collect());
            }
        }
        PodCidrSource::CalicoIpam => {
            for b in blocks
                .iter()
                .filter(|b| b.state == "confirmed" && !b.deleted)
            {
                if nodes.contains_key(b.node.as_str()) {
                    cidrs.entry(&b.node).or_default().push(&b.cidr);
                } else {
                    match Cidr::parse(b.cidr.trim()) {
                        Ok(c) => out.problems.push(problem(&b.node, Problem::UnknownNode(c))),
                        Err(_) => out
                            .problems
                            .push(problem(&b.node, Problem::BadCidr(b.cidr.clone()))),
                    }
                }
            }
        }
    }

    // This node's subnets, for cross-subnet.
    let mut local_subnets = cfg.local_subnets.clone();
    if let Some(v) = me.annotations.get(IPV4_ADDRESS_ANNOTATION) {
        match Cidr::parse(v.trim()) {
            Ok(c) => local_subnets.push(c),
            Err(_) => out.problems.push(problem(
                this_node,
                Problem::BadAnnotation(IPV4_ADDRESS_ANNOTATION.into(), v.clone()),
            )),
        }
    }
    if cfg.mode == Mode::CrossSubnet && !local_subnets.iter().any(Cidr::is_ipv4) {
        out.problems
            .push(problem(this_node, Problem::NoLocalSubnet));
    }

    let mut owner: BTreeMap<Cidr, &str> = BTreeMap::new();
    // This node first, so that its blackholes win over a peer's claim.
    let order = std::iter::once(this_node).chain(nodes.keys().copied().filter(|n| *n != this_node));
    for name in order {
        let node = nodes[name];
        for raw in cidrs.get(name).map(Vec::as_slice).unwrap_or_default() {
            let cidr = match Cidr::parse(raw.trim()) {
                Ok(c) => c,
                Err(_) => {
                    out.problems
                        .push(problem(name, Problem::BadCidr(raw.to_string())));
                    continue;
                }
            };
            if let Some(first) = owner.get(&cidr) {
                out.problems.push(problem(
                    name,
                    Problem::DuplicateCidr(cidr, first.to_string()),
                ));
                continue;
            }
            let kind = if name == this_node {
                if !cfg.blackhole_own_cidrs {
                    continue;
                }
                RouteKind::Blackhole
            } else {
                let gateway = match next_hop(node, cidr, cfg.next_hop) {
                    Ok(Some(ip)) => ip,
                    Ok(None) => {
                        out.problems.push(problem(name, Problem::NoAddress(cidr)));
                        continue;
                    }
                    Err(p) => {
                        out.problems.push(problem(name, p));
                        continue;
                    }
                };
                let tunnel = cidr.is_ipv4()
                    && match cfg.mode {
                        Mode::Ipip => true,
                        Mode::Direct => false,
                        Mode::CrossSubnet => !local_subnets.iter().any(|s| s.contains(&gateway)),
                    };
                if tunnel {
                    RouteKind::Via {
                        gateway,
                        dev: Some(TUNNEL_DEVICE.to_string()),
                        onlink: true,
                    }
                } else {
                    RouteKind::Via {
                        gateway,
                        dev: None,
                        onlink: false,
                    }
                }
            };
            owner.insert(cidr, name);
            out.routes.push(Route {
                dst: cidr,
                kind,
                protocol: cfg.protocol,
            });
        }
    }
    out.routes.sort();
    let uses_tunnel = out
        .routes
        .iter()
        .any(|r| matches!(&r.kind, RouteKind::Via { dev: Some(d), .. } if d == TUNNEL_DEVICE));
    if uses_tunnel {
        let address = me
            .annotations
            .get(IPIP_TUNNEL_ADDR_ANNOTATION)
            .and_then(|v| v.trim().parse::<Ipv4Addr>().ok());
        out.tunnel = Some(TunnelPlan {
            device: TUNNEL_DEVICE.to_string(),
            address,
        });
    }
    Ok(out)
}

/// The node's address of `cidr`'s family, per `source`.
fn next_hop(node: &Node, cidr: Cidr, source: NextHopSource) -> Result<Option<IpAddr>, Problem> {
    match source {
        NextHopSource::InternalIp => Ok(node
            .addresses
            .iter()
            .filter(|(kind, _)| kind == "InternalIP")
            .map(|(_, ip)| *ip)
            .find(|ip| ip.is_ipv4() == cidr.is_ipv4())),
        NextHopSource::CalicoAnnotation => {
            let key = if cidr.is_ipv4() {
                IPV4_ADDRESS_ANNOTATION
            } else {
                IPV6_ADDRESS_ANNOTATION
            };
            match node.annotations.get(key) {
                None => Ok(None),
                Some(v) => match Cidr::parse_host(v.trim()) {
                    Ok((ip, _)) if ip.is_ipv4() == cidr.is_ipv4() => Ok(Some(ip)),
                    _ => Err(Problem::BadAnnotation(key.to_string(), v.clone())),
                },
            }
        }
    }
}
