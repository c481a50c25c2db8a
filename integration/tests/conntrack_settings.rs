//! `nftopo run` sets kube-proxy's conntrack sysctls at start (needs root).
//!
//! Each test runs the daemon in a network namespace of its own, against
//! the API server stand-in, and reads the sysctls back inside that
//! namespace: the nf_conntrack timeouts and `nf_conntrack_tcp_be_liberal`
//! are per namespace, so the host's never change (each test checks).
//! `nf_conntrack_max` and the module's `hashsize` are global (read-only
//! outside the host's namespace): they are tested under a scratch root
//! (`--sysctl-root`, hidden) standing for `/`.
//!
//! * kube-proxy's defaults: the established timeout written and logged,
//!   an equal close-wait timeout not written, the UDP timeouts and
//!   be_liberal left alone, `nf_conntrack_max` raised only when lower:
//!   `defaults_write_what_differs_in_the_namespace_and_log_it`
//! * the `conntrack:` section of the file, a flag over one field:
//!   `the_file_and_flags_set_udp_timeouts_and_be_liberal`
//! * a read-only /proc/sys (as in an unprivileged container): one warning
//!   per sysctl, and the daemon programs the node all the same:
//!   `a_read_only_proc_sys_is_a_warning_not_an_outage`
//! * `nf_conntrack_max` and `hashsize` raised under the scratch root:
//!   `nf_conntrack_max_and_hashsize_are_only_raised`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nftopo_integration::apiserver::ApiServer;
use nftopo_integration::daemon::*;
use nftopo_integration::*;

const NF: &str = "/proc/sys/net/netfilter";
const EST: &str = "nf_conntrack_tcp_timeout_established";
const CW: &str = "nf_conntrack_tcp_timeout_close_wait";
const LIBERAL: &str = "nf_conntrack_tcp_be_liberal";
const UDP: &str = "nf_conntrack_udp_timeout";
const UDP_STREAM: &str = "nf_conntrack_udp_timeout_stream";
const MAX: &str = "nf_conntrack_max";
const PER_NS: [&str; 5] = [EST, CW, LIBERAL, UDP, UDP_STREAM];

fn ok<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The host's (this process's namespace's) conntrack sysctls and
/// hashsize, to compare before and after a test.
fn host_values() -> Vec<(String, String)> {
    let mut files: Vec<String> = PER_NS
        .iter()
        .chain(&[MAX])
        .map(|n| format!("{NF}/{n}"))
        .collect();
    files.push("/sys/module/nf_conntrack/parameters/hashsize".into());
    files
        .into_iter()
        .map(|f| {
            let v = std::fs::read_to_string(&f).unwrap_or_else(|e| format!("unreadable: {e}"));
            (f, v)
        })
        .collect()
}

/// A namespace with the stand-in in it, holding the seed's nodes, one
/// service and its slices; the daemon, once started, programs a table.
struct World {
    daemon: Option<Daemon>,
    _api: ApiServer,
    ns: Netns,
    dir: PathBuf,
    kubeconfig: PathBuf,
    host_before: Vec<(String, String)>,
}

impl World {
    fn new() -> World {
        require_root();
        let host_before = host_values();
        let ns = ok(Netns::create(format!("{}-ct", unique_prefix())), "netns");
        let api = ok(
            ApiServer::start_in_netns(ns.name(), "127.0.0.1:0".parse().unwrap()),
            "stand-in",
        );
        let dir = std::env::temp_dir().join(format!("{}-ct-test", unique_prefix()));
        ok(std::fs::create_dir_all(&dir), "scratch dir");
        let kubeconfig = dir.join("kubeconfig");
        ok(api.write_kubeconfig(&kubeconfig), "kubeconfig");
        for f in ["nodes.yaml", "svc-plain.yaml", "slices-v1.yaml"] {
            for obj in ok(seed_objects(f), f) {
                ok(api.apply(obj), "stand-in apply");
            }
        }
        World {
            daemon: None,
            _api: api,
            ns,
            dir,
            kubeconfig,
            host_before,
        }
    }

    /// A sysctl in the namespace, e.g. `get(EST)`.
    fn get(&self, name: &str) -> String {
        let out = ok(self.ns.exec("cat", &[&format!("{NF}/{name}")]), name);
        out.trim().to_string()
    }

    fn set(&self, name: &str, value: &str) {
        let key = format!("net.netfilter.{name}");
        ok(self.ns.sysctl(&[(&key, value)]), &key);
    }

    /// Starts the daemon (through `wrapper`, if any) and waits until it
    /// has programmed its table: by then the sysctls are done.
    fn start(&mut self, extra: &[&str], wrapper: &[&str]) {
        let d = ok(
            Daemon::start_as(&self.ns, &self.kubeconfig, extra, wrapper),
            "nftopo run",
        );
        self.daemon = Some(d);
        let deadline = Instant::now() + Duration::from_secs(10);
        // "starting" comes after the sysctls; a table kept from an earlier
        // daemon does not count until then.
        while !self.log().contains("nftopo::run: starting")
            || !ok(has_nftopo_table(&self.ns), "nft list tables")
        {
            if let Some(st) = self.daemon.as_mut().and_then(Daemon::exited) {
                panic!("nftopo run exited ({st}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no table within 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    /// The log lines about sysctl `path` at `level` (`INFO`, `WARN`).
    fn lines(&self, level: &str, path: &str) -> Vec<String> {
        let needle = format!("sysctl={path} ");
        self.log()
            .lines()
            .filter(|l| l.contains(&format!(" {level} ")) && format!("{l} ").contains(&needle))
            .map(str::to_string)
            .collect()
    }

    /// The one "set sysctl" line of `path`, if any.
    fn set_line(&self, path: &str) -> Option<String> {
        let mut v = self.lines("INFO", path);
        v.retain(|l| l.contains("set sysctl sysctl="));
        assert!(v.len() <= 1, "more than one line for {path}: {v:?}");
        v.pop()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        drop(self.daemon.take());
        let _ = std::fs::remove_dir_all(&self.dir);
        if !std::thread::panicking() {
            assert_eq!(host_values(), self.host_before, "the host's values changed");
        }
    }
}

/// The CPUs kube-proxy counts (the online ones).
fn online_cpus() -> i64 {
    let list = ok(
        std::fs::read_to_string("/sys/devices/system/cpu/online"),
        "cpu list",
    );
    list.trim()
        .split(',')
        .map(|p| match p.split_once('-') {
            Some((a, b)) => b.parse::<i64>().unwrap() - a.parse::<i64>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

#[test]
fn defaults_write_what_differs_in_the_namespace_and_log_it() {
    let mut w = World::new();
    w.set(CW, "3600");
    let (udp, stream) = (w.get(UDP), w.get(UDP_STREAM));
    assert_eq!(
        w.get(EST),
        "432000",
        "a new namespace has the kernel's default"
    );
    assert_eq!(w.get(LIBERAL), "0");
    w.start(&[], &[]);

    assert_eq!(w.get(EST), "86400", "24h0m0s");
    let line = w
        .set_line(&format!("{NF}/{EST}"))
        .expect("a line for the write");
    assert!(line.contains("from=432000 to=86400"), "{line}");

    assert_eq!(w.get(CW), "3600");
    assert_eq!(
        w.set_line(&format!("{NF}/{CW}")),
        None,
        "equal: not written"
    );
    assert_eq!(
        (w.get(UDP), w.get(UDP_STREAM)),
        (udp, stream),
        "unset: left alone"
    );
    assert_eq!(w.get(LIBERAL), "0", "tcpBeLiberal false: left alone");
    for n in [LIBERAL, UDP, UDP_STREAM] {
        assert!(w.lines("INFO", &format!("{NF}/{n}")).is_empty(), "{n}");
    }

    // nf_conntrack_max is global and read-only here: kube-proxy writes it
    // only when it is lower than max(32768 x CPUs (at most 1M), 131072).
    let wanted = (32768 * online_cpus()).clamp(131072, 1_048_576);
    let held: i64 = w.get(MAX).parse().unwrap();
    let warns = w.lines("WARN", &format!("{NF}/{MAX}"));
    if held >= wanted {
        assert!(
            warns.is_empty(),
            "{held} >= {wanted}: not written: {warns:?}"
        );
    } else {
        assert!(
            warns.len() == 1 && warns[0].contains("Permission denied"),
            "{held} < {wanted}: a warning: {warns:?}"
        );
    }
    assert_eq!(w.set_line(&format!("{NF}/{MAX}")), None);
}

#[test]
fn the_file_and_flags_set_udp_timeouts_and_be_liberal() {
    let mut w = World::new();
    let config = w.dir.join("config.yaml");
    let file = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n\
                kind: KubeProxyConfiguration\n\
                conntrack:\n  maxPerCore: 0\n  tcpEstablishedTimeout: 0s\n  \
                tcpCloseWaitTimeout: 10m\n  tcpBeLiberal: true\n  \
                udpTimeout: 45s\n  udpStreamTimeout: 3m\n";
    ok(std::fs::write(&config, file), "config file");
    let (est, cw) = (w.get(EST), w.get(CW));
    assert_ne!(cw, "1", "the flag below must change nothing");
    let config = config.display().to_string();
    w.start(
        &["--config", &config, "--conntrack-tcp-timeout-close-wait=0"],
        &[],
    );
    for (name, want) in [(LIBERAL, "1"), (UDP, "45"), (UDP_STREAM, "180")] {
        assert_eq!(w.get(name), want, "{name}");
        let line = w.set_line(&format!("{NF}/{name}")).expect(name);
        assert!(line.contains(&format!("to={want}")), "{line}");
    }
    assert_eq!(w.get(EST), est, "tcpEstablishedTimeout 0s: left alone");
    assert_eq!(w.get(CW), cw, "the flag's 0 beats the file's 10m");
    assert_eq!(w.set_line(&format!("{NF}/{CW}")), None);
    assert!(
        w.log()
            .lines()
            .all(|l| !l.contains(MAX) && !l.contains("hashsize")),
        "maxPerCore 0: neither read nor written:\n{}",
        w.log()
    );
}

#[test]
fn a_read_only_proc_sys_is_a_warning_not_an_outage() {
    let mut w = World::new();
    let (est, cw) = (w.get(EST), w.get(CW));
    // As runc mounts it in an unprivileged container (this mount
    // namespace is the one `ip netns exec` made for the daemon).
    let ro = [
        "sh",
        "-c",
        "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec \"$@\"",
        "sh",
    ];
    w.start(&[], &ro);
    for name in [EST, CW] {
        let warns = w.lines("WARN", &format!("{NF}/{name}"));
        assert!(
            warns.len() == 1 && warns[0].contains("Read-only file system"),
            "{name}: {warns:?}\n{}",
            w.log()
        );
    }
    assert_eq!((w.get(EST), w.get(CW)), (est, cw), "nothing written");
    assert!(
        w.daemon.as_mut().unwrap().exited().is_none(),
        "still running"
    );
}

#[test]
fn nf_conntrack_max_and_hashsize_are_only_raised() {
    let mut w = World::new();
    let root = w.dir.join("root");
    let file = |p: &str, v: &str| {
        let path = root.join(p);
        ok(std::fs::create_dir_all(path.parent().unwrap()), "mkdir");
        ok(std::fs::write(&path, v), p);
        path
    };
    let max = file("proc/sys/net/netfilter/nf_conntrack_max", "65536\n");
    let hash = file("sys/module/nf_conntrack/parameters/hashsize", "1024\n");
    file("sys/devices/system/cpu/online", "0-3\n");
    for n in [EST, CW] {
        file(&format!("proc/sys/net/netfilter/{n}"), "432000\n");
    }
    let (est, cw) = (w.get(EST), w.get(CW));
    let root_arg = root.display().to_string();
    w.start(
        &["--sysctl-root", &root_arg, "--conntrack-max-per-core=50000"],
        &[],
    );
    let read = |p: &Path| ok(std::fs::read_to_string(p), "scratch").trim().to_string();
    assert_eq!(read(&max), "200000", "4 CPUs x 50000");
    assert_eq!(read(&hash), "50000", "a quarter of it");
    for (path, from, to) in [(&max, 65536, 200000), (&hash, 1024, 50000)] {
        let line = w.set_line(&path.display().to_string()).expect("a line");
        assert!(line.contains(&format!("from={from} to={to}")), "{line}");
    }
    assert_eq!((w.get(EST), w.get(CW)), (est, cw), "the kernel's untouched");
    drop(w.daemon.take());

    // Both already higher: kept, not lowered, no line.
    std::fs::write(&max, "300000").unwrap();
    std::fs::write(&hash, "80000").unwrap();
    w.start(
        &["--sysctl-root", &root_arg, "--conntrack-max-per-core=50000"],
        &[],
    );
    assert_eq!((read(&max), read(&hash)), ("300000".into(), "80000".into()));
    for p in [&max, &hash] {
        assert_eq!(w.set_line(&p.display().to_string()), None);
    }
}
