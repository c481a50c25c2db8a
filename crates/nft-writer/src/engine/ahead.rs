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

/// Appends to `first` an `add rule` for every rule of `want` that `chain`
/// in `held` lacks (with multiplicity, in `want`'s order); whether there
/// was any. None goes ahead when the chain holds no rule (no connection
/// in flight can depend on one: a first sync, a flushed table), or when
/// the chain, or a set or map a missing rule looks up, is not in `held`
/// yet: the transaction that creates it adds the rule, as before.
pub(super) fn append_missing(
    table: &TableRef,
    held: &Table,
    chain: &str,
    want: &[Rule],
    first: &mut Transaction,
) -> bool {
    let Some(have) = held.chains.get(chain).filter(|c| !c.rules.is_empty()) else {
        return false;
    };
    let missing: Vec<&Rule> = converge::missing(want, &have.rules).collect();
    let ready = missing.iter().all(|r| {
        r.0.iter()
            .all(|s| s.set_name().is_none_or(|m| held.maps.contains_key(m)))
    });
    if missing.is_empty() || !ready {
        return false;
    }
    first
        .ops
        .extend(missing.into_iter().map(|rule| Op::AddRule {
            table: table.clone(),
            chain: chain.into(),
            rule: rule.clone(),
        }));
    true
}

/// Splits the endpoint-lookup rules an incremental update appends
/// ([`crate::IncrementalPlanner`]: a new count's rule, never a flush) from
/// its other operations: the first to send ahead, then the rest.
pub(super) fn split(ops: Vec<Op>) -> (Vec<Op>, Vec<Op>) {
    ops.into_iter()
        .partition(|op| matches!(op, Op::AddRule { chain, .. } if looks_up_endpoints(chain)))
}

/// The transaction that puts the chains `first` appends to back as `held`
/// has them: sent when the transaction after [`Convergence::first`]
/// fails, so that a failed convergence leaves the kernel as it found it.
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
