//! [`Batch`]: the one place that orders a transaction's messages.

use super::*;

/// Operations collected in any order and sent in the one order the kernel
/// needs, and that keeps its work linear:
///
/// 1. tables (`delete table` of a layout this version cannot converge,
///    `add table`);
/// 2. new chains, then new sets and maps (rules and elements refer to
///    them);
/// 3. chain rewrites (`flush chain` and `add rule`, in the order pushed);
/// 4. element deletions, then element additions, verdict maps first
///    ([`MapKind`]'s order): an element added to a map that rules already
///    bind is checked against each binding once;
/// 5. deletions of chains and sets nothing refers to any more.
///
/// Deletions of objects something referred to until this batch go to a
/// later batch ([`Batch::defer`]). Endpoint elements go in the batch that
/// replaces them: the `spread` rules of every endpoint count stay
/// ([`crate::IncrementalPlanner`]) and are tried in increasing count, so
/// an element left at the old count's indices would be found before the
/// new ones by a service port that grew.
#[derive(Debug, Default)]
pub struct Batch {
    tables: Vec<Op>,
    add_chains: Vec<Op>,
    add_maps: Vec<Op>,
    rules: Vec<Op>,
    deletes: BTreeMap<(Family, MapKind, String), Vec<ElemKey>>,
    adds: BTreeMap<(Family, MapKind, String), Vec<(ElemKey, ElemValue)>>,
    drops: Vec<Op>,
    later: Vec<Op>,
    /// Maps whose every element is added, from a source that gives them
    /// when the transaction is sent ([`Batch::add_all_elements`]).
    filled_later: BTreeSet<(Family, MapKind, String)>,
    /// Element deletions deferred from an earlier batch: sent now.
    overdue: Vec<(Family, String, Vec<ElemKey>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Files `op` in its place. A [`Op::DeleteElements`] needs the map's
    /// shape only for ordering: pass it with [`Batch::delete_elements`];
    /// here its keys go with the map's other deletions (or first).
    pub fn push(&mut self, op: Op) {
        match op {
            Op::AddTable(_) | Op::DeleteTable(_) => self.tables.push(op),
            Op::AddChain { .. } => self.add_chains.push(op),
            Op::AddMap { .. } => self.add_maps.push(op),
            Op::FlushChain { .. } | Op::AddRule { .. } => self.rules.push(op),
            Op::DeleteElements { table, map, keys } => {
                // Without the shape: order as the first kind.
                self.delete_elements(&table, MapKind::ServiceVerdict, map, keys)
            }
            Op::AddElements {
                table,
                map,
                kind,
                elements,
            } => {
                if !elements.is_empty() {
                    // Moved, not copied, when the map has none yet (a
                    // full sync's whole map).
                    let adds = self.adds.entry((table.family, kind, map)).or_default();
                    if adds.is_empty() {
                        *adds = elements;
                    } else {
                        adds.extend(elements);
                    }
                }
            }
            Op::DeleteChain { .. } | Op::DeleteMap { .. } => self.drops.push(op),
        }
    }

    /// `add element` of every element `map` should hold, left empty here
    /// and filled when the transaction is sent ([`Batch::finish_filling`]
    /// says which operations), so that they are not held twice, as
    /// operations and as bytes.
    pub fn add_all_elements(&mut self, table: &TableRef, kind: MapKind, map: String) {
        self.adds
            .entry((table.family, kind, map.clone()))
            .or_default();
        self.filled_later.insert((table.family, kind, map));
    }

    /// `delete element` of `keys` from `map` of shape `kind`.
    pub fn delete_elements(
        &mut self,
        table: &TableRef,
        kind: MapKind,
        map: String,
        keys: Vec<ElemKey>,
    ) {
        if !keys.is_empty() {
            self.deletes
                .entry((table.family, kind, map))
                .or_default()
                .extend(keys);
        }
    }

    /// A deletion for the next batch.
    pub fn defer(&mut self, op: Op) {
        self.later.push(op);
    }

    /// A deletion an earlier batch deferred: it goes out now, whatever
    /// else the batch holds.
    pub fn push_deferred(&mut self, op: Op) {
        match op {
            Op::DeleteElements { table, map, keys } if !keys.is_empty() => {
                self.overdue.push((table.family, map, keys))
            }
            op => self.push(op),
        }
    }

    /// Whether nothing was pushed or deferred.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
            && self.add_chains.is_empty()
            && self.add_maps.is_empty()
            && self.rules.is_empty()
            && self.deletes.is_empty()
            && self.adds.is_empty()
            && self.drops.is_empty()
            && self.later.is_empty()
            && self.overdue.is_empty()
    }

    /// The transaction to send now, and the deletions for the next one.
    pub fn finish(self) -> (Transaction, Vec<Op>) {
        let (tx, later, fill) = self.finish_filling();
        assert!(fill.is_empty(), "add_all_elements needs finish_filling");
        (tx, later)
    }

    /// [`Batch::finish`], with the indices of the `add element` operations
    /// that [`Batch::add_all_elements`] left to fill.
    pub fn finish_filling(mut self) -> (Transaction, Vec<Op>, Vec<usize>) {
        let table = |family| TableRef {
            family,
            name: names::TABLE.into(),
        };
        let later = std::mem::take(&mut self.later);
        let mut deletes: BTreeMap<(Family, String), Vec<ElemKey>> = BTreeMap::new();
        for ((family, _, map), keys) in std::mem::take(&mut self.deletes) {
            deletes.entry((family, map)).or_default().extend(keys);
        }
        for (family, map, keys) in std::mem::take(&mut self.overdue) {
            deletes.entry((family, map)).or_default().extend(keys);
        }
        let mut ops = self.tables;
        ops.extend(self.add_chains);
        ops.extend(self.add_maps);
        ops.extend(self.rules);
        for ((family, map), mut keys) in deletes {
            keys.sort();
            keys.dedup();
            ops.push(Op::DeleteElements {
                table: table(family),
                map,
                keys,
            });
        }
        let mut fill = Vec::new();
        for ((family, kind, map), elements) in self.adds {
            if self.filled_later.contains(&(family, kind, map.clone())) {
                fill.push(ops.len());
            }
            ops.push(Op::AddElements {
                table: table(family),
                map,
                kind,
                elements,
            });
        }
        ops.extend(self.drops);
        (Transaction { ops }, later, fill)
    }
}
