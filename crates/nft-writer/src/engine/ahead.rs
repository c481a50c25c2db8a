//! Rules that must reach the kernel one transaction ahead of the elements
//! they find.
//!
//! A packet that is inside nftopo's chains while a transaction commits
//! finishes with the rules it started with, but looks elements up in the
//! new generation. When a service port's endpoints move to another count's
//! index range (5 endpoints at `10..=14` become 2 at `1..=2`), the old
//! `spread` rules must be able to find the new elements: if the rule of the
//! new count arrived in the same transaction, such a packet tries the old
//! count's rule, misses (its elements are gone), leaves the chains without
//! DNAT and is rejected as traffic to a cluster IP without endpoints. So a
//! count's rule is appended in a transaction of its own first: the one that
//! moves the elements then commits while every rule it needs is already in
//! place. Rules of counts no Service has any more are harmless (a lookup
//! that misses) and go with the second transaction.

use super::*;

/// Whether `chain` looks endpoints up by index (`spread`, `spread-port`).
pub(super) fn looks_up_endpoints(chain: &str) -> bool {
    chain == names::SPREAD || chain == names::SPREAD_PORT
}

/// Appends to `first` an `add rule` for every rule of `want` that `held`
/// lacks (with multiplicity, in `want`'s order); whether there was any.
pub(super) fn append_missing(
    table: &TableRef,
    chain: &str,
    held: &[Rule],
    want: &[Rule],
    first: &mut Transaction,
) -> bool {
    let mut have: HashMap<&Rule, usize> = HashMap::new();
    for r in held {
        *have.entry(r).or_default() += 1;
    }
    let before = first.ops.len();
    for rule in want {
        match have.get_mut(rule) {
            Some(n) if *n > 0 => *n -= 1,
            _ => first.ops.push(Op::AddRule {
                table: table.clone(),
                chain: chain.into(),
                rule: rule.clone(),
            }),
        }
    }
    first.ops.len() > before
}

/// Splits the endpoint-lookup rules an incremental update appends
/// ([`crate::IncrementalPlanner`]: a new count's rule, never a flush) from
/// its other operations: the first to send ahead, then the rest.
pub(super) fn split(ops: Vec<Op>) -> (Vec<Op>, Vec<Op>) {
    ops.into_iter()
        .partition(|op| matches!(op, Op::AddRule { chain, .. } if looks_up_endpoints(chain)))
}

/// The transaction that puts `chains` of `held` back as they were: sent
/// when the transaction after [`Convergence::first`] fails, so that a
/// failed convergence leaves the kernel as it found it.
pub(super) fn restore(held: &Ruleset, first: &Transaction) -> Transaction {
    let mut ops = Vec::new();
    let mut done: BTreeSet<(Family, &str)> = BTreeSet::new();
    for op in &first.ops {
        let Op::AddRule { table, chain, .. } = op else {
            continue;
        };
        if !done.insert((table.family, chain.as_str())) {
            continue;
        }
        ops.push(Op::FlushChain {
            table: table.clone(),
            name: chain.clone(),
        });
        let rules = converge::table_of(held, table.family)
            .and_then(|t| t.chains.get(chain))
            .map_or(&[][..], |c| c.rules.as_slice());
        for rule in rules {
            ops.push(Op::AddRule {
                table: table.clone(),
                chain: chain.clone(),
                rule: rule.clone(),
            });
        }
    }
    Transaction { ops }
}
