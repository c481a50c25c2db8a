//! The restart half of section 7: the daemon started over a kernel that
//! already holds its ruleset, timed from its own log lines.

use super::*;

/// Seconds since the Unix epoch of a log line's leading RFC 3339 UTC
/// timestamp (`2025-01-31T12:00:00.123456Z  INFO …`).
pub(super) fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|v| v.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let s: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// `key=value` of a log line.
pub(super) fn log_field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

pub(super) fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// VmHWM of a process, KiB.
pub(super) fn hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One start of the daemon, up to its first sync.
pub(super) struct Start {
    /// All kinds listed → first sync done (log timestamps).
    listed_to_synced: f64,
    /// The first sync's own `seconds=`.
    sync: f64,
    /// Process start → first sync done.
    total: f64,
    operations: String,
    differences: String,
    hwm_kib: u64,
    seen: Witness,
}

/// Starts the daemon in `ns` and waits for its first sync; with
/// `witness`, `nft monitor` watches the namespace from before the start
/// to after the first sync.
pub(super) fn start_daemon(
    cfg: &Config,
    ns: &Netns,
    kubeconfig: &Path,
    witness: bool,
) -> (Daemon, Start) {
    let mon = witness.then(|| Monitor::start(cfg, ns));
    let started = SystemTime::now();
    let mut d = Daemon::start(ns, kubeconfig, &[]).expect("nftopo run");
    let deadline = Instant::now() + Duration::from_secs(300);
    let (listed, synced) = loop {
        if let Some(st) = d.exited() {
            panic!("nftopo run exited ({st}):\n{}", d.log());
        }
        let log = d.log();
        let find = |what: &str| log.lines().find(|l| l.contains(what)).map(str::to_string);
        if let (Some(l), Some(s)) = (find("all kinds listed"), find("first sync done")) {
            break (l, s);
        }
        assert!(
            Instant::now() < deadline,
            "no first sync in 300 s:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let seen = mon.map_or(Witness::NotWatched, Monitor::stop);
    let at = |l: &str| log_time(l).unwrap_or_else(|| panic!("no timestamp in {l:?}"));
    let start = Start {
        listed_to_synced: at(&synced) - at(&listed),
        sync: log_field(&synced, "seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN),
        total: at(&synced) - unix(started),
        operations: log_field(&synced, "operations").unwrap_or_else(|| "?".into()),
        differences: log_field(&synced, "differences").unwrap_or_else(|| "?".into()),
        hwm_kib: hwm_kib(d.pid().expect("pid")),
        seen,
    };
    (d, start)
}

/// The daemon restarted over an unchanged cluster; returns the Markdown.
pub(super) fn restart(cfg: &Config, n: usize, runs: usize, manifests: &Path) -> String {
    // Info lines only: `first sync done` and `all kinds listed` are info.
    std::env::set_var("NFTOPO_LOG", "info");
    let text = std::fs::read_to_string(manifests).expect("manifests");
    let objects = yaml_objects(&text).expect("generated manifests");
    drop(text);
    let last_vip = objects
        .iter()
        .rev()
        .find(|o| o["kind"] == "Service")
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .expect("a Service")
        .to_string();
    let ns = Netns::create(format!("{}-cvd", unique_prefix())).expect("namespace");
    let api =
        ApiServer::start_in_netns(ns.name(), "127.0.0.1:0".parse().unwrap()).expect("stand-in");
    for o in objects {
        api.apply(o).expect("object");
    }
    let kubeconfig = cfg.tmp.join("kubeconfig-converge");
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");

    let (mut d, first) = start_daemon(cfg, &ns, &kubeconfig, false);
    // The kernel holds everything: the last Service is in its map.
    let key = format!("{{ {last_vip} . tcp . 80 }}");
    ns.exec(
        "nft",
        &["get", "element", "ip", "nftopo", "plain-cluster-ips", &key],
    )
    .expect("the last service is in the kernel after the first sync");
    d.terminate(Duration::from_secs(30))
        .expect("SIGTERM stops the daemon");
    drop(d);
    ns.exec("nft", &["list", "table", "ip", "nftopo"])
        .map(drop)
        .expect("SIGTERM leaves the rules");
    eprintln!(
        "bench: converge restart {n}: first start {:.2}s to first sync",
        first.total
    );
    // Each restart watched by `nft monitor`; the times are the best
    // restart's, the operations and events every restart's.
    let again: Vec<Start> = (0..runs)
        .map(|_| {
            let (mut d, s) = start_daemon(cfg, &ns, &kubeconfig, true);
            d.terminate(Duration::from_secs(30))
                .expect("SIGTERM stops the daemon");
            eprintln!(
                "bench: converge restart {n}: restart {:.2}s to first sync, operations={}",
                s.total, s.operations
            );
            s
        })
        .collect();
    drop((api, ns));
    let best = again
        .iter()
        .min_by(|a, b| a.listed_to_synced.total_cmp(&b.listed_to_synced))
        .expect("at least one restart");
    let quiet = again
        .iter()
        .all(|s| s.operations == "0" && s.seen.is_quiet());
    let each = |f: &dyn Fn(&Start) -> String| again.iter().map(f).collect::<Vec<_>>().join(", ");

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### Daemon restart, nothing changed ({n} services x 10 endpoints)\n\n\
         `nftopo run` against the API server stand-in (`integration/src/apiserver`) fed the \
         same generated cluster: started in an empty namespace (the baseline), stopped with \
         SIGTERM once the kernel held the last Service (the rules stay), then started and \
         stopped again {runs} time(s). Times from its log lines' timestamps \
         (`NFTOPO_LOG=info`): `all kinds listed` (every watch has completed its first list \
         and the whole state is handed to the sync loop) to `first sync done`; that line's \
         own `seconds=` (what follows the plan: the ruleset assembled, read-back, diff, \
         commit); and from the \
         bench starting the process to `first sync done`. Times are the best restart's \
         (lowest `lists → first sync`). Operations and differences from each restart's \
         `first sync done` line; kernel events and nftopo's commits from `nft monitor`, \
         run in the namespace from before each restart to after its first sync (not during \
         the first start: it would slow the kernel's commit of every object). Goals: 0 \
         operations on a restart, and {RESTART_GOAL} s or less from the lists to the first \
         sync.\n"
    );
    let _ = writeln!(
        md,
        "| start | runs | lists → first sync s | first sync `seconds=` | process start → first sync s | operations (log) | differences (log) | kernel events (`nft monitor`) | nftopo commits (`nft monitor`) | VmHWM MiB | goal |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    let row = |label: &str,
               runs: usize,
               s: &Start,
               ops: String,
               diffs: String,
               seen: (String, String),
               goal: &str| {
        format!(
            "| {label} | {runs} | {:.2} | {:.2} | {:.2} | {ops} | {diffs} | {} | {} | {:.0} | {goal} |",
            s.listed_to_synced,
            s.sync,
            s.total,
            seen.0,
            seen.1,
            s.hwm_kib as f64 / 1024.0
        )
    };
    let _ = writeln!(
        md,
        "{}",
        row(
            "first start, empty namespace (baseline)",
            1,
            &first,
            first.operations.clone(),
            first.differences.clone(),
            first.seen.cells(1),
            "–"
        )
    );
    let goal = format!(
        "0 operations ({}); lists → first sync ≤ {RESTART_GOAL} s ({})",
        if quiet { "met" } else { "missed" },
        if best.listed_to_synced <= RESTART_GOAL {
            "met"
        } else {
            "missed"
        }
    );
    let _ = writeln!(
        md,
        "{}",
        row(
            "restart, cluster and kernel unchanged",
            again.len(),
            best,
            each(&|s| s.operations.clone()),
            each(&|s| s.differences.clone()),
            (each(&|s| s.seen.cells(1).0), each(&|s| s.seen.cells(1).1)),
            &goal
        )
    );
    for s in &again {
        match &s.seen {
            Witness::Seen(w) if w.events > 0 => {
                let _ = writeln!(md, "\nThe kernel saw, first: `{}`", w.first.join("`, `"));
                break;
            }
            _ => {}
        }
    }
    md
}
