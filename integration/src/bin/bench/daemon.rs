//! Sections 4 and 5: `nftopo run` against the API server stand-in
//! holding N services x 10 endpoints, at 1k, 10k, 30k and 100k services
//! (`--quick`: 1k and 3k). Its memory (VmHWM, VmRSS, from /proc/PID/status)
//! next to the same daemon on an empty cluster, its first sync (from its
//! start and from the moment the stand-in served the last list), what
//! loading kube-proxy's rules would take at the largest size (estimated
//! from smaller sizes), and the time from the stand-in applying an
//! EndpointSlice change to the element in the kernel at every size
//! (daemon-reported, kernel-checked; see the section text).

mod baselines;
mod curve;
mod objects;
mod session;
mod witness;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use nftopo_integration::NFTOPO_BIN_ENV;

use crate::Config;
use session::{mem, mib, Changes, Mem, Session};

/// One size of the run: services, changes of each direction.
struct Size {
    services: u32,
    changes: u32,
}

/// The sizes: the goals are at 10k (memory, event to kernel) and
/// 100k (first sync, memory; event to kernel against 1k). 500 changes of
/// each direction at 10k are the "after 1,000 changes".
/// `$NFTOPO_BENCH_DAEMON_SIZES` (services, comma-separated) picks others
/// for a run by hand (under a heap profiler, say).
fn sizes(quick: bool) -> Vec<Size> {
    let s = |services, changes| Size { services, changes };
    if let Some(list) = std::env::var_os("NFTOPO_BENCH_DAEMON_SIZES") {
        return list
            .to_string_lossy()
            .split(',')
            .map(|n| {
                s(
                    n.trim()
                        .parse()
                        .expect("NFTOPO_BENCH_DAEMON_SIZES: numbers"),
                    500,
                )
            })
            .collect();
    }
    if quick {
        vec![s(1000, 20), s(3000, 20)]
    } else {
        vec![s(1000, 500), s(10000, 500), s(30000, 500), s(100000, 500)]
    }
}

/// What one size gave.
pub struct Point {
    pub services: u32,
    pub session: SessionFigures,
    pub loaded: Mem,
    pub after: Mem,
    pub changes: Changes,
}

/// The session's timings, kept once the daemon is gone.
pub struct SessionFigures {
    pub fill_s: f64,
    pub standin_rss: u64,
    pub first_sync_s: f64,
    pub lists_s: f64,
    pub after_lists_s: f64,
    pub standin_cpu_s: f64,
    pub sync_own_s: Option<f64>,
}

impl SessionFigures {
    fn of(s: &Session) -> Self {
        SessionFigures {
            fill_s: s.fill_s,
            standin_rss: s.standin_rss,
            first_sync_s: s.first_sync_s,
            lists_s: s.lists_s,
            after_lists_s: s.after_lists_s,
            standin_cpu_s: s.standin_cpu_s,
            sync_own_s: s.sync_own_s,
        }
    }
}

/// The static binary `make static` builds (what the Debian package and the
/// image ship), or `$NFTOPO_BENCH_DAEMON` (another build, or a wrapper that
/// execs one under a heap profiler); panics with how to build it.
fn static_bin() -> std::path::PathBuf {
    let p = std::env::var_os("NFTOPO_BENCH_DAEMON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/packaging/static/nftopo")
        });
    assert!(
        p.is_file(),
        "{} missing: make static (make bench builds it)",
        p.display()
    );
    p
}

/// Runs the sections; returns their Markdown.
pub fn run(cfg: &Config) -> String {
    // The daemon's debug logs would be the largest part of its work.
    std::env::set_var("NFTOPO_LOG", "info");
    // The binary must keep its memory down by itself: what the systemd
    // unit and the DaemonSet set is not set here.
    for var in [
        "MALLOC_ARENA_MAX",
        "GLIBC_TUNABLES",
        "MALLOC_TRIM_THRESHOLD_",
    ] {
        std::env::remove_var(var);
    }
    // The shipped binary (`make static`, which `make bench` builds), for
    // this section only.
    let before = std::env::var_os(NFTOPO_BIN_ENV);
    std::env::set_var(NFTOPO_BIN_ENV, static_bin());
    let md = measure(cfg);
    match before {
        Some(v) => std::env::set_var(NFTOPO_BIN_ENV, v),
        None => std::env::remove_var(NFTOPO_BIN_ENV),
    }
    md
}

/// Starts the daemon on `size` services, reads its memory, runs the
/// change series, reads it again, stops it.
fn point(cfg: &Config, size: &Size) -> Point {
    let t = Instant::now();
    let mut s = session::start(cfg, size.services);
    std::thread::sleep(Duration::from_secs(1));
    let pid = s.daemon.pid().expect("pid");
    let loaded = mem(pid);
    eprintln!(
        "bench: daemon at {}: stand-in filled in {:.1} s ({:.0} MiB), lists {:.1} s \
         (stand-in CPU {:.1} s), first sync {:.1} s from start, {:.2} s after the lists, \
         VmHWM {:.0} MiB, VmRSS {:.0} MiB",
        size.services,
        s.fill_s,
        mib(s.standin_rss),
        s.lists_s,
        s.standin_cpu_s,
        s.first_sync_s,
        s.after_lists_s,
        mib(loaded.hwm),
        mib(loaded.rss)
    );
    let changes = session::change_series(&s, size.changes);
    let after = mem(pid);
    eprintln!(
        "bench: daemon at {}: {} changes in {:.0} s ({:.1} s of it {} kernel checks), \
         VmHWM {:.0} MiB, VmRSS {:.0} MiB; {:.0} s in all",
        size.services,
        2 * size.changes,
        changes.wall_s,
        changes.check_s,
        changes.checked,
        mib(after.hwm),
        mib(after.rss),
        t.elapsed().as_secs_f64()
    );
    let figures = SessionFigures::of(&s);
    let _ = s.daemon.terminate(Duration::from_secs(30));
    drop(s);
    // The kernel frees a namespace of a million objects in the
    // background: let it, so that it does not bill the next size.
    std::thread::sleep(Duration::from_secs_f64(
        (size.services as f64 / 20000.0).clamp(0.5, 10.0),
    ));
    Point {
        services: size.services,
        session: figures,
        loaded,
        after,
        changes,
    }
}

fn measure(cfg: &Config) -> String {
    let sizes = sizes(cfg.quick);
    // Baseline: the same daemon on an empty cluster (three nodes).
    let empty = {
        let mut s = session::start(cfg, 0);
        std::thread::sleep(Duration::from_secs(1));
        let m = mem(s.daemon.pid().expect("pid"));
        let _ = s.daemon.terminate(Duration::from_secs(5));
        (SessionFigures::of(&s), m)
    };
    let mut points = Vec::new();
    let mut took = Vec::new();
    for size in &sizes {
        let t = Instant::now();
        points.push(point(cfg, size));
        took.push(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let largest = sizes.last().map_or(0, |s| s.services) as usize;
    let estimates = baselines::run(cfg, largest);
    let baselines_s = t.elapsed().as_secs_f64();
    let timing = format!(
        "Time taken by this section: {} (each: filling the stand-in, the daemon's start, \
         the changes and their kernel checks), {:.0} s for the estimates' small loads.",
        sizes
            .iter()
            .zip(&took)
            .map(|(s, t)| format!("{:.0} s at {}", t, s.services))
            .collect::<Vec<_>>()
            .join(", "),
        baselines_s
    );
    let mut md = memory_section(cfg.quick, &empty, &points, &estimates);
    let _ = writeln!(md, "{timing}\n");
    md.push_str(&curve::section(cfg, &points));
    md
}

/// "met" or "missed by Y.Yx", with the figure, for a figure that must stay
/// at or below `goal`.
pub fn verdict(value: f64, goal: f64, unit: &str) -> String {
    let shown = if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.2} {unit}")
    };
    let ratio = value / goal;
    if value.is_nan() {
        "not measured in this run".into()
    } else if value <= goal {
        format!("**met** ({shown})")
    } else if ratio < 1.1 {
        format!("**missed** by {ratio:.2}x ({shown})")
    } else {
        format!("**missed** by {ratio:.1}x ({shown})")
    }
}

fn memory_section(
    quick: bool,
    empty: &(SessionFigures, Mem),
    points: &[Point],
    estimates: &baselines::Estimates,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## 4. Memory and first sync\n\n\
         The shipped static binary (`make static`) as `nftopo run`, in a namespace of its own \
         against the API server stand-in (`integration/src/apiserver`), with no allocator \
         environment variable set (`MALLOC_ARENA_MAX` and `GLIBC_TUNABLES` removed). The \
         objects are realistic: `managedFields` of two managers, uid, `ownerReferences` and \
         annotations (the Services' `last-applied-configuration`), each endpoint with its \
         Pod as `targetRef`, its zone and all three conditions. From /proc/PID/status: VmHWM \
         (peak RSS), VmRSS, and RSS split into anonymous memory and mapped files (the \
         binary), 1 s after the first sync and after the changes of section 5. Baseline: the \
         same daemon on a cluster of three nodes and no services, in the same run.\n\n\
         `from start`: from starting the daemon to the end of its first sync (the daemon's \
         own `kubeproxy_sync_proxy_rules_last_timestamp_seconds`, set when the kernel has \
         acknowledged the transaction). `after the lists`: from the moment the stand-in \
         wrote the last byte of the last of the four first lists the daemon waits for \
         (Services, EndpointSlices, Nodes, ServiceCIDRs; kube-rs lists in pages of 500, so \
         the last page's) to that same end of the first sync: decoding the last page, the \
         plan of every Service, the ruleset and its one transaction.\n"
    );
    let _ = writeln!(
        md,
        "| cluster | first sync from start s | after the lists s | VmHWM MiB | VmRSS MiB | \
         RssAnon MiB | RssFile MiB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let row = |md: &mut String, label: &str, times: Option<&SessionFigures>, m: &Mem| {
        let (a, b) = times.map_or(("–".into(), "–".into()), |f| {
            (
                format!("{:.2}", f.first_sync_s),
                format!("{:.2}", f.after_lists_s),
            )
        });
        let _ = writeln!(
            md,
            "| {label} | {a} | {b} | {:.0} | {:.0} | {:.0} | {:.0} |",
            mib(m.hwm),
            mib(m.rss),
            mib(m.anon),
            mib(m.file)
        );
    };
    row(
        &mut md,
        "3 nodes, no services (baseline)",
        Some(&empty.0),
        &empty.1,
    );
    for p in points {
        row(
            &mut md,
            &format!(
                "{} services x 10 endpoints, after the first sync",
                p.services
            ),
            Some(&p.session),
            &p.loaded,
        );
        row(
            &mut md,
            &format!(
                "the same after {} EndpointSlice changes",
                p.changes.added.len() + p.changes.removed.len()
            ),
            None,
            &p.after,
        );
    }
    let at = |n: u32| points.iter().find(|p| p.services == n);
    let hwm = |n: u32| at(n).map_or(f64::NAN, |p| mib(p.after.hwm.max(p.loaded.hwm)));
    let _ = writeln!(md, "\nGoals, from the figures above:\n");
    let _ = writeln!(
        md,
        "* VmHWM at 10k x 10 ≤ 64 MiB (after the first sync and after 1,000 changes): {}",
        verdict(hwm(10000), 64.0, "MiB")
    );
    let _ = writeln!(
        md,
        "* 100k x 10: first sync ≤ 15 s after the lists complete: {}; VmHWM ≤ 512 MiB: {}",
        verdict(
            at(100000).map_or(f64::NAN, |p| p.session.after_lists_s),
            15.0,
            "s"
        ),
        verdict(hwm(100000), 512.0, "MiB")
    );
    let _ = writeln!(md);
    let per_service =
        |p: &Point| (p.after.rss.max(p.loaded.rss) as f64 - empty.1.rss as f64) / p.services as f64;
    let _ = writeln!(
        md,
        "Resident memory per service above the baseline: {}. The daemon's own timer of its \
         first sync (`first sync done seconds=`, the transaction's part): {}.\n",
        points
            .iter()
            .map(|p| format!("{:.1} KiB at {}", per_service(p), p.services))
            .collect::<Vec<_>>()
            .join(", "),
        points
            .iter()
            .map(|p| match p.session.sync_own_s {
                Some(s) => format!("{s:.2} s at {}", p.services),
                None => format!("not logged at {}", p.services),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        md,
        "The stand-in (threads of the bench process) used {} of CPU from the daemon's start to \
         its first sync, against the lists' wall time of {}: the share of the lists it can \
         account for at most. Filled with its objects, the bench process held {}.\n",
        points
            .iter()
            .map(|p| format!("{:.1} s at {}", p.session.standin_cpu_s, p.services))
            .collect::<Vec<_>>()
            .join(", "),
        points
            .iter()
            .map(|p| format!(
                "{:.1} s ({:.0}%)",
                p.session.lists_s,
                100.0 * p.session.standin_cpu_s / p.session.lists_s
            ))
            .collect::<Vec<_>>()
            .join(", "),
        points
            .last()
            .map(|p| format!(
                "{:.0} MiB at {} services and took {:.0} s to fill",
                mib(p.session.standin_rss),
                p.services,
                p.session.fill_s
            ))
            .unwrap_or_default()
    );
    md.push_str(&baselines::markdown(estimates, points.last(), quick));
    md
}
