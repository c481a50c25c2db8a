//! `bench [--quick] [--out FILE]`: the full-sync benchmark. For several
//! sizes (services x 10 endpoints) it programs an empty network namespace
//! four ways, all on the same services, and writes a Markdown report:
//!
//! * `nftopo apply` (one netlink batch);
//! * `nft -f` of `nftopo render` (the same ruleset through nft);
//! * `nft -f` of kube-proxy's nftables layout for the same services
//!   (anonymous `numgen … vmap { … }` per service, endpoint chains, the
//!   `service-ips` map), generated here from kube-proxy's documented rule
//!   structure.
//!
//! Each figure is the minimum wall time of several runs (one run for
//! kube-proxy's layout, which is slow), with user and system CPU time and
//! peak RSS as GNU time reports them. Needs root, `nft` and `/usr/bin/time`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    user: f64,
    sys: f64,
    rss_kib: u64,
}

fn sibling(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.with_file_name(name)
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `args` under GNU time inside a fresh network namespace.
fn timed_in_netns(args: &[&str]) -> Sample {
    let ns = format!("nftopo-bench-{}", std::process::id());
    let _ = Command::new("ip")
        .args(["netns", "del", &ns])
        .stderr(std::process::Stdio::null())
        .status();
    run_ok(Command::new("ip").args(["netns", "add", &ns]));
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %U %S %M", "ip", "netns", "exec", &ns])
        .args(args)
        .output()
        .expect("/usr/bin/time (apt-get install time)");
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    // The kernel tears a namespace with 100,000 objects down in the
    // background; let it finish so that it does not bill the next run.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {err}");
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .expect("GNU time output");
    let f: Vec<&str> = line.split_whitespace().collect();
    Sample {
        wall: f[1].parse().unwrap(),
        user: f[2].parse().unwrap(),
        sys: f[3].parse().unwrap(),
        rss_kib: f[4].parse().unwrap(),
    }
}

fn best(runs: usize, args: &[&str]) -> Sample {
    (0..runs)
        .map(|_| timed_in_netns(args))
        .min_by(|a, b| a.wall.total_cmp(&b.wall))
        .expect("at least one run")
}

/// kube-proxy's nftables layout for the services in `render`'s output:
/// per service a chain that marks off-cluster traffic and spreads with an
/// anonymous `numgen random mod N vmap { … }`, per endpoint a chain with
/// the hairpin mark and the DNAT, and the `service-ips` map.
fn kube_proxy_layout(render: &str, cluster_cidr: &str) -> String {
    kube_proxy_body(&parse_services(render), cluster_cidr)
}

/// Reads `service . proto . port -> [ip:port]` from the `service-endpoints`
/// elements of `nftopo render` output ("10.43.0.1 . tcp . 80 . 3 :
/// 10.42.0.7 . 8080,").
fn parse_services(render: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut services: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in render.lines() {
        let l = line.trim().trim_end_matches(',');
        let parts: Vec<&str> = l.split(" : ").collect();
        if parts.len() != 2 {
            continue;
        }
        let key: Vec<&str> = parts[0].split(" . ").collect();
        let val: Vec<&str> = parts[1].split(" . ").collect();
        if key.len() == 4 && val.len() == 2 && key[0].parse::<std::net::IpAddr>().is_ok() {
            services
                .entry(format!("{} . {} . {}", key[0], key[1], key[2]))
                .or_default()
                .push(format!("{}:{}", val[0], val[1]));
        }
    }
    services
}

/// The layouts we measured before choosing ours, for the same services:
/// what each costs the kernel is why nftopo's layout looks as it does.
fn candidate_layout(render: &str, which: &str) -> String {
    let services = parse_services(render);
    let mut out = String::from(
        "table ip cand {\n\tchain pre {\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}\n\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}\n\tchain services {\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}\n",
    );
    if which == "shared" {
        out.push_str("\tmap eps {\n\t\ttypeof ip daddr . meta l4proto . th dport . numgen random mod 1 : verdict\n\t}\n");
    }
    let mut svc_elems = Vec::new();
    let mut ep_elems = Vec::new();
    let mut spreads = std::collections::BTreeSet::new();
    for (i, (key, eps)) in services.iter().enumerate() {
        let n = eps.len();
        for (j, ep) in eps.iter().enumerate() {
            let (ip, port) = ep.split_once(':').unwrap();
            let _ = writeln!(
                out,
                "\tchain ep-{i}-{j} {{\n\t\tmeta l4proto tcp dnat to {ip}:{port}\n\t}}"
            );
        }
        let body = match which {
            "per-service-maps" => {
                let elems: Vec<String> = (0..n).map(|j| format!("{j} : goto ep-{i}-{j}")).collect();
                let _ = writeln!(
                    out,
                    "\tmap m{i} {{\n\t\ttypeof numgen random mod 1 : verdict\n\t\telements = {{ {} }}\n\t}}",
                    elems.join(", ")
                );
                format!("numgen random mod {n} vmap @m{i}")
            }
            "shared" => {
                spreads.insert(n);
                for j in 0..n {
                    ep_elems.push(format!("{key} . {j} : goto ep-{i}-{j}"));
                }
                format!("goto spread-{n}")
            }
            _ => (0..n)
                .map(|j| {
                    if j + 1 == n {
                        format!("goto ep-{i}-{j}")
                    } else {
                        format!("numgen random mod {} 0 goto ep-{i}-{j}", n - j)
                    }
                })
                .collect::<Vec<_>>()
                .join("\n\t\t"),
        };
        let _ = writeln!(out, "\tchain svc-{i} {{\n\t\t{body}\n\t}}");
        svc_elems.push(format!("{key} : goto svc-{i}"));
    }
    for n in spreads {
        let _ = writeln!(
            out,
            "\tchain spread-{n} {{\n\t\tip daddr . meta l4proto . th dport . numgen random mod {n} vmap @eps\n\t}}"
        );
    }
    out.push_str("}\n");
    let _ = writeln!(
        out,
        "add element ip cand service-ips {{ {} }}",
        svc_elems.join(", ")
    );
    if !ep_elems.is_empty() {
        let _ = writeln!(out, "add element ip cand eps {{ {} }}", ep_elems.join(", "));
    }
    out
}

fn kube_proxy_body(
    services: &std::collections::BTreeMap<String, Vec<String>>,
    cluster_cidr: &str,
) -> String {
    let mut out = String::from("table ip kube-proxy {\n");
    out.push_str("\tchain mark-for-masquerade {\n\t\tmeta mark set meta mark | 0x00004000\n\t}\n");
    out.push_str("\tchain masquerading {\n\t\tmeta mark & 0x00004000 == 0x00000000 return\n\t\tmeta mark set meta mark ^ 0x00004000\n\t\tmasquerade fully-random\n\t}\n");
    out.push_str("\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}\n");
    out.push_str("\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}\n");
    out.push_str("\tchain nat-postrouting {\n\t\ttype nat hook postrouting priority 100; policy accept;\n\t\tjump masquerading\n\t}\n");
    out.push_str(
        "\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}\n",
    );
    out.push_str(
        "\tchain services {\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}\n",
    );
    let mut elements = Vec::new();
    for (i, (key, eps)) in services.iter().enumerate() {
        let svc = format!("service-{i:08X}-bench/svc-{i}/tcp/p80");
        let mut vmap = Vec::new();
        for (j, ep) in eps.iter().enumerate() {
            let (ip, port) = ep.split_once(':').unwrap();
            let epc = format!("endpoint-{i:08X}-{j}-bench/svc-{i}/tcp/p80__{ip}/{port}");
            let _ = writeln!(
                out,
                "\tchain {epc} {{\n\t\tip saddr {ip} jump mark-for-masquerade\n\t\tmeta l4proto tcp dnat to {ip}:{port}\n\t}}"
            );
            vmap.push(format!("{j} : goto {epc}"));
        }
        let ip = key.split(' ').next().unwrap();
        let _ = writeln!(
            out,
            "\tchain {svc} {{\n\t\tip daddr {ip} tcp dport 80 ip saddr != {cluster_cidr} jump mark-for-masquerade\n\t\tnumgen random mod {} vmap {{ {} }}\n\t}}",
            eps.len(),
            vmap.join(", ")
        );
        elements.push(format!("{key} : goto {svc}"));
    }
    out.push_str("}\n");
    if !elements.is_empty() {
        let _ = writeln!(
            out,
            "add element ip kube-proxy service-ips {{ {} }}",
            elements.join(", ")
        );
    }
    out
}

fn machine() -> String {
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
    let kernel = run_ok(Command::new("uname").arg("-r")).trim().to_string();
    let nft = run_ok(Command::new("nft").arg("--version"))
        .trim()
        .to_string();
    format!("{cores} cores ({cpu}), Linux {kernel}, {nft}")
}

fn row(label: &str, s: &Sample, base: &Sample) -> String {
    format!(
        "| {label} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1}x |",
        s.wall,
        s.user,
        s.sys,
        s.rss_kib as f64 / 1024.0,
        s.wall / base.wall
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out_path = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("BENCHMARKS.md"));
    let sizes: &[usize] = if quick {
        &[1000, 3000]
    } else {
        &[1000, 3000, 5000, 10000]
    };
    let kp_max = if quick { 1000 } else { 10000 };
    let runs = if quick { 1 } else { 3 };
    let cidr = "10.0.0.0/8";
    let dir = std::env::temp_dir().join(format!("nftopo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nftopo = sibling("nftopo");
    let gen = sibling("gen-manifests");
    for p in [&nftopo, &gen] {
        assert!(
            Path::new(p).exists(),
            "{} missing: cargo build --release --workspace --bins",
            p.display()
        );
    }

    let mut report = String::new();
    let _ = writeln!(report, "# Benchmarks\n");
    let _ = writeln!(report, "Machine: {}.\n", machine());
    let _ = writeln!(
        report,
        "Full sync of N ClusterIP services x 10 endpoints into an empty network namespace; \
         minimum wall time of {runs} run(s) (kube-proxy's layout: 1 run), user/sys CPU seconds and \
         peak RSS from GNU time; ratio = wall time / nftopo apply's wall time in the same run. \
         Produced by `make bench` (`bench{}`).\n",
        if quick { " --quick" } else { "" }
    );
    let _ = writeln!(
        report,
        "| services | method | wall s | user s | sys s | peak RSS MiB | ratio |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|");
    for &n in sizes {
        let manifests = dir.join(format!("{n}.yaml"));
        let m = manifests.to_str().unwrap().to_string();
        run_ok(Command::new(&gen).args([
            "--services",
            &n.to_string(),
            "--endpoints",
            "10",
            "--out",
            &m,
        ]));
        let common = [
            "--node",
            "node-0",
            "--manifests",
            &m,
            "--cluster-cidr",
            cidr,
        ];
        let render = run_ok(Command::new(&nftopo).arg("render").args(common));
        let script = dir.join(format!("{n}.nft"));
        std::fs::write(&script, &render).unwrap();
        let apply = best(
            runs,
            &[&[nftopo.to_str().unwrap(), "apply"][..], &common[..]].concat(),
        );
        let via_nft = best(runs, &["nft", "-f", script.to_str().unwrap()]);
        eprintln!(
            "{n}: nftopo apply {:.2}s, nft -f render {:.2}s",
            apply.wall, via_nft.wall
        );
        let _ = writeln!(
            report,
            "{}",
            row(&format!("{n} | nftopo apply"), &apply, &apply)
        );
        let _ = writeln!(
            report,
            "{}",
            row(&format!("{n} | nft -f (nftopo render)"), &via_nft, &apply)
        );
        if n <= kp_max {
            let kp = dir.join(format!("{n}-kube-proxy.nft"));
            std::fs::write(&kp, kube_proxy_layout(&render, cidr)).unwrap();
            let s = best(1, &["nft", "-f", kp.to_str().unwrap()]);
            eprintln!("{n}: nft -f kube-proxy layout {:.2}s", s.wall);
            let _ = writeln!(
                report,
                "{}",
                row(&format!("{n} | nft -f (kube-proxy's layout)"), &s, &apply)
            );
        }
    }
    // The layouts considered for nftopo, through nft -f at the largest size.
    let n = *sizes.last().unwrap();
    let render = std::fs::read_to_string(dir.join(format!("{n}.nft"))).unwrap();
    let ours = best(
        1,
        &["nft", "-f", dir.join(format!("{n}.nft")).to_str().unwrap()],
    );
    let _ = writeln!(
        report,
        "\n## Layout candidates ({n} services x 10 endpoints, `nft -f`, 1 run each)\n\n\
         Why nftopo spreads with `spread-N` chains over one shared map: the alternatives, \
         generated for the same services and loaded the same way.\n"
    );
    let _ = writeln!(
        report,
        "| layout | wall s | user s | sys s | peak RSS MiB | ratio |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|");
    let _ = writeln!(
        report,
        "{}",
        row(
            "nftopo: `spread-N` chains, one shared dnat map, no endpoint chains",
            &ours,
            &ours
        )
    );
    for (which, label) in [
        (
            "per-service-maps",
            "a named verdict map per service, endpoint chains",
        ),
        (
            "shared",
            "`spread-N` chains, one shared verdict map, endpoint chains",
        ),
        (
            "probability",
            "no sets: `numgen random mod (N-i)` rules, endpoint chains",
        ),
    ] {
        let path = dir.join(format!("{n}-{which}.nft"));
        std::fs::write(&path, candidate_layout(&render, which)).unwrap();
        let s = best(1, &["nft", "-f", path.to_str().unwrap()]);
        eprintln!("{n}: candidate {which} {:.2}s", s.wall);
        let _ = writeln!(report, "{}", row(label, &s, &ours));
    }
    std::fs::remove_dir_all(&dir).ok();
    // Incremental syncs through the daemon's code path (an example of
    // nft-writer, built by `make bench`).
    let incremental = sibling("examples").join("incremental_bench");
    if incremental.exists() {
        let (services, changes) = if quick {
            ("1000", "50")
        } else {
            ("10000", "200")
        };
        let out =
            run_ok(Command::new(&incremental).args(["--services", services, "--changes", changes]));
        let _ = writeln!(
            report,
            "\n## Incremental syncs ({services} services x 10 endpoints, {changes} changes of each kind)\n\n\
             One change at a time through the daemon's path: plan (topology filter and ruleset, \
             both over the whole cluster), then diff against the last applied ruleset and one \
             netlink batch. The goal is 20 messages or fewer for a single change.\n\n{out}"
        );
    }
    // Hand-written reading of the figures, kept next to the code.
    let notes = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-notes.md");
    if let Ok(text) = std::fs::read_to_string(&notes) {
        let _ = write!(report, "\n{text}");
    }
    std::fs::write(&out_path, &report).unwrap();
    print!("{report}");
}
