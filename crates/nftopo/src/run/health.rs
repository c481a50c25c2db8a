//! kube-proxy's proxy health (pkg/proxy/healthcheck, `ProxyHealthServer`):
//! healthy until an update is queued and not applied within the health
//! timeout (kube-proxy passes `2 * syncPeriod`, 60 s by default: the
//! sync loop syncs at least once per sync period, so only an update that
//! keeps failing, or a loop that is stuck, gets that old); `/healthz` is also
//! unhealthy while this node is being deleted or carries the cluster
//! autoscaler's `ToBeDeletedByClusterAutoscaler` taint, `/livez` is not.
//!
//! Pure: the clock is passed in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::http::Response;

/// What `/healthz` needs to know about this node's Node object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `spec.taints` has [`api_watch::TO_BE_DELETED_TAINT`] (api-watch
    /// folds it into `Node::deleting`; kept apart for sources that do not).
    pub to_be_deleted: bool,
}

impl NodeStatus {
    /// kube-proxy's `nodeEligible`: neither deleted nor being removed.
    pub fn eligible(self) -> bool {
        !self.deleting && !self.to_be_deleted
    }
}

/// The proxy's health state.
#[derive(Debug, Clone)]
pub struct ProxyHealth {
    timeout: Duration,
    oldest_pending: Option<Instant>,
    last_updated: Option<SystemTime>,
    node: NodeStatus,
}

impl ProxyHealth {
    /// A healthy state (kube-proxy is healthy while starting) with
    /// kube-proxy's timeout for `sync_period`.
    pub fn new(sync_period: Duration) -> Self {
        ProxyHealth {
            timeout: 2 * sync_period,
            oldest_pending: None,
            last_updated: None,
            node: NodeStatus::default(),
        }
    }

    /// An update was queued (`QueuedUpdate`): the oldest pending one counts.
    pub fn queued(&mut self, now: Instant) {
        self.oldest_pending.get_or_insert(now);
    }

    /// The rules were programmed (`Updated`).
    pub fn updated(&mut self, wall: SystemTime) {
        self.oldest_pending = None;
        self.last_updated = Some(wall);
    }

    /// Records this node's status (`SyncNode`).
    pub fn set_node(&mut self, node: NodeStatus) {
        self.node = node;
    }

    /// Whether the proxy is healthy: nothing pending, or pending for less
    /// than the timeout (kube-proxy's `currentTime.Sub(oldestPendingQueued)
    /// < healthTimeout`).
    pub fn healthy(&self, now: Instant) -> bool {
        match self.oldest_pending {
            None => true,
            Some(t) => now.saturating_duration_since(t) < self.timeout,
        }
    }

    /// `/healthz`: 200 when healthy and the node is eligible, else 503.
    pub fn healthz(&self, now: Instant, wall: SystemTime) -> Response {
        let eligible = self.node.eligible();
        let ok = self.healthy(now) && eligible;
        let body = format!(
            r#"{{"lastUpdated": "{}","currentTime": "{}", "nodeEligible": {}}}"#,
            go_time(self.reported_last_updated(ok, wall)),
            go_time(Some(wall)),
            eligible
        );
        Response::json(if ok { 200 } else { 503 }, body)
    }

    /// `/livez`: as `/healthz` without the node's status.
    pub fn livez(&self, now: Instant, wall: SystemTime) -> Response {
        let ok = self.healthy(now);
        let body = format!(
            r#"{{"lastUpdated": "{}","currentTime": "{}"}}"#,
            go_time(self.reported_last_updated(ok, wall)),
            go_time(Some(wall))
        );
        Response::json(if ok { 200 } else { 503 }, body)
    }

    /// kube-proxy reports `lastUpdated` as the current time when healthy
    /// (older releases' semantics: "recent if healthy").
    fn reported_last_updated(&self, healthy: bool, wall: SystemTime) -> Option<SystemTime> {
        if healthy {
            Some(wall)
        } else {
            self.last_updated
        }
    }
}

/// Go's `time.Time.String()` in UTC, as kube-proxy's body prints it:
/// `2006-01-02 15:04:05.999999999 +0000 UTC`; the zero time for `None`.
pub fn go_time(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01 00:00:00 +0000 UTC".into();
    };
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut out = format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if d.subsec_nanos() != 0 {
        let frac = format!("{:09}", d.subsec_nanos());
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn health_follows_kube_proxys_proxy_health_server() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let timeout = 2 * HOUR;
        type Step = fn(&mut ProxyHealth, Instant);
        let cases: &[(&str, Step, Duration, bool)] = &[
            (
                "healthy while starting, before any update",
                |_, _| {},
                10 * HOUR,
                true,
            ),
            (
                "healthy while a queued update is younger than the timeout",
                |h, t| h.queued(t),
                timeout - Duration::from_millis(1),
                true,
            ),
            (
                "unhealthy once a queued update is as old as the timeout",
                |h, t| h.queued(t),
                timeout,
                false,
            ),
            (
                "healthy again once it is applied",
                |h, t| {
                    h.queued(t);
                    h.updated(UNIX_EPOCH)
                },
                10 * HOUR,
                true,
            ),
            (
                "a later queued update does not reset the oldest one",
                |h, t| {
                    h.queued(t);
                    h.queued(t + HOUR)
                },
                timeout + Duration::from_secs(1),
                false,
            ),
        ];
        for (name, step, after, want) in cases {
            let mut h = ProxyHealth::new(HOUR);
            step(&mut h, t0);
            assert_eq!(h.healthy(t0 + *after), *want, "{name}");
            assert_eq!(
                h.healthz(t0 + *after, wall).status == 200,
                *want,
                "{name}: /healthz"
            );
            assert_eq!(
                h.livez(t0 + *after, wall).status == 200,
                *want,
                "{name}: /livez"
            );
        }
    }

    #[test]
    fn healthz_is_503_for_a_node_being_removed_and_livez_is_not() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH;
        for (name, node) in [
            (
                "deletionTimestamp set",
                NodeStatus {
                    deleting: true,
                    to_be_deleted: false,
                },
            ),
            (
                "ToBeDeletedByClusterAutoscaler taint",
                NodeStatus {
                    deleting: false,
                    to_be_deleted: true,
                },
            ),
        ] {
            let mut h = ProxyHealth::new(HOUR);
            h.set_node(node);
            let r = h.healthz(t0, wall);
            assert_eq!(r.status, 503, "{name}");
            assert!(
                r.body.contains(r#""nodeEligible": false"#),
                "{name}: {}",
                r.body
            );
            assert_eq!(
                h.livez(t0, wall).status,
                200,
                "{name}: /livez ignores the node"
            );
        }
    }

    #[test]
    fn bodies_are_kube_proxys_json() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000);
        let mut h = ProxyHealth::new(HOUR);
        let ok = h.healthz(t0, wall);
        assert_eq!(
            ok.body,
            r#"{"lastUpdated": "2023-11-14 22:13:20.25 +0000 UTC","currentTime": "2023-11-14 22:13:20.25 +0000 UTC", "nodeEligible": true}"#
        );
        let v: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
        assert_eq!(v["nodeEligible"], true);
        h.queued(t0);
        let late = h.livez(t0 + 3 * HOUR, wall);
        assert_eq!(late.status, 503);
        assert!(
            late.body
                .starts_with(r#"{"lastUpdated": "0001-01-01 00:00:00 +0000 UTC""#),
            "{}",
            late.body
        );
    }
}
