//! The API-server source of the sync loop: `api_watch::api`'s
//! [`Watches`], the one store of the cluster, whose hand-outs of what
//! changed become [`Update`]s; the loop reads the state from the store
//! itself.

use std::collections::BTreeSet;

use api_watch::api::{ObjectError, WatchChanges, Watches};
use api_watch::{ClusterState, SliceIndex};

use super::sync_loop::{Changed, Source, Update};

/// The API server's watches, and the store they fill.
pub struct ApiSource {
    watches: Watches,
    /// Objects skipped in the previous hand-out, as (kind, object, field).
    skipped: BTreeSet<(String, String, String)>,
}

impl ApiSource {
    /// Wraps the watches started by `api_watch::api::watch`.
    pub fn new(watches: Watches) -> Self {
        ApiSource {
            watches,
            skipped: BTreeSet::new(),
        }
    }
}

impl Source for ApiSource {
    async fn next(&mut self) -> Option<Update> {
        let changes = self.watches.next().await?;
        // The first hand-out comes once every watched kind has completed
        // its first list. The time from here to `first sync done` is the
        // start-up sync's own cost.
        if changes.generation == 1 {
            let state = self.watches.state();
            tracing::info!(
                services = state.services.len(),
                endpoint_slices = state.endpoint_slices.len(),
                nodes = state.nodes.len(),
                "all kinds listed"
            );
        }
        Some(to_update(changes, &mut self.skipped))
    }

    fn state(&self) -> &ClusterState {
        self.watches.state()
    }

    fn slice_index(&self) -> Option<&SliceIndex> {
        Some(self.watches.slice_index())
    }
}

/// The update for `snapshot`; `skipped` carries the skipped objects from
/// one hand-out to the next so that each is counted once, when it first
/// appears (a hand-out lists every object currently skipped).
pub fn to_update(
    snapshot: WatchChanges,
    skipped: &mut BTreeSet<(String, String, String)>,
) -> Update {
    let now: BTreeSet<_> = snapshot.errors.iter().map(error_key).collect();
    let new_skips = now
        .difference(skipped)
        .map(|(kind, _, field)| (kind.clone(), reason(field)))
        .collect();
    // One line per object when it is first skipped. The object's name is
    // escaped (the API server admits only valid names, but this is one log
    // line whatever it holds); fields and messages quote what they show.
    for e in &snapshot.errors {
        if !skipped.contains(&error_key(e)) {
            tracing::warn!(kind = %e.kind, object = %e.object.escape_debug(), field = %e.field,
                "skipped: {}", e.message);
        }
    }
    let skipped_errors = (snapshot.errors.iter())
        .filter(|e| !skipped.contains(&error_key(e)))
        .cloned()
        .collect();
    *skipped = now;
    let s = snapshot;
    // The first hand-out: everything is planned.
    let changed = if s.generation == 1 {
        Changed::All
    } else {
        Changed::Some {
            services: s.changed_services,
            nodes: s.nodes_changed,
            blocks: s.blocks_changed,
        }
    };
    Update {
        services_changed: s.services_changed,
        endpoints_changed: s.endpoints_changed,
        skipped: new_skips,
        skipped_errors,
        trigger_times: s.trigger_times,
        changed,
        routes_ready: s.routes_ready,
    }
}

fn error_key(e: &ObjectError) -> (String, String, String) {
    (e.kind.to_string(), e.object.clone(), e.field.clone())
}

/// A metric label for a skip: the field with list indices removed
/// (`spec.ports[].port`), so that the label set stays small; `object`
/// when the field is not known.
fn reason(field: &str) -> String {
    if field.is_empty() {
        return "object".into();
    }
    let mut out = String::with_capacity(field.len());
    let mut in_index = false;
    for c in field.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_watch::api::Kind;

    fn snapshot(errors: Vec<ObjectError>) -> WatchChanges {
        WatchChanges {
            errors,
            generation: 2,
            services_changed: 2,
            endpoints_changed: 3,
            trigger_times: vec![std::time::UNIX_EPOCH],
            changed_services: [api_watch::ObjectKey::new("ns", "a")].into(),
            nodes_changed: true,
            blocks_changed: false,
            routes_ready: true,
        }
    }

    fn error(object: &str, field: &str) -> ObjectError {
        ObjectError {
            kind: Kind::Service,
            object: object.into(),
            field: field.into(),
            message: "bad".into(),
        }
    }

    #[test]
    fn a_skipped_object_is_counted_once_when_it_first_appears() {
        let mut seen = BTreeSet::new();
        let u = to_update(
            snapshot(vec![error("ns/a", "spec.ports[3].port")]),
            &mut seen,
        );
        assert_eq!(
            u.skipped,
            vec![("Service".into(), "spec.ports[].port".into())]
        );
        assert_eq!(
            (
                u.services_changed,
                u.endpoints_changed,
                u.trigger_times.len()
            ),
            (2, 3, 1)
        );
        assert_eq!(
            u.changed,
            Changed::Some {
                services: [api_watch::ObjectKey::new("ns", "a")].into(),
                nodes: true,
                blocks: false,
            }
        );
        let again = to_update(
            snapshot(vec![error("ns/a", "spec.ports[3].port"), error("ns/b", "")]),
            &mut seen,
        );
        assert_eq!(again.skipped, vec![("Service".into(), "object".into())]);
        let fixed = to_update(snapshot(vec![]), &mut seen);
        assert!(fixed.skipped.is_empty());
        let back = to_update(snapshot(vec![error("ns/b", "")]), &mut seen);
        assert_eq!(
            back.skipped.len(),
            1,
            "skipped again after being fixed counts again"
        );
    }
}
