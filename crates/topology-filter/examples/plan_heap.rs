//! How much memory the topology plan holds per service port, as the
//! daemon keeps it (without the per-endpoint explanations): loads
//! manifests (`gen-manifests` output), plans them for a node, drops the
//! decisions, and measures the resident growth of a fresh copy of the plan
//! once three copies have filled the heap's holes (malloc overhead
//! included; `/proc/self/status`, Linux). Also: what a copy of each port's
//! chosen endpoints takes (the list `ServicePortPlan` stored until
//! `endpoints()` became a method) and what the serving endpoints take,
//! kept only where they differ from the cluster set and as a list per
//! port.
//!
//! `cargo run -p topology-filter --example plan_heap -- /tmp/m10k.yaml node-1`

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(node)) = (args.first(), args.get(1)) else {
        eprintln!("usage: plan_heap MANIFESTS.yaml NODE");
        std::process::exit(2);
    };
    let (state, errors) = api_watch::file::load_files(&[path]);
    if let Some(e) = errors.first() {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    }
    let mut plan = topology_filter::plan(&state, node);
    for sp in &mut plan.services {
        sp.decisions = Vec::new();
    }
    // The first copies fill the holes the freed decisions (and the
    // loading) left; the next one grows the heap by what a plan takes.
    let holes: Vec<_> = (0..3).map(|_| plan.clone()).collect();
    let before = rss_kib();
    let copy = plan.clone();
    let grown = rss_kib().saturating_sub(before) * 1024;
    let ports = copy.services.len().max(1) as u64;
    let endpoints: usize = copy
        .services
        .iter()
        .map(|p| p.cluster_endpoints.len())
        .sum();
    println!(
        "size_of::<ServicePortPlan>() = {} B, size_of::<EndpointTarget>() = {} B",
        std::mem::size_of::<topology_filter::ServicePortPlan>(),
        std::mem::size_of::<topology_filter::EndpointTarget>()
    );
    println!("service ports: {ports}, cluster endpoints: {endpoints}");
    println!(
        "kept plan (no decisions): {:.1} MiB resident, {} B per service port",
        grown as f64 / (1024.0 * 1024.0),
        grown / ports
    );
    // What the stored `endpoints` list held before it became a method: a
    // copy of the chosen list per port.
    let before = rss_kib();
    let chosen: Vec<Vec<topology_filter::EndpointTarget>> = copy
        .services
        .iter()
        .map(|p| p.endpoints().to_vec())
        .collect();
    let grown = rss_kib().saturating_sub(before) * 1024;
    println!(
        "a copy of each port's chosen endpoints (the former field's heap): {:.1} MiB, {} B per service port",
        grown as f64 / (1024.0 * 1024.0),
        grown / ports
    );
    // The serving endpoints (read for UDP ports only, by the conntrack
    // clean-up): what the lists kept where they differ from the cluster
    // set's addresses take, and what a list per port would.
    let before = rss_kib();
    let serving: Vec<Option<Vec<std::net::SocketAddr>>> = copy
        .services
        .iter()
        .map(|p| p.serving_if_other.clone())
        .collect();
    let kept = rss_kib().saturating_sub(before) * 1024;
    let before = rss_kib();
    let every: Vec<Vec<std::net::SocketAddr>> = copy
        .services
        .iter()
        .map(|p| p.serving_endpoints())
        .collect();
    let grown = rss_kib().saturating_sub(before) * 1024;
    let same = copy
        .services
        .iter()
        .filter(|p| p.serving_if_other.is_none())
        .count();
    println!(
        "serving endpoints: {:.1} MiB kept ({same} of {ports} ports equal to the cluster set's \
         addresses keep none); a list per port would take {:.1} MiB, {} B per service port",
        kept as f64 / (1024.0 * 1024.0),
        grown as f64 / (1024.0 * 1024.0),
        grown / ports
    );
    drop(every);
    drop((serving, chosen, holes, state));
}
