use super::*;

fn event() -> Value {
    json!({"metadata": {"name": "web.17f"}, "eventTime": "2026-12-06T06:00:00.000000Z",
           "type": "Warning", "reason": "PortConflict", "action": "SkipServicePort",
           "note": "x", "reportingController": "nftopo", "reportingInstance": "nftopo-node-2",
           "regarding": {"kind": "Service", "namespace": "shop", "name": "web"}})
}

fn post(store: &mut EventStore, ns: &str, body: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let q = BTreeMap::new();
    store.serve(&EventRequest {
        method: "POST",
        ns: Some(ns),
        name: None,
        query: &q,
        content_type: "application/json",
        body: &body,
    })
}

#[test]
fn a_complete_event_is_created_once_and_a_second_with_its_name_conflicts() {
    let mut s = EventStore::default();
    let (code, obj) = post(&mut s, "shop", &event());
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["metadata"]["namespace"], "shop");
    assert!(obj["metadata"]["uid"].is_string());
    assert_eq!(post(&mut s, "shop", &event()).0, 409);
    assert_eq!(s.all().len(), 1);
}

#[test]
fn each_missing_or_oversized_field_is_refused_as_the_api_server_refuses_it() {
    type Break = fn(&mut Value);
    let cases: [(&str, Break); 9] = [
        ("eventTime", |e| e["eventTime"] = Value::Null),
        ("reportingController", |e| {
            e["reportingController"] = json!("")
        }),
        ("reportingController", |e| {
            e["reportingController"] = json!("no spaces")
        }),
        ("reportingInstance", |e| {
            e["reportingInstance"] = Value::Null
        }),
        ("action", |e| e["action"] = Value::Null),
        ("reason", |e| e["reason"] = json!("r".repeat(129))),
        ("type", |e| e["type"] = json!("Error")),
        ("message", |e| e["note"] = json!("n".repeat(1025))),
        ("series.count", |e| {
            e["series"] = json!({"count": 1, "lastObservedTime": "t"})
        }),
    ];
    for (field, break_it) in cases {
        let mut e = event();
        break_it(&mut e);
        let (code, st) = post(&mut EventStore::default(), "shop", &e);
        assert_eq!(code, 422, "{field}: {st}");
        assert!(
            st["message"].as_str().unwrap().contains(field),
            "{field}: {st}"
        );
    }
}

#[test]
fn a_merge_patch_may_bump_the_series_but_not_change_the_note() {
    let mut s = EventStore::default();
    post(&mut s, "shop", &event());
    let q = BTreeMap::new();
    let mut patch = |body: Value, ct: &str| {
        let body = serde_json::to_vec(&body).unwrap();
        s.serve(&EventRequest {
            method: "PATCH",
            ns: Some("shop"),
            name: Some("web.17f"),
            query: &q,
            content_type: ct,
            body: &body,
        })
    };
    let series = json!({"series": {"count": 2, "lastObservedTime": "2026-12-06T06:01:00.000000Z"}});
    let (code, obj) = patch(series.clone(), "application/merge-patch+json");
    assert_eq!((code, obj["series"]["count"].clone()), (200, json!(2)));
    assert_eq!(obj["note"], "x");
    assert_eq!(
        patch(json!({"note": "y"}), "application/merge-patch+json").0,
        422
    );
    assert_eq!(patch(series.clone(), "application/json-patch+json").0, 415);
    assert_eq!(
        patch(series, "application/apply-patch+yaml").0,
        422,
        "no fieldManager"
    );
}
