//! nf_tables operations from fuzz input, and a small validating parser of
//! the batch the encoder frames: every netlink header's length and
//! sequence number, every attribute's length, padding and nesting, and a
//! decode of each message with `netlink-packet-netfilter` whose re-encoding
//! must give back the same bytes.

use std::net::IpAddr;

use api_watch::Protocol;
use arbitrary::{Result, Unstructured};
use netlink_packet_core::NetlinkMessage;
use netlink_packet_netfilter::NetfilterMessage;
use nft_writer::*;

const NAMES: &[&str] = &[
    "nftopo",
    "services",
    "service-ips",
    "service-endpoints",
    "spread-3",
    "svc-ABCDEFGH-default/web/tcp/80",
];

/// A name as the planner makes them: from the pool, or arbitrary up to
/// the kernel's 255 bytes (NFT_NAME_MAXLEN 256 with the NUL). Never
/// empty and without NUL.
fn name(u: &mut Unstructured) -> Result<String> {
    if u.ratio(3, 4)? {
        return Ok((*u.choose(NAMES)?).to_string());
    }
    let mut s: String = u.arbitrary::<String>()?.replace('\0', "_");
    while s.len() > 255 {
        s.pop();
    }
    if s.is_empty() {
        s.push('x');
    }
    Ok(s)
}

fn family(u: &mut Unstructured) -> Result<Family> {
    Ok(*u.choose(&[Family::Ip, Family::Ip6])?)
}

fn ip(u: &mut Unstructured, family: Family) -> Result<IpAddr> {
    Ok(match family {
        Family::Ip => IpAddr::V4(u.arbitrary::<u32>()?.into()),
        Family::Ip6 => IpAddr::V6(u.arbitrary::<u128>()?.into()),
    })
}

fn cidr(u: &mut Unstructured, family: Family) -> Result<Cidr> {
    let addr = ip(u, family)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = u.int_in_range(0..=max)?;
    Ok(Cidr::parse(&format!("{addr}/{len}")).expect("a valid prefix"))
}

fn protocol(u: &mut Unstructured) -> Result<Protocol> {
    Ok(*u.choose(&[Protocol::Tcp, Protocol::Udp, Protocol::Sctp])?)
}

fn verdict(u: &mut Unstructured) -> Result<Verdict> {
    Ok(match u.int_in_range(0..=4)? {
        0 => Verdict::Accept,
        1 => Verdict::Drop,
        2 => Verdict::Return,
        3 => Verdict::Jump(name(u)?),
        _ => Verdict::Goto(name(u)?),
    })
}

/// An input interface match: arbitrary text where it makes a valid name,
/// else `cali*`.
fn iface(u: &mut Unstructured) -> Result<IfacePattern> {
    let text: String = u.arbitrary()?;
    let made = if u.arbitrary()? {
        IfacePattern::prefix(&text)
    } else {
        IfacePattern::exact(&text)
    };
    Ok(made.unwrap_or_else(|_| IfacePattern::prefix("cali").expect("a valid prefix")))
}

fn stmt(u: &mut Unstructured, f: Family) -> Result<Stmt> {
    Ok(match u.int_in_range(0..=24)? {
        0 => Stmt::DestVmap { map: name(u)? },
        1 => Stmt::PortVmap { map: name(u)? },
        2 => Stmt::SaddrIn(cidr(u, f)?),
        3 => Stmt::SaddrNotIn(cidr(u, f)?),
        4 => Stmt::DaddrIn(cidr(u, f)?),
        5 => Stmt::DaddrNotIn(cidr(u, f)?),
        6 => Stmt::FibDaddrLocal,
        7 => Stmt::FibSaddrLocal,
        8 => Stmt::AddrPairInSet { set: name(u)? },
        9 => Stmt::SaddrInSet { set: name(u)? },
        10 => Stmt::NumgenIs {
            modulus: u.int_in_range(1..=u32::MAX)?,
            value: u.arbitrary()?,
        },
        11 => Stmt::L4ProtoIs(protocol(u)?),
        12 => Stmt::MarkBitsClear(u.arbitrary()?),
        13 => Stmt::MarkSetBits(u.arbitrary()?),
        14 => Stmt::MarkToggleBits(u.arbitrary()?),
        15 => Stmt::UpdateSaddr { set: name(u)? },
        16 => Stmt::Masquerade,
        17 => Stmt::DnatSpread {
            modulus: u.int_in_range(1..=u32::MAX)?,
            offset: u.arbitrary()?,
            map: name(u)?,
        },
        18 => Stmt::DnatSpreadPort {
            modulus: u.int_in_range(1..=u32::MAX)?,
            offset: u.arbitrary()?,
            map: name(u)?,
        },
        19 => Stmt::DnatTo(ip(u, f)?, u.arbitrary()?),
        20 => Stmt::Reject,
        21 => Stmt::RejectTcpReset,
        22 => Stmt::IifnameIs(iface(u)?),
        23 => Stmt::IifnameIsNot(iface(u)?),
        _ => Stmt::Verdict(verdict(u)?),
    })
}

fn map_kind(u: &mut Unstructured) -> Result<MapKind> {
    Ok(match u.int_in_range(0..=6)? {
        0 => MapKind::ServiceVerdict,
        1 => MapKind::PortVerdict,
        2 => MapKind::EndpointDnat,
        3 => MapKind::PortEndpointDnat,
        4 => MapKind::AddrPairSet,
        5 => MapKind::AddrSet,
        _ => MapKind::AffinitySet {
            timeout: u.arbitrary()?,
        },
    })
}

/// An element that fits a map of `kind` in `family` (as the planner only
/// makes those).
fn element(u: &mut Unstructured, f: Family, kind: MapKind) -> Result<(ElemKey, ElemValue)> {
    Ok(match kind {
        MapKind::ServiceVerdict => (
            ElemKey::Service {
                addr: ip(u, f)?,
                proto: protocol(u)?,
                port: u.arbitrary()?,
                index: None,
            },
            ElemValue::Verdict(verdict(u)?),
        ),
        MapKind::EndpointDnat => (
            ElemKey::Service {
                addr: ip(u, f)?,
                proto: protocol(u)?,
                port: u.arbitrary()?,
                index: Some(u.arbitrary()?),
            },
            ElemValue::Dnat(ip(u, f)?, u.arbitrary()?),
        ),
        MapKind::PortVerdict => (
            ElemKey::Port {
                proto: protocol(u)?,
                port: u.arbitrary()?,
                index: None,
            },
            ElemValue::Verdict(verdict(u)?),
        ),
        MapKind::PortEndpointDnat => (
            ElemKey::Port {
                proto: protocol(u)?,
                port: u.arbitrary()?,
                index: Some(u.arbitrary()?),
            },
            ElemValue::Dnat(ip(u, f)?, u.arbitrary()?),
        ),
        MapKind::AddrPairSet => (ElemKey::Pair(ip(u, f)?, ip(u, f)?), ElemValue::Member),
        MapKind::AddrSet => (ElemKey::Addr(ip(u, f)?), ElemValue::Member),
        MapKind::AffinitySet { .. } => (ElemKey::Pair(ip(u, f)?, ip(u, f)?), ElemValue::Member),
        // Never planned (read-back only); raw keys are what deletes use.
        MapKind::Other { .. } => (ElemKey::Raw(u.arbitrary()?), ElemValue::Member),
    })
}

fn table(u: &mut Unstructured) -> Result<TableRef> {
    Ok(TableRef {
        family: family(u)?,
        name: name(u)?,
    })
}

fn base(u: &mut Unstructured) -> Result<Option<BaseChain>> {
    if u.arbitrary()? {
        return Ok(None);
    }
    Ok(Some(BaseChain {
        chain_type: *u.choose(&[ChainType::Nat, ChainType::Filter])?,
        hook: *u.choose(&[
            HookPoint::Prerouting,
            HookPoint::Input,
            HookPoint::Forward,
            HookPoint::Output,
            HookPoint::Postrouting,
        ])?,
        priority: u.arbitrary()?,
        policy_drop: u.arbitrary()?,
    }))
}

/// One operation, shaped as the planner and the differ make them.
pub fn op(u: &mut Unstructured) -> Result<Op> {
    let t = table(u)?;
    let f = t.family;
    Ok(match u.int_in_range(0..=9)? {
        0 => Op::AddTable(t),
        1 => Op::DeleteTable(t),
        2 => Op::AddChain {
            table: t,
            name: name(u)?,
            base: base(u)?,
        },
        3 => {
            let n = u.int_in_range(0..=8)?;
            let stmts = (0..n).map(|_| stmt(u, f)).collect::<Result<_>>()?;
            Op::AddRule {
                table: t,
                chain: name(u)?,
                rule: Rule(stmts),
            }
        }
        4 => Op::AddMap {
            table: t,
            name: name(u)?,
            kind: map_kind(u)?,
        },
        5 => Op::FlushChain {
            table: t,
            name: name(u)?,
        },
        6 => Op::DeleteChain {
            table: t,
            name: name(u)?,
        },
        7 => Op::DeleteMap {
            table: t,
            name: name(u)?,
            kind: map_kind(u)?,
        },
        8 => {
            let kind = map_kind(u)?;
            // Sometimes hundreds: the encoder splits them into messages of 400.
            let n = if u.ratio(1, 50)? {
                u.int_in_range(0..=900)?
            } else {
                u.int_in_range(0..=8)?
            };
            let keys = (0..n)
                .map(|_| element(u, f, kind).map(|(k, _)| k))
                .collect::<Result<_>>()?;
            Op::DeleteElements {
                table: t,
                map: name(u)?,
                keys,
            }
        }
        _ => {
            let kind = map_kind(u)?;
            let n = if u.ratio(1, 50)? {
                u.int_in_range(0..=900)?
            } else {
                u.int_in_range(0..=8)?
            };
            let elements = (0..n).map(|_| element(u, f, kind)).collect::<Result<_>>()?;
            Op::AddElements {
                table: t,
                map: name(u)?,
                kind,
                elements,
            }
        }
    })
}

const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;
const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_REQUEST: u16 = 1;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Attributes fill `data` exactly: each at least a header long, inside
/// `data`, padded to 4 bytes; nested ones (NLA_F_NESTED) are checked the
/// same way. Returns how many attributes were seen, nested included.
pub fn check_attributes(data: &[u8], depth: usize) -> usize {
    assert!(depth < 32, "attributes nested {depth} deep");
    let mut at = 0;
    let mut seen = 0;
    while at < data.len() {
        assert!(
            data.len() - at >= NLA_HDRLEN,
            "{} stray bytes after the attributes",
            data.len() - at
        );
        let len = usize::from(u16_at(data, at));
        let kind = u16_at(data, at + 2);
        assert!(len >= NLA_HDRLEN, "attribute length {len} < its header");
        assert!(
            at + len <= data.len(),
            "attribute of {len} bytes at {at} overruns its {} byte parent",
            data.len()
        );
        seen += 1;
        if kind & NLA_F_NESTED != 0 {
            seen += check_attributes(&data[at + NLA_HDRLEN..at + len], depth + 1);
        }
        let next = at + align4(len);
        assert!(
            next <= data.len(),
            "attribute padding overruns its parent (at {at}, length {len}, parent {})",
            data.len()
        );
        assert!(
            data[at + len..next].iter().all(|&b| b == 0),
            "non-zero padding"
        );
        at = next;
    }
    seen
}

/// Checks a batch from [`build_batch`] of `messages` encoded messages
/// numbered from `first_seq`: batch begin, the messages, batch end, each
/// header consistent with its body, every attribute well formed, and every
/// nf_tables message decoding to a value that encodes to the same bytes.
pub fn check_batch(buf: &[u8], encoded: &[encode::Encoded], first_seq: u32) {
    let mut at = 0;
    let mut index = 0usize;
    while at < buf.len() {
        assert!(buf.len() - at >= NLMSG_HDRLEN, "truncated header at {at}");
        let len = u32_at(buf, at) as usize;
        let kind = u16_at(buf, at + 4);
        let flags = u16_at(buf, at + 6);
        let seq = u32_at(buf, at + 8);
        assert!(len >= NLMSG_HDRLEN + 4, "message length {len} at {at}");
        assert!(at + len <= buf.len(), "message at {at} overruns the batch");
        assert_eq!(
            seq,
            first_seq.wrapping_add(index as u32),
            "sequence number of message {index}"
        );
        assert!(
            flags & NLM_F_REQUEST != 0,
            "message {index} is not a request"
        );
        let message = &buf[at..at + len];
        let last = index == encoded.len() + 1;
        match index {
            0 => assert_eq!(kind, NFNL_MSG_BATCH_BEGIN, "batch begin"),
            _ if last => assert_eq!(kind, NFNL_MSG_BATCH_END, "batch end"),
            _ => {
                assert_eq!(
                    kind >> 8,
                    NFNL_SUBSYS_NFTABLES,
                    "subsystem of message {index}"
                );
                check_attributes(&message[NLMSG_HDRLEN + 4..], 0);
                // The library's set-element parser formats its whole input
                // for every attribute (quadratic): decode the small ones.
                if message.len() > 2048 {
                    at += align4(len);
                    index += 1;
                    continue;
                }
                let decoded = NetlinkMessage::<NetfilterMessage>::deserialize(message)
                    .unwrap_or_else(|e| panic!("message {index} does not decode: {e}"));
                let mut again = vec![0; decoded.buffer_len()];
                decoded.serialize(&mut again);
                assert!(
                    again == message,
                    "message {index} changes through decode and encode"
                );
            }
        }
        at += align4(len);
        index += 1;
    }
    assert_eq!(at, buf.len(), "the batch has stray bytes");
    assert_eq!(index, encoded.len() + 2, "messages in the batch");
}
