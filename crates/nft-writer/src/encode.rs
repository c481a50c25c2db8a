//! Encoding of [`Op`]s into nf_tables netlink messages with
//! `netlink-packet-netfilter`. Expressions the crate does not model
//! (`numgen`, `nat`, `masq`, `reject`, `ct`) are built as named expressions with
//! raw attributes; each has a byte-level test below.
//!
//! Register use follows `nft`: a concatenated key is loaded into 32-bit
//! registers starting at NFT_REG_1 (daddr in reg 1, l4proto in reg 9,
//! dport in reg 10, the random index in reg 11), so `nft list` shows our
//! rules exactly as it shows its own.

use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, Expressions, Hook, Immediate,
    InetHookNumber, ListAttribute, Lookup, Meta, MetaKey, NfTablesMessage, Operator, Payload,
    Register, RuleAttribute, RuleMessage, SetAttribute, SetElementAttribute, SetElementList,
    SetElementMessage, SetFlags, SetMessage, TableAttribute, TableFlags, TableMessage,
    Verdict as NlVerdict, VerdictAttribute,
};

use crate::model::*;
use crate::transaction::Op;

/// NLM_F_CREATE.
pub const NLM_F_CREATE: u16 = 0x400;
/// NLM_F_APPEND.
pub const NLM_F_APPEND: u16 = 0x800;

/// NFT_PAYLOAD_NETWORK_HEADER.
const BASE_NETWORK: u32 = 1;
/// NFT_PAYLOAD_TRANSPORT_HEADER.
const BASE_TRANSPORT: u32 = 2;
/// NFT_DATA_VERDICT: the data type of verdict maps.
pub(crate) const DATA_VERDICT: u32 = 0xffff_ff00;

/// nft's data type numbers (src/datatype.h), used for set key types.
const TYPE_INTEGER: u32 = 4;
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_IPV6_ADDR: u32 = 8;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;

/// Most elements in one NEWSETELEM message: the element list is one
/// netlink attribute, whose length field has 16 bits.
pub const ELEMENTS_PER_MESSAGE: usize = 400;

/// One message of a batch before framing: the nf_tables message, its
/// netlink flags, its family, and the index of the [`Op`] it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The message.
    pub message: NfTablesMessage,
    /// NLM_F_* flags besides NLM_F_REQUEST.
    pub flags: u16,
    /// Family of the table it touches.
    pub family: Family,
    /// Index of the operation in its transaction.
    pub op_index: usize,
}

/// Encodes every operation; an [`Op::AddElements`] becomes as many
/// messages as [`ELEMENTS_PER_MESSAGE`] requires.
pub fn encode_ops(ops: &[Op]) -> Vec<Encoded> {
    let mut out = Vec::new();
    for (op_index, op) in ops.iter().enumerate() {
        let mut push = |family, message, flags| {
            out.push(Encoded {
                message,
                flags,
                family,
                op_index,
            })
        };
        match op {
            Op::AddTable(t) => push(
                t.family,
                NfTablesMessage::NewTable(TableMessage {
                    attributes: vec![
                        TableAttribute::Name(t.name.clone()),
                        TableAttribute::Flags(TableFlags::empty()),
                        // `comment "nftopo layout N"`: the read-back's
                        // `Table::layout`.
                        TableAttribute::UserData(crate::udata::table_userdata()),
                    ],
                }),
                NLM_F_CREATE,
            ),
            Op::DeleteTable(t) => push(
                t.family,
                NfTablesMessage::DeleteTable(TableMessage {
                    attributes: vec![TableAttribute::Name(t.name.clone())],
                }),
                0,
            ),
            Op::AddChain { table, name, base } => {
                let mut attributes = vec![
                    ChainAttribute::Table(table.name.clone()),
                    ChainAttribute::Name(name.clone()),
                ];
                if let Some(b) = base {
                    attributes.push(ChainAttribute::Hook(vec![
                        Hook::Number(hook_number(b.hook).into()),
                        Hook::Priority(b.priority as u32),
                    ]));
                    // NF_ACCEPT is 1, NF_DROP 0.
                    attributes.push(ChainAttribute::Policy(u32::from(!b.policy_drop)));
                    attributes.push(ChainAttribute::Type(b.chain_type.nft_name().into()));
                }
                push(
                    table.family,
                    NfTablesMessage::NewChain(ChainMessage { attributes }),
                    NLM_F_CREATE,
                )
            }
            Op::AddRule { table, chain, rule } => push(
                table.family,
                NfTablesMessage::NewRule(RuleMessage {
                    attributes: vec![
                        RuleAttribute::Table(table.name.clone()),
                        RuleAttribute::Chain(chain.clone()),
                        RuleAttribute::Expressions(rule_exprs(table.family, rule)),
                    ],
                }),
                NLM_F_CREATE | NLM_F_APPEND,
            ),
            Op::AddMap { table, name, kind } => push(
                table.family,
                NfTablesMessage::NewSet(SetMessage {
                    attributes: set_attributes(
                        table.family,
                        &table.name,
                        name,
                        *kind,
                        op_index as u32 + 1,
                    ),
                }),
                NLM_F_CREATE,
            ),
            Op::FlushChain { table, name } => push(
                table.family,
                // NFT_MSG_DELRULE with a chain and no handle: every rule.
                NfTablesMessage::DeleteRule(RuleMessage {
                    attributes: vec![
                        RuleAttribute::Table(table.name.clone()),
                        RuleAttribute::Chain(name.clone()),
                    ],
                }),
                0,
            ),
            Op::DeleteChain { table, name } => push(
                table.family,
                NfTablesMessage::DeleteChain(ChainMessage {
                    attributes: vec![
                        ChainAttribute::Table(table.name.clone()),
                        ChainAttribute::Name(name.clone()),
                    ],
                }),
                0,
            ),
            Op::DeleteMap { table, name, .. } => push(
                table.family,
                NfTablesMessage::DeleteSet(SetMessage {
                    attributes: vec![
                        SetAttribute::Table(table.name.clone()),
                        SetAttribute::Name(name.clone()),
                    ],
                }),
                0,
            ),
            Op::DeleteElements { table, map, keys } => {
                for chunk in keys.chunks(ELEMENTS_PER_MESSAGE) {
                    let list = chunk
                        .iter()
                        .map(|k| {
                            ListAttribute::Element(vec![SetElementAttribute::Key(
                                DataAttribute::Value(key_bytes(k)),
                            )])
                        })
                        .collect();
                    push(
                        table.family,
                        NfTablesMessage::DeleteSetElement(SetElementMessage {
                            attributes: vec![
                                SetElementList::Table(table.name.clone()),
                                SetElementList::Set(map.clone()),
                                SetElementList::Elements(list),
                            ],
                        }),
                        0,
                    )
                }
            }
            Op::AddElements {
                table,
                map,
                kind: _,
                elements,
            } => {
                for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
                    let list = chunk
                        .iter()
                        .map(|(k, v)| {
                            let mut e =
                                vec![SetElementAttribute::Key(DataAttribute::Value(key_bytes(k)))];
                            if let Some(d) = value_data(v) {
                                e.push(SetElementAttribute::Data(d));
                            }
                            ListAttribute::Element(e)
                        })
                        .collect();
                    push(
                        table.family,
                        NfTablesMessage::NewSetElement(SetElementMessage {
                            attributes: vec![
                                SetElementList::Table(table.name.clone()),
                                SetElementList::Set(map.clone()),
                                SetElementList::Elements(list),
                            ],
                        }),
                        NLM_F_CREATE,
                    )
                }
            }
        }
    }
    out
}

fn hook_number(h: HookPoint) -> InetHookNumber {
    match h {
        HookPoint::Prerouting => InetHookNumber::PreRouting,
        HookPoint::Input => InetHookNumber::LocalIn,
        HookPoint::Forward => InetHookNumber::Forward,
        HookPoint::Output => InetHookNumber::LocalOut,
        HookPoint::Postrouting => InetHookNumber::PostRouting,
    }
}

/// nft's concatenated type number: each part shifted in by 6 bits.
fn concat_type(parts: &[u32]) -> u32 {
    parts.iter().fold(0, |acc, p| (acc << 6) | p)
}

fn addr_type(family: Family) -> u32 {
    match family {
        Family::Ip => TYPE_IPV4_ADDR,
        Family::Ip6 => TYPE_IPV6_ADDR,
    }
}

fn addr_len(family: Family) -> u32 {
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
fn set_attributes(
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

fn proto_port(out: &mut Vec<u8>, proto: api_watch::Protocol, port: u16) {
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

fn value_data(v: &ElemValue) -> Option<DataAttribute> {
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

fn verdict_attrs(v: &Verdict) -> Vec<VerdictAttribute> {
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

type ExprList = Vec<ListAttribute<netlink_packet_netfilter::nftables::ExpressionAttribute>>;

/// The expressions of a rule, in order.
pub fn rule_exprs(family: Family, rule: &Rule) -> ExprList {
    let mut e: Vec<Expressions> = Vec::new();
    for stmt in &rule.0 {
        stmt_exprs(family, stmt, &mut e);
    }
    e.into_iter().map(ListAttribute::from).collect()
}

fn payload(base: u32, offset: u32, len: u32, dreg: Register) -> Expressions {
    Expressions::Payload(vec![
        Payload::DestinationRegister(dreg),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
}

fn meta_load(key: MetaKey, dreg: Register) -> Expressions {
    Expressions::Meta(vec![Meta::Key(key), Meta::DestinationRegister(dreg)])
}

fn bitwise(mask: u32, xor: u32) -> Expressions {
    Expressions::Bitwise(vec![
        Bitwise::SourceRegister(Register::Reg1),
        Bitwise::DestinationRegister(Register::Reg1),
        Bitwise::Length(4),
        Bitwise::Mask(DataAttribute::Value(mask.to_ne_bytes().to_vec())),
        Bitwise::Xor(DataAttribute::Value(xor.to_ne_bytes().to_vec())),
    ])
}

fn cmp(op: Operator, data: Vec<u8>) -> Expressions {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data)),
    ])
}

fn daddr_offset(family: Family) -> u32 {
    match family {
        Family::Ip => 16,
        Family::Ip6 => 24,
    }
}

fn saddr_offset(family: Family) -> u32 {
    match family {
        Family::Ip => 12,
        Family::Ip6 => 8,
    }
}

/// Loads `daddr . l4proto . dport` into reg 1 onwards and returns the next
/// free 32-bit register.
fn load_service_key(family: Family, e: &mut Vec<Expressions>) -> u32 {
    let alen = addr_len(family);
    e.push(payload(
        BASE_NETWORK,
        daddr_offset(family),
        alen,
        Register::Reg1,
    ));
    let next = 8 + alen / 4; // NFT_REG32_00 is 8 and overlaps NFT_REG_1
    e.push(meta_load(MetaKey::L4Proto, reg32(next)));
    e.push(payload(BASE_TRANSPORT, 2, 2, reg32(next + 1)));
    next + 2
}

fn reg32(n: u32) -> Register {
    match n {
        8 => Register::Reg32_00,
        9 => Register::Reg32_01,
        10 => Register::Reg32_02,
        11 => Register::Reg32_03,
        12 => Register::Reg32_04,
        13 => Register::Reg32_05,
        14 => Register::Reg32_06,
        15 => Register::Reg32_07,
        other => Register::Other(other),
    }
}

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// A named expression with raw attributes (for expressions the netlink
/// crate does not model).
fn raw(name: &str, attrs: Vec<(u16, Vec<u8>)>) -> Expressions {
    Expressions::Other {
        expression_type: name.into(),
        attributes: attrs
            .into_iter()
            .map(|(k, v)| DefaultNla::new(k, v))
            .collect(),
    }
}

/// `numgen random mod N` into `dreg` (NFTA_NG_DREG 1, MODULUS 2, TYPE 3;
/// NFT_NG_RANDOM is 1).
pub fn numgen_random(modulus: u32, dreg: u32) -> Expressions {
    numgen_random_offset(modulus, 0, dreg)
}

/// `numgen random mod N offset O` into `dreg` (NFTA_NG_OFFSET 4, sent
/// only when not 0, as `nft` does).
pub fn numgen_random_offset(modulus: u32, offset: u32, dreg: u32) -> Expressions {
    let mut attrs = vec![(1, be32(dreg)), (2, be32(modulus)), (3, be32(1))];
    if offset != 0 {
        attrs.push((4, be32(offset)));
    }
    raw("numgen", attrs)
}

/// `dnat` to the address in `addr_reg` and the port in `port_reg`
/// (NFTA_NAT_TYPE 1 = NFT_NAT_DNAT 1, FAMILY 2, REG_ADDR_MIN 3,
/// REG_PROTO_MIN 5).
pub fn nat_dnat(family: Family, addr_reg: u32, port_reg: u32) -> Expressions {
    raw("nat", nat_attrs(family, addr_reg, port_reg))
}

fn nat_attrs(family: Family, addr_reg: u32, port_reg: u32) -> Vec<(u16, Vec<u8>)> {
    let nfproto = match family {
        Family::Ip => 2,
        Family::Ip6 => 10,
    };
    vec![
        (1, be32(1)),
        (2, be32(nfproto)),
        (3, be32(addr_reg)),
        (5, be32(port_reg)),
    ]
}

/// `dnat to ADDR:PORT` from immediates in reg 1 and reg 2, with
/// NFTA_NAT_FLAGS 7 = NF_NAT_RANGE_PROTO_SPECIFIED 2, as `nft` sends it.
pub fn nat_dnat_fixed(family: Family) -> Expressions {
    let mut attrs = nat_attrs(family, 1, 2);
    attrs.push((7, be32(2)));
    raw("nat", attrs)
}

/// `fib {saddr|daddr} type` into reg 1 (NFTA_FIB_DREG 1, RESULT 2 =
/// NFT_FIB_RESULT_ADDRTYPE 3, FLAGS 3 = NFTA_FIB_F_SADDR 1 or
/// NFTA_FIB_F_DADDR 2).
pub fn fib_addrtype(daddr: bool) -> Expressions {
    let flags = if daddr { 2 } else { 1 };
    raw("fib", vec![(1, be32(1)), (2, be32(3)), (3, be32(flags))])
}

/// `update @SET { key in reg 1 }` (NFTA_DYNSET_SET_NAME 1, OP 3 =
/// NFT_DYNSET_OP_UPDATE 1, SREG_KEY 4).
pub fn dynset_update(set: &str) -> Expressions {
    let mut name = set.as_bytes().to_vec();
    name.push(0);
    raw("dynset", vec![(1, name), (3, be32(1)), (4, be32(1))])
}

/// `ct state` into reg 1 (NFTA_CT_DREG 1, NFTA_CT_KEY 2 = NFT_CT_STATE
/// 0; no direction).
pub fn ct_state() -> Expressions {
    raw("ct", vec![(1, be32(1)), (2, be32(0))])
}

/// NF_CT_STATE_BIT(IP_CT_NEW): the `new` bit of `ct state`, in host order.
const CT_STATE_NEW: u32 = 1 << 3;

/// `masquerade fully-random` (NFTA_MASQ_FLAGS 1 =
/// NF_NAT_RANGE_PROTO_RANDOM_FULLY 0x10).
pub fn masquerade() -> Expressions {
    raw("masq", vec![(1, be32(0x10))])
}

/// `reject` with port unreachable (NFTA_REJECT_TYPE 1 =
/// NFT_REJECT_ICMP_UNREACH 0; NFTA_REJECT_ICMP_CODE 2, a u8: ICMP's port
/// unreachable is 3, ICMPv6's is 4).
pub fn reject(family: Family) -> Expressions {
    let code = match family {
        Family::Ip => 3,
        Family::Ip6 => 4,
    };
    raw("reject", vec![(1, be32(0)), (2, vec![code])])
}

/// `reject with tcp reset` (NFTA_REJECT_TYPE 1 = NFT_REJECT_TCP_RST 1).
pub fn reject_tcp_reset() -> Expressions {
    raw("reject", vec![(1, be32(1))])
}

/// Compares the address at `offset` with `cidr` (`==` or `!=`): whole
/// bytes are compared directly, other prefixes through a mask, as `nft`
/// does.
fn addr_prefix(family: Family, offset: u32, cidr: &Cidr, op: Operator, e: &mut Vec<Expressions>) {
    let bytes = addr_bytes(&cidr.addr());
    if cidr.prefix_len().is_multiple_of(8) {
        let n = u32::from(cidr.prefix_len() / 8);
        e.push(payload(BASE_NETWORK, offset, n, Register::Reg1));
        e.push(cmp(op, bytes[..n as usize].to_vec()));
    } else {
        let len = addr_len(family);
        e.push(payload(BASE_NETWORK, offset, len, Register::Reg1));
        e.push(Expressions::Bitwise(vec![
            Bitwise::SourceRegister(Register::Reg1),
            Bitwise::DestinationRegister(Register::Reg1),
            Bitwise::Length(len),
            Bitwise::Mask(DataAttribute::Value(prefix_mask(
                cidr.prefix_len(),
                bytes.len(),
            ))),
            Bitwise::Xor(DataAttribute::Value(vec![0; bytes.len()])),
        ]));
        e.push(cmp(op, bytes));
    }
}

fn lookup(set: &str, dreg: Option<Register>) -> Expressions {
    let mut attrs = vec![
        Lookup::Set(set.into()),
        Lookup::SourceRegister(Register::Reg1),
    ];
    if let Some(d) = dreg {
        attrs.push(Lookup::DestinationRegister(d));
    }
    Expressions::Lookup(attrs)
}

/// `meta l4proto . th dport` into reg 1 and reg 9.
fn load_port_key(e: &mut Vec<Expressions>) -> u32 {
    e.push(meta_load(MetaKey::L4Proto, Register::Reg1));
    e.push(payload(BASE_TRANSPORT, 2, 2, reg32(9)));
    10
}

fn stmt_exprs(family: Family, stmt: &Stmt, e: &mut Vec<Expressions>) {
    let alen = addr_len(family);
    match stmt {
        Stmt::DestVmap { map } => {
            load_service_key(family, e);
            e.push(lookup(map, Some(Register::Verdict)));
        }
        Stmt::PortVmap { map } => {
            load_port_key(e);
            e.push(lookup(map, Some(Register::Verdict)));
        }
        Stmt::SaddrIn(c) => addr_prefix(family, saddr_offset(family), c, Operator::Equal, e),
        Stmt::SaddrNotIn(c) => addr_prefix(family, saddr_offset(family), c, Operator::NotEqual, e),
        Stmt::DaddrIn(c) => addr_prefix(family, daddr_offset(family), c, Operator::Equal, e),
        Stmt::DaddrNotIn(c) => addr_prefix(family, daddr_offset(family), c, Operator::NotEqual, e),
        Stmt::FibDaddrLocal | Stmt::FibSaddrLocal => {
            e.push(fib_addrtype(matches!(stmt, Stmt::FibDaddrLocal)));
            // RTN_LOCAL, in host byte order.
            e.push(cmp(Operator::Equal, 2u32.to_ne_bytes().to_vec()));
        }
        Stmt::AddrPairInSet { set } => {
            e.push(payload(
                BASE_NETWORK,
                saddr_offset(family),
                alen,
                Register::Reg1,
            ));
            e.push(payload(
                BASE_NETWORK,
                daddr_offset(family),
                alen,
                reg32(8 + alen / 4),
            ));
            e.push(lookup(set, None));
        }
        Stmt::SaddrInSet { set } => {
            e.push(payload(
                BASE_NETWORK,
                saddr_offset(family),
                alen,
                Register::Reg1,
            ));
            e.push(lookup(set, None));
        }
        Stmt::DaddrInSet { set } => {
            e.push(payload(
                BASE_NETWORK,
                daddr_offset(family),
                alen,
                Register::Reg1,
            ));
            e.push(lookup(set, None));
        }
        // As `nft` sends it: `[ ct load state => reg 1 ] [ bitwise reg 1 =
        // ( reg 1 & 0x00000008 ) ^ 0x00000000 ] [ cmp neq reg 1 0x00000000 ]`.
        Stmt::CtStateNew => {
            e.push(ct_state());
            e.push(bitwise(CT_STATE_NEW, 0));
            e.push(cmp(Operator::NotEqual, 0u32.to_ne_bytes().to_vec()));
        }
        Stmt::NumgenIs { modulus, value } => {
            e.push(numgen_random(*modulus, 1));
            e.push(cmp(Operator::Equal, value.to_ne_bytes().to_vec()));
        }
        Stmt::L4ProtoIs(p) => {
            e.push(meta_load(MetaKey::L4Proto, Register::Reg1));
            e.push(cmp(Operator::Equal, vec![p.number()]));
        }
        Stmt::MarkBitsClear(bits) => {
            e.push(meta_load(MetaKey::Mark, Register::Reg1));
            e.push(bitwise(*bits, 0));
            e.push(cmp(Operator::Equal, 0u32.to_ne_bytes().to_vec()));
        }
        Stmt::MarkSetBits(bits) => {
            e.push(meta_load(MetaKey::Mark, Register::Reg1));
            e.push(bitwise(!bits, *bits));
            e.push(meta_set_mark());
        }
        Stmt::MarkToggleBits(bits) => {
            e.push(meta_load(MetaKey::Mark, Register::Reg1));
            e.push(bitwise(u32::MAX, *bits));
            e.push(meta_set_mark());
        }
        Stmt::UpdateSaddr { set } => {
            e.push(payload(
                BASE_NETWORK,
                saddr_offset(family),
                alen,
                Register::Reg1,
            ));
            e.push(dynset_update(set));
        }
        Stmt::Masquerade => e.push(masquerade()),
        Stmt::DnatSpread {
            modulus,
            offset,
            map,
        } => {
            let next = load_service_key(family, e);
            e.push(numgen_random_offset(*modulus, *offset, next));
            e.push(lookup(map, Some(Register::Reg1)));
            e.push(nat_dnat(family, 1, 8 + alen / 4));
        }
        Stmt::DnatSpreadPort {
            modulus,
            offset,
            map,
        } => {
            let next = load_port_key(e);
            e.push(numgen_random_offset(*modulus, *offset, next));
            e.push(lookup(map, Some(Register::Reg1)));
            e.push(nat_dnat(family, 1, 8 + alen / 4));
        }
        Stmt::DnatTo(ip, port) => {
            e.push(Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Reg1),
                Immediate::Data(DataAttribute::Value(addr_bytes(ip))),
            ]));
            e.push(Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Reg2),
                Immediate::Data(DataAttribute::Value(port.to_be_bytes().to_vec())),
            ]));
            e.push(nat_dnat_fixed(family));
        }
        Stmt::Reject => e.push(reject(family)),
        Stmt::RejectTcpReset => e.push(reject_tcp_reset()),
        // Read back only: sent again as it was read.
        Stmt::Unknown { name, data } => e.push(raw_expr(name, data)),
        Stmt::Verdict(v) => e.push(Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Verdict),
            Immediate::Data(DataAttribute::Verdict(verdict_attrs(v))),
        ])),
    }
}

/// An expression kept as read: its name and its NFTA_EXPR_DATA bytes.
fn raw_expr(name: &str, data: &[u8]) -> Expressions {
    let attributes = netlink_packet_core::NlasIterator::new(data)
        .filter_map(|nla| nla.ok())
        .filter_map(|nla| <DefaultNla as netlink_packet_core::Parseable<_>>::parse(&nla).ok())
        .collect();
    Expressions::Other {
        expression_type: name.to_string(),
        attributes,
    }
}

fn meta_set_mark() -> Expressions {
    Expressions::Meta(vec![
        Meta::Key(MetaKey::Mark),
        Meta::SourceRegister(Register::Reg1),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn emit(e: Expressions) -> Vec<u8> {
        let attr = ListAttribute::from(e);
        let mut buf = vec![0; attr.buffer_len()];
        attr.emit(&mut buf);
        buf
    }

    /// A list element (NFTA_LIST_ELEM, nested) holding NFTA_EXPR_NAME and
    /// the nested NFTA_EXPR_DATA with `attrs`, each u32 attribute as
    /// (type, big-endian value) and the rest raw.
    fn expected(name: &str, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        fn nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
            out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(value);
            while !out.len().is_multiple_of(4) {
                out.push(0);
            }
        }
        let mut data = Vec::new();
        for (k, v) in attrs {
            nla(&mut data, *k, v);
        }
        let mut inner = Vec::new();
        let mut cname = name.as_bytes().to_vec();
        cname.push(0);
        nla(&mut inner, 1, &cname);
        nla(&mut inner, 2 | 0x8000, &data);
        let mut out = Vec::new();
        nla(&mut out, 1 | 0x8000, &inner);
        out
    }

    #[test]
    fn numgen_random_encodes_register_modulus_and_type() {
        let want = expected(
            "numgen",
            &[(1, &[0, 0, 0, 11]), (2, &[0, 0, 0, 5]), (3, &[0, 0, 0, 1])],
        );
        assert_eq!(emit(numgen_random(5, 11)), want);
        // The first bytes, spelled out: a 44-byte nested list element.
        assert_eq!(&want[..4], &[0x2c, 0x00, 0x01, 0x80]);
    }

    #[test]
    fn dnat_encodes_type_family_and_registers() {
        let want = expected(
            "nat",
            &[
                (1, &[0, 0, 0, 1]),
                (2, &[0, 0, 0, 2]),
                (3, &[0, 0, 0, 1]),
                (5, &[0, 0, 0, 9]),
            ],
        );
        assert_eq!(emit(nat_dnat(Family::Ip, 1, 9)), want);
    }

    #[test]
    fn masquerade_asks_for_fully_random_ports() {
        assert_eq!(
            emit(masquerade()),
            expected("masq", &[(1, &[0, 0, 0, 0x10])])
        );
    }

    #[test]
    fn reject_is_icmp_port_unreachable_with_a_one_byte_code() {
        let got = emit(reject(Family::Ip));
        assert_eq!(got, expected("reject", &[(1, &[0, 0, 0, 0]), (2, &[3])]));
        // NFTA_REJECT_ICMP_CODE is a u8: a 5-byte attribute padded to 8.
        assert!(got.windows(5).any(|w| w == [5, 0, 2, 0, 3]));
    }

    #[test]
    fn ct_state_loads_the_state_key_into_register_1() {
        assert_eq!(
            emit(ct_state()),
            expected("ct", &[(1, &[0, 0, 0, 1]), (2, &[0, 0, 0, 0])])
        );
    }

    #[test]
    fn reject_with_tcp_reset_has_no_icmp_code() {
        assert_eq!(
            emit(reject_tcp_reset()),
            expected("reject", &[(1, &[0, 0, 0, 1])])
        );
    }

    #[test]
    fn keys_pad_each_part_to_32_bits_with_the_index_in_host_order() {
        let k = ElemKey::Service {
            addr: "10.43.0.10".parse().unwrap(),
            proto: api_watch::Protocol::Udp,
            port: 53,
            index: Some(2),
        };
        let mut want = vec![10, 43, 0, 10, 17, 0, 0, 0, 0, 53, 0, 0];
        want.extend_from_slice(&2u32.to_ne_bytes());
        assert_eq!(key_bytes(&k), want);
    }

    #[test]
    fn a_large_element_list_is_split_into_messages_that_fit_a_netlink_attribute() {
        let table = crate::TableRef {
            family: Family::Ip,
            name: "t".into(),
        };
        let elements: Vec<_> = (0..1000u32)
            .map(|i| {
                (
                    ElemKey::Service {
                        addr: "10.43.0.1".parse().unwrap(),
                        proto: api_watch::Protocol::Tcp,
                        port: 80,
                        index: Some(i),
                    },
                    ElemValue::Dnat("10.42.0.1".parse().unwrap(), 80),
                )
            })
            .collect();
        let enc = encode_ops(&[Op::AddElements {
            table,
            map: "m".into(),
            kind: MapKind::EndpointDnat,
            elements,
        }]);
        assert_eq!(enc.len(), 3);
        for e in &enc {
            assert_eq!(e.op_index, 0);
            assert!(e.message.buffer_len() < 65_535);
        }
    }
}
