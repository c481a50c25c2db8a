//! The kernel side: the [`RouteKernel`] trait, its rtnetlink implementation
//! [`NetlinkRoutes`] (a blocking NETLINK_ROUTE socket, one request at a
//! time), and [`sync`], which plans nothing but converges.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};

use crate::{reconcile, Cidr, DesiredRoutes, Error, Route, RouteKind, RouteOp, TunnelPlan};

const ENODEV: i32 = 19;
const EOPNOTSUPP: i32 = 95;

/// What route-sync needs from the kernel. [`NetlinkRoutes`] is the real one;
/// tests may substitute a fake.
pub trait RouteKernel {
    /// `ip route show table main proto PROTOCOL` (IPv4 and IPv6), device
    /// names resolved.
    fn dump(&mut self, protocol: u8) -> Result<Vec<Route>, Error>;
    /// Applies one operation (`ip route add|replace|del …`).
    fn apply(&mut self, op: &RouteOp) -> Result<(), Error>;
    /// `ip addr show`: the interfaces with their MTU and their global
    /// addresses (for cross-subnet mode and the default tunnel MTU).
    fn interfaces(&mut self) -> Result<Vec<Interface>, Error>;
    /// Makes the tunnel device usable (see [`NetlinkRoutes::ensure_tunnel`]).
    fn ensure_tunnel(&mut self, plan: &TunnelPlan, mtu: Option<u32>) -> Result<(), Error>;
}

/// One network interface as route-sync needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `eth0`.
    pub name: String,
    /// Its MTU (`None` if the kernel did not say).
    pub mtu: Option<u32>,
    /// Its global-scope addresses, each with its prefix length.
    pub addresses: Vec<(IpAddr, u8)>,
}

/// What one [`sync`] did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Operations the kernel accepted, in order.
    pub applied: Vec<RouteOp>,
    /// Operations it refused, with why; the others were still applied.
    pub failed: Vec<(RouteOp, Error)>,
}

/// Reads our routes back, [`reconcile`]s them with `desired` and applies
/// every operation, carrying on past refused ones. Fails only when the
/// routes cannot be read.
pub fn sync(
    kernel: &mut impl RouteKernel,
    desired: &DesiredRoutes,
    protocol: u8,
) -> Result<SyncReport, Error> {
    let current = kernel.dump(protocol)?;
    let mut report = SyncReport::default();
    for op in reconcile(&desired.routes, &current, protocol) {
        match kernel.apply(&op) {
            Ok(()) => report.applied.push(op),
            Err(e) => report.failed.push((op, e)),
        }
    }
    Ok(report)
}

/// A NETLINK_ROUTE socket in the calling thread's network namespace.
pub struct NetlinkRoutes {
    socket: Socket,
    seq: u32,
}

impl NetlinkRoutes {
    /// Opens and binds the socket, with a receive timeout: the kernel
    /// answers while our send() runs, so the timeout only guards against
    /// an answer that never comes hanging the agent.
    pub fn open() -> Result<Self, Error> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        setsockopt(
            &socket,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(30, 0),
        )
        .map_err(|e| Error::Io(e.into()))?;
        Ok(NetlinkRoutes { socket, seq: 1 })
    }

    /// Sends one request and collects the answers until the ACK or the end
    /// of the dump. `what` names the request in `ip` syntax for errors.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut at = 0;
            while at + 16 <= data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..])
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                let len = reply.header.length as usize;
                if len < 16 {
                    return Err(Error::Protocol(format!("bad message length {len}")));
                }
                at += (len + 3) & !3;
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(Error::Kernel {
                                op: what.to_string(),
                                errno: -code.get(),
                            }),
                        }
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    /// `ip link show`: interface index to name.
    pub fn links(&mut self) -> Result<BTreeMap<u32, String>, Error> {
        let msgs = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "link show",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let name = l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })?;
                    Some((l.header.index, name))
                }
                _ => None,
            })
            .collect())
    }

    /// `ip link show dev NAME`: its index, `None` if there is no such link.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            RouteNetlinkMessage::GetLink(msg),
            0,
            &format!("link show dev {name}"),
        ) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.errno() == Some(ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes the tunnel device usable: creates it as an ipip link if it is
    /// missing (`ip link add tunl0 type ipip`; the kernel's fallback device
    /// appears as `tunl0` when the module loads), then `ip link set tunl0
    /// up [mtu MTU]`. An existing device of any type is used as is (tests
    /// use a veth). [`Error::NoIpipSupport`] when the kernel has no ipip.
    ///
    /// Then assigns [`TunnelPlan::address`] as a /32 when the plan has one
    /// (`ip addr replace ADDR/32 dev tunl0`, Calico's tunnel address).
    pub fn ensure_tunnel(&mut self, plan: &TunnelPlan, mtu: Option<u32>) -> Result<u32, Error> {
        self.tunnel(plan, mtu)
    }

    fn tunnel(&mut self, plan: &TunnelPlan, mtu: Option<u32>) -> Result<u32, Error> {
        let dev = plan.device.as_str();
        let index = match self.link_index(dev)? {
            Some(i) => i,
            None => {
                let mut msg = LinkMessage::default();
                msg.attributes.push(LinkAttribute::IfName(dev.to_string()));
                msg.attributes
                    .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                        InfoKind::IpIp,
                    )]));
                match self.request(
                    RouteNetlinkMessage::NewLink(msg),
                    NLM_F_CREATE | NLM_F_EXCL,
                    &format!("link add {dev} type ipip"),
                ) {
                    Ok(_) => {}
                    Err(e) if e.errno() == Some(EOPNOTSUPP) => {
                        return Err(Error::NoIpipSupport(dev.to_string()))
                    }
                    Err(e) => return Err(e),
                }
                self.link_index(dev)?
                    .ok_or_else(|| Error::NoDevice(dev.to_string()))?
            }
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let what = match mtu {
            Some(m) => format!("link set {dev} up mtu {m}"),
            None => format!("link set {dev} up"),
        };
        self.request(RouteNetlinkMessage::SetLink(msg), 0, &what)?;
        if let Some(addr) = plan.address {
            let mut msg = AddressMessage::default();
            msg.header.family = AddressFamily::Inet;
            msg.header.prefix_len = 32;
            msg.header.index = index;
            msg.attributes.push(AddressAttribute::Local(addr.into()));
            msg.attributes.push(AddressAttribute::Address(addr.into()));
            self.request(
                RouteNetlinkMessage::NewAddress(msg),
                NLM_F_CREATE | NLM_F_REPLACE,
                &format!("addr replace {addr}/32 dev {dev}"),
            )?;
        }
        Ok(index)
    }
}

impl RouteKernel for NetlinkRoutes {
    fn dump(&mut self, protocol: u8) -> Result<Vec<Route>, Error> {
        let links = self.links()?;
        let msgs = self.request(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            NLM_F_DUMP,
            "route show",
        )?;
        let mut out: Vec<Route> = msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => from_kernel(r, &links),
                _ => None,
            })
            .filter(|r| r.protocol == protocol)
            .collect();
        out.sort();
        Ok(out)
    }

    fn apply(&mut self, op: &RouteOp) -> Result<(), Error> {
        let what = op.to_string();
        let (msg, flags) = match op {
            RouteOp::Add(r) => (
                RouteNetlinkMessage::NewRoute(self.encode_route(r, false)?),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
            RouteOp::Replace(r) => (
                RouteNetlinkMessage::NewRoute(self.encode_route(r, false)?),
                NLM_F_CREATE | NLM_F_REPLACE,
            ),
            RouteOp::Delete(r) => (
                RouteNetlinkMessage::DelRoute(self.encode_route(r, true)?),
                0,
            ),
        };
        self.request(msg, flags, &what).map(|_| ())
    }

    fn interfaces(&mut self) -> Result<Vec<Interface>, Error> {
        let links = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "link show",
        )?;
        let mut out: BTreeMap<u32, Interface> = links
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let mut name = None;
                    let mut mtu = None;
                    for a in &l.attributes {
                        match a {
                            LinkAttribute::IfName(n) => name = Some(n.clone()),
                            LinkAttribute::Mtu(m) => mtu = Some(*m),
                            _ => {}
                        }
                    }
                    Some((
                        l.header.index,
                        Interface {
                            name: name?,
                            mtu,
                            addresses: Vec::new(),
                        },
                    ))
                }
                _ => None,
            })
            .collect();
        let addrs = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            "addr show",
        )?;
        for m in addrs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            // Universe scope only: not 127.0.0.1, not fe80::.
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
        Ok(out.into_values().collect())
    }

    fn ensure_tunnel(&mut self, plan: &TunnelPlan, mtu: Option<u32>) -> Result<(), Error> {
        self.tunnel(plan, mtu).map(|_| ())
    }
}

impl NetlinkRoutes {
    /// Encodes a route; for a delete, only what identifies it (prefix,
    /// table, protocol, type, gateway) so that a vanished device does not
    /// keep it alive.
    fn encode_route(&mut self, r: &Route, delete: bool) -> Result<RouteMessage, Error> {
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
                gateway,
                dev,
                onlink,
            } => {
                m.header.kind = RouteType::Unicast;
                m.attributes
                    .push(RouteAttribute::Gateway(RouteAddress::from(*gateway)));
                if !delete {
                    if let Some(dev) = dev {
                        let index = self
                            .link_index(dev)?
                            .ok_or_else(|| Error::NoDevice(dev.clone()))?;
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
}

/// Decodes a route of the main table; `None` for other tables and families.
fn from_kernel(m: &RouteMessage, links: &BTreeMap<u32, String>) -> Option<Route> {
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
