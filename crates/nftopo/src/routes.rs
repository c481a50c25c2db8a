//! Routes to the other nodes' pod CIDRs: the flags shared by `render`,
//! `apply` and `run`, and the route pass each of them makes. The deciding
//! and the rtnetlink work are `route-sync`'s; this module turns flags into
//! its configuration and reports what it did.

use anyhow::{bail, Result};
use api_watch::ClusterState;
use clap::{Args, ValueEnum};
use route_sync::{
    converge, Converged, Mode, NextHopSource, PodCidrSource, RouteConfig, RouteKernel, TunnelMtu,
};
use serde::Deserialize;

/// Where iproute2 keeps route protocol names: the administrator's file
/// first, then the distribution's defaults (iproute2 6.5 and later).
const RT_PROTOS: [&str; 2] = ["/etc/iproute2/rt_protos", "/usr/share/iproute2/rt_protos"];

/// `--route-mode`: whether and how routes to other nodes are programmed
/// (Calico's `ipipMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteMode {
    /// No routes (the CNI programs them).
    None,
    /// Every remote IPv4 pod CIDR `via NODE dev tunl0 onlink` (Always).
    Ipip,
    /// `via NODE` on the interface that reaches it (Never).
    Direct,
    /// Direct inside this node's subnets, IPIP beyond (CrossSubnet).
    CrossSubnet,
}

/// `--pod-cidr-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CidrSource {
    /// The Nodes' `spec.podCIDRs`.
    NodeSpec,
    /// Calico IPAM's confirmed `BlockAffinity` objects.
    CalicoIpam,
}

/// `--route-next-hop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NextHop {
    /// The node's InternalIP of the CIDR's family.
    InternalIp,
    /// The node's `projectcalico.org/IPv4Address` (IPv6Address) annotation.
    CalicoAnnotation,
}

/// The route flags, the same for `render`, `apply` and `run`.
#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// Program routes to the other nodes' pod CIDRs: `none` (the default:
    /// the CNI does it), `ipip` (via NODE dev tunl0 onlink), `direct`
    /// (via NODE), or `cross-subnet` (direct inside this node's subnets,
    /// IPIP beyond) — Calico's ipipMode Always, Never and CrossSubnet.
    #[arg(long, value_enum, default_value_t = RouteMode::None)]
    pub route_mode: RouteMode,
    /// Where each node's pod CIDRs come from: the Nodes' spec.podCIDRs, or
    /// Calico IPAM's confirmed BlockAffinity objects.
    #[arg(long, value_enum, default_value_t = CidrSource::NodeSpec)]
    pub pod_cidr_source: CidrSource,
    /// The next hop towards a node: its InternalIP, or its
    /// projectcalico.org/IPv4Address (IPv6Address) annotation.
    #[arg(long, value_enum, default_value_t = NextHop::InternalIp)]
    pub route_next_hop: NextHop,
    /// The route protocol that marks nftopo's routes: a number, or a name
    /// from /etc/iproute2/rt_protos. Only routes with it are ever changed
    /// or deleted.
    #[arg(long, default_value = "bird")]
    pub route_protocol: String,
    /// MTU of the tunl0 device (default: the MTU of the interface holding
    /// this node's InternalIP, minus the 20-byte IPIP header).
    #[arg(long, value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub tunnel_mtu: Option<u32>,
    /// Add a blackhole route for each of this node's own pod CIDRs, so
    /// that unassigned pod addresses do not leak to the default route.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "true",
          default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    pub blackhole_own_cidrs: bool,
}

/// Resolves `--route-protocol` through iproute2's `rt_protos`.
pub fn protocol_number(protocol: &str) -> Result<u8> {
    let names: String = RT_PROTOS
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n");
    match route_sync::parse_protocol(protocol, &names) {
        Some(n) => Ok(n),
        None => bail!(
            "--route-protocol {protocol:?} is neither a number in 1..=255 (but not 2, the \
             kernel's) nor a name in {}",
            RT_PROTOS.join(" or ")
        ),
    }
}

/// The route settings in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// For the planner.
    pub config: RouteConfig,
    /// The tunnel's MTU.
    pub mtu: TunnelMtu,
}

impl Routes {
    /// The settings for the given choices; `None` for mode `none`. The
    /// protocol is resolved through iproute2's `rt_protos`.
    pub fn new(
        mode: RouteMode,
        source: CidrSource,
        next_hop: NextHop,
        protocol: &str,
        tunnel_mtu: Option<u32>,
        blackhole_own_cidrs: bool,
    ) -> Result<Option<Routes>> {
        let mode = match mode {
            RouteMode::None => return Ok(None),
            RouteMode::Ipip => Mode::Ipip,
            RouteMode::Direct => Mode::Direct,
            RouteMode::CrossSubnet => Mode::CrossSubnet,
        };
        let protocol_number = protocol_number(protocol)?;
        Ok(Some(Routes {
            config: RouteConfig {
                mode,
                pod_cidr_source: match source {
                    CidrSource::NodeSpec => PodCidrSource::NodeSpec,
                    CidrSource::CalicoIpam => PodCidrSource::CalicoIpam,
                },
                next_hop: match next_hop {
                    NextHop::InternalIp => NextHopSource::InternalIp,
                    NextHop::CalicoAnnotation => NextHopSource::CalicoAnnotation,
                },
                protocol: protocol_number,
                blackhole_own_cidrs,
                local_subnets: Vec::new(),
            },
            mtu: tunnel_mtu.map_or(TunnelMtu::Auto, TunnelMtu::Fixed),
        }))
    }

    /// From the flags alone (`render` and `apply`).
    pub fn from_args(a: &RouteArgs) -> Result<Option<Routes>> {
        Routes::new(
            a.route_mode,
            a.pod_cidr_source,
            a.route_next_hop,
            &a.route_protocol,
            a.tunnel_mtu,
            a.blackhole_own_cidrs,
        )
    }

    /// Whether Calico's BlockAffinities must be read.
    pub fn needs_block_affinities(&self) -> bool {
        self.config.pod_cidr_source == PodCidrSource::CalicoIpam
    }

    /// The routes `node` should hold, as comment lines for the end of
    /// `render`'s nft script (`# ip route replace …`), then one line per
    /// problem. Pure: cross-subnet mode knows only the subnet of this
    /// node's Calico address annotation here, not its interfaces.
    pub fn render(&self, state: &ClusterState, node: &str) -> Result<String> {
        let blocks: Vec<_> = state.block_affinities.values().cloned().collect();
        let desired = route_sync::plan_routes(state.nodes.values(), &blocks, node, &self.config)?;
        let mut out = format!(
            "\n# Routes for node {node} ({:?} mode, protocol {}), for `ip route`:\n",
            self.config.mode, self.config.protocol
        );
        if let Some(t) = &desired.tunnel {
            let mtu = match self.mtu {
                TunnelMtu::Fixed(m) => format!(" mtu {m}"),
                TunnelMtu::Auto => String::new(),
            };
            out.push_str(&format!("# ip link set {} up{mtu}\n", t.device));
        }
        for r in &desired.routes {
            out.push_str(&format!("# ip route replace {r}\n"));
        }
        for p in &desired.problems {
            out.push_str(&format!("# not routed: {p}\n"));
        }
        Ok(out)
    }

    /// One route pass against `kernel` for `node` in `state`; logs what it
    /// did. An error only when nothing could be done (unknown node,
    /// unreadable routes); refusals are in the answer.
    pub fn converge(
        &self,
        kernel: &mut impl RouteKernel,
        state: &ClusterState,
        node: &str,
    ) -> Result<Converged> {
        let nodes: Vec<_> = state.nodes.values().collect();
        let blocks: Vec<_> = state.block_affinities.values().cloned().collect();
        let done = converge(kernel, &nodes, &blocks, node, &self.config, self.mtu)?;
        for p in &done.desired.problems {
            tracing::warn!("not routed: {p}");
        }
        if let Some(e) = &done.tunnel_error {
            tracing::error!(error = %e, "the tunnel device is not usable; its routes are refused, direct routes still apply");
        }
        for op in &done.report.applied {
            tracing::info!("{op}");
        }
        for (op, e) in &done.report.failed {
            tracing::warn!(error = %e, "refused: {op}");
        }
        Ok(done)
    }
}

/// One line about what a pass could not do, or `None` when all went in.
pub fn failures(done: &Converged) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(e) = &done.tunnel_error {
        parts.push(e.to_string());
    }
    if !done.report.failed.is_empty() {
        let ops: Vec<String> = done
            .report
            .failed
            .iter()
            .map(|(op, e)| format!("{op}: {e}"))
            .collect();
        parts.push(format!(
            "{} route(s) refused: {}",
            ops.len(),
            ops.join("; ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
