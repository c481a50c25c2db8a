//! Build script: puts the git commit into `nftopo --version` as
//! `NFTOPO_GIT_COMMIT`.
//!
//! The commit comes from `$NFTOPO_GIT_COMMIT` when set (for builds from a
//! tarball that know their commit), else from `git rev-parse --short HEAD`
//! when this crate sits in a git work tree and git is installed, else it is
//! "unknown": a clean clone, a tarball and a machine without git all build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NFTOPO_GIT_COMMIT");
    let commit = match std::env::var("NFTOPO_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => from_git().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=NFTOPO_GIT_COMMIT={commit}");
}

/// `git rev-parse --short HEAD` of the work tree holding this crate, and
/// rerun hints for the files that change when HEAD moves. `None` when git
/// is missing or the crate is not in a work tree of its own (a tarball
/// unpacked inside some other repository would otherwise report that
/// repository's commit: the work tree must contain the crate's
/// Cargo.toml as a tracked file).
fn from_git() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let tracked = git(&dir, &["ls-files", "--error-unmatch", "Cargo.toml"])?;
    if tracked.is_empty() {
        return None;
    }
    let commit = git(&dir, &["rev-parse", "--short", "HEAD"])?;
    // HEAD names a branch (or a commit); the branch's ref is a loose file
    // or a line in packed-refs. In a linked work tree HEAD lives in the
    // git dir and the refs in the common dir.
    let git_dir = dir.join(git(&dir, &["rev-parse", "--git-dir"])?);
    let common_dir = dir.join(git(&dir, &["rev-parse", "--git-common-dir"])?);
    rerun_if_exists(&git_dir.join("HEAD"));
    rerun_if_exists(&common_dir.join("packed-refs"));
    if let Some(head_ref) = git(&dir, &["rev-parse", "--symbolic-full-name", "HEAD"]) {
        if head_ref.starts_with("refs/") {
            rerun_if_exists(&common_dir.join(head_ref));
        }
    }
    Some(commit)
}

fn rerun_if_exists(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Runs `git ARGS` in `dir`; its trimmed stdout, `None` on any failure.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}
