//! From a Service's old part to its new one: the operations for the
//! difference, the counts of shared objects and elements kept up to date,
//! and what a table's end of an update adds (spread rules, deletions of what
//! no Service holds any more).

use super::*;

impl IncrementalPlanner {
    /// Records how Service `key`'s part of table `f` changes from `old`
    /// to `new`, and updates the counts.
    pub(super) fn apply_part(
        &mut self,
        f: Family,
        key: &ObjectKey,
        old: &Part,
        new: &Part,
        d: &mut Delta,
    ) -> bool {
        let t = TableRef {
            family: f,
            name: names::TABLE.into(),
        };
        let kept = &mut self.kept_spreads[fi(f)];
        let [new_addr, new_port] = &mut d.new_spreads;
        for (have, wanted, added) in [
            (&mut kept.addr, &new.spreads, new_addr),
            (&mut kept.port, &new.port_spreads, new_port),
        ] {
            for n in wanted {
                if !have.contains(n) {
                    have.push(*n);
                    added.push(*n);
                }
            }
        }
        let idx = &mut self.index[fi(f)];
        let mut count = |d: &mut Delta, name: String, object: Object, up: bool| {
            let n = idx.objects.entry(name.clone()).or_insert(0);
            if d.emit {
                d.touched.entry(name.clone()).or_insert((*n, object));
            }
            if up {
                *n += 1;
            } else {
                *n -= 1;
                if *n == 0 {
                    idx.objects.remove(&name);
                }
            }
        };
        // Own chains: rewritten when their rules changed; new ones filled
        // (created when first counted); gone ones handled when counted.
        for c in &new.chains {
            let name = &c.name;
            match old.chain(name) {
                Some(o) if o.rules == c.rules => continue,
                Some(_) if !d.emit => continue,
                Some(_) => d.batch.push(Op::FlushChain {
                    table: t.clone(),
                    name: name.clone(),
                }),
                None => count(d, name.clone(), Object::Chain, true),
            }
            if !d.emit {
                continue;
            }
            for r in &c.rules {
                d.batch.push(Op::AddRule {
                    table: t.clone(),
                    chain: name.clone(),
                    rule: r.clone(),
                });
            }
        }
        for c in &old.chains {
            if new.chain(&c.name).is_none() {
                count(d, c.name.clone(), Object::Chain, false);
            }
        }
        let mut full = false;
        for m in &new.sets {
            let name = &m.name;
            match old.set(name) {
                Some(o) if o.kind == m.kind => {}
                Some(_) => full = true,
                None => {
                    let pending = self.pending_sets.get(&(f, name.clone()));
                    full |= pending.is_some_and(|k| *k != m.kind);
                    count(d, name.clone(), Object::Set(m.kind), true);
                }
            }
        }
        for m in &old.sets {
            if new.set(&m.name).is_none() {
                count(d, m.name.clone(), Object::Set(m.kind), false);
            }
        }
        // Elements.
        let maps: BTreeSet<&'static str> = old
            .elements
            .iter()
            .chain(&new.elements)
            .map(|(m, _)| *m)
            .collect();
        for map in maps {
            let o = old.elements(map);
            let n = new.elements(map);
            if counted(map) || map == names::FIREWALL_IPS {
                self.shared_elements(f, key, map, o, n, d);
                continue;
            }
            if !d.emit {
                continue;
            }
            let kind = self.skeletons[fi(f)].maps[map].kind;
            let gone: Vec<ElemKey> = o
                .iter()
                .filter(|(k, v)| !n.has(k, v))
                .map(|(k, _)| k)
                .collect();
            d.batch.delete_elements(&t, kind, map.to_string(), gone);
            let added: Vec<(ElemKey, ElemValue)> = n.iter().filter(|(k, v)| !o.has(k, v)).collect();
            d.batch.push(Op::AddElements {
                table: t.clone(),
                map: map.to_string(),
                kind,
                elements: added,
            });
        }
        full
    }

    /// Updates the counted elements of `map` for Service `key`.
    pub(super) fn shared_elements(
        &mut self,
        f: Family,
        key: &ObjectKey,
        map: &'static str,
        old: &PartElements,
        new: &PartElements,
        d: &mut Delta,
    ) {
        let idx = &mut self.index[fi(f)];
        for (k, v) in old.iter() {
            if new.has(&k, &v) {
                continue;
            }
            if d.emit {
                let before = idx.element(map, &k);
                d.shared.entry((map, k.clone())).or_insert(before);
            }
            if counted(map) {
                idx.counted.remove(map, &k);
            } else if let Some(by) = idx.firewall.get_mut(&k) {
                by.remove(key);
                if by.is_empty() {
                    idx.firewall.remove(&k);
                }
            }
        }
        for (k, v) in new.iter() {
            if old.has(&k, &v) {
                continue;
            }
            if d.emit {
                let before = idx.element(map, &k);
                d.shared.entry((map, k.clone())).or_insert(before);
            }
            if counted(map) {
                idx.counted.add(map, &k);
            } else {
                idx.firewall
                    .entry(k.clone())
                    .or_default()
                    .insert(key.clone(), v.clone());
            }
        }
    }

    /// Turns the counts that crossed zero and the shared elements that
    /// changed into operations.
    pub(super) fn finish(&mut self, f: Family, d: &mut Delta) -> bool {
        let t = TableRef {
            family: f,
            name: names::TABLE.into(),
        };
        let idx = &self.index[fi(f)];
        let mut full = false;
        for (name, (before, object)) in std::mem::take(&mut d.touched) {
            let after = idx.objects.get(&name).copied().unwrap_or(0);
            match (before > 0, after > 0) {
                (false, true) => match object {
                    Object::Set(kind) => d.batch.push(Op::AddMap {
                        table: t.clone(),
                        name,
                        kind,
                    }),
                    Object::Chain => d.batch.push(Op::AddChain {
                        table: t.clone(),
                        name: name.clone(),
                        base: None,
                    }),
                },
                (true, false) => match object {
                    Object::Set(kind) => d.batch.defer(Op::DeleteMap {
                        table: t.clone(),
                        name,
                        kind,
                    }),
                    _ => {
                        d.batch.push(Op::FlushChain {
                            table: t.clone(),
                            name: name.clone(),
                        });
                        d.batch.defer(Op::DeleteChain {
                            table: t.clone(),
                            name,
                        });
                    }
                },
                _ => {}
            }
        }
        // A new endpoint count: its rule appended to `spread` (or
        // `spread-port`), the others left alone. Adding a rule that looks
        // an endpoint map up walks all of the map's elements
        // (`nf_tables_bind_set`: its "already bound to the same chain"
        // shortcut compares with the new binding's chain before setting
        // it, so it never applies), once per new count.
        let [addr, port] = std::mem::take(&mut d.new_spreads);
        let rules = spread_rules(&addr, &port);
        for (chain, rules) in [names::SPREAD, names::SPREAD_PORT].into_iter().zip(rules) {
            for rule in rules.into_iter().filter(|_| d.emit) {
                d.batch.push(Op::AddRule {
                    table: t.clone(),
                    chain: chain.into(),
                    rule,
                });
            }
        }
        for ((map, k), before) in std::mem::take(&mut d.shared) {
            let after = idx.element(map, &k);
            if after == before {
                continue;
            }
            let Some(m) = self.skeletons[fi(f)].maps.get(map) else {
                full = true;
                continue;
            };
            if before.is_some() {
                d.batch
                    .delete_elements(&t, m.kind, map.to_string(), vec![k.clone()]);
            }
            if let Some(v) = after {
                d.batch.push(Op::AddElements {
                    table: t.clone(),
                    map: map.to_string(),
                    kind: m.kind,
                    elements: vec![(k, v)],
                });
            }
        }
        full
    }
}
