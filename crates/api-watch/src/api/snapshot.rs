//! The tracker's tests compare [`Snapshot`]s: the changes of a hand-out
//! with a copy of the state.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::{ObjectError, Tracker};
use crate::{ClusterState, ObjectKey};

/// A copy of the state with the changes: what the tracker's tests compare.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Snapshot {
    /// A copy of the store's state.
    pub state: ClusterState,
    /// Every object currently skipped.
    pub errors: Vec<ObjectError>,
    /// As in [`WatchChanges::generation`].
    pub generation: u64,
    /// As in [`WatchChanges::services_changed`].
    pub services_changed: usize,
    /// As in [`WatchChanges::endpoints_changed`].
    pub endpoints_changed: usize,
    /// As in [`WatchChanges::trigger_times`].
    pub trigger_times: Vec<SystemTime>,
    /// As in [`WatchChanges::changed_services`].
    pub changed_services: BTreeSet<ObjectKey>,
    /// As in [`WatchChanges::nodes_changed`].
    pub nodes_changed: bool,
    /// As in [`WatchChanges::blocks_changed`].
    pub blocks_changed: bool,
}

/// [`Tracker::take_changes`] with a copy of the state.
pub(super) trait TakeSnapshot {
    fn take_snapshot(&mut self) -> Option<Snapshot>;
}

impl TakeSnapshot for Tracker {
    fn take_snapshot(&mut self) -> Option<Snapshot> {
        let c = self.take_changes()?;
        Some(Snapshot {
            state: self.state().clone(),
            errors: c.errors,
            generation: c.generation,
            services_changed: c.services_changed,
            endpoints_changed: c.endpoints_changed,
            trigger_times: c.trigger_times,
            changed_services: c.changed_services,
            nodes_changed: c.nodes_changed,
            blocks_changed: c.blocks_changed,
        })
    }
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "snapshot {}: {} services, {} endpoint slices, {} nodes, {} skipped",
            self.generation,
            self.state.services.len(),
            self.state.endpoint_slices.len(),
            self.state.nodes.len(),
            self.errors.len()
        )
    }
}
