//! Network namespaces as RAII guards, and the small process helpers the
//! harness uses to drive `ip`, `nft` and `sysctl` inside them.

use std::fmt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// What went wrong while building or driving the test network. Tests
/// `expect()` on it: the message names the command and its stderr.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Result of every harness operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Prefix of every namespace this harness creates: `nt<pid>-`.
const NAME_PREFIX: &str = "nt";

/// Panics with a clear message unless this process runs as root: the
/// integration tests need network namespaces and must never pass silently
/// without them.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .unwrap_or("?");
    assert!(
        euid == "0",
        "nftopo integration tests need root (network namespaces, nftables); \
         effective uid is {euid}. Run them as root, e.g. `sudo make test`."
    );
}

/// A fresh prefix `nt<pid>-<seq>` for one group of namespaces (one
/// cluster): unique per process and per call, short enough to read.
pub fn unique_prefix() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}-{seq}", std::process::id())
}

/// Runs a command to completion; an error if it cannot start or exits
/// non-zero (the message carries the command line and stderr).
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Result<String> {
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error(format!("cannot run {program:?}: {e}")))?;
    check(
        &format!("{} {}", program.to_string_lossy(), args.join(" ")),
        out,
    )
}

/// Turns a finished command's output into its stdout, or an error that
/// names the command, its exit status and its stderr.
pub fn check(what: &str, out: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(Error(format!(
            "`{what}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            stdout
        )))
    }
}

/// A network namespace created with `ip netns add`. Dropping it (also
/// while a test unwinds from a panic) kills the processes started in it
/// and deletes it with `ip netns del`.
pub struct Netns {
    name: String,
    children: Mutex<Vec<Child>>,
}

impl Netns {
    /// `ip netns add <name>`, then `ip link set lo up` inside it.
    pub fn create(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        run("ip", &["netns", "add", &name])?;
        let ns = Netns {
            name,
            children: Mutex::new(Vec::new()),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec <ns> <program> <args>`, to completion.
    pub fn exec(&self, program: impl AsRef<Path>, args: &[&str]) -> Result<String> {
        let out = self.command(program.as_ref(), args).output().map_err(|e| {
            Error(format!(
                "cannot run {} in {}: {e}",
                program.as_ref().display(),
                self.name
            ))
        })?;
        let what = format!(
            "ip netns exec {} {} {}",
            self.name,
            program.as_ref().display(),
            args.join(" ")
        );
        check(&what, out)
    }

    /// The command `ip netns exec <ns> <program> <args>`, not started.
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// `sysctl -qw key=value …` inside the namespace.
    pub fn sysctl(&self, settings: &[(&str, &str)]) -> Result<()> {
        let pairs: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["-qw"];
        args.extend(pairs.iter().map(String::as_str));
        self.exec("sysctl", &args).map(drop)
    }

    /// Starts a long-running process inside the namespace; it is killed
    /// when the namespace is dropped. (`ip netns exec` execs the program,
    /// so the child's pid is the program's.)
    pub fn spawn(&self, program: &Path, args: &[&str]) -> Result<()> {
        let child = self
            .command(program, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error(format!(
                    "cannot start {} in {}: {e}",
                    program.display(),
                    self.name
                ))
            })?;
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let children = self.children.get_mut().unwrap_or_else(|p| p.into_inner());
        for child in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        delete_namespace(&self.name);
    }
}

/// Kills what still runs in a namespace we created (by pid, from
/// `ip netns pids`), then deletes it. Best effort: used from `Drop`.
fn delete_namespace(name: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]);
        }
    }
    let _ = run("ip", &["netns", "del", name]);
}

/// Deletes namespaces left behind by earlier harness runs that were
/// killed before their guards could drop (`nt<pid>-…` whose process is
/// gone). Namespaces of live processes are left alone.
pub fn sweep_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            delete_namespace(name);
        }
    }
}

/// Runs `f` on a new thread that first joins network namespace `netns`
/// (a name under /run/netns) with setns(2): sockets it opens live there.
pub fn spawn_in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{netns}"))
            .map_err(|e| Error(format!("cannot open netns {netns}: {e}")))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error(format!("setns {netns}: {e}")))?;
        Ok(f())
    })
}
