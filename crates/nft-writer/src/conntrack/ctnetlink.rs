//! The kernel side of conntrack clean-up: ctnetlink requests on a
//! NETLINK_NETFILTER socket, what the `conntrack` tool sends. Thin: one
//! dump, one delete; all deciding is in the parent module.

mod filter;

use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NLA_F_NESTED, NLM_F_ACK,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Status, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::Socket;

use super::{Flow, UdpEntry};
use crate::error::{libc_errno, Error};
use filter::DumpFilter;

/// CTA_ZONE (include/uapi/linux/netfilter/nfnetlink_conntrack.h), a
/// big-endian u16 the kernel adds for flows outside the default zone.
const CTA_ZONE: u16 = 18;

/// CTA_FILTER: a nest of CTA_FILTER_ORIG_FLAGS (1, u32) naming which
/// fields of the request's CTA_TUPLE_ORIG a dumped flow must match
/// (Linux 5.9+, `ctnetlink_alloc_filter`).
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
/// CTA_FILTER_F_CTA_IP_DST, _PROTO_NUM and _PROTO_DST_PORT
/// (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const FILTER_IP_DST: u32 = 1 << 1;
const FILTER_PROTO_NUM: u32 = 1 << 3;
const FILTER_PROTO_DST_PORT: u32 = 1 << 5;

/// ctnetlink in the current network namespace (the calling thread's).
pub struct Conntrack {
    socket: Socket,
    seq: u32,
    /// The kernel refused CTA_FILTER once: dump unfiltered from then on.
    no_kernel_filter: bool,
}

impl Conntrack {
    /// Opens a NETLINK_NETFILTER socket for ctnetlink, as `conntrack` does
    /// on start. The kernel loads `nf_conntrack_netlink` on the first
    /// request if it is a module.
    pub fn open() -> Result<Self, Error> {
        // A dump is paced by our reads, so the default buffer suffices.
        let (socket, seq) = crate::netlink::open_netfilter()?;
        Ok(Self {
            socket,
            seq,
            no_kernel_filter: false,
        })
    }

    /// Every UDP flow, IPv4 and IPv6: `conntrack -L -p udp` and
    /// `conntrack -L -f ipv6 -p udp`. The kernel filters by protocol
    /// (CTA_FILTER), so a node's TCP flows are never copied to us. A flow
    /// the kernel reports in a form this crate cannot decode is logged and
    /// left out, so that it is never deleted.
    pub fn dump_udp(&mut self) -> Result<Vec<Flow>, Error> {
        let mut flows = self.dump_filtered(&DumpFilter::udp(NetfilterProtoFamily::IPv4))?;
        flows.extend(self.dump_filtered(&DumpFilter::udp(NetfilterProtoFamily::IPv6))?);
        Ok(flows)
    }

    /// The UDP flows addressed to one service entry: `conntrack -L -p udp
    /// --orig-dst IP --dport PORT` for an address, `conntrack -L -p udp
    /// --dport PORT` (both families) for a node port. The kernel does the
    /// filtering, so the cost is one walk of its table, and what crosses
    /// the socket is only the flows asked for.
    pub fn dump_udp_to(&mut self, entry: UdpEntry) -> Result<Vec<Flow>, Error> {
        match entry {
            UdpEntry::Addr(dst) => self.dump_filtered(&DumpFilter::udp_to(dst)),
            UdpEntry::NodePort(port) => {
                let mut flows =
                    self.dump_filtered(&DumpFilter::udp(NetfilterProtoFamily::IPv4).port(port))?;
                flows.extend(
                    self.dump_filtered(&DumpFilter::udp(NetfilterProtoFamily::IPv6).port(port))?,
                );
                Ok(flows)
            }
        }
    }

    /// Whether the kernel has filtered every dump so far (CTA_FILTER,
    /// Linux 5.9+), rather than this process after a whole-table dump.
    pub fn kernel_filters(&self) -> bool {
        !self.no_kernel_filter
    }

    /// One dump with a kernel-side filter; a kernel without CTA_FILTER
    /// (before Linux 5.9) answers EOPNOTSUPP or EINVAL, and then the whole
    /// table is dumped once for the family and filtered here.
    fn dump_filtered(&mut self, filter: &DumpFilter) -> Result<Vec<Flow>, Error> {
        let mut flows = Vec::new();
        let errno = if self.no_kernel_filter {
            libc_errno::EOPNOTSUPP
        } else {
            let (tuple, raw) = filter.request();
            self.dump(tuple, &raw, filter.family, &mut flows)?
        };
        let errno = match errno {
            libc_errno::EOPNOTSUPP | libc_errno::EINVAL => {
                if !self.no_kernel_filter {
                    tracing::info!(
                        errno,
                        "this kernel cannot filter conntrack dumps (CTA_FILTER): dumping whole tables"
                    );
                    self.no_kernel_filter = true;
                }
                flows.clear();
                self.dump(vec![], &[], filter.family, &mut flows)?
            }
            errno => errno,
        };
        match errno {
            0 => {
                flows.retain(|f| filter.matches(f));
                Ok(flows)
            }
            errno => Err(Error::Rejected {
                op_index: None,
                op: filter.to_string(),
                errno,
            }),
        }
    }

    /// Sends one dump request with these attributes, then the encoded
    /// attributes `raw`; the flows decoded go to `flows`. Returns the errno
    /// that ended the dump (0: done).
    fn dump(
        &mut self,
        attrs: Vec<ConntrackAttribute>,
        raw: &[u8],
        family: NetfilterProtoFamily,
        flows: &mut Vec<Flow>,
    ) -> Result<i32, Error> {
        let seq = self.next_seq();
        let mut req = request(ConntrackMessage::Get(attrs), family, NLM_F_DUMP, seq);
        append_raw(&mut req, raw);
        self.exchange(&req, seq, |msg| {
            if let Some(flow) = flow_of(msg) {
                flows.push(flow);
            }
        })
    }

    /// Deletes one flow by its original tuple: `conntrack -D -p udp
    /// --orig-src … --orig-dst … --sport … --dport …` (the text of
    /// [`Flow`]'s `Display`). A flow that is already gone (ENOENT) is not
    /// an error. Addresses the default conntrack zone, the only one
    /// [`Conntrack::dump_udp`] reports.
    pub fn delete(&mut self, flow: &Flow) -> Result<(), Error> {
        self.delete_counted(flow).map(|_| ())
    }

    /// [`Conntrack::delete`], telling whether the kernel still held the flow.
    pub(super) fn delete_counted(&mut self, flow: &Flow) -> Result<bool, Error> {
        let seq = self.next_seq();
        let family = match flow.orig_src.ip() {
            IpAddr::V4(_) => NetfilterProtoFamily::IPv4,
            IpAddr::V6(_) => NetfilterProtoFamily::IPv6,
        };
        let req = request(
            ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(udp_tuple(
                flow.orig_src,
                flow.orig_dst,
            ))]),
            family,
            NLM_F_ACK,
            seq,
        );
        match self.exchange(&req, seq, |_| {})? {
            0 => Ok(true),
            libc_errno::ENOENT => Ok(false),
            errno => Err(Error::Rejected {
                op_index: None,
                op: flow.to_string(),
                errno,
            }),
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends `req` and reads the answers to `seq` until its end (the ack,
    /// or NLMSG_DONE of a dump), passing each conntrack message to `each`.
    /// Returns the positive errno the kernel answered, 0 for success.
    fn exchange(
        &mut self,
        req: &[u8],
        seq: u32,
        mut each: impl FnMut(&[ConntrackAttribute]),
    ) -> Result<i32, Error> {
        let sent = self.socket.send(req, 0)?;
        if sent != req.len() {
            return Err(Error::Protocol(format!(
                "sent {sent} of {} bytes",
                req.len()
            )));
        }
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut at = 0;
            while at < data.len() {
                let len = NetlinkBuffer::new_checked(&data[at..])
                    .map_err(|e| Error::Protocol(format!("conntrack answer: {e}")))?
                    .length() as usize;
                let msg = &data[at..at + len];
                at += (len + 3) & !3;
                let header = NetlinkBuffer::new(msg);
                if header.sequence_number() != seq {
                    // A late answer to an earlier request that timed out.
                    continue;
                }
                match NetlinkMessage::<NetfilterMessage>::deserialize(msg) {
                    Ok(m) => match m.payload {
                        NetlinkPayload::Done(done) => return Ok(-done.code),
                        NetlinkPayload::Error(e) => return Ok(-e.raw_code()),
                        NetlinkPayload::InnerMessage(NetfilterMessage {
                            inner: NetfilterMessageInner::Conntrack(ct),
                            ..
                        }) => each(attributes(&ct)),
                        _ => {}
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "conntrack: skipping a flow that does not decode");
                    }
                }
            }
        }
    }
}

fn request(msg: ConntrackMessage, family: NetfilterProtoFamily, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let inner = NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), msg);
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// The 4-byte header of an attribute with `len` bytes of value (a
/// multiple of 4 here, so no padding follows).
fn nla_header(kind: u16, len: usize) -> Vec<u8> {
    let total = u16::try_from(4 + len).expect("a small attribute");
    let mut h = total.to_ne_bytes().to_vec();
    h.extend(kind.to_ne_bytes());
    h
}

/// Appends encoded attributes to a finished message and fixes its length.
fn append_raw(msg: &mut Vec<u8>, raw: &[u8]) {
    msg.extend_from_slice(raw);
    let len = u32::try_from(msg.len()).expect("a small message");
    msg[..4].copy_from_slice(&len.to_ne_bytes());
}

fn attributes(msg: &ConntrackMessage) -> &[ConntrackAttribute] {
    match msg {
        ConntrackMessage::New(a) | ConntrackMessage::Get(a) | ConntrackMessage::Delete(a) => a,
        _ => &[],
    }
}

/// CTA_TUPLE_{ORIG,REPLY} contents for UDP from `src` to `dst`.
fn udp_tuple(src: SocketAddr, dst: SocketAddr) -> Vec<Tuple> {
    vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(src.ip()),
            IPTuple::DestinationAddress(dst.ip()),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::Udp),
            ProtoTuple::SourcePort(src.port()),
            ProtoTuple::DestinationPort(dst.port()),
        ]),
    ]
}

/// (protocol, source, destination) of a tuple; `None` if a part is
/// missing. Ports are 0 for protocols without them.
fn endpoints_of(tuple: &[Tuple]) -> Option<(Protocol, SocketAddr, SocketAddr)> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut sport, mut dport) = (0, 0);
    for part in tuple {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(n) => proto = Some(*n),
                        ProtoTuple::SourcePort(n) => sport = *n,
                        ProtoTuple::DestinationPort(n) => dport = *n,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        proto?,
        SocketAddr::new(src?, sport),
        SocketAddr::new(dst?, dport),
    ))
}

/// The UDP flow one dumped message describes; `None` for other protocols,
/// for messages without both tuples, and for flows in a conntrack zone
/// other than the default one (nftopo's rules use no zones, and
/// [`Conntrack::delete`] addresses the default zone).
fn flow_of(attrs: &[ConntrackAttribute]) -> Option<Flow> {
    let (mut orig, mut reply, mut status) = (None, None, Status::empty());
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = endpoints_of(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = endpoints_of(t),
            ConntrackAttribute::CtaStatus(s) => status = *s,
            ConntrackAttribute::Other(nla) if nla.kind() == CTA_ZONE => {
                let mut zone = vec![0; nla.value_len()];
                nla.emit_value(&mut zone);
                if zone.iter().any(|b| *b != 0) {
                    return None;
                }
            }
            _ => {}
        }
    }
    let (proto, orig_src, orig_dst) = orig?;
    let (_, reply_src, reply_dst) = reply?;
    (proto == Protocol::Udp).then_some(Flow {
        orig_src,
        orig_dst,
        reply_src,
        reply_dst,
        dnat: status.contains(Status::DstNat),
    })
}

#[cfg(test)]
mod tests;
