//! [`Monitor`]: watches the kernel while nftopo converges it, to see
//! whether traffic state survives.

use super::*;

/// `nft monitor` running in a namespace, writing to a file. A table added
/// and deleted before (`bench_start`) and one added after (`bench_end`)
/// mark the window: only what the kernel reported between them counts,
/// and a monitor that never listened, or lost events, cannot read as "no
/// events". (The tests' `nftopo_integration::NftMonitor` waits a fixed
/// 300 ms instead, too short for `nft monitor` to start at this size.)
pub(super) struct Monitor {
    child: Child,
    out: PathBuf,
    ns: String,
}

/// What `nft monitor` witnessed of a run.
pub(super) enum Witness {
    /// No monitor ran (it would have slowed the run down).
    NotWatched,
    /// The monitor never reported the end marker: it lost events.
    Lost,
    Seen(Seen),
}

impl Witness {
    /// Whether the kernel reported nothing.
    pub(super) fn is_quiet(&self) -> bool {
        matches!(self, Witness::Seen(s) if s.events == 0 && s.commits == 0)
    }

    /// (events, commits) per run, as table cells.
    pub(super) fn cells(&self, runs: usize) -> (String, String) {
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
pub(super) struct Seen {
    /// Object events (`add element …`, `delete rule …`): one per object.
    pub(super) events: usize,
    /// Commits made by nftopo (`# new generation N by process P (nftopo)`).
    commits: usize,
    /// The first few events, for the report when there are any.
    pub(super) first: Vec<String>,
}

impl Monitor {
    pub(super) fn start(cfg: &Config, ns: &Netns) -> Monitor {
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
    pub(super) fn stop(mut self) -> Witness {
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
