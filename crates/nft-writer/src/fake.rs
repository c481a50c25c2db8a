//! An in-memory kernel for tests: applies a transaction atomically (on a
//! copy, swapped in only if every operation succeeds), checks references
//! as the kernel does (missing table, chain or map; conflicting element),
//! remembers the last transaction and dumps its state as sorted `nft` text.

use crate::error::{libc_errno, Error};
use crate::kernel::{ApplyStats, Kernel};
use crate::model::*;
use crate::transaction::{Op, TableRef, Transaction};

/// The fake kernel.
#[derive(Debug, Clone, Default)]
pub struct FakeKernel {
    /// What the kernel holds now.
    pub ruleset: Ruleset,
    /// The last transaction that was applied successfully.
    pub last: Option<Transaction>,
    /// If set, the next `apply` fails on the operation with this index
    /// (as the real kernel would with EINVAL) and clears it.
    pub fail_at: Option<usize>,
}

impl FakeKernel {
    /// Operations of the last transaction applied (0 when none was).
    pub fn last_operations(&self) -> usize {
        self.last.as_ref().map_or(0, |t| t.ops.len())
    }

    /// An empty kernel.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state as `nft list ruleset` would group it: tables sorted, maps
    /// and chains sorted by name, rule order kept.
    pub fn dump(&self) -> String {
        let mut tables = self.ruleset.tables.clone();
        tables.sort_by(|a, b| (a.family, &a.name).cmp(&(b.family, &b.name)));
        tables.iter().map(ToString::to_string).collect()
    }

    /// The table `family`/`name`, if present.
    pub fn table(&self, family: Family, name: &str) -> Option<&Table> {
        self.ruleset
            .tables
            .iter()
            .find(|t| t.family == family && t.name == name)
    }
}

fn refuse(index: usize, op: &Op, errno: i32) -> Error {
    Error::Rejected {
        op_index: Some(index),
        op: op.to_string(),
        errno,
    }
}

fn find<'a>(rs: &'a mut Ruleset, t: &TableRef) -> Option<&'a mut Table> {
    rs.tables
        .iter_mut()
        .find(|x| x.family == t.family && x.name == t.name)
}

fn verdict_target(v: &Verdict) -> Option<&str> {
    match v {
        Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
        _ => None,
    }
}

/// Whether every set, map and chain `rule` refers to exists.
fn check_rule(table: &Table, rule: &Rule) -> bool {
    rule.0.iter().all(|s| match s {
        Stmt::Verdict(v) => verdict_target(v).is_none_or(|c| table.chains.contains_key(c)),
        s => s.set_name().is_none_or(|m| table.maps.contains_key(m)),
    })
}

pub(crate) fn apply_op(rs: &mut Ruleset, op: &Op) -> Result<(), i32> {
    match op {
        Op::AddTable(t) => {
            if find(rs, t).is_none() {
                rs.tables.push(Table::new(t.family, t.name.clone()));
            }
        }
        Op::DeleteTable(t) => {
            let before = rs.tables.len();
            rs.tables
                .retain(|x| !(x.family == t.family && x.name == t.name));
            if rs.tables.len() == before {
                return Err(libc_errno::ENOENT);
            }
        }
        Op::AddChain { table, name, base } => {
            let t = find(rs, table).ok_or(libc_errno::ENOENT)?;
            // As the kernel: `add chain` on an existing base chain may
            // change its policy, nothing else of its declaration.
            match t.chains.get_mut(name) {
                Some(c) if c.base.map(|b| b.fixed()) != base.map(|b| b.fixed()) => {
                    return Err(libc_errno::EEXIST)
                }
                Some(c) => c.base = *base,
                None => {
                    t.chains.insert(
                        name.clone(),
                        Chain {
                            name: name.clone(),
                            base: *base,
                            rules: Vec::new(),
                        },
                    );
                }
            }
        }
        Op::AddRule { table, chain, rule } => {
            let t = find(rs, table).ok_or(libc_errno::ENOENT)?;
            if !check_rule(t, rule) {
                return Err(libc_errno::ENOENT);
            }
            t.chains
                .get_mut(chain)
                .ok_or(libc_errno::ENOENT)?
                .rules
                .push(rule.clone());
        }
        Op::AddMap { table, name, kind } => {
            let t = find(rs, table).ok_or(libc_errno::ENOENT)?;
            match t.maps.get(name) {
                Some(m) if m.kind != *kind => return Err(libc_errno::EEXIST),
                Some(_) => {}
                None => {
                    t.maps.insert(name.clone(), Map::new(name.clone(), *kind));
                }
            }
        }
        Op::FlushChain { table, name } => {
            let t = find(rs, table).ok_or(libc_errno::ENOENT)?;
            t.chains
                .get_mut(name)
                .ok_or(libc_errno::ENOENT)?
                .rules
                .clear();
        }
        Op::DeleteChain { table, name } => {
            let t = find(rs, table).ok_or(libc_errno::ENOENT)?;
            let chain = t.chains.get(name).ok_or(libc_errno::ENOENT)?;
            let referenced = t.chains.values().any(|c| {
                c.rules.iter().any(|r| {
                    r.0.iter().any(|s| {
                        matches!(s, Stmt::Verdict(v) if verdict_target(v) == Some(name.as_str()))
                    })
                })
            }) || t.maps.values().any(|m| {
                m.elements.values().any(|v| {
                    matches!(v, ElemValue::Verdict(v) if verdict_target(v) == Some(name.as_str()))
                })
            });
            if referenced || !chain.rules.is_empty() {
                return Err(libc_errno::EBUSY);
            }
            t.chains.remove(name);
        }
        Op::DeleteMap { table, name, .. } => {
            let t = find(rs, table).ok_or(libc_errno::ENOENT)?;
            if !t.maps.contains_key(name) {
                return Err(libc_errno::ENOENT);
            }
            let used = t.chains.values().any(|c| {
                c.rules
                    .iter()
                    .any(|r| r.0.iter().any(|s| s.set_name() == Some(name.as_str())))
            });
            if used {
                return Err(libc_errno::EBUSY);
            }
            t.maps.remove(name);
        }
        Op::DeleteElements { table, map, keys } => {
            let t = find(rs, table).ok_or(libc_errno::ENOENT)?;
            let m = t.maps.get_mut(map).ok_or(libc_errno::ENOENT)?;
            for k in keys {
                m.elements.remove(k).ok_or(libc_errno::ENOENT)?;
            }
        }
        Op::AddElements {
            table,
            map,
            kind,
            elements,
        } => {
            let t = find(rs, table).ok_or(libc_errno::ENOENT)?;
            for (k, v) in elements {
                let target_ok = match v {
                    ElemValue::Verdict(v) => {
                        verdict_target(v).is_none_or(|c| t.chains.contains_key(c))
                    }
                    ElemValue::Dnat(ip, _) => t.family.contains(ip),
                    ElemValue::Member => true,
                    ElemValue::Raw(_) => false,
                };
                if !target_ok {
                    return Err(libc_errno::ENOENT);
                }
                let shape_ok = k.fits(t.family, *kind)
                    && matches!(
                        (kind, v),
                        (
                            MapKind::ServiceVerdict | MapKind::PortVerdict,
                            ElemValue::Verdict(_)
                        ) | (
                            MapKind::EndpointDnat | MapKind::PortEndpointDnat,
                            ElemValue::Dnat(..)
                        ) | (
                            MapKind::ServiceSet
                                | MapKind::PortSet
                                | MapKind::AddrPairSet
                                | MapKind::AddrSet,
                            ElemValue::Member
                        )
                    );
                if !shape_ok {
                    return Err(libc_errno::EINVAL);
                }
                let m = t.maps.get_mut(map).ok_or(libc_errno::ENOENT)?;
                if m.kind != *kind {
                    return Err(libc_errno::EINVAL);
                }
                match m.elements.get(k) {
                    Some(existing) if existing != v => return Err(libc_errno::EEXIST),
                    _ => {
                        m.elements.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    Ok(())
}

impl Kernel for FakeKernel {
    fn apply(&mut self, tx: &Transaction) -> Result<ApplyStats, Error> {
        let mut next = self.ruleset.clone();
        for (i, op) in tx.ops.iter().enumerate() {
            if self.fail_at == Some(i) {
                self.fail_at = None;
                return Err(refuse(i, op, libc_errno::EINVAL));
            }
            apply_op(&mut next, op).map_err(|errno| refuse(i, op, errno))?;
        }
        self.ruleset = next;
        self.last = Some(tx.clone());
        let mut messages = 2;
        crate::encode::encode_each(&tx.ops, |_| messages += 1);
        Ok(ApplyStats {
            operations: tx.ops.len(),
            messages,
            bytes: 0,
        })
    }

    fn read_back(&mut self) -> Result<Ruleset, Error> {
        let mut tables: Vec<Table> = self
            .ruleset
            .tables
            .iter()
            .filter(|t| t.name == crate::names::TABLE)
            .cloned()
            .collect();
        for t in &mut tables {
            for m in t.maps.values_mut().filter(|m| m.kind.is_dynamic()) {
                m.elements.clear();
            }
        }
        tables.sort_by_key(|t| t.family);
        Ok(Ruleset { tables })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn t() -> TableRef {
        TableRef {
            family: Family::Ip,
            name: "nftopo".into(),
        }
    }

    fn chain(name: &str) -> Op {
        Op::AddChain {
            table: t(),
            name: name.into(),
            base: None,
        }
    }

    fn goto(from: &str, to: &str) -> Op {
        Op::AddRule {
            table: t(),
            chain: from.into(),
            rule: Rule(vec![Stmt::Verdict(Verdict::Goto(to.into()))]),
        }
    }

    fn base_state() -> FakeKernel {
        let mut k = FakeKernel::new();
        k.apply(&Transaction {
            ops: vec![Op::AddTable(t()), chain("a"), chain("b"), goto("a", "b")],
        })
        .unwrap();
        k
    }

    #[test]
    fn a_rule_jumping_to_a_missing_chain_is_refused_and_nothing_changes() {
        let mut k = base_state();
        let before = k.dump();
        let err = k
            .apply(&Transaction {
                ops: vec![chain("c"), goto("c", "missing")],
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(
            matches!(
                err,
                Error::Rejected {
                    op_index: Some(1),
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            k.dump(),
            before,
            "a failed transaction must leave the state as it was"
        );
        assert!(!k.dump().contains("chain c"));
    }

    #[test]
    fn an_element_that_conflicts_with_an_existing_one_is_refused() {
        let mut k = base_state();
        let key = ElemKey::service("10.43.0.1".parse().unwrap(), api_watch::Protocol::Tcp, 80);
        let add = |to: &str| Op::AddElements {
            table: t(),
            map: "m".into(),
            kind: MapKind::ServiceVerdict,
            elements: vec![(key.clone(), ElemValue::Verdict(Verdict::Goto(to.into())))],
        };
        let map = Op::AddMap {
            table: t(),
            name: "m".into(),
            kind: MapKind::ServiceVerdict,
        };
        k.apply(&Transaction {
            ops: vec![map, add("a")],
        })
        .unwrap();
        let err = k
            .apply(&Transaction {
                ops: vec![add("b")],
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Exists);
        // The same element again is fine, as `nft add element` is.
        k.apply(&Transaction {
            ops: vec![add("a")],
        })
        .unwrap();
    }

    #[test]
    fn an_injected_failure_keeps_the_previous_transaction_as_the_last_one() {
        let mut k = base_state();
        let last = k.last.clone();
        k.fail_at = Some(0);
        assert!(k
            .apply(&Transaction {
                ops: vec![chain("x")]
            })
            .is_err());
        assert_eq!(k.last, last);
        // The injection is used once.
        k.apply(&Transaction {
            ops: vec![chain("x")],
        })
        .unwrap();
        assert!(k.dump().contains("chain x"));
    }

    #[test]
    fn deleting_a_missing_table_is_refused_but_add_then_delete_is_not() {
        let mut k = FakeKernel::new();
        let err = k
            .apply(&Transaction {
                ops: vec![Op::DeleteTable(t())],
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        k.apply(&Transaction::delete_tables(&[t()])).unwrap();
        assert_eq!(k.dump(), "");
    }
}
