//! One pass of route-sync against a kernel: read this node's interfaces,
//! plan, make the tunnel usable when the plan needs it, reconcile. The
//! CLI's `apply` and the daemon both run exactly this.

use std::net::IpAddr;

use api_watch::Node;

use crate::{
    plan_routes, sync, BlockAffinity, Cidr, DesiredRoutes, Error, Interface, Mode, RouteConfig,
    RouteKernel, SyncReport, TUNNEL_DEVICE,
};

/// The IPIP header: the tunnel's MTU is the underlay's minus this.
pub const IPIP_OVERHEAD: u32 = 20;

/// How the tunnel device's MTU is chosen (`--tunnel-mtu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunnelMtu {
    /// The MTU of the interface holding this node's InternalIP, minus
    /// [`IPIP_OVERHEAD`]; left alone when that interface is not found.
    #[default]
    Auto,
    /// This value.
    Fixed(u32),
}

/// What one [`converge`] did.
#[derive(Debug)]
pub struct Converged {
    /// The plan (its problems are per node; log them).
    pub desired: DesiredRoutes,
    /// The operations applied and refused.
    pub report: SyncReport,
    /// The tunnel device could not be made usable: the routes over it
    /// were refused, the direct ones were still applied.
    pub tunnel_error: Option<Error>,
    /// The MTU set on the tunnel device, when one was.
    pub tunnel_mtu: Option<u32>,
}

/// Plans this node's routes and brings the kernel's routes of
/// `cfg.protocol` to them. In cross-subnet mode the subnets of this
/// node's interfaces count as local, besides `cfg.local_subnets`. Fails
/// when this node is unknown or the kernel cannot be read; a refused
/// route or tunnel is reported in [`Converged`] and the rest still
/// applied.
pub fn converge(
    kernel: &mut impl RouteKernel,
    nodes: &[&Node],
    blocks: &[BlockAffinity],
    this_node: &str,
    cfg: &RouteConfig,
    mtu: TunnelMtu,
) -> Result<Converged, Error> {
    let interfaces = kernel.interfaces()?;
    let mut cfg = cfg.clone();
    if cfg.mode == Mode::CrossSubnet {
        cfg.local_subnets.extend(local_subnets(&interfaces));
    }
    let desired = plan_routes(nodes.iter().copied(), blocks, this_node, &cfg)?;
    let (mut tunnel_error, mut tunnel_mtu) = (None, None);
    if let Some(tunnel) = &desired.tunnel {
        let me = nodes.iter().find(|n| n.name == this_node);
        tunnel_mtu = match mtu {
            TunnelMtu::Fixed(m) => Some(m),
            TunnelMtu::Auto => me.and_then(|n| underlay_mtu(n, &interfaces)),
        };
        if let Err(e) = kernel.ensure_tunnel(tunnel, tunnel_mtu) {
            tunnel_error = Some(e);
            tunnel_mtu = None;
        }
    }
    let report = sync(kernel, &desired, cfg.protocol)?;
    Ok(Converged {
        desired,
        report,
        tunnel_error,
        tunnel_mtu,
    })
}

/// The prefixes of the interfaces' IPv4 and IPv6 addresses (host routes
/// and the tunnel device left out): peers inside them are reached
/// directly in cross-subnet mode.
fn local_subnets(interfaces: &[Interface]) -> Vec<Cidr> {
    let mut out: Vec<Cidr> = interfaces
        .iter()
        .filter(|i| i.name != TUNNEL_DEVICE)
        .flat_map(|i| &i.addresses)
        .filter(|(ip, len)| *len < if ip.is_ipv4() { 32 } else { 128 })
        .filter_map(|(ip, len)| Cidr::new(*ip, *len))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The MTU of the interface holding one of `node`'s InternalIPs, minus
/// the IPIP header.
fn underlay_mtu(node: &Node, interfaces: &[Interface]) -> Option<u32> {
    let ips: Vec<IpAddr> = node
        .addresses
        .iter()
        .filter(|(kind, _)| kind == "InternalIP")
        .map(|(_, ip)| *ip)
        .collect();
    interfaces
        .iter()
        .filter(|i| i.name != TUNNEL_DEVICE)
        .find(|i| i.addresses.iter().any(|(ip, _)| ips.contains(ip)))
        .and_then(|i| i.mtu)
        .map(|m| m.saturating_sub(IPIP_OVERHEAD))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FakeRoutes, Route, RouteKind};

    fn node(name: &str, ip: &str, cidr: &str) -> Node {
        Node {
            name: name.into(),
            addresses: vec![("InternalIP".into(), ip.parse().unwrap())],
            pod_cidrs: vec![cidr.into()],
            ..Node::default()
        }
    }

    fn eth0(ip: &str, len: u8, mtu: u32) -> Interface {
        Interface {
            name: "eth0".into(),
            mtu: Some(mtu),
            addresses: vec![(ip.parse().unwrap(), len)],
        }
    }

    fn routes(k: &FakeRoutes) -> Vec<String> {
        let mut v: Vec<String> = k.routes.iter().map(Route::to_string).collect();
        v.sort();
        v
    }

    #[test]
    fn cross_subnet_reads_the_local_subnet_from_the_interfaces() {
        let nodes = [
            node("node-2", "172.31.10.5", "10.42.187.64/26"),
            node("node-3", "172.31.11.157", "10.42.54.128/26"),
            node("node-4", "172.31.40.9", "10.42.201.0/26"),
        ];
        let refs: Vec<&Node> = nodes.iter().collect();
        let mut k = FakeRoutes {
            interfaces: vec![eth0("172.31.10.5", 20, 9001)],
            tunnel_supported: true,
            ..FakeRoutes::default()
        };
        let cfg = RouteConfig {
            mode: Mode::CrossSubnet,
            ..RouteConfig::default()
        };
        let done = converge(&mut k, &refs, &[], "node-2", &cfg, TunnelMtu::Auto).unwrap();
        assert!(done.report.failed.is_empty());
        assert_eq!(
            routes(&k),
            [
                "10.42.201.0/26 via 172.31.40.9 dev tunl0 proto 12 onlink",
                "10.42.54.128/26 via 172.31.11.157 proto 12",
                "blackhole 10.42.187.64/26 proto 12",
            ]
        );
        assert_eq!(done.tunnel_mtu, Some(8981), "eth0's 9001 minus 20");
        assert_eq!(k.tunnel_mtu, Some(Some(8981)));

        // Without any interface in node-3's subnet, node-3 goes over IPIP
        // too, and a fixed MTU wins.
        k.interfaces = vec![eth0("192.168.1.2", 24, 1500)];
        let done = converge(&mut k, &refs, &[], "node-2", &cfg, TunnelMtu::Fixed(1400)).unwrap();
        assert_eq!(done.report.applied.len(), 1, "{:?}", done.report.applied);
        assert!(matches!(
            &done.report.applied[0],
            crate::RouteOp::Replace(Route { kind: RouteKind::Via { dev: Some(d), .. }, .. }) if d == "tunl0"
        ));
        assert_eq!(k.tunnel_mtu, Some(Some(1400)));
    }

    #[test]
    fn without_ipip_the_error_is_reported_and_direct_routes_still_apply() {
        let nodes = [
            node("node-2", "172.31.10.5", "10.42.187.64/26"),
            node("node-3", "172.31.11.157", "10.42.54.128/26"),
        ];
        let refs: Vec<&Node> = nodes.iter().collect();
        let mut k = FakeRoutes::default();
        let done = converge(
            &mut k,
            &refs,
            &[],
            "node-2",
            &RouteConfig::default(),
            TunnelMtu::Auto,
        )
        .unwrap();
        assert!(matches!(done.tunnel_error, Some(Error::NoIpipSupport(_))));
        assert_eq!(done.tunnel_mtu, None);
        // The fake has no device check: the tunnel route is written; the
        // blackhole (no tunnel needed) is there either way.
        assert!(routes(&k).contains(&"blackhole 10.42.187.64/26 proto 12".to_string()));
    }
}
