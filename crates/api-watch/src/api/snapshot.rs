//! The tracker's tests compare [`Snapshot`]s: the changes of a hand-out
//! with a copy of the state.

use std::ops::Deref;

use super::{Tracker, WatchChanges};
use crate::ClusterState;

/// A copy of the state with the changes: what the tracker's tests compare
/// (the changes' fields read through [`Deref`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Snapshot {
    /// A copy of the store's state.
    pub state: ClusterState,
    /// The hand-out.
    pub changes: WatchChanges,
}

impl Deref for Snapshot {
    type Target = WatchChanges;

    fn deref(&self) -> &WatchChanges {
        &self.changes
    }
}

/// [`Tracker::take_changes`] with a copy of the state.
pub(super) trait TakeSnapshot {
    fn take_snapshot(&mut self) -> Option<Snapshot>;
}

impl TakeSnapshot for Tracker {
    fn take_snapshot(&mut self) -> Option<Snapshot> {
        let changes = self.take_changes()?;
        Some(Snapshot {
            state: self.state().clone(),
            changes,
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
