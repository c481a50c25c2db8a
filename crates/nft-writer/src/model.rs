//! The ruleset as plain data: tables, chains, rules made of statements, and
//! maps with typed elements. [`std::fmt::Display`] (in `render.rs`) prints
//! it as an `nft -f` script; the encoder turns the same values into
//! netlink messages.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// The one prefix type of nftopo, defined by api-watch; rules match on it
/// (`ip saddr 10.0.0.0/8`).
pub use api_watch::Cidr;
use api_watch::Protocol;

mod iface;
mod set;
pub use iface::{IfacePattern, IFNAMSIZ};
pub use set::*;

/// Address family of a table (`ip` or `ip6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `table ip …` (NFPROTO_IPV4).
    Ip,
    /// `table ip6 …` (NFPROTO_IPV6).
    Ip6,
}

impl Family {
    /// The keyword `nft` uses.
    pub fn nft_name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    /// Whether `addr` belongs to this family.
    pub fn contains(self, addr: &IpAddr) -> bool {
        matches!(
            (self, addr),
            (Family::Ip, IpAddr::V4(_)) | (Family::Ip6, IpAddr::V6(_))
        )
    }
}

/// The bytes of an address in network order.
pub fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A netmask of `prefix` bits over `len` bytes.
pub fn prefix_mask(prefix: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let bits = (prefix as usize).saturating_sub(i * 8).min(8);
            if bits == 0 {
                0
            } else {
                0xffu8 << (8 - bits)
            }
        })
        .collect()
}

/// A whole ruleset: the tables nftopo owns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// Tables, one per family.
    pub tables: Vec<Table>,
}

/// One table with its chains and maps, both keyed by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Address family.
    pub family: Family,
    /// Table name (`nftopo`).
    pub name: String,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Maps by name.
    pub maps: BTreeMap<String, Map>,
    /// The layout version recorded in the table's user data
    /// ([`crate::names::LAYOUT`] for tables this version plans; `None`
    /// when a read-back table carries none or one this version cannot
    /// read). A table whose layout differs from the plan's is replaced,
    /// not converged.
    pub layout: Option<u32>,
}

impl Table {
    /// An empty table.
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Self {
            family,
            name: name.into(),
            chains: BTreeMap::new(),
            maps: BTreeMap::new(),
            layout: Some(crate::names::LAYOUT),
        }
    }
}

/// `type` of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainType {
    /// `type nat`.
    Nat,
    /// `type filter`.
    Filter,
    /// Any other type (`route`, or one this version does not know), as
    /// read back from a table edited by hand; never planned.
    Other,
}

impl ChainType {
    /// The keyword `nft` uses (and the kernel's NFTA_CHAIN_TYPE).
    pub fn nft_name(self) -> &'static str {
        match self {
            ChainType::Nat => "nat",
            ChainType::Filter => "filter",
            ChainType::Other => "other",
        }
    }
}

/// Netfilter hook of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookPoint {
    /// `hook prerouting`.
    Prerouting,
    /// `hook input`.
    Input,
    /// `hook forward`.
    Forward,
    /// `hook output`.
    Output,
    /// `hook postrouting`.
    Postrouting,
}

impl HookPoint {
    /// The keyword `nft` uses.
    pub fn nft_name(self) -> &'static str {
        match self {
            HookPoint::Prerouting => "prerouting",
            HookPoint::Input => "input",
            HookPoint::Forward => "forward",
            HookPoint::Output => "output",
            HookPoint::Postrouting => "postrouting",
        }
    }

    /// The kernel's hook number (NF_INET_*).
    pub fn number(self) -> u32 {
        match self {
            HookPoint::Prerouting => 0,
            HookPoint::Input => 1,
            HookPoint::Forward => 2,
            HookPoint::Output => 3,
            HookPoint::Postrouting => 4,
        }
    }
}

/// What makes a chain a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// `type nat` or `type filter`.
    pub chain_type: ChainType,
    /// The hook.
    pub hook: HookPoint,
    /// Priority (kube-proxy's numbers: dstnat -100, srcnat 100, filter -110).
    pub priority: i32,
    /// `policy drop` (planned base chains always accept; a read-back
    /// chain whose policy was changed by hand shows it here).
    pub policy_drop: bool,
}

impl BaseChain {
    /// What the kernel cannot change in an existing chain: type, hook
    /// and priority (`add chain` may change only the policy).
    pub fn fixed(&self) -> (ChainType, HookPoint, i32) {
        (self.chain_type, self.hook, self.priority)
    }
}

/// A chain: a base chain when `base` is set, else a regular chain reached
/// by jump/goto. The policy of base chains is always `accept`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Chain name.
    pub name: String,
    /// Hook, type and priority for base chains.
    pub base: Option<BaseChain>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

impl Chain {
    /// A regular chain with `rules`.
    pub fn regular(name: impl Into<String>, rules: Vec<Rule>) -> Self {
        Self {
            name: name.into(),
            base: None,
            rules,
        }
    }
}

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `return`.
    Return,
    /// `jump CHAIN`.
    Jump(String),
    /// `goto CHAIN`.
    Goto(String),
}

/// One statement of a rule. Matches come first; a rule whose matches all
/// hold runs its actions. Each variant says the `nft` text it prints
/// (`ip`/`ip6` after the table's family).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stmt {
    /// `ip daddr . meta l4proto . th dport vmap @MAP`
    DestVmap {
        /// The verdict map (key: daddr . l4proto . dport).
        map: String,
    },
    /// `meta l4proto . th dport vmap @MAP` (node ports).
    PortVmap {
        /// The verdict map (key: l4proto . dport).
        map: String,
    },
    /// `ip daddr . meta l4proto . th dport @SET` (a match).
    DestInSet {
        /// A [`MapKind::ServiceSet`].
        set: String,
    },
    /// `meta l4proto . th dport @SET` (a match; node ports).
    PortInSet {
        /// A [`MapKind::PortSet`].
        set: String,
    },
    /// `ip saddr CIDR` (a match).
    SaddrIn(Cidr),
    /// `ip saddr != CIDR` (a match).
    SaddrNotIn(Cidr),
    /// `iifname "NAME"` or `iifname "PREFIX*"` (a match on the input
    /// interface; a packet the node sends has none, and matches no name).
    IifnameIs(IfacePattern),
    /// `iifname != "NAME"` or `iifname != "PREFIX*"` (a match; holds for
    /// a packet the node sends).
    IifnameIsNot(IfacePattern),
    /// `ip daddr CIDR` (a match; a /32 or /128 prints as the address).
    DaddrIn(Cidr),
    /// `ip daddr != CIDR` (a match).
    DaddrNotIn(Cidr),
    /// `fib daddr type local` (a match: the destination is an address of
    /// this host).
    FibDaddrLocal,
    /// `fib saddr type local` (a match: the packet comes from this host).
    FibSaddrLocal,
    /// `ip saddr . ip daddr @SET` (a match).
    AddrPairInSet {
        /// A set of address pairs.
        set: String,
    },
    /// `ip saddr @SET` (a match).
    SaddrInSet {
        /// A set of addresses.
        set: String,
    },
    /// `ip daddr @SET` (a match).
    DaddrInSet {
        /// A set of addresses.
        set: String,
    },
    /// `ct state new` (a match: the packet opens a connection, or belongs
    /// to one conntrack has not seen both ways yet; established, related
    /// and reply packets do not match).
    CtStateNew,
    /// `numgen random mod N VALUE` (a match that holds with probability 1/N).
    NumgenIs {
        /// N.
        modulus: u32,
        /// The value compared with.
        value: u32,
    },
    /// `meta l4proto PROTO` (a match).
    L4ProtoIs(Protocol),
    /// `meta mark & BITS == 0x00000000` (a match: none of the bits set).
    MarkBitsClear(u32),
    /// `meta mark set meta mark | BITS`
    MarkSetBits(u32),
    /// `meta mark set meta mark ^ BITS` (clears bits known to be set).
    MarkToggleBits(u32),
    /// `update @SET { ip saddr }` (adds the source, or refreshes its timeout).
    UpdateSaddr {
        /// A dynamic set of addresses with timeouts.
        set: String,
    },
    /// `masquerade fully-random`
    Masquerade,
    /// `dnat ip to ip daddr . meta l4proto . th dport . numgen random mod N offset O map @MAP`:
    /// when the map has no element for the key (a service port with
    /// another number of endpoints), the rule does not match and the next
    /// one is tried.
    DnatSpread {
        /// N, the number of endpoints.
        modulus: u32,
        /// O, where the indices of service ports with N endpoints start
        /// ([`crate::names::spread_offset`]).
        offset: u32,
        /// The endpoints map (key: daddr . l4proto . dport . index).
        map: String,
    },
    /// `dnat ip to meta l4proto . th dport . numgen random mod N offset O map @MAP`
    /// (as [`Stmt::DnatSpread`]).
    DnatSpreadPort {
        /// N, the number of endpoints.
        modulus: u32,
        /// O, as in [`Stmt::DnatSpread`].
        offset: u32,
        /// The endpoints map (key: l4proto . dport . index).
        map: String,
    },
    /// `dnat ip to ADDR:PORT` (only after `meta l4proto …`).
    DnatTo(IpAddr, u16),
    /// `reject` (ICMP port unreachable).
    Reject,
    /// `reject with tcp reset`: only after `meta l4proto tcp`. Unlike
    /// ICMP errors, resets are not rate-limited by the kernel
    /// (net.ipv4.icmp_ratelimit), so every TCP client is refused at once.
    RejectTcpReset,
    /// A verdict: `accept`, `drop`, `return`, `jump C`, `goto C`.
    Verdict(Verdict),
    /// Expressions read back from the kernel that do not form any of the
    /// statements above (a rule edited by hand, or written by another
    /// version): the expression's name and its raw NFTA_EXPR_DATA (or,
    /// for a rule attribute this version does not know, `rule-attr N`
    /// and the attribute's value). Never planned, so a rule holding one
    /// never equals a planned rule and is rewritten.
    Unknown {
        /// Expression name (`counter`, `log`, …) or what else it is.
        name: String,
        /// The raw attribute bytes.
        data: Vec<u8>,
    },
}

impl Stmt {
    /// The set or map the statement refers to, if any.
    pub fn set_name(&self) -> Option<&str> {
        match self {
            Stmt::DestVmap { map }
            | Stmt::PortVmap { map }
            | Stmt::DestInSet { set: map }
            | Stmt::PortInSet { set: map }
            | Stmt::DnatSpread { map, .. }
            | Stmt::DnatSpreadPort { map, .. }
            | Stmt::AddrPairInSet { set: map }
            | Stmt::SaddrInSet { set: map }
            | Stmt::DaddrInSet { set: map }
            | Stmt::UpdateSaddr { set: map } => Some(map),
            _ => None,
        }
    }
}

/// A rule: statements in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule(pub Vec<Stmt>);
