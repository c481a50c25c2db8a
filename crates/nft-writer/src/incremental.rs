//! Incremental planning: the ruleset kept as a fixed skeleton per table
//! plus one [`Contribution`] per Service, so that a change re-plans only
//! the Services it touched and yields the operations for the difference
//! without building or comparing the whole ruleset.
//!
//! What is shared between Services is counted or kept: the rules of
//! `spread` / `spread-port` (one per endpoint count, added when a Service
//! first has that count and kept while the planner lives, so that an
//! endpoint that comes and goes changes elements only), the `hairpin`
//! pairs (one element for all the ports of an endpoint), the `cluster-ips` addresses (one for all the ports of a
//! Service) and `firewall-ips` elements (where, as in [`plan_ruleset`],
//! the last Service in plan order wins). Which Service owns an address,
//! protocol and port (or a node port) claimed by several is decided as in
//! [`plan_ruleset`] (the first in plan order); a Service whose claims
//! change re-plans the other claimants too.
//!
//! [`IncrementalPlanner::ruleset`] assembles the whole [`Ruleset`] from the
//! same parts, for full syncs; it equals what [`plan_ruleset`] gives for
//! the same plan.
//!
//! [`plan_ruleset`]: crate::plan_ruleset

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use api_watch::{ObjectKey, Protocol};
use topology_filter::{Problem, ProxyPlan, ServicePortPlan};

use crate::engine::Batch;
use crate::model::*;
use crate::names;
use crate::planner::{
    add_spread_chains, contribute, duplicate, family_cidrs, primary_address, skeleton,
    spread_rules, Contribution, PlannerConfig,
};
use crate::transaction::{Op, TableRef};

const FAMILIES: [Family; 2] = [Family::Ip, Family::Ip6];

fn fi(family: Family) -> usize {
    match family {
        Family::Ip => 0,
        Family::Ip6 => 1,
    }
}

/// Which Services to re-plan.
#[derive(Debug, Clone, Copy)]
pub enum Dirty<'a> {
    /// Every Service (those in the plan and those the planner holds).
    All,
    /// Only these (Services gone from the plan are removed).
    Services(&'a BTreeSet<ObjectKey>),
}

/// What [`IncrementalPlanner::update`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// Operations that bring the previous ruleset to the new one.
    pub now: Vec<Op>,
    /// Deletions of chains and sets no longer used, for the next sync.
    pub later: Vec<Op>,
    /// Only a full replace gets there (first plan, this node's addresses
    /// or the ServiceCIDRs changed, the `ip6` table appears or goes, a set
    /// changed its shape):
    /// `now` and `later` are empty then.
    pub full: bool,
    /// Services re-planned.
    pub replanned: usize,
}

/// A Service's claim: (service, port name), ordered as the plan orders
/// service ports.
type Claimant = (ObjectKey, String);
type AddrKey = (IpAddr, Protocol, u16);
type PortKey = (Protocol, u16);

/// A [`Contribution`] as the planner keeps it: sorted vectors, sized to
/// what they hold (a map per Service and table would allocate whole tree
/// nodes for a handful of entries: about 2 KiB more per Service).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Part {
    /// Sorted by name.
    chains: Vec<Chain>,
    /// Sorted by name.
    sets: Vec<Map>,
    /// Sorted by map name, then key.
    elements: Vec<(&'static str, Vec<(ElemKey, ElemValue)>)>,
    spreads: Vec<usize>,
    port_spreads: Vec<usize>,
}

impl From<Contribution> for Part {
    fn from(c: Contribution) -> Self {
        Part {
            chains: c.chains.into_values().collect(),
            sets: c.sets.into_values().collect(),
            elements: c
                .elements
                .into_iter()
                .map(|(m, e)| (m, e.into_iter().collect()))
                .collect(),
            spreads: c.spreads.into_iter().collect(),
            port_spreads: c.port_spreads.into_iter().collect(),
        }
    }
}

impl Part {
    fn chain(&self, name: &str) -> Option<&Chain> {
        let i = self
            .chains
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()?;
        Some(&self.chains[i])
    }

    fn set(&self, name: &str) -> Option<&Map> {
        let i = self
            .sets
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()?;
        Some(&self.sets[i])
    }

    fn elements(&self, map: &str) -> &[(ElemKey, ElemValue)] {
        match self.elements.binary_search_by(|(m, _)| (*m).cmp(map)) {
            Ok(i) => &self.elements[i].1,
            Err(_) => &[],
        }
    }

    /// As [`Contribution::merge_into`].
    fn merge_into(&self, table: &mut Table) {
        for c in &self.chains {
            table.chains.insert(c.name.clone(), c.clone());
        }
        for m in &self.sets {
            table.maps.insert(m.name.clone(), m.clone());
        }
        for (map, elements) in &self.elements {
            let m = table.maps.get_mut(*map).expect("skeleton maps exist");
            for (k, v) in elements {
                m.elements.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The value of `key` among sorted `elements`.
fn lookup<'a>(elements: &'a [(ElemKey, ElemValue)], key: &ElemKey) -> Option<&'a ElemValue> {
    let i = elements.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
    Some(&elements[i].1)
}

/// What the planner holds for one Service.
#[derive(Debug, Default)]
struct Entry {
    /// Its part of the `ip` and the `ip6` table.
    parts: [Part; 2],
    /// Per family, the addresses and node ports it claims, with the port
    /// name that claims them.
    addr_claims: [Vec<(AddrKey, String)>; 2],
    port_claims: [Vec<(PortKey, String)>; 2],
    /// Service ports left out because another Service owns the address.
    problems: Vec<Problem>,
    /// It has an IPv6 address (the `ip6` table exists while any has).
    wants_ip6: bool,
}

/// Per table: who claims what, and how many Services hold each shared
/// object.
#[derive(Debug, Default)]
struct Index {
    owners: BTreeMap<AddrKey, BTreeSet<Claimant>>,
    port_owners: BTreeMap<PortKey, BTreeSet<Claimant>>,
    /// Chains and sets of the parts, and spread chains, with the number
    /// of Services that hold each.
    objects: HashMap<String, usize>,
    /// Elements of the counted sets (`hairpin` pairs, `cluster-ips`
    /// addresses) with the number of Services that add each.
    counted: HashMap<(&'static str, ElemKey), usize>,
    /// `firewall-ips` elements by Service.
    firewall: BTreeMap<ElemKey, BTreeMap<ObjectKey, ElemValue>>,
}

impl Index {
    fn element(&self, map: &str, key: &ElemKey) -> Option<ElemValue> {
        if counted(map) {
            self.counted
                .get(&(map, key.clone()))
                .map(|_| ElemValue::Member)
        } else {
            self.firewall
                .get(key)
                .and_then(|by| by.values().next_back().cloned())
        }
    }
}

/// Whether the elements of `map` are counted (a set several Services add
/// the same element to), rather than owned by the last Service.
fn counted(map: &str) -> bool {
    map == names::HAIRPIN || map == names::CLUSTER_IPS
}

/// What the skeleton of the tables is planned from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    /// The node of the plan.
    node: String,
    /// Its addresses.
    addresses: Vec<IpAddr>,
    /// The ServiceCIDRs.
    service_cidrs: Vec<Cidr>,
}

/// A shared object whose count changed during an update.
#[derive(Debug, Clone)]
enum Object {
    Chain,
    Set(MapKind),
}

/// The operations of one table, collected in the order they must run.
#[derive(Debug, Default)]
struct Delta {
    /// Collect operations (not when the update is a full one anyway).
    emit: bool,
    /// The operations, ordered by [`Batch`].
    batch: Batch,
    /// Objects whose count changed: count before the update, and kind.
    touched: BTreeMap<String, (usize, Object)>,
    /// Shared elements that changed: value before the update.
    shared: BTreeMap<(&'static str, ElemKey), Option<ElemValue>>,
    /// Endpoint counts whose rule this update appends to `spread` /
    /// `spread-port`.
    new_spreads: [Vec<usize>; 2],
}

/// Keeps the ruleset as per-Service contributions; see the module
/// documentation.
#[derive(Debug)]
pub struct IncrementalPlanner {
    cfg: PlannerConfig,
    /// What the skeletons were planned from; `None` before the first
    /// update.
    node: Option<Inputs>,
    skeletons: [Table; 2],
    entries: BTreeMap<ObjectKey, Entry>,
    index: [Index; 2],
    ip6_services: usize,
    /// Sets whose deletion the last update deferred, with their shape.
    pending_sets: HashMap<(Family, String), MapKind>,
    /// Per table, the endpoint counts with a rule in `spread` /
    /// `spread-port`: every count a Service has had since the planner was
    /// made (or last planned everything from scratch). A rule is never
    /// removed while the planner lives: adding one makes the kernel
    /// validate the whole table at commit (`nf_tables_newrule` marks it
    /// for validation), so an endpoint that comes and goes must find its
    /// rule in place and change elements only.
    kept_spreads: [Spreads; 2],
}

/// The endpoint counts that have a rule in `spread` (`addr`) and in
/// `spread-port` (`port`), in the order of the rules: increasing after a
/// full update, then appended as they come (a rule is never rewritten:
/// each rule that looks `service-endpoints` up makes the kernel walk the
/// whole map when it is added, `nf_tables_bind_set`).
#[derive(Debug, Clone, Default)]
struct Spreads {
    addr: Vec<usize>,
    port: Vec<usize>,
}

/// The port plans of `key` in `plan` (sorted by service, as
/// `topology_filter::plan` makes it).
fn ports_of<'p>(plan: &'p ProxyPlan, key: &ObjectKey) -> &'p [ServicePortPlan] {
    let start = plan.services.partition_point(|p| p.service < *key);
    let end = start + plan.services[start..].partition_point(|p| p.service == *key);
    &plan.services[start..end]
}

fn wants_ip6(ports: &[ServicePortPlan]) -> bool {
    ports.iter().any(|sp| {
        sp.cluster_ips
            .iter()
            .chain(&sp.external_ips)
            .chain(&sp.load_balancer_ips)
            .any(IpAddr::is_ipv6)
    })
}

/// The addresses of `sp` in `family` (cluster IPs, external IPs,
/// load-balancer IPs, in that order), when the port belongs to the family.
fn family_addrs(sp: &ServicePortPlan, family: Family) -> Option<Vec<IpAddr>> {
    if !sp.cluster_ips.iter().any(|ip| family.contains(ip)) {
        return None;
    }
    Some(
        sp.cluster_ips
            .iter()
            .chain(&sp.external_ips)
            .chain(&sp.load_balancer_ips)
            .filter(|ip| family.contains(ip))
            .copied()
            .collect(),
    )
}

impl IncrementalPlanner {
    /// A planner that holds nothing yet: the first update is full.
    pub fn new(cfg: PlannerConfig) -> Self {
        Self {
            skeletons: [
                Table::new(Family::Ip, names::TABLE),
                Table::new(Family::Ip6, names::TABLE),
            ],
            cfg,
            node: None,
            entries: BTreeMap::new(),
            index: Default::default(),
            ip6_services: 0,
            pending_sets: HashMap::new(),
            kept_spreads: Default::default(),
        }
    }

    /// Brings the planner to `plan` (made by `topology_filter::plan`, or
    /// kept up to date with `topology_filter::replan`), re-planning the
    /// `dirty` Services (and those whose ownership of an address they
    /// change), and returns the operations that take the kernel from the
    /// previous ruleset to the new one. Services not in `dirty` must plan
    /// as before.
    pub fn update(&mut self, plan: &ProxyPlan, dirty: Dirty<'_>) -> Changes {
        let inputs = Inputs {
            node: plan.node.clone(),
            addresses: plan.node_addresses.clone(),
            service_cidrs: plan.service_cidrs.clone(),
        };
        let mut full = self.node.as_ref() != Some(&inputs);
        if full {
            let cfg = self.cfg.clone();
            *self = Self::new(cfg);
            for f in FAMILIES {
                self.skeletons[fi(f)] =
                    skeleton(&inputs.addresses, &inputs.service_cidrs, &self.cfg, f);
            }
            self.node = Some(inputs);
        }
        let keys: BTreeSet<ObjectKey> = match (dirty, full) {
            (Dirty::Services(keys), false) => keys.clone(),
            _ => {
                let mut all: BTreeSet<ObjectKey> = self.entries.keys().cloned().collect();
                let mut last: Option<&ObjectKey> = None;
                for sp in &plan.services {
                    if last != Some(&sp.service) {
                        all.insert(sp.service.clone());
                        last = Some(&sp.service);
                    }
                }
                all
            }
        };
        let ip6_before = self.wants_ip6();
        let affected = self.claim(plan, &keys);
        let mut deltas: [Delta; 2] = Default::default();
        for d in &mut deltas {
            d.emit = !full;
        }
        for key in &affected {
            full |= self.replan(plan, key, &mut deltas);
        }
        let mut changes = Changes {
            replanned: affected.len(),
            ..Changes::default()
        };
        for f in FAMILIES {
            full |= self.finish(f, &mut deltas[fi(f)]);
        }
        if full {
            // The whole table is written: its rules in increasing count.
            for kept in &mut self.kept_spreads {
                kept.addr.sort_unstable();
                kept.port.sort_unstable();
            }
        }
        if ip6_before != self.wants_ip6() {
            full = true;
        }
        self.pending_sets.clear();
        if full {
            changes.full = true;
            return changes;
        }
        for f in FAMILIES {
            let d = std::mem::take(&mut deltas[fi(f)]);
            let (tx, later) = d.batch.finish();
            changes.now.extend(tx.ops);
            for op in &later {
                if let Op::DeleteMap { table, name, kind } = op {
                    self.pending_sets
                        .insert((table.family, name.clone()), *kind);
                }
            }
            changes.later.extend(later);
        }
        changes
    }

    /// Replaces the claims of `keys` with those of their new port plans;
    /// returns `keys` and every other Service that claims one of the same
    /// addresses or node ports (its ownership may have changed).
    fn claim(&mut self, plan: &ProxyPlan, keys: &BTreeSet<ObjectKey>) -> BTreeSet<ObjectKey> {
        let mut touched_addrs: [BTreeSet<AddrKey>; 2] = Default::default();
        let mut touched_ports: [BTreeSet<PortKey>; 2] = Default::default();
        for key in keys {
            let ports = ports_of(plan, key);
            let entry = self.entries.entry(key.clone()).or_default();
            for f in FAMILIES {
                let idx = &mut self.index[fi(f)];
                for (k, name) in std::mem::take(&mut entry.addr_claims[fi(f)]) {
                    if let Some(set) = idx.owners.get_mut(&k) {
                        set.remove(&(key.clone(), name));
                        if set.is_empty() {
                            idx.owners.remove(&k);
                        }
                    }
                    touched_addrs[fi(f)].insert(k);
                }
                for (k, name) in std::mem::take(&mut entry.port_claims[fi(f)]) {
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
                        entry.addr_claims[fi(f)].push((k, sp.port_name.clone()));
                        touched_addrs[fi(f)].insert(k);
                    }
                    if let Some(np) = sp.node_port {
                        let k = (sp.protocol, np);
                        idx.port_owners
                            .entry(k)
                            .or_default()
                            .insert((key.clone(), sp.port_name.clone()));
                        entry.port_claims[fi(f)].push((k, sp.port_name.clone()));
                        touched_ports[fi(f)].insert(k);
                    }
                }
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
    fn replan(&mut self, plan: &ProxyPlan, key: &ObjectKey, deltas: &mut [Delta; 2]) -> bool {
        let ports = ports_of(plan, key);
        let addresses = &self.node.as_ref().expect("set by update").addresses;
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
                let node_ip = primary_address(addresses, f);
                contribute(
                    &self.cfg,
                    f,
                    node_ip,
                    sp,
                    &addrs,
                    node_port,
                    &mut parts[fi(f)],
                );
            }
        }
        let mut entry = self.entries.remove(key).unwrap_or_default();
        let mut full = false;
        for f in FAMILIES {
            let old = std::mem::take(&mut entry.parts[fi(f)]);
            let new = Part::from(std::mem::take(&mut parts[fi(f)]));
            full |= self.apply_part(f, key, &old, &new, &mut deltas[fi(f)]);
            entry.parts[fi(f)] = new;
        }
        entry.problems = problems;
        if !ports.is_empty() {
            self.entries.insert(key.clone(), entry);
        }
        full
    }

    /// Records how Service `key`'s part of table `f` changes from `old`
    /// to `new`, and updates the counts.
    fn apply_part(
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
                .filter(|(k, v)| lookup(n, k) != Some(v))
                .map(|(k, _)| k.clone())
                .collect();
            d.batch.delete_elements(&t, kind, map.to_string(), gone);
            let added: Vec<(ElemKey, ElemValue)> = n
                .iter()
                .filter(|(k, v)| lookup(o, k) != Some(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
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
    fn shared_elements(
        &mut self,
        f: Family,
        key: &ObjectKey,
        map: &'static str,
        old: &[(ElemKey, ElemValue)],
        new: &[(ElemKey, ElemValue)],
        d: &mut Delta,
    ) {
        let idx = &mut self.index[fi(f)];
        for (k, v) in old {
            if lookup(new, k) == Some(v) {
                continue;
            }
            if d.emit {
                let before = idx.element(map, k);
                d.shared.entry((map, k.clone())).or_insert(before);
            }
            if counted(map) {
                let at = (map, k.clone());
                let n = idx.counted.get_mut(&at).expect("counted when added");
                *n -= 1;
                if *n == 0 {
                    idx.counted.remove(&at);
                }
            } else if let Some(by) = idx.firewall.get_mut(k) {
                by.remove(key);
                if by.is_empty() {
                    idx.firewall.remove(k);
                }
            }
        }
        for (k, v) in new {
            if lookup(old, k) == Some(v) {
                continue;
            }
            if d.emit {
                let before = idx.element(map, k);
                d.shared.entry((map, k.clone())).or_insert(before);
            }
            if counted(map) {
                *idx.counted.entry((map, k.clone())).or_insert(0) += 1;
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
    fn finish(&mut self, f: Family, d: &mut Delta) -> bool {
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

    /// Whether the planned ruleset holds the chain or set that `op`
    /// deletes (a deferred deletion of something that came back is
    /// dropped). Other operations: false.
    pub fn holds(&self, op: &Op) -> bool {
        let (table, name) = match op {
            Op::DeleteChain { table, name } | Op::DeleteMap { table, name, .. } => (table, name),
            _ => return false,
        };
        let f = table.family;
        let sk = &self.skeletons[fi(f)];
        sk.chains.contains_key(name)
            || sk.maps.contains_key(name)
            || self.index[fi(f)].objects.contains_key(name)
    }

    /// The whole ruleset, assembled from the skeleton and the parts: what
    /// `plan_ruleset` gives for the plan of the last update.
    pub fn ruleset(&self) -> Ruleset {
        let mut tables = Vec::new();
        if self.node.is_none() {
            return Ruleset { tables };
        }
        for f in FAMILIES {
            if f == Family::Ip6 && !self.wants_ip6() {
                continue;
            }
            let mut table = self.skeletons[fi(f)].clone();
            for e in self.entries.values() {
                e.parts[fi(f)].merge_into(&mut table);
            }
            let kept = &self.kept_spreads[fi(f)];
            add_spread_chains(&mut table, &kept.addr, &kept.port);
            tables.push(table);
        }
        Ruleset { tables }
    }

    /// Whether the `ip6` table exists: some Service has an IPv6 address,
    /// or an IPv6 ServiceCIDR asks for unallocated addresses to be
    /// dropped.
    fn wants_ip6(&self) -> bool {
        self.ip6_services > 0
            || self
                .node
                .as_ref()
                .is_some_and(|i| !family_cidrs(&i.service_cidrs, Family::Ip6).is_empty())
    }

    /// Service ports left out because another Service owns the same
    /// address or node port (as `plan_ruleset` reports them, in Service
    /// order).
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.entries.values().flat_map(|e| e.problems.iter())
    }

    /// The problems of one Service's parts (none when it has no parts).
    pub fn problems_of(&self, service: &ObjectKey) -> impl Iterator<Item = &Problem> {
        self.entries
            .get(service)
            .into_iter()
            .flat_map(|e| e.problems.iter())
    }
}
