//! A rule's expressions back into statements: the inverse of
//! `stmt_exprs` in `encode.rs`.
//!
//! Statements are matched greedily from the first expression: the
//! expressions' parameters (offsets, set names, moduli, addresses) name a
//! candidate statement, and the candidate counts only if the encoder
//! turns it into exactly those expressions, compared in the kernel's
//! canonical form: registers numbered as 32-bit registers (the kernel
//! reports NFT_REG32_00 as NFT_REG_1, NFT_REG32_04 as NFT_REG_2, …),
//! attributes in any order, and attributes the kernel adds with their
//! default value (lookup and dynset flags 0, numgen offset 0, bitwise
//! operation 0, dynset timeout 0, nat's range maxima equal to the minima
//! and the range flags its registers imply) taken as absent. Anything
//! else that differs leaves the expression as [`Stmt::Unknown`].

mod canonical;

use canonical::*;

use netlink_packet_core::Emitable;

use super::{attrs, be32, data_value, data_verdict, find, string, DATA_VERDICT};
use crate::encode::rule_exprs;
use crate::model::*;

/// NFTA_EXPR_NAME, NFTA_EXPR_DATA.
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;
/// NFTA_PAYLOAD_BASE, OFFSET, LEN; NFT_PAYLOAD_NETWORK_HEADER.
const PAYLOAD_BASE: u16 = 2;
const PAYLOAD_OFFSET: u16 = 3;
const PAYLOAD_LEN: u16 = 4;
const BASE_NETWORK: u32 = 1;
/// NFTA_META_KEY; NFT_META_MARK, NFT_META_IIFNAME, NFT_META_L4PROTO.
const META_KEY: u16 = 2;
const META_MARK: u32 = 3;
const META_IIFNAME: u32 = 6;
const META_L4PROTO: u32 = 16;
/// NFTA_CMP_OP, NFTA_CMP_DATA; NFT_CMP_EQ, NFT_CMP_NEQ.
const CMP_OP: u16 = 2;
const CMP_DATA: u16 = 3;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
/// NFTA_BITWISE_MASK, XOR, OP.
const BITWISE_MASK: u16 = 4;
const BITWISE_XOR: u16 = 5;
const BITWISE_OP: u16 = 6;
/// NFTA_IMMEDIATE_DATA.
const IMMEDIATE_DATA: u16 = 2;
/// NFTA_LOOKUP_SET, NFTA_LOOKUP_FLAGS.
const LOOKUP_SET: u16 = 1;
const LOOKUP_FLAGS: u16 = 5;
/// NFTA_NG_MODULUS, NFTA_NG_OFFSET.
const NG_MODULUS: u16 = 2;
const NG_OFFSET: u16 = 4;
/// NFTA_NAT_REG_ADDR_MIN, ADDR_MAX, PROTO_MIN, PROTO_MAX, FLAGS;
/// NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED.
const NAT_ADDR_MIN: u16 = 3;
const NAT_ADDR_MAX: u16 = 4;
const NAT_PROTO_MIN: u16 = 5;
const NAT_PROTO_MAX: u16 = 6;
const NAT_FLAGS: u16 = 7;
const NAT_MAP_IPS: u32 = 1;
const NAT_PROTO_SPECIFIED: u32 = 2;
/// NFTA_FIB_FLAGS; NFTA_FIB_F_SADDR, NFTA_FIB_F_DADDR.
const FIB_FLAGS: u16 = 3;
const FIB_F_SADDR: u32 = 1;
const FIB_F_DADDR: u32 = 2;
/// NFTA_DYNSET_SET_NAME, TIMEOUT, PAD, FLAGS.
const DYNSET_SET_NAME: u16 = 1;
const DYNSET_TIMEOUT: u16 = 6;
const DYNSET_PAD: u16 = 8;
const DYNSET_FLAGS: u16 = 9;
/// NFTA_CT_KEY, NFTA_CT_DIRECTION; NFT_CT_STATE.
const CT_KEY: u16 = 2;
const CT_DIRECTION: u16 = 3;
const CT_STATE: u32 = 0;
/// NFTA_REJECT_TYPE; NFT_REJECT_ICMP_UNREACH, NFT_REJECT_TCP_RST.
const REJECT_TYPE: u16 = 1;
const REJECT_ICMP: u32 = 0;
const REJECT_TCP_RST: u32 = 1;

/// One expression of a rule: its name and its NFTA_EXPR_DATA.
#[derive(Debug)]
struct Expr<'a> {
    name: String,
    data: &'a [u8],
}

impl Expr<'_> {
    fn u32(&self, kind: u16) -> Option<u32> {
        find(self.data, kind).and_then(be32)
    }

    fn string(&self, kind: u16) -> Option<String> {
        find(self.data, kind).map(string)
    }

    /// The NFTA_DATA_VALUE bytes of a data attribute.
    fn value(&self, kind: u16) -> Option<&[u8]> {
        find(self.data, kind).and_then(data_value)
    }

    /// A 32-bit data value in host byte order (marks, numgen values).
    fn ne32(&self, kind: u16) -> Option<u32> {
        Some(u32::from_ne_bytes(self.value(kind)?.try_into().ok()?))
    }

    fn unknown(&self) -> Stmt {
        Stmt::Unknown {
            name: self.name.clone(),
            data: self.data.to_vec(),
        }
    }
}

/// The expressions of an NFTA_RULE_EXPRESSIONS list. An element without
/// a name keeps its whole value (with an empty name); bytes after the
/// last well-formed element become one expression named `malformed`.
fn parse_list(list: &[u8]) -> Vec<Expr<'_>> {
    let mut it = attrs(list);
    let mut out: Vec<Expr> = it
        .by_ref()
        .map(|(kind, v)| match (kind, find(v, EXPR_NAME)) {
            (1, Some(name)) => Expr {
                name: string(name),
                data: find(v, EXPR_DATA).unwrap_or(&[]),
            },
            (1, None) => Expr {
                name: String::new(),
                data: v,
            },
            (other, _) => Expr {
                name: format!("list-attr {other}"),
                data: v,
            },
        })
        .collect();
    if !it.broken().is_empty() {
        out.push(Expr {
            name: "malformed".into(),
            data: it.broken(),
        });
    }
    out
}

/// The statements of a rule from its NFTA_RULE_EXPRESSIONS value, for a
/// table of `family`. Every expression ends up in exactly one statement.
pub(super) fn statements(family: Family, list: &[u8]) -> Vec<Stmt> {
    let exprs = parse_list(list);
    let mut out = Vec::new();
    let mut at = 0;
    while at < exprs.len() {
        let rest = &exprs[at..];
        let found = candidates(family, rest)
            .into_iter()
            .filter(|(_, n)| *n <= rest.len())
            .find_map(|(stmt, n)| encodes_to(family, stmt, &rest[..n]).map(|s| (s, n)));
        match found {
            Some((stmt, n)) => {
                out.push(stmt);
                at += n;
            }
            None => {
                out.push(rest[0].unknown());
                at += 1;
            }
        }
    }
    out
}

/// `stmt` if the encoder turns it into `kernel` (in canonical form).
fn encodes_to(family: Family, stmt: Stmt, kernel: &[Expr]) -> Option<Stmt> {
    let rule = Rule(vec![stmt]);
    let list = rule_exprs(family, &rule);
    let list = list.as_slice();
    let mut buf = vec![0; list.buffer_len()];
    list.emit(&mut buf);
    let ours = parse_list(&buf);
    let same = ours.len() == kernel.len()
        && ours.iter().zip(kernel).all(|(a, b)| {
            a.name == b.name && canonical(&a.name, a.data) == canonical(&b.name, b.data)
        });
    if same {
        rule.0.into_iter().next()
    } else {
        None
    }
}

fn addr_len(family: Family) -> usize {
    match family {
        Family::Ip => 4,
        Family::Ip6 => 16,
    }
}

/// Offsets of the source and destination address in the network header.
fn addr_offsets(family: Family) -> (u32, u32) {
    match family {
        Family::Ip => (12, 16),
        Family::Ip6 => (8, 24),
    }
}

/// The statements that may start at `e[0]`, with the number of
/// expressions each would take, longest first where they share a start.
/// Only parameters are read here; [`encodes_to`] checks the rest.
fn candidates(family: Family, e: &[Expr]) -> Vec<(Stmt, usize)> {
    // Expression `i` if it is a `name`.
    let at = |i: usize, name: &str| e.get(i).filter(|x| x.name == name);
    let alen = addr_len(family);
    let (saddr, daddr) = addr_offsets(family);
    let mut out = Vec::new();
    let Some(first) = e.first() else {
        return out;
    };
    match first.name.as_str() {
        "payload" => {
            let network = first.u32(PAYLOAD_BASE) == Some(BASE_NETWORK);
            let offset = first.u32(PAYLOAD_OFFSET);
            let whole = network && first.u32(PAYLOAD_LEN) == Some(alen as u32);
            let key = at(1, "meta").and(at(2, "payload")).is_some();
            if whole && offset == Some(daddr) && key {
                let ng = at(3, "numgen");
                let modulus = ng.and_then(|x| x.u32(NG_MODULUS));
                let offset = ng.map(|x| x.u32(NG_OFFSET).unwrap_or(0));
                let map = at(4, "lookup").and_then(|x| x.string(LOOKUP_SET));
                if let (Some(modulus), Some(offset), Some(map)) = (modulus, offset, map) {
                    out.push((
                        Stmt::DnatSpread {
                            modulus,
                            offset,
                            map,
                        },
                        6,
                    ));
                }
                if let Some(map) = at(3, "lookup").and_then(|x| x.string(LOOKUP_SET)) {
                    out.push((Stmt::DestInSet { set: map.clone() }, 4));
                    out.push((Stmt::DestVmap { map }, 4));
                }
            }
            if whole && offset == Some(daddr) {
                if let Some(set) = at(1, "lookup").and_then(|x| x.string(LOOKUP_SET)) {
                    out.push((Stmt::DaddrInSet { set }, 2));
                }
            }
            if whole && offset == Some(saddr) {
                let pair = at(1, "payload").and(at(2, "lookup"));
                if let Some(set) = pair.and_then(|x| x.string(LOOKUP_SET)) {
                    out.push((Stmt::AddrPairInSet { set }, 3));
                }
                if let Some(set) = at(1, "lookup").and_then(|x| x.string(LOOKUP_SET)) {
                    out.push((Stmt::SaddrInSet { set }, 2));
                }
                if let Some(set) = at(1, "dynset").and_then(|x| x.string(DYNSET_SET_NAME)) {
                    out.push((Stmt::UpdateSaddr { set }, 2));
                }
            }
            let source = offset == Some(saddr);
            if network && (source || offset == Some(daddr)) {
                out.extend(addr_match(family, source, e));
            }
        }
        "meta" => match first.u32(META_KEY) {
            Some(META_L4PROTO) => {
                if at(1, "payload").is_some() {
                    let ng = at(2, "numgen");
                    let modulus = ng.and_then(|x| x.u32(NG_MODULUS));
                    let offset = ng.map(|x| x.u32(NG_OFFSET).unwrap_or(0));
                    let map = at(3, "lookup").and_then(|x| x.string(LOOKUP_SET));
                    if let (Some(modulus), Some(offset), Some(map)) = (modulus, offset, map) {
                        out.push((
                            Stmt::DnatSpreadPort {
                                modulus,
                                offset,
                                map,
                            },
                            5,
                        ));
                    }
                    if let Some(map) = at(2, "lookup").and_then(|x| x.string(LOOKUP_SET)) {
                        out.push((Stmt::PortInSet { set: map.clone() }, 3));
                        out.push((Stmt::PortVmap { map }, 3));
                    }
                }
                let number = at(1, "cmp").and_then(|x| x.value(CMP_DATA));
                if let Some(p) = number.and_then(protocol) {
                    out.push((Stmt::L4ProtoIs(p), 2));
                }
            }
            Some(META_IIFNAME) => {
                let cmp = at(1, "cmp");
                let pattern = cmp
                    .and_then(|x| x.value(CMP_DATA))
                    .and_then(IfacePattern::from_cmp_bytes);
                match (pattern, cmp.and_then(|x| x.u32(CMP_OP))) {
                    (Some(p), Some(CMP_EQ)) => out.push((Stmt::IifnameIs(p), 2)),
                    (Some(p), Some(CMP_NEQ)) => out.push((Stmt::IifnameIsNot(p), 2)),
                    _ => {}
                }
            }
            Some(META_MARK) => {
                let bitwise = at(1, "bitwise");
                let mask = bitwise.and_then(|x| x.ne32(BITWISE_MASK));
                let xor = bitwise.and_then(|x| x.ne32(BITWISE_XOR));
                if let (Some(mask), Some(xor)) = (mask, xor) {
                    if at(2, "cmp").is_some() {
                        out.push((Stmt::MarkBitsClear(mask), 3));
                    } else if mask == u32::MAX {
                        out.push((Stmt::MarkToggleBits(xor), 3));
                    } else {
                        out.push((Stmt::MarkSetBits(xor), 3));
                    }
                }
            }
            _ => {}
        },
        "ct" => {
            let state = first.u32(CT_KEY) == Some(CT_STATE) && first.u32(CT_DIRECTION).is_none();
            if state && at(1, "bitwise").and(at(2, "cmp")).is_some() {
                out.push((Stmt::CtStateNew, 3));
            }
        }
        "fib" => match first.u32(FIB_FLAGS) {
            Some(FIB_F_DADDR) => out.push((Stmt::FibDaddrLocal, 2)),
            Some(FIB_F_SADDR) => out.push((Stmt::FibSaddrLocal, 2)),
            _ => {}
        },
        "numgen" => {
            let value = at(1, "cmp").and_then(|x| x.ne32(CMP_DATA));
            if let (Some(modulus), Some(value)) = (first.u32(NG_MODULUS), value) {
                out.push((Stmt::NumgenIs { modulus, value }, 2));
            }
        }
        "masq" => out.push((Stmt::Masquerade, 1)),
        "reject" => match first.u32(REJECT_TYPE) {
            Some(REJECT_ICMP) => out.push((Stmt::Reject, 1)),
            Some(REJECT_TCP_RST) => out.push((Stmt::RejectTcpReset, 1)),
            _ => {}
        },
        "immediate" => {
            if let Some(v) = find(first.data, IMMEDIATE_DATA).and_then(data_verdict) {
                out.push((Stmt::Verdict(v), 1));
            }
            let ip = first.value(IMMEDIATE_DATA).and_then(|b| ip_addr(family, b));
            let port = at(1, "immediate").and_then(|x| x.value(IMMEDIATE_DATA));
            if let (Some(ip), Some([hi, lo])) = (ip, port) {
                out.push((Stmt::DnatTo(ip, u16::from_be_bytes([*hi, *lo])), 3));
            }
        }
        _ => {}
    }
    out
}

/// `ip saddr|daddr [!=] CIDR`: payload + cmp for whole-byte prefixes,
/// payload + bitwise + cmp for the others.
fn addr_match(family: Family, source: bool, e: &[Expr]) -> Vec<(Stmt, usize)> {
    let alen = addr_len(family);
    let stmt = |cmp: &Expr, prefix: Option<u32>| {
        let addr = cmp.value(CMP_DATA).filter(|d| d.len() <= alen)?;
        let prefix = prefix.unwrap_or(8 * addr.len() as u32);
        let mut full = addr.to_vec();
        full.resize(alen, 0);
        // A compare with host bits set never matches what a prefix
        // matches: left undecoded, so that it is replaced.
        let addr = ip_addr(family, &full)?;
        let cidr = Cidr::new(addr, u8::try_from(prefix).ok()?).filter(|c| c.addr() == addr)?;
        Some(match (source, cmp.u32(CMP_OP)?) {
            (true, CMP_EQ) => Stmt::SaddrIn(cidr),
            (true, CMP_NEQ) => Stmt::SaddrNotIn(cidr),
            (false, CMP_EQ) => Stmt::DaddrIn(cidr),
            (false, CMP_NEQ) => Stmt::DaddrNotIn(cidr),
            _ => return None,
        })
    };
    let at = |i: usize, name: &str| e.get(i).filter(|x| x.name == name);
    let mut out = Vec::new();
    if let (Some(bitwise), Some(cmp)) = (at(1, "bitwise"), at(2, "cmp")) {
        // The prefix length is the mask's leading ones.
        let mut prefix = 0;
        for b in bitwise.value(BITWISE_MASK).unwrap_or(&[]) {
            prefix += b.leading_ones();
            if *b != 0xff {
                break;
            }
        }
        out.extend(stmt(cmp, Some(prefix)).map(|s| (s, 3)));
    }
    if let Some(cmp) = at(1, "cmp") {
        out.extend(stmt(cmp, None).map(|s| (s, 2)));
    }
    out
}
