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
    spread_rules, Contribution, NodeView, PlannerConfig, PodMatch,
};
use crate::transaction::{Op, TableRef};

mod claims;
mod delta;
mod elements;
mod frame;
pub use frame::Merged;
mod part;

use elements::PartElements;
use part::*;

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
    /// Only a full replace gets there (first plan, this node's addresses,
    /// the ServiceCIDRs or, with `NodeCIDR`, its pod CIDRs changed, the
    /// `ip6` table appears or goes, a set changed its shape): `now` and
    /// `later` are empty then.
    pub full: bool,
    /// Services re-planned.
    pub replanned: usize,
}

/// A Service's claim: (service, port name), ordered as the plan orders
/// service ports.
type Claimant = (ObjectKey, String);
type AddrKey = (IpAddr, Protocol, u16);
type PortKey = (Protocol, u16);

/// What the skeleton of the tables is planned from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    /// The node of the plan.
    node: String,
    /// Its addresses.
    addresses: Vec<IpAddr>,
    /// The ServiceCIDRs.
    service_cidrs: Vec<Cidr>,
    /// How each table tells traffic from pods apart (with `NodeCIDR`, from
    /// the Node's pod CIDRs: a change re-plans everything, where
    /// kube-proxy restarts).
    pods: [Option<PodMatch>; 2],
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
            pods: FAMILIES.map(|f| self.cfg.detect_local.resolve(f, &plan.node_pod_cidrs)),
        };
        let mut full = self.node.as_ref() != Some(&inputs);
        if full {
            let cfg = self.cfg.clone();
            *self = Self::new(cfg);
            for f in FAMILIES {
                self.skeletons[fi(f)] = skeleton(
                    &inputs.addresses,
                    &inputs.service_cidrs,
                    &self.cfg,
                    f,
                    inputs.pods[fi(f)].as_ref(),
                );
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
        self.assemble(false)
    }

    /// The tables of the last update: whole, or (`frame`) without the
    /// elements of the skeleton's sets and maps ([`IncrementalPlanner::frame`]).
    fn assemble(&self, frame: bool) -> Ruleset {
        let mut tables = Vec::new();
        if self.node.is_none() {
            return Ruleset { tables };
        }
        for f in FAMILIES {
            if f == Family::Ip6 && !self.wants_ip6() {
                continue;
            }
            let skeleton = &self.skeletons[fi(f)];
            let mut table = if frame {
                Table {
                    family: skeleton.family,
                    name: skeleton.name.clone(),
                    chains: skeleton.chains.clone(),
                    maps: skeleton
                        .maps
                        .values()
                        .map(|m| (m.name.clone(), Map::new(m.name.clone(), m.kind)))
                        .collect(),
                    layout: skeleton.layout,
                }
            } else {
                skeleton.clone()
            };
            for e in self.entries.values() {
                e.part(f).merge_into(&mut table, frame.then_some(skeleton));
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
