//! The loop's timing on tokio's paused clock, with a fake source and a
//! fake programmer.

use super::*;
use api_watch::ObjectKey;
use tokio::sync::mpsc;

/// What a test feeds the loop: the store's new state, when it changes,
/// and the update that says what changed.
struct Feed {
    state: Option<ClusterState>,
    update: Update,
}

impl From<Update> for Feed {
    fn from(update: Update) -> Self {
        Feed {
            state: None,
            update,
        }
    }
}

/// A whole new state: everything re-planned.
fn whole(state: ClusterState) -> Feed {
    Feed {
        state: Some(state),
        update: Update::default(),
    }
}

/// The fake store: the state the last feed set.
struct ChannelSource {
    rx: mpsc::UnboundedReceiver<Feed>,
    state: ClusterState,
}

impl ChannelSource {
    fn new(rx: mpsc::UnboundedReceiver<Feed>) -> Self {
        ChannelSource {
            rx,
            state: ClusterState::default(),
        }
    }
}

impl Source for ChannelSource {
    async fn next(&mut self) -> Option<Update> {
        let feed = self.rx.recv().await?;
        if let Some(state) = feed.state {
            self.state = state;
        }
        Some(feed.update)
    }

    fn state(&self) -> &ClusterState {
        &self.state
    }
}

/// Records every sync as (seconds since the start, full); fails while
/// `fail` is above zero.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<(u64, bool)>>>,
    fail: Arc<Mutex<u32>>,
    start: Option<Instant>,
    /// Route passes as (seconds since the start, full, node count).
    route_calls: Arc<Mutex<Vec<(u64, usize)>>>,
}

impl Programmer for Recorder {
    fn sync_changes(
        &mut self,
        _: &IncrementalPlanner,
        _: Changes,
        full: bool,
    ) -> anyhow::Result<SyncStats> {
        let at = self.start.expect("start").elapsed().as_millis() as u64;
        self.calls.lock().unwrap().push((at, full));
        let mut fail = self.fail.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            anyhow::bail!("kernel said no");
        }
        Ok(SyncStats {
            full,
            operations: 3,
            messages: 5,
            ..SyncStats::default()
        })
    }

    fn sync_routes(&mut self, state: &ClusterState) -> anyhow::Result<Option<RouteSummary>> {
        let at = self.start.expect("start").elapsed().as_millis() as u64;
        self.route_calls
            .lock()
            .unwrap()
            .push((at, state.nodes.len()));
        Ok(Some(RouteSummary {
            desired: state.nodes.len(),
            applied: 1,
            failed: 1,
        }))
    }
}

struct Harness {
    tx: mpsc::UnboundedSender<Feed>,
    rec: Recorder,
    metrics: Arc<Metrics>,
    health: Arc<Mutex<ProxyHealth>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The loop with a recording programmer; `/healthz` state as the daemon
/// builds it from the sync period.
fn start(min_sync: Duration, sync_period: Duration, full_sync_period: Duration) -> Harness {
    let (tx, rx) = mpsc::unbounded_channel();
    let rec = Recorder {
        start: Some(Instant::now()),
        ..Recorder::default()
    };
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Mutex::new(ProxyHealth::new(sync_period)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = Settings {
        node: "node-1".into(),
        planner: PlannerConfig {
            detect_local: nft_writer::DetectLocal::ClusterCidr(vec![]),
            masquerade_all: false,
            masquerade_bit: 14,
            nodeport_addresses: nft_writer::NodePortAddresses::Primary,
        },
        min_sync_period: min_sync,
        sync_period,
        full_sync_period,
    };
    let out = Outputs {
        metrics: metrics.clone(),
        health: health.clone(),
        service_health: None,
        service_events: None,
        debug: None,
    };
    let task = tokio::spawn(run(
        settings,
        ChannelSource::new(rx),
        rec.clone(),
        out,
        async {
            let _ = stopped.await;
        },
    ));
    Harness {
        tx,
        rec,
        metrics,
        health,
        stop: Some(stop),
        task,
    }
}

impl Harness {
    fn send(&self, services: usize, endpoints: usize) {
        let u = Update {
            services_changed: services,
            endpoints_changed: endpoints,
            ..Update::default()
        };
        self.tx.send(u.into()).unwrap();
    }
    fn calls(&self) -> Vec<(u64, bool)> {
        self.rec.calls.lock().unwrap().clone()
    }
}

/// Runs the loop for node-1 with `programmer`, a fresh [`ChannelSource`]
/// and a full sync every hour; returns the feed and the guard that stops
/// the loop when dropped.
fn spawn_loop(
    programmer: impl Programmer + Send + 'static,
    min_sync_period: Duration,
    sync_period: Duration,
) -> (
    mpsc::UnboundedSender<Feed>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let settings = Settings {
        node: "node-1".into(),
        planner: PlannerConfig::default(),
        min_sync_period,
        sync_period,
        full_sync_period: HOUR,
    };
    let out = Outputs {
        metrics: Arc::new(Metrics::new()),
        health: Arc::new(Mutex::new(ProxyHealth::new(sync_period))),
        service_health: None,
        service_events: None,
        debug: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run(
        settings,
        ChannelSource::new(rx),
        programmer,
        out,
        async {
            let _ = stopped.await;
        },
    ));
    (tx, stop)
}

async fn wait(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn nothing_is_programmed_before_the_first_update_which_syncs_fully_at_once() {
    let h = start(SEC, HOUR, HOUR);
    wait(10_000).await;
    assert_eq!(h.calls(), vec![], "no sync without a complete state");
    h.send(1, 1);
    wait(1).await;
    assert_eq!(h.calls(), vec![(10_000, true)]);
}

#[tokio::test(start_paused = true)]
async fn a_burst_within_min_sync_period_is_one_sync() {
    let h = start(SEC, HOUR, HOUR);
    h.send(1, 0);
    wait(100).await; // first sync at 0
    for _ in 0..5 {
        h.send(0, 1);
        wait(100).await;
    }
    wait(2_000).await;
    assert_eq!(
        h.calls(),
        vec![(0, true), (1_000, false)],
        "the burst waits for min-sync-period"
    );
    let text = h.metrics.encode();
    assert!(
        text.contains("kubeproxy_sync_proxy_rules_endpoint_changes_total 5"),
        "{text}"
    );
    assert!(
        text.contains("kubeproxy_sync_proxy_rules_endpoint_changes_pending 0"),
        "{text}"
    );
    assert!(
        text.contains("kubeproxy_sync_full_proxy_rules_duration_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains("kubeproxy_sync_partial_proxy_rules_duration_seconds_count 1"),
        "{text}"
    );
    assert!(text.contains("nftopo_netlink_messages_count 2"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn min_sync_period_zero_syncs_every_update() {
    let h = start(Duration::ZERO, HOUR, HOUR);
    for _ in 0..3 {
        h.send(0, 1);
        wait(10).await;
    }
    assert_eq!(h.calls(), vec![(0, true), (10, false), (20, false)]);
}

/// kube-proxy's `syncRunner` runs at least once per `maxInterval`, its
/// `--sync-period`, counted from the last sync of any kind.
#[tokio::test(start_paused = true)]
async fn a_sync_runs_at_least_every_sync_period() {
    let h = start(SEC, 30 * SEC, HOUR);
    h.send(1, 1);
    wait(45_000).await;
    h.send(0, 1); // a sync for an update restarts the count
    wait(55_000).await;
    assert_eq!(
        h.calls(),
        vec![(0, true), (30_000, false), (45_000, false), (75_000, false)]
    );
}

/// The periodic syncs between full syncs find nothing to do and send
/// nothing (the real syncer on the fake kernel).
#[tokio::test(start_paused = true)]
async fn a_periodic_sync_with_nothing_to_do_sends_nothing() {
    let shared = SharedSyncer(Arc::new(Mutex::new((
        Syncer::new(nft_writer::FakeKernel::new()),
        Vec::new(),
    ))));
    let (tx, _stop) = spawn_loop(shared.clone(), SEC, 30 * SEC);
    tx.send(whole(cluster(20, |_| 2))).unwrap();
    wait(95_000).await;
    let g = shared.0.lock().unwrap();
    let stats = &g.1;
    assert_eq!(
        stats.len(),
        4,
        "the first sync, then one per 30 s: {stats:?}"
    );
    assert!(stats[0].full && stats[0].operations > 0, "{stats:?}");
    for st in &stats[1..] {
        assert!(!st.full, "{stats:?}");
        assert_eq!((st.operations, st.messages), (0, 0), "{stats:?}");
    }
}

/// The full sync (read back, repair) has its own period, apart from the
/// sync period; a sync for an update in between does not postpone it.
#[tokio::test(start_paused = true)]
async fn a_full_sync_runs_every_full_sync_period() {
    let h = start(SEC, 30 * SEC, 100 * SEC);
    h.send(1, 1);
    wait(50_000).await;
    h.send(0, 1);
    wait(200_000).await;
    assert_eq!(
        h.calls(),
        vec![
            (0, true),
            (30_000, false),
            (50_000, false),
            (80_000, false),
            (100_000, true),
            (130_000, false),
            (160_000, false),
            (190_000, false),
            (200_000, true),
            (230_000, false),
        ]
    );
    // Shorter than the sync period: each full sync comes on time.
    let h = start(SEC, 30 * SEC, 10 * SEC);
    h.send(1, 1);
    wait(35_000).await;
    assert_eq!(
        h.calls(),
        vec![(0, true), (10_000, true), (20_000, true), (30_000, true)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_sync_is_retried_with_backoff_and_forced_full() {
    let h = start(Duration::from_millis(100), HOUR, HOUR);
    h.send(1, 1);
    wait(1).await;
    *h.rec.fail.lock().unwrap() = 3;
    h.send(0, 1);
    wait(20_000).await;
    h.send(0, 1);
    wait(1_000).await;
    assert_eq!(
        h.calls(),
        vec![
            (0, true),
            (100, false),    // fails
            (1_100, true),   // +1 s, fails
            (3_100, true),   // +2 s, fails
            (7_100, true),   // +4 s, succeeds
            (20_001, false), // back to partial syncs
        ]
    );
    let text = h.metrics.encode();
    assert!(
        text.contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 3"),
        "{text}"
    );
}

/// A new update after failed syncs is tried at the next min-sync-period,
/// not after the retry's backoff (which may have grown to minutes); the
/// backoff goes on for retrying the same state.
#[tokio::test(start_paused = true)]
async fn a_new_update_after_failures_does_not_wait_out_the_backoff() {
    let h = start(Duration::from_millis(100), HOUR, HOUR);
    h.send(1, 1);
    wait(1).await;
    *h.rec.fail.lock().unwrap() = 5;
    h.send(0, 1);
    // Fails at 100, then retries at +1, +2, +4, +8 s: 1_100, 3_100,
    // 7_100, 15_100 (all fail); the next retry would be at 31_100.
    wait(16_000).await;
    h.send(0, 1);
    wait(1_000).await;
    assert_eq!(
        h.calls(),
        vec![
            (0, true),
            (100, false),
            (1_100, true),
            (3_100, true),
            (7_100, true),
            (15_100, true),
            (16_001, true), // the new update, read back and converged
        ]
    );
    // Updates while a sync keeps failing: the trigger times stay bounded.
    let mut u = Update::default();
    for _ in 0..3 {
        u.absorb(Update {
            trigger_times: vec![std::time::UNIX_EPOCH; MAX_TRIGGER_TIMES],
            ..Update::default()
        });
    }
    assert_eq!(u.trigger_times.len(), MAX_TRIGGER_TIMES);
}

/// kube-proxy's health server: `/healthz` answers 503 once a queued
/// update has waited 2 x sync period (kube-proxy's default 30 s: 60 s)
/// without being applied; the periodic syncs do not hide it.
#[tokio::test(start_paused = true)]
async fn healthz_is_503_after_2_x_sync_period_with_a_queued_update_not_applied() {
    let h = start(SEC, 30 * SEC, HOUR);
    h.send(1, 1);
    wait(1).await;
    *h.rec.fail.lock().unwrap() = u32::MAX;
    h.send(0, 1);
    let queued = Instant::now();
    let status = |h: &Harness| {
        h.health
            .lock()
            .unwrap()
            .healthz(Instant::now(), SystemTime::now())
            .status
    };
    wait(59_999).await;
    assert_eq!(status(&h), 200, "within 2 x sync period");
    wait(1).await;
    assert_eq!(queued.elapsed(), 60 * SEC);
    assert_eq!(status(&h), 503, "at 2 x sync period");
    let livez = h
        .health
        .lock()
        .unwrap()
        .livez(Instant::now(), SystemTime::now());
    assert_eq!(livez.status, 503, "/livez too");
    *h.rec.fail.lock().unwrap() = 0;
    wait(130_000).await; // the next retry (backoff) goes through
    assert_eq!(status(&h), 200, "healthy once applied");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_loop_without_touching_the_rules() {
    let mut h = start(SEC, HOUR, HOUR);
    h.send(1, 1);
    wait(10).await;
    h.send(0, 1);
    h.stop.take().unwrap().send(()).unwrap();
    let result = (&mut h.task).await.unwrap();
    assert!(result.is_ok());
    wait(5_000).await;
    assert_eq!(
        h.calls(),
        vec![(0, true)],
        "the queued update is not applied after the signal"
    );
}

#[tokio::test(start_paused = true)]
async fn the_loop_fails_when_the_source_ends() {
    let h = start(SEC, HOUR, HOUR);
    drop(h.tx);
    let err = h.task.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("source ended"), "{err}");
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 120, 120]);
    assert_eq!(backoff(1000), BACKOFF_MAX);
}

#[tokio::test(start_paused = true)]
async fn routes_follow_every_sync_with_its_state_even_when_nftables_failed() {
    let h = start(SEC, HOUR, HOUR);
    *h.rec.fail.lock().unwrap() = 1;
    let mut state = ClusterState::default();
    for n in ["node-1", "node-2", "node-3"] {
        state.nodes.insert(
            n.into(),
            api_watch::Node {
                name: n.into(),
                ..Default::default()
            },
        );
    }
    h.tx.send(whole(state)).unwrap();
    wait(1).await;
    // The nftables sync failed; the routes were still synced, from the
    // same state.
    assert_eq!(h.calls(), vec![(0, true)]);
    assert_eq!(*h.rec.route_calls.lock().unwrap(), vec![(0, 3)]);
    // The retry (1 s later) syncs both again (a full sync, and the route
    // pass had a refusal).
    wait(1_500).await;
    assert_eq!(h.calls(), vec![(0, true), (1_000, true)]);
    assert_eq!(*h.rec.route_calls.lock().unwrap(), vec![(0, 3), (1_000, 3)]);
    let text = h.metrics.encode();
    assert!(text.contains("nftopo_routes_programmed 2"), "{text}");
    assert!(text.contains("nftopo_route_failures_total 2"), "{text}");
}

/// With Calico IPAM, Services are programmed before the BlockAffinities
/// list (or when they never do); routes wait for them.
#[tokio::test(start_paused = true)]
async fn services_do_not_wait_for_block_affinities_routes_do() {
    let h = start(SEC, HOUR, HOUR);
    h.tx.send(
        Update {
            routes_ready: false,
            ..Update::default()
        }
        .into(),
    )
    .unwrap();
    wait(1).await;
    assert_eq!(h.calls(), vec![(0, true)], "services programmed");
    assert_eq!(*h.rec.route_calls.lock().unwrap(), vec![], "routes wait");
    wait(2_000).await;
    h.tx.send(
        Update {
            changed: Changed::Some {
                services: Default::default(),
                nodes: false,
                blocks: true,
            },
            ..Update::default()
        }
        .into(),
    )
    .unwrap();
    wait(1).await;
    assert_eq!(*h.rec.route_calls.lock().unwrap(), vec![(2_001, 0)]);
}

/// The real syncer on the fake kernel, shared with the test: every sync's
/// stats are recorded.
#[derive(Clone)]
struct SharedSyncer(Arc<Mutex<(Syncer<nft_writer::FakeKernel>, Vec<SyncStats>)>>);

impl Programmer for SharedSyncer {
    fn sync_changes(
        &mut self,
        planner: &IncrementalPlanner,
        changes: Changes,
        full: bool,
    ) -> anyhow::Result<SyncStats> {
        let mut g = self.0.lock().unwrap();
        let st = g.0.sync_changes(planner, changes, full)?;
        g.1.push(st);
        Ok(st)
    }

    fn has_deferred(&self) -> bool {
        self.0.lock().unwrap().0.has_deferred()
    }
}

fn cluster(services: u32, endpoints: impl Fn(u32) -> u32) -> ClusterState {
    use api_watch::*;
    use std::net::{IpAddr, Ipv4Addr};
    let mut st = ClusterState::default();
    for i in 0..services {
        let s = Service {
            key: ObjectKey::new("t", format!("s{i}")),
            cluster_ips: vec![IpAddr::V4(Ipv4Addr::from(0x0a2b_0000 + i))],
            ports: vec![ServicePort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port: 80,
                target_port: TargetPort::Number(8080),
                node_port: None,
            }],
            // s4, s9, …: session affinity, so chains of their own (the
            // others are plain: elements only).
            session_affinity_timeout: (i % 5 == 4).then_some(10_800),
            ..Service::default()
        };
        let sl = EndpointSlice {
            key: ObjectKey::new("t", format!("s{i}-a")),
            service_name: format!("s{i}"),
            address_type: AddressType::IPv4,
            ports: vec![EndpointPort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
            endpoints: (0..endpoints(i))
                .map(|j| {
                    let ip = IpAddr::V4(Ipv4Addr::from(0x0a2a_0000 + i * 16 + j));
                    Endpoint::new(ip, Conditions::default()).on_node("node-1")
                })
                .collect(),
        };
        st.services.insert(s.key.clone(), Box::new(s));
        st.endpoint_slices.insert(sl.key.clone(), Box::new(sl));
    }
    st
}

#[tokio::test(start_paused = true)]
async fn an_update_naming_one_service_re_plans_and_sends_only_that_service() {
    let shared = SharedSyncer(Arc::new(Mutex::new((
        Syncer::new(nft_writer::FakeKernel::new()),
        Vec::new(),
    ))));
    let (tx, _stop) = spawn_loop(shared.clone(), Duration::ZERO, HOUR);
    let first = cluster(200, |_| 3);
    tx.send(whole(first)).unwrap();
    wait(10).await;
    // s7 gains an endpoint, s9 is gone: only they are named.
    let mut second = cluster(200, |i| if i == 7 { 4 } else { 3 });
    second.services.remove(&ObjectKey::new("t", "s9"));
    second.endpoint_slices.remove(&ObjectKey::new("t", "s9-a"));
    // The store changes in place; the update names what changed.
    tx.send(Feed {
        state: Some(second.clone()),
        update: Update {
            changed: Changed::Some {
                services: [ObjectKey::new("t", "s7"), ObjectKey::new("t", "s9")].into(),
                nodes: false,
                blocks: false,
            },
            ..Update::default()
        },
    })
    .unwrap();
    wait(10).await;
    let g = shared.0.lock().unwrap();
    let stats = &g.1;
    assert_eq!(stats.len(), 3, "{stats:?}");
    assert!(stats[0].full);
    assert!(!stats[1].full);
    assert!(stats[1].messages <= 20, "{stats:?}");
    // s9's chain and elements go with the sync right after (the engine
    // defers deletions a batch that rewrites chains would make).
    assert!(!stats[2].full && stats[2].messages <= 10, "{stats:?}");
    let want = nft_writer::plan_ruleset(
        &topology_filter::plan(&second, "node-1"),
        &PlannerConfig::default(),
    )
    .0;
    let mut fresh = nft_writer::FakeKernel::new();
    fresh
        .apply(&nft_writer::Transaction::replace(&want))
        .unwrap();
    assert_eq!(g.0.kernel().dump(), fresh.dump());
}

/// Deletions the engine defers to the next sync are sent by a sync as
/// soon as `min_sync_period` allows, not a sync period later.
#[tokio::test(start_paused = true)]
async fn deferred_deletions_go_with_a_sync_min_sync_period_later() {
    let shared = SharedSyncer(Arc::new(Mutex::new((
        Syncer::new(nft_writer::FakeKernel::new()),
        Vec::new(),
    ))));
    let (tx, _stop) = spawn_loop(shared.clone(), SEC, 30 * SEC);
    tx.send(whole(cluster(5, |_| 3))).unwrap();
    wait(5_000).await;
    // A Service goes: its chain, which its service-ips element referred
    // to until this batch, is deleted by the next one.
    let second = cluster(4, |_| 3);
    tx.send(whole(second.clone())).unwrap();
    wait(500).await;
    {
        let g = shared.0.lock().unwrap();
        assert_eq!(g.1.len(), 2, "{:?}", g.1);
        assert!(g.0.has_deferred(), "the case needs deferred deletions");
    }
    wait(1_000).await;
    let g = shared.0.lock().unwrap();
    assert_eq!(g.1.len(), 3, "a follow-up at 6 s: {:?}", g.1);
    assert!(!g.0.has_deferred());
    let want = nft_writer::plan_ruleset(
        &topology_filter::plan(&second, "node-1"),
        &PlannerConfig::default(),
    )
    .0;
    let mut fresh = nft_writer::FakeKernel::new();
    fresh
        .apply(&nft_writer::Transaction::replace(&want))
        .unwrap();
    assert_eq!(g.0.kernel().dump(), fresh.dump());
}

#[test]
fn absorbed_updates_name_every_service_either_changed() {
    let some = |names: &[&str], nodes: bool| Changed::Some {
        blocks: false,
        services: names.iter().map(|n| ObjectKey::new("t", *n)).collect(),
        nodes,
    };
    let mut newer = Update {
        changed: some(&["a"], false),
        ..Update::default()
    };
    newer.absorb(Update {
        changed: some(&["b"], true),
        ..Update::default()
    });
    assert_eq!(newer.changed, some(&["a", "b"], true));
    // An update that does not say makes the sum say nothing either.
    newer.absorb(Update::default());
    assert_eq!(newer.changed, Changed::All);
    let mut all = Update::default();
    all.absorb(Update {
        changed: some(&["c"], false),
        ..Update::default()
    });
    assert_eq!(all.changed, Changed::All);
}

/// Records what each UDP conntrack clean-up is asked to compare the
/// kernel's flows with, by service name and serving endpoints.
#[derive(Clone, Default)]
struct UdpRecorder(Arc<Mutex<Vec<Vec<String>>>>);

impl Programmer for UdpRecorder {
    fn sync_changes(
        &mut self,
        _: &IncrementalPlanner,
        _: Changes,
        full: bool,
    ) -> anyhow::Result<SyncStats> {
        Ok(SyncStats {
            full,
            ..SyncStats::default()
        })
    }

    fn clean_udp(&mut self, scope: &Scope, udp: &[UdpService]) -> anyhow::Result<usize> {
        let mut seen: Vec<String> = udp
            .iter()
            .map(|s| format!("{} {:?}", s.service, s.serving))
            .collect();
        seen.push(match scope {
            Scope::Everything => "scope: everything".into(),
            Scope::Entries(e) => format!("scope: {e:?}"),
            Scope::Nothing => "scope: nothing".into(),
        });
        self.0.lock().unwrap().push(seen);
        Ok(0)
    }
}

/// kube-proxy #141371: a deleted UDP Service is cleaned once as one
/// without endpoints, after the sync that removed its rules.
#[tokio::test(start_paused = true)]
async fn a_deleted_udp_service_is_cleaned_once_after_the_sync_that_removes_it() {
    let rec = UdpRecorder::default();
    let (tx, _stop) = spawn_loop(rec.clone(), Duration::ZERO, HOUR);
    let mut udp = cluster(2, |_| 1);
    for s in udp.services.values_mut() {
        s.ports[0].protocol = api_watch::Protocol::Udp;
    }
    for sl in udp.endpoint_slices.values_mut() {
        sl.ports[0].protocol = api_watch::Protocol::Udp;
    }
    tx.send(whole(udp.clone())).unwrap();
    wait(10).await;
    udp.services.remove(&ObjectKey::new("t", "s1"));
    udp.endpoint_slices.remove(&ObjectKey::new("t", "s1-a"));
    tx.send(whole(udp.clone())).unwrap();
    wait(10).await;
    tx.send(whole(udp.clone())).unwrap();
    wait(10).await;
    let calls = rec.0.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            vec![
                "t/s0 {10.42.0.0:8080}",
                "t/s1 {10.42.0.16:8080}",
                "scope: everything"
            ],
            vec![
                "t/s0 {10.42.0.0:8080}",
                "t/s1 {}",
                "scope: {Addr(10.43.0.1:80)}"
            ],
        ]
    );
}
