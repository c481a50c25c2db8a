//! The pure core of the API source: watcher events in, snapshots out. No
//! async, no clock, no I/O; the stream plumbing in [`super::snapshots`]
//! feeds it.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;

use super::kinds::{Kind, Watched};
use super::lenient::{decoded, Lenient};
use crate::convert::FieldError;
use crate::{ClusterState, ObjectKey, SliceIndex};

pub use super::changes::{ObjectError, WatchChanges};

/// Per-kind progress through list and watch.
#[derive(Debug, Default)]
struct Progress {
    /// The kind has completed a list at least once.
    listed: bool,
    /// A list or watch of the kind has failed at least once.
    failed: bool,
    /// During a (re-)list: what has been listed so far, replacing the
    /// kind's objects atomically on `InitDone`.
    relist: Option<BTreeMap<ObjectKey, Listed>>,
}

/// An object as listed, converted at once (the raw object is dropped:
/// a re-list of 100k slices holds models, not API objects), applied at
/// `InitDone`.
#[derive(Debug)]
enum Listed {
    Service(Converted<crate::Service>),
    Slice(Converted<crate::EndpointSlice>),
    Node(Converted<crate::Node>),
    Block(Converted<crate::BlockAffinity>),
    ServiceCidr(Converted<crate::ServiceCidr>),
}

/// An object's conversion, and its trigger time.
#[derive(Debug)]
struct Converted<M> {
    model: Result<M, FieldError>,
    trigger: Option<SystemTime>,
}

impl<M> Converted<M> {
    fn of<K: Watched<Model = M>>(object: &K) -> Self {
        Converted {
            model: object.convert(),
            trigger: object.trigger_time(),
        }
    }
}

/// Applies watcher events of all kinds to one [`ClusterState`]; hands out
/// a [`Snapshot`] when every watched kind has listed once and something
/// changed since the last one.
#[derive(Debug)]
pub struct Tracker {
    started: SystemTime,
    /// The kinds that must have listed before the first snapshot.
    watched: Vec<Kind>,
    /// Of those, the kinds whose first failed attempt counts as an empty
    /// list (the API may not serve them, or not to nftopo).
    optional: Vec<Kind>,
    /// BlockAffinities are watched (they gate routes, not the hand-out).
    blocks_watched: bool,
    state: ClusterState,
    /// Service → its slices in `state`, kept as slices change.
    slices: SliceIndex,
    /// Node and zone names of the slices in `state`, one copy each.
    names: crate::Names,
    errors: BTreeMap<(Kind, ObjectKey), ObjectError>,
    progress: BTreeMap<Kind, Progress>,
    generation: u64,
    dirty: bool,
    services_changed: usize,
    endpoints_changed: usize,
    trigger_times: Vec<SystemTime>,
    changed_services: BTreeSet<ObjectKey>,
    nodes_changed: bool,
    blocks_changed: bool,
}

impl Tracker {
    /// An empty tracker; trigger times before `started` are ignored.
    pub fn new(started: SystemTime) -> Self {
        Self {
            started,
            watched: vec![Kind::Service, Kind::EndpointSlice, Kind::Node],
            optional: Vec::new(),
            blocks_watched: false,
            state: ClusterState::default(),
            slices: SliceIndex::default(),
            names: crate::Names::default(),
            errors: BTreeMap::new(),
            progress: BTreeMap::new(),
            generation: 0,
            dirty: false,
            services_changed: 0,
            endpoints_changed: 0,
            trigger_times: Vec::new(),
            changed_services: BTreeSet::new(),
            nodes_changed: false,
            blocks_changed: false,
        }
    }

    /// Also watches Calico BlockAffinities, without waiting for them: the
    /// Services are handed out as soon as the three kinds have listed,
    /// and only routes wait for the blocks ([`WatchChanges::routes_ready`]),
    /// so that a cluster without Calico's CRD (or without the permission
    /// to list it) still gets its service rules.
    pub fn with_block_affinities(mut self) -> Self {
        self.blocks_watched = true;
        if !self.optional.contains(&Kind::BlockAffinity) {
            self.optional.push(Kind::BlockAffinity);
        }
        self
    }

    /// Whether routes can be planned: BlockAffinities are not watched, or
    /// have listed (routes planned from blocks not yet listed would delete
    /// every route to the other nodes).
    pub fn routes_ready(&self) -> bool {
        !self.blocks_watched
            || self
                .progress
                .get(&Kind::BlockAffinity)
                .is_some_and(|p| p.listed)
    }

    /// Also waits for ServiceCIDRs before the first snapshot: for their
    /// first list, or for their first failure. A cluster that does not
    /// serve `networking.k8s.io/v1` ServiceCIDRs (404), or does not let
    /// nftopo list them (403), has none: its Services are programmed all
    /// the same, without the drop of unallocated service addresses. The
    /// watcher keeps retrying; a later list brings them in.
    pub fn with_service_cidrs(mut self) -> Self {
        if !self.watched.contains(&Kind::ServiceCidr) {
            self.watched.push(Kind::ServiceCidr);
            self.optional.push(Kind::ServiceCidr);
        }
        self
    }

    /// Applies one Service event.
    pub fn service(&mut self, event: Event<core::Service>) {
        self.service_item(decoded(event));
    }

    /// As [`Tracker::service`], for objects decoded one by one (an object
    /// that did not decode is skipped with its error).
    pub fn service_item(&mut self, event: Event<Lenient<core::Service>>) {
        self.apply(event, |s| Listed::Service(Converted::of(&s)));
    }

    /// Applies one EndpointSlice event.
    pub fn endpoint_slice(&mut self, event: Event<discovery::EndpointSlice>) {
        self.endpoint_slice_item(decoded(event));
    }

    /// As [`Tracker::endpoint_slice`], for objects decoded one by one (an object
    /// that did not decode is skipped with its error).
    pub fn endpoint_slice_item(&mut self, event: Event<Lenient<discovery::EndpointSlice>>) {
        self.apply(event, |s| Listed::Slice(Converted::of(&s)));
    }

    /// Applies one Node event.
    pub fn node(&mut self, event: Event<core::Node>) {
        self.node_item(decoded(event));
    }

    /// As [`Tracker::node`], for objects decoded one by one (an object
    /// that did not decode is skipped with its error).
    pub fn node_item(&mut self, event: Event<Lenient<core::Node>>) {
        self.apply(event, |n| Listed::Node(Converted::of(&n)));
    }

    /// Applies one BlockAffinity event.
    pub fn block_affinity(&mut self, event: Event<DynamicObject>) {
        self.apply(event, |b| Listed::Block(Converted::of(&b)));
    }

    /// Applies one ServiceCIDR event.
    pub fn service_cidr(&mut self, event: Event<networking::ServiceCIDR>) {
        self.service_cidr_item(decoded(event));
    }

    /// As [`Tracker::service_cidr`], for objects decoded one by one (an object
    /// that did not decode is skipped with its error).
    pub fn service_cidr_item(&mut self, event: Event<Lenient<networking::ServiceCIDR>>) {
        self.apply(event, |c| Listed::ServiceCidr(Converted::of(&c)));
    }

    /// Records that a list or watch of `kind` failed (the watcher retries
    /// by itself). Returns true the first time for the kind. An optional
    /// kind that has not listed yet then counts as listed and empty.
    pub fn failed(&mut self, kind: Kind) -> bool {
        let progress = self.progress.entry(kind).or_default();
        let first = !progress.failed;
        progress.failed = true;
        if first && self.optional.contains(&kind) && !progress.listed {
            // The failure can make the tracker ready.
            self.dirty = true;
        }
        first
    }

    /// Whether `kind` is optional (see [`Tracker::with_service_cidrs`]).
    pub fn is_optional(&self, kind: Kind) -> bool {
        self.optional.contains(&kind)
    }

    /// Whether every watched kind has completed its first list (or, for
    /// an optional kind, failed it).
    pub fn ready(&self) -> bool {
        self.watched.iter().all(|k| {
            self.progress
                .get(k)
                .is_some_and(|p| p.listed || (p.failed && self.optional.contains(k)))
        })
    }

    /// Whether a snapshot is due: ready, and something changed since the
    /// last one (or there has been none yet).
    pub fn pending(&self) -> bool {
        self.ready() && (self.dirty || self.generation == 0)
    }

    /// The cluster as the events applied so far describe it: the one copy
    /// the daemon plans from.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// Which slices belong to each Service in [`Tracker::state`].
    pub fn slice_index(&self) -> &SliceIndex {
        &self.slices
    }

    /// The changes since the last call (which it resets), when
    /// [`Tracker::pending`]; `None` otherwise.
    pub fn take_changes(&mut self) -> Option<WatchChanges> {
        if !self.pending() {
            return None;
        }
        self.generation += 1;
        self.dirty = false;
        let mut changed_services = std::mem::take(&mut self.changed_services);
        if self.generation == 1 {
            changed_services.extend(self.state.services.keys().cloned());
        }
        Some(WatchChanges {
            errors: self.errors.values().cloned().collect(),
            generation: self.generation,
            services_changed: std::mem::take(&mut self.services_changed),
            endpoints_changed: std::mem::take(&mut self.endpoints_changed),
            trigger_times: std::mem::take(&mut self.trigger_times),
            changed_services,
            nodes_changed: std::mem::take(&mut self.nodes_changed),
            blocks_changed: std::mem::take(&mut self.blocks_changed),
            routes_ready: self.routes_ready(),
        })
    }

    fn apply<K: Watched>(&mut self, event: Event<K>, listed: impl Fn(K) -> Listed)
    where
        K::Model: 'static,
    {
        match event {
            Event::Apply(object) => {
                let id = object.id();
                self.set::<K>(&id, Some(Converted::of(&object)));
            }
            Event::Delete(object) => self.set::<K>(&object.id(), None),
            Event::Init => {
                self.progress.entry(K::KIND).or_default().relist = Some(BTreeMap::new());
            }
            Event::InitApply(object) => {
                let id = object.id();
                let progress = self.progress.entry(K::KIND).or_default();
                // kube's watcher always sends Init first; be lenient if not.
                let relist = progress.relist.get_or_insert_with(BTreeMap::new);
                relist.insert(id, listed(object));
            }
            Event::InitDone => self.init_done::<K>(),
        }
    }

    /// Replaces the kind's objects with those listed since `Init`: those
    /// not listed again are deleted.
    fn init_done<K: Watched>(&mut self)
    where
        K::Model: 'static,
    {
        let progress = self.progress.entry(K::KIND).or_default();
        let listed = progress.relist.take().unwrap_or_default();
        let mut gone: BTreeSet<ObjectKey> = K::ids(&self.state).into_iter().collect();
        gone.extend(
            self.errors
                .keys()
                .filter(|(kind, _)| *kind == K::KIND)
                .map(|(_, id)| id.clone()),
        );
        for id in listed.keys() {
            gone.remove(id);
        }
        for id in gone {
            self.set::<K>(&id, None);
        }
        for (id, object) in listed {
            match object {
                Listed::Service(c) => self.set::<core::Service>(&id, Some(c)),
                Listed::Slice(c) => self.set::<discovery::EndpointSlice>(&id, Some(c)),
                Listed::Node(c) => self.set::<core::Node>(&id, Some(c)),
                Listed::Block(c) => self.set::<DynamicObject>(&id, Some(c)),
                Listed::ServiceCidr(c) => self.set::<networking::ServiceCIDR>(&id, Some(c)),
            }
        }
        if !self.progress.entry(K::KIND).or_default().listed {
            self.progress.entry(K::KIND).or_default().listed = true;
            // The first list completing can make the tracker ready, or
            // routes.
            self.dirty = true;
            self.blocks_changed |= K::KIND == Kind::BlockAffinity;
        }
    }

    /// Sets (or with `None` deletes) one object; counts it when the model
    /// or its error changed.
    fn set<K: Watched>(&mut self, id: &ObjectKey, object: Option<Converted<K::Model>>)
    where
        K::Model: 'static,
    {
        let trigger = object.as_ref().and_then(|c| c.trigger);
        let converted = object.map(|c| c.model);
        let error_key = (K::KIND, id.clone());
        let before_model = K::get(&self.state, id).cloned();
        let before_error = self.errors.get(&error_key).cloned();
        let (after_model, after_error) = match converted {
            None => (None, None),
            Some(Ok(model)) => (Some(model), None),
            Some(Err(e)) => (
                None,
                Some(ObjectError {
                    kind: K::KIND,
                    object: object_name(id),
                    field: e.field,
                    message: e.message,
                }),
            ),
        };
        if after_error != before_error {
            match &after_error {
                Some(e) => {
                    tracing::warn!(error = %e, "skipping an object nftopo cannot use");
                    self.errors.insert(error_key, e.clone());
                }
                None => {
                    self.errors.remove(&error_key);
                }
            }
            self.dirty = true;
        }
        if after_model == before_model {
            return;
        }
        if let Some(old) = before_model.as_ref().and_then(as_slice) {
            self.slices.remove(old);
        }
        if let Some(new) = after_model.as_ref().and_then(as_slice) {
            self.slices.insert(new);
        }
        match after_model {
            Some(mut model) => {
                if let Some(slice) = as_slice_mut(&mut model) {
                    self.names.share(slice);
                }
                K::insert(&mut self.state, id, model)
            }
            None => K::remove(&mut self.state, id),
        }
        self.dirty = true;
        match K::KIND {
            Kind::Service => {
                self.services_changed += 1;
                self.changed_services.insert(id.clone());
            }
            Kind::EndpointSlice => {
                self.endpoints_changed += 1;
                let owners = [before_model.as_ref(), K::get(&self.state, id)];
                for model in owners.into_iter().flatten() {
                    // `K::Model` is `crate::EndpointSlice` for this kind.
                    if let Some(slice) = as_slice(model) {
                        self.changed_services.insert(slice.service_key());
                    }
                }
                let listed_before = self.progress.get(&K::KIND).is_some_and(|p| p.listed);
                if let Some(t) = trigger.filter(|t| listed_before && *t >= self.started) {
                    self.trigger_times.push(t);
                }
            }
            Kind::Node => self.nodes_changed = true,
            Kind::BlockAffinity => self.blocks_changed = true,
            // Read again with every plan (`ProxyPlan::service_cidrs`).
            Kind::ServiceCidr => {}
        }
    }
}

/// `model` as an EndpointSlice, when it is one.
fn as_slice<M: 'static>(model: &M) -> Option<&crate::EndpointSlice> {
    (model as &dyn Any).downcast_ref::<crate::EndpointSlice>()
}

/// [`as_slice`], to change.
fn as_slice_mut<M: 'static>(model: &mut M) -> Option<&mut crate::EndpointSlice> {
    (model as &mut dyn Any).downcast_mut::<crate::EndpointSlice>()
}

fn object_name(id: &ObjectKey) -> String {
    if id.namespace.is_empty() {
        id.name.to_string()
    } else {
        id.to_string()
    }
}
