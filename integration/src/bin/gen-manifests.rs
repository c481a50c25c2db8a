//! `gen-manifests --services N --endpoints E [--nodes K] [--out FILE]`:
//! writes a synthetic cluster as multi-document YAML for benchmarks:
//! K Nodes (default 3), N ClusterIP Services `bench/svc-<i>` (port 80/TCP
//! → 8080) with unique cluster IPs, and for each one discovery.k8s.io/v1
//! EndpointSlice of E ready endpoints with unique pod IPs, spread over the
//! nodes round-robin.
//!
//! Cluster IPs come from 10.43.0.0/16, or 10.96.0.0/12 when N > 65,534;
//! pod IPs from 10.42.0.0/16, or 10.64.0.0/10 when N x E > 65,534.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::process::ExitCode;

const USAGE: &str = "usage: gen-manifests --services N --endpoints E [--nodes K] [--out FILE]";

/// An address range to hand out unique addresses from (skipping the
/// network and broadcast addresses).
struct Pool {
    base: u32,
    size: u32,
}

impl Pool {
    /// The first of `ranges` (address, prefix length) that holds `need`.
    fn for_count(need: u64, ranges: &[(Ipv4Addr, u32)], what: &str) -> Result<Pool, String> {
        ranges
            .iter()
            .map(|&(net, len)| Pool {
                base: u32::from(net),
                size: 1u32 << (32 - len),
            })
            .find(|p| need <= u64::from(p.size) - 2)
            .ok_or_else(|| format!("{need} {what} do not fit the address ranges {ranges:?}"))
    }

    fn nth(&self, i: u64) -> Ipv4Addr {
        debug_assert!(i + 2 <= u64::from(self.size));
        Ipv4Addr::from(self.base + 1 + i as u32)
    }
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-manifests: {e}");
            ExitCode::from(2)
        }
    }
}

fn flag<T: std::str::FromStr>(
    args: &[String],
    name: &str,
    default: Option<T>,
) -> Result<T, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            let v = args
                .get(i + 1)
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
            v.parse()
                .map_err(|_| format!("bad value {v:?} for {name}\n{USAGE}"))
        }
        None => default.ok_or_else(|| format!("{name} is required\n{USAGE}")),
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let services: u64 = flag(&args, "--services", None)?;
    let endpoints: u64 = flag(&args, "--endpoints", None)?;
    let nodes: u64 = flag(&args, "--nodes", Some(3))?;
    let out: Option<String> = flag(&args, "--out", None).ok();
    if nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let vips = Pool::for_count(
        services,
        &[
            (Ipv4Addr::new(10, 43, 0, 0), 16),
            (Ipv4Addr::new(10, 96, 0, 0), 12),
        ],
        "cluster IPs",
    )?;
    let pods = Pool::for_count(
        services * endpoints,
        &[
            (Ipv4Addr::new(10, 42, 0, 0), 16),
            (Ipv4Addr::new(10, 64, 0, 0), 10),
        ],
        "pod IPs",
    )?;
    let sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(File::create(path).map_err(|e| format!("{path}: {e}"))?),
        None => Box::new(io::stdout().lock()),
    };
    let mut w = BufWriter::with_capacity(1 << 20, sink);
    write_all(&mut w, services, endpoints, nodes, &vips, &pods)
        .and_then(|()| w.flush())
        .map_err(|e| format!("write: {e}"))
}

fn write_all(
    w: &mut impl Write,
    services: u64,
    endpoints: u64,
    nodes: u64,
    vips: &Pool,
    pods: &Pool,
) -> io::Result<()> {
    writeln!(
        w,
        "# gen-manifests --services {services} --endpoints {endpoints} --nodes {nodes}"
    )?;
    for n in 1..=nodes {
        let zone = if n % 2 == 1 { "zone-a" } else { "zone-b" };
        write!(
            w,
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: node-{n}\n  labels:\n    \
             kubernetes.io/hostname: node-{n}\n    topology.kubernetes.io/zone: {zone}\n"
        )?;
    }
    for s in 0..services {
        let name = format!("svc-{s}");
        let vip = vips.nth(s);
        write!(
            w,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: bench\n\
             spec:\n  type: ClusterIP\n  clusterIP: {vip}\n  clusterIPs: [{vip}]\n  \
             selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 80, protocol: TCP, targetPort: 8080}}\n"
        )?;
        write!(
            w,
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  \
             namespace: bench\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\n\
             ports:\n- {{name: http, port: 8080, protocol: TCP}}\nendpoints:\n"
        )?;
        for e in 0..endpoints {
            let ip = pods.nth(s * endpoints + e);
            let node = (s * endpoints + e) % nodes + 1;
            writeln!(
                w,
                "- {{addresses: [\"{ip}\"], conditions: {{ready: true}}, nodeName: node-{node}}}"
            )?;
        }
        if endpoints == 0 {
            writeln!(w, "  []")?;
        }
    }
    Ok(())
}
