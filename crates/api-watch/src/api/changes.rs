//! What the [`super::Tracker`] hands out: the changes since the last
//! hand-out, and the objects it skipped.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::kinds::Kind;
use crate::ObjectKey;

/// One object that was skipped, and why. Shown as
/// `Service shop/web: spec.ports[0].port: port 0 is not in 1..=65535`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}{}: {message}", field_part(.field))]
pub struct ObjectError {
    /// The object's kind.
    pub kind: Kind,
    /// `namespace/name`, or the name alone for a Node.
    pub object: String,
    /// The field, e.g. `spec.ports[0].port`; empty when not known.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn field_part(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!(": {field}")
    }
}

/// What changed in the store since the last [`Tracker::take_changes`]:
/// the daemon reads the state itself from the store ([`Tracker::state`]),
/// in place; nothing here copies it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WatchChanges {
    /// Every object currently skipped (one error each), by kind and name.
    pub errors: Vec<ObjectError>,
    /// 1 for the first hand-out, then +1 for each.
    pub generation: u64,
    /// Service changes (add, update that changed the model, delete) since
    /// the previous hand-out: feeds kube-proxy's
    /// `sync_proxy_rules_service_changes_{pending,total}`.
    pub services_changed: usize,
    /// EndpointSlice changes since the previous hand-out (the
    /// `endpoint_changes_*` metrics).
    pub endpoints_changed: usize,
    /// `endpoints.kubernetes.io/last-change-trigger-time` of the slices
    /// changed since the previous hand-out, for
    /// `network_programming_duration_seconds`. Left out: slices listed
    /// in a kind's first list, and times before the tracker started (as
    /// kube-proxy does, so that a restart does not report huge latencies).
    pub trigger_times: Vec<SystemTime>,
    /// The Services whose Service or EndpointSlices changed in the model
    /// since the previous hand-out (for a slice: the Service it belonged
    /// to before and the one it belongs to now). Every Service the first
    /// time.
    pub changed_services: BTreeSet<ObjectKey>,
    /// A Node changed in the model since the previous hand-out (labels
    /// feed topology keys and hints, addresses the node-port rules).
    pub nodes_changed: bool,
    /// A Calico BlockAffinity changed, or they listed for the first time
    /// (routes only).
    pub blocks_changed: bool,
    /// Routes can be planned ([`Tracker::routes_ready`]).
    pub routes_ready: bool,
}
