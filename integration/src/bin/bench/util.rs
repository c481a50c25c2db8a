//! Process helpers of the benchmark: running commands, timing one under
//! GNU time in a fresh namespace, percentiles, and the machine's name.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One timed run: wall, user and system seconds, peak RSS.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: f64,
    pub user: f64,
    pub sys: f64,
    pub rss_kib: u64,
    /// How many runs the figure is the minimum of.
    pub runs: usize,
}

/// A binary built next to this one (`target/release/<name>`).
pub fn sibling(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.with_file_name(name)
}

/// Runs a command to completion; panics with its stderr on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The kernel tears a namespace with 100,000 objects down in the
/// background; let it finish so that it does not bill the next run.
fn settle(wall: f64) {
    let secs = (wall * 1.5).clamp(0.5, 3.0);
    std::thread::sleep(Duration::from_secs_f64(secs));
}

/// Runs `args` under GNU time inside a fresh network namespace; an error
/// carries the last lines of its stderr.
pub fn timed_in_netns(args: &[&str]) -> Result<Sample, String> {
    let ns = format!("nftopo-bench-{}", std::process::id());
    let _ = Command::new("ip")
        .args(["netns", "del", &ns])
        .stderr(Stdio::null())
        .status();
    run_ok(Command::new("ip").args(["netns", "add", &ns]));
    let t = std::time::Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %U %S %M", "ip", "netns", "exec", &ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("/usr/bin/time (apt-get install time)");
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    settle(t.elapsed().as_secs_f64());
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = err.lines().filter(|l| !l.starts_with("TIME ")).collect();
        let tail = tail[tail.len().saturating_sub(2)..].join(" / ");
        return Err(format!(
            "failed after {:.0} s: {tail}",
            t.elapsed().as_secs_f64()
        ));
    }
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .expect("GNU time output");
    let f: Vec<&str> = line.split_whitespace().collect();
    Ok(Sample {
        wall: f[1].parse().unwrap(),
        user: f[2].parse().unwrap(),
        sys: f[3].parse().unwrap(),
        rss_kib: f[4].parse().unwrap(),
        runs: 1,
    })
}

/// The fastest of up to `runs` runs; a run longer than `long` seconds
/// ends the series (its figure is then one run, and says so). The first
/// failure ends it with an error.
pub fn best(runs: usize, long: f64, args: &[&str]) -> Result<Sample, String> {
    let mut all: Vec<Sample> = Vec::new();
    for _ in 0..runs {
        let s = timed_in_netns(args)?;
        all.push(s);
        if s.wall > long {
            break;
        }
    }
    let n = all.len();
    let mut b = all
        .into_iter()
        .min_by(|a, b| a.wall.total_cmp(&b.wall))
        .expect("at least one run");
    b.runs = n;
    Ok(b)
}

/// Nearest-rank percentile (`p` in 0..=1) of unsorted values.
pub fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((s.len() as f64) * p).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// First line of a command's stdout, or "not installed".
fn version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| format!("{program}: not installed"))
}

/// Cores, CPU model, kernel and tool versions, as one Markdown list.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|k| format!("{:.0} GiB RAM", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = run_ok(Command::new("uname").arg("-r")).trim().to_string();
    format!(
        "* machine: {cores} cores, CPU model `{cpu}` (/proc/cpuinfo), {mem}\n\
         * kernel: Linux {kernel} (`uname -r`)\n\
         * `nft`: {}\n\
         * `iptables-restore`: {} (Debian 12's default: the nf_tables backend, iptables-nft)\n\
         * `iptables-legacy-restore`: {} (the x_tables backend)\n",
        version("nft", "--version"),
        version("iptables", "--version"),
        version("iptables-legacy", "--version"),
    )
}
