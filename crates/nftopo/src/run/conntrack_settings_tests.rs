use super::*;
use crate::run::config::{merge as merge_config, Config, FileConfig, RunArgs};
use clap::{CommandFactory, FromArgMatches, Parser};

#[derive(Debug, Parser)]
struct Cmd {
    #[command(flatten)]
    args: RunArgs,
}

/// `nftopo run <argv>` with `file` as its configuration file.
fn config(argv: &[&str], file: &str) -> anyhow::Result<Config> {
    let argv = std::iter::once("run").chain(argv.iter().copied());
    let matches = Cmd::command().try_get_matches_from(argv)?;
    let cmd = Cmd::from_arg_matches(&matches)?;
    let file = FileConfig::parse("test.yaml", file)?;
    merge_config(&cmd.args, &matches, &file, || Ok("node".into()))
}

fn settings(argv: &[&str], file: &str) -> ConntrackSettings {
    config(argv, file).unwrap().conntrack
}

const H: u64 = 3600;

#[test]
fn without_flags_or_file_the_settings_are_kube_proxys_defaults() {
    let s = settings(&[], "");
    assert_eq!(
        s,
        ConntrackSettings {
            max_per_core: 32768,
            min: 131072,
            tcp_established_timeout: Duration::from_secs(24 * H),
            tcp_close_wait_timeout: Duration::from_secs(H),
            tcp_be_liberal: false,
            udp_timeout: Duration::ZERO,
            udp_stream_timeout: Duration::ZERO,
            root: PathBuf::from("/"),
        }
    );
}

const FILE: &str = "
conntrack:
  maxPerCore: 0
  min: 5
  tcpEstablishedTimeout: 2h0m0s
  tcpCloseWaitTimeout: 30s
  tcpBeLiberal: true
  udpTimeout: 45s
  udpStreamTimeout: 3m
";

#[test]
fn the_file_wins_over_the_defaults_and_a_given_flag_over_the_file() {
    let s = settings(&[], FILE);
    assert_eq!((s.max_per_core, s.min), (0, 5));
    assert_eq!(s.tcp_established_timeout, Duration::from_secs(2 * H));
    assert_eq!(s.tcp_close_wait_timeout, Duration::from_secs(30));
    assert!(s.tcp_be_liberal);
    assert_eq!(s.udp_timeout, Duration::from_secs(45));
    assert_eq!(s.udp_stream_timeout, Duration::from_secs(180));

    // Each flag, even at its default value, beats the file's field.
    let s = settings(
        &[
            "--conntrack-max-per-core=32768",
            "--conntrack-min=131072",
            "--conntrack-tcp-timeout-established=24h0m0s",
            "--conntrack-tcp-timeout-close-wait=1h",
            "--conntrack-tcp-be-liberal=false",
            "--conntrack-udp-timeout=0s",
            "--conntrack-udp-timeout-stream=0",
        ],
        FILE,
    );
    assert_eq!(
        s,
        settings(&[], ""),
        "every flag given: the file is ignored"
    );

    // Null fields (kubeadm writes them) take the defaults, as Go's nil
    // pointers do.
    let s = settings(
        &[],
        "conntrack: {maxPerCore: null, tcpEstablishedTimeout: null}",
    );
    assert_eq!(s, settings(&[], ""));
    assert!(settings(&["--conntrack-tcp-be-liberal"], "").tcp_be_liberal);
}

#[test]
fn bad_values_are_refused_naming_the_flag_or_field() {
    let cases: &[(&str, &[&str], &str, &str)] = &[
        (
            "unknown field",
            &[],
            "conntrack: {maxPercore: 1}",
            "conntrack.maxPercore",
        ),
        (
            "`max` was removed from kube-proxy's file",
            &[],
            "conntrack: {max: 1}",
            "conntrack.max",
        ),
        (
            "negative count",
            &[],
            "conntrack: {min: -1}",
            "conntrack.min",
        ),
        (
            "a number for a duration",
            &[],
            "conntrack: {udpTimeout: 30}",
            "conntrack.udpTimeout",
        ),
        (
            "bad duration",
            &[],
            "conntrack: {tcpCloseWaitTimeout: 1d}",
            "conntrack.tcpCloseWaitTimeout",
        ),
        (
            "negative duration",
            &[],
            "conntrack: {udpStreamTimeout: -1s}",
            "conntrack.udpStreamTimeout",
        ),
        (
            "not a bool",
            &[],
            "conntrack: {tcpBeLiberal: yes please}",
            "conntrack.tcpBeLiberal",
        ),
        (
            "negative flag",
            &["--conntrack-max-per-core=-1"],
            "",
            "--conntrack-max-per-core",
        ),
        (
            "over int32",
            &["--conntrack-min=2147483648"],
            "",
            "--conntrack-min",
        ),
        (
            "bad flag duration",
            &["--conntrack-udp-timeout=5"],
            "",
            "--conntrack-udp-timeout",
        ),
    ];
    for (name, argv, file, want) in cases {
        let err = format!("{:#}", config(argv, file).expect_err(name));
        assert!(err.contains(want), "{name}: {err:?} does not name {want}");
    }
}

#[test]
fn conntrack_max_is_kube_proxys_get_conntrack_max() {
    // (max_per_core, min, cpus, want), after upstream's TestGetConntrackMax.
    let cases = [
        ("zero max-per-core leaves the limit alone", 0, 123456, 8, 0),
        ("nothing set leaves the limit alone", 0, 0, 8, 0),
        ("per core times CPUs", 67890, 1, 2, 135780),
        ("min when per core is smaller", 1, 123456, 8, 123456),
        ("defaults on 2 CPUs: the floor", 32768, 131072, 2, 131072),
        ("defaults on 16 CPUs: scaled", 32768, 131072, 16, 524288),
        ("capped at 1M on 512 CPUs", 32768, 0, 512, MAX_LIMIT),
        (
            "the cap wins over a larger min",
            32768,
            2_000_000,
            64,
            MAX_LIMIT,
        ),
    ];
    for (name, per_core, min, cpus, want) in cases {
        assert_eq!(conntrack_max(per_core, min, cpus), want, "{name}");
    }
}

fn want(knob: Knob, value: i64, at_least: bool) -> Want {
    Want {
        knob,
        value,
        at_least,
    }
}

#[test]
fn plan_asks_for_what_kube_proxys_set_sysctls_sets() {
    let nf = Knob::Netfilter;
    assert_eq!(
        plan(&settings(&[], ""), 2),
        [
            want(nf("nf_conntrack_max"), 131072, true),
            want(Knob::Hashsize, 32768, true),
            want(nf("nf_conntrack_tcp_timeout_established"), 86400, false),
            want(nf("nf_conntrack_tcp_timeout_close_wait"), 3600, false),
        ],
        "defaults: no be_liberal, no UDP timeouts"
    );
    assert_eq!(
        plan(&settings(&[], FILE), 2),
        [
            want(nf("nf_conntrack_tcp_timeout_established"), 7200, false),
            want(nf("nf_conntrack_tcp_timeout_close_wait"), 30, false),
            want(nf("nf_conntrack_tcp_be_liberal"), 1, false),
            want(nf("nf_conntrack_udp_timeout"), 45, false),
            want(nf("nf_conntrack_udp_timeout_stream"), 180, false),
        ],
        "maxPerCore 0 leaves nf_conntrack_max and hashsize alone"
    );
    let zero = [
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0s",
    ];
    assert_eq!(
        plan(&settings(&zero, ""), 2),
        [],
        "zeros leave everything alone"
    );
    // kube-proxy truncates to whole seconds after checking for > 0: 1.5 s
    // is 1, and 500 ms is written as 0.
    let sub = [
        "--conntrack-udp-timeout=1500ms",
        "--conntrack-udp-timeout-stream=500ms",
    ];
    let p = plan(&settings(&sub, ""), 2);
    assert_eq!(
        p[4..],
        [
            want(nf("nf_conntrack_udp_timeout"), 1, false),
            want(nf("nf_conntrack_udp_timeout_stream"), 0, false),
        ]
    );
}

/// A scratch tree standing for `/`, with the given files.
struct Scratch(PathBuf);

impl Scratch {
    fn new(files: &[(&str, &str)]) -> Scratch {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "nftopo-conntrack-settings-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Scratch(dir)
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.0.join(path)).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const MAX: &str = "proc/sys/net/netfilter/nf_conntrack_max";
const HASH: &str = "sys/module/nf_conntrack/parameters/hashsize";
const EST: &str = "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established";
const CW: &str = "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait";
const UDP: &str = "proc/sys/net/netfilter/nf_conntrack_udp_timeout";

fn set(path: PathBuf, from: i64, to: i64) -> Outcome {
    Outcome::Set { path, from, to }
}

fn kept(path: PathBuf, value: i64) -> Outcome {
    Outcome::Kept { path, value }
}

#[test]
fn apply_writes_only_what_differs_and_raises_max_and_hashsize_only() {
    let t = Scratch::new(&[
        (MAX, "65536\n"),
        (HASH, "131072\n"),
        (EST, "432000\n"),
        (CW, "3600\n"),
        (UDP, "30\n"),
        ("sys/devices/system/cpu/online", "0-3\n"),
    ]);
    let mut s = settings(&["--conntrack-max-per-core=100000"], "");
    s.root = t.0.clone();
    let outcomes = apply_logged(&s);
    let p = |f: &str| t.0.join(f);
    assert_eq!(
        outcomes,
        [
            set(p(MAX), 65536, 400000),
            kept(p(HASH), 131072),
            set(p(EST), 432000, 86400),
            kept(p(CW), 3600),
        ],
        "4 CPUs x 100000; hashsize 131072 >= 400000/4 stays"
    );
    assert_eq!(t.read(MAX), "400000");
    assert_eq!(t.read(HASH), "131072\n", "not rewritten");
    assert_eq!(t.read(EST), "86400");
    assert_eq!(t.read(CW), "3600\n", "an equal value is not rewritten");
    assert_eq!(t.read(UDP), "30\n", "an unset UDP timeout is left alone");

    // A larger nf_conntrack_max stays (kube-proxy only raises it); a
    // smaller hashsize is raised to a quarter of the wanted max.
    std::fs::write(p(MAX), "2000000").unwrap();
    std::fs::write(p(HASH), "1000").unwrap();
    let outcomes = apply(&plan(&s, 4)[..2], &t.0);
    assert_eq!(
        outcomes,
        [kept(p(MAX), 2000000), set(p(HASH), 1000, 100000),]
    );
}

#[test]
fn a_missing_or_unreadable_sysctl_fails_alone_naming_its_path() {
    // No nf_conntrack: /proc/sys/net without netfilter; hashsize garbled;
    // no /proc/sys/net at all (a chroot without /proc) in the second part.
    let t = Scratch::new(&[(HASH, "many\n"), ("proc/sys/net/core/somaxconn", "4096")]);
    let mut s = settings(&["--conntrack-tcp-timeout-close-wait=0"], "");
    s.root = t.0.clone();
    let outcomes = apply(&plan(&s, 2), &t.0);
    assert_eq!(outcomes.len(), 3);
    for (o, file, why) in [
        (
            &outcomes[0],
            MAX,
            "No such file or directory (os error 2) (nf_conntrack is not loaded)",
        ),
        (&outcomes[1], HASH, "\"many\" is not an integer"),
        (&outcomes[2], EST, "(nf_conntrack is not loaded)"),
    ] {
        match o {
            Outcome::Failed { path, error, .. } => {
                assert_eq!(path, &t.0.join(file));
                assert!(error.contains(why), "{error:?} lacks {why:?}");
            }
            other => panic!("{file}: {other:?}"),
        }
    }
    assert_eq!(t.read(HASH), "many\n", "nothing written after a bad read");

    let bare = Scratch::new(&[]);
    match &apply(&plan(&s, 2)[..1], &bare.0)[0] {
        Outcome::Failed { error, .. } => {
            assert!(
                error.ends_with("No such file or directory (os error 2)"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cpu_lists_count_as_the_kernel_writes_them() {
    for (list, want) in [("0", Some(1)), ("0-1", Some(2)), ("0-3,8,10-11", Some(7))] {
        assert_eq!(count_cpu_list(list), want, "{list}");
    }
    for bad in ["", "a", "3-1", "0-"] {
        assert_eq!(count_cpu_list(bad), None, "{bad:?}");
    }
    let t = Scratch::new(&[("sys/devices/system/cpu/online", "0-5\n")]);
    assert_eq!(cpus(&t.0), 6);
    let none = Scratch::new(&[]);
    assert!(
        cpus(&none.0) >= 1,
        "falls back to the CPUs this process may use"
    );
}
