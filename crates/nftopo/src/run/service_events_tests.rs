use super::*;

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

fn problem(kind: &'static str, message: &str) -> proxier::Problem {
    proxier::Problem {
        object: key("web"),
        kind,
        message: message.into(),
    }
}

fn nodes(names: &[&str]) -> BTreeMap<String, Node> {
    names
        .iter()
        .map(|n| {
            let node = Node {
                name: n.to_string(),
                ..Node::default()
            };
            (n.to_string(), node)
        })
        .collect()
}

fn counts(family: &Family<Labels, Counter>, result: &str) -> u64 {
    family
        .get_or_create(&vec![("result".into(), result.into())])
        .get()
}

#[test]
fn invalid_topology_keys_and_port_conflicts_make_warnings_named_in_upper_camel_case() {
    let keys = problem(
        "invalid_topology_keys",
        "annotation nftopo.io/topology-keys ignored: key 0 is empty",
    );
    let n = Notice::from_problem(&keys).expect("an event");
    assert_eq!(
        (n.reason, n.action, n.service.clone()),
        ("InvalidTopologyKeys", "IgnoreTopologyKeys", key("web"))
    );
    assert_eq!(n.note, keys.message, "the problem's own text");
    let port = problem(
        "duplicate_service_port",
        "cluster IP TCP/80 is already served",
    );
    assert_eq!(Notice::from_problem(&port).unwrap().reason, "PortConflict");
    for kind in ["fqdn_slice_ignored", "unknown_hints_annotation"] {
        assert_eq!(Notice::from_problem(&problem(kind, "x")), None, "{kind}");
    }
}

#[test]
fn a_skipped_service_is_a_malformed_object_naming_the_field_and_other_kinds_are_not() {
    let mut e = ObjectError {
        kind: api_watch::api::Kind::Service,
        object: "shop/web".into(),
        field: "spec.ports[0].port".into(),
        message: "port 0 is not in 1..=65535".into(),
    };
    let n = Notice::from_skip(&e).expect("an event");
    assert_eq!(
        (n.reason, n.service.clone()),
        ("MalformedObject", key("web"))
    );
    assert!(
        n.note
            .starts_with("spec.ports[0].port: port 0 is not in 1..=65535; nftopo skips"),
        "{}",
        n.note
    );
    e.kind = api_watch::api::Kind::EndpointSlice;
    assert_eq!(Notice::from_skip(&e), None);
}

#[test]
fn a_long_note_is_cut_to_the_api_servers_1_kib_on_a_character_boundary() {
    let long = "é".repeat(NOTE_LIMIT);
    let n = Notice::from_problem(&problem("invalid_topology_keys", &long)).unwrap();
    assert!(n.note.len() <= NOTE_LIMIT, "{}", n.note.len());
    assert!(n.note.ends_with('…'));
    let short = "k".repeat(NOTE_LIMIT);
    assert_eq!(cut(short.clone()), short, "exactly 1 KiB is kept");
}

#[test]
fn a_service_gets_its_burst_then_one_event_per_refill_and_others_are_not_held_back() {
    let t0 = Instant::now();
    let mut l = Limiter::new(4, Duration::from_secs(300));
    for i in 0..4 {
        assert!(l.admit(&key("web"), t0), "event {i} of the burst");
    }
    assert!(!l.admit(&key("web"), t0), "the burst is spent");
    assert!(!l.admit(&key("web"), t0 + Duration::from_secs(299)));
    assert!(
        l.admit(&key("api"), t0),
        "another Service has its own bucket"
    );
    assert!(
        l.admit(&key("web"), t0 + Duration::from_secs(300)),
        "one refilled"
    );
    assert!(!l.admit(&key("web"), t0 + Duration::from_secs(301)));
    // Refills count from the last one, not from the refused attempts.
    assert!(l.admit(&key("web"), t0 + Duration::from_secs(600)));
    // A long quiet time gives the burst back, and no more.
    let later = t0 + Duration::from_secs(10 * 3600);
    for i in 0..4 {
        assert!(l.admit(&key("web"), later), "event {i} after a quiet time");
    }
    assert!(!l.admit(&key("web"), later));
}

#[test]
fn buckets_that_filled_up_again_are_forgotten() {
    let t0 = Instant::now();
    let mut l = Limiter::new(2, Duration::from_secs(60));
    for i in 0..200 {
        assert!(l.admit(&key(&format!("s{i}")), t0));
    }
    assert!(l.tracked() <= 200);
    let later = t0 + Duration::from_secs(120);
    for i in 0..70 {
        assert!(l.admit(&key(&format!("t{i}")), later));
    }
    assert!(l.tracked() < 200, "the full buckets went: {}", l.tracked());
}

#[test]
fn in_a_small_cluster_every_node_reports() {
    let all = nodes(&["node-2", "node-3", "node-4"]);
    for me in ["node-2", "node-3", "node-4"] {
        assert!(is_reporter(me, &key("web"), &all), "{me}");
    }
    assert!(
        is_reporter("node-2", &key("web"), &BTreeMap::new()),
        "no Nodes listed"
    );
}

#[test]
fn in_a_large_cluster_three_nodes_report_each_service_and_they_differ_by_service() {
    let names: Vec<String> = (0..200).map(|i| format!("node-{i}")).collect();
    let all = nodes(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut chosen = Vec::new();
    for svc in ["web", "api", "db", "cache"] {
        let reporters: Vec<&String> = names
            .iter()
            .filter(|me| is_reporter(me, &key(svc), &all))
            .collect();
        assert_eq!(reporters.len(), REPORTERS, "{svc}: {reporters:?}");
        chosen.push(reporters);
    }
    assert!(chosen.windows(2).any(|w| w[0] != w[1]), "{chosen:?}");
}

#[test]
fn nodes_being_deleted_do_not_report_and_the_next_one_takes_over() {
    let names: Vec<String> = (0..50).map(|i| format!("node-{i}")).collect();
    let mut all = nodes(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let before: Vec<&String> = names
        .iter()
        .filter(|me| is_reporter(me, &key("web"), &all))
        .collect();
    let gone = before[0].clone();
    all.get_mut(&gone).unwrap().deleting = true;
    let after: Vec<&String> = names
        .iter()
        .filter(|me| **me != gone && is_reporter(me, &key("web"), &all))
        .collect();
    assert_eq!(after.len(), REPORTERS);
    assert!(!after.contains(&&gone));
    assert_eq!(
        before.iter().filter(|n| after.contains(n)).count(),
        REPORTERS - 1,
        "the other two stay"
    );
}

#[test]
fn offer_queues_until_the_bucket_is_empty_and_never_waits_on_a_full_queue() {
    let t0 = Instant::now();
    let family = Family::<Labels, Counter>::default();
    let (tx, mut rx) = mpsc::channel(2);
    let events = ServiceEvents::with_queue("node-2".into(), tx, family.clone());
    let state = ClusterState::default();
    let n = |svc: &str| Notice {
        service: key(svc),
        reason: "PortConflict",
        action: "SkipServicePort",
        note: "x".into(),
    };
    assert_eq!(events.offer(n("web"), &state, t0), Verdict::Queued);
    assert_eq!(events.offer(n("web"), &state, t0), Verdict::Queued);
    assert_eq!(events.offer(n("web"), &state, t0), Verdict::QueueFull);
    assert_eq!(counts(&family, "queue_full"), 1);
    assert_eq!(rx.try_recv().unwrap(), n("web"));
    assert_eq!(events.offer(n("web"), &state, t0), Verdict::Queued);
    assert_eq!(events.offer(n("web"), &state, t0), Verdict::RateLimited);
    assert_eq!(counts(&family, "rate_limited"), 1);
    assert_eq!(events.offer(n("api"), &state, t0), Verdict::QueueFull);
}

#[test]
fn offer_leaves_a_service_to_the_nodes_that_report_it() {
    let names: Vec<String> = (0..40).map(|i| format!("node-{i}")).collect();
    let state = ClusterState {
        nodes: nodes(&names.iter().map(String::as_str).collect::<Vec<_>>()),
        ..ClusterState::default()
    };
    let other = names
        .iter()
        .find(|me| !is_reporter(me, &key("web"), &state.nodes))
        .unwrap();
    let family = Family::<Labels, Counter>::default();
    let (tx, mut rx) = mpsc::channel(8);
    let events = ServiceEvents::with_queue(other.clone(), tx, family.clone());
    let notice = Notice::from_problem(&problem("invalid_topology_keys", "x")).unwrap();
    assert_eq!(
        events.offer(notice, &state, Instant::now()),
        Verdict::OtherReporter
    );
    assert!(rx.try_recv().is_err());
    assert_eq!(counts(&family, "other_reporter"), 1);
}
