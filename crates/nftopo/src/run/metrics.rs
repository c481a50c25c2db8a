//! The daemon's Prometheus metrics (OpenMetrics text on `/metrics`):
//! kube-proxy's names where they mean the same, and nftopo's own.
//!
//! prometheus-client appends `_total` to counters, so counters are
//! registered without it; kube-proxy's `…_no_local_endpoints_total` is a
//! gauge and keeps its name as is.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label pairs of a metric family.
pub type Labels = Vec<(String, String)>;

/// Every metric the daemon exports, and the registry that prints them.
pub struct Metrics {
    registry: Registry,
    /// `kubeproxy_sync_proxy_rules_duration_seconds`.
    pub sync_duration: Histogram,
    /// `kubeproxy_sync_full_proxy_rules_duration_seconds`.
    pub sync_full_duration: Histogram,
    /// `kubeproxy_sync_partial_proxy_rules_duration_seconds`.
    pub sync_partial_duration: Histogram,
    /// `kubeproxy_network_programming_duration_seconds`: from an
    /// EndpointSlice's `endpoints.kubernetes.io/last-change-trigger-time`
    /// to the sync that programmed it.
    pub network_programming: Histogram,
    /// `kubeproxy_sync_proxy_rules_last_timestamp_seconds`.
    pub last_sync: Gauge<f64, AtomicU64>,
    /// `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds`.
    pub last_queued: Gauge<f64, AtomicU64>,
    /// `kubeproxy_sync_proxy_rules_endpoint_changes_pending`.
    pub endpoint_changes_pending: Gauge,
    /// `kubeproxy_sync_proxy_rules_endpoint_changes_total`.
    pub endpoint_changes: Counter,
    /// `kubeproxy_sync_proxy_rules_service_changes_pending`.
    pub service_changes_pending: Gauge,
    /// `kubeproxy_sync_proxy_rules_service_changes_total`.
    pub service_changes: Counter,
    /// `kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy}`
    /// (a gauge, as in kube-proxy): service ports with a Local policy and
    /// endpoints, none of them on this node.
    pub no_local_endpoints: Family<Labels, Gauge>,
    /// `kubeproxy_sync_proxy_rules_nftables_sync_failures_total`.
    pub sync_failures: Counter,
    /// `nftopo_objects_skipped_total{kind,reason}`: objects left out for
    /// bad input.
    pub objects_skipped: Family<Labels, Counter>,
    /// `nftopo_netlink_messages`: netlink messages per transaction.
    pub netlink_messages: Histogram,
    /// `nftopo_routes_programmed`: routes to other nodes' pod CIDRs (and
    /// own blackholes) in the kernel after the last route pass.
    pub routes_programmed: Gauge,
    /// `nftopo_route_failures_total`: route operations the kernel refused,
    /// and route passes that failed whole.
    pub route_failures: Counter,
    /// `nftopo_planner_problems_total{kind}`.
    pub planner_problems: Family<Labels, Counter>,
    /// `nftopo_drift_repairs_total{kind}` (table, chain, rule, set,
    /// element): objects a full sync found changed behind nftopo's back
    /// and repaired.
    pub drift_repairs: Family<Labels, Counter>,
    /// `nftopo_service_events_total{result}`: Warning Events on Services
    /// (run/service_events.rs) sent, failed, or not sent and why.
    pub service_events: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        // kube-proxy: metrics.ExponentialBuckets(0.001, 2, 15).
        let sync = || Histogram::new(exponential_buckets(0.001, 2.0, 15));
        // kube-proxy: MergeBuckets(LinearBuckets(0.25, 0.25, 2),
        // LinearBuckets(1, 1, 59), LinearBuckets(60, 5, 12),
        // LinearBuckets(120, 30, 7)).
        let programming = linear_buckets(0.25, 0.25, 2)
            .chain(linear_buckets(1.0, 1.0, 59))
            .chain(linear_buckets(60.0, 5.0, 12))
            .chain(linear_buckets(120.0, 30.0, 7));
        let m = Metrics {
            registry: Registry::default(),
            sync_duration: sync(),
            sync_full_duration: sync(),
            sync_partial_duration: sync(),
            network_programming: Histogram::new(programming),
            last_sync: Gauge::default(),
            last_queued: Gauge::default(),
            endpoint_changes_pending: Gauge::default(),
            endpoint_changes: Counter::default(),
            service_changes_pending: Gauge::default(),
            service_changes: Counter::default(),
            no_local_endpoints: Family::default(),
            sync_failures: Counter::default(),
            objects_skipped: Family::default(),
            netlink_messages: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            routes_programmed: Gauge::default(),
            route_failures: Counter::default(),
            planner_problems: Family::default(),
            drift_repairs: Family::default(),
            service_events: Family::default(),
        };
        let mut registry = Registry::default();
        let r = &mut registry;
        r.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            m.sync_duration.clone(),
        );
        r.register(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            m.sync_full_duration.clone(),
        );
        r.register(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            m.sync_partial_duration.clone(),
        );
        r.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Network Programming Latency in seconds",
            m.network_programming.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_sync.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            m.last_queued.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "Pending proxy rules Endpoint changes",
            m.endpoint_changes_pending.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            m.endpoint_changes.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "Pending proxy rules Service changes",
            m.service_changes_pending.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            m.service_changes.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "Number of services with a Local traffic policy and no endpoints",
            m.no_local_endpoints.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures",
            "Number of proxy rules sync failures",
            m.sync_failures.clone(),
        );
        r.register(
            "nftopo_objects_skipped",
            "Objects left out for bad input, by kind and reason",
            m.objects_skipped.clone(),
        );
        r.register(
            "nftopo_netlink_messages",
            "Netlink messages per nf_tables transaction",
            m.netlink_messages.clone(),
        );
        r.register(
            "nftopo_routes_programmed",
            "Routes programmed by route-sync",
            m.routes_programmed.clone(),
        );
        r.register(
            "nftopo_route_failures",
            "Route operations the kernel refused, and failed route passes",
            m.route_failures.clone(),
        );
        r.register(
            "nftopo_planner_problems",
            "Settings ignored while planning, by kind",
            m.planner_problems.clone(),
        );
        r.register(
            "nftopo_drift_repairs",
            "Objects in nftopo's tables found changed behind its back and repaired, by kind",
            m.drift_repairs.clone(),
        );
        r.register(
            "nftopo_service_events",
            "Warning Events on Services, by result (sent, failed, service_gone, rate_limited, queue_full, other_reporter)",
            m.service_events.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts one skipped object.
    pub fn skipped(&self, kind: &str, reason: &str) {
        self.objects_skipped
            .get_or_create(&vec![
                ("kind".into(), kind.into()),
                ("reason".into(), reason.into()),
            ])
            .inc();
    }

    /// What a proxier step found: its new problems (counted once, when
    /// they appear) and kube-proxy's no-local-endpoint gauges.
    pub fn step(&self, step: &proxier::Step) {
        for p in &step.problems {
            self.planner_problems
                .get_or_create(&vec![("kind".into(), p.kind.into())])
                .inc();
        }
        let (internal, external) = step.no_local_endpoints;
        self.no_local_endpoints
            .get_or_create(&vec![("traffic_policy".into(), "internal".into())])
            .set(internal as i64);
        self.no_local_endpoints
            .get_or_create(&vec![("traffic_policy".into(), "external".into())])
            .set(external as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_under_kube_proxys_or_nftopos_name() {
        let m = Metrics::new();
        m.sync_failures.inc();
        m.endpoint_changes.inc();
        m.service_changes.inc();
        m.skipped("Service", "bad_port");
        m.planner_problems
            .get_or_create(&vec![("kind".into(), "invalid_topology_keys".into())])
            .inc();
        m.step(&proxier::Step::default());
        let text = m.encode();
        for name in [
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_sum",
            "kubeproxy_network_programming_duration_seconds_bucket",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds ",
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds ",
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending ",
            "kubeproxy_sync_proxy_rules_endpoint_changes_total 1",
            "kubeproxy_sync_proxy_rules_service_changes_pending ",
            "kubeproxy_sync_proxy_rules_service_changes_total 1",
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"external\"} 0",
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1",
            "nftopo_objects_skipped_total{kind=\"Service\",reason=\"bad_port\"} 1",
            "nftopo_netlink_messages_bucket",
            "nftopo_routes_programmed 0",
            "nftopo_route_failures_total 0",
            "nftopo_planner_problems_total{kind=\"invalid_topology_keys\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
    }
}
