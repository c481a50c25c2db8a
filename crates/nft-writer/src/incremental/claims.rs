//! Who owns an address, protocol and port (or a node port) claimed by
//! several Services (the first in plan order, as in [`plan_ruleset`]), and
//! re-planning one Service into its parts.
//!
//! [`plan_ruleset`]: crate::plan_ruleset

use super::*;

impl IncrementalPlanner {
    /// Replaces the claims of `keys` with those of their new port plans;
    /// returns `keys` and every other Service that claims one of the same
    /// addresses or node ports (its ownership may have changed).
    pub(super) fn claim(
        &mut self,
        plan: &ProxyPlan,
        keys: &BTreeSet<ObjectKey>,
    ) -> BTreeSet<ObjectKey> {
        let mut touched_addrs: [BTreeSet<AddrKey>; 2] = Default::default();
        let mut touched_ports: [BTreeSet<PortKey>; 2] = Default::default();
        for key in keys {
            let ports = ports_of(plan, key);
            let entry = self.entries.entry(key.clone()).or_default();
            for f in FAMILIES {
                let idx = &mut self.index[fi(f)];
                let mut side = entry.take_side(f);
                for (k, name) in std::mem::take(&mut side.addr_claims) {
                    if let Some(set) = idx.owners.get_mut(&k) {
                        set.remove(&(key.clone(), name));
                        if set.is_empty() {
                            idx.owners.remove(&k);
                        }
                    }
                    touched_addrs[fi(f)].insert(k);
                }
                for (k, name) in std::mem::take(&mut side.port_claims) {
                    if let Some(set) = idx.port_owners.get_mut(&k) {
                        set.remove(&(key.clone(), name));
                        if set.is_empty() {
                            idx.port_owners.remove(&k);
                        }
                    }
                    touched_ports[fi(f)].insert(k);
                }
                for sp in ports {
                    let Some(addrs) = family_addrs(sp, f) else {
                        continue;
                    };
                    for ip in addrs {
                        let k = (ip, sp.protocol, sp.port);
                        idx.owners
                            .entry(k)
                            .or_default()
                            .insert((key.clone(), sp.port_name.clone()));
                        side.addr_claims.push((k, sp.port_name.clone()));
                        touched_addrs[fi(f)].insert(k);
                    }
                    if let Some(np) = sp.node_port {
                        let k = (sp.protocol, np);
                        idx.port_owners
                            .entry(k)
                            .or_default()
                            .insert((key.clone(), sp.port_name.clone()));
                        side.port_claims.push((k, sp.port_name.clone()));
                        touched_ports[fi(f)].insert(k);
                    }
                }
                entry.put_side(f, side);
            }
            let wants = wants_ip6(ports);
            match (entry.wants_ip6, wants) {
                (false, true) => self.ip6_services += 1,
                (true, false) => self.ip6_services -= 1,
                _ => {}
            }
            entry.wants_ip6 = wants;
        }
        let mut affected = keys.clone();
        for f in FAMILIES {
            let idx = &self.index[fi(f)];
            for k in &touched_addrs[fi(f)] {
                let claimants = idx.owners.get(k).into_iter().flatten();
                affected.extend(claimants.map(|(s, _)| s.clone()));
            }
            for k in &touched_ports[fi(f)] {
                let claimants = idx.port_owners.get(k).into_iter().flatten();
                affected.extend(claimants.map(|(s, _)| s.clone()));
            }
        }
        affected
    }

    /// Re-plans one Service from its port plans in `plan` and records the
    /// difference in `deltas`. Returns true when only a full replace can
    /// apply it.
    pub(super) fn replan(
        &mut self,
        plan: &ProxyPlan,
        key: &ObjectKey,
        deltas: &mut [Delta; 2],
    ) -> bool {
        let ports = ports_of(plan, key);
        let inputs = self.node.as_ref().expect("set by update");
        let mut parts: [Contribution; 2] = Default::default();
        let mut problems = Vec::new();
        for f in FAMILIES {
            let idx = &self.index[fi(f)];
            for sp in ports {
                let Some(claimed) = family_addrs(sp, f) else {
                    continue;
                };
                let me = (key, sp.port_name.as_str());
                let mut addrs = Vec::new();
                for ip in claimed {
                    let owner = idx
                        .owners
                        .get(&(ip, sp.protocol, sp.port))
                        .and_then(|s| s.first())
                        .expect("claimed above");
                    if (&owner.0, owner.1.as_str()) == me {
                        addrs.push(ip);
                    } else {
                        problems.push(duplicate(
                            sp,
                            &ip.to_string(),
                            sp.port,
                            (&owner.0, owner.1.as_str()),
                        ));
                    }
                }
                let node_port = sp.node_port.filter(|np| {
                    let owner = idx
                        .port_owners
                        .get(&(sp.protocol, *np))
                        .and_then(|s| s.first())
                        .expect("claimed above");
                    let mine = (&owner.0, owner.1.as_str()) == me;
                    if !mine && f == Family::Ip {
                        problems.push(duplicate(
                            sp,
                            "node port",
                            *np,
                            (&owner.0, owner.1.as_str()),
                        ));
                    }
                    mine
                });
                let node = NodeView {
                    node_ip: primary_address(&inputs.addresses, f),
                    pods: inputs.pods[fi(f)].as_ref(),
                };
                contribute(&self.cfg, f, node, sp, &addrs, node_port, &mut parts[fi(f)]);
            }
        }
        let mut entry = self.entries.remove(key).unwrap_or_default();
        let mut full = false;
        for f in FAMILIES {
            let mut side = entry.take_side(f);
            let new = Part::from(std::mem::take(&mut parts[fi(f)]));
            full |= self.apply_part(f, key, &side.part, &new, &mut deltas[fi(f)]);
            side.part = new;
            entry.put_side(f, side);
        }
        entry.problems = problems;
        if !ports.is_empty() {
            self.entries.insert(key.clone(), entry);
        }
        full
    }
}
