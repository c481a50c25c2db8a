use super::*;

#[test]
fn of_two_copies_of_one_endpoint_the_one_not_terminating_wins() {
    // endpointslicecache.go addEndpoints: a later copy replaces an
    // earlier one unless it is terminating; "prefer the running pod
    // over the terminating one".
    let copy = |ready, serving, terminating| Endpoint {
        conditions: Conditions {
            ready,
            serving,
            terminating,
        },
        ..Endpoint::default()
    };
    let running = copy(true, true, false);
    let terminating = copy(false, true, true);
    let not_ready = copy(false, false, false);
    let cases = [
        (
            "a running copy replaces a terminating one",
            &running,
            &terminating,
            true,
        ),
        (
            "a copy that is not ready but not terminating replaces a terminating one",
            &not_ready,
            &terminating,
            true,
        ),
        (
            "a terminating copy never replaces a running one",
            &terminating,
            &running,
            false,
        ),
        (
            "of two terminating copies the earlier stays",
            &terminating,
            &terminating,
            false,
        ),
        (
            "of two copies that are not terminating the earlier stays (upstream: undefined)",
            &running,
            &not_ready,
            false,
        ),
    ];
    for (name, later, kept, want) in cases {
        assert_eq!(later.replaces(kept), want, "{name}");
    }
}

#[test]
fn keys_and_protocols_serialize_as_kubernetes_writes_them() {
    let cases = [
        (serde_json::to_string(&Protocol::Tcp), "\"TCP\""),
        (serde_json::to_string(&Protocol::Udp), "\"UDP\""),
        (serde_json::to_string(&Protocol::Sctp), "\"SCTP\""),
        (serde_json::to_string(&IpFamily::V4), "\"IPv4\""),
        (serde_json::to_string(&IpFamily::V6), "\"IPv6\""),
        (
            serde_json::to_string(&ObjectKey::new("shop", "web")),
            r#"{"namespace":"shop","name":"web"}"#,
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got.unwrap(), want);
    }
}
