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
fn problems_of_one_reason_in_one_service_are_one_event_naming_each() {
    let n = |svc: &str, reason: &'static str, note: &str| Notice {
        service: key(svc),
        reason,
        action: "SkipServicePort",
        note: note.into(),
    };
    let got = merged([
        n("web", "PortConflict", "TCP/80 is taken"),
        n("api", "PortConflict", "TCP/80 is taken"),
        n("web", "InvalidTopologyKeys", "keys"),
        n("web", "PortConflict", "TCP/81 is taken"),
    ]);
    assert_eq!(
        got,
        [
            n("web", "PortConflict", "TCP/80 is taken; TCP/81 is taken"),
            n("api", "PortConflict", "TCP/80 is taken"),
            n("web", "InvalidTopologyKeys", "keys"),
        ]
    );
    let long = (0..100).map(|i| {
        n(
            "web",
            "PortConflict",
            &format!("port {i} is taken by another Service"),
        )
    });
    let one = merged(long);
    assert_eq!(one.len(), 1);
    assert!(one[0].note.len() <= NOTE_LIMIT && one[0].note.ends_with('…'));
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

/// The sync loop offers each problem once, when it appears, and a full
/// queue costs it nothing: syncs go on.
mod in_the_loop {
    use super::*;
    use crate::run::health::ProxyHealth;
    use crate::run::metrics::Metrics;
    use crate::run::sync_loop::{self, Outputs, Programmer, Settings, Source, Update};
    use nft_writer::{Changes, IncrementalPlanner, SyncStats};
    use std::sync::Arc;

    struct Feed(mpsc::UnboundedReceiver<Update>, ClusterState);

    impl Source for Feed {
        async fn next(&mut self) -> Option<Update> {
            self.0.recv().await
        }
        fn state(&self) -> &ClusterState {
            &self.1
        }
    }

    #[derive(Clone, Default)]
    struct Syncs(Arc<std::sync::Mutex<usize>>);

    impl Programmer for Syncs {
        fn sync_changes(
            &mut self,
            _: &IncrementalPlanner,
            _: Changes,
            _: bool,
        ) -> anyhow::Result<SyncStats> {
            *self.0.lock().unwrap() += 1;
            Ok(SyncStats::default())
        }
    }

    /// Three Services whose topology keys put `*` first.
    fn broken() -> ClusterState {
        let mut state = ClusterState::default();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let yaml = format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: shop\n  \
                 annotations: {{nftopo.io/topology-keys: \"*,kubernetes.io/hostname\"}}\n\
                 spec:\n  clusterIP: 10.43.0.{}\n  ports: [{{port: 80, protocol: TCP}}]\n",
                i + 10
            );
            let errors = api_watch::file::load_str(name, &yaml, &mut state);
            assert!(errors.is_empty(), "{errors:?}");
        }
        state
    }

    fn some(services: &[&str]) -> Update {
        Update {
            changed: sync_loop::Changed::Some {
                services: services.iter().map(|s| key_in("shop", s)).collect(),
                nodes: false,
                blocks: false,
            },
            ..Update::default()
        }
    }

    fn key_in(ns: &str, name: &str) -> ObjectKey {
        ObjectKey::new(ns, name)
    }

    #[tokio::test(start_paused = true)]
    async fn each_problem_is_offered_once_and_a_full_queue_does_not_hold_syncs_back() {
        let (feed, rx_feed) = mpsc::unbounded_channel();
        let (tx, mut queue) = mpsc::channel(1);
        let metrics = Arc::new(Metrics::new());
        let family = metrics.service_events.clone();
        let out = Outputs {
            metrics,
            health: Arc::new(std::sync::Mutex::new(ProxyHealth::new(
                Duration::from_secs(30),
            ))),
            service_health: None,
            service_events: Some(ServiceEvents::with_queue(
                "node-1".into(),
                tx,
                family.clone(),
            )),
            debug: None,
        };
        let settings = Settings {
            node: "node-1".into(),
            planner: nft_writer::PlannerConfig {
                detect_local: nft_writer::DetectLocal::ClusterCidr(vec![]),
                masquerade_all: false,
                masquerade_bit: 14,
                nodeport_addresses: nft_writer::NodePortAddresses::Primary,
            },
            min_sync_period: Duration::ZERO,
            sync_period: Duration::from_secs(30),
            full_sync_period: Duration::from_secs(3600),
        };
        let syncs = Syncs::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sync_loop::run(
            settings,
            Feed(rx_feed, broken()),
            syncs.clone(),
            out,
            async {
                let _ = stopped.await;
            },
        ));
        let settle = || tokio::time::sleep(Duration::from_millis(10));

        // Three problems, a queue of one nobody reads: one queued, two
        // dropped, and the sync done.
        feed.send(Update::default()).unwrap();
        settle().await;
        assert_eq!(*syncs.0.lock().unwrap(), 1);
        assert_eq!(counts(&family, "queue_full"), 2);
        assert_eq!(queue.try_recv().unwrap().reason, "InvalidTopologyKeys");

        // Re-planned with the problem still there, and a sync that
        // re-plans nothing: nothing more is offered.
        feed.send(some(&["a", "b"])).unwrap();
        settle().await;
        feed.send(some(&[])).unwrap();
        settle().await;
        assert_eq!(*syncs.0.lock().unwrap(), 3);
        assert!(queue.try_recv().is_err(), "offered again");
        assert_eq!(counts(&family, "queue_full"), 2);

        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
