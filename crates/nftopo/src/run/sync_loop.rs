//! The sync loop: turns cluster updates into kernel transactions.
//!
//! * at most one sync per `min_sync_period` (bursts coalesce into the
//!   latest update);
//! * a sync at least every `sync_period`, as kube-proxy's `syncRunner`
//!   (its `maxInterval`): one with nothing to do sends nothing;
//! * a full sync every `full_sync_period` (kube-proxy's hard-coded hour):
//!   nftopo reads its tables back and repairs whatever differs from the
//!   plan (drift, counted in `nftopo_drift_repairs_total`);
//! * after a sync that left deletions for the next one (the engine
//!   defers some, see [`Syncer::has_deferred`]), the next sync as soon as
//!   `min_sync_period` allows;
//! * after a failed sync, a retry with exponential backoff, which reads
//!   back and converges too;
//! * metrics and health updated per queued update and per sync.
//!
//! The cluster and the kernel sit behind two small traits, [`Source`] and
//! [`Programmer`], so the timing is tested with fakes on tokio's paused
//! clock.
//!
//! A sync costs what changed, not what the cluster holds: the loop keeps
//! the last topology plan and an [`IncrementalPlanner`]; an update that
//! names its changed Services re-plans only those
//! (`topology_filter::replan`, and when a Node changed, the Services whose
//! topology depends on Nodes) and sends only their operations
//! ([`Programmer::sync_changes`]). An update that does not say, and the
//! first one, re-plan everything; the first sync, periodic syncs and
//! retries converge against the kernel's read-back, so a restart with an
//! unchanged cluster sends nothing.

mod io;

pub use io::*;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_watch::{ClusterState, SliceIndex};
use nft_writer::conntrack::{Scope, UdpService};
use nft_writer::{Changes, IncrementalPlanner, Kernel, PlannerConfig, SyncStats, Syncer};
use proxier::Proxier;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::debug::{self, DebugRequest};
use super::health::{NodeStatus, ProxyHealth};
use super::metrics::Metrics;
use super::service_events::{Notice, ServiceEvents};
use super::svc_health::ServiceHealthServers;

/// First retry delay after a failed sync.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// Fixed settings of the loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's name.
    pub node: String,
    /// Planner configuration.
    pub planner: PlannerConfig,
    /// At most one sync per this interval.
    pub min_sync_period: Duration,
    /// A sync at least this often (kube-proxy's `--sync-period`).
    pub sync_period: Duration,
    /// A full sync this often.
    pub full_sync_period: Duration,
}

/// What the loop reports to.
pub struct Outputs {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// `/healthz` state.
    pub health: Arc<Mutex<ProxyHealth>>,
    /// Health-check node port servers, if served.
    pub service_health: Option<ServiceHealthServers>,
    /// Warning Events on Services, if written.
    pub service_events: Option<ServiceEvents>,
    /// Questions from the debug endpoints, if served.
    pub debug: Option<mpsc::Receiver<DebugRequest>>,
}

/// Runs until `shutdown` completes (returns `Ok`, rules left in place) or
/// the source ends (an error: the daemon should restart).
pub async fn run(
    settings: Settings,
    mut source: impl Source,
    mut programmer: impl Programmer,
    mut out: Outputs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut st = LoopState::default();
    tokio::pin!(shutdown);
    loop {
        let deadline = st.deadline(&settings);
        tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!("stopping; the rules stay in place");
                return Ok(());
            }
            _ = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                // Blocking netlink work. The daemon runs this loop as its
                // runtime's block_on future (run/mod.rs), not on a worker,
                // so the HTTP servers' tasks keep both workers meanwhile.
                st.sync(&settings, (source.state(), source.slice_index()), &mut programmer, &mut out);
            }
            update = source.next() => match update {
                Some(u) => st.queue(&settings, u, source.state(), &out),
                None => anyhow::bail!("the cluster source ended"),
            },
            request = async {
                match out.debug.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match request {
                Some(r) => {
                    let plan = st.proxier.as_ref().and_then(Proxier::shared_plan);
                    debug::answer(r, source.state(), source.slice_index(), &settings.node, plan);
                }
                None => out.debug = None,
            },
        }
    }
}

/// The loop's memory between syncs.
#[derive(Default)]
struct LoopState {
    /// Received and not yet applied.
    pending: Option<Update>,
    /// A sync with an update went through (periodic resyncs follow).
    applied: bool,
    /// The pure proxier (plans, ruleset parts, UDP clean-up memory,
    /// health and metric facts); `None` before the first update.
    proxier: Option<Proxier>,
    last_sync: Option<Instant>,
    last_full: Option<Instant>,
    /// The last sync left deletions for the next one.
    follow_up: bool,
    failures: u32,
    retry_at: Option<Instant>,
    /// An update came after the last failed sync: it is tried at the next
    /// `min_sync_period`, not after the retry's backoff.
    news_since_failure: bool,
    /// What the latest update said of routes; `Some(false)` while they
    /// wait (logged once).
    routes_ready: Option<bool>,
}

impl LoopState {
    /// When the next sync is due; `None` before the first update.
    fn deadline(&self, s: &Settings) -> Option<Instant> {
        let earliest = self.last_sync.map(|t| t + s.min_sync_period);
        let due = match (self.retry_at, &self.pending, self.last_sync) {
            // New state is tried at once (within min_sync_period); the
            // backoff holds back retrying the same state.
            (Some(retry), Some(_), _) if self.news_since_failure => {
                Some(earliest.unwrap_or_else(Instant::now).min(retry))
            }
            (Some(retry), _, _) => Some(retry),
            (None, Some(_), _) => Some(earliest.unwrap_or_else(Instant::now)),
            (None, None, Some(last)) if self.applied && self.follow_up => Some(last),
            (None, None, Some(last)) if self.applied => {
                let periodic = last + s.sync_period;
                Some(match self.last_full {
                    Some(full) => periodic.min(full + s.full_sync_period),
                    None => periodic,
                })
            }
            _ => None,
        }?;
        Some(earliest.map_or(due, |e| due.max(e)))
    }

    /// Whether the sync starting `now` reads the kernel back: the first
    /// one, one a full sync period after the last, and retries.
    fn full_due(&self, s: &Settings, now: Instant) -> bool {
        self.retry_at.is_some() || self.last_full.is_none_or(|t| now >= t + s.full_sync_period)
    }

    fn queue(&mut self, s: &Settings, mut u: Update, state: &ClusterState, out: &Outputs) {
        let m = &out.metrics;
        m.last_queued.set(unix_seconds(SystemTime::now()));
        m.service_changes.inc_by(u.services_changed as u64);
        m.endpoint_changes.inc_by(u.endpoints_changed as u64);
        for (kind, reason) in &u.skipped {
            m.skipped(kind, reason);
        }
        if let Some(events) = &out.service_events {
            let skipped = u.skipped_errors.drain(..);
            let notices = skipped.filter_map(|e| Notice::from_skip(&e));
            events.offer_all(notices, state, Instant::now());
        }
        self.news_since_failure |= self.retry_at.is_some();
        let mut health = out.health.lock().expect("health lock");
        health.queued(Instant::now());
        health.set_node(NodeStatus {
            deleting: state.nodes.get(&s.node).is_some_and(|n| n.deleting),
            to_be_deleted: false,
        });
        if let Some(older) = self.pending.take() {
            u.absorb(older);
        }
        m.service_changes_pending.set(u.services_changed as i64);
        m.endpoint_changes_pending.set(u.endpoints_changed as i64);
        self.pending = Some(u);
    }

    fn sync(
        &mut self,
        s: &Settings,
        (state, slices): (&ClusterState, Option<&SliceIndex>),
        programmer: &mut impl Programmer,
        out: &mut Outputs,
    ) {
        let now = Instant::now();
        let full = self.full_due(s, now);
        let fresh = self.pending.take();
        self.news_since_failure = false;
        if let Some(u) = &fresh {
            if !u.routes_ready && self.routes_ready != Some(false) {
                tracing::warn!("routes wait for Calico BlockAffinities to list; services do not");
            }
            self.routes_ready = Some(u.routes_ready);
        }
        let mut step = match &fresh {
            Some(u) => Some(
                self.proxier
                    .get_or_insert_with(|| Proxier::new(s.node.clone(), s.planner.clone()))
                    .step(state, slices, &u.changed),
            ),
            None if self.proxier.is_some() => None,
            None => return,
        };
        let proxier = self.proxier.as_mut().expect("set with the first update");
        if let Some(step) = &step {
            out.metrics.step(step);
            for p in &step.problems {
                tracing::debug!(object = %p.object, kind = p.kind, "{}", p.message);
            }
            if let Some(events) = &out.service_events {
                let notices = step.problems.iter().filter_map(Notice::from_problem);
                events.offer_all(notices, state, now);
            }
            tracing::debug!(
                replanned = step.changes.replanned,
                operations = step.changes.now.len(),
                "planned"
            );
        }
        let changes = step
            .as_mut()
            .map(|st| std::mem::take(&mut st.changes))
            .unwrap_or_default();
        let routes_due =
            full || proxier.routes_failed() || step.as_ref().is_some_and(|st| st.routes_due);
        let started = Instant::now();
        let result = programmer.sync_changes(proxier.planner(), changes, full);
        let elapsed = started.elapsed().as_secs_f64();
        self.last_sync = Some(now);
        match result {
            Ok(stats) => {
                let m = &out.metrics;
                m.sync_duration.observe(elapsed);
                if stats.full {
                    m.sync_full_duration.observe(elapsed);
                    self.last_full = Some(now);
                } else {
                    m.sync_partial_duration.observe(elapsed);
                }
                if stats.messages > 0 {
                    m.netlink_messages.observe(stats.messages as f64);
                }
                report_repairs(&stats, &programmer.repair_notes(), m);
                if !self.applied && fresh.is_some() {
                    // The first sync after a start: with an unchanged
                    // cluster, it reads the kernel back and sends nothing.
                    tracing::info!(
                        operations = stats.operations,
                        differences = stats.repairs.total(),
                        replaced_tables = stats.replaced,
                        seconds = elapsed,
                        "first sync done"
                    );
                }
                let wall = SystemTime::now();
                m.last_sync.set(unix_seconds(wall));
                m.service_changes_pending.set(0);
                m.endpoint_changes_pending.set(0);
                if let Some(u) = &fresh {
                    for t in &u.trigger_times {
                        if let Ok(d) = wall.duration_since(*t) {
                            m.network_programming.observe(d.as_secs_f64());
                        }
                    }
                    self.applied = true;
                }
                out.health.lock().expect("health lock").updated(wall);
                if let (Some(servers), Some(step)) = (&mut out.service_health, &step) {
                    servers.sync(&step.health.0, &step.health.1);
                }
                tracing::debug!(
                    full = stats.full,
                    operations = stats.operations,
                    messages = stats.messages,
                    seconds = elapsed,
                    "synced"
                );
                self.failures = 0;
                self.retry_at = None;
                self.follow_up = programmer.has_deferred();
                // No dump when no UDP endpoint went away (nor appeared
                // where there was none): the usual sync.
                let scope = proxier.udp_scope();
                match match scope {
                    Scope::Nothing => Ok(0),
                    _ => programmer.clean_udp(&scope, &proxier.udp_desired()),
                } {
                    Ok(n) => {
                        proxier.udp_cleaned();
                        if n > 0 {
                            tracing::info!(deleted = n, "stale UDP conntrack entries deleted");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "UDP conntrack clean-up failed")
                    }
                }
            }
            Err(e) => {
                out.metrics.sync_failures.inc();
                self.failures += 1;
                let delay = backoff(self.failures);
                tracing::error!(error = %format!("{e:#}"), retry_in = ?delay, "sync failed; retrying with a full sync");
                self.retry_at = Some(now + delay);
                // Keep what was not applied for the retry.
                match (fresh, self.pending.take()) {
                    (Some(u), None) => self.pending = Some(u),
                    (Some(u), Some(mut newer)) => {
                        newer.absorb(u);
                        self.pending = Some(newer);
                    }
                    (None, p) => self.pending = p,
                }
            }
        }
        // Routes do not depend on the ruleset: a failed nftables sync
        // does not hold them back.
        if routes_due && self.routes_ready != Some(false) {
            match programmer.sync_routes(state) {
                Ok(None) => proxier.routes_done(true),
                Ok(Some(r)) => {
                    proxier.routes_done(r.failed == 0);
                    out.metrics
                        .routes_programmed
                        .set(r.desired.saturating_sub(r.failed) as i64);
                    if r.failed > 0 {
                        out.metrics.route_failures.inc_by(r.failed as u64);
                    }
                }
                Err(e) => {
                    proxier.routes_done(false);
                    out.metrics.route_failures.inc();
                    tracing::error!(error = %format!("{e:#}"), "route sync failed; retrying on the next sync");
                }
            }
        }
    }
}

/// Counts and logs what a convergence repaired: drift (the kernel
/// differed from what nftopo had applied) one line per object, at most
/// [`nft_writer::MAX_NOTES`] a sync; nftopo's own catching up (first
/// sync, retries) as one line.
fn report_repairs(stats: &SyncStats, notes: &[String], m: &Metrics) {
    let drift = stats.drift.total();
    if drift > 0 {
        for (kind, n) in stats.drift.by_kind() {
            if n > 0 {
                m.drift_repairs
                    .get_or_create(&vec![("kind".into(), kind.into())])
                    .inc_by(n as u64);
            }
        }
        for line in notes {
            tracing::warn!("drift repaired: {line}");
        }
        if drift > notes.len() {
            tracing::warn!(more = drift - notes.len(), "drift repaired: more objects");
        }
    } else if stats.full && stats.repairs.total() > 0 {
        tracing::info!(
            differences = stats.repairs.total(),
            operations = stats.operations,
            "converged the kernel's tables"
        );
    }
}

/// Delay before retry number `failures` (1-based): 1 s, 2 s, 4 s, … up to
/// [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_INITIAL
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
#[path = "sync_loop_tests.rs"]
mod tests;
