//! The stream plumbing: one task per kind applies its watcher events to
//! the shared [`Tracker`]; [`Snapshots::next`] takes the latest state.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::kinds::Kind;
use super::tracker::{Increment, Snapshot, Tracker};

/// Events applied under one lock, at most (a burst is applied in chunks of
/// what the stream has ready, so the consumer is woken once per chunk).
const CHUNK: usize = 256;

struct Shared {
    tracker: Mutex<Tracker>,
    /// Woken when a snapshot is due; holds one permit when nobody waits,
    /// so a wake-up between two `next` calls is not lost.
    due: Notify,
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        // A panic while holding the lock leaves a consistent tracker (each
        // event is applied whole or not at all); keep going.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Coalesced snapshots of the cluster, from three watcher streams. The
/// watch tasks stop when this is dropped.
pub struct Snapshots {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Snapshots {
    /// Spawns one task per stream (inside the current tokio runtime) that
    /// applies its events. A stream error is logged and skipped: kube's
    /// watcher re-lists and retries by itself (with backoff when the
    /// stream has it). Used by [`super::watch`], and by tests with
    /// hand-made events.
    pub fn from_streams<S, E, N, Err>(services: S, endpoint_slices: E, nodes: N) -> Self
    where
        S: Stream<Item = Result<Event<core::Service>, Err>> + Send + 'static,
        E: Stream<Item = Result<Event<discovery::EndpointSlice>, Err>> + Send + 'static,
        N: Stream<Item = Result<Event<core::Node>, Err>> + Send + 'static,
        Err: std::fmt::Display + Send + 'static,
    {
        Self::spawn(
            Tracker::new(SystemTime::now()),
            services,
            endpoint_slices,
            nodes,
        )
    }

    /// As [`Snapshots::from_streams`], and Calico BlockAffinities too: the
    /// first snapshot also waits for them to list.
    pub fn from_streams_with_block_affinities<S, E, N, B, Err>(
        services: S,
        endpoint_slices: E,
        nodes: N,
        block_affinities: B,
    ) -> Self
    where
        S: Stream<Item = Result<Event<core::Service>, Err>> + Send + 'static,
        E: Stream<Item = Result<Event<discovery::EndpointSlice>, Err>> + Send + 'static,
        N: Stream<Item = Result<Event<core::Node>, Err>> + Send + 'static,
        B: Stream<Item = Result<Event<DynamicObject>, Err>> + Send + 'static,
        Err: std::fmt::Display + Send + 'static,
    {
        let tracker = Tracker::new(SystemTime::now()).with_block_affinities();
        let mut snapshots = Self::spawn(tracker, services, endpoint_slices, nodes);
        snapshots.tasks.push(tokio::spawn(pump(
            snapshots.shared.clone(),
            Kind::BlockAffinity,
            block_affinities,
            Tracker::block_affinity,
        )));
        snapshots
    }

    /// Watches ServiceCIDRs too, from `service_cidrs`: the first snapshot
    /// also waits for their first list or their first failure (a cluster
    /// without the API, or without nftopo's permission to list it, has
    /// none; see [`Tracker::with_service_cidrs`]). Call before the first
    /// [`Snapshots::next`].
    pub fn with_service_cidrs<C, Err>(mut self, service_cidrs: C) -> Self
    where
        C: Stream<Item = Result<Event<networking::ServiceCIDR>, Err>> + Send + 'static,
        Err: std::fmt::Display + Send + 'static,
    {
        {
            let mut tracker = self.shared.tracker();
            let taken = std::mem::replace(&mut *tracker, Tracker::new(SystemTime::now()));
            *tracker = taken.with_service_cidrs();
        }
        self.tasks.push(tokio::spawn(pump(
            self.shared.clone(),
            Kind::ServiceCidr,
            service_cidrs,
            Tracker::service_cidr,
        )));
        self
    }

    fn spawn<S, E, N, Err>(tracker: Tracker, services: S, endpoint_slices: E, nodes: N) -> Self
    where
        S: Stream<Item = Result<Event<core::Service>, Err>> + Send + 'static,
        E: Stream<Item = Result<Event<discovery::EndpointSlice>, Err>> + Send + 'static,
        N: Stream<Item = Result<Event<core::Node>, Err>> + Send + 'static,
        Err: std::fmt::Display + Send + 'static,
    {
        let shared = Arc::new(Shared {
            tracker: Mutex::new(tracker),
            due: Notify::new(),
        });
        let tasks = vec![
            tokio::spawn(pump(
                shared.clone(),
                Kind::Service,
                services,
                Tracker::service,
            )),
            tokio::spawn(pump(
                shared.clone(),
                Kind::EndpointSlice,
                endpoint_slices,
                Tracker::endpoint_slice,
            )),
            tokio::spawn(pump(shared.clone(), Kind::Node, nodes, Tracker::node)),
        ];
        Self { shared, tasks }
    }

    /// The next snapshot: waits until every watched kind has completed its
    /// first list, then until something changed since the previous call.
    /// Returns the latest state, never a queue of stale ones: a burst of
    /// events between two calls is one snapshot.
    pub async fn next(&mut self) -> Arc<Snapshot> {
        loop {
            if let Some(snapshot) = self.shared.tracker().take_snapshot() {
                return Arc::new(snapshot);
            }
            self.shared.due.notified().await;
        }
    }

    /// As [`Snapshots::next`], but the changes since the previous call
    /// (the whole state the first time) rather than a copy of the state:
    /// for a consumer that keeps its own copy up to date. Use one or the
    /// other, not both.
    pub async fn next_increment(&mut self) -> Increment {
        loop {
            if let Some(increment) = self.shared.tracker().take_increment() {
                return increment;
            }
            self.shared.due.notified().await;
        }
    }

    /// Whether every watched kind has completed its first list.
    pub fn ready(&self) -> bool {
        self.shared.tracker().ready()
    }
}

impl Drop for Snapshots {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn pump<K, S, Err>(
    shared: Arc<Shared>,
    kind: Kind,
    stream: S,
    apply: fn(&mut Tracker, Event<K>),
) where
    S: Stream<Item = Result<Event<K>, Err>> + Send + 'static,
    Err: std::fmt::Display,
{
    let mut chunks = std::pin::pin!(stream.ready_chunks(CHUNK));
    while let Some(chunk) = chunks.next().await {
        let due = {
            let mut tracker = shared.tracker();
            for item in chunk {
                match item {
                    Ok(event) => apply(&mut tracker, event),
                    Err(e) => {
                        let first = tracker.failed(kind);
                        if !tracker.is_optional(kind) {
                            tracing::warn!(%kind, error = %e, "watch failed; the watcher re-lists and retries")
                        } else if first {
                            // Once: a cluster without the API (or without
                            // the permission) fails every retry the same way.
                            tracing::warn!(%kind, error = %e,
                                "cannot list or watch; taken as none until it works (the watcher retries)")
                        } else {
                            tracing::debug!(%kind, error = %e, "watch failed; the watcher re-lists and retries")
                        }
                    }
                }
            }
            tracker.pending()
        };
        if due {
            shared.due.notify_one();
        }
    }
    tracing::error!(%kind, "watch stream ended; no more updates for this kind");
}
