//! One run of the daemon benchmark: the API server stand-in filled with N
//! services, `nftopo run` started against it, its first sync timed two
//! ways, its memory read, then a series of EndpointSlice changes timed from
//! the stand-in's apply to the end of the daemon's sync.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nftopo_integration::apiserver::{ApiServer, Resource};
use nftopo_integration::daemon::{http_get, metric_value, Daemon, METRICS_ADDR};
use nftopo_integration::{unique_prefix, Netns};
use serde_json::Value;

use super::objects::{node, service, slice, vip, NODES};
use super::witness::{get_element, service_key};
use crate::Config;

/// Memory of a process, KiB, from /proc/PID/status.
#[derive(Default, Clone, Copy)]
pub struct Mem {
    pub hwm: u64,
    pub rss: u64,
    pub anon: u64,
    pub file: u64,
}

pub fn mem(pid: u32) -> Mem {
    mem_of(&format!("/proc/{pid}/status"))
}

fn mem_of(path: &str) -> Mem {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        hwm: get("VmHWM:"),
        rss: get("VmRSS:"),
        anon: get("RssAnon:"),
        file: get("RssFile:"),
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU seconds (user + system) this process has used so far: the
/// stand-in's threads are most of it while the daemon lists.
fn own_cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name in brackets: state is field 3, utime 14, stime 15.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks of 1/100 s (USER_HZ on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The daemon's `kubeproxy_sync_proxy_rules_last_timestamp_seconds`.
fn last_sync(ns: &Netns) -> Option<f64> {
    http_get(ns.name(), METRICS_ADDR.parse().unwrap(), "/metrics")
        .ok()
        .and_then(|(_, body)| {
            metric_value(&body, "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
        })
}

/// A daemon on a stand-in with N services, after its first sync.
pub struct Session {
    pub services: u32,
    pub daemon: Daemon,
    pub api: ApiServer,
    pub ns: Netns,
    /// Seconds to fill the stand-in (the bench's, not the daemon's).
    pub fill_s: f64,
    /// The bench process's VmRSS once filled (mostly the stand-in's objects).
    pub standin_rss: u64,
    /// From starting the daemon to the end of its first sync.
    pub first_sync_s: f64,
    /// From starting the daemon to the stand-in's last byte of the last
    /// first list (Services, EndpointSlices, Nodes, ServiceCIDRs).
    pub lists_s: f64,
    /// From that last byte to the end of the first sync (the daemon's own
    /// wall-clock timestamp of it).
    pub after_lists_s: f64,
    /// CPU seconds the bench process (the stand-in) used from the
    /// daemon's start to its first sync: serving the lists.
    pub standin_cpu_s: f64,
    /// `seconds=` of the daemon's `first sync done` log line (the sync
    /// function's own timer).
    pub sync_own_s: Option<f64>,
}

const TCP: u8 = 6;

/// The kinds the daemon's first sync waits for (api-watch's `watch`).
const LISTED: [Resource; 4] = [
    Resource::Service,
    Resource::EndpointSlice,
    Resource::Node,
    Resource::ServiceCidr,
];

/// Fills a stand-in with `services` services and starts the daemon; returns
/// once its first sync is done (and the last service is in the kernel).
pub fn start(cfg: &Config, services: u32) -> Session {
    let ns = Netns::create(format!("{}-d", unique_prefix())).expect("daemon ns");
    let api =
        ApiServer::start_in_netns(ns.name(), "127.0.0.1:0".parse().unwrap()).expect("stand-in");
    let t = Instant::now();
    for i in 1..=NODES {
        api.apply(node(i)).expect("node");
    }
    for i in 0..services {
        api.apply(service(i)).expect("service");
        api.apply(slice(i, None)).expect("slice");
    }
    let fill_s = t.elapsed().as_secs_f64();
    let standin_rss = mem_of("/proc/self/status").rss;
    let kubeconfig = cfg.tmp.join(format!("kubeconfig-{}", ns.name()));
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let (cpu0, wall0, t) = (own_cpu(), SystemTime::now(), Instant::now());
    let mut d = Daemon::start(&ns, &kubeconfig, &[]).expect("nftopo run");
    // Synced once the last-sync timestamp is set.
    let limit = Duration::from_secs(600);
    let synced_at = loop {
        if let Some(st) = d.exited() {
            panic!("nftopo run exited ({st}):\n{}", d.log());
        }
        if let Some(at) = last_sync(&ns).filter(|&v| v > 0.0) {
            break at;
        }
        assert!(
            t.elapsed() < limit,
            "no first sync in {limit:?}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let first_sync_s = synced_at - unix(wall0);
    let standin_cpu_s = own_cpu() - cpu0;
    let served = api.lists_served();
    let lists_done = LISTED
        .iter()
        .map(|r| {
            served
                .iter()
                .find(|(res, _)| res == r)
                .map(|(_, at)| unix(*at))
                .unwrap_or_else(|| panic!("the stand-in never completed a list of {r:?}"))
        })
        .fold(0.0, f64::max);
    let sync_own_s = d
        .log()
        .lines()
        .find(|l| l.contains("first sync done"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("seconds="))
        })
        .and_then(|v| v.parse().ok());
    if services > 0 {
        // Witness: the last service is in the kernel.
        let key = service_key(vip(services - 1), TCP, 80);
        let held = get_element(ns.name(), "nftopo", "plain-cluster-ips", &key)
            .expect("plain-cluster-ips lookup");
        assert!(
            held.is_some(),
            "the last service is not in the kernel after the first sync"
        );
    }
    Session {
        services,
        daemon: d,
        api,
        ns,
        fill_s,
        standin_rss,
        first_sync_s,
        lists_s: lists_done - unix(wall0),
        after_lists_s: synced_at - lists_done,
        standin_cpu_s,
        sync_own_s,
    }
}

/// Whether the kernel's `service-endpoints` map holds, for service `i`'s
/// 11th endpoint, the endpoint `ip` (one key looked up by the kernel, see
/// [`get_element`]). Layout 3 keys a port with N endpoints from N(N-1)/2
/// on (nft-writer's `names::spread_offset`), the index in host byte
/// order: the 11th of 11 is at 55 + 10. The data is the DNAT target,
/// address first.
fn holds(ns: &Netns, i: u32, ip: Ipv4Addr) -> bool {
    const N: u32 = 11;
    let mut key = service_key(vip(i), TCP, 80);
    key.extend_from_slice(&(N * (N - 1) / 2 + 10).to_ne_bytes());
    get_element(ns.name(), "nftopo", "service-endpoints", &key)
        .expect("service-endpoints lookup")
        .is_some_and(|data| data.starts_with(&ip.octets()))
}

/// Applies `obj` to the stand-in and waits for the daemon's next sync;
/// returns the ms from the apply to the end of that sync (the daemon's
/// timestamp, set when the kernel acknowledged the transaction), None
/// after 30 s.
fn change_to_sync(api: &ApiServer, ns: &Netns, obj: Value) -> Option<f64> {
    let before = last_sync(ns).unwrap_or(0.0);
    let sent = unix(SystemTime::now());
    api.apply(obj).expect("slice");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Some(at) = last_sync(ns).filter(|&v| v > before && v >= sent) {
            return Some((at - sent) * 1000.0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// What a series of changes gave.
#[derive(Default)]
pub struct Changes {
    /// Per change of each direction, ms from the apply to the sync's end.
    pub added: Vec<f64>,
    pub removed: Vec<f64>,
    /// Changes that never showed up within 30 s.
    pub lost: usize,
    /// Kernel checks made and how many were not as expected.
    pub checked: usize,
    pub wrong: usize,
    /// Wall seconds of the series, and of the kernel checks in it.
    pub wall_s: f64,
    pub check_s: f64,
}

/// `changes` times: one endpoint added to a service, then removed again
/// (spread over the services); the kernel checked after both changes of
/// every tenth.
pub fn change_series(s: &Session, changes: u32) -> Changes {
    let extra = |k: u32| Ipv4Addr::from(0x0a80_0000 + k);
    let mut c = Changes::default();
    let t = Instant::now();
    for k in 0..changes {
        if c.lost >= 3 {
            break;
        }
        let i = (k * 7919) % s.services;
        let ip = extra(k);
        for add in [true, false] {
            let obj = slice(i, add.then_some(ip));
            match change_to_sync(&s.api, &s.ns, obj) {
                Some(ms) if add => c.added.push(ms),
                Some(ms) => c.removed.push(ms),
                None => c.lost += 1,
            }
            if k % 10 == 0 {
                let tc = Instant::now();
                c.checked += 1;
                if holds(&s.ns, i, ip) != add {
                    c.wrong += 1;
                }
                c.check_s += tc.elapsed().as_secs_f64();
            }
        }
    }
    c.wall_s = t.elapsed().as_secs_f64();
    c
}
