//! Driving the daemon (`nftopo run`) in a node namespace, and the
//! witnesses the daemon tests read it back with: the seed manifests as
//! JSON values for the API server stand-in, HTTP GETs made from inside a
//! namespace (metrics, health), and the endpoints the kernel's
//! `service-endpoints` map holds for a service.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::{run, unique_prefix, Error, Netns, Result};
use crate::tools::{nftopo_bin, seed_manifest};
use crate::{CLUSTER_CIDR, THIS_NODE};

/// Where the daemon serves `/metrics` inside the node namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:10249";
/// Where the daemon serves `/healthz` and `/livez` inside the node namespace.
pub const HEALTHZ_ADDR: &str = "127.0.0.1:10256";

/// The seed manifest `file` (`"nodes.yaml"`), one JSON value per YAML
/// document (empty documents are skipped).
pub fn seed_objects(file: &str) -> Result<Vec<Value>> {
    let path = seed_manifest(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
    yaml_objects(&text).map_err(|e| Error(format!("{}: {e}", path.display())))
}

/// Every document of a YAML stream as a JSON value (nulls skipped).
pub fn yaml_objects(text: &str) -> std::result::Result<Vec<Value>, String> {
    // Split on document markers by hand: each document is then an
    // ordinary `serde_saphyr::from_str` (no direct serde dependency).
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    let mut out = Vec::new();
    for doc in docs {
        // Comments alone are no document (serde_yaml read them as null).
        if doc
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let v: Value = serde_saphyr::from_str(&doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// A running `nftopo run` in a node namespace, its stderr and stdout going
/// to a log file. Dropping it kills it (SIGKILL) and removes the scratch
/// directory; the rules it programmed stay, as with a crash.
pub struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// `ip netns exec <ns> nftopo run --kubeconfig K --hostname-override
    /// node-2 --cluster-cidr 10.42.0.0/16 --min-sync-period 0s
    /// --full-sync-period 1h --metrics-bind-address 127.0.0.1:10249
    /// --healthz-bind-address 127.0.0.1:10256 <extra>`, logging nftopo's
    /// own debug lines (`NFTOPO_LOG`, unless the caller's environment
    /// sets it).
    pub fn start(ns: &Netns, kubeconfig: &Path, extra: &[&str]) -> Result<Daemon> {
        Self::start_as(ns, kubeconfig, extra, &[])
    }

    /// [`Daemon::start`] through `wrapper` (a program and its arguments
    /// that execs the rest of its command line, e.g. `setpriv … --`), so
    /// that the daemon runs with fewer privileges.
    pub fn start_as(
        ns: &Netns,
        kubeconfig: &Path,
        extra: &[&str],
        wrapper: &[&str],
    ) -> Result<Daemon> {
        let dir = std::env::temp_dir().join(format!("{}-daemon", unique_prefix()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error(format!("cannot create {}: {e}", dir.display())))?;
        let log = dir.join("nftopo.log");
        let out = File::create(&log)
            .map_err(|e| Error(format!("cannot create {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| Error(format!("cannot clone the log file: {e}")))?;
        let bin = nftopo_bin()?;
        let kubeconfig = kubeconfig.display().to_string();
        let defaults = [
            ("--kubeconfig", kubeconfig.as_str()),
            ("--hostname-override", THIS_NODE),
            ("--cluster-cidr", CLUSTER_CIDR),
            ("--min-sync-period", "0s"),
            ("--full-sync-period", "1h"),
            ("--metrics-bind-address", METRICS_ADDR),
            ("--healthz-bind-address", HEALTHZ_ADDR),
        ];
        // A flag in `extra` replaces its default (clap refuses a flag
        // given twice); `!FLAG` leaves the default out, so that nftopo's
        // own default applies.
        let mut args = vec!["run"];
        for (flag, value) in defaults {
            let omitted = extra.iter().any(|e| e.strip_prefix('!') == Some(flag));
            if !extra.contains(&flag) && !omitted {
                args.extend([flag, value]);
            }
        }
        args.extend(extra.iter().filter(|e| !e.starts_with('!')));
        // `ip netns exec` (and the wrapper) exec nftopo: the child's pid
        // is nftopo's.
        let bin_text = bin.display().to_string();
        let mut cmd = match wrapper.split_first() {
            None => ns.command(&bin, &args),
            Some((program, rest)) => {
                let mut all: Vec<&str> = rest.to_vec();
                all.push(&bin_text);
                all.extend_from_slice(&args);
                ns.command(Path::new(program), &all)
            }
        };
        if std::env::var_os("NFTOPO_LOG").is_none() {
            cmd.env(
                "NFTOPO_LOG",
                "info,nftopo=debug,api_watch=debug,nft_writer=debug",
            );
        }
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| Error(format!("cannot start nftopo run in {}: {e}", ns.name())))?;
        Ok(Daemon {
            child: Some(child),
            dir,
            log,
            status: None,
        })
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    self.status = Some(st);
                    self.child = None;
                }
            }
        }
        self.status
    }

    /// Sends SIGTERM and waits up to `limit` for the process to exit.
    pub fn terminate(&mut self, limit: Duration) -> Result<ExitStatus> {
        if let Some(st) = self.exited() {
            return Ok(st);
        }
        let pid = self
            .pid()
            .ok_or_else(|| Error("no daemon process".into()))?;
        run("kill", &["-TERM", &pid.to_string()])?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.exited() {
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(Error(format!(
                    "nftopo run (pid {pid}) still running {limit:?} after SIGTERM; log:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` over HTTP/1.1 to `addr` from inside network namespace
/// `netns` (a name under /run/netns): a thread joins it with setns(2) and
/// connects with std's TcpStream. Returns the status code and the body.
pub fn http_get(netns: &str, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    http_get_within(netns, addr, path, Duration::from_secs(5))
}

/// [`http_get`], failing unless the connection is made and the whole
/// answer read within `limit` each.
pub fn http_get_within(
    netns: &str,
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> Result<(u16, String)> {
    let (netns, path) = (netns.to_owned(), path.to_owned());
    std::thread::spawn(move || -> Result<(u16, String)> {
        let f = File::open(format!("/run/netns/{netns}"))
            .map_err(|e| Error(format!("cannot open netns {netns}: {e}")))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error(format!("setns {netns}: {e}")))?;
        let io = |e: std::io::Error| Error(format!("GET http://{addr}{path} in {netns}: {e}"));
        let mut s =
            TcpStream::connect_timeout(&addr, limit.min(Duration::from_secs(2))).map_err(io)?;
        s.set_read_timeout(Some(limit)).map_err(io)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .map_err(io)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(io)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| Error(format!("GET {path}: no header end in {text:?}")))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Error(format!("GET {path}: bad status line in {head:?}")))?;
        Ok((status, body.to_owned()))
    })
    .join()
    .map_err(|_| Error("http_get thread panicked".into()))?
}

/// The value of the first sample line `name <value>` (no labels) in an
/// OpenMetrics text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let mut words = rest.split_whitespace();
        if !rest.starts_with(' ') {
            return None;
        }
        words.next()?.parse().ok()
    })
}

/// Whether `ip nftopo` exists in the namespace (`nft list tables`).
pub fn has_nftopo_table(ns: &Netns) -> Result<bool> {
    let tables = crate::tools::nft_tables(ns)?;
    Ok(tables.lines().any(|l| l.trim() == "table ip nftopo"))
}

/// One element of the `service-endpoints` map:
/// `service IP . proto . port . index : endpoint IP . port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointElement {
    /// The service's cluster IP.
    pub service: Ipv4Addr,
    /// `tcp` or `udp`.
    pub proto: String,
    /// The service port.
    pub port: u16,
    /// The endpoint address.
    pub endpoint: Ipv4Addr,
    /// The endpoint (target) port.
    pub target_port: u16,
}

/// Parses the elements of `nft list map ip nftopo service-endpoints`.
pub fn parse_service_endpoints(text: &str) -> Result<Vec<EndpointElement>> {
    let Some(start) = text.find("elements = {") else {
        return Ok(Vec::new());
    };
    let rest = &text[start + "elements = {".len()..];
    let end = rest
        .find('}')
        .ok_or_else(|| Error(format!("unterminated elements in {text:?}")))?;
    let bad = |e: &str| Error(format!("bad service-endpoints element {e:?}"));
    let mut out = Vec::new();
    for e in rest[..end]
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (key, value) = e.split_once(" : ").ok_or_else(|| bad(e))?;
        let k: Vec<&str> = key.split(" . ").map(str::trim).collect();
        let v: Vec<&str> = value.split(" . ").map(str::trim).collect();
        if k.len() != 4 || v.len() != 2 {
            return Err(bad(e));
        }
        out.push(EndpointElement {
            service: k[0].parse().map_err(|_| bad(e))?,
            proto: k[1].to_owned(),
            port: k[2].parse().map_err(|_| bad(e))?,
            endpoint: v[0].parse().map_err(|_| bad(e))?,
            target_port: v[1].parse().map_err(|_| bad(e))?,
        });
    }
    Ok(out)
}

/// `nft list map ip nftopo service-endpoints` in the namespace, parsed;
/// `None` while the table or map does not exist.
pub fn service_endpoints(ns: &Netns) -> Result<Option<Vec<EndpointElement>>> {
    match ns.exec("nft", &["list", "map", "ip", "nftopo", "service-endpoints"]) {
        Ok(text) => parse_service_endpoints(&text).map(Some),
        Err(e) if e.0.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The endpoint addresses the kernel holds for `service:port/tcp`
/// (`None` while there is no map).
pub fn kernel_endpoints(
    ns: &Netns,
    service: Ipv4Addr,
    port: u16,
) -> Result<Option<BTreeSet<Ipv4Addr>>> {
    Ok(service_endpoints(ns)?.map(|els| {
        els.into_iter()
            .filter(|e| e.service == service && e.port == port && e.proto == "tcp")
            .map(|e| e.endpoint)
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_service_endpoints_map() {
        let text = "table ip nftopo {\n\tmap service-endpoints {\n\t\ttypeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport\n\t\telements = { 10.43.118.32 . tcp . 80 . 0 : 10.42.54.130 . 5000,\n\t\t\t     10.43.118.32 . udp . 53 . 1 : 10.42.187.66 . 5353 }\n\t}\n}\n";
        let els = parse_service_endpoints(text).unwrap();
        assert_eq!(
            els,
            vec![
                EndpointElement {
                    service: Ipv4Addr::new(10, 43, 118, 32),
                    proto: "tcp".into(),
                    port: 80,
                    endpoint: Ipv4Addr::new(10, 42, 54, 130),
                    target_port: 5000
                },
                EndpointElement {
                    service: Ipv4Addr::new(10, 43, 118, 32),
                    proto: "udp".into(),
                    port: 53,
                    endpoint: Ipv4Addr::new(10, 42, 187, 66),
                    target_port: 5353
                },
            ]
        );
        assert!(
            parse_service_endpoints("table ip nftopo {\n\tmap service-endpoints {\n\t}\n}\n")
                .unwrap()
                .is_empty()
        );
        assert!(parse_service_endpoints("elements = { 1.2.3.4 : x }").is_err());
    }

    #[test]
    fn reads_metric_values_and_yaml_streams() {
        let text = "# TYPE a gauge\na_total 3\na 1.5\nab 7\n";
        assert_eq!(metric_value(text, "a"), Some(1.5));
        assert_eq!(metric_value(text, "a_total"), Some(3.0));
        assert_eq!(metric_value(text, "b"), None);
        let docs = yaml_objects("# c\na: 1\n---\n---\nb: [x]\n").unwrap();
        assert_eq!(
            docs,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": ["x"]})]
        );
    }
}
