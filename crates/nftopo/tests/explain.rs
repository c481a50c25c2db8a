//! `nftopo explain` on the seed manifests: the table names the deciding
//! rule and every endpoint with its reason; `--output json` carries the
//! same plan. No root needed.

use std::path::PathBuf;
use std::process::Command;

fn seed(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../integration/manifests/seed")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

fn explain(files: &[&str], extra: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nftopo"));
    cmd.args(["explain", "--node", "node-2"])
        .args(extra)
        .arg("--manifests");
    for f in files {
        cmd.arg(seed(f));
    }
    cmd.arg("default/swansea-city-api");
    let out = cmd.output().expect("run nftopo");
    assert!(
        out.status.success(),
        "nftopo explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn row<'a>(text: &'a str, ip: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{ip} ")))
        .unwrap_or_else(|| panic!("no row for {ip} in:\n{text}"))
}

#[test]
fn the_hostname_key_keeps_node_2s_pods_and_says_why_the_others_are_dropped() {
    let t = explain(
        &["nodes.yaml", "svc-hostname.yaml", "slices-v1beta1.yaml"],
        &[],
    );
    assert!(
        t.contains("rule:               topologyKeys [kubernetes.io/hostname] (key 1 matched)"),
        "{t}"
    );
    assert!(
        t.contains("cluster IP goes to: 10.42.187.66:5000 (node-2), 10.42.187.67:5000 (node-2)"),
        "{t}"
    );
    assert!(row(&t, "10.42.187.66").contains("yes"), "{t}");
    assert!(
        row(&t, "10.42.54.130").contains("dropped: topology key kubernetes.io/hostname"),
        "{t}"
    );
    assert!(row(&t, "10.42.201.2").contains("node-4"), "{t}");
    assert!(
        row(&t, "10.42.187.68").contains("dropped: not ready"),
        "{t}"
    );
}

#[test]
fn the_zone_fallback_names_the_second_key() {
    let t = explain(
        &[
            "nodes.yaml",
            "svc-zone-fallback.yaml",
            "slices-without-node-2.yaml",
        ],
        &[],
    );
    assert!(t.contains("(key 2 matched)"), "{t}");
    assert!(
        row(&t, "10.42.54.130").contains("kept: topology key topology.kubernetes.io/zone"),
        "{t}"
    );
    assert!(row(&t, "10.42.201.2").contains("dropped"), "{t}");
}

#[test]
fn no_matching_key_explains_the_rejection() {
    let t = explain(
        &["nodes.yaml", "svc-no-match.yaml", "slices-v1beta1.yaml"],
        &[],
    );
    assert!(
        t.contains("cluster IP goes to: rejected on this node"),
        "{t}"
    );
}

#[test]
fn json_output_carries_the_same_decisions() {
    let text = explain(
        &["nodes.yaml", "svc-hostname.yaml", "slices-v1beta1.yaml"],
        &["--output", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["node"], "node-2");
    let port = &v["ports"][0];
    let kept: Vec<&str> = port["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ip"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["10.42.187.66", "10.42.187.67"]);
    let decisions = port["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 6, "five ready endpoints and one not ready");
    assert!(decisions
        .iter()
        .any(|d| d["ip"] == "10.42.187.68" && d["for_cluster"] == false));
}

#[test]
fn an_unknown_service_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_nftopo"))
        .args(["explain", "--node", "node-2", "--manifests"])
        .arg(seed("nodes.yaml"))
        .arg(seed("svc-plain.yaml"))
        .arg("default/nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("default/nope not found"));
}
