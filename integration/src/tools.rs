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
/// listeners, whoever made it. The window is bracketed by two marker
/// tables the monitor must report (added by `start` and by `events`), so
/// a monitor that was not listening yet, or lost events, fails instead
/// of passing for "nothing changed".
pub struct NftMonitor {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    ns: String,
    marker: String,
}

/// `nft add table ip NAME; delete table ip NAME` in namespace `ns`: one
/// pair of events every monitor reports.
fn nft_marker(ns: &str, name: &str) -> Result<()> {
    let cmd = format!("add table ip {name}; delete table ip {name}");
    crate::netns::run("ip", &["netns", "exec", ns, "nft", &cmd]).map(drop)
}

impl NftMonitor {
    /// Starts `nft monitor` in `ns` and waits (at most 10 s) until it
    /// reports a first marker table.
    pub fn start(ns: &Netns) -> Result<NftMonitor> {
        use std::io::{BufRead, BufReader};
        use std::time::{Duration, Instant};
        let mut child = ns
            .command(Path::new("nft"), &["monitor"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error(format!("cannot start nft monitor in {}: {e}", ns.name())))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let marker = format!("nftopo_monitor_{}", std::process::id());
        let start = format!("{marker}_a");
        let deadline = Instant::now() + Duration::from_secs(10);
        'subscribed: loop {
            // Until the monitor listens, markers go unreported: add one
            // again every 200 ms.
            nft_marker(ns.name(), &start)?;
            while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                if line.contains(&start) {
                    break 'subscribed;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(Error(format!(
                    "nft monitor in {} reported nothing",
                    ns.name()
                )));
            }
        }
        // The rest of what the start-up markers printed.
        while lines.recv_timeout(Duration::from_millis(100)).is_ok() {}
        Ok(NftMonitor {
            child,
            lines,
            ns: ns.name().to_string(),
            marker,
        })
    }

    /// The changes reported since [`NftMonitor::start`] (one line each),
    /// up to an end marker table this adds; stops the monitor. An error
    /// if the end marker does not arrive within 10 s (events were lost).
    pub fn events(mut self) -> Result<Vec<String>> {
        let end = format!("{}_b", self.marker);
        let sent = nft_marker(&self.ns, &end);
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = sent.is_ok()
            && loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(line) if line.contains(&end) => break true,
                    Ok(line) => {
                        let line = line.trim();
                        if !line.is_empty() && !line.starts_with('#') {
                            out.push(line.to_string());
                        }
                    }
                    Err(_) => break false,
                }
            };
        let _ = self.child.kill();
        let _ = self.child.wait();
        if found {
            Ok(out)
        } else {
            Err(Error(format!(
                "nft monitor in {} did not report the end marker; saw {out:?}",
                self.ns
            )))
        }
    }
}
