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
    let (ruleset, problems) = plan_ruleset(
        &plan,
        &PlannerConfig {
            cluster_cidrs: Cidr::parse("10.42.0.0/16").into_iter().collect(),
            ..PlannerConfig::default()
        },
    );
    assert!(problems.is_empty(), "{problems:?}");
    ruleset
}

/// The ruleset and the planner's problems, without asserting.
pub fn ruleset_and_problems(
    st: &ClusterState,
    node: &str,
) -> (Ruleset, Vec<topology_filter::Problem>) {
    plan_ruleset(&topology_filter::plan(st, node), &PlannerConfig::default())
}
