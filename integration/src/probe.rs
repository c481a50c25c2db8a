//! The outcome of a `testpod probe` run: how many of N fresh connections
//! ended in which outcome (an answering pod's IP, `refused`, `timeout`,
//! `error:<kind>`, `skipped`), parsed from its machine-readable output.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use crate::netns::{Error, Result};

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

    /// The pod IPs that answered at least once.
    pub fn answered(&self) -> BTreeSet<Ipv4Addr> {
        self.counts.keys().filter_map(|k| k.parse().ok()).collect()
    }

    /// Connections answered by some pod.
    pub fn answered_count(&self) -> usize {
        self.counts
            .iter()
            .filter(|(k, _)| k.parse::<Ipv4Addr>().is_ok())
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for ProbeResult {
    /// `10.42.54.130 41, 10.42.187.66 39, refused 3` style, one line:
    /// pod IPs in address order first, then the other outcomes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ips = self.answered().into_iter().map(|ip| ip.to_string());
        let others = self
            .counts
            .keys()
            .filter(|k| k.parse::<Ipv4Addr>().is_err())
            .cloned();
        let parts: Vec<String> = ips
            .chain(others)
            .map(|k| format!("{k} {}", self.count(&k)))
            .collect();
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
    fn rejects_garbage() {
        assert!(ProbeResult::parse("hello").is_err());
        assert!(ProbeResult::parse("refused many").is_err());
    }
}
