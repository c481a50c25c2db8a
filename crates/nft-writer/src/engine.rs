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
use crate::incremental::{Changes, IncrementalPlanner, Merged};
use crate::kernel::Kernel;
use crate::model::*;
use crate::names;
use crate::transaction::{Op, TableRef, Transaction};

mod ahead;
mod batch;
mod converge;
mod repairs;

pub use batch::*;
pub use converge::*;
pub use repairs::*;

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

/// Most elements of one `add element` operation when a whole map is
/// filled as the transaction is sent: the batch holds the encoded bytes
/// of the map, but never the map itself (at 100k services, 1.1 million
/// endpoint elements of 72 bytes).
const PIECE: usize = 4096;

/// The `add element` operations that add `elements` to `map`, at most
/// [`PIECE`] each, made as they are taken.
fn pieces<'a>(
    table: TableRef,
    map: String,
    kind: MapKind,
    mut elements: impl Iterator<Item = (ElemKey, ElemValue)> + 'a,
) -> Box<dyn Iterator<Item = Op> + 'a> {
    Box::new(std::iter::from_fn(move || {
        let piece: Vec<(ElemKey, ElemValue)> = elements.by_ref().take(PIECE).collect();
        (!piece.is_empty()).then(|| Op::AddElements {
            table: table.clone(),
            map: map.clone(),
            kind,
            elements: piece,
        })
    }))
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
    /// in one transaction (two when endpoint-lookup rules go ahead,
    /// [`Convergence::first`]). On error the kernel holds what it held
    /// (a transaction is atomic, and rules sent ahead are taken back by a
    /// third) and the next sync converges again.
    pub fn converge(&mut self, want: &Ruleset) -> Result<SyncStats, Error> {
        self.converge_expecting(want.clone(), converge::IN_WANT, Vec::new())
    }

    /// [`Syncer::converge`], consuming `want`: its rules and elements move
    /// into the transaction instead of being copied.
    pub fn converge_owned(&mut self, want: Ruleset) -> Result<SyncStats, Error> {
        self.converge_expecting(want, converge::IN_WANT, Vec::new())
    }

    /// [`Syncer::converge`] to what `planner` holds, taken from its frame
    /// and one map's elements at a time ([`IncrementalPlanner::frame`],
    /// [`IncrementalPlanner::merged`]: collected for a map the kernel
    /// holds, a piece at a time for one it lacks): the whole ruleset is
    /// never assembled.
    fn converge_planner(
        &mut self,
        planner: &IncrementalPlanner,
        expected: Vec<Op>,
    ) -> Result<SyncStats, Error> {
        let merged = |family: Family, map: &str| planner.merged(family, map);
        let gives = |family: Family, map: &str| planner.streams(family, map);
        let source = converge::Elements {
            merged: &merged,
            gives: &gives,
        };
        self.converge_expecting(planner.frame(), source, expected)
    }

    /// [`Syncer::converge`] to `want` (the elements of its maps from
    /// `source`), where the kernel was in step before `expected`
    /// (operations this sync would have sent without reading back): what
    /// differs beyond them is drift.
    fn converge_expecting(
        &mut self,
        mut want: Ruleset,
        source: converge::Elements,
        expected: Vec<Op>,
    ) -> Result<SyncStats, Error> {
        let was_in_step = std::mem::replace(&mut self.in_step, false);
        // Whatever was deferred, the read-back shows if it is still there.
        self.deferred.clear();
        self.notes.clear();
        let mut held = self.kernel.read_back()?;
        // Rules sent ahead are taken back if what follows fails: the
        // chains as the kernel holds them now.
        let restore = |c: &Convergence, held: &Ruleset| {
            (!c.first.is_empty()).then(|| ahead::restore(held, &c.first))
        };
        let (c, drift, restore) = if !was_in_step || expected.is_empty() {
            let c = converge::converge_with(&held, &mut want, converge::Take::Move, source);
            let restore = restore(&c, &held);
            // Out of step, what differs is nftopo's own catching up.
            let drift = if was_in_step {
                c.repairs
            } else {
                Repairs::default()
            };
            (c, drift, restore)
        } else {
            // `want` is compared twice: the first time copies the rules it
            // takes (the planner's maps give their elements each time).
            let c = converge::converge_with(&held, &mut want, converge::Take::Copy, source);
            let restore = restore(&c, &held);
            // What the kernel would hold had the planned operations been
            // sent: whatever still differs was changed behind our back.
            for op in &expected {
                let _ = crate::fake::apply_op(&mut held, op);
            }
            let drift = converge::converge_with(&held, &mut want, converge::Take::Move, source);
            (c, drift.repairs, restore)
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
        if !c.first.is_empty() {
            let applied = self.kernel.apply_owned(c.first)?;
            stats.operations += applied.operations;
            stats.messages += applied.messages;
        }
        if !c.now.is_empty() {
            // Each whole map's elements are taken from the source as the
            // operation is sent, a piece at a time, each dropped once
            // encoded.
            let fill = c.fill;
            let mut ops = c
                .now
                .ops
                .into_iter()
                .enumerate()
                .flat_map(|(i, op)| match op {
                    Op::AddElements {
                        table, map, kind, ..
                    } if fill.binary_search(&i).is_ok() => {
                        let elements = (source.merged)(table.family, &map);
                        pieces(table, map, kind, elements.into_iter().flatten())
                    }
                    op => Box::new(std::iter::once(op)),
                });
            let applied = match self.kernel.apply_iter(&mut ops) {
                Ok(applied) => applied,
                Err(e) => {
                    drop(ops);
                    if let Some(tx) = restore {
                        if let Err(again) = self.kernel.apply_owned(tx) {
                            tracing::warn!(error = %again, "could not take back the endpoint-lookup rules sent ahead");
                        }
                    }
                    return Err(e);
                }
            };
            stats.operations += applied.operations;
            stats.messages += applied.messages;
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
    /// A new endpoint count's rule goes in a transaction ahead of the
    /// others (`engine/ahead.rs`). On error the failed transaction was not
    /// applied (a rule sent ahead stays: it finds nothing, and the planner
    /// holds it) and the next sync converges.
    pub fn sync_changes(
        &mut self,
        planner: &IncrementalPlanner,
        changes: Changes,
        full: bool,
    ) -> Result<SyncStats, Error> {
        if changes.full || !self.in_step {
            return self.converge_planner(planner, Vec::new());
        }
        let mut batch = Batch::new();
        for op in std::mem::take(&mut self.deferred) {
            if !planner.holds(&op) {
                batch.push_deferred(op);
            }
        }
        let (ahead, now) = ahead::split(changes.now);
        for op in now {
            batch.push(op);
        }
        for op in changes.later {
            batch.defer(op);
        }
        let (tx, later) = batch.finish();
        if full {
            let mut expected = ahead;
            expected.extend(tx.ops);
            expected.extend(later);
            return self.converge_planner(planner, expected);
        }
        let mut stats = SyncStats::default();
        if !ahead.is_empty() {
            self.in_step = false;
            let applied = self.kernel.apply_owned(Transaction { ops: ahead })?;
            stats.operations = applied.operations;
            stats.messages = applied.messages;
        }
        if !tx.is_empty() {
            self.in_step = false;
            let applied = self.kernel.apply_owned(tx)?;
            stats.operations += applied.operations;
            stats.messages += applied.messages;
        }
        self.in_step = true;
        self.deferred = later;
        Ok(stats)
    }
}
