//! The proxier step, pure: the cluster store and what changed in, what
//! the node must do out. No async, no sockets, no clock; the daemon's
//! loop keeps the timers, the backoff, the metrics export and the kernel
//! calls, and only wires a [`Step`] to them.
//!
//! ```text
//! (ClusterState, Changed) ──Proxier::step──▶ Step {
//!     ruleset changes (for the engine),
//!     UDP conntrack clean-up scope,
//!     health-check ports wanted,
//!     problems new with this step,
//!     kube-proxy's no-local-endpoint counts,
//!     whether routes are due }
//! ```
//!
//! A step costs what changed: the Services named in [`Changed`] (and,
//! when a Node changed, those whose topology depends on Nodes) are
//! re-planned, and every output is kept per Service and updated from
//! them, not recomputed over the cluster.
//!
//! Main types: [`Proxier`], [`Step`], [`Changed`], [`Wanted`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use api_watch::{ClusterState, ObjectKey, SliceIndex};
use nft_writer::conntrack::{udp_service, Scope, UdpCleanup, UdpService};
use nft_writer::{Changes, Dirty, IncrementalPlanner, PlannerConfig};
use topology_filter::{ProxyPlan, ServicePortPlan};

/// What an update changed, for re-planning only that.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Changed {
    /// Anything may have changed: plan everything (the first update, and
    /// sources that do not track changes).
    #[default]
    All,
    /// Only these Services (their Service or EndpointSlices), and Nodes
    /// when `nodes`, and Calico BlockAffinities when `blocks`.
    Some {
        /// The Services.
        services: BTreeSet<ObjectKey>,
        /// A Node changed.
        nodes: bool,
        /// A BlockAffinity changed (routes only).
        blocks: bool,
    },
}

impl Changed {
    /// Adds what `older` changed.
    pub fn absorb(&mut self, older: Changed) {
        match (&mut *self, older) {
            (Changed::All, _) => {}
            (_, Changed::All) => *self = Changed::All,
            (
                Changed::Some {
                    services,
                    nodes,
                    blocks,
                },
                Changed::Some {
                    services: more,
                    nodes: more_nodes,
                    blocks: more_blocks,
                },
            ) => {
                services.extend(more);
                *nodes |= more_nodes;
                *blocks |= more_blocks;
            }
        }
    }
}

/// What a health-check port serves: the Service and its local ready
/// endpoint count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The Service.
    pub service: ObjectKey,
    /// Ready endpoints on this node.
    pub local_endpoints: usize,
}

/// One problem to log and count once, when a step finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object concerned.
    pub object: ObjectKey,
    /// A metric label (`invalid_topology_keys`, …).
    pub kind: &'static str,
    /// What was wrong and what was done instead.
    pub message: String,
}

/// What one step asks of the node.
#[derive(Debug, Default)]
pub struct Step {
    /// Ruleset operations for the engine ([`Proxier::planner`] holds the
    /// ruleset they lead to).
    pub changes: Changes,
    /// The health-check servers wanted (by `healthCheckNodePort`), and this
    /// node's addresses they listen by.
    pub health: (BTreeMap<u16, Wanted>, Vec<IpAddr>),
    /// Problems that appeared with this step (in the Services it
    /// re-planned; one that stays is not reported again).
    pub problems: Vec<Problem>,
    /// Service ports with endpoints somewhere but none on this node, for
    /// the internal and the external Local policy (kube-proxy's
    /// `…_no_local_endpoints_total{traffic_policy}`).
    pub no_local_endpoints: (usize, usize),
    /// Nodes or BlockAffinities changed (or the last route pass failed):
    /// the routes must be re-planned.
    pub routes_due: bool,
}

/// What the proxier keeps of one Service, to update its outputs when the
/// Service is re-planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Facts {
    /// `(healthCheckNodePort, local non-terminating endpoints)`, for an
    /// external Local Service with a port.
    health: Option<(u16, usize)>,
    /// Service ports counted in `no_local_endpoints`.
    no_local: (usize, usize),
    /// Its problems, as (kind, message): a problem is reported when it
    /// first appears.
    problems: BTreeSet<(&'static str, String)>,
}

/// The proxier: the topology plan, the ruleset planner and the per-Service
/// facts behind the step's outputs, kept between steps.
pub struct Proxier {
    node: String,
    planner: IncrementalPlanner,
    /// Shared with readers of [`Proxier::shared_plan`] (a debug endpoint
    /// streaming it): a step while one holds it re-plans a copy.
    plan: Option<Arc<ProxyPlan>>,
    index: FactIndex,
    udp: UdpCleanup,
    routes_failed: bool,
}

/// The per-Service facts and the totals kept from them.
#[derive(Default)]
struct FactIndex {
    facts: BTreeMap<ObjectKey, Facts>,
    /// Health-check port → the Services that claim it, with their local
    /// endpoint counts; the first claim serves.
    health_ports: BTreeMap<u16, BTreeMap<ObjectKey, usize>>,
    no_local: (usize, usize),
}

impl Proxier {
    /// A proxier for `node`.
    pub fn new(node: impl Into<String>, config: PlannerConfig) -> Self {
        Proxier {
            node: node.into(),
            planner: IncrementalPlanner::new(config),
            plan: None,
            index: FactIndex::default(),
            udp: UdpCleanup::default(),
            routes_failed: false,
        }
    }

    /// Re-plans what `changed` names in `state` and says what the node
    /// must do. The first step plans everything. `slices`, when given,
    /// finds each re-planned Service's slices (it must be in step with
    /// `state`); without it they are found by scanning.
    pub fn step(
        &mut self,
        state: &ClusterState,
        slices: Option<&SliceIndex>,
        changed: &Changed,
    ) -> Step {
        let (dirty, routes_changed, changes) = match (&mut self.plan, changed) {
            (
                Some(plan),
                Changed::Some {
                    services,
                    nodes,
                    blocks,
                },
            ) => {
                let plan = Arc::make_mut(plan);
                let mut keys = services.clone();
                if *nodes {
                    keys.extend(topology_filter::node_dependents(state));
                }
                topology_filter::replan_indexed(plan, state, slices, &keys);
                for key in &keys {
                    forget_decisions(plan, key);
                }
                let changes = self.planner.update(plan, Dirty::Services(&keys));
                (Some(keys), *nodes || *blocks, changes)
            }
            (plan, _) => {
                let plan =
                    Arc::make_mut(plan.insert(Arc::new(topology_filter::plan(state, &self.node))));
                for sp in &mut plan.services {
                    sp.decisions = Vec::new();
                }
                let changes = self.planner.update(plan, Dirty::All);
                (None, true, changes)
            }
        };
        let plan = self.plan.as_ref().expect("planned above");
        let keys: Vec<ObjectKey> = match dirty {
            Some(keys) => {
                for key in &keys {
                    let ports = ports_of(plan, key).iter().filter_map(udp_service);
                    self.udp.update_service(key, ports.collect());
                }
                keys.into_iter().collect()
            }
            None => {
                // Everything: the old facts go, every Service's come in;
                // the UDP ports of Services that are gone are deleted.
                self.index = FactIndex::default();
                self.udp
                    .update(plan.services.iter().filter_map(udp_service).collect());
                state.services.keys().cloned().collect()
            }
        };
        let mut problems = Vec::new();
        for key in &keys {
            let mut facts = facts_of(ports_of(plan, key), state.services.get(key).map(|s| &**s));
            let known = self.index.facts.get(key).map(|f| &f.problems);
            for p in problems_of(plan, &self.planner, key) {
                let id = (p.kind, p.message.clone());
                if !known.is_some_and(|k| k.contains(&id)) {
                    problems.push(p);
                }
                facts.problems.insert(id);
            }
            self.index.set(key, facts);
        }
        Step {
            changes,
            health: (self.index.health_wanted(), plan.node_addresses.clone()),
            problems,
            no_local_endpoints: self.index.no_local,
            routes_due: routes_changed || self.routes_failed,
        }
    }

    /// The ruleset the steps so far lead to, as the engine reads it.
    pub fn planner(&self) -> &IncrementalPlanner {
        &self.planner
    }

    /// The topology plan the steps so far lead to (`None` before the
    /// first).
    pub fn plan(&self) -> Option<&ProxyPlan> {
        self.plan.as_deref()
    }

    /// The plan, shared: it stays as it is while the holder reads it (the
    /// next step re-plans a copy then, once).
    pub fn shared_plan(&self) -> Option<Arc<ProxyPlan>> {
        self.plan.clone()
    }

    /// Where the UDP conntrack clean-up after the next sync must look
    /// ([`Scope::Nothing`] when no serving endpoint went away since the
    /// last clean-up that went through).
    pub fn udp_scope(&self) -> Scope {
        self.udp.scope()
    }

    /// What the clean-up compares the flows with (build it only when the
    /// scope is not [`Scope::Nothing`]).
    pub fn udp_desired(&self) -> Vec<UdpService> {
        self.udp.desired()
    }

    /// The UDP clean-up went through.
    pub fn udp_cleaned(&mut self) {
        self.udp.cleaned();
    }

    /// How the last route pass went: after a failure, routes are due at
    /// every sync until one goes through.
    pub fn routes_done(&mut self, ok: bool) {
        self.routes_failed = !ok;
    }

    /// The last route pass failed: the next sync retries it, with or
    /// without a step.
    pub fn routes_failed(&self) -> bool {
        self.routes_failed
    }
}

impl FactIndex {
    fn set(&mut self, key: &ObjectKey, facts: Facts) {
        let old = self.facts.remove(key).unwrap_or_default();
        if let Some((port, _)) = old.health {
            if let Some(claims) = self.health_ports.get_mut(&port) {
                claims.remove(key);
                if claims.is_empty() {
                    self.health_ports.remove(&port);
                }
            }
        }
        self.no_local.0 -= old.no_local.0;
        self.no_local.1 -= old.no_local.1;
        if let Some((port, local)) = facts.health {
            self.health_ports
                .entry(port)
                .or_default()
                .insert(key.clone(), local);
        }
        self.no_local.0 += facts.no_local.0;
        self.no_local.1 += facts.no_local.1;
        if facts != Facts::default() {
            self.facts.insert(key.clone(), facts);
        }
    }

    /// One server per port: the first Service (by namespace/name) that
    /// claims it, with its count.
    fn health_wanted(&self) -> BTreeMap<u16, Wanted> {
        self.health_ports
            .iter()
            .filter_map(|(port, claims)| {
                let (service, local) = claims.iter().next()?;
                Some((
                    *port,
                    Wanted {
                        service: service.clone(),
                        local_endpoints: *local,
                    },
                ))
            })
            .collect()
    }
}

/// The port plans of `service` in `plan` (sorted by Service).
fn ports_of<'a>(plan: &'a ProxyPlan, service: &ObjectKey) -> &'a [ServicePortPlan] {
    let start = plan.services.partition_point(|p| p.service < *service);
    let len = plan.services[start..].partition_point(|p| p.service == *service);
    &plan.services[start..start + len]
}

/// Drops the per-endpoint explanations of `service`'s port plans: the
/// kept plan lives as long as the daemon, and nothing here reads them
/// (`nftopo explain` plans on its own); at 10k services x 10 endpoints
/// they are about 20 MiB.
fn forget_decisions(plan: &mut ProxyPlan, service: &ObjectKey) {
    let start = plan.services.partition_point(|p| p.service < *service);
    for sp in plan.services[start..]
        .iter_mut()
        .take_while(|p| p.service == *service)
    {
        sp.decisions = Vec::new();
    }
}

/// A Service's facts from its port plans: its health-check port when it
/// is proxied with an external Local policy (the count: the largest number
/// of local, non-terminating endpoints over its ports), and its ports with
/// endpoints somewhere but none here.
fn facts_of(ports: &[ServicePortPlan], service: Option<&api_watch::Service>) -> Facts {
    let mut facts = Facts::default();
    let health_port = service.and_then(|s| s.health_check_node_port);
    for p in ports {
        if p.external_policy_local {
            if let Some(port) = health_port {
                let local = p.local_endpoints.iter().filter(|e| !e.terminating).count();
                let (_, max) = facts.health.get_or_insert((port, 0));
                *max = (*max).max(local);
            }
        }
        if p.has_any_endpoints && p.local_endpoints.is_empty() {
            facts.no_local.0 += usize::from(p.internal_policy_local);
            facts.no_local.1 += usize::from(p.external_policy_local);
        }
    }
    facts
}

/// The topology and ruleset problems of `service`.
fn problems_of(
    plan: &ProxyPlan,
    planner: &IncrementalPlanner,
    service: &ObjectKey,
) -> Vec<Problem> {
    let start = plan.problems.partition_point(|p| p.object < *service);
    let topology = plan.problems[start..]
        .iter()
        .take_while(|p| p.object == *service);
    topology
        .chain(planner.problems_of(service))
        .map(|p| Problem {
            object: p.object.clone(),
            kind: p.kind.as_str(),
            message: p.message.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
