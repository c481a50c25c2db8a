//! [`converge`]: what the kernel holds against the plan, object by object,
//! into the operations that close the gap, with the repairs counted by kind
//! and described one line each.

use super::*;

/// The operations that take the kernel from `held` (its read-back) to
/// `want` (the plan); see the module documentation.
pub fn converge(held: &Ruleset, want: &Ruleset) -> Convergence {
    converge_into(held, want.clone())
}

/// [`converge`], consuming `want`: its rules and elements move into the
/// operations instead of being copied (a first sync's whole ruleset).
pub fn converge_into(held: &Ruleset, mut want: Ruleset) -> Convergence {
    converge_with(held, &mut want, Take::Move, IN_WANT)
}

/// Where the elements of a desired set or map come from.
#[derive(Clone, Copy)]
pub(super) struct Elements<'a> {
    /// A map's elements, sorted by key, as a source that assembles one
    /// map at a time merges them ([`crate::IncrementalPlanner::merged`]:
    /// a full sync never holds the whole ruleset); `None`: from the map
    /// in the desired ruleset itself. A map the kernel holds is collected
    /// to be compared; a map added whole is filled from here a piece at a
    /// time as the transaction is sent.
    pub(super) merged: &'a dyn Fn(Family, &str) -> Option<Merged<'a>>,
    /// Whether `merged` gives a map's elements (without merging them): a
    /// map added whole is then filled only when the transaction is sent
    /// ([`Convergence::fill`]).
    pub(super) gives: &'a dyn Fn(Family, &str) -> bool,
}

fn merged_none(_: Family, _: &str) -> Option<Merged<'static>> {
    None
}

fn gives_none(_: Family, _: &str) -> bool {
    false
}

/// Every map's elements are in the desired ruleset.
pub(super) const IN_WANT: Elements<'static> = Elements {
    merged: &merged_none,
    gives: &gives_none,
};

/// How a convergence takes the rules and elements its operations need
/// from the desired ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Take {
    /// Moves them out (`want` is not used again): nothing is copied.
    Move,
    /// Copies them, and only them (`want` is compared again afterwards).
    Copy,
}

/// `x` itself (`Take::Move`, leaving the default) or a copy.
fn take<T: Clone + Default>(x: &mut T, how: Take) -> T {
    match how {
        Take::Move => std::mem::take(x),
        Take::Copy => x.clone(),
    }
}

/// [`converge`], taking from `want` as `how` says, and the elements of
/// its maps from `source`.
pub(super) fn converge_with(
    held: &Ruleset,
    want: &mut Ruleset,
    how: Take,
    source: Elements,
) -> Convergence {
    let mut c = Convergence::default();
    let mut batch = Batch::new();
    for family in [Family::Ip, Family::Ip6] {
        let h = table_of(held, family);
        let w = want
            .tables
            .iter_mut()
            .find(|t| t.family == family && t.name == names::TABLE);
        let t = TableRef {
            family,
            name: names::TABLE.into(),
        };
        match (h, w) {
            (None, None) => {}
            (None, Some(w)) => {
                note(&mut c, format!("table {t}: missing"));
                c.repairs.table += 1;
                add_table(w, &mut batch, how, source);
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
                    add_table(w, &mut batch, how, source);
                }
                None => converge_table(h, w, &mut batch, &mut c, how, source),
            },
        }
    }
    let (now, later, fill) = batch.finish_filling();
    c.now = now;
    c.later = later;
    c.fill = fill;
    c
}

pub(super) fn table_of(rs: &Ruleset, family: Family) -> Option<&Table> {
    rs.tables
        .iter()
        .find(|t| t.family == family && t.name == names::TABLE)
}

pub(super) fn chain_target(v: &Verdict) -> Option<&str> {
    match v {
        Verdict::Jump(c) | Verdict::Goto(c) => Some(c.as_str()),
        _ => None,
    }
}

pub(super) fn note(c: &mut Convergence, line: String) {
    if c.notes.len() < MAX_NOTES {
        c.notes.push(line);
    }
}

/// Every operation that creates `table` as planned, into an empty or a
/// just-deleted table of the same name.
pub(super) fn add_table(table: &mut Table, batch: &mut Batch, how: Take, source: Elements) {
    let t = TableRef {
        family: table.family,
        name: table.name.clone(),
    };
    batch.push(Op::AddTable(t.clone()));
    for c in table.chains.values_mut() {
        batch.push(Op::AddChain {
            table: t.clone(),
            name: c.name.clone(),
            base: c.base,
        });
        for rule in take(&mut c.rules, how) {
            batch.push(Op::AddRule {
                table: t.clone(),
                chain: c.name.clone(),
                rule,
            });
        }
    }
    for m in table.maps.values_mut() {
        add_map(&t, m, batch, how, source);
    }
}

/// `add set`/`add map` of `m` with all its elements.
pub(super) fn add_map(t: &TableRef, m: &mut Map, batch: &mut Batch, how: Take, source: Elements) {
    batch.push(Op::AddMap {
        table: t.clone(),
        name: m.name.clone(),
        kind: m.kind,
    });
    if (source.gives)(t.family, &m.name) {
        batch.add_all_elements(t, m.kind, m.name.clone());
        return;
    }
    batch.push(Op::AddElements {
        table: t.clone(),
        map: m.name.clone(),
        kind: m.kind,
        elements: take(&mut m.elements, how).into_iter().collect(),
    });
}

/// The elements `m` should hold, sorted by key: from `source`, or taken
/// from `m` as `how` says.
fn desired(family: Family, m: &mut Map, how: Take, source: Elements) -> Vec<(ElemKey, ElemValue)> {
    match (source.merged)(family, &m.name) {
        Some(merged) => merged.into_vec(),
        None => take(&mut m.elements, how).into_iter().collect(),
    }
}

/// Why `held` cannot be brought to `want` object by object, if it cannot:
/// another layout version, a base chain on another hook, type or priority
/// (the kernel cannot change those in place), or a set or map of another
/// shape under a name the plan uses (rules bind it; it cannot be swapped
/// within one batch without rewriting them all).
pub(super) fn why_not_convergible(held: &Table, want: &Table) -> Option<String> {
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
pub(super) fn references(table: &Table) -> (BTreeSet<&str>, BTreeSet<&str>) {
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
pub(super) fn rules_missing(a: &[Rule], b: &[Rule]) -> usize {
    missing(a, b).count()
}

/// The rules of `a` that `b` lacks, with multiplicity, in `a`'s order.
pub(super) fn missing<'a>(a: &'a [Rule], b: &'a [Rule]) -> impl Iterator<Item = &'a Rule> + 'a {
    let mut have: HashMap<&Rule, usize> = HashMap::new();
    for r in b {
        *have.entry(r).or_default() += 1;
    }
    a.iter().filter(move |r| match have.get_mut(r) {
        Some(n) if *n > 0 => {
            *n -= 1;
            false
        }
        _ => true,
    })
}

/// Converges one table; the rules and elements of `want` that the
/// operations need are taken as `how` says (its chain and map names stay
/// for the checks of what is no longer planned).
pub(super) fn converge_table(
    held: &Table,
    want: &mut Table,
    batch: &mut Batch,
    c: &mut Convergence,
    how: Take,
    source: Elements,
) {
    let t = TableRef {
        family: want.family,
        name: want.name.clone(),
    };
    for w in want.chains.values_mut() {
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
            // New endpoint-lookup rules go ahead in a transaction of their
            // own; this one rewrites the chain whole, so that it does not
            // depend on whether they went.
            let ahead = ahead::looks_up_endpoints(&w.name)
                && ahead::append_missing(&t, held, &w.name, &w.rules, &mut c.first);
            if !held_rules.is_empty() || ahead {
                batch.push(Op::FlushChain {
                    table: t.clone(),
                    name: w.name.clone(),
                });
            }
        }
        for rule in take(&mut w.rules, how) {
            batch.push(Op::AddRule {
                table: t.clone(),
                chain: w.name.clone(),
                rule,
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
    for w in want.maps.values_mut() {
        let Some(h) = held.maps.get(&w.name) else {
            note(c, format!("set {t} {}: missing", w.name));
            c.repairs.set += 1;
            add_map(&t, w, batch, how, source);
            continue;
        };
        if w.kind.is_dynamic() {
            continue;
        }
        let want = desired(t.family, w, how, source);
        converge_elements(&t, h, w, want, batch, c);
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

/// The element operations that take `held` to `want` (the elements
/// `map` should hold, sorted by key), in one pass over both.
pub(super) fn converge_elements(
    t: &TableRef,
    held: &Map,
    map: &Map,
    want: Vec<(ElemKey, ElemValue)>,
    batch: &mut Batch,
    c: &mut Convergence,
) {
    // Held keys that are not planned, held keys whose value changed, and
    // the elements to add (missing or changed).
    let (mut unplanned, mut changed, mut added) = (Vec::new(), Vec::new(), Vec::new());
    let mut h = held.elements.iter().peekable();
    for (k, v) in want {
        while let Some((hk, _)) = h.next_if(|(hk, _)| **hk < k) {
            unplanned.push(hk.clone());
        }
        match h.next_if(|(hk, _)| **hk == k) {
            Some((_, hv)) if *hv == v => continue,
            Some(_) => changed.push(k.clone()),
            None => {}
        }
        added.push((k, v));
    }
    unplanned.extend(h.map(|(k, _)| k.clone()));
    for k in &unplanned {
        if c.notes.len() >= MAX_NOTES {
            break;
        }
        let line = crate::render::element_text(k, &held.elements[k]);
        note(c, format!("element {t} {} {line}: not planned", map.name));
    }
    for (k, v) in &added {
        if c.notes.len() >= MAX_NOTES {
            break;
        }
        // A changed element is deleted and added: counted once.
        let what = if held.elements.contains_key(k) {
            "changed"
        } else {
            "missing"
        };
        let line = crate::render::element_text(k, v);
        note(c, format!("element {t} {} {line}: {what}", map.name));
    }
    let repaired = unplanned.len() + added.len();
    if repaired == 0 {
        return;
    }
    c.repairs.element += repaired;
    unplanned.extend(changed);
    batch.delete_elements(t, map.kind, map.name.clone(), unplanned);
    batch.push(Op::AddElements {
        table: t.clone(),
        map: map.name.clone(),
        kind: map.kind,
        elements: added,
    });
}
