//! Outcomes observed in the edge cluster, written once for every
//! real-traffic suite: a probe is *served* (exactly these pods answered
//! every connection, optionally seeing this source), *refused* (every
//! attempt refused within [`MAX_REFUSAL_MS`]: a reject) or *dropped*
//! (time-outs only). Each assertion names its case and prints the whole
//! probe result when it fails.
//!
//! [`EdgeCluster::answer_behind_node2`] makes "not intercepted" visible;
//! [`Scratch`] holds the manifests a test writes next to its assertions.
//! Where a suite enabled it (`trace_check::enable`), each outcome is
//! checked against `nftopo trace` of the same packet too.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::edge::{outside_spec, sa, EdgeCluster, NODE2_IP4, THIS_NODE};
use crate::netns::unique_prefix;
use crate::probe::{Probe, ProbeResult, REFUSED, TIMEOUT};

/// A refusal must come at once (TCP reset / ICMP port unreachable), not
/// after a retransmission time-out.
pub const MAX_REFUSAL_MS: u64 = 1000;

/// Unwraps with the harness error's readable message.
pub fn ok<T, E: Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn context(case: &str, from: &str, p: &Probe) -> String {
    format!("{case}: {} {} from {from}", p.proto, p.target)
}

impl EdgeCluster {
    /// Runs `p` from `from`, panicking with the harness error.
    pub fn run_probe(&self, from: &str, p: &Probe) -> ProbeResult {
        ok(self.probe(from, p), "probe")
    }

    /// Every connection answered, by exactly `pods` (each at least once);
    /// returns the result for further checks.
    pub fn expect_served(
        &self,
        from: &str,
        p: &Probe,
        pods: &BTreeSet<IpAddr>,
        case: &str,
    ) -> ProbeResult {
        let r = self.served_by(from, p, pods, case);
        crate::trace_check::served(self, from, p, &r, None, case);
        r
    }

    fn served_by(&self, from: &str, p: &Probe, pods: &BTreeSet<IpAddr>, case: &str) -> ProbeResult {
        let r = self.run_probe(from, p);
        let ctx = context(case, from, p);
        assert_eq!(r.pods(), *pods, "{ctx}: wrong pods answered: {r}");
        assert_eq!(r.answered_count(), p.count, "{ctx}: all answered: {r}");
        r
    }

    /// Like [`EdgeCluster::expect_served`], and every answer says the pod
    /// saw the source `peer` (the client itself, or a masquerade
    /// address).
    pub fn expect_served_from(
        &self,
        from: &str,
        p: &Probe,
        pods: &BTreeSet<IpAddr>,
        peer: impl Into<IpAddr>,
        case: &str,
    ) -> ProbeResult {
        let peer = peer.into();
        let r = self.served_by(from, p, pods, case);
        assert_eq!(
            r.peers(),
            BTreeSet::from([peer]),
            "{}: the source the pods saw: {r}",
            context(case, from, p)
        );
        crate::trace_check::served(self, from, p, &r, Some(peer), case);
        r
    }

    /// Every attempt refused within [`MAX_REFUSAL_MS`] (a reject). Keep UDP
    /// probes to two or three per client: the kernel's ICMP rate limit
    /// would turn more refusals into silence.
    pub fn expect_refused(&self, from: &str, p: &Probe, case: &str) {
        let r = self.run_probe(from, p);
        let ctx = context(case, from, p);
        assert_eq!(r.count(REFUSED), p.count, "{ctx}: all refused: {r}");
        assert!(
            r.max_refused_ms <= MAX_REFUSAL_MS,
            "{ctx}: refusals took up to {} ms",
            r.max_refused_ms
        );
        crate::trace_check::refused(self, from, p, case);
    }

    /// No answer and no refusal: two attempts, each timing out after
    /// 700 ms (a drop).
    pub fn expect_dropped(&self, from: &str, target: SocketAddr, udp: bool, case: &str) {
        let p = Probe::new(target, 2, udp).timeout_ms(700).give_up_after(2);
        let r = self.run_probe(from, &p);
        assert_eq!(
            r.count(TIMEOUT),
            2,
            "{}: must be dropped (time-outs only): {r}",
            context(case, from, &p)
        );
        crate::trace_check::dropped(self, from, &p, case);
    }

    /// `outside2` stands behind node-2 for `addr`: it holds the address,
    /// answers TCP and UDP on `port` with it (its default route, via node-2,
    /// has `addr` as source, so UDP answers come from it too), and node-2
    /// routes `addr` to it. Traffic that nftopo leaves alone is answered by
    /// `addr` itself instead of vanishing. Returns once node-2 reaches it.
    pub fn answer_behind_node2(&self, addr: Ipv4Addr, port: u16) {
        let o2 = self.ns("outside2");
        let (host, node2, outside2) = (
            format!("{addr}/32"),
            NODE2_IP4.to_string(),
            outside_spec("outside2").ip4.to_string(),
        );
        let src = addr.to_string();
        ok(
            o2.ip(&["addr", "add", &host, "dev", "lo"]),
            "address on outside2",
        );
        ok(
            o2.ip(&["route", "add", "default", "via", &node2, "src", &src]),
            "outside2's default route via node-2",
        );
        ok(
            self.node(THIS_NODE)
                .ip(&["route", "add", &host, "via", &outside2]),
            "node-2's route to outside2",
        );
        let ports = port.to_string();
        ok(
            o2.spawn(
                self.testpod(),
                &["serve", "--ports", &ports, "--echo-peer", "--wildcard"],
            ),
            "server in outside2",
        );
        let target = sa(addr, port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .run_probe(THIS_NODE, &Probe::tcp(target, 1).timeout_ms(300))
            .pods()
            != BTreeSet::from([IpAddr::V4(addr)])
        {
            assert!(
                Instant::now() < deadline,
                "outside2 does not answer on {target}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Manifests a test writes, in a scratch directory removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory under the system's temporary directory.
    pub fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("{}-scratch", unique_prefix()));
        ok(std::fs::create_dir_all(&dir), "scratch dir");
        Scratch(dir)
    }

    /// Where a file `name` of this directory goes (for files the test
    /// does not write itself, e.g. a kubeconfig).
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` as `name`; returns its absolute path (which
    /// [`EdgeCluster::apply`] takes as well as edge file names).
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        ok(std::fs::write(&path, text), "write manifest");
        path.display().to_string()
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
