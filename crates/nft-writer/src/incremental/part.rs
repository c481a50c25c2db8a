//! What the planner keeps per Service ([`Part`], [`Entry`]) and per table
//! ([`Index`]: claims, and counts of shared objects and elements).

use super::*;

/// A [`Contribution`] as the planner keeps it: sorted vectors, sized to
/// what they hold (a map per Service and table would allocate whole tree
/// nodes for a handful of entries: about 2 KiB more per Service).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Part {
    /// Sorted by name.
    pub(super) chains: Vec<Chain>,
    /// Sorted by name.
    pub(super) sets: Vec<Map>,
    /// Sorted by map name.
    pub(super) elements: Vec<(&'static str, PartElements)>,
    pub(super) spreads: Vec<usize>,
    pub(super) port_spreads: Vec<usize>,
}

impl From<Contribution> for Part {
    fn from(c: Contribution) -> Self {
        Part {
            chains: c.chains.into_values().collect(),
            sets: c.sets.into_values().collect(),
            elements: c
                .elements
                .into_iter()
                .map(|(m, e)| (m, PartElements::new(e.into_iter().collect())))
                .collect(),
            spreads: c.spreads.into_iter().collect(),
            port_spreads: c.port_spreads.into_iter().collect(),
        }
    }
}

impl Part {
    pub(super) fn chain(&self, name: &str) -> Option<&Chain> {
        let i = self
            .chains
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()?;
        Some(&self.chains[i])
    }

    pub(super) fn set(&self, name: &str) -> Option<&Map> {
        let i = self
            .sets
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()?;
        Some(&self.sets[i])
    }

    pub(super) fn elements(&self, map: &str) -> &PartElements {
        match self.elements.binary_search_by(|(m, _)| (*m).cmp(map)) {
            Ok(i) => &self.elements[i].1,
            Err(_) => &elements::NONE,
        }
    }

    /// As [`Contribution::merge_into`], but for the elements of the sets
    /// and maps that `streamed` has (the skeleton, for
    /// [`IncrementalPlanner::frame`]).
    pub(super) fn merge_into(&self, table: &mut Table, streamed: Option<&Table>) {
        for c in &self.chains {
            table.chains.insert(c.name.clone(), c.clone());
        }
        for m in &self.sets {
            table.maps.insert(m.name.clone(), m.clone());
        }
        for (map, elements) in &self.elements {
            if streamed.is_some_and(|t| t.maps.contains_key(*map)) {
                continue;
            }
            let m = table.maps.get_mut(*map).expect("skeleton maps exist");
            m.elements.extend(elements.iter());
        }
    }
}

/// What the planner holds for one Service.
#[derive(Debug, Default)]
pub(super) struct Entry {
    /// Its side of the `ip` and of the `ip6` table; `None` where it holds
    /// nothing there (most Services have no IPv6 address: an empty side
    /// costs a pointer, not the 170 bytes of its empty vectors).
    sides: [Option<Box<Side>>; 2],
    /// Service ports left out because another Service owns the address.
    pub(super) problems: Vec<Problem>,
    /// It has an IPv6 address (the `ip6` table exists while any has).
    pub(super) wants_ip6: bool,
}

/// A Service's part of one table, and the addresses and node ports it
/// claims there, with the port name that claims them.
#[derive(Debug, Default)]
pub(super) struct Side {
    pub(super) part: Part,
    pub(super) addr_claims: Vec<(AddrKey, String)>,
    pub(super) port_claims: Vec<(PortKey, String)>,
}

/// The part of a Service without a side in a table.
static NO_PART: Part = Part {
    chains: Vec::new(),
    sets: Vec::new(),
    elements: Vec::new(),
    spreads: Vec::new(),
    port_spreads: Vec::new(),
};

impl Entry {
    /// Its part of the `family` table.
    pub(super) fn part(&self, family: Family) -> &Part {
        self.sides[fi(family)]
            .as_ref()
            .map_or(&NO_PART, |s| &s.part)
    }

    /// Takes its side of the `family` table out (empty when it has none),
    /// to be put back with [`Entry::put_side`].
    pub(super) fn take_side(&mut self, family: Family) -> Side {
        self.sides[fi(family)]
            .take()
            .map(|s| *s)
            .unwrap_or_default()
    }

    /// Sets its side of the `family` table (none when `side` is empty).
    pub(super) fn put_side(&mut self, family: Family, side: Side) {
        let empty = side.part == Part::default()
            && side.addr_claims.is_empty()
            && side.port_claims.is_empty();
        self.sides[fi(family)] = (!empty).then(|| Box::new(side));
    }
}

/// Who claims one address or node port, in order (the first owns it).
/// Almost always one service port: a sorted vector (one allocation of one
/// claimant) rather than a `BTreeSet`, whose first insert allocates a
/// whole tree leaf (11 slots, about 800 B) per address.
#[derive(Debug, Default)]
pub(super) struct Claimants(Vec<Claimant>);

impl Claimants {
    pub(super) fn insert(&mut self, c: Claimant) {
        if let Err(at) = self.0.binary_search(&c) {
            self.0.insert(at, c);
        }
    }

    pub(super) fn remove(&mut self, c: &Claimant) {
        if let Ok(at) = self.0.binary_search(c) {
            self.0.remove(at);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The owner.
    pub(super) fn first(&self) -> Option<&Claimant> {
        self.0.first()
    }
}

impl<'a> IntoIterator for &'a Claimants {
    type Item = &'a Claimant;
    type IntoIter = std::slice::Iter<'a, Claimant>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Per table: who claims what, and how many Services hold each shared
/// object.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) owners: BTreeMap<AddrKey, Claimants>,
    pub(super) port_owners: BTreeMap<PortKey, Claimants>,
    /// Chains and sets of the parts, and spread chains, with the number
    /// of Services that hold each.
    pub(super) objects: HashMap<String, usize>,
    /// Elements of the counted sets (`hairpin` pairs, `cluster-ips`
    /// addresses) with the number of Services that add each.
    pub(super) counted: CountedElements,
    /// `firewall-ips` elements by Service.
    pub(super) firewall: BTreeMap<ElemKey, BTreeMap<ObjectKey, ElemValue>>,
}

impl Index {
    pub(super) fn element(&self, map: &'static str, key: &ElemKey) -> Option<ElemValue> {
        if counted(map) {
            self.counted.contains(map, key).then_some(ElemValue::Member)
        } else {
            self.firewall
                .get(key)
                .and_then(|by| by.values().next_back().cloned())
        }
    }
}

/// The counted elements with their counts. A `hairpin` pair is one
/// endpoint's address twice and a `cluster-ips` element an address: kept
/// as that address (24 bytes an entry with its count, against 64 for the
/// map's name, the whole key and a `usize`: one entry per endpoint
/// address). Any other key (none is planned) is kept whole.
#[derive(Debug, Default)]
pub(super) struct CountedElements {
    compact: HashMap<Counted, u32>,
    other: HashMap<(&'static str, ElemKey), u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Counted {
    Hairpin(IpAddr),
    ClusterIp(IpAddr),
}

impl Counted {
    fn of(map: &str, key: &ElemKey) -> Option<Self> {
        match key {
            ElemKey::Pair(a, b) if a == b && map == names::HAIRPIN => Some(Counted::Hairpin(*a)),
            ElemKey::Addr(a) if map == names::CLUSTER_IPS => Some(Counted::ClusterIp(*a)),
            _ => None,
        }
    }
}

impl CountedElements {
    /// One more Service adds `key` to `map`.
    pub(super) fn add(&mut self, map: &'static str, key: &ElemKey) {
        let n = match Counted::of(map, key) {
            Some(c) => self.compact.entry(c).or_insert(0),
            None => self.other.entry((map, key.clone())).or_insert(0),
        };
        *n += 1;
    }

    /// One Service fewer adds `key` to `map` (one that did).
    pub(super) fn remove(&mut self, map: &'static str, key: &ElemKey) {
        fn down<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u32>, k: K) {
            let n = counts.get_mut(&k).expect("counted when added");
            *n -= 1;
            if *n == 0 {
                counts.remove(&k);
            }
        }
        match Counted::of(map, key) {
            Some(c) => down(&mut self.compact, c),
            None => down(&mut self.other, (map, key.clone())),
        }
    }

    /// Whether some Service adds `key` to `map`.
    pub(super) fn contains(&self, map: &'static str, key: &ElemKey) -> bool {
        match Counted::of(map, key) {
            Some(c) => self.compact.contains_key(&c),
            None => self.other.contains_key(&(map, key.clone())),
        }
    }
}

/// Whether the elements of `map` are counted (a set several Services add
/// the same element to), rather than owned by the last Service.
pub(super) fn counted(map: &str) -> bool {
    map == names::HAIRPIN || map == names::CLUSTER_IPS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_elements_count_compact_and_other_keys_alike() {
        let a = IpAddr::from([10, 42, 0, 7]);
        let b = IpAddr::from([10, 42, 0, 8]);
        let mut c = CountedElements::default();
        let hairpin = ElemKey::Pair(a, a);
        let other = ElemKey::Pair(a, b);
        let cluster = ElemKey::Addr(a);
        for (map, key) in [
            (names::HAIRPIN, &hairpin),
            (names::HAIRPIN, &other),
            (names::CLUSTER_IPS, &cluster),
        ] {
            c.add(map, key);
            c.add(map, key);
            c.remove(map, key);
            assert!(c.contains(map, key), "{map} {key:?}");
            c.remove(map, key);
            assert!(!c.contains(map, key), "{map} {key:?}");
        }
        // The same address in the two sets is two elements.
        c.add(names::HAIRPIN, &hairpin);
        assert!(!c.contains(names::CLUSTER_IPS, &cluster));
        assert_eq!((c.compact.len(), c.other.len()), (1, 0));
        c.add(names::HAIRPIN, &other);
        assert_eq!((c.compact.len(), c.other.len()), (1, 1));
    }
}
