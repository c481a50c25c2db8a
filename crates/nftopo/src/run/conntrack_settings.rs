//! kube-proxy's conntrack settings (`--conntrack-*` flags, the
//! `conntrack:` section of its configuration file), written to the node's
//! sysctls once at start, as kube-proxy does before it creates its proxier
//! (`pkg/proxy/conntrack/sysctls.go`, called from `platformSetup`).
//!
//! | field (flag) | default | sysctl |
//! |---|---|---|
//! | `maxPerCore` (`--conntrack-max-per-core`) | 32768 | `nf_conntrack_max`, see [`conntrack_max`] |
//! | `min` (`--conntrack-min`) | 131072 | (the floor of `nf_conntrack_max`) |
//! | `tcpEstablishedTimeout` (`--conntrack-tcp-timeout-established`) | 24h0m0s | `nf_conntrack_tcp_timeout_established` |
//! | `tcpCloseWaitTimeout` (`--conntrack-tcp-timeout-close-wait`) | 1h0m0s | `nf_conntrack_tcp_timeout_close_wait` |
//! | `tcpBeLiberal` (`--conntrack-tcp-be-liberal`) | false | `nf_conntrack_tcp_be_liberal` = 1 when true |
//! | `udpTimeout` (`--conntrack-udp-timeout`) | 0s | `nf_conntrack_udp_timeout` |
//! | `udpStreamTimeout` (`--conntrack-udp-timeout-stream`) | 0s | `nf_conntrack_udp_timeout_stream` |
//!
//! A zero (or false) leaves the kernel's value alone. As kube-proxy's, each
//! sysctl is read first and written only when it differs, and
//! `nf_conntrack_max` and the module's `hashsize` (raised to a quarter of
//! it) are only ever raised. Durations are written in whole seconds,
//! truncated (kube-proxy's `int(d / time.Second)`).
//!
//! Where nftopo differs: kube-proxy exits when a read or write fails (a
//! container with a read-only /proc/sys, or `nf_conntrack_max`, which
//! is read-only outside the host's network namespace, below the value it
//! wants); nftopo logs one warning naming the sysctl and keeps running,
//! since its unit (`ProtectKernelTunables=yes`) and DaemonSet (no
//! privileged mode) cannot write sysctls, and a node without service
//! rules is worse than one with the kernel's conntrack defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use serde::Deserialize;

use super::duration;

/// kube-proxy caps `maxPerCore` × CPUs at this many entries.
pub const MAX_LIMIT: i64 = 1_048_576;

/// The `--conntrack-*` flags, named and defaulted as kube-proxy's.
#[derive(Debug, Args)]
pub struct ConntrackArgs {
    /// Maximum number of NAT connections to track per CPU core (0 to leave
    /// the limit as-is and ignore --conntrack-min).
    #[arg(long, default_value_t = 32768, value_parser = clap::value_parser!(i32).range(0..))]
    pub conntrack_max_per_core: i32,
    /// Minimum number of conntrack entries to allocate, regardless of
    /// --conntrack-max-per-core (set --conntrack-max-per-core=0 to leave
    /// the limit as-is).
    #[arg(long, default_value_t = 131072, value_parser = clap::value_parser!(i32).range(0..))]
    pub conntrack_min: i32,
    /// Idle timeout for established TCP connections (0 to leave as-is).
    #[arg(long, default_value = "24h0m0s", value_parser = duration::parse)]
    pub conntrack_tcp_timeout_established: Duration,
    /// NAT timeout for TCP connections in the CLOSE_WAIT state (0 to leave
    /// as-is).
    #[arg(long, default_value = "1h0m0s", value_parser = duration::parse)]
    pub conntrack_tcp_timeout_close_wait: Duration,
    /// Enable liberal mode for tracking TCP packets by setting
    /// nf_conntrack_tcp_be_liberal to 1.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    pub conntrack_tcp_be_liberal: bool,
    /// Idle timeout for UNREPLIED UDP connections (0 to leave as-is).
    #[arg(long, default_value = "0s", value_parser = duration::parse)]
    pub conntrack_udp_timeout: Duration,
    /// Idle timeout for ASSURED UDP connections (0 to leave as-is).
    #[arg(long, default_value = "0s", value_parser = duration::parse)]
    pub conntrack_udp_timeout_stream: Duration,
    /// For tests: read and write DIR/proc/sys and DIR/sys instead of the
    /// host's.
    #[arg(long, hide = true, default_value = "/")]
    pub sysctl_root: PathBuf,
}

/// The `conntrack:` section of a `KubeProxyConfiguration`. An absent (or
/// null) field takes the flag's value, which is its default unless given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConntrackConfig {
    max_per_core: Option<i32>,
    min: Option<i32>,
    tcp_established_timeout: Option<String>,
    tcp_close_wait_timeout: Option<String>,
    tcp_be_liberal: Option<bool>,
    udp_timeout: Option<String>,
    udp_stream_timeout: Option<String>,
}

/// The merged settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackSettings {
    /// Entries per CPU for `nf_conntrack_max`; 0 leaves it alone.
    pub max_per_core: i32,
    /// The floor of `nf_conntrack_max`.
    pub min: i32,
    /// `nf_conntrack_tcp_timeout_established`; zero leaves it alone.
    pub tcp_established_timeout: Duration,
    /// `nf_conntrack_tcp_timeout_close_wait`; zero leaves it alone.
    pub tcp_close_wait_timeout: Duration,
    /// `nf_conntrack_tcp_be_liberal` = 1 when true.
    pub tcp_be_liberal: bool,
    /// `nf_conntrack_udp_timeout`; zero leaves it alone.
    pub udp_timeout: Duration,
    /// `nf_conntrack_udp_timeout_stream`; zero leaves it alone.
    pub udp_stream_timeout: Duration,
    /// Where /proc/sys and /sys are (`/` but in tests).
    pub root: PathBuf,
}

/// Merges flags over the file: `given(id)` says whether flag `id` was on
/// the command line (see `config::merge`).
pub fn merge(
    args: &ConntrackArgs,
    file: &ConntrackConfig,
    given: &dyn Fn(&str) -> bool,
) -> Result<ConntrackSettings> {
    fn pick<T>(given: bool, flag: T, file: Option<T>) -> T {
        match file {
            Some(f) if !given => f,
            _ => flag,
        }
    }
    let count = |field: &str, v: Option<i32>| -> Result<Option<i32>> {
        match v {
            Some(n) if n < 0 => {
                bail!("config file field conntrack.{field}: {n} must not be negative")
            }
            v => Ok(v),
        }
    };
    let dur = |field: &str, v: &Option<String>| -> Result<Option<Duration>> {
        v.as_deref()
            .map(|s| {
                duration::parse(s)
                    .map_err(|e| anyhow::anyhow!("config file field conntrack.{field}: {e}"))
            })
            .transpose()
    };
    let f = file;
    Ok(ConntrackSettings {
        max_per_core: pick(
            given("conntrack_max_per_core"),
            args.conntrack_max_per_core,
            count("maxPerCore", f.max_per_core)?,
        ),
        min: pick(
            given("conntrack_min"),
            args.conntrack_min,
            count("min", f.min)?,
        ),
        tcp_established_timeout: pick(
            given("conntrack_tcp_timeout_established"),
            args.conntrack_tcp_timeout_established,
            dur("tcpEstablishedTimeout", &f.tcp_established_timeout)?,
        ),
        tcp_close_wait_timeout: pick(
            given("conntrack_tcp_timeout_close_wait"),
            args.conntrack_tcp_timeout_close_wait,
            dur("tcpCloseWaitTimeout", &f.tcp_close_wait_timeout)?,
        ),
        tcp_be_liberal: pick(
            given("conntrack_tcp_be_liberal"),
            args.conntrack_tcp_be_liberal,
            f.tcp_be_liberal,
        ),
        udp_timeout: pick(
            given("conntrack_udp_timeout"),
            args.conntrack_udp_timeout,
            dur("udpTimeout", &f.udp_timeout)?,
        ),
        udp_stream_timeout: pick(
            given("conntrack_udp_timeout_stream"),
            args.conntrack_udp_timeout_stream,
            dur("udpStreamTimeout", &f.udp_stream_timeout)?,
        ),
        root: args.sysctl_root.clone(),
    })
}

/// kube-proxy's `getConntrackMax`: 0 (leave alone) unless `maxPerCore` is
/// positive; else `maxPerCore` × `cpus`, capped at [`MAX_LIMIT`] (the cap
/// wins over `min`), and at least `min`.
pub fn conntrack_max(max_per_core: i32, min: i32, cpus: usize) -> i64 {
    if max_per_core <= 0 {
        return 0;
    }
    let scaled = i64::from(max_per_core) * cpus as i64;
    if scaled > MAX_LIMIT {
        MAX_LIMIT
    } else {
        scaled.max(i64::from(min))
    }
}

/// A file holding one integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    /// `/proc/sys/net/netfilter/<name>`.
    Netfilter(&'static str),
    /// `/sys/module/nf_conntrack/parameters/hashsize`.
    Hashsize,
}

/// One value to set: exactly, or at least (never lowered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// Which file.
    pub knob: Knob,
    /// The value.
    pub value: i64,
    /// Only raise: a larger value in the kernel stays.
    pub at_least: bool,
}

/// What the settings ask of a node with `cpus` CPUs, in kube-proxy's order.
pub fn plan(s: &ConntrackSettings, cpus: usize) -> Vec<Want> {
    let mut out = Vec::new();
    let max = conntrack_max(s.max_per_core, s.min, cpus);
    if max > 0 {
        let raise = |knob, value| Want {
            knob,
            value,
            at_least: true,
        };
        out.push(raise(Knob::Netfilter("nf_conntrack_max"), max));
        out.push(raise(Knob::Hashsize, max / 4));
    }
    // A zero duration leaves the sysctl alone; else whole seconds.
    let secs = |d: Duration| (!d.is_zero()).then(|| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let exact = [
        (
            "nf_conntrack_tcp_timeout_established",
            secs(s.tcp_established_timeout),
        ),
        (
            "nf_conntrack_tcp_timeout_close_wait",
            secs(s.tcp_close_wait_timeout),
        ),
        ("nf_conntrack_tcp_be_liberal", s.tcp_be_liberal.then_some(1)),
        ("nf_conntrack_udp_timeout", secs(s.udp_timeout)),
        (
            "nf_conntrack_udp_timeout_stream",
            secs(s.udp_stream_timeout),
        ),
    ];
    for (name, value) in exact {
        if let Some(value) = value {
            let knob = Knob::Netfilter(name);
            out.push(Want {
                knob,
                value,
                at_least: false,
            });
        }
    }
    out
}

/// What happened to one [`Want`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written: it held `from`.
    Set { path: PathBuf, from: i64, to: i64 },
    /// Already as wanted (or higher, for an at-least value): not written.
    Kept { path: PathBuf, value: i64 },
    /// Could not be read or written; the kernel's value stays.
    Failed {
        path: PathBuf,
        to: i64,
        error: String,
    },
}

/// The node's CPUs as kube-proxy counts them: online CPUs from
/// `<root>/sys/devices/system/cpu/online`, else the ones this process may use.
pub fn cpus(root: &Path) -> usize {
    let online = std::fs::read_to_string(root.join("sys/devices/system/cpu/online"));
    online
        .ok()
        .and_then(|s| count_cpu_list(s.trim()))
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Counts a kernel CPU list such as `0-3,8,10-11`.
pub fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => {
                b.parse::<usize>()
                    .ok()?
                    .checked_sub(a.parse::<usize>().ok()?)?
                    + 1
            }
            None => part.parse::<usize>().map(|_| 1).ok()?,
        };
    }
    Some(n)
}

/// Reads each wanted file under `root` and writes the ones that differ.
pub fn apply(wants: &[Want], root: &Path) -> Vec<Outcome> {
    wants.iter().map(|w| apply_one(w, root)).collect()
}

fn apply_one(w: &Want, root: &Path) -> Outcome {
    // `above` exists whether or not nf_conntrack is there.
    let (path, above) = match w.knob {
        Knob::Netfilter(name) => (
            root.join("proc/sys/net/netfilter").join(name),
            root.join("proc/sys/net"),
        ),
        Knob::Hashsize => (
            root.join("sys/module/nf_conntrack/parameters/hashsize"),
            root.join("sys/module"),
        ),
    };
    let fail = |path: PathBuf, error: String| Outcome::Failed {
        path,
        to: w.value,
        error,
    };
    let from = match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(v) => v,
            Err(_) => {
                return fail(
                    path,
                    format!("cannot read: {:?} is not an integer", text.trim()),
                )
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && above.is_dir() => {
            return fail(
                path,
                format!("cannot read: {e} (nf_conntrack is not loaded)"),
            )
        }
        Err(e) => return fail(path, format!("cannot read: {e}")),
    };
    if from == w.value || (w.at_least && from > w.value) {
        return Outcome::Kept { path, value: from };
    }
    match std::fs::write(&path, w.value.to_string()) {
        Ok(()) => Outcome::Set {
            path,
            from,
            to: w.value,
        },
        Err(e) => fail(path, format!("cannot write: {e}")),
    }
}

/// Applies `s` to the node (or to its test root) and logs one line per
/// sysctl written or left unwritten by a failure. Never fails: see the
/// module doc.
pub fn apply_logged(s: &ConntrackSettings) -> Vec<Outcome> {
    let outcomes = apply(&plan(s, cpus(&s.root)), &s.root);
    for o in &outcomes {
        match o {
            Outcome::Set { path, from, to } => {
                tracing::info!(sysctl = %path.display(), from, to, "set sysctl")
            }
            Outcome::Kept { path, value } => {
                tracing::debug!(sysctl = %path.display(), value, "sysctl unchanged")
            }
            Outcome::Failed { path, to, error } => tracing::warn!(
                sysctl = %path.display(), wanted = to, %error,
                "cannot set sysctl; the kernel's value stays"
            ),
        }
    }
    outcomes
}

#[cfg(test)]
#[path = "conntrack_settings_tests.rs"]
mod tests;
