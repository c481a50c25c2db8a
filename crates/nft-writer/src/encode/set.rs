//! Sets and maps: the declaration of each [`MapKind`] (NEWSET's key and
//! data types, flags, timeout) and the bytes of element keys and values.

use super::*;

/// nft's concatenated type number: each part shifted in by 6 bits.
pub(super) fn concat_type(parts: &[u32]) -> u32 {
    parts.iter().fold(0, |acc, p| (acc << 6) | p)
}

pub(super) fn addr_type(family: Family) -> u32 {
    match family {
        Family::Ip => TYPE_IPV4_ADDR,
        Family::Ip6 => TYPE_IPV6_ADDR,
    }
}

pub(super) fn addr_len(family: Family) -> u32 {
    match family {
        Family::Ip => 4,
        Family::Ip6 => 16,
    }
}

/// The declaration of a set or map of one [`MapKind`] as the kernel
/// holds it: what NEWSET sends and what a read-back recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetShape {
    /// NFTA_SET_FLAGS.
    pub flags: u32,
    /// NFTA_SET_KEY_TYPE (nft's type number).
    pub key_type: u32,
    /// NFTA_SET_KEY_LEN.
    pub key_len: u32,
    /// NFTA_SET_DATA_TYPE and NFTA_SET_DATA_LEN, for maps.
    pub data: Option<(u32, u32)>,
    /// NFTA_SET_TIMEOUT in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// The shape of a set or map of `kind` in a table of `family`.
pub(crate) fn set_shape(family: Family, kind: MapKind) -> SetShape {
    let addr = addr_type(family);
    let alen = addr_len(family);
    let endpoint = (concat_type(&[addr, TYPE_INET_SERVICE]), alen + 4);
    let verdict = (DATA_VERDICT, 0);
    let map = SetFlags::Map.bits();
    let (flags, key_type, key_len, data) = match kind {
        MapKind::ServiceVerdict => (
            map,
            concat_type(&[addr, TYPE_INET_PROTO, TYPE_INET_SERVICE]),
            alen + 8,
            Some(verdict),
        ),
        MapKind::PortVerdict => (
            map,
            concat_type(&[TYPE_INET_PROTO, TYPE_INET_SERVICE]),
            8,
            Some(verdict),
        ),
        MapKind::ServiceSet => (
            0,
            concat_type(&[addr, TYPE_INET_PROTO, TYPE_INET_SERVICE]),
            alen + 8,
            None,
        ),
        MapKind::PortSet => (
            0,
            concat_type(&[TYPE_INET_PROTO, TYPE_INET_SERVICE]),
            8,
            None,
        ),
        MapKind::EndpointDnat => (
            map,
            concat_type(&[addr, TYPE_INET_PROTO, TYPE_INET_SERVICE, TYPE_INTEGER]),
            alen + 12,
            Some(endpoint),
        ),
        MapKind::PortEndpointDnat => (
            map,
            concat_type(&[TYPE_INET_PROTO, TYPE_INET_SERVICE, TYPE_INTEGER]),
            12,
            Some(endpoint),
        ),
        MapKind::AddrPairSet => (0, concat_type(&[addr, addr]), 2 * alen, None),
        MapKind::AddrSet => (0, addr, alen, None),
        // `flags dynamic,timeout`: NFT_SET_EVAL | NFT_SET_TIMEOUT.
        MapKind::AffinitySet { .. } => (
            (SetFlags::Timeout | SetFlags::Eval).bits(),
            addr,
            alen,
            None,
        ),
        MapKind::Other {
            flags,
            key_type,
            key_len,
            data_type,
            data_len,
        } => (
            flags,
            key_type,
            key_len,
            (data_len > 0 || data_type != 0).then_some((data_type, data_len)),
        ),
    };
    let timeout_ms = match kind {
        // NFTA_SET_TIMEOUT is in milliseconds.
        MapKind::AffinitySet { timeout } => Some(u64::from(timeout) * 1000),
        _ => None,
    };
    SetShape {
        flags,
        key_type,
        key_len,
        data,
        timeout_ms,
    }
}

/// NEWSET attributes. The kernel requires NFTA_SET_ID (unique within the
/// batch) even when everything refers to the set by name.
pub(super) fn set_attributes(
    family: Family,
    table: &str,
    name: &str,
    kind: MapKind,
    id: u32,
) -> Vec<SetAttribute> {
    let shape = set_shape(family, kind);
    let mut attrs = vec![
        SetAttribute::Table(table.into()),
        SetAttribute::Name(name.into()),
        SetAttribute::Flags(SetFlags::from_bits_retain(shape.flags)),
        SetAttribute::KeyType(shape.key_type),
        SetAttribute::KeyLen(shape.key_len),
    ];
    if let Some((data_type, data_len)) = shape.data {
        attrs.push(SetAttribute::DataType(data_type));
        attrs.push(SetAttribute::DataLen(data_len));
    }
    attrs.push(SetAttribute::Id(id));
    if let Some(ms) = shape.timeout_ms {
        attrs.push(SetAttribute::Timeout(ms));
    }
    attrs.push(SetAttribute::UserData(crate::udata::set_userdata(
        family, kind,
    )));
    attrs
}

pub(super) fn proto_port(out: &mut Vec<u8>, proto: api_watch::Protocol, port: u16) {
    out.extend_from_slice(&[proto.number(), 0, 0, 0]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
}

/// The key of an element, each part padded to 32 bits; the index is in
/// host byte order like the register `numgen` writes.
pub fn key_bytes(k: &ElemKey) -> Vec<u8> {
    let mut b = Vec::new();
    match k {
        ElemKey::Service {
            addr,
            proto,
            port,
            index,
        } => {
            b.extend(addr_bytes(addr));
            proto_port(&mut b, *proto, *port);
            if let Some(i) = index {
                b.extend_from_slice(&i.to_ne_bytes());
            }
        }
        ElemKey::Port { proto, port, index } => {
            proto_port(&mut b, *proto, *port);
            if let Some(i) = index {
                b.extend_from_slice(&i.to_ne_bytes());
            }
        }
        ElemKey::Pair(x, y) => {
            b.extend(addr_bytes(x));
            b.extend(addr_bytes(y));
        }
        ElemKey::Addr(x) => b.extend(addr_bytes(x)),
        ElemKey::Raw(raw) => b.extend_from_slice(raw),
    }
    b
}

pub(super) fn value_data(v: &ElemValue) -> Option<DataAttribute> {
    match v {
        ElemValue::Verdict(v) => Some(DataAttribute::Verdict(verdict_attrs(v))),
        ElemValue::Dnat(ip, port) => {
            let mut b = addr_bytes(ip);
            b.extend_from_slice(&port.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            Some(DataAttribute::Value(b))
        }
        // Never planned: read-back data is only ever deleted (by key).
        ElemValue::Member | ElemValue::Raw(_) => None,
    }
}

pub(super) fn verdict_attrs(v: &Verdict) -> Vec<VerdictAttribute> {
    match v {
        Verdict::Accept => vec![VerdictAttribute::Code(NlVerdict::Other(1))],
        Verdict::Drop => vec![VerdictAttribute::Code(NlVerdict::Other(0))],
        Verdict::Return => vec![VerdictAttribute::Code(NlVerdict::Return)],
        Verdict::Jump(c) => vec![
            VerdictAttribute::Code(NlVerdict::Jump),
            VerdictAttribute::Chain(c.clone()),
        ],
        Verdict::Goto(c) => vec![
            VerdictAttribute::Code(NlVerdict::Goto),
            VerdictAttribute::Chain(c.clone()),
        ],
    }
}
