//! Shared fixtures: the seed cluster written as manifests, planned for a node.

#![allow(dead_code)]

use api_watch::ClusterState;
use nft_writer::{plan_ruleset, Cidr, PlannerConfig, Ruleset};

/// Nodes node-2 and node-3 in zone a, node-4 in zone b.
pub const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {kubernetes.io/hostname: node-2, topology.kubernetes.io/zone: zone-a}}
---
apiVersion: v1
kind: Node
metadata: {name: node-3, labels: {kubernetes.io/hostname: node-3, topology.kubernetes.io/zone: zone-a}}
---
apiVersion: v1
kind: Node
metadata: {name: node-4, labels: {kubernetes.io/hostname: node-4, topology.kubernetes.io/zone: zone-b}}
"#;

/// A ClusterIP service 10.43.0.10:80 -> 5000 with the given extra spec
/// lines (indented by two spaces) and metadata annotations.
pub fn service(extra_spec: &str, annotations: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations: {{{annotations}}}
spec:
  clusterIP: 10.43.0.10
  ports:
  - {{port: 80, targetPort: 5000, protocol: TCP}}
{extra_spec}
"#
    )
}

/// One v1 slice for `web` with endpoints (ip, node, zone).
pub fn slice(endpoints: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: \"\", port: 5000, protocol: TCP}]\nendpoints:\n",
    );
    for (ip, node, zone) in endpoints {
        s.push_str(&format!(
            "- {{addresses: [\"{ip}\"], conditions: {{ready: true}}, nodeName: {node}, zone: {zone}}}\n"
        ));
    }
    s
}

/// The first packet of a TCP connection from `src`, routed through the
/// node, to [`service`]'s cluster IP and port (10.43.0.10:80).
pub fn to_web(src: &str) -> nft_writer::Packet {
    nft_writer::Packet {
        src: src.parse().unwrap(),
        dst: "10.43.0.10".parse().unwrap(),
        proto: api_watch::Protocol::Tcp,
        dport: 80,
        path: nft_writer::Path::Forwarded,
        iifname: String::new(),
        node_addrs: Vec::new(),
    }
}

/// The five endpoints of the seed scenario: two on node-2, two on node-3,
/// one on node-4.
pub const FIVE: [(&str, &str, &str); 5] = [
    ("10.42.187.66", "node-2", "zone-a"),
    ("10.42.187.67", "node-2", "zone-a"),
    ("10.42.54.130", "node-3", "zone-a"),
    ("10.42.54.131", "node-3", "zone-a"),
    ("10.42.201.2", "node-4", "zone-b"),
];

/// Parses documents (each a YAML text) into a state, failing on any error.
pub fn state(docs: &[&str]) -> ClusterState {
    let mut st = ClusterState::default();
    for (i, d) in docs.iter().enumerate() {
        let errors = api_watch::file::load_str(&format!("doc{i}"), d, &mut st);
        assert!(errors.is_empty(), "fixture errors: {errors:?}");
    }
    st
}

/// The ruleset node `node` gets, masquerading traffic from outside
/// 10.42.0.0/16.
pub fn ruleset(st: &ClusterState, node: &str) -> Ruleset {
    let plan = topology_filter::plan(st, node);
    let (ruleset, problems) = plan_ruleset(&plan, &planner_config());
    assert!(problems.is_empty(), "{problems:?}");
    ruleset
}

/// The planner's configuration of [`ruleset`]: traffic from outside
/// 10.42.0.0/16 is masqueraded.
pub fn planner_config() -> PlannerConfig {
    PlannerConfig {
        detect_local: nft_writer::DetectLocal::ClusterCidr(
            Cidr::parse("10.42.0.0/16").into_iter().collect(),
        ),
        ..PlannerConfig::default()
    }
}

/// The ruleset and the planner's problems, without asserting.
pub fn ruleset_and_problems(
    st: &ClusterState,
    node: &str,
) -> (Ruleset, Vec<topology_filter::Problem>) {
    plan_ruleset(&topology_filter::plan(st, node), &PlannerConfig::default())
}

/// `nft list ruleset` in a canonical form: the kernel lists sets, maps and
/// chains in creation order and elements in hash order, both of which
/// depend on history; rule order is kept.
pub fn canonical(listing: &str) -> String {
    let mut tables = Vec::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<(String, Vec<String>, Vec<String>)> = None;
    let mut in_elements = false;
    for line in listing.lines() {
        let t = line.trim();
        if line.starts_with("table ") {
            tables.push(t.to_string());
        } else if line.starts_with('\t') && !line.starts_with("\t\t") && t.ends_with('{') {
            current = Some((t.to_string(), Vec::new(), Vec::new()));
        } else if line == "\t}" {
            if let Some((head, mut body, mut elements)) = current.take() {
                elements.sort();
                body.push(format!("elements: {}", elements.join(", ")));
                blocks.push(format!("{head}\n{}", body.join("\n")));
            }
        } else if let Some((_, body, elements)) = current.as_mut() {
            let mut rest = t;
            if let Some(after) = rest.strip_prefix("elements = {") {
                in_elements = true;
                rest = after;
            }
            if in_elements {
                let done = rest.ends_with('}');
                for e in rest.trim_end_matches('}').split(',') {
                    if !e.trim().is_empty() {
                        elements.push(e.trim().to_string());
                    }
                }
                in_elements = !done;
            } else if !t.is_empty() {
                body.push(t.to_string());
            }
        }
    }
    blocks.sort();
    format!("{}\n{}", tables.join("\n"), blocks.join("\n"))
}

/// Runs `f` on a thread inside a fresh network namespace; `f` gets the
/// path of that namespace for `nsenter --net=`.
pub fn in_netns<F: FnOnce(String) + Send + 'static>(f: F) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kernel tests need root (network namespaces and CAP_NET_ADMIN)"
    );
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let path = format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            nix::unistd::gettid()
        );
        f(path)
    })
    .join()
    .expect("test thread panicked");
}

/// Runs `nft ARGS` in the namespace `ns`, with `stdin` as its input.
pub fn nft(ns: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .arg("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nsenter nft");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// node-2's plan for tests/fixtures/edge.yaml: every construct of the
/// data plane (node ports, external and load-balancer IPs, source
/// ranges, session affinity, Local traffic policies, UDP, dual stack).
pub fn edge_ruleset() -> nft_writer::Ruleset {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/edge.yaml"
    ))
    .unwrap();
    let plan = topology_filter::plan(&state(&[&text]), "node-2");
    let cfg = nft_writer::PlannerConfig {
        detect_local: nft_writer::DetectLocal::ClusterCidr(
            ["10.42.0.0/16", "fd00:42::/48"]
                .iter()
                .filter_map(|c| nft_writer::Cidr::parse(c).ok())
                .collect(),
        ),
        ..Default::default()
    };
    let (rs, problems) = nft_writer::plan_ruleset(&plan, &cfg);
    assert!(problems.is_empty(), "{problems:?}");
    rs
}
