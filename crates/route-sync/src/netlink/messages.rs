//! Routes and interfaces to and from netlink-packet-route's messages:
//! pure functions, no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::AddressFamily;

use crate::{Cidr, Error, Interface, Route, RouteKind};

/// Encodes a route of the main table. `oif` is the index of the route's
/// device, looked up by the caller. For a delete, only what identifies the
/// route (prefix, table, protocol, type, gateway), so that a vanished
/// device does not keep it alive.
pub(super) fn encode_route(
    r: &Route,
    delete: bool,
    oif: Option<u32>,
) -> Result<RouteMessage, Error> {
    let mut m = RouteMessage::default();
    m.header.address_family = if r.dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = r.dst.prefix_len();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::from(r.protocol);
    m.header.scope = if delete {
        RouteScope::NoWhere
    } else {
        RouteScope::Universe
    };
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(
            r.dst.addr(),
        )));
    match &r.kind {
        RouteKind::Blackhole => m.header.kind = RouteType::BlackHole,
        RouteKind::Via {
            gateway, onlink, ..
        } => {
            m.header.kind = RouteType::Unicast;
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(*gateway)));
            if !delete {
                if let Some(index) = oif {
                    m.attributes.push(RouteAttribute::Oif(index));
                }
                if *onlink {
                    m.header.flags |= RouteFlags::Onlink;
                }
            }
        }
        RouteKind::Other(_) => {
            if !delete {
                return Err(Error::Protocol(format!("cannot write route {r}")));
            }
            m.header.kind = RouteType::Unspec;
        }
    }
    Ok(m)
}

/// Decodes a route of the main table; `None` for other tables and families.
pub(super) fn from_kernel(m: &RouteMessage, links: &BTreeMap<u32, String>) -> Option<Route> {
    let h = &m.header;
    let table = m
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(h.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    let any = match h.address_family {
        AddressFamily::Inet => IpAddr::from([0u8; 4]),
        AddressFamily::Inet6 => IpAddr::from([0u16; 8]),
        _ => return None,
    };
    let mut dst = any;
    let mut gateway = None;
    let mut oif = None;
    let mut multipath = false;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = ip(d)?,
            RouteAttribute::Gateway(g) => gateway = ip(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(_) => multipath = true,
            _ => {}
        }
    }
    let dev = oif.map(|i| links.get(&i).cloned().unwrap_or_else(|| format!("if{i}")));
    let kind = match (h.kind, gateway) {
        (RouteType::BlackHole, _) => RouteKind::Blackhole,
        (RouteType::Unicast, Some(gateway)) if !multipath => RouteKind::Via {
            gateway,
            dev,
            onlink: h.flags.contains(RouteFlags::Onlink),
        },
        (kind, _) => RouteKind::Other(format!(
            "{kind:?}{}{}",
            if multipath { " multipath" } else { "" },
            dev.map(|d| format!(" dev {d}")).unwrap_or_default()
        )),
    };
    Some(Route {
        // The kernel keeps destinations as networks (host bits zero).
        dst: Cidr::new(dst, h.destination_prefix_length)?,
        kind,
        protocol: u8::from(h.protocol),
    })
}

/// The name of a link message (`None` without `IFLA_IFNAME`).
pub(super) fn link_name(l: &LinkMessage) -> Option<&str> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// Interfaces from a link dump and an address dump: each link with its
/// MTU and its universe-scope addresses (not 127.0.0.1, not fe80::).
pub(super) fn interfaces(links: &[LinkMessage], addrs: &[AddressMessage]) -> Vec<Interface> {
    let mut out: BTreeMap<u32, Interface> = links
        .iter()
        .filter_map(|l| {
            let mtu = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            });
            let iface = Interface {
                name: link_name(l)?.to_string(),
                mtu,
                addresses: Vec::new(),
            };
            Some((l.header.index, iface))
        })
        .collect();
    for a in addrs {
        if a.header.scope != AddressScope::Universe {
            continue;
        }
        let ip = a.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        if let (Some(ip), Some(iface)) = (ip, out.get_mut(&a.header.index)) {
            iface.addresses.push((ip, a.header.prefix_len));
        }
    }
    out.into_values().collect()
}
