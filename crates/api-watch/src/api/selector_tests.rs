//! What [`watch`] asks the API server for, seen on the wire: a hand-made
//! HTTP service stands in for the API server, answers every list with an
//! empty list, holds every watch open, and records each request.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::client::Body;
use serde_json::json;

use super::*;

/// The request targets (`/api/v1/services?…`) in arrival order.
type Seen = Arc<Mutex<Vec<String>>>;

fn client(seen: Seen) -> Client {
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let seen = seen.clone();
        async move {
            let target = request.uri().to_string();
            seen.lock().unwrap().push(target.clone());
            if query(&target, "watch").is_some() {
                // A watch with nothing to say, until the test ends.
                futures::future::pending::<()>().await;
            }
            let (kind, api_version) = if target.contains("/endpointslices") {
                ("EndpointSliceList", "discovery.k8s.io/v1")
            } else if target.contains("/services") {
                ("ServiceList", "v1")
            } else {
                ("NodeList", "v1")
            };
            let list = json!({"kind": kind, "apiVersion": api_version,
                              "metadata": {"resourceVersion": "1"}, "items": []});
            let body = Body::from(serde_json::to_vec(&list).unwrap());
            Ok::<_, Infallible>(http::Response::new(body))
        }
    });
    Client::new(service, "default")
}

/// The percent-decoded value of `key` in the target's query.
fn query(target: &str, key: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("a %XX escape"));
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn services_and_slices_are_listed_and_watched_with_kube_proxys_label_selector() {
    let seen = Seen::default();
    let mut watches = watch(client(seen.clone()), false);
    tokio::time::timeout(Duration::from_secs(10), watches.next())
        .await
        .expect("the first hand-out after three empty lists");
    // The watches follow the lists (the streams move while their owner
    // waits for the next change, as the daemon's loop does).
    let deadline = Instant::now() + Duration::from_secs(10);
    let requests = loop {
        let requests = seen.lock().unwrap().clone();
        let watching = requests
            .iter()
            .filter(|t| query(t, "watch").is_some())
            .count();
        if watching >= 3 || Instant::now() > deadline {
            break requests;
        }
        let _ = tokio::time::timeout(Duration::from_millis(10), watches.next()).await;
    };
    drop(watches);

    let selector = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";
    assert_eq!(proxied_selector(), selector);
    let cases = [
        // cmd/kube-proxy/app/server.go: one informer factory with this
        // selector serves both the Service and the EndpointSlice informers.
        (
            "Services are listed without those handed to another proxy or headless",
            "/api/v1/services?",
            false,
            Some(selector),
        ),
        (
            "Services are watched with the same selector, so one that gains a label is DELETED",
            "/api/v1/services?",
            true,
            Some(selector),
        ),
        (
            "EndpointSlices are listed with the same selector, as upstream's shared informer factory lists them",
            "/apis/discovery.k8s.io/v1/endpointslices?",
            false,
            Some(selector),
        ),
        (
            "EndpointSlices are watched with the same selector",
            "/apis/discovery.k8s.io/v1/endpointslices?",
            true,
            Some(selector),
        ),
        (
            "Nodes are listed without a label selector (upstream's node informer selects by name only)",
            "/api/v1/nodes?",
            false,
            None,
        ),
    ];
    for (name, prefix, is_watch, want) in cases {
        let matching: Vec<&String> = requests
            .iter()
            .filter(|t| t.starts_with(prefix) && query(t, "watch").is_some() == is_watch)
            .collect();
        assert!(
            !matching.is_empty(),
            "{name}: no such request in {requests:#?}"
        );
        for target in matching {
            assert_eq!(
                query(target, "labelSelector").as_deref(),
                want,
                "{name}: {target}"
            );
        }
    }
}
