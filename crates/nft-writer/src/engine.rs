//! The one engine: every sync brings the kernel to the planned ruleset by
//! applying only differences, never by deleting and rebuilding a table.
//!
//! * [`converge`] compares what the kernel holds (its read-back,
//!   [`Kernel::read_back`]) with the desired ruleset and yields the
//!   operations that close the gap. `nftopo apply`, `nftopo diff`, the
//!   daemon's first sync, its periodic full sync and every sync after a
//!   failure go this way.
//! * Between those, the daemon's syncs send what the
//!   [`IncrementalPlanner`] says changed: the kernel held the planner's
//!   previous state (the last sync went through), so those operations are
//!   the difference to its new one without reading anything back.
//! * [`Batch`] is the one place that orders a transaction's messages.
//!
//! Tables are deleted only here when their layout (recorded in the
//! table's user data, [`names::LAYOUT`]) is not the one this version
//! plans, or a base chain or set changed its declaration, which cannot
//! be converged object by object; and by `nftopo cleanup`.
//!
//! Chains and sets that disappear are flushed (chains) or unreferenced
//! in the transaction that stops using them, and deleted in the next
//! one: kube-proxy does the same, because kernels before 6.x keep the
//! references from a just-deleted element or rule to its chain or set
//! until the transaction is fully released. Sets the data path fills
//! (session affinity) are never flushed: their elements are traffic
//! state, which the read-back does not even report.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::Error;
use crate::incremental::{Changes, IncrementalPlanner};
use crate::kernel::Kernel;
use crate::model::*;
use crate::names;
use crate::transaction::{Op, TableRef, Transaction};

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
                    self.adds
                        .entry((table.family, kind, map))
                        .or_default()
                        .extend(elements)
                }
            }
            Op::DeleteChain { .. } | Op::DeleteMap { .. } => self.drops.push(op),
        }
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
    pub fn finish(mut self) -> (Transaction, Vec<Op>) {
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
        for ((family, kind, map), elements) in self.adds {
            ops.push(Op::AddElements {
                table: table(family),
                map,
                kind,
                elements,
            });
        }
        ops.extend(self.drops);
        (Transaction { ops }, later)
    }
}

/// Objects a sync repaired, by kind (the daemon's
/// `nftopo_drift_repairs_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Repairs {
    /// Tables created, deleted or replaced.
    pub table: usize,
    /// Chains created, deleted, or whose policy was reset.
    pub chain: usize,
    /// Rules removed or added in chains that were rewritten.
    pub rule: usize,
    /// Sets and maps created or deleted.
    pub set: usize,
    /// Elements removed, added or changed.
    pub element: usize,
}

impl Repairs {
    /// Objects repaired in all.
    pub fn total(&self) -> usize {
        self.table + self.chain + self.rule + self.set + self.element
    }

    /// `(kind, count)` for every kind, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, usize); 5] {
        [
            ("table", self.table),
            ("chain", self.chain),
            ("rule", self.rule),
            ("set", self.set),
            ("element", self.element),
        ]
    }
}

/// Most repair descriptions kept per convergence (the rest are counted).
pub const MAX_NOTES: usize = 50;

/// What it takes to bring the kernel from what it holds to what is
/// wanted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Convergence {
    /// Operations to send now (empty when in step).
    pub now: Transaction,
    /// Deletions for the next sync.
    pub later: Vec<Op>,
    /// What differed, by kind.
    pub repairs: Repairs,
    /// One line per repaired object, the first [`MAX_NOTES`].
    pub notes: Vec<String>,
    /// Tables replaced whole, with why (a layout this version cannot
    /// converge).
    pub replaced: Vec<String>,
}

/// The operations that take the kernel from `held` (its read-back) to
/// `want` (the plan); see the module documentation.
pub fn converge(held: &Ruleset, want: &Ruleset) -> Convergence {
    let mut c = Convergence::default();
    let mut batch = Batch::new();
    for family in [Family::Ip, Family::Ip6] {
        let (h, w) = (table_of(held, family), table_of(want, family));
        let t = TableRef {
            family,
            name: names::TABLE.into(),
        };
        match (h, w) {
            (None, None) => {}
            (None, Some(w)) => {
                note(&mut c, format!("table {t}: missing"));
                c.repairs.table += 1;
                add_table(w, &mut batch);
            }
            (Some(_), None) => {
                note(&mut c, format!("table {t}: not planned"));
                c.repairs.table += 1;
                batch.push(Op::DeleteTable(t));
            }
            (Some(h), Some(w)) => match why_not_convergible(h, w) {
                Some(why) => {
                    c.replaced.push(format!("table {t}: {why}"));
                    note(&mut c, format!("table {t}: replaced: {why}"));
                    c.repairs.table += 1;
                    batch.push(Op::DeleteTable(t));
                    add_table(w, &mut batch);
                }
                None => converge_table(h, w, &mut batch, &mut c),
            },
        }
    }
    let (now, later) = batch.finish();
    c.now = now;
    c.later = later;
    c
}

fn table_of(rs: &Ruleset, family: Family) -> Option<&Table> {
    rs.tables
        .iter()
        .find(|t| t.family == family && t.name == names::TABLE)
}

fn chain_target(v: &Verdict) -> Option<&str> {
    match v {
        Verdict::Jump(c) | Verdict::Goto(c) => Some(c.as_str()),
        _ => None,
    }
}

fn note(c: &mut Convergence, line: String) {
    if c.notes.len() < MAX_NOTES {
        c.notes.push(line);
    }
}

/// Every operation that creates `table` as planned, into an empty or a
/// just-deleted table of the same name.
fn add_table(table: &Table, batch: &mut Batch) {
    let t = TableRef {
        family: table.family,
        name: table.name.clone(),
    };
    batch.push(Op::AddTable(t.clone()));
    for c in table.chains.values() {
        batch.push(Op::AddChain {
            table: t.clone(),
            name: c.name.clone(),
            base: c.base,
        });
        for r in &c.rules {
            batch.push(Op::AddRule {
                table: t.clone(),
                chain: c.name.clone(),
                rule: r.clone(),
            });
        }
    }
    for m in table.maps.values() {
        add_map(&t, m, batch);
    }
}

/// `add set`/`add map` of `m` with all its elements.
fn add_map(t: &TableRef, m: &Map, batch: &mut Batch) {
    batch.push(Op::AddMap {
        table: t.clone(),
        name: m.name.clone(),
        kind: m.kind,
    });
    batch.push(Op::AddElements {
        table: t.clone(),
        map: m.name.clone(),
        kind: m.kind,
        elements: m
            .elements
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    });
}

/// Why `held` cannot be brought to `want` object by object, if it cannot:
/// another layout version, a base chain on another hook, type or priority
/// (the kernel cannot change those in place), or a set or map of another
/// shape under a name the plan uses (rules bind it; it cannot be swapped
/// within one batch without rewriting them all).
fn why_not_convergible(held: &Table, want: &Table) -> Option<String> {
    if held.layout != want.layout {
        let layout = |l: Option<u32>| l.map_or("none".to_string(), |v| v.to_string());
        return Some(format!(
            "its layout is {}, this version converges layout {}",
            layout(held.layout),
            layout(want.layout)
        ));
    }
    for c in want.chains.values() {
        let Some(h) = held.chains.get(&c.name) else {
            continue;
        };
        if h.base.map(|b| b.fixed()) != c.base.map(|b| b.fixed()) {
            return Some(format!(
                "chain {} has another hook, type or priority",
                c.name
            ));
        }
    }
    for m in want.maps.values() {
        if let Some(h) = held.maps.get(&m.name) {
            if h.kind != m.kind {
                return Some(format!("set {} has another declaration", m.name));
            }
        }
    }
    None
}

/// Names of the chains that rules or verdict-map elements of `table`
/// refer to, and of the sets and maps its rules refer to.
fn references(table: &Table) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let mut chains = BTreeSet::new();
    let mut sets = BTreeSet::new();
    for c in table.chains.values() {
        for r in &c.rules {
            for s in &r.0 {
                match s {
                    Stmt::Verdict(v) => chains.extend(chain_target(v)),
                    s => sets.extend(s.set_name()),
                }
            }
        }
    }
    for m in table.maps.values() {
        for v in m.elements.values() {
            if let ElemValue::Verdict(v) = v {
                chains.extend(chain_target(v));
            }
        }
    }
    (chains, sets)
}

/// Rules in `a` that `b` lacks, counted with multiplicity.
fn rules_missing(a: &[Rule], b: &[Rule]) -> usize {
    let mut have: HashMap<&Rule, usize> = HashMap::new();
    for r in b {
        *have.entry(r).or_default() += 1;
    }
    a.iter()
        .filter(|r| match have.get_mut(r) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .count()
}

fn converge_table(held: &Table, want: &Table, batch: &mut Batch, c: &mut Convergence) {
    let t = TableRef {
        family: want.family,
        name: want.name.clone(),
    };
    for w in want.chains.values() {
        let h = held.chains.get(&w.name);
        match h {
            None => {
                note(c, format!("chain {t} {}: missing", w.name));
                c.repairs.chain += 1;
                batch.push(Op::AddChain {
                    table: t.clone(),
                    name: w.name.clone(),
                    base: w.base,
                });
            }
            // Only the policy can differ here (see why_not_convergible):
            // `add chain` with the hook sets it back.
            Some(h) if h.base != w.base => {
                note(c, format!("chain {t} {}: policy changed", w.name));
                c.repairs.chain += 1;
                batch.push(Op::AddChain {
                    table: t.clone(),
                    name: w.name.clone(),
                    base: w.base,
                });
            }
            Some(_) => {}
        }
        let held_rules: &[Rule] = h.map_or(&[], |h| &h.rules);
        if held_rules == w.rules.as_slice() {
            continue;
        }
        if h.is_some() {
            let (gone, added) = (
                rules_missing(held_rules, &w.rules),
                rules_missing(&w.rules, held_rules),
            );
            // Same rules in another order count as every rule moved.
            let moved = if gone + added == 0 { w.rules.len() } else { 0 };
            c.repairs.rule += gone + added + moved;
            note(
                c,
                format!(
                    "chain {t} {}: rules differ ({gone} removed, {added} added{})",
                    w.name,
                    if moved > 0 { ", order" } else { "" }
                ),
            );
            if !held_rules.is_empty() {
                batch.push(Op::FlushChain {
                    table: t.clone(),
                    name: w.name.clone(),
                });
            }
        }
        for r in &w.rules {
            batch.push(Op::AddRule {
                table: t.clone(),
                chain: w.name.clone(),
                rule: r.clone(),
            });
        }
    }
    let (chain_refs, set_refs) = references(held);
    for h in held.chains.values() {
        if want.chains.contains_key(&h.name) {
            continue;
        }
        note(c, format!("chain {t} {}: not planned", h.name));
        c.repairs.chain += 1;
        if !h.rules.is_empty() {
            batch.push(Op::FlushChain {
                table: t.clone(),
                name: h.name.clone(),
            });
        }
        let op = Op::DeleteChain {
            table: t.clone(),
            name: h.name.clone(),
        };
        if chain_refs.contains(h.name.as_str()) {
            batch.defer(op);
        } else {
            batch.push(op);
        }
    }
    for w in want.maps.values() {
        let Some(h) = held.maps.get(&w.name) else {
            note(c, format!("set {t} {}: missing", w.name));
            c.repairs.set += 1;
            add_map(&t, w, batch);
            continue;
        };
        if w.kind.is_dynamic() {
            continue;
        }
        converge_elements(&t, h, w, batch, c);
    }
    for h in held.maps.values() {
        if want.maps.contains_key(&h.name) {
            continue;
        }
        note(c, format!("set {t} {}: not planned", h.name));
        c.repairs.set += 1;
        let op = Op::DeleteMap {
            table: t.clone(),
            name: h.name.clone(),
            kind: h.kind,
        };
        if set_refs.contains(h.name.as_str()) {
            batch.defer(op);
        } else {
            batch.push(op);
        }
    }
}

fn converge_elements(t: &TableRef, held: &Map, want: &Map, batch: &mut Batch, c: &mut Convergence) {
    let gone: Vec<ElemKey> = held
        .elements
        .iter()
        .filter(|(k, v)| want.elements.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    let added: Vec<(ElemKey, ElemValue)> = want
        .elements
        .iter()
        .filter(|(k, v)| held.elements.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A changed element is deleted and added: count it once.
    let changed = added
        .iter()
        .filter(|(k, _)| held.elements.contains_key(k))
        .count();
    let repaired = gone.len() + added.len() - changed;
    if repaired == 0 {
        return;
    }
    c.repairs.element += repaired;
    for k in gone.iter().filter(|k| !want.elements.contains_key(*k)) {
        note(
            c,
            format!(
                "element {t} {} {}: not planned",
                want.name,
                crate::render::element_text(k, &held.elements[k])
            ),
        );
    }
    for (k, v) in &added {
        let what = if held.elements.contains_key(k) {
            "changed"
        } else {
            "missing"
        };
        note(
            c,
            format!(
                "element {t} {} {}: {what}",
                want.name,
                crate::render::element_text(k, v)
            ),
        );
    }
    batch.delete_elements(t, want.kind, want.name.clone(), gone);
    batch.push(Op::AddElements {
        table: t.clone(),
        map: want.name.clone(),
        kind: want.kind,
        elements: added,
    });
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncStats {
    /// The sync read the kernel back and converged it (else it sent what
    /// the planner said changed).
    pub full: bool,
    /// Operations in the transactions sent.
    pub operations: usize,
    /// Netlink messages sent (0 when nothing changed).
    pub messages: usize,
    /// What the read-back showed differing from the plan (zero for
    /// syncs that did not read back).
    pub repairs: Repairs,
    /// Of those, what differed although the kernel should have held the
    /// plan (the converge started in step: someone or something changed
    /// the kernel behind nftopo's back). Zero on the first sync and
    /// after failures, whose differences are nftopo's own catching up.
    pub drift: Repairs,
    /// Tables replaced whole (a layout this version cannot converge).
    pub replaced: usize,
}

/// Keeps the kernel in step with the [`IncrementalPlanner`]: converges
/// against a read-back on the first sync, when asked (periodic full
/// sync) and after any failure; otherwise sends what the planner's last
/// update changed, plus the deletions deferred from the sync before.
#[derive(Debug, Clone)]
pub struct Syncer<K: Kernel> {
    kernel: K,
    deferred: Vec<Op>,
    /// The kernel holds what the planner held before its last update (the
    /// last sync went through).
    in_step: bool,
    notes: Vec<String>,
}

impl<K: Kernel> Syncer<K> {
    /// A syncer that knows nothing of the kernel yet: the first sync
    /// converges.
    pub fn new(kernel: K) -> Self {
        Self {
            kernel,
            deferred: Vec::new(),
            in_step: false,
            notes: Vec::new(),
        }
    }

    /// The kernel (for tests and read-outs).
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The kernel, to change (tests inject failures into the fake).
    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// Whether deletions wait for the next sync (chains and sets the last
    /// transaction stopped using).
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// What the last convergence repaired, one line per object (the
    /// first [`MAX_NOTES`]).
    pub fn repair_notes(&self) -> &[String] {
        &self.notes
    }

    /// Reads the kernel back and applies only what differs from `want`,
    /// in one transaction. On error nothing was applied (the
    /// transaction is atomic) and the next sync converges again.
    pub fn converge(&mut self, want: &Ruleset) -> Result<SyncStats, Error> {
        self.converge_expecting(want, Vec::new())
    }

    /// [`Syncer::converge`], where the kernel was in step before `expected`
    /// (operations this sync would have sent without reading back): what
    /// differs beyond them is drift.
    fn converge_expecting(
        &mut self,
        want: &Ruleset,
        expected: Vec<Op>,
    ) -> Result<SyncStats, Error> {
        let was_in_step = std::mem::replace(&mut self.in_step, false);
        // Whatever was deferred, the read-back shows if it is still there.
        self.deferred.clear();
        self.notes.clear();
        let mut held = self.kernel.read_back()?;
        let c = converge(&held, want);
        let drift = if !was_in_step {
            Repairs::default()
        } else if expected.is_empty() {
            c.repairs
        } else {
            // What the kernel would hold had the planned operations been
            // sent: whatever still differs was changed behind our back.
            for op in &expected {
                let _ = crate::fake::apply_op(&mut held, op);
            }
            converge(&held, want).repairs
        };
        drop(held);
        for why in &c.replaced {
            tracing::warn!("replacing {why}");
        }
        let mut stats = SyncStats {
            full: true,
            repairs: c.repairs,
            drift,
            replaced: c.replaced.len(),
            ..SyncStats::default()
        };
        self.notes = c.notes;
        if !c.now.is_empty() {
            let applied = self.kernel.apply(&c.now)?;
            stats.operations = applied.operations;
            stats.messages = applied.messages;
        }
        self.deferred = c.later;
        self.in_step = true;
        Ok(stats)
    }

    /// Brings the kernel to what `planner` holds after the update that
    /// returned `changes`: only those operations (with the deletions
    /// deferred from the sync before, unless the object came back) when
    /// the kernel was in step; a convergence against the read-back when
    /// it was not, when the planner needs one, or when `full` is asked
    /// (the periodic full sync: what differs beyond `changes` is drift).
    /// On error nothing was applied and the next sync converges.
    pub fn sync_changes(
        &mut self,
        planner: &IncrementalPlanner,
        changes: Changes,
        full: bool,
    ) -> Result<SyncStats, Error> {
        if changes.full || !self.in_step {
            return self.converge(&planner.ruleset());
        }
        let mut batch = Batch::new();
        for op in std::mem::take(&mut self.deferred) {
            if !planner.holds(&op) {
                batch.push_deferred(op);
            }
        }
        for op in changes.now {
            batch.push(op);
        }
        for op in changes.later {
            batch.defer(op);
        }
        let (tx, later) = batch.finish();
        if full {
            let mut expected = tx.ops;
            expected.extend(later);
            return self.converge_expecting(&planner.ruleset(), expected);
        }
        let mut stats = SyncStats::default();
        if !tx.is_empty() {
            self.in_step = false;
            let applied = self.kernel.apply(&tx)?;
            self.in_step = true;
            stats.operations = applied.operations;
            stats.messages = applied.messages;
        }
        self.deferred = later;
        Ok(stats)
    }
}
