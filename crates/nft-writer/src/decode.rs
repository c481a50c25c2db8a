//! Decoding of nf_tables dump answers (NEWTABLE, NEWCHAIN, NEWRULE,
//! NEWSET and NEWSETELEM messages, what `nft list table` reads) into the
//! ruleset model the planner produces, so that a table we applied reads
//! back equal to its plan. Pure functions over bytes: the socket side is
//! `readback.rs`.
//!
//! Attributes are walked here rather than parsed with
//! `netlink-packet-netfilter`: one attribute that crate cannot parse
//! would lose its whole message, and what the model has no words for must
//! come back raw (`Stmt::Unknown`, `ElemKey::Raw`, `MapKind::Other`, …),
//! never dropped. Nothing here panics on any input; a datagram whose
//! netlink framing is broken is an error, anything inside a message that
//! does not fit is kept raw or skipped.

mod attr;
mod elem;
mod expr;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::encode::set_shape;
use crate::error::Error;
use crate::model::*;
pub(crate) use attr::*;

/// NFNL_SUBSYS_NFTABLES, the high byte of an nf_tables message type.
pub(crate) const SUBSYS_NFTABLES: u16 = 10;
/// NFT_MSG_NEWTABLE, NEWCHAIN, NEWRULE, NEWSET, NEWSETELEM: what dumps
/// answer with.
const MSG_NEWTABLE: u16 = 0;
const MSG_NEWCHAIN: u16 = 3;
const MSG_NEWRULE: u16 = 6;
const MSG_NEWSET: u16 = 9;
const MSG_NEWSETELEM: u16 = 12;
/// NFPROTO_IPV4 and NFPROTO_IPV6 in the nfgenmsg header.
pub(crate) const NFPROTO_IPV4: u8 = 2;
pub(crate) const NFPROTO_IPV6: u8 = 10;
/// Length of struct nlmsghdr and of struct nfgenmsg.
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// An attribute's type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// NFTA_TABLE_*.
const TABLE_NAME: u16 = 1;
const TABLE_USERDATA: u16 = 6;
/// NFTA_CHAIN_*.
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_POLICY: u16 = 5;
const CHAIN_TYPE: u16 = 7;
/// NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY.
const HOOK_NUM: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
/// NFTA_RULE_*.
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_HANDLE: u16 = 3;
const RULE_EXPRESSIONS: u16 = 4;
const RULE_POSITION: u16 = 6;
const RULE_PAD: u16 = 8;
const RULE_ID: u16 = 9;
const RULE_POSITION_ID: u16 = 10;
const RULE_CHAIN_ID: u16 = 11;
/// NFTA_SET_*.
const SET_TABLE: u16 = 1;
const SET_NAME: u16 = 2;
const SET_FLAGS: u16 = 3;
const SET_KEY_TYPE: u16 = 4;
const SET_KEY_LEN: u16 = 5;
const SET_DATA_TYPE: u16 = 6;
const SET_DATA_LEN: u16 = 7;
const SET_TIMEOUT: u16 = 11;
const SET_OBJ_TYPE: u16 = 15;
const SET_EXPR: u16 = 17;
const SET_EXPRESSIONS: u16 = 18;
/// NFTA_SET_ELEM_LIST_*.
const ELEM_LIST_TABLE: u16 = 1;
const ELEM_LIST_SET: u16 = 2;
const ELEM_LIST_ELEMENTS: u16 = 3;
/// NFTA_LIST_ELEM.
const LIST_ELEM: u16 = 1;
/// NFTA_DATA_VALUE, NFTA_DATA_VERDICT.
const DATA_VALUE: u16 = 1;
const DATA_VERDICT: u16 = 2;
/// NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN.
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;
/// The size of struct nft_verdict: the data length the kernel reports
/// for verdict maps, whatever was sent (we send 0, as `nft` does).
const VERDICT_DATA_LEN: u32 = 16;

/// Decodes a sequence of netlink messages as the kernel sends them for
/// `nft list table` (the answers to NFT_MSG_GETTABLE, GETCHAIN, GETRULE,
/// GETSET and GETSETELEM, in that order of objects: a chain, set or rule
/// counts once its table was seen, an element once its set was) into the
/// tables they describe, sorted by family. Messages of other types and
/// objects of unseen tables are skipped; elements of sets the data path
/// fills ([`MapKind::is_dynamic`]) are not kept. An error only when the
/// netlink framing itself is broken.
pub fn decode_dump(messages: &[u8]) -> Result<Ruleset, Error> {
    let mut decoder = Decoder::default();
    for frame in frames(messages)? {
        decoder.message(frame.kind, frame.payload);
    }
    Ok(decoder.finish())
}

/// Builds tables from dump answers, message by message (so that a large
/// dump is decoded as it arrives).
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    tables: Vec<Table>,
    /// Keep the elements of sets the data path fills (left out unless
    /// asked for: they are traffic state).
    pub keep_dynamic: bool,
    /// Elements decoded twice since the last [`Decoder::restart_elements`]
    /// (a set dump the kernel wrote while the set's hash table resized).
    pub repeated_elements: usize,
}

fn family_of(nfproto: u8) -> Option<Family> {
    match nfproto {
        NFPROTO_IPV4 => Some(Family::Ip),
        NFPROTO_IPV6 => Some(Family::Ip6),
        _ => None,
    }
}

impl Decoder {
    /// Takes one message: `kind` is its nlmsg_type, `payload` starts with
    /// the nfgenmsg header.
    pub fn message(&mut self, kind: u16, payload: &[u8]) {
        if kind >> 8 != SUBSYS_NFTABLES || payload.len() < NFGENMSG_LEN {
            return;
        }
        let Some(family) = family_of(payload[0]) else {
            return;
        };
        let body = &payload[NFGENMSG_LEN..];
        match kind & 0xff {
            MSG_NEWTABLE => self.table(family, body),
            MSG_NEWCHAIN => self.chain(family, body),
            MSG_NEWRULE => self.rule(family, body),
            MSG_NEWSET => self.set(family, body),
            MSG_NEWSETELEM => self.elements(family, body),
            _ => {}
        }
    }

    /// The tables decoded, sorted by family (as the planner lists them).
    pub fn finish(mut self) -> Ruleset {
        self.tables
            .sort_by(|a, b| (a.family, &a.name).cmp(&(b.family, &b.name)));
        Ruleset {
            tables: self.tables,
        }
    }

    /// The sets and maps of the table `family`/`name` decoded so far.
    pub fn maps(&self, family: Family, name: &str) -> Vec<(String, MapKind)> {
        self.tables
            .iter()
            .find(|t| t.family == family && t.name == name)
            .map(|t| t.maps.values().map(|m| (m.name.clone(), m.kind)).collect())
            .unwrap_or_default()
    }

    /// Empties the elements of set `set` of nftopo's table of `family`
    /// and the count of repeats, before its elements are dumped (again).
    pub fn restart_elements(&mut self, family: Family, set: &str) {
        self.repeated_elements = 0;
        if let Some(m) = self
            .table_mut(family, crate::names::TABLE)
            .and_then(|t| t.maps.get_mut(set))
        {
            m.elements.clear();
        }
    }

    fn table_mut(&mut self, family: Family, name: &str) -> Option<&mut Table> {
        self.tables
            .iter_mut()
            .find(|t| t.family == family && t.name == name)
    }

    /// The table an object names in its attribute `kind`, if it was seen.
    fn owner(&mut self, family: Family, body: &[u8], kind: u16) -> Option<&mut Table> {
        let name = string(find(body, kind)?);
        self.table_mut(family, &name)
    }

    fn table(&mut self, family: Family, body: &[u8]) {
        let Some(name) = find(body, TABLE_NAME).map(string) else {
            return;
        };
        let layout = find(body, TABLE_USERDATA).and_then(crate::udata::table_layout);
        if self.table_mut(family, &name).is_none() {
            self.tables.push(Table {
                family,
                name,
                chains: BTreeMap::new(),
                maps: BTreeMap::new(),
                layout,
            });
        }
    }

    fn chain(&mut self, family: Family, body: &[u8]) {
        let Some(name) = find(body, CHAIN_NAME).map(string) else {
            return;
        };
        let base = find(body, CHAIN_HOOK).map(|hook| base_chain(body, hook));
        if let Some(t) = self.owner(family, body, CHAIN_TABLE) {
            t.chains.insert(
                name.clone(),
                Chain {
                    name,
                    base,
                    rules: Vec::new(),
                },
            );
        }
    }

    fn rule(&mut self, family: Family, body: &[u8]) {
        let Some(chain) = find(body, RULE_CHAIN).map(string) else {
            return;
        };
        let Some(chain) = self
            .owner(family, body, RULE_TABLE)
            .and_then(|t| t.chains.get_mut(&chain))
        else {
            return;
        };
        let mut stmts = Vec::new();
        let mut extra = Vec::new();
        for (kind, value) in attrs(body) {
            match kind {
                RULE_EXPRESSIONS => stmts.extend(expr::statements(family, value)),
                RULE_TABLE | RULE_CHAIN | RULE_HANDLE | RULE_POSITION | RULE_PAD | RULE_ID
                | RULE_POSITION_ID | RULE_CHAIN_ID => {}
                // NFTA_RULE_USERDATA (a comment), NFTA_RULE_COMPAT, …
                other => extra.push(Stmt::Unknown {
                    name: format!("rule-attr {other}"),
                    data: value.to_vec(),
                }),
            }
        }
        stmts.extend(extra);
        chain.rules.push(Rule(stmts));
    }

    fn set(&mut self, family: Family, body: &[u8]) {
        let Some(name) = find(body, SET_NAME).map(string) else {
            return;
        };
        let kind = map_kind(family, body);
        if let Some(t) = self.owner(family, body, SET_TABLE) {
            t.maps.insert(name.clone(), Map::new(name, kind));
        }
    }

    fn elements(&mut self, family: Family, body: &[u8]) {
        let keep_dynamic = self.keep_dynamic;
        let Some(set) = find(body, ELEM_LIST_SET).map(string) else {
            return;
        };
        let Some(map) = self
            .owner(family, body, ELEM_LIST_TABLE)
            .and_then(|t| t.maps.get_mut(&set))
        else {
            return;
        };
        if map.kind.is_dynamic() && !keep_dynamic {
            return;
        }
        let Some(list) = find(body, ELEM_LIST_ELEMENTS) else {
            return;
        };
        let mut repeated = 0;
        for (kind, element) in attrs(list) {
            if kind == LIST_ELEM {
                let (key, value) = elem::element(family, map.kind, element);
                if map.elements.insert(key, value).is_some() {
                    repeated += 1;
                }
            }
        }
        self.repeated_elements += repeated;
    }
}

/// The hook, type, priority and policy of a base chain. A hook number,
/// type or attribute this version does not know makes the chain type
/// [`ChainType::Other`] (never planned, so the chain is replaced).
fn base_chain(body: &[u8], hook: &[u8]) -> BaseChain {
    let number = find(hook, HOOK_NUM).and_then(be32);
    let priority = find(hook, HOOK_PRIORITY).and_then(be32);
    let policy = find(body, CHAIN_POLICY).and_then(be32);
    let hook_point = match number {
        Some(0) => Some(HookPoint::Prerouting),
        Some(1) => Some(HookPoint::Input),
        Some(2) => Some(HookPoint::Forward),
        Some(3) => Some(HookPoint::Output),
        Some(4) => Some(HookPoint::Postrouting),
        _ => None,
    };
    let chain_type = match find(body, CHAIN_TYPE).map(string).as_deref() {
        Some("nat") => ChainType::Nat,
        Some("filter") => ChainType::Filter,
        _ => ChainType::Other,
    };
    // NF_DROP 0, NF_ACCEPT 1.
    let known = hook_point.is_some() && priority.is_some() && matches!(policy, Some(0 | 1));
    BaseChain {
        chain_type: if known { chain_type } else { ChainType::Other },
        hook: hook_point.unwrap_or(HookPoint::Prerouting),
        priority: priority.unwrap_or(0) as i32,
        policy_drop: policy == Some(0),
    }
}

/// The shape of a set from its declaration: one of nftopo's kinds when
/// every attribute is what the encoder sends (or the kernel's canonical
/// form of it), else [`MapKind::Other`] with the raw values.
fn map_kind(family: Family, body: &[u8]) -> MapKind {
    let u32_attr = |kind| find(body, kind).and_then(be32);
    let flags = u32_attr(SET_FLAGS).unwrap_or(0);
    let key_type = u32_attr(SET_KEY_TYPE).unwrap_or(0);
    let key_len = u32_attr(SET_KEY_LEN).unwrap_or(0);
    let data_type = u32_attr(SET_DATA_TYPE);
    let data_len = u32_attr(SET_DATA_LEN);
    let other = MapKind::Other {
        flags,
        key_type,
        key_len,
        data_type: data_type.unwrap_or(0),
        data_len: data_len.unwrap_or(0),
    };
    if [SET_OBJ_TYPE, SET_EXPR, SET_EXPRESSIONS]
        .iter()
        .any(|k| find(body, *k).is_some())
    {
        return other;
    }
    let data = match (data_type, data_len) {
        (None, None) => None,
        (Some(crate::encode::DATA_VERDICT), Some(VERDICT_DATA_LEN)) => {
            Some((crate::encode::DATA_VERDICT, 0))
        }
        (t, l) => Some((t.unwrap_or(0), l.unwrap_or(0))),
    };
    let timeout_ms = find(body, SET_TIMEOUT).map(|v| be64(v).unwrap_or(u64::MAX));
    let mut kinds = vec![
        MapKind::ServiceVerdict,
        MapKind::PortVerdict,
        MapKind::ServiceSet,
        MapKind::PortSet,
        MapKind::EndpointDnat,
        MapKind::PortEndpointDnat,
        MapKind::AddrPairSet,
        MapKind::AddrSet,
    ];
    if let Some(seconds) = timeout_ms
        .filter(|ms| ms % 1000 == 0)
        .and_then(|ms| u32::try_from(ms / 1000).ok())
    {
        kinds.push(MapKind::AffinitySet { timeout: seconds });
    }
    kinds
        .into_iter()
        .find(|kind| {
            let s = set_shape(family, *kind);
            (s.flags, s.key_type, s.key_len, s.data, s.timeout_ms)
                == (flags, key_type, key_len, data, timeout_ms)
        })
        .unwrap_or(other)
}
