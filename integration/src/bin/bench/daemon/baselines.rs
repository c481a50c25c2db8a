//! What a user would load instead of nftopo's first sync at the largest
//! size: kube-proxy's rulesets (section 1's layouts) through `nft -f`,
//! `iptables-restore` and `iptables-legacy-restore`. At 100k services
//! they would take from minutes to hours (kube-proxy's nftables layout
//! grows faster than the square of the services: 211 s at 10k in section
//! 1), so each is measured at two smaller sizes and estimated at the
//! largest from its growth between them (t ~ n^k), and labelled as an
//! estimate. The
//! load alone is a lower bound of kube-proxy's first sync: its own
//! computation in Go comes on top.

use std::fmt::Write as _;
use std::process::Command;

use nftopo_integration::gen_manifests;

use crate::layouts::{iptables_layout, kube_proxy_layout, parse_services};
use crate::util::{best, have, run_ok};
use crate::Config;

use super::Point;

/// The cluster CIDR every layout treats as "inside" (as section 1).
const CIDR: &str = "10.0.0.0/8";

/// One method: the two sizes it was loaded at and its wall seconds there
/// (or why not).
pub struct Estimate {
    pub label: &'static str,
    pub small: [usize; 2],
    pub measured: Result<[f64; 2], String>,
}

/// The methods, to be extrapolated to `target`.
pub struct Estimates {
    pub target: usize,
    pub rows: Vec<Estimate>,
}

impl Estimate {
    /// The growth exponent k and the estimate at `target`.
    fn at(&self, target: usize) -> Option<(f64, f64)> {
        let [t1, t2] = *self.measured.as_ref().ok()?;
        let ratio = self.small[1] as f64 / self.small[0] as f64;
        // Below 1 the fixed start-up cost dominates; assume linear then.
        let k = ((t2 / t1).ln() / ratio.ln()).max(1.0);
        Some((k, t2 * (target as f64 / self.small[1] as f64).powf(k)))
    }
}

/// What is loaded, how, and at which two sizes.
struct Method {
    label: &'static str,
    program: &'static str,
    small: [usize; 2],
}

/// Loads each layout at its two sizes (one run each, in a fresh
/// namespace, as section 1 does). The sizes are as large as the time
/// allows: kube-proxy's nftables layout grows faster than n^2 in that
/// range (section 1: 211 s at 10k), so a fit over 1k to 3k would
/// underestimate it several times.
pub fn run(cfg: &Config, target: usize) -> Estimates {
    let nftopo = cfg.bin("nftopo");
    let gen = cfg.bin("gen-manifests");
    let (kp, ipt): ([usize; 2], [usize; 2]) = if cfg.quick {
        ([300, 1000], [300, 1000])
    } else {
        ([3000, 5000], [3000, 10000])
    };
    let methods = [
        Method {
            label: "`nft -f`, kube-proxy's nftables layout",
            program: "nft",
            small: kp,
        },
        Method {
            label: "`iptables-restore` (nft backend), kube-proxy's iptables layout",
            program: "iptables-restore",
            small: ipt,
        },
        Method {
            label: "`iptables-legacy-restore`, kube-proxy's iptables layout",
            program: "iptables-legacy-restore",
            small: ipt,
        },
    ];
    let mut sizes: Vec<usize> = methods.iter().flat_map(|m| m.small).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut times: Vec<Result<Vec<f64>, String>> = methods
        .iter()
        .map(|m| {
            if have(m.program) {
                Ok(Vec::new())
            } else {
                Err(format!("{} not installed", m.program))
            }
        })
        .collect();
    for n in sizes {
        let m = gen_manifests(
            &gen,
            n as u64,
            10,
            cfg.tmp.join(format!("daemon-est-{n}.yaml")),
        )
        .expect("gen-manifests");
        let m = m.to_str().unwrap().to_string();
        let render = run_ok(Command::new(&nftopo).args([
            "render",
            "--node",
            "node-0",
            "--manifests",
            &m,
            "--cluster-cidr",
            CIDR,
        ]));
        let _ = std::fs::remove_file(&m);
        for (method, times) in methods.iter().zip(&mut times) {
            let Ok(done) = times else { continue };
            if !method.small.contains(&n) {
                continue;
            }
            let file = cfg.tmp.join(format!("daemon-est-{n}-{}", method.program));
            let text = if method.program == "nft" {
                kube_proxy_layout(&render, CIDR)
            } else {
                let services = parse_services(&render);
                let list: Vec<_> = services.iter().collect();
                iptables_layout(&list, CIDR)
            };
            std::fs::write(&file, text).unwrap();
            let mut args = vec![method.program];
            if method.program == "nft" {
                args.push("-f");
            }
            args.push(file.to_str().unwrap());
            let r = best(1, 0.0, &args);
            let _ = std::fs::remove_file(&file);
            match r {
                Ok(s) => {
                    eprintln!("bench: estimate: {n}: {} {:.2} s", method.program, s.wall);
                    done.push(s.wall);
                }
                Err(e) => *times = Err(format!("failed at {n}: {e}")),
            }
        }
    }
    let rows = methods
        .iter()
        .zip(times)
        .map(|(m, t)| Estimate {
            label: m.label,
            small: m.small,
            measured: t.map(|v| [v[0], v[1]]),
        })
        .collect();
    Estimates { target, rows }
}

/// Seconds with two significant digits or so.
fn secs(t: f64) -> String {
    if t < 10.0 {
        format!("{t:.2}")
    } else {
        format!("{t:.0}")
    }
}

/// The table: nftopo's measured first sync at the largest size next to
/// the estimates.
pub fn markdown(e: &Estimates, largest: Option<&Point>, quick: bool) -> String {
    let n = e.target;
    let why = if quick {
        "--quick: the full run's method at its largest size (100k), here at a small one"
    } else {
        "that would take from minutes to hours"
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### First sync at {n} services against loading kube-proxy's rules\n\n\
         kube-proxy's rules for {n} services are not loaded ({why}). Each of its rulesets (section 1's layouts, generated for the same kind of \
         services) is loaded at two smaller sizes, one run each in a fresh namespace, and \
         its time at {n} is **estimated** from the growth between the two (t ~ n^k, k from \
         the two runs, at least 1): the `estimated` figures are extrapolations, not runs. \
         Loading is only part of kube-proxy's first sync (its own computation comes on \
         top), so they are lower bounds of it. nftopo's row is measured (the table above).\n"
    );
    let _ = writeln!(
        md,
        "| method | measured at | growth | {n} services s | ratio to nftopo |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let ours = largest.map_or(f64::NAN, |p| p.session.first_sync_s);
    if let Some(p) = largest {
        let _ = writeln!(
            md,
            "| `nftopo run`, first sync from start | {} services (measured) | – | {} | 1.0x |",
            p.services,
            secs(p.session.first_sync_s)
        );
    }
    for r in &e.rows {
        let [a, b] = r.small;
        match (&r.measured, r.at(n)) {
            (Ok([t1, t2]), Some((k, est))) => {
                let _ = writeln!(
                    md,
                    "| {} | {a}: {} s, {b}: {} s | n^{k:.1} | {} (estimated) | {:.0}x (estimated) |",
                    r.label,
                    secs(*t1),
                    secs(*t2),
                    secs(est),
                    est / ours
                );
            }
            (Err(why), _) => {
                let _ = writeln!(md, "| {} | – | – | not estimated: {why} | – |", r.label);
            }
            _ => {}
        }
    }
    md.push('\n');
    md
}
