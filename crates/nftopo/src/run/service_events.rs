//! Warning Events on the Services whose owners must act, so that
//! `kubectl describe service` says what nftopo did not accept:
//!
//! | reason                | when                                          | action               |
//! |-----------------------|-----------------------------------------------|----------------------|
//! | `InvalidTopologyKeys` | topology keys break a ServiceTopology rule    | `IgnoreTopologyKeys` |
//! | `PortConflict`        | a port collides with another Service's        | `SkipServicePort`    |
//! | `MalformedObject`     | the Service did not decode or convert         | `SkipService`        |
//!
//! The note is the problem's own text (field and rule), cut to the API
//! server's 1 KiB. Events are events.k8s.io/v1, written by kube-rs's
//! [`Recorder`]: the same event again within its 6 minutes is a patch
//! of `series.count`, not a new object.
//!
//! What decides (pure, tested without a clock): which problems make an
//! event ([`Notice`]), whether this node is one of the few that report a
//! Service ([`is_reporter`]), and the per-Service token bucket
//! ([`Limiter`]). What acts: [`ServiceEvents`], whose `offer` never
//! waits (a bounded queue; a full one drops and counts) and whose task
//! writes the events. Problems are offered when they appear (the proxier
//! reports a problem once while it stays), so a fixed Service gets no
//! further events; the old ones age out on the API server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use api_watch::api::ObjectError;
use api_watch::{ClusterState, Node, ObjectKey};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::metrics::Labels;

/// Events a Service may get at once (one per kind of problem, and then
/// some): the bucket's size.
pub const BURST: u32 = 4;
/// One more event per Service this often once the burst is spent:
/// client-go's event spam filter refills at the same rate (1/300 s).
pub const REFILL: Duration = Duration::from_secs(300);
/// Events waiting for the API server; more are dropped (and counted).
pub const QUEUE: usize = 256;
/// Nodes that report each Service's events (see [`is_reporter`]).
pub const REPORTERS: usize = 3;
/// The API server refuses a longer `note` (events.k8s.io/v1 validation).
pub const NOTE_LIMIT: usize = 1024;
/// How long one lookup or write may take before it is given up.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One event to write about a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The Service.
    pub service: ObjectKey,
    /// The event's `reason` (UpperCamelCase).
    pub reason: &'static str,
    /// The event's `action`: what nftopo did instead.
    pub action: &'static str,
    /// The event's `note`: the field and the rule, at most
    /// [`NOTE_LIMIT`] bytes.
    pub note: String,
}

impl Notice {
    /// The event for a proxier problem, if its kind makes one
    /// (`invalid_topology_keys`, `duplicate_service_port`).
    pub fn from_problem(p: &proxier::Problem) -> Option<Notice> {
        let (reason, action) = match p.kind {
            "invalid_topology_keys" => ("InvalidTopologyKeys", "IgnoreTopologyKeys"),
            "duplicate_service_port" => ("PortConflict", "SkipServicePort"),
            _ => return None,
        };
        Some(Notice {
            service: p.object.clone(),
            reason,
            action,
            note: cut(p.message.clone()),
        })
    }

    /// The event for a skipped object, if it is a Service.
    pub fn from_skip(e: &ObjectError) -> Option<Notice> {
        if e.kind != api_watch::api::Kind::Service {
            return None;
        }
        let (namespace, name) = e.object.split_once('/')?;
        let what = if e.field.is_empty() {
            e.message.clone()
        } else {
            format!("{}: {}", e.field, e.message)
        };
        Some(Notice {
            service: ObjectKey::new(namespace, name),
            reason: "MalformedObject",
            action: "SkipService",
            note: cut(format!(
                "{what}; nftopo skips this Service (no rules) until it is fixed"
            )),
        })
    }
}

/// `notices` with one per Service and reason: the notes of the same
/// reason joined with `; ` (two colliding ports are one `PortConflict`
/// naming both), in the order they first appear. kube-rs's Recorder
/// keys its events by reason, not note: unmerged, the second would only
/// count up the first.
pub fn merged(notices: impl IntoIterator<Item = Notice>) -> Vec<Notice> {
    let mut out: Vec<Notice> = Vec::new();
    for n in notices {
        match (out.iter_mut()).find(|o| o.service == n.service && o.reason == n.reason) {
            Some(o) => o.note = cut(format!("{}; {}", o.note, n.note)),
            None => out.push(n),
        }
    }
    out
}

/// `note` cut to [`NOTE_LIMIT`] bytes on a character boundary, ending in
/// `…` when cut.
fn cut(mut note: String) -> String {
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let mut end = NOTE_LIMIT - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push('…');
    note
}

/// Whether node `me` reports `service`'s events: the [`REPORTERS`] nodes
/// that rank highest for the Service (rendezvous hashing over the Nodes
/// not being deleted, `me` always among them). Every node sees the same
/// problem in the same Service; without this each would write its own
/// event, 5,000 of them in a 5,000-node cluster. Every node computes
/// the same ranking from the same Nodes, and a Node added or removed
/// moves few Services.
pub fn is_reporter(me: &str, service: &ObjectKey, nodes: &BTreeMap<String, Node>) -> bool {
    let mine = (score(me, service), me);
    let higher = nodes
        .values()
        .filter(|n| n.name != me && !n.deleting)
        .filter(|n| (score(&n.name, service), n.name.as_str()) > mine)
        .take(REPORTERS)
        .count();
    higher < REPORTERS
}

/// A stable 64-bit score of (node, service): FNV-1a, then splitmix64's
/// finaliser to spread it. The same on every node and every build.
fn score(node: &str, service: &ObjectKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = node.bytes().chain([0]).chain(service.namespace.bytes());
    for b in bytes.chain([b'/']).chain(service.name.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A token bucket per Service: [`BURST`] events, then one per
/// [`REFILL`]. The clock is an argument.
#[derive(Debug)]
pub struct Limiter {
    burst: u32,
    refill: Duration,
    buckets: HashMap<ObjectKey, Bucket>,
    /// Buckets that have filled up again are dropped when the map
    /// reaches this size (a full bucket is the same as none).
    prune_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// Refills are counted from here.
    since: Instant,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(BURST, REFILL)
    }
}

impl Limiter {
    /// `burst` events per Service, then one per `refill`.
    pub fn new(burst: u32, refill: Duration) -> Self {
        Limiter {
            burst,
            refill,
            buckets: HashMap::new(),
            prune_at: 64,
        }
    }

    /// Whether `service` may have an event at `now`; takes a token if so.
    pub fn admit(&mut self, service: &ObjectKey, now: Instant) -> bool {
        if self.buckets.len() >= self.prune_at {
            let (burst, refill) = (self.burst, self.refill);
            self.buckets
                .retain(|_, b| refilled(*b, now, burst, refill).tokens < burst);
            self.prune_at = (self.buckets.len() * 2).max(64);
        }
        let full = Bucket {
            tokens: self.burst,
            since: now,
        };
        let b = self.buckets.entry(service.clone()).or_insert(full);
        *b = refilled(*b, now, self.burst, self.refill);
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }

    /// Services with a bucket not yet full.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// `b` at `now`: one token per whole `refill` since `b.since`, at most
/// `burst`; a full bucket counts from `now`.
fn refilled(b: Bucket, now: Instant, burst: u32, refill: Duration) -> Bucket {
    let periods = now.saturating_duration_since(b.since).as_nanos() / refill.as_nanos().max(1);
    let tokens = (u128::from(b.tokens) + periods).min(u128::from(burst)) as u32;
    if tokens == burst {
        return Bucket { tokens, since: now };
    }
    let since = b.since + refill * periods as u32;
    Bucket { tokens, since }
}

/// What [`ServiceEvents::offer`] did with a notice (the `result` label
/// of `nftopo_service_events_total`, with the task's `sent`, `failed`
/// and `service_gone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Queued for the API server.
    Queued,
    /// Other nodes report this Service.
    OtherReporter,
    /// The Service's bucket is empty.
    RateLimited,
    /// The queue is full.
    QueueFull,
}

/// The daemon's side: offers notices from the sync loop, and a task that
/// writes them.
pub struct ServiceEvents {
    node: String,
    limiter: Mutex<Limiter>,
    tx: mpsc::Sender<Notice>,
    counts: Family<Labels, Counter>,
}

impl ServiceEvents {
    /// Starts the writing task on the current runtime. Events are
    /// written by controller `nftopo`, instance `nftopo-NODE` (as the
    /// Starting event); `counts` is `nftopo_service_events_total`.
    pub fn spawn(client: kube::Client, node: String, counts: Family<Labels, Counter>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let recorder = Recorder::new(client.clone(), super::events::reporter(&node));
        tokio::spawn(write_all(rx, client, recorder, counts.clone()));
        Self::with_queue(node, tx, counts)
    }

    /// One over `tx` (tests read the other end).
    pub fn with_queue(
        node: String,
        tx: mpsc::Sender<Notice>,
        counts: Family<Labels, Counter>,
    ) -> Self {
        ServiceEvents {
            node,
            limiter: Mutex::new(Limiter::default()),
            tx,
            counts,
        }
    }

    /// Offers `notice` at `now`: queued if this node reports the Service,
    /// its bucket has a token and the queue has room. Never waits.
    pub fn offer(&self, notice: Notice, state: &ClusterState, now: Instant) -> Verdict {
        let verdict = if !is_reporter(&self.node, &notice.service, &state.nodes) {
            Verdict::OtherReporter
        } else if !self
            .limiter
            .lock()
            .expect("limiter")
            .admit(&notice.service, now)
        {
            Verdict::RateLimited
        } else {
            match self.tx.try_send(notice) {
                Ok(()) => Verdict::Queued,
                Err(_) => Verdict::QueueFull,
            }
        };
        let result = match verdict {
            Verdict::Queued => return verdict,
            Verdict::OtherReporter => "other_reporter",
            Verdict::RateLimited => "rate_limited",
            Verdict::QueueFull => "queue_full",
        };
        count(&self.counts, result);
        verdict
    }
}

impl ServiceEvents {
    /// Offers `notices` [`merged`] by Service and reason.
    pub fn offer_all(
        &self,
        notices: impl IntoIterator<Item = Notice>,
        state: &ClusterState,
        now: Instant,
    ) {
        for n in merged(notices) {
            self.offer(n, state, now);
        }
    }
}

fn count(counts: &Family<Labels, Counter>, result: &str) {
    counts
        .get_or_create(&vec![("result".into(), result.into())])
        .inc();
}

/// Writes queued notices one at a time until the sender goes away.
async fn write_all(
    mut rx: mpsc::Receiver<Notice>,
    client: kube::Client,
    recorder: Recorder,
    counts: Family<Labels, Counter>,
) {
    while let Some(n) = rx.recv().await {
        let result = match write(&client, &recorder, &n).await {
            Ok(true) => "sent",
            Ok(false) => "service_gone",
            Err(e) => {
                tracing::warn!(service = %n.service, reason = n.reason, error = %e,
                    "cannot record a Service event");
                "failed"
            }
        };
        count(&counts, result);
    }
}

/// Records `n` on its Service; `false` when the Service is gone. The
/// Service's UID comes from a list by name (the `list services` the
/// watchers need already; no `get`): `kubectl describe` looks events up
/// by it. These requests are listed in `events::service_access`, which
/// the ClusterRole test checks.
async fn write(client: &kube::Client, recorder: &Recorder, n: &Notice) -> anyhow::Result<bool> {
    let (ns, name) = (&n.service.namespace, &n.service.name);
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
    let found = tokio::time::timeout(TIMEOUT, api.list_metadata(&by_name)).await??;
    let Some(uid) = found.items.into_iter().find_map(|s| s.metadata.uid) else {
        return Ok(false);
    };
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        namespace: Some(ns.to_string()),
        name: Some(name.to_string()),
        uid: Some(uid),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: n.reason.into(),
        note: Some(n.note.clone()),
        action: n.action.into(),
        secondary: None,
    };
    tokio::time::timeout(TIMEOUT, recorder.publish(&event, &regarding)).await??;
    tracing::debug!(service = %n.service, reason = n.reason, "recorded a Service event");
    Ok(true)
}

#[cfg(test)]
#[path = "service_events_tests.rs"]
mod tests;
