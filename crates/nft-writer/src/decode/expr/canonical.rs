//! The byte-level helpers of expression decoding: addresses and protocols
//! from data, and the canonical form of an expression's attributes that
//! decoded and planned expressions are compared in.

use super::*;

pub(super) fn ip_addr(family: Family, b: &[u8]) -> Option<std::net::IpAddr> {
    match family {
        Family::Ip => Some(<[u8; 4]>::try_from(b).ok()?.into()),
        Family::Ip6 => Some(<[u8; 16]>::try_from(b).ok()?.into()),
    }
}

pub(super) fn protocol(number: &[u8]) -> Option<api_watch::Protocol> {
    use api_watch::Protocol;
    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        .into_iter()
        .find(|p| number == [p.number()])
}

/// Whether attribute `kind` of expression `name` holds a register.
pub(super) fn is_register(name: &str, kind: u16) -> bool {
    matches!(
        (name, kind),
        ("payload", 1 | 5)
            | ("meta", 1 | 3)
            | ("cmp", 1)
            | ("bitwise", 1 | 2 | 8)
            | ("immediate", 1)
            | ("lookup", 2 | 3)
            | ("numgen", 1)
            | ("nat", 3..=6)
            | ("fib", 1)
            | ("ct", 1 | 4)
            | ("dynset", 4 | 5)
            | ("masq", 2 | 3)
    )
}

/// Whether attribute `kind` of expression `name` holds nested data
/// (NFTA_DATA_VALUE or NFTA_DATA_VERDICT).
pub(super) fn is_data(name: &str, kind: u16) -> bool {
    matches!(
        (name, kind),
        ("cmp", 3) | ("immediate", 2) | ("bitwise", 4 | 5 | 7)
    )
}

/// A register as a 32-bit register number: NFT_REG_1..4 are
/// NFT_REG32_00, 04, 08, 12 (the kernel reports a 32-bit register on a
/// 128-bit boundary under its old name).
pub(super) fn register(v: &[u8]) -> Vec<u8> {
    match be32(v) {
        Some(r @ 1..=4) => (8 + (r - 1) * 4).to_be_bytes().to_vec(),
        _ => v.to_vec(),
    }
}

pub(super) fn push_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Nested data re-emitted without attribute flags (the kernel nests data
/// without NLA_F_NESTED); kept as is when it is not a well-formed list.
pub(super) fn data(v: &[u8]) -> Vec<u8> {
    let flat = |v: &[u8]| {
        let mut it = attrs(v);
        let mut out = Vec::new();
        for (kind, inner) in it.by_ref() {
            push_attr(&mut out, kind, inner);
        }
        it.broken().is_empty().then_some(out)
    };
    let mut it = attrs(v);
    let mut out = Vec::new();
    for (kind, inner) in it.by_ref() {
        let inner = if kind == DATA_VERDICT {
            flat(inner).unwrap_or_else(|| inner.to_vec())
        } else {
            inner.to_vec()
        };
        push_attr(&mut out, kind, &inner);
    }
    if it.broken().is_empty() {
        out
    } else {
        v.to_vec()
    }
}

/// An expression's attributes in canonical form (see the module doc).
pub(super) fn canonical(name: &str, data_bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut it = attrs(data_bytes);
    let mut out: Vec<(u16, Vec<u8>)> = it
        .by_ref()
        .map(|(kind, v)| {
            let v = if is_register(name, kind) {
                register(v)
            } else if is_data(name, kind) {
                data(v)
            } else {
                v.to_vec()
            };
            (kind, v)
        })
        .collect();
    if !it.broken().is_empty() {
        out.push((u16::MAX, it.broken().to_vec()));
    }
    let get = |out: &[(u16, Vec<u8>)], kind: u16| {
        out.iter().find(|(k, _)| *k == kind).map(|(_, v)| v.clone())
    };
    let drop_zero = |out: &mut Vec<(u16, Vec<u8>)>, kind: u16| {
        out.retain(|(k, v)| *k != kind || v.iter().any(|b| *b != 0))
    };
    match name {
        "lookup" => drop_zero(&mut out, LOOKUP_FLAGS),
        "numgen" => drop_zero(&mut out, NG_OFFSET),
        "bitwise" => drop_zero(&mut out, BITWISE_OP),
        "dynset" => {
            drop_zero(&mut out, DYNSET_TIMEOUT);
            drop_zero(&mut out, DYNSET_FLAGS);
            out.retain(|(k, _)| *k != DYNSET_PAD);
        }
        "nat" => {
            for (min, max, implied) in [
                (NAT_ADDR_MIN, NAT_ADDR_MAX, NAT_MAP_IPS),
                (NAT_PROTO_MIN, NAT_PROTO_MAX, NAT_PROTO_SPECIFIED),
            ] {
                let Some(low) = get(&out, min) else { continue };
                if get(&out, max) == Some(low) {
                    out.retain(|(k, _)| *k != max);
                }
                if let Some((_, v)) = out.iter_mut().find(|(k, _)| *k == NAT_FLAGS) {
                    if let Some(flags) = be32(v) {
                        *v = (flags & !implied).to_be_bytes().to_vec();
                    }
                }
            }
            drop_zero(&mut out, NAT_FLAGS);
        }
        _ => {}
    }
    out.sort_by_key(|(k, _)| *k);
    out
}
