//! Sets and maps: their shapes ([`MapKind`]), keys and values.

use super::*;

/// The shapes of sets and maps nftopo uses. The shape fixes the key and
/// data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapKind {
    /// `type ipv4_addr . inet_proto . inet_service : verdict`
    /// (ipv6_addr in ip6 tables): service IP and port to a chain.
    ServiceVerdict,
    /// `type inet_proto . inet_service : verdict`: node port to a chain.
    PortVerdict,
    /// `type ipv4_addr . inet_proto . inet_service` (a set): service IPs
    /// and ports dispatched by data (plain service ports, refusals).
    ServiceSet,
    /// `type inet_proto . inet_service` (a set): node ports dispatched by
    /// data.
    PortSet,
    /// `typeof ip daddr . meta l4proto . th dport . numgen random mod 1 :
    /// ip daddr . th dport`: service IP, port and a random index to the
    /// endpoint's address and port.
    EndpointDnat,
    /// `typeof meta l4proto . th dport . numgen random mod 1 : ip daddr .
    /// th dport`: node port and a random index to the endpoint.
    PortEndpointDnat,
    /// `type ipv4_addr . ipv4_addr` (a set): (source, destination) pairs.
    AddrPairSet,
    /// `type ipv4_addr` (a set of addresses, filled by the planner).
    AddrSet,
    /// `type ipv4_addr; flags dynamic,timeout; timeout T` (a set filled by
    /// the data path): clients of one endpoint under session affinity.
    AffinitySet {
        /// Seconds a client stays with its endpoint after its last new
        /// connection.
        timeout: u32,
    },
    /// A set read back from the kernel whose declaration is none of the
    /// above (made by hand, or by another version): its raw attributes.
    /// Never planned; the engine deletes it.
    Other {
        /// NFTA_SET_FLAGS.
        flags: u32,
        /// NFTA_SET_KEY_TYPE.
        key_type: u32,
        /// NFTA_SET_KEY_LEN.
        key_len: u32,
        /// NFTA_SET_DATA_TYPE (0 for sets).
        data_type: u32,
        /// NFTA_SET_DATA_LEN (0 for sets).
        data_len: u32,
    },
}

impl MapKind {
    /// Whether elements carry data (a map) or not (a set).
    pub fn is_map(self) -> bool {
        match self {
            MapKind::ServiceSet
            | MapKind::PortSet
            | MapKind::AddrPairSet
            | MapKind::AddrSet
            | MapKind::AffinitySet { .. } => false,
            MapKind::Other { flags, .. } => flags & 0x8 != 0, // NFT_SET_MAP
            _ => true,
        }
    }

    /// Whether the data path fills the set (its elements are traffic
    /// state: the engine neither reads nor converges them).
    pub fn is_dynamic(self) -> bool {
        matches!(self, MapKind::AffinitySet { .. })
    }
}

/// Key of a set or map element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElemKey {
    /// `addr . proto . port [. index]` ([`MapKind::ServiceVerdict`],
    /// [`MapKind::ServiceSet`], [`MapKind::EndpointDnat`] with the index).
    Service {
        /// Destination address.
        addr: IpAddr,
        /// Protocol.
        proto: Protocol,
        /// Destination port.
        port: u16,
        /// Endpoint index (only for [`MapKind::EndpointDnat`]).
        index: Option<u32>,
    },
    /// `proto . port [. index]` ([`MapKind::PortVerdict`],
    /// [`MapKind::PortSet`], [`MapKind::PortEndpointDnat`] with the index).
    Port {
        /// Protocol.
        proto: Protocol,
        /// Destination port.
        port: u16,
        /// Endpoint index (only for [`MapKind::PortEndpointDnat`]).
        index: Option<u32>,
    },
    /// `a . b` ([`MapKind::AddrPairSet`]).
    Pair(IpAddr, IpAddr),
    /// An address ([`MapKind::AddrSet`]).
    Addr(IpAddr),
    /// A key read back that does not fit its map's shape: its raw bytes
    /// (deleted by the engine, by these bytes).
    Raw(Vec<u8>),
}

impl ElemKey {
    /// A service key without index.
    pub fn service(addr: IpAddr, proto: Protocol, port: u16) -> Self {
        ElemKey::Service {
            addr,
            proto,
            port,
            index: None,
        }
    }

    /// A node-port key without index.
    pub fn port(proto: Protocol, port: u16) -> Self {
        ElemKey::Port {
            proto,
            port,
            index: None,
        }
    }

    /// Whether the key fits a set or map of `kind` in a table of `family`.
    pub fn fits(&self, family: Family, kind: MapKind) -> bool {
        match (self, kind) {
            (
                ElemKey::Service { addr, index, .. },
                MapKind::ServiceVerdict | MapKind::ServiceSet,
            ) => family.contains(addr) && index.is_none(),
            (ElemKey::Service { addr, index, .. }, MapKind::EndpointDnat) => {
                family.contains(addr) && index.is_some()
            }
            (ElemKey::Port { index, .. }, MapKind::PortVerdict | MapKind::PortSet) => {
                index.is_none()
            }
            (ElemKey::Port { index, .. }, MapKind::PortEndpointDnat) => index.is_some(),
            (ElemKey::Pair(a, b), MapKind::AddrPairSet) => family.contains(a) && family.contains(b),
            (ElemKey::Addr(a), MapKind::AddrSet) => family.contains(a),
            _ => false,
        }
    }
}

/// Value of an element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElemValue {
    /// A verdict (verdict maps).
    Verdict(Verdict),
    /// An address and port to DNAT to (endpoint maps).
    Dnat(IpAddr, u16),
    /// No data: the element of a set.
    Member,
    /// Data read back that does not fit the map's shape: a description
    /// (never planned, so the element is replaced).
    Raw(String),
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// Name.
    pub name: String,
    /// Shape.
    pub kind: MapKind,
    /// Elements, sorted by key.
    pub elements: BTreeMap<ElemKey, ElemValue>,
}

impl Map {
    /// An empty set or map.
    pub fn new(name: impl Into<String>, kind: MapKind) -> Self {
        Self {
            name: name.into(),
            kind,
            elements: BTreeMap::new(),
        }
    }
}
