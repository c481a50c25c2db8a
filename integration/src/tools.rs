//! Running the product under test (`nftopo apply` / `cleanup` inside a
//! namespace) and reading the kernel back with independent witnesses
//! (`nft list …`, `ip route`).

use std::path::{Path, PathBuf};

use crate::netns::{Error, Netns, Result};

/// Environment variable that overrides where the `nftopo` binary is.
pub const NFTOPO_BIN_ENV: &str = "NFTOPO_BIN";

/// The `nftopo` binary under test: `$NFTOPO_BIN`, else next to the
/// running executable (`target/debug/demo`, or one level up from
/// `target/debug/deps/<test>`), else `<workspace>/target/debug/nftopo`.
/// The error tells how to build it.
pub fn nftopo_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(NFTOPO_BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error(format!(
                "{NFTOPO_BIN_ENV}={} is not a file",
                path.display()
            )))
        };
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("nftopo"));
            if let Some(up) = dir.parent() {
                candidates.push(up.join("nftopo"));
            }
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(workspace.join("target/debug/nftopo"));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error(format!(
            "the nftopo binary is missing: run `cargo build -p nftopo` first \
             (or set {NFTOPO_BIN_ENV}=/path/to/nftopo)"
        ))
    })
}

/// The `testpod` binary next to the running executable (for the demo;
/// tests use `env!("CARGO_BIN_EXE_testpod")`).
pub fn testpod_sibling() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error(format!("current_exe: {e}")))?;
    let path = exe.with_file_name("testpod");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error(format!(
            "{} is missing: run `cargo build -p nftopo-integration --bins`",
            path.display()
        )))
    }
}

/// The seed scenario's manifests directory (`integration/manifests/seed`).
pub fn seed_manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/seed")
}

/// One file of the seed manifests, by file name (`"nodes.yaml"`).
pub fn seed_manifest(file: &str) -> PathBuf {
    seed_manifests_dir().join(file)
}

/// `ip netns exec <ns> nftopo apply --node <node> --manifests F … <extra>`.
/// Each file gets its own `--manifests` flag, which every clap layout for
/// a list accepts. Returns stdout; a non-zero exit is an error carrying
/// stderr.
pub fn apply(ns: &Netns, node: &str, manifests: &[PathBuf], extra: &[&str]) -> Result<String> {
    let bin = nftopo_bin()?;
    let mut args = vec!["apply".to_owned(), "--node".to_owned(), node.to_owned()];
    for m in manifests {
        args.push("--manifests".to_owned());
        args.push(m.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ns.exec(&bin, &args)
}

/// `ip netns exec <ns> nftopo cleanup`.
pub fn cleanup(ns: &Netns) -> Result<String> {
    ns.exec(nftopo_bin()?, &["cleanup"])
}

/// Witness: `nft list ruleset` inside the namespace.
pub fn nft_list(ns: &Netns) -> Result<String> {
    ns.exec("nft", &["list", "ruleset"])
}

/// Witness: `nft list tables` inside the namespace.
pub fn nft_tables(ns: &Netns) -> Result<String> {
    ns.exec("nft", &["list", "tables"])
}

/// Witness: `ip route` inside the namespace.
pub fn ip_route(ns: &Netns) -> Result<String> {
    ns.ip(&["route"])
}

/// Witness: `nft list table ip nftopo` as a sorted multiset of its lines
/// and set elements (the kernel lists sets in creation order and elements
/// in hash order, both of which depend on history, so two kernels holding
/// the same ruleset can list it differently); empty when there is no
/// table. Two equal answers mean the same rules and elements.
pub fn canonical_table(ns: &Netns) -> Vec<String> {
    let Ok(text) = ns.exec("nft", &["list", "table", "ip", "nftopo"]) else {
        return Vec::new();
    };
    let mut atoms: Vec<String> = text
        .replace("elements = {", "\n")
        .split(['\n', ','])
        .map(|a| a.trim().trim_end_matches('}').trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    atoms.sort();
    atoms
}

/// Runs the `gen-manifests` binary `bin` (tests pass
/// `env!("CARGO_BIN_EXE_gen-manifests")`): `services` Services with
/// `endpoints` endpoints each, written to `out`, which it returns.
pub fn gen_manifests(bin: &Path, services: u64, endpoints: u64, out: PathBuf) -> Result<PathBuf> {
    let (services, endpoints) = (services.to_string(), endpoints.to_string());
    let path = out.display().to_string();
    crate::netns::run(
        bin,
        &[
            "--services",
            &services,
            "--endpoints",
            &endpoints,
            "--out",
            &path,
        ],
    )?;
    Ok(out)
}

/// Witness: `nft monitor` in a namespace, from [`NftMonitor::start`] to
/// [`NftMonitor::events`]: every change the kernel reports to nf_tables
/// listeners, whoever made it.
pub struct NftMonitor(std::process::Child);

impl NftMonitor {
    /// Starts `nft monitor` in `ns` and gives it time to subscribe.
    pub fn start(ns: &Netns) -> Result<NftMonitor> {
        let child = ns
            .command(Path::new("nft"), &["monitor"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error(format!("cannot start nft monitor in {}: {e}", ns.name())))?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(NftMonitor(child))
    }

    /// The changes reported so far (one line each), after giving the last
    /// ones time to arrive; stops the monitor.
    pub fn events(mut self) -> Vec<String> {
        use std::io::Read;
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = self.0.kill();
        let mut out = String::new();
        if let Some(mut s) = self.0.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        let _ = self.0.wait();
        out.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }
}
