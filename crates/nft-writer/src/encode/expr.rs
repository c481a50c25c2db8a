//! Rule expressions: each [`Stmt`] as the nf_tables expressions `nft`
//! emits for it (payload, meta, cmp, bitwise, lookup, and the named
//! expressions the crate does not model, with raw attributes).

use super::*;

pub(super) type ExprList =
    Vec<ListAttribute<netlink_packet_netfilter::nftables::ExpressionAttribute>>;

/// The expressions of a rule, in order.
pub fn rule_exprs(family: Family, rule: &Rule) -> ExprList {
    let mut e: Vec<Expressions> = Vec::new();
    for stmt in &rule.0 {
        stmt_exprs(family, stmt, &mut e);
    }
    e.into_iter().map(ListAttribute::from).collect()
}

pub(super) fn payload(base: u32, offset: u32, len: u32, dreg: Register) -> Expressions {
    Expressions::Payload(vec![
        Payload::DestinationRegister(dreg),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
}

pub(super) fn meta_load(key: MetaKey, dreg: Register) -> Expressions {
    Expressions::Meta(vec![Meta::Key(key), Meta::DestinationRegister(dreg)])
}

pub(super) fn bitwise(mask: u32, xor: u32) -> Expressions {
    Expressions::Bitwise(vec![
        Bitwise::SourceRegister(Register::Reg1),
        Bitwise::DestinationRegister(Register::Reg1),
        Bitwise::Length(4),
        Bitwise::Mask(DataAttribute::Value(mask.to_ne_bytes().to_vec())),
        Bitwise::Xor(DataAttribute::Value(xor.to_ne_bytes().to_vec())),
    ])
}

pub(super) fn cmp(op: Operator, data: Vec<u8>) -> Expressions {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data)),
    ])
}

pub(super) fn daddr_offset(family: Family) -> u32 {
    match family {
        Family::Ip => 16,
        Family::Ip6 => 24,
    }
}

pub(super) fn saddr_offset(family: Family) -> u32 {
    match family {
        Family::Ip => 12,
        Family::Ip6 => 8,
    }
}

/// Loads `daddr . l4proto . dport` into reg 1 onwards and returns the next
/// free 32-bit register.
pub(super) fn load_service_key(family: Family, e: &mut Vec<Expressions>) -> u32 {
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

pub(super) fn reg32(n: u32) -> Register {
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

pub(super) fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// A named expression with raw attributes (for expressions the netlink
/// crate does not model).
pub(super) fn raw(name: &str, attrs: Vec<(u16, Vec<u8>)>) -> Expressions {
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

pub(super) fn nat_attrs(family: Family, addr_reg: u32, port_reg: u32) -> Vec<(u16, Vec<u8>)> {
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
pub(super) const CT_STATE_NEW: u32 = 1 << 3;

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
pub(super) fn addr_prefix(
    family: Family,
    offset: u32,
    cidr: &Cidr,
    op: Operator,
    e: &mut Vec<Expressions>,
) {
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

pub(super) fn lookup(set: &str, dreg: Option<Register>) -> Expressions {
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
pub(super) fn load_port_key(e: &mut Vec<Expressions>) -> u32 {
    e.push(meta_load(MetaKey::L4Proto, Register::Reg1));
    e.push(payload(BASE_TRANSPORT, 2, 2, reg32(9)));
    10
}

pub(super) fn stmt_exprs(family: Family, stmt: &Stmt, e: &mut Vec<Expressions>) {
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
        Stmt::DestInSet { set } => {
            load_service_key(family, e);
            e.push(lookup(set, None));
        }
        Stmt::PortInSet { set } => {
            load_port_key(e);
            e.push(lookup(set, None));
        }
        Stmt::SaddrIn(c) => addr_prefix(family, saddr_offset(family), c, Operator::Equal, e),
        Stmt::SaddrNotIn(c) => addr_prefix(family, saddr_offset(family), c, Operator::NotEqual, e),
        // As `nft` sends it: `[ meta load iifname => reg 1 ] [ cmp eq reg 1
        // 0x696c6163 ]` for "cali*", the whole NUL-padded name otherwise.
        Stmt::IifnameIs(i) | Stmt::IifnameIsNot(i) => {
            let op = match stmt {
                Stmt::IifnameIs(_) => Operator::Equal,
                _ => Operator::NotEqual,
            };
            e.push(meta_load(MetaKey::Iifname, Register::Reg1));
            e.push(cmp(op, i.cmp_bytes()));
        }
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
pub(super) fn raw_expr(name: &str, data: &[u8]) -> Expressions {
    let attributes = netlink_packet_core::NlasIterator::new(data)
        .filter_map(|nla| nla.ok())
        .filter_map(|nla| <DefaultNla as netlink_packet_core::Parseable<_>>::parse(&nla).ok())
        .collect();
    Expressions::Other {
        expression_type: name.to_string(),
        attributes,
    }
}

pub(super) fn meta_set_mark() -> Expressions {
    Expressions::Meta(vec![
        Meta::Key(MetaKey::Mark),
        Meta::SourceRegister(Register::Reg1),
    ])
}
