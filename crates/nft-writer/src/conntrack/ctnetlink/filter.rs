//! [`DumpFilter`]: which UDP flows a dump asks the kernel for (CTA_FILTER),
//! and the same test applied here when the kernel cannot filter.

use super::*;

/// What one dump asks the kernel for: UDP flows of one family, and
/// optionally only those to one address and/or destination port.
#[derive(Debug, Clone, Copy)]
pub(super) struct DumpFilter {
    pub(super) family: NetfilterProtoFamily,
    dst: Option<IpAddr>,
    port: Option<u16>,
}

impl DumpFilter {
    pub(super) fn udp(family: NetfilterProtoFamily) -> Self {
        DumpFilter {
            family,
            dst: None,
            port: None,
        }
    }

    pub(super) fn udp_to(dst: SocketAddr) -> Self {
        let family = match dst.ip() {
            IpAddr::V4(_) => NetfilterProtoFamily::IPv4,
            IpAddr::V6(_) => NetfilterProtoFamily::IPv6,
        };
        DumpFilter {
            family,
            dst: Some(dst.ip()),
            port: Some(dst.port()),
        }
    }

    pub(super) fn port(self, port: u16) -> Self {
        DumpFilter {
            port: Some(port),
            ..self
        }
    }

    /// CTA_TUPLE_ORIG with the values, and the encoded CTA_FILTER with the
    /// flags (a nest the kernel parses strictly: it must carry
    /// NLA_F_NESTED, which `DefaultNla` does not emit).
    pub(super) fn request(&self) -> (Vec<ConntrackAttribute>, Vec<u8>) {
        let mut flags = FILTER_PROTO_NUM;
        let mut tuple = Vec::new();
        if let Some(dst) = self.dst {
            flags |= FILTER_IP_DST;
            tuple.push(Tuple::Ip(vec![IPTuple::DestinationAddress(dst)]));
        }
        let mut proto = vec![ProtoTuple::Protocol(Protocol::Udp)];
        if let Some(port) = self.port {
            flags |= FILTER_PROTO_DST_PORT;
            proto.push(ProtoTuple::DestinationPort(port));
        }
        tuple.push(Tuple::Proto(proto));
        let mut filter = nla_header(CTA_FILTER | NLA_F_NESTED, 8);
        filter.extend(nla_header(CTA_FILTER_ORIG_FLAGS, 4));
        filter.extend(flags.to_ne_bytes());
        (vec![ConntrackAttribute::CtaTupleOrig(tuple)], filter)
    }

    /// The same test in user space (kernels without CTA_FILTER).
    pub(super) fn matches(&self, f: &Flow) -> bool {
        let family_ok = matches!(
            (self.family, f.orig_dst.ip()),
            (NetfilterProtoFamily::IPv4, IpAddr::V4(_))
                | (NetfilterProtoFamily::IPv6, IpAddr::V6(_))
        );
        family_ok
            && self.dst.is_none_or(|d| d == f.orig_dst.ip())
            && self.port.is_none_or(|p| p == f.orig_dst.port())
    }
}

impl std::fmt::Display for DumpFilter {
    /// The `conntrack -L` this dump stands for, in errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let family = match self.family {
            NetfilterProtoFamily::IPv6 => "ipv6",
            _ => "ipv4",
        };
        write!(f, "conntrack -L -f {family} -p udp")?;
        if let Some(dst) = self.dst {
            write!(f, " --orig-dst {dst}")?;
        }
        if let Some(port) = self.port {
            write!(f, " --dport {port}")?;
        }
        Ok(())
    }
}
