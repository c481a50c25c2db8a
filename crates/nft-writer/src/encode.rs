//! Encoding of [`Op`]s into nf_tables netlink messages with
//! `netlink-packet-netfilter`. Expressions the crate does not model
//! (`numgen`, `nat`, `masq`, `reject`, `ct`) are built as named expressions with
//! raw attributes (`encode/expr.rs`; each has a byte-level test in
//! `encode/tests.rs`); sets, maps and element bytes are in `encode/set.rs`.
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

mod expr;
mod set;

pub use expr::*;
pub use set::*;

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
    encode_each(ops, |e| out.push(e));
    out
}

/// [`encode_ops`], handing each message to `emit` as soon as it is built,
/// so that a caller that serializes it at once never holds more than one
/// message tree (a first sync has tens of thousands).
pub fn encode_each(ops: &[Op], mut emit: impl FnMut(Encoded)) {
    for (op_index, op) in ops.iter().enumerate() {
        let mut push = |family, message, flags| {
            emit(Encoded {
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

#[cfg(test)]
mod tests;
