//! `--manifests` with objects of kinds nftopo does not read: one stderr
//! line says how many of which kinds were left out, so that a typo in
//! `kind:` is not a silent no-op. No root needed (`render`).

use std::path::PathBuf;
use std::process::Command;

fn seed(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../integration/manifests/seed")
        .join(file)
}

fn render_stderr(test: &str, extra: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "nftopo-ignored-kinds-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let extra_file = dir.join("extra.yaml");
    std::fs::write(&extra_file, extra).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nftopo"))
        .args(["render", "--node", "node-2", "--manifests"])
        .arg(seed("nodes.yaml"))
        .arg("--manifests")
        .arg(seed("svc-plain.yaml"))
        .arg("--manifests")
        .arg(seed("slices-v1.yaml"))
        .arg("--manifests")
        .arg(&extra_file)
        .output()
        .expect("run nftopo");
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "nftopo render failed: {stderr}");
    stderr
}

#[test]
fn objects_of_other_kinds_are_counted_by_kind_in_one_line() {
    let stderr = render_stderr(
        "counted",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("ignored")).collect();
    assert_eq!(
        lines,
        ["nftopo: ignored 3 objects of kinds nftopo does not read: 2 Deployment, 1 ConfigMap"],
        "{stderr}"
    );
}

#[test]
fn a_typo_in_kind_is_reported() {
    let stderr = render_stderr(
        "typo",
        "apiVersion: v1\nkind: Servce\nmetadata: {name: web}\nspec: {clusterIP: 10.43.0.99}\n",
    );
    assert!(
        stderr.contains("nftopo: ignored 1 object of a kind nftopo does not read: 1 Servce"),
        "{stderr}"
    );
}

#[test]
fn nothing_is_said_when_every_object_is_read() {
    let stderr = render_stderr(
        "none",
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-9}\n",
    );
    assert!(!stderr.contains("ignored"), "{stderr}");
}
