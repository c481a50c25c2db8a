//! The outcome of a `testpod probe` run: how many of N fresh connections
//! ended in which outcome (an answering pod's IP, with `--echo-peer` also
//! the source it saw and its port; `refused`, `timeout`, `error:<kind>`,
//! `skipped`), parsed from its machine-readable output; and [`Probe`], the
//! options of one run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use crate::netns::{Error, Netns, Result};

/// One answer of `testpod serve`: `<pod-ip>` or, with `--echo-peer`,
/// `<pod-ip> <peer-ip> <port>` (in probe output the spaces are `_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Answer {
    /// The local address the connection reached (the pod IP after DNAT).
    pub pod: IpAddr,
    /// The source address the server saw (after any masquerade).
    pub peer: Option<IpAddr>,
    /// The local port the connection reached (the target port after DNAT).
    pub port: Option<u16>,
}

impl Answer {
    /// Parses a probe outcome key; `None` for `refused`, `timeout`, ….
    pub fn parse(key: &str) -> Option<Answer> {
        let mut parts = key.split('_');
        let pod = parts.next()?.parse().ok()?;
        let peer = match parts.next() {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        let port = match parts.next() {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Answer { pod, peer, port })
    }
}

/// Outcome key for connections refused (TCP RST or ICMP port unreachable).
pub const REFUSED: &str = "refused";
/// Outcome key for connections that got no answer within the timeout.
pub const TIMEOUT: &str = "timeout";
/// Outcome key for attempts not made because the probe gave up early.
pub const SKIPPED: &str = "skipped";
/// Output line carrying the longest time to a refusal, in milliseconds.
pub const MAX_REFUSED_MS: &str = "max_refused_ms";

/// Counts per outcome of one probe run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeResult {
    /// Outcome → number of connections that ended in it.
    pub counts: BTreeMap<String, usize>,
    /// The longest time any refused connection took to be refused.
    pub max_refused_ms: u64,
}

impl ProbeResult {
    /// Parses `testpod probe` output: one `<outcome> <count>` per line.
    pub fn parse(text: &str) -> Result<Self> {
        let mut result = ProbeResult::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let (Some(key), Some(value), None) = (words.next(), words.next(), words.next()) else {
                return Err(Error(format!("bad probe output line {line:?}")));
            };
            let value: u64 = value
                .parse()
                .map_err(|_| Error(format!("bad count in probe output line {line:?}")))?;
            if key == MAX_REFUSED_MS {
                result.max_refused_ms = value;
            } else if value > 0 {
                result.counts.insert(key.to_owned(), value as usize);
            }
        }
        Ok(result)
    }

    /// How many connections ended in `outcome`.
    pub fn count(&self, outcome: &str) -> usize {
        self.counts.get(outcome).copied().unwrap_or(0)
    }

    /// All connections counted.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// Every distinct answer with its count.
    pub fn answers(&self) -> BTreeMap<Answer, usize> {
        let mut out = BTreeMap::new();
        for (k, n) in &self.counts {
            if let Some(a) = Answer::parse(k) {
                *out.entry(a).or_default() += n;
            }
        }
        out
    }

    /// The IPv4 pod IPs that answered at least once.
    pub fn answered(&self) -> BTreeSet<Ipv4Addr> {
        self.pods()
            .into_iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// The pod IPs (either family) that answered at least once.
    pub fn pods(&self) -> BTreeSet<IpAddr> {
        self.answers().keys().map(|a| a.pod).collect()
    }

    /// The source addresses the answering pods saw (`--echo-peer`).
    pub fn peers(&self) -> BTreeSet<IpAddr> {
        self.answers().keys().filter_map(|a| a.peer).collect()
    }

    /// (pod IP, port reached) of every answer (`--echo-peer`).
    pub fn pod_ports(&self) -> BTreeSet<(IpAddr, u16)> {
        self.answers()
            .keys()
            .filter_map(|a| Some((a.pod, a.port?)))
            .collect()
    }

    /// Connections answered by some pod.
    pub fn answered_count(&self) -> usize {
        self.answers().values().sum()
    }
}

/// The options of one `testpod probe` run. A connection waits at most
/// `timeout_ms`; the probe gives up after `give_up_after` timeouts, so a
/// broken ruleset fails a test in seconds, not minutes.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Where to connect.
    pub target: SocketAddr,
    /// How many fresh connections (or datagrams).
    pub count: usize,
    /// `"tcp"`, `"udp"` or `"sctp"`.
    pub proto: &'static str,
    /// Per-connection timeout.
    pub timeout_ms: u64,
    /// Stop after this many timeouts (the rest count as `skipped`).
    pub give_up_after: usize,
    /// UDP: send every datagram from this source port (one conntrack flow).
    pub source_port: Option<u16>,
}

impl Probe {
    /// `count` TCP connections to `target`, 1 s timeout, give up after 5.
    pub fn tcp(target: impl Into<SocketAddr>, count: usize) -> Self {
        Probe {
            target: target.into(),
            count,
            proto: "tcp",
            timeout_ms: 1000,
            give_up_after: 5,
            source_port: None,
        }
    }

    /// `count` UDP datagrams (one socket each) to `target`.
    pub fn udp(target: impl Into<SocketAddr>, count: usize) -> Self {
        Probe {
            proto: "udp",
            ..Probe::tcp(target, count)
        }
    }

    /// `count` SCTP associations to `target`.
    pub fn sctp(target: impl Into<SocketAddr>, count: usize) -> Self {
        Probe {
            proto: "sctp",
            ..Probe::tcp(target, count)
        }
    }

    /// TCP or UDP by flag.
    pub fn new(target: impl Into<SocketAddr>, count: usize, udp: bool) -> Self {
        if udp {
            Probe::udp(target, count)
        } else {
            Probe::tcp(target, count)
        }
    }

    /// With another per-connection timeout.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }

    /// With another give-up threshold.
    pub fn give_up_after(mut self, n: usize) -> Self {
        self.give_up_after = n;
        self
    }

    /// UDP from a fixed source port.
    pub fn source_port(mut self, port: u16) -> Self {
        self.source_port = Some(port);
        self
    }

    /// Runs `testpod probe` inside `ns` and parses its counts.
    pub fn run(&self, ns: &Netns, testpod: &Path) -> Result<ProbeResult> {
        let target = self.target.to_string();
        let count = self.count.to_string();
        let timeout = self.timeout_ms.to_string();
        let give_up = self.give_up_after.to_string();
        let port = self.source_port.map(|p| p.to_string());
        let mut args = vec![
            "probe",
            "--target",
            &target,
            "--count",
            &count,
            "--timeout-ms",
            &timeout,
            "--give-up-after",
            &give_up,
        ];
        match self.proto {
            "udp" => args.push("--udp"),
            "sctp" => args.push("--sctp"),
            _ => {}
        }
        if let Some(port) = &port {
            args.extend(["--source-port", port]);
        }
        ProbeResult::parse(&ns.exec(testpod, &args)?)
    }
}

impl fmt::Display for ProbeResult {
    /// `10.42.54.130 41, 10.42.187.66 39, refused 3` style, one line:
    /// pod IPs in address order first, then the other outcomes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let answers = self.answers().into_iter().map(|(a, n)| {
            let mut text = a.pod.to_string();
            if let Some(peer) = a.peer {
                text.push_str(&format!(" from {peer}"));
            }
            if let Some(port) = a.port {
                text.push_str(&format!(" port {port}"));
            }
            format!("{text} {n}")
        });
        let others = self
            .counts
            .iter()
            .filter(|(k, _)| Answer::parse(k).is_none())
            .map(|(k, n)| format!("{k} {n}"));
        let parts: Vec<String> = answers.chain(others).collect();
        if parts.is_empty() {
            f.write_str("(no outcomes)")?;
        }
        f.write_str(&parts.join(", "))?;
        if self.count(REFUSED) > 0 {
            write!(f, " (max {} ms to refusal)", self.max_refused_ms)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_outcomes_and_drops_zero_counts() {
        let r = ProbeResult::parse(
            "10.42.54.130 37\n10.42.187.66 163\nrefused 0\ntimeout 0\nmax_refused_ms 0\n",
        )
        .unwrap();
        assert_eq!(r.total(), 200);
        assert_eq!(r.count(REFUSED), 0);
        assert_eq!(
            r.answered(),
            ["10.42.54.130", "10.42.187.66"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect()
        );
        assert_eq!(r.to_string(), "10.42.54.130 37, 10.42.187.66 163");
    }

    #[test]
    fn parses_echo_peer_answers_of_both_families() {
        let r = ProbeResult::parse(
            "10.42.187.66_172.31.11.85_5000 3\nfd00:42:0:2::66_fd00:31::200_6000 2\ntimeout 1\n",
        )
        .unwrap();
        assert_eq!(r.answered_count(), 5);
        assert_eq!(r.answered().len(), 1);
        assert_eq!(r.pods().len(), 2);
        assert_eq!(
            r.peers(),
            ["172.31.11.85", "fd00:31::200"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect()
        );
        assert_eq!(
            r.to_string(),
            "10.42.187.66 from 172.31.11.85 port 5000 3, \
             fd00:42:0:2::66 from fd00:31::200 port 6000 2, timeout 1"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(ProbeResult::parse("hello").is_err());
        assert!(ProbeResult::parse("refused many").is_err());
    }
}
