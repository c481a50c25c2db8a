//! Section 7: converge, never replace (issue 13). `nftopo apply` into an
//! empty namespace (the baseline), the same apply again with nothing
//! changed, and after 1% of the services changed; the read-back alone
//! (nft-writer's `readback_bench` example); and `nftopo run` restarted
//! over an unchanged cluster. Operations are counted twice: `nftopo diff`
//! before each apply (what nftopo would send), and `nft monitor` in the
//! namespace while it runs (what the kernel saw, an independent witness).

mod monitor;
mod restart;

use monitor::*;
use restart::*;

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
