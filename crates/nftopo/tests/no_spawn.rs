//! nftopo runs no external program: everything it does to the kernel goes
//! over netlink sockets it opens itself (no `nft`, `ip`, `iptables` or
//! `conntrack` binaries on the node, no shell). This test reads every
//! source file of every crate's `src/` and fails on anything that starts
//! a process. Build scripts (`build.rs`, run by cargo at build time, not
//! on nodes) and test-only directories are outside `src/` and not read.

use std::path::{Path, PathBuf};

/// What starting a process looks like in Rust source.
const SPAWNING: &[&str] = &[
    "process::Command",
    "Command::new",
    "process::Stdio",
    "unistd::fork",
    "unistd::execv",
    "libc::fork",
    "libc::exec",
    "posix_spawn",
    "CommandExt",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_crate_starts_a_process() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&crates).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(
        files.len() > 50,
        "expected the sources of every crate, found {} files under {}",
        files.len(),
        crates.display()
    );
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if let Some(p) = SPAWNING.iter().find(|p| line.contains(*p)) {
                found.push(format!("{}:{}: {p}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "process spawning in nftopo's sources:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_sees_a_spawning_line() {
    // The patterns match what they should (so the scan above can fail).
    let line = "let out = std::process::Command::new(\"nft\").output();";
    assert!(SPAWNING.iter().any(|p| line.contains(p)));
}
