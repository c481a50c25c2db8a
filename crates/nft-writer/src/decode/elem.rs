//! Set and map elements: keys and data decoded per the map's kind, the
//! inverse of `key_bytes` and `value_data` in `encode.rs`. A key or data
//! that does not fit its map comes back raw.

use std::net::IpAddr;

use api_watch::Protocol;

use super::{attrs, be32, data_value, data_verdict, find, hex, string};
use super::{DATA_VALUE, DATA_VERDICT, VERDICT_CHAIN, VERDICT_CODE};
use crate::encode::key_bytes;
use crate::model::*;

/// NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA, NFTA_SET_ELEM_FLAGS.
const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const ELEM_FLAGS: u16 = 3;

/// One element (the value of an NFTA_LIST_ELEM) of a set or map of
/// `kind`. Timeouts, expirations and other per-element attributes are
/// not part of the model and are ignored; an element with flags
/// (interval end, catch-all) keeps its key raw.
pub(super) fn element(family: Family, kind: MapKind, element: &[u8]) -> (ElemKey, ElemValue) {
    let key_bytes = find(element, ELEM_KEY).and_then(data_value).unwrap_or(&[]);
    let flagged = find(element, ELEM_FLAGS)
        .and_then(be32)
        .is_some_and(|f| f != 0);
    let key = if flagged {
        ElemKey::Raw(key_bytes.to_vec())
    } else {
        key(family, kind, key_bytes)
    };
    (key, value(family, kind, find(element, ELEM_DATA)))
}

/// The key of an element of `kind`, or its raw bytes when it does not
/// encode back to exactly these bytes.
pub(super) fn key(family: Family, kind: MapKind, bytes: &[u8]) -> ElemKey {
    let candidate = match kind {
        MapKind::ServiceVerdict | MapKind::ServiceSet => service_key(family, bytes, false),
        MapKind::EndpointDnat => service_key(family, bytes, true),
        MapKind::PortVerdict | MapKind::PortSet => port_key(bytes, false),
        MapKind::PortEndpointDnat => port_key(bytes, true),
        MapKind::AddrPairSet => {
            let (a, b) = bytes.split_at(bytes.len() / 2);
            match (addr(family, a), addr(family, b)) {
                (Some(a), Some(b)) => Some(ElemKey::Pair(a, b)),
                _ => None,
            }
        }
        MapKind::AddrSet | MapKind::AffinitySet { .. } => addr(family, bytes).map(ElemKey::Addr),
        MapKind::Other { .. } => None,
    };
    match candidate {
        Some(k) if key_bytes(&k) == bytes => k,
        _ => ElemKey::Raw(bytes.to_vec()),
    }
}

/// The data of an element of `kind` (the value of NFTA_SET_ELEM_DATA, if
/// any).
pub(super) fn value(family: Family, kind: MapKind, data: Option<&[u8]>) -> ElemValue {
    let Some(data) = data else {
        return if kind.is_map() {
            ElemValue::Raw("no data".into())
        } else {
            ElemValue::Member
        };
    };
    let decoded = match kind {
        MapKind::ServiceVerdict | MapKind::PortVerdict | MapKind::Other { .. } => {
            data_verdict(data).map(ElemValue::Verdict)
        }
        MapKind::EndpointDnat | MapKind::PortEndpointDnat => data_value(data).and_then(|v| {
            let (ip, port) = v.split_at_checked(v.len().checked_sub(4)?)?;
            let ip = addr(family, ip)?;
            match port {
                [hi, lo, 0, 0] => Some(ElemValue::Dnat(ip, u16::from_be_bytes([*hi, *lo]))),
                _ => None,
            }
        }),
        MapKind::ServiceSet
        | MapKind::PortSet
        | MapKind::AddrPairSet
        | MapKind::AddrSet
        | MapKind::AffinitySet { .. } => None,
    };
    decoded.unwrap_or_else(|| ElemValue::Raw(describe(data)))
}

/// Data the model has no words for, readably: `value 0x0a2a0001`,
/// `verdict 4294967293 chain c`.
fn describe(data: &[u8]) -> String {
    let parts: Vec<String> = attrs(data)
        .map(|(kind, v)| match kind {
            DATA_VALUE => format!("value 0x{}", hex(v)),
            DATA_VERDICT => {
                let code = find(v, VERDICT_CODE).and_then(be32);
                let chain = find(v, VERDICT_CHAIN).map(string);
                match (code, chain) {
                    (Some(code), Some(chain)) => format!("verdict {code} chain {chain}"),
                    (Some(code), None) => format!("verdict {code}"),
                    _ => format!("verdict 0x{}", hex(v)),
                }
            }
            other => format!("attribute {other} 0x{}", hex(v)),
        })
        .collect();
    if parts.is_empty() {
        format!("0x{}", hex(data))
    } else {
        parts.join(", ")
    }
}

fn addr(family: Family, b: &[u8]) -> Option<IpAddr> {
    match family {
        Family::Ip => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        Family::Ip6 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
    }
}

fn protocol(number: u8) -> Option<Protocol> {
    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        .into_iter()
        .find(|p| p.number() == number)
}

/// `proto . port` as 8 bytes (each padded to 32 bits; padding is checked
/// by the re-encoding).
fn proto_port(b: &[u8]) -> Option<(Protocol, u16)> {
    match b {
        [p, _, _, _, hi, lo, _, _] => Some((protocol(*p)?, u16::from_be_bytes([*hi, *lo]))),
        _ => None,
    }
}

/// The endpoint index that follows a key, in host byte order, if the key
/// has one.
fn index(rest: &[u8], indexed: bool) -> Option<Option<u32>> {
    match (indexed, rest) {
        (false, []) => Some(None),
        (true, [a, b, c, d]) => Some(Some(u32::from_ne_bytes([*a, *b, *c, *d]))),
        _ => None,
    }
}

fn service_key(family: Family, b: &[u8], indexed: bool) -> Option<ElemKey> {
    let alen = match family {
        Family::Ip => 4,
        Family::Ip6 => 16,
    };
    let (a, rest) = b.split_at_checked(alen)?;
    let (pp, rest) = rest.split_at_checked(8)?;
    let (proto, port) = proto_port(pp)?;
    Some(ElemKey::Service {
        addr: addr(family, a)?,
        proto,
        port,
        index: index(rest, indexed)?,
    })
}

fn port_key(b: &[u8], indexed: bool) -> Option<ElemKey> {
    let (pp, rest) = b.split_at_checked(8)?;
    let (proto, port) = proto_port(pp)?;
    Some(ElemKey::Port {
        proto,
        port,
        index: index(rest, indexed)?,
    })
}
