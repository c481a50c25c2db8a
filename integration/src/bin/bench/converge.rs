//! Section 7: converge, never replace (issue 13). `nftopo apply` into an
//! empty namespace (the baseline), the same apply again with nothing
//! changed, and after 1% of the services changed; the read-back alone
//! (nft-writer's `readback_bench` example); and `nftopo run` restarted
//! over an unchanged cluster. Operations are counted twice: `nftopo diff`
//! before each apply (what nftopo would send), and `nft monitor` in the
//! namespace while it runs (what the kernel saw, an independent witness).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nftopo_integration::apiserver::ApiServer;
use nftopo_integration::daemon::{yaml_objects, Daemon};
use nftopo_integration::{gen_manifests, unique_prefix, Netns};

use crate::util::{run_ok, timed_in_netns, Sample};
use crate::Config;

/// The cluster CIDR given to `nftopo apply`, as in section 1 (so that the
/// first apply here is the same work as there).
const CIDR: &str = "10.0.0.0/8";
/// Goal: an apply with nothing to do at least this many times faster than
/// the first apply.
const SPEEDUP_GOAL: f64 = 3.0;
/// Goal: seconds from the lists completing to the restart's first sync.
const RESTART_GOAL: f64 = 0.5;

/// `nft monitor` running in a namespace, writing to a file. A table added
/// and deleted before (`bench_start`) and one added after (`bench_end`)
/// mark the window: only what the kernel reported between them counts,
/// and a monitor that never listened, or lost events, cannot read as "no
/// events". (The tests' `nftopo_integration::NftMonitor` waits a fixed
/// 300 ms instead, too short for `nft monitor` to start at this size.)
struct Monitor {
    child: Child,
    out: PathBuf,
    ns: String,
}

/// What `nft monitor` witnessed of a run.
enum Witness {
    /// No monitor ran (it would have slowed the run down).
    NotWatched,
    /// The monitor never reported the end marker: it lost events.
    Lost,
    Seen(Seen),
}

impl Witness {
    /// Whether the kernel reported nothing.
    fn is_quiet(&self) -> bool {
        matches!(self, Witness::Seen(s) if s.events == 0 && s.commits == 0)
    }

    /// (events, commits) per run, as table cells.
    fn cells(&self, runs: usize) -> (String, String) {
        match self {
            Witness::NotWatched => ("not watched".into(), "–".into()),
            Witness::Lost => ("(monitor lost events)".into(), "–".into()),
            Witness::Seen(s) => (
                format!("{}", s.events / runs.max(1)),
                format!("{}", s.commits / runs.max(1)),
            ),
        }
    }
}

/// What the kernel reported in a monitor's window.
struct Seen {
    /// Object events (`add element …`, `delete rule …`): one per object.
    events: usize,
    /// Commits made by nftopo (`# new generation N by process P (nftopo)`).
    commits: usize,
    /// The first few events, for the report when there are any.
    first: Vec<String>,
}

impl Monitor {
    fn start(cfg: &Config, ns: &Netns) -> Monitor {
        let out = cfg.tmp.join(format!("monitor-{}.txt", ns.name()));
        let file = std::fs::File::create(&out).expect("monitor file");
        let err = file.try_clone().expect("monitor file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "nft", "monitor"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("nft monitor");
        let m = Monitor {
            child,
            out,
            ns: ns.name().to_string(),
        };
        // The monitor listens once it reports a marker of ours. It first
        // reads the ruleset into its cache, which a marker every 100 ms
        // kept from ever finishing at 3k services: the markers back off.
        let t = Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            m.nft("add table ip bench_start; delete table ip bench_start");
            let asked = Instant::now();
            while asked.elapsed() < wait {
                std::thread::sleep(Duration::from_millis(20));
                if m.text().contains("delete table ip bench_start") {
                    return m;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "nft monitor silent for 120 s: {}",
                m.text()
            );
            wait *= 2;
        }
    }

    fn nft(&self, script: &str) {
        run_ok(Command::new("ip").args(["netns", "exec", &self.ns, "nft", script]));
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Marks the end, waits for the monitor to report it, stops it.
    fn stop(mut self) -> Witness {
        // Dropping `self` then stops the monitor.
        match self.window() {
            Some(seen) => Witness::Seen(seen),
            None => Witness::Lost,
        }
    }

    /// What the kernel reported between the markers; None when the end
    /// never showed up (the monitor lost events).
    fn window(&mut self) -> Option<Seen> {
        self.nft("add table ip bench_end; delete table ip bench_end");
        let t = Instant::now();
        let text = loop {
            let text = self.text();
            if text.contains("add table ip bench_end") {
                break Some(text);
            }
            if t.elapsed() > Duration::from_secs(30) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = text?;
        let lines: Vec<&str> = text.lines().collect();
        let from = lines
            .iter()
            .rposition(|l| l.starts_with("delete table ip bench_start"))?;
        let to = lines
            .iter()
            .position(|l| l.starts_with("add table ip bench_end"))?;
        let window = &lines[from + 1..to];
        let events: Vec<&str> = window
            .iter()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .copied()
            .collect();
        Some(Seen {
            events: events.len(),
            commits: window
                .iter()
                .filter(|l| l.starts_with("# new generation") && l.ends_with("(nftopo)"))
                .count(),
            first: events.iter().take(3).map(|l| l.to_string()).collect(),
        })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

/// The arguments every apply and diff of `manifests` takes.
fn common(manifests: &Path) -> Vec<String> {
    [
        "--node",
        "node-0",
        "--manifests",
        manifests.to_str().unwrap(),
        "--cluster-cidr",
        CIDR,
    ]
    .map(String::from)
    .to_vec()
}

/// `nftopo apply` timed under GNU time, in `ns`: `timed_in_netns` makes
/// a fresh namespace for each run, and `nsenter` moves the command from
/// there into `ns`, which keeps its tables from one run to the next.
fn apply(nftopo: &Path, ns: &Netns, manifests: &Path) -> Sample {
    let net = format!("--net=/run/netns/{}", ns.name());
    let mut args = vec!["nsenter", &net, nftopo.to_str().unwrap(), "apply"];
    let rest = common(manifests);
    args.extend(rest.iter().map(String::as_str));
    timed_in_netns(&args).unwrap_or_else(|e| panic!("nftopo apply: {e}"))
}

/// `nftopo diff` in `ns`: the operations `apply` would send, one line
/// each (an element operation names all its elements on its line).
fn diff_lines(nftopo: &Path, ns: &Netns, manifests: &Path) -> usize {
    let rest = common(manifests);
    let mut args = vec!["diff"];
    args.extend(rest.iter().map(String::as_str));
    let out = ns.command(nftopo, &args).output().expect("nftopo diff");
    // Exit 0: in step; 1: differences; 2: an error.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "nftopo diff failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    assert_eq!(
        out.status.code() == Some(0),
        n == 0,
        "nftopo diff's exit code disagrees with its output"
    );
    n
}

/// Writes `src` with one endpoint replaced in every hundredth
/// EndpointSlice (1% of the services; gen-manifests writes one slice per
/// service, one endpoint per line); returns how many were changed.
fn one_percent_changed(src: &Path, dst: &Path) -> usize {
    let text = std::fs::read_to_string(src).expect("manifests");
    let mut out = String::with_capacity(text.len());
    let (mut slice, mut due, mut changed) = (0usize, false, 0u32);
    for line in text.lines() {
        if line == "kind: EndpointSlice" {
            due = slice.is_multiple_of(100);
            slice += 1;
        }
        match line.strip_prefix("- {addresses: [\"") {
            Some(rest) if due => {
                let (_, tail) = rest.split_once('"').expect("an address in quotes");
                // 10.250.0.0/16: outside gen-manifests' pod ranges.
                let ip = std::net::Ipv4Addr::from(0x0afa_0001 + changed);
                let _ = writeln!(out, "- {{addresses: [\"{ip}\"{tail}");
                changed += 1;
                due = false;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    std::fs::write(dst, out).expect("changed manifests");
    changed as usize
}

/// One apply's row: its sample, the operations `nftopo diff` announced
/// before it, what the monitor saw (per run).
struct Row {
    label: String,
    sample: Sample,
    diff: usize,
    seen: Witness,
    goal: String,
}

/// The fastest of `runs`, labelled with their number.
fn fastest(runs: Vec<Sample>) -> Sample {
    let n = runs.len();
    let mut best = runs
        .into_iter()
        .min_by(|a, b| a.wall.total_cmp(&b.wall))
        .expect("at least one run");
    best.runs = n;
    best
}

/// The applies at one size; returns the rows, the first apply first.
fn applies(cfg: &Config, n: usize, runs: usize, manifests: &Path) -> Vec<Row> {
    let nftopo = cfg.bin("nftopo");
    let changed_manifests = cfg.tmp.join(format!("{n}-changed.yaml"));
    let changed = one_percent_changed(manifests, &changed_manifests);
    assert_eq!(changed, n.div_ceil(100), "services changed");

    // 1. First apply: each run into a new, empty namespace (the last one
    //    is kept for the rest); a run over 8 s is not repeated, as in
    //    section 1.
    let mut firsts: Vec<Sample> = Vec::new();
    let mut ns: Option<Netns> = None;
    let mut first_diff = 0;
    while firsts.len() < runs && firsts.last().is_none_or(|s| s.wall <= 8.0) {
        if let Some(old) = ns.take() {
            // The kernel tears the old tables down in the background:
            // let it finish before the next run (as `timed_in_netns` does).
            drop(old);
            std::thread::sleep(Duration::from_secs(3));
        }
        let fresh = Netns::create(format!("{}-cv", unique_prefix())).expect("namespace");
        first_diff = diff_lines(&nftopo, &fresh, manifests);
        let s = apply(&nftopo, &fresh, manifests);
        eprintln!("bench: converge {n}: first apply {:.2}s", s.wall);
        ns = Some(fresh);
        firsts.push(s);
    }
    let ns = ns.expect("at least one run");
    let first = fastest(firsts);

    // 2. The same state again.
    let same_diff = diff_lines(&nftopo, &ns, manifests);
    let mon = Monitor::start(cfg, &ns);
    let same: Vec<Sample> = (0..runs).map(|_| apply(&nftopo, &ns, manifests)).collect();
    let same_seen = mon.stop();
    let unchanged = fastest(same);
    eprintln!(
        "bench: converge {n}: unchanged apply {:.2}s",
        unchanged.wall
    );

    // 3. 1% of the services changed: alternately the changed and the
    //    original manifests, each run a change of the same size.
    let one_diff = diff_lines(&nftopo, &ns, &changed_manifests);
    let mon = Monitor::start(cfg, &ns);
    let one: Vec<Sample> = (0..runs)
        .map(|i| {
            let m = if i % 2 == 0 {
                &changed_manifests
            } else {
                manifests
            };
            apply(&nftopo, &ns, m)
        })
        .collect();
    let one_seen = mon.stop();
    let one_pct = fastest(one);
    eprintln!("bench: converge {n}: 1% apply {:.2}s", one_pct.wall);
    let _ = std::fs::remove_file(&changed_manifests);

    vec![
        Row {
            label: "first apply, empty namespace (baseline)".into(),
            sample: first,
            diff: first_diff,
            seen: Witness::NotWatched,
            goal: "–".into(),
        },
        Row {
            label: "unchanged apply".into(),
            sample: unchanged,
            diff: same_diff,
            seen: same_seen,
            goal: format!("≥ {SPEEDUP_GOAL:.0}x faster than the first; 0 operations"),
        },
        Row {
            label: format!("apply after 1% changed ({changed} services: one endpoint replaced)"),
            sample: one_pct,
            diff: one_diff,
            seen: one_seen,
            goal: format!("operations follow the change ({changed} services)"),
        },
    ]
}

/// Seconds since the Unix epoch of a log line's leading RFC 3339 UTC
/// timestamp (`2025-01-31T12:00:00.123456Z  INFO …`).
fn log_time(line: &str) -> Option<f64> {
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
fn log_field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// VmHWM of a process, KiB.
fn hwm_kib(pid: u32) -> u64 {
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
struct Start {
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
fn start_daemon(cfg: &Config, ns: &Netns, kubeconfig: &Path, witness: bool) -> (Daemon, Start) {
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
fn restart(cfg: &Config, n: usize, runs: usize, manifests: &Path) -> String {
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
        &["get", "element", "ip", "nftopo", "service-ips", &key],
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

/// What nft-writer's `readback_bench` printed at one size.
struct ReadBack {
    /// Its table's lines: header, separator, row.
    table: Vec<String>,
    /// Its closing line (the load, the check against the plan).
    note: String,
}

/// nft-writer's `readback_bench` at one size; None when it is not built.
fn read_back_alone(cfg: &Config, manifests: &Path) -> Option<ReadBack> {
    let example = cfg.example("readback_bench")?;
    let out = run_ok(Command::new(&example).args([
        "--manifests",
        manifests.to_str().unwrap(),
        "--cluster-cidr",
        CIDR,
        "--runs",
        "5",
    ]));
    let (table, rest): (Vec<&str>, Vec<&str>) = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| l.starts_with('|'));
    Some(ReadBack {
        table: table.into_iter().map(str::to_string).collect(),
        note: rest.join(" "),
    })
}

/// Runs the section; returns its Markdown.
pub fn run(cfg: &Config) -> String {
    let sizes: &[usize] = if cfg.quick {
        &[1000, 3000]
    } else {
        &[1000, 10000, 30000]
    };
    let runs = if cfg.quick { 1 } else { 3 };
    // The daemon restart: at 10k (--quick: 3k).
    let main_size = if cfg.quick { 3000 } else { 10000 };
    let gen = cfg.bin("gen-manifests");
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## 7. Converge, never replace\n\n\
         `nftopo apply` reads nftopo's tables back from the kernel and sends only the \
         differences. N ClusterIP services x 10 endpoints (`gen-manifests`, as in section 1), \
         in a fresh network namespace per size: the first apply into the empty namespace \
         (the baseline; each run into a new namespace), the same apply again with nothing \
         changed, and the apply after one endpoint was replaced in 1% of the services (runs \
         alternate between the changed and the original manifests, so each run is a change \
         of that size). Wall time is the minimum of up to {runs} runs (`runs` column; a \
         first apply over 8 s is not repeated); user/sys CPU seconds and peak RSS from GNU \
         time. Operations: `nftopo diff` run just before (lines of `nft` commands: an \
         element operation names all its elements on one line), and, independently, `nft \
         monitor` in the namespace during the runs: the kernel's events (one per object: \
         element, rule, chain) and the commits nftopo made, per run. `first / this`: the \
         first apply's wall time over this one's, and the same for CPU time (user + sys), \
         which a busy machine disturbs less.\n"
    );
    let _ = writeln!(
        md,
        "| services | apply | wall s | user s | sys s | peak RSS MiB | runs | operations (`nftopo diff`) | kernel events (`nft monitor`) | nftopo commits | first / this: wall (CPU) | goal |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut verdicts = Vec::new();
    let mut read_backs: Vec<(usize, Option<ReadBack>)> = Vec::new();
    let mut main_manifests = None;
    for &n in sizes {
        let m = gen_manifests(
            &gen,
            n as u64,
            10,
            cfg.tmp.join(format!("converge-{n}.yaml")),
        )
        .expect("gen-manifests");
        let rows = applies(cfg, n, runs, &m);
        let base = rows[0].sample;
        let cpu = |s: &Sample| s.user + s.sys;
        for r in &rows {
            let (events, commits) = r.seen.cells(r.sample.runs);
            let s = &r.sample;
            let _ = writeln!(
                md,
                "| {n} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {} | {events} | {commits} | {:.1}x ({:.1}x) | {} |",
                r.label,
                s.wall,
                s.user,
                s.sys,
                s.rss_kib as f64 / 1024.0,
                s.runs,
                r.diff,
                base.wall / s.wall,
                cpu(&base) / cpu(s),
                r.goal
            );
        }
        let same = &rows[1];
        let speedup = base.wall / same.sample.wall;
        let zero = same.diff == 0 && same.seen.is_quiet();
        verdicts.push(format!(
            "{n}: the unchanged apply {speedup:.1}x as fast as the first ({}), {} operations \
             by `nftopo diff` and {} kernel events ({})",
            if speedup >= SPEEDUP_GOAL {
                "met"
            } else {
                "missed"
            },
            same.diff,
            same.seen.cells(same.sample.runs).0,
            if zero { "met" } else { "missed" }
        ));
        read_backs.push((n, read_back_alone(cfg, &m)));
        if n == main_size {
            main_manifests = Some(m);
        } else {
            let _ = std::fs::remove_file(&m);
        }
    }
    let _ = writeln!(
        md,
        "\nGoals (the unchanged apply at least {SPEEDUP_GOAL:.0}x as fast as the first, 0 \
         operations): {}.\n",
        verdicts.join("; ")
    );

    let _ = writeln!(
        md,
        "### Read-back alone\n\n\
         nft-writer's `readback_bench` example, in a namespace of its own, at each size: the \
         same manifests planned as `nftopo apply` plans them, loaded with one \
         `Transaction::replace`, then `NetlinkKernel::read_back()` timed in a child process \
         that does nothing else (so its memory is the read-back's): VmRSS before, the growth \
         while one read-back result is held, and VmHWM (peak) over all the read-backs. No \
         goal of its own: it is the floor of an unchanged apply and of a restart's first \
         sync.\n"
    );
    let mut header = false;
    let mut notes = Vec::new();
    for (n, out) in &read_backs {
        let Some(ReadBack { table, note }) = out else {
            let _ = writeln!(
                md,
                "Skipped: `readback_bench` not built (cargo build --release -p nft-writer \
                 --examples).\n"
            );
            break;
        };
        if !header {
            let _ = writeln!(md, "| services {}", table[0]);
            let _ = writeln!(md, "|---{}", table[1]);
            header = true;
        }
        for row in &table[2..] {
            let _ = writeln!(md, "| {n} {row}");
        }
        notes.push(format!("* {n}: {note}"));
    }
    if header {
        let _ = writeln!(md, "\n{}\n", notes.join("\n"));
    }
    let m = main_manifests.expect("the main size is one of the sizes");
    md.push_str(&restart(cfg, main_size, runs, &m));
    let _ = std::fs::remove_file(&m);
    md
}
