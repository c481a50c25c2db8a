//! Cluster states and planner settings from fuzz input. Values come from
//! small pools (so that services, slices and nodes meet: shared names,
//! addresses and ports) or are arbitrary. The states keep the model's
//! documented invariants (what `api-watch` checks before the planner sees
//! an object: ports 1..=65535, at most one cluster IP per family in
//! `ipFamilies` order, normalised source ranges, affinity timeouts in
//! range); names are anything, since the planner must cope with any
//! string there.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use api_watch::*;
use arbitrary::{Result, Unstructured};
use nft_writer::{Cidr, NodePortAddresses, PlannerConfig};

/// One of the pool or, sometimes, an arbitrary string.
fn text(u: &mut Unstructured, pool: &[&str]) -> Result<String> {
    Ok(match u.int_in_range(0..=9)? {
        0 => u.arbitrary::<String>()?,
        1 => "x".repeat(u.int_in_range(60..=300)?),
        _ => (*u.choose(pool)?).to_string(),
    })
}

const NAMES: &[&str] = &["web", "dns", "api", "a", "b-c", "a-b"];
const NAMESPACES: &[&str] = &["default", "kube-system", "a", "a-b"];
const NODES: &[&str] = &["node-1", "node-2", "node-3"];
const ZONES: &[&str] = &["zone-a", "zone-b"];
const PORT_NAMES: &[&str] = &["", "", "http", "dns", "metrics"];

fn v4(u: &mut Unstructured) -> Result<Ipv4Addr> {
    Ok(match u.int_in_range(0..=4)? {
        0 => Ipv4Addr::from(u.arbitrary::<u32>()?),
        1 | 2 => Ipv4Addr::new(10, 43, 0, u.int_in_range(1..=4)?),
        _ => Ipv4Addr::new(10, 42, u.int_in_range(1..=2)?, u.int_in_range(1..=6)?),
    })
}

fn v6(u: &mut Unstructured) -> Result<Ipv6Addr> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Ipv6Addr::from(u.arbitrary::<u128>()?),
        1 => Ipv6Addr::new(0xfd00, 0x43, 0, 0, 0, 0, 0, u.int_in_range(1..=4)?),
        _ => Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, u.int_in_range(1..=6)?),
    })
}

fn ip(u: &mut Unstructured) -> Result<IpAddr> {
    Ok(if u.ratio(1, 4)? {
        IpAddr::V6(v6(u)?)
    } else {
        IpAddr::V4(v4(u)?)
    })
}

fn port(u: &mut Unstructured) -> Result<u16> {
    Ok(if u.ratio(1, 4)? {
        u.int_in_range(1..=65535)?
    } else {
        *u.choose(&[80, 53, 443, 5000, 30080])?
    })
}

fn protocol(u: &mut Unstructured) -> Result<Protocol> {
    Ok(*u.choose(&[Protocol::Tcp, Protocol::Tcp, Protocol::Udp, Protocol::Sctp])?)
}

fn small_vec<T>(
    u: &mut Unstructured,
    max: usize,
    mut f: impl FnMut(&mut Unstructured) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| f(u)).collect()
}

fn prefix(u: &mut Unstructured) -> Result<Cidr> {
    let addr = ip(u)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = u.int_in_range(0..=max)?;
    Ok(Cidr::parse(&format!("{addr}/{len}")).expect("a valid prefix"))
}

fn service(u: &mut Unstructured) -> Result<Service> {
    let mut s = Service {
        key: ObjectKey::new(text(u, NAMESPACES)?, text(u, NAMES)?),
        ..Service::default()
    };
    s.service_type = *u.choose(&[
        ServiceType::ClusterIp,
        ServiceType::ClusterIp,
        ServiceType::NodePort,
        ServiceType::LoadBalancer,
        ServiceType::ExternalName,
    ])?;
    let a = if u.ratio(9, 10)? {
        Some(IpAddr::V4(v4(u)?))
    } else {
        None
    };
    let b = if u.ratio(1, 4)? {
        Some(IpAddr::V6(v6(u)?))
    } else {
        None
    };
    let mut ips: Vec<IpAddr> = a.into_iter().chain(b).collect();
    if u.arbitrary()? {
        ips.reverse();
    }
    if u.arbitrary()? {
        s.ip_families = ips.iter().map(|ip| IpFamily::of(*ip)).collect();
    }
    s.cluster_ips = ips;
    s.ports = small_vec(u, 3, |u| {
        let port = port(u)?;
        Ok(ServicePort {
            name: text(u, PORT_NAMES)?,
            protocol: protocol(u)?,
            port,
            target_port: if u.ratio(1, 4)? {
                TargetPort::Name(text(u, PORT_NAMES)?)
            } else {
                TargetPort::Number(self::port(u)?)
            },
            node_port: if u.ratio(1, 3)? {
                Some(self::port(u)?)
            } else {
                None
            },
        })
    })?;
    if u.ratio(1, 3)? {
        s.topology_keys = Some(small_vec(u, 3, |u| {
            text(
                u,
                &[
                    "kubernetes.io/hostname",
                    "topology.kubernetes.io/zone",
                    "*",
                    "rack",
                ],
            )
        })?);
    }
    s.internal_traffic_policy = *u.choose(&[TrafficPolicy::Cluster, TrafficPolicy::Local])?;
    s.external_traffic_policy = *u.choose(&[TrafficPolicy::Cluster, TrafficPolicy::Local])?;
    if u.ratio(1, 4)? {
        s.traffic_distribution = Some(text(
            u,
            &["PreferClose", "PreferSameZone", "PreferSameNode"],
        )?);
    }
    s.external_ips = small_vec(u, 2, ip)?;
    s.load_balancer_ips = small_vec(u, 2, ip)?;
    s.load_balancer_source_ranges = small_vec(u, 2, |u| Ok(prefix(u)?.to_string()))?;
    if u.ratio(1, 4)? {
        s.session_affinity_timeout = Some(u.int_in_range(1..=MAX_SESSION_AFFINITY_TIMEOUT)?);
    }
    if u.ratio(1, 6)? {
        s.health_check_node_port = Some(port(u)?);
    }
    for _ in 0..u.int_in_range(0..=2)? {
        let key = text(
            u,
            &[
                TOPOLOGY_KEYS_ANNOTATION,
                "service.kubernetes.io/topology-mode",
                "service.kubernetes.io/topology-aware-hints",
            ],
        )?;
        let value = text(
            u,
            &["Auto", "auto", "kubernetes.io/hostname, *", "", "Disabled"],
        )?;
        s.annotations.insert(key, value);
    }
    Ok(s)
}

fn slice(u: &mut Unstructured, services: &[Service]) -> Result<EndpointSlice> {
    let owner = if !services.is_empty() && u.ratio(4, 5)? {
        Some(u.choose(services)?.key.clone())
    } else {
        None
    };
    let (namespace, service_name) = match owner {
        Some(k) => (k.namespace, k.name),
        None => (text(u, NAMESPACES)?, text(u, NAMES)?),
    };
    let address_type = *u.choose(&[
        AddressType::IPv4,
        AddressType::IPv4,
        AddressType::IPv6,
        AddressType::Fqdn,
    ])?;
    let ports = small_vec(u, 3, |u| {
        Ok(EndpointPort {
            name: text(u, PORT_NAMES)?,
            protocol: protocol(u)?,
            port: port(u)?,
        })
    })?;
    let endpoints = small_vec(u, 6, |u| {
        let addresses = match address_type {
            AddressType::IPv4 => small_vec(u, 2, |u| Ok(IpAddr::V4(v4(u)?)))?,
            AddressType::IPv6 => small_vec(u, 2, |u| Ok(IpAddr::V6(v6(u)?)))?,
            AddressType::Fqdn => Vec::new(),
        };
        let mut topology = BTreeMap::new();
        if u.ratio(1, 5)? {
            topology.insert(
                text(u, &["kubernetes.io/hostname", "rack"])?,
                text(u, NODES)?,
            );
        }
        // The model keeps an endpoint's first address (the converter
        // checks the others); the input still draws up to two.
        let conditions = Conditions {
            ready: u.ratio(3, 4)?,
            serving: u.ratio(3, 4)?,
            terminating: u.ratio(1, 5)?,
        };
        let mut endpoint = match addresses.first() {
            Some(&ip) => Endpoint::new(ip, conditions),
            None => {
                let mut e = Endpoint::default();
                e.conditions = conditions;
                e
            }
        };
        if u.ratio(4, 5)? {
            endpoint = endpoint.on_node(text(u, NODES)?);
        }
        if u.arbitrary()? {
            endpoint = endpoint.in_zone(text(u, ZONES)?);
        }
        Ok(endpoint
            .for_zones(small_vec(u, 2, |u| text(u, ZONES))?)
            .for_nodes(small_vec(u, 2, |u| text(u, NODES))?)
            .with_topology(topology))
    })?;
    Ok(EndpointSlice {
        key: ObjectKey::new(
            namespace,
            format!("{}-{}", service_name, u.int_in_range(0..=3u8)?),
        ),
        service_name,
        address_type,
        ports,
        endpoints,
    })
}

fn node(u: &mut Unstructured) -> Result<Node> {
    let name = text(u, NODES)?;
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".to_string(), name.clone());
    if u.arbitrary()? {
        labels.insert("topology.kubernetes.io/zone".to_string(), text(u, ZONES)?);
    }
    if u.ratio(1, 4)? {
        labels.insert(text(u, &["rack"])?, text(u, &["r1", "r2"])?);
    }
    Ok(Node {
        name,
        labels,
        addresses: small_vec(u, 2, |u| {
            Ok((text(u, &["InternalIP", "ExternalIP"])?, ip(u)?))
        })?,
        deleting: u.ratio(1, 10)?,
        // As written: NodeCIDR reads the ones that parse.
        pod_cidrs: small_vec(u, 2, |u| {
            Ok(if u.arbitrary()? {
                prefix(u)?.to_string()
            } else {
                text(u, &["10.42.7.0/24", "fd00:42:7::/64", "10.42.7.0", "bad"])?
            })
        })?,
        ..Node::default()
    })
}

/// Planner settings: local detection, masquerade, node-port addresses.
pub fn config(u: &mut Unstructured) -> Result<PlannerConfig> {
    use nft_writer::{DetectLocal, IfacePattern};
    let detect_local = match u.int_in_range(0..=3)? {
        0 => DetectLocal::ClusterCidr(small_vec(u, 2, |u| {
            Ok(if u.arbitrary()? {
                *u.choose(&[
                    Cidr::parse("10.42.0.0/16").expect("valid"),
                    Cidr::parse("fd00:42::/48").expect("valid"),
                ])?
            } else {
                prefix(u)?
            })
        })?),
        1 => DetectLocal::NodeCidr,
        2 => DetectLocal::BridgeInterface(IfacePattern::exact("cbr0").expect("valid")),
        _ => DetectLocal::InterfaceNamePrefix(IfacePattern::prefix("cali").expect("valid")),
    };
    let mut cfg = PlannerConfig {
        detect_local,
        masquerade_all: u.arbitrary()?,
        masquerade_bit: u.int_in_range(0..=31)?,
        ..PlannerConfig::default()
    };
    cfg.nodeport_addresses = match u.int_in_range(0..=2)? {
        0 => NodePortAddresses::Primary,
        1 => NodePortAddresses::All,
        _ => NodePortAddresses::Cidrs(small_vec(u, 2, prefix)?),
    };
    Ok(cfg)
}

/// A universe of objects and up to four cluster states, each a subset of
/// it (so that consecutive states share most objects, as syncs do).
pub struct Scenario {
    /// The node planned for.
    pub node: String,
    /// Planner settings.
    pub config: PlannerConfig,
    /// The states, in sync order.
    pub states: Vec<ClusterState>,
}

impl<'a> arbitrary::Arbitrary<'a> for Scenario {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let node = text(u, NODES)?;
        let config = config(u)?;
        let services = small_vec(u, 6, service)?;
        let mut slices = Vec::new();
        for _ in 0..u.int_in_range(0..=6)? {
            slices.push(slice(u, &services)?);
        }
        let nodes = small_vec(u, 3, self::node)?;
        let mut states = Vec::new();
        for _ in 0..u.int_in_range(1..=4)? {
            let mask: u32 = u.arbitrary()?;
            let keep = |i: usize| mask & (1 << (i % 32)) != 0 || mask == 0;
            let mut state = ClusterState::default();
            for (_, s) in services.iter().enumerate().filter(|(i, _)| keep(*i)) {
                state.services.insert(s.key.clone(), s.clone());
            }
            for (_, s) in slices.iter().enumerate().filter(|(i, _)| keep(i + 8)) {
                state.endpoint_slices.insert(s.key.clone(), s.clone());
            }
            for n in &nodes {
                state.nodes.insert(n.name.clone(), n.clone());
            }
            states.push(state);
        }
        Ok(Scenario {
            node,
            config,
            states,
        })
    }
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("node", &self.node)
            .field("config", &self.config)
            .field("states", &self.states)
            .finish()
    }
}
