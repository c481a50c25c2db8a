//! A model of what Linux 6.18 dumps for what the encoder sends: the
//! kernel's canonical form of tables, chains, sets, rules and elements
//! (checked byte for byte against a real dump in `tests.rs`).

use std::collections::BTreeMap;

use netlink_packet_core::Emitable;

use super::super::*;
use crate::encode::{encode_ops, rule_exprs};
use crate::transaction::{Op, TableRef};

pub(super) fn nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

pub(super) fn strz(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A dump answer message: nlmsghdr (NLM_F_MULTI), nfgenmsg, `body`.
pub(super) fn message(out: &mut Vec<u8>, msg: u16, family: Family, body: &[u8]) {
    let nfproto = match family {
        Family::Ip => NFPROTO_IPV4,
        Family::Ip6 => NFPROTO_IPV6,
    };
    out.extend_from_slice(&(20 + body.len() as u32).to_ne_bytes());
    out.extend_from_slice(&((SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    out.extend_from_slice(&2u16.to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[nfproto, 0, 0, 0]);
    out.extend_from_slice(body);
}

/// Attributes re-emitted without flags, nested ones too (the kernel nests
/// with `nla_nest_start_noflag`).
pub(super) fn noflag(buf: &[u8], nested: &dyn Fn(u16) -> bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, v) in attrs(buf) {
        let v = if nested(kind) {
            noflag(v, &|_| false)
        } else {
            v.to_vec()
        };
        nla(&mut out, kind, &v);
    }
    out
}

/// A data attribute's value (NFTA_DATA_VALUE or a verdict) as the kernel
/// dumps it.
pub(super) fn kernel_data(v: &[u8]) -> Vec<u8> {
    noflag(v, &|kind| kind == DATA_VERDICT)
}

/// One expression's data as Linux 6.18 dumps it: 32-bit registers on a
/// 128-bit boundary under their old names, data nested without flags,
/// and the attributes the kernel adds, in its order.
pub(super) fn kernel_expr(name: &str, data: &[u8]) -> Vec<u8> {
    let register = |v: &[u8]| match be32(v) {
        Some(r @ (8 | 12 | 16 | 20)) => ((r - 8) / 4 + 1).to_be_bytes().to_vec(),
        _ => v.to_vec(),
    };
    let registers: &[u16] = match name {
        "payload" | "meta" | "immediate" | "numgen" | "fib" => &[1],
        "cmp" => &[1],
        "bitwise" => &[1, 2],
        "lookup" => &[2, 3],
        "nat" => &[3, 5],
        "dynset" => &[4],
        _ => &[],
    };
    let datas: &[u16] = match name {
        "cmp" => &[3],
        "immediate" => &[2],
        "bitwise" => &[4, 5],
        _ => &[],
    };
    let list: Vec<(u16, Vec<u8>)> = attrs(data)
        .map(|(k, v)| {
            let v = if registers.contains(&k) {
                register(v)
            } else if datas.contains(&k) {
                kernel_data(v)
            } else {
                v.to_vec()
            };
            (k, v)
        })
        .collect();
    let mut a: BTreeMap<u16, Vec<u8>> = list.iter().cloned().collect();
    let zero = 0u32.to_be_bytes().to_vec();
    let order: Vec<u16> = match name {
        "lookup" => {
            a.insert(5, zero);
            vec![1, 2, 3, 5]
        }
        "numgen" => {
            // The kernel dumps the offset always: 0 when none was sent.
            a.entry(4).or_insert(zero);
            vec![1, 2, 3, 4]
        }
        "bitwise" => {
            a.insert(6, zero);
            vec![1, 2, 3, 6, 4, 5]
        }
        "dynset" => {
            a.insert(6, vec![0; 8]);
            a.insert(9, zero);
            vec![4, 3, 1, 6, 9]
        }
        "nat" => {
            let mut flags = a.get(&7).and_then(|v| be32(v)).unwrap_or(0);
            for (min, max, bit) in [(3, 4, 1), (5, 6, 2)] {
                if let Some(v) = a.get(&min).cloned() {
                    a.insert(max, v);
                    flags |= bit;
                }
            }
            a.insert(7, flags.to_be_bytes().to_vec());
            vec![1, 2, 3, 4, 5, 6, 7]
        }
        _ => list.iter().map(|(k, _)| *k).collect(),
    };
    let mut out = Vec::new();
    for k in order {
        if let Some(v) = a.get(&k) {
            nla(&mut out, k, v);
        }
    }
    out
}

/// A rule's NFTA_RULE_EXPRESSIONS value as the kernel dumps it.
pub(super) fn kernel_exprs(family: Family, rule: &Rule) -> Vec<u8> {
    let list = rule_exprs(family, rule);
    let mut ours = vec![0; list.as_slice().buffer_len()];
    list.as_slice().emit(&mut ours);
    let mut out = Vec::new();
    for (_, elem) in attrs(&ours) {
        let name = string(find(elem, 1).unwrap());
        let mut inner = Vec::new();
        nla(&mut inner, 1, &strz(&name));
        nla(
            &mut inner,
            2,
            &kernel_expr(&name, find(elem, 2).unwrap_or(&[])),
        );
        nla(&mut out, LIST_ELEM, &inner);
    }
    out
}

/// The body of the one message `op` encodes to, and its type.
pub(super) fn encoded(op: Op) -> (u16, Vec<u8>) {
    let enc = encode_ops(&[op]);
    assert_eq!(enc.len(), 1);
    let m = &enc[0].message;
    let mut body = vec![0; m.buffer_len()];
    m.emit(&mut body);
    (u16::from(u8::from(m.message_type())), body)
}

/// What the kernel answers to `nft list table` for the tables of `rs`:
/// the encoder's messages in the kernel's dump form, with the attributes
/// it adds (handles, use counts, flags, element counts, timeouts of
/// dynamic elements).
pub(super) fn kernel_dump(rs: &Ruleset) -> Vec<u8> {
    let mut out = Vec::new();
    let handle = 7u64.to_be_bytes();
    for t in &rs.tables {
        let table = TableRef {
            family: t.family,
            name: t.name.clone(),
        };
        let (msg, mut body) = encoded(Op::AddTable(table.clone()));
        nla(&mut body, 3, &1u32.to_be_bytes());
        nla(&mut body, 4, &handle);
        message(&mut out, msg, t.family, &body);
        for c in t.chains.values() {
            let (msg, body) = encoded(Op::AddChain {
                table: table.clone(),
                name: c.name.clone(),
                base: c.base,
            });
            let mut body = noflag(&body, &|k| k == CHAIN_HOOK);
            nla(&mut body, 2, &handle);
            if c.base.is_some() {
                nla(&mut body, 10, &1u32.to_be_bytes());
            }
            message(&mut out, msg, t.family, &body);
        }
        for m in t.maps.values() {
            let (msg, body) = encoded(Op::AddMap {
                table: table.clone(),
                name: m.name.clone(),
                kind: m.kind,
            });
            let verdict = find(&body, SET_DATA_TYPE).and_then(be32) == Some(0xffff_ff00);
            let mut kernel = Vec::new();
            for (k, v) in attrs(&body) {
                match k {
                    10 => {}
                    SET_FLAGS if v == [0, 0, 0, 0] => {}
                    SET_DATA_LEN if verdict => nla(&mut kernel, k, &16u32.to_be_bytes()),
                    _ => nla(&mut kernel, k, v),
                }
            }
            nla(&mut kernel, 16, &handle);
            if m.kind.is_dynamic() {
                let mut desc = Vec::new();
                nla(&mut desc, 1, &65535u32.to_be_bytes());
                nla(&mut kernel, 9, &desc);
            }
            nla(&mut kernel, 20, &(m.elements.len() as u32).to_be_bytes());
            message(&mut out, msg, t.family, &kernel);
        }
        for c in t.chains.values() {
            for r in &c.rules {
                let mut body = Vec::new();
                nla(&mut body, RULE_TABLE, &strz(&t.name));
                nla(&mut body, RULE_CHAIN, &strz(&c.name));
                nla(&mut body, RULE_HANDLE, &handle);
                nla(&mut body, RULE_EXPRESSIONS, &kernel_exprs(t.family, r));
                message(&mut out, MSG_NEWRULE, t.family, &body);
            }
        }
        for m in t.maps.values().filter(|m| !m.elements.is_empty()) {
            let (msg, body) = encoded(Op::AddElements {
                table: table.clone(),
                map: m.name.clone(),
                kind: m.kind,
                elements: m.elements.clone().into_iter().collect(),
            });
            let mut kernel = Vec::new();
            for (k, v) in attrs(&body) {
                if k != ELEM_LIST_ELEMENTS {
                    nla(&mut kernel, k, v);
                    continue;
                }
                let mut list = Vec::new();
                for (_, e) in attrs(v) {
                    let mut elem = Vec::new();
                    for (k, v) in attrs(e) {
                        match k {
                            1 => nla(&mut elem, k, &noflag(v, &|_| false)),
                            2 => nla(&mut elem, k, &kernel_data(v)),
                            _ => nla(&mut elem, k, v),
                        }
                    }
                    if m.kind.is_dynamic() {
                        nla(&mut elem, 4, &10_800_000u64.to_be_bytes());
                        nla(&mut elem, 5, &9_000_000u64.to_be_bytes());
                    }
                    nla(&mut list, LIST_ELEM, &elem);
                }
                nla(&mut kernel, k, &list);
            }
            message(&mut out, msg, t.family, &kernel);
        }
    }
    out
}

/// `rs` as a read-back sees it: no elements in dynamic sets.
pub(super) fn read_back_view(rs: &Ruleset) -> Ruleset {
    let mut rs = rs.clone();
    for t in &mut rs.tables {
        t.maps
            .values_mut()
            .filter(|m| m.kind.is_dynamic())
            .for_each(|m| m.elements.clear());
    }
    rs
}
