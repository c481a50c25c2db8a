//! The stream plumbing: the watchers of every kind merged into one stream
//! of events, applied in place to the one [`Tracker`] its owner (the
//! daemon's sync loop) holds; [`Watches::next`] hands out what changed.
//! No task, no lock and no copy of the state between the watches and
//! the planner.

use std::time::SystemTime;

use futures::stream::{self, BoxStream, SelectAll};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;

use super::kinds::Kind;
use super::lenient::Lenient;
use super::tracker::{Tracker, WatchChanges};
use crate::{ClusterState, SliceIndex};

/// Events applied before [`Watches::next`] looks whether to hand out (a
/// burst is coalesced up to this many events; a list is never handed out
/// half-done whatever its size).
const BURST: usize = 1024;

/// One watcher's item, of any kind (the large ones boxed, so that the
/// stream's items stay small).
enum WatchEvent {
    Service(Box<Event<Lenient<core::Service>>>),
    Slice(Box<Event<Lenient<discovery::EndpointSlice>>>),
    Node(Box<Event<Lenient<core::Node>>>),
    Block(Box<Event<DynamicObject>>),
    ServiceCidr(Box<Event<Lenient<networking::ServiceCIDR>>>),
    /// A list or watch failed (the watcher retries by itself).
    Failed(Kind, String),
    /// The kind's stream ended: no more updates for it.
    Ended(Kind),
}

/// The cluster as the API server's watches show it: one merged stream of
/// events and the one store they are applied to. Dropping it stops the
/// watches.
pub struct Watches {
    events: SelectAll<BoxStream<'static, WatchEvent>>,
    tracker: Tracker,
}

/// Maps one kind's watcher stream into the merged stream's items, ending
/// with [`WatchEvent::Ended`].
fn merged<K, S, Err>(
    kind: Kind,
    stream: S,
    wrap: fn(Event<K>) -> WatchEvent,
) -> BoxStream<'static, WatchEvent>
where
    S: Stream<Item = Result<Event<K>, Err>> + Send + 'static,
    Err: std::fmt::Display,
    K: Send + 'static,
{
    stream
        .map(move |item| match item {
            Ok(event) => wrap(event),
            Err(e) => WatchEvent::Failed(kind, e.to_string()),
        })
        .chain(stream::once(async move { WatchEvent::Ended(kind) }))
        .boxed()
}

impl Watches {
    /// Merges the three required streams (used by [`super::watch`], and by
    /// tests with hand-made events). A stream error is logged and skipped:
    /// kube's watcher re-lists and retries by itself (with backoff when
    /// the stream has it).
    pub fn from_streams<S, E, N, Err>(services: S, endpoint_slices: E, nodes: N) -> Self
    where
        S: Stream<Item = Result<Event<Lenient<core::Service>>, Err>> + Send + 'static,
        E: Stream<Item = Result<Event<Lenient<discovery::EndpointSlice>>, Err>> + Send + 'static,
        N: Stream<Item = Result<Event<Lenient<core::Node>>, Err>> + Send + 'static,
        Err: std::fmt::Display + 'static,
    {
        let mut events = SelectAll::new();
        events.push(merged(Kind::Service, services, |e| {
            WatchEvent::Service(Box::new(e))
        }));
        events.push(merged(Kind::EndpointSlice, endpoint_slices, |e| {
            WatchEvent::Slice(Box::new(e))
        }));
        events.push(merged(Kind::Node, nodes, |e| WatchEvent::Node(Box::new(e))));
        Watches {
            events,
            tracker: Tracker::new(SystemTime::now()),
        }
    }

    /// Watches Calico BlockAffinities too (routes wait for them to list;
    /// Services do not, see [`Tracker::with_block_affinities`]). Call
    /// before the first [`Watches::next`].
    pub fn with_block_affinities<B, Err>(mut self, block_affinities: B) -> Self
    where
        B: Stream<Item = Result<Event<DynamicObject>, Err>> + Send + 'static,
        Err: std::fmt::Display + 'static,
    {
        self.tracker = std::mem::replace(&mut self.tracker, Tracker::new(SystemTime::now()))
            .with_block_affinities();
        self.events
            .push(merged(Kind::BlockAffinity, block_affinities, |e| {
                WatchEvent::Block(Box::new(e))
            }));
        self
    }

    /// Watches ServiceCIDRs too: the first hand-out also waits for their
    /// first list or their first failure (a cluster without the API, or
    /// without nftopo's permission to list it, has none; see
    /// [`Tracker::with_service_cidrs`]). Call before the first
    /// [`Watches::next`].
    pub fn with_service_cidrs<C, Err>(mut self, service_cidrs: C) -> Self
    where
        C: Stream<Item = Result<Event<Lenient<networking::ServiceCIDR>>, Err>> + Send + 'static,
        Err: std::fmt::Display + 'static,
    {
        self.tracker = std::mem::replace(&mut self.tracker, Tracker::new(SystemTime::now()))
            .with_service_cidrs();
        self.events
            .push(merged(Kind::ServiceCidr, service_cidrs, |e| {
                WatchEvent::ServiceCidr(Box::new(e))
            }));
        self
    }

    /// What changed since the previous call: waits until every watched
    /// kind has completed its first list, then until something changed.
    /// A burst of events between two calls is one hand-out. `None` when
    /// every stream has ended. Cancel-safe: an event taken from the
    /// streams is applied before the next await.
    pub async fn next(&mut self) -> Option<WatchChanges> {
        loop {
            if let Some(changes) = self.tracker.take_changes() {
                return Some(changes);
            }
            let event = self.events.next().await?;
            self.apply(event);
            // Coalesce what the streams already hold.
            for _ in 1..BURST {
                match self.events.next().now_or_never() {
                    Some(Some(event)) => self.apply(event),
                    _ => break,
                }
            }
        }
    }

    /// The store's state: the one copy of the cluster.
    pub fn state(&self) -> &ClusterState {
        self.tracker.state()
    }

    /// Which slices belong to each Service in [`Watches::state`].
    pub fn slice_index(&self) -> &SliceIndex {
        self.tracker.slice_index()
    }

    /// Whether every watched kind has completed its first list.
    pub fn ready(&self) -> bool {
        self.tracker.ready()
    }

    fn apply(&mut self, event: WatchEvent) {
        let t = &mut self.tracker;
        match event {
            WatchEvent::Service(e) => t.service_item(*e),
            WatchEvent::Slice(e) => t.endpoint_slice_item(*e),
            WatchEvent::Node(e) => t.node_item(*e),
            WatchEvent::Block(e) => t.block_affinity(*e),
            WatchEvent::ServiceCidr(e) => t.service_cidr_item(*e),
            WatchEvent::Failed(kind, error) => {
                let first = t.failed(kind);
                if !t.is_optional(kind) {
                    tracing::warn!(%kind, %error, "watch failed; the watcher re-lists and retries")
                } else if first {
                    // Once: a cluster without the API (or without the
                    // permission) fails every retry the same way.
                    tracing::warn!(%kind, %error,
                        "cannot list or watch; going on without it until it works (the watcher retries)")
                } else {
                    tracing::debug!(%kind, %error, "watch failed; the watcher re-lists and retries")
                }
            }
            WatchEvent::Ended(kind) => {
                tracing::error!(%kind, "watch stream ended; no more updates for this kind")
            }
        }
    }
}
