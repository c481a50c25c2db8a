//! Kubernetes Events the daemon records: one `Normal`/`Starting` event on
//! this node's Node object at start-up, as kube-proxy does, so that
//! `kubectl describe node` shows when nftopo (re)started there.
//!
//! Best effort: an event that cannot be written (no RBAC, API server
//! down) is logged and forgotten; it never stops or delays the daemon.
//! [`access`] lists the API calls made here, for the ClusterRole test.

use std::time::Duration;

use api_watch::api::ApiAccess;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Resource;

/// The `reportingController` of every event nftopo records.
pub const CONTROLLER: &str = "nftopo";

/// The requests this module makes of the API server, derived from the
/// type kube's `Recorder` writes (events.k8s.io/v1 `Event`): `publish`
/// creates an event, and patches it when the same event repeats within
/// minutes (a restart loop).
// Read by the ClusterRole test (tests/rbac.rs), not by the daemon.
#[cfg_attr(not(test), allow(dead_code))]
pub fn access() -> Vec<ApiAccess> {
    vec![ApiAccess {
        group: K8sEvent::group(&()).into_owned(),
        resource: K8sEvent::plural(&()).into_owned(),
        verbs: vec!["create", "patch"],
    }]
}

/// The requests of the Warning events on Services
/// (`run/service_events.rs`): the same create and patch of events, and a
/// list of the Service by name (`fieldSelector=metadata.name=…`) for its
/// UID, which `kubectl describe service` looks events up by. No `get`.
// Read by the ClusterRole test (tests/rbac.rs) only.
#[allow(dead_code)]
pub fn service_access() -> Vec<ApiAccess> {
    use k8s_openapi::api::core::v1::Service;
    let mut out = access();
    out.push(ApiAccess {
        group: Service::group(&()).into_owned(),
        resource: Service::plural(&()).into_owned(),
        verbs: vec!["list"],
    });
    out
}

/// How long the start-up event may take before it is given up.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The reference to Node `node`. Its UID is the node's name, the
/// convention kubelet and kube-proxy follow for node events and the one
/// `kubectl describe node` looks events up by (no `get nodes` needed).
pub fn node_reference(node: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.into()),
        uid: Some(node.into()),
        ..Default::default()
    }
}

/// Who reports: controller `nftopo`, instance `nftopo-NODE`.
pub fn reporter(node: &str) -> Reporter {
    Reporter {
        controller: CONTROLLER.into(),
        instance: Some(format!("{CONTROLLER}-{node}")),
    }
}

/// The event recorded once at start-up.
pub fn starting() -> Event {
    Event {
        type_: EventType::Normal,
        reason: "Starting".into(),
        note: Some(
            concat!(
                "Starting nftopo ",
                env!("CARGO_PKG_VERSION"),
                " (git ",
                env!("NFTOPO_GIT_COMMIT"),
                ")."
            )
            .into(),
        ),
        action: "StartNftopo".into(),
        secondary: None,
    }
}

/// Records the `Starting` event on Node `node` (in namespace `default`,
/// where events about cluster-scoped objects go). Like `kubectl create`
/// of an events.k8s.io/v1 Event. Never fails: errors are logged.
pub async fn record_starting(client: kube::Client, node: String) {
    let recorder = Recorder::new(client, reporter(&node));
    let (event, regarding) = (starting(), node_reference(&node));
    let publish = recorder.publish(&event, &regarding);
    match tokio::time::timeout(TIMEOUT, publish).await {
        Ok(Ok(())) => tracing::debug!(%node, "recorded the Starting event"),
        Ok(Err(e)) => tracing::warn!(%node, error = %e, "cannot record the Starting event"),
        Err(_) => tracing::warn!(%node, "recording the Starting event timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starting_event_regards_the_node_by_name_as_kubectl_describe_node_expects() {
        let r = node_reference("node-2");
        assert_eq!(r.kind.as_deref(), Some("Node"));
        assert_eq!(r.name.as_deref(), Some("node-2"));
        assert_eq!(r.uid.as_deref(), Some("node-2"));
        assert_eq!(r.namespace, None);
        let e = starting();
        assert_eq!(e.reason, "Starting");
        assert!(matches!(e.type_, EventType::Normal));
        assert!(e.note.unwrap().contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn the_reporter_names_the_controller_and_this_node() {
        let r = reporter("node-2");
        assert_eq!(r.controller, "nftopo");
        assert_eq!(r.instance.as_deref(), Some("nftopo-node-2"));
    }

    #[test]
    fn events_are_created_and_patched_in_the_events_k8s_io_group() {
        let a = access();
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].group.as_str(), a[0].resource.as_str()),
            ("events.k8s.io", "events")
        );
        assert_eq!(a[0].verbs, ["create", "patch"]);
    }
}
