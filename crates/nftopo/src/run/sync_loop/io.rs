//! What the loop talks to: the [`Update`]s its [`Source`] hands it, and
//! the [`Programmer`] that holds the kernel calls.

use super::*;

/// What changed in the cluster since the previous update; the state
/// itself stays in the source's store ([`Source::state`]).
#[derive(Debug, Clone)]
pub struct Update {
    /// Services changed since the previous update.
    pub services_changed: usize,
    /// EndpointSlices changed since the previous update.
    pub endpoints_changed: usize,
    /// Objects newly skipped for bad input since the previous update, as
    /// (kind, reason).
    pub skipped: Vec<(String, String)>,
    /// The same objects with their errors (Services among them get an
    /// Event).
    pub skipped_errors: Vec<api_watch::api::ObjectError>,
    /// `endpoints.kubernetes.io/last-change-trigger-time` of the slices
    /// changed since the previous update.
    pub trigger_times: Vec<SystemTime>,
    /// Which Services changed since the previous update.
    pub changed: Changed,
    /// Routes can be planned (with Calico IPAM: the BlockAffinities have
    /// listed). Services never wait for that.
    pub routes_ready: bool,
}

impl Default for Update {
    fn default() -> Self {
        Update {
            services_changed: 0,
            endpoints_changed: 0,
            skipped: Vec::new(),
            skipped_errors: Vec::new(),
            trigger_times: Vec::new(),
            changed: Changed::default(),
            routes_ready: true,
        }
    }
}

pub use proxier::Changed;

/// Trigger times kept for `network_programming_duration_seconds` while
/// updates wait (syncs failing for a long time): the earliest, which say
/// the most about the delay.
pub const MAX_TRIGGER_TIMES: usize = 1024;

impl Update {
    /// Folds an older, not yet applied update into this newer one.
    pub(super) fn absorb(&mut self, older: Update) {
        self.services_changed += older.services_changed;
        self.endpoints_changed += older.endpoints_changed;
        self.trigger_times.extend(older.trigger_times);
        if self.trigger_times.len() > MAX_TRIGGER_TIMES {
            self.trigger_times.sort_unstable();
            self.trigger_times.truncate(MAX_TRIGGER_TIMES);
        }
        self.changed.absorb(older.changed);
    }
}

/// Where updates come from: the one store of the cluster. Yields only
/// once the state is complete (everything listed once); `None` when the
/// source has ended. `next` must be cancel-safe: the loop drops it when a
/// timer fires.
pub trait Source {
    /// The next update; the store holds the state it describes.
    fn next(&mut self) -> impl Future<Output = Option<Update>> + Send;

    /// The cluster as the updates so far describe it, in place.
    fn state(&self) -> &ClusterState;

    /// Which slices belong to each Service in [`Source::state`], when the
    /// source keeps that index (re-planning then finds them directly).
    fn slice_index(&self) -> Option<&SliceIndex> {
        None
    }
}

/// What programs the kernel ([`Syncer`] in the daemon).
pub trait Programmer {
    /// Brings the kernel to what `planner` holds, `changes` being what
    /// its last update returned; with `full` (first sync, periodic full
    /// sync, retry), reads the kernel back and converges it.
    fn sync_changes(
        &mut self,
        planner: &IncrementalPlanner,
        changes: Changes,
        full: bool,
    ) -> anyhow::Result<SyncStats>;

    /// One line per object the last convergence repaired (the first
    /// [`nft_writer::MAX_NOTES`]).
    fn repair_notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the last sync left deletions for the next one
    /// ([`Syncer::has_deferred`]): the loop then syncs again as soon as
    /// `min_sync_period` allows, not a sync period later.
    fn has_deferred(&self) -> bool {
        false
    }

    /// After a successful sync that may have left stale flows: deletes
    /// the UDP conntrack entries in `scope` that no longer match `udp`
    /// (the daemon's programmer does; fakes need not). Returns how many
    /// were deleted. Never called with [`Scope::Nothing`].
    fn clean_udp(&mut self, scope: &Scope, udp: &[UdpService]) -> anyhow::Result<usize> {
        let _ = (scope, udp);
        Ok(0)
    }

    /// Brings this node's routes to what `state` asks for (the daemon's
    /// programmer does when routes are on; fakes need not). Called when
    /// the proxier says routes are due and on full syncs. `None` when
    /// routes are off.
    fn sync_routes(&mut self, state: &ClusterState) -> anyhow::Result<Option<RouteSummary>> {
        let _ = state;
        Ok(None)
    }
}

/// What one route pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteSummary {
    /// Routes this node should hold.
    pub desired: usize,
    /// Operations the kernel accepted.
    pub applied: usize,
    /// Operations it refused (or routes over a tunnel that is unusable).
    pub failed: usize,
}

impl<K: Kernel> Programmer for Syncer<K> {
    fn sync_changes(
        &mut self,
        planner: &IncrementalPlanner,
        changes: Changes,
        full: bool,
    ) -> anyhow::Result<SyncStats> {
        Ok(Syncer::sync_changes(self, planner, changes, full)?)
    }

    fn repair_notes(&self) -> Vec<String> {
        Syncer::repair_notes(self).to_vec()
    }

    fn has_deferred(&self) -> bool {
        Syncer::has_deferred(self)
    }
}
