//! Incremental syncs: the operations that turn the last applied ruleset
//! into the new one, and [`Syncer`], which decides between a full replace
//! and a diff and keeps what must be deleted one sync later.
//!
//! Chains and maps that disappear are flushed (chains) or unreferenced in
//! the transaction that stops using them, and deleted in the next one:
//! kube-proxy does the same because kernels before 6.x keep references
//! from a just-deleted map element to its chain until the transaction is
//! fully released.

use std::collections::BTreeSet;

use crate::error::Error;
use crate::incremental::{Changes, IncrementalPlanner};
use crate::kernel::Kernel;
use crate::model::*;
use crate::transaction::{Op, TableRef, Transaction};

/// The result of comparing two rulesets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// What to apply now.
    pub now: Transaction,
    /// Chains and maps no longer used: delete them in a later transaction.
    pub later: Vec<Op>,
}

/// `None` when only a full replace can get there (a table, a base chain or
/// a map's shape changed).
pub fn diff(old: &Ruleset, new: &Ruleset) -> Option<Diff> {
    let mut d = Diff::default();
    for family in [Family::Ip, Family::Ip6] {
        let o = old.tables.iter().find(|t| t.family == family);
        let n = new.tables.iter().find(|t| t.family == family);
        match (o, n) {
            (None, None) => {}
            (Some(o), Some(n)) if o.name == n.name => diff_table(o, n, &mut d)?,
            _ => return None,
        }
    }
    Some(d)
}

fn diff_table(old: &Table, new: &Table, d: &mut Diff) -> Option<()> {
    let t = TableRef {
        family: new.family,
        name: new.name.clone(),
    };
    let ops = &mut d.now.ops;
    // New chains and maps first: rules and elements may refer to them.
    for c in new.chains.values() {
        match old.chains.get(&c.name) {
            Some(o) if o.base != c.base => return None,
            Some(_) => {}
            None => ops.push(Op::AddChain {
                table: t.clone(),
                name: c.name.clone(),
                base: c.base,
            }),
        }
    }
    for m in new.maps.values() {
        match old.maps.get(&m.name) {
            Some(o) if o.kind != m.kind => return None,
            Some(_) => {}
            None => ops.push(Op::AddMap {
                table: t.clone(),
                name: m.name.clone(),
                kind: m.kind,
            }),
        }
    }
    // Changed chains are rewritten whole; gone chains are emptied now.
    for c in new.chains.values() {
        let same = old.chains.get(&c.name).is_some_and(|o| o.rules == c.rules);
        if same {
            continue;
        }
        if old.chains.contains_key(&c.name) {
            ops.push(Op::FlushChain {
                table: t.clone(),
                name: c.name.clone(),
            });
        }
        for r in &c.rules {
            ops.push(Op::AddRule {
                table: t.clone(),
                chain: c.name.clone(),
                rule: r.clone(),
            });
        }
    }
    for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
        ops.push(Op::FlushChain {
            table: t.clone(),
            name: name.clone(),
        });
        d.later.push(Op::DeleteChain {
            table: t.clone(),
            name: name.clone(),
        });
    }
    // Elements: removed and changed ones out, then added and changed in.
    // Verdict maps go first, as in a full replace.
    let mut maps: Vec<&Map> = new.maps.values().collect();
    maps.sort_by_key(|m| (m.kind, m.name.clone()));
    let mut adds = Vec::new();
    for m in maps {
        let empty = Map::new(m.name.clone(), m.kind);
        let o = old.maps.get(&m.name).unwrap_or(&empty);
        let gone: Vec<ElemKey> = o
            .elements
            .iter()
            .filter(|(k, v)| m.elements.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        let added: Vec<(ElemKey, ElemValue)> = m
            .elements
            .iter()
            .filter(|(k, v)| o.elements.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !gone.is_empty() {
            ops.push(Op::DeleteElements {
                table: t.clone(),
                map: m.name.clone(),
                keys: gone,
            });
        }
        if !added.is_empty() {
            adds.push(Op::AddElements {
                table: t.clone(),
                map: m.name.clone(),
                kind: m.kind,
                elements: added,
            });
        }
    }
    ops.extend(adds);
    for m in old
        .maps
        .values()
        .filter(|m| !new.maps.contains_key(&m.name))
    {
        d.later.push(Op::DeleteMap {
            table: t.clone(),
            name: m.name.clone(),
            kind: m.kind,
        });
    }
    Some(())
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncStats {
    /// Whether the whole ruleset was replaced.
    pub full: bool,
    /// Operations in the transaction.
    pub operations: usize,
    /// Netlink messages sent (0 when nothing changed).
    pub messages: usize,
}

/// Keeps the kernel in step with the planned ruleset: a full replace on
/// the first sync, when asked (periodic resync) and after any failure;
/// otherwise only the differences from the last applied ruleset, plus the
/// deletions deferred from the sync before.
#[derive(Debug, Clone)]
pub struct Syncer<K: Kernel> {
    kernel: K,
    last: Option<Ruleset>,
    deferred: Vec<Op>,
    /// The kernel holds what the [`IncrementalPlanner`] planned before its
    /// last update (the last [`Syncer::sync_changes`] went through).
    in_step: bool,
}

impl<K: Kernel> Syncer<K> {
    /// A syncer that has applied nothing yet.
    pub fn new(kernel: K) -> Self {
        Self {
            kernel,
            last: None,
            deferred: Vec::new(),
            in_step: false,
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

    /// Brings the kernel to `new`. On error nothing was applied (the
    /// kernel's transaction is atomic) and the next sync is a full one.
    pub fn sync(&mut self, new: &Ruleset, full: bool) -> Result<SyncStats, Error> {
        let planned = match (&self.last, full) {
            (Some(last), false) => diff(last, new),
            _ => None,
        };
        let (tx, later, is_full) = match planned {
            Some(d) => {
                let mut ops = deferred_still_gone(&self.deferred, new);
                ops.extend(d.now.ops);
                (Transaction { ops }, d.later, false)
            }
            None => (Transaction::replace(new), Vec::new(), true),
        };
        if tx.is_empty() {
            self.deferred = later;
            return Ok(SyncStats::default());
        }
        self.in_step = false;
        match self.kernel.apply(&tx) {
            Ok(stats) => {
                self.last = Some(new.clone());
                self.deferred = later;
                Ok(SyncStats {
                    full: is_full,
                    operations: stats.operations,
                    messages: stats.messages,
                })
            }
            Err(e) => {
                self.last = None;
                self.deferred.clear();
                Err(e)
            }
        }
    }
}

impl<K: Kernel> Syncer<K> {
    /// Brings the kernel to what `planner` holds after the update that
    /// returned `changes`: only those operations (with the deletions
    /// deferred from the sync before, unless the object came back), or a
    /// full replace when `full` is asked, the planner needs one, or the
    /// previous sync did not go through this way. Neither compares nor
    /// copies the whole ruleset except for a full replace. On error
    /// nothing was applied and the next sync is a full one.
    pub fn sync_changes(
        &mut self,
        planner: &IncrementalPlanner,
        changes: Changes,
        full: bool,
    ) -> Result<SyncStats, Error> {
        let is_full = full || changes.full || !self.in_step;
        let (tx, later) = if is_full {
            (Transaction::replace(&planner.ruleset()), Vec::new())
        } else {
            let mut ops: Vec<Op> = std::mem::take(&mut self.deferred)
                .into_iter()
                .filter(|op| !planner.holds(op))
                .collect();
            ops.extend(changes.now);
            (Transaction { ops }, changes.later)
        };
        self.last = None;
        if tx.is_empty() {
            self.deferred = later;
            return Ok(SyncStats::default());
        }
        match self.kernel.apply(&tx) {
            Ok(stats) => {
                self.in_step = true;
                self.deferred = later;
                Ok(SyncStats {
                    full: is_full,
                    operations: stats.operations,
                    messages: stats.messages,
                })
            }
            Err(e) => {
                self.in_step = false;
                self.deferred.clear();
                Err(e)
            }
        }
    }
}

/// Deferred deletions of objects the new ruleset has not brought back.
fn deferred_still_gone(deferred: &[Op], new: &Ruleset) -> Vec<Op> {
    let present: BTreeSet<(Family, &str)> = new
        .tables
        .iter()
        .flat_map(|t| {
            t.chains
                .keys()
                .chain(t.maps.keys())
                .map(move |n| (t.family, n.as_str()))
        })
        .collect();
    deferred
        .iter()
        .filter(|op| match op {
            Op::DeleteChain { table, name } | Op::DeleteMap { table, name, .. } => {
                !present.contains(&(table.family, name.as_str()))
            }
            _ => true,
        })
        .cloned()
        .collect()
}
