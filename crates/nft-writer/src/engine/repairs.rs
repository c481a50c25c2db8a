//! What a convergence found and decided: [`Repairs`] by kind, and the
//! [`Convergence`] with its operations.

use super::*;

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
    /// Rules a chain of endpoint lookups (`spread`, `spread-port`) gains,
    /// appended in a transaction of their own before `now`
    /// (`engine/ahead.rs`); `now` is complete without them.
    pub first: Transaction,
    /// Operations to send now (empty when in step).
    pub now: Transaction,
    /// Deletions for the next sync.
    pub later: Vec<Op>,
    /// Indices of the `add element` operations of `now` that add a whole
    /// map from a source of elements (the planner's), empty here: the
    /// syncer fills each as it is sent. Always empty for [`converge`].
    pub fill: Vec<usize>,
    /// What differed, by kind.
    pub repairs: Repairs,
    /// One line per repaired object, the first [`MAX_NOTES`].
    pub notes: Vec<String>,
    /// Tables replaced whole, with why (a layout this version cannot
    /// converge).
    pub replaced: Vec<String>,
}
