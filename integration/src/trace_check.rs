//! `nftopo trace` checked against the traffic (issue 17, item 3): where a
//! suite turned it on ([`enable`]), every outcome the edge cluster's
//! helpers observe (`outcome.rs`: served by these pods, from this
//! source, refused, dropped) is followed by `nftopo trace --output json`
//! of the same packet in node-2's namespace, which must say the same:
//! the backends it can reach (the DNAT candidates, or the destination
//! itself when nothing translates it), masquerade or not, reject, drop.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::edge::{EdgeCluster, NODES, OUTSIDE, PODS, THIS_NODE};
use crate::netns::{Netns, Result};
use crate::outcome::ok;
use crate::probe::{Probe, ProbeResult};
use crate::tools;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Checks every observed outcome of this test binary with `nftopo trace`
/// (unless `NFTOPO_TRACE_CHECKS=0`, to time the traffic alone).
pub fn enable() {
    let off = std::env::var("NFTOPO_TRACE_CHECKS").is_ok_and(|v| v == "0");
    ENABLED.store(!off, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What `nftopo trace` said about one packet.
#[derive(Debug)]
pub struct Traced {
    /// The whole JSON report.
    pub json: Value,
    /// The packet's source (the node's choice for a packet it sends).
    pub src: IpAddr,
    /// Whether the node sends the packet itself (`--local`).
    pub local: bool,
}

impl Traced {
    /// `verdict`: dnat, accept, reject, drop or mixed.
    pub fn verdict(&self) -> &str {
        self.json["verdict"].as_str().unwrap_or("")
    }

    fn outcomes(&self) -> &[Value] {
        self.json["outcomes"].as_array().map_or(&[], Vec::as_slice)
    }

    /// Where the accepted branches go: the DNAT target, or the
    /// destination itself when nothing translates it.
    pub fn destinations(&self) -> BTreeSet<IpAddr> {
        let to = &self.json["packet"]["to"];
        self.outcomes()
            .iter()
            .filter(|o| o["verdict"] == "accept")
            .filter_map(|o| {
                let addr = if o["dnat"].is_null() {
                    to
                } else {
                    &o["dnat"]["address"]
                };
                addr.as_str()?.parse().ok()
            })
            .collect()
    }

    /// The masquerade flag of every outcome (one value when they agree).
    pub fn masquerade(&self) -> BTreeSet<bool> {
        self.outcomes()
            .iter()
            .filter_map(|o| o["masquerade"].as_bool())
            .collect()
    }
}

/// `nftopo trace ARGS` in the namespace `node`; its standard output.
pub fn run_trace(node: &Netns, args: &[&str]) -> Result<String> {
    let bin = tools::nftopo_bin()?;
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    node.exec(&bin, &all)
}

/// The veth in node-2 of a pod there (as `cluster.rs` names it).
fn cali_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("cali{:02x}{:02x}{:02x}{:02x}", o[0], o[1], o[2], o[3])
}

impl EdgeCluster {
    /// `nftopo trace --output json` in node-2 of the packet `p` sends
    /// from the namespace `from`.
    pub fn trace(&self, from: &str, p: &Probe) -> Traced {
        let v4 = p.target.is_ipv4();
        let pick = |a: Ipv4Addr, b: std::net::Ipv6Addr| -> IpAddr {
            if v4 {
                a.into()
            } else {
                b.into()
            }
        };
        let source = if let Some(pod) = PODS.iter().find(|x| x.name == from) {
            let iif = if pod.node == THIS_NODE {
                cali_name(pod.ip4)
            } else {
                "eth0".into()
            };
            Some((pick(pod.ip4, pod.ip6), iif))
        } else if let Some(o) = OUTSIDE.iter().find(|x| x.name == from) {
            Some((pick(o.ip4, o.ip6), "eth0".into()))
        } else if from == THIS_NODE {
            None
        } else {
            let n = NODES.iter().find(|x| x.name == from);
            let n = n.unwrap_or_else(|| panic!("trace: no namespace {from}"));
            Some((pick(n.ip4, n.ip6), "eth0".into()))
        };
        let to = format!("{}/{}", p.target, p.proto);
        let mut args: Vec<String> = vec!["trace".into(), "--to".into(), to];
        match &source {
            Some((src, iif)) => args.extend([
                "--from".into(),
                src.to_string(),
                "--iif".into(),
                iif.clone(),
            ]),
            None => args.push("--local".into()),
        }
        args.extend(["--output".into(), "json".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = ok(
            run_trace(self.node(THIS_NODE), &args[1..]),
            &format!("nftopo {}", args.join(" ")),
        );
        let json: Value = ok(serde_json::from_str(&text), "nftopo trace JSON");
        let src = json["packet"]["from"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("trace JSON without packet.from: {text}"));
        Traced {
            json,
            src,
            local: source.is_none(),
        }
    }
}

fn context(case: &str, from: &str, p: &Probe, t: &Traced) -> String {
    format!(
        "{case}: nftopo trace of {} {} from {from} disagrees with the traffic; trace said: {:#}",
        p.proto, p.target, t.json
    )
}

/// After a probe served by exactly `r.pods()` (each pod seeing `peer`, when
/// given): the trace reaches the same backends, and masquerades when the
/// pods saw another source than the client's.
pub(crate) fn served(
    c: &EdgeCluster,
    from: &str,
    p: &Probe,
    r: &ProbeResult,
    peer: Option<IpAddr>,
    case: &str,
) {
    if !enabled() {
        return;
    }
    let t = c.trace(from, p);
    let ctx = context(case, from, p, &t);
    assert!(
        matches!(t.verdict(), "dnat" | "accept"),
        "{ctx}\n(the traffic was served: {r})"
    );
    assert_eq!(t.destinations(), r.pods(), "{ctx}\n(served by: {r})");
    if let Some(peer) = peer {
        let want = match (peer == t.src, t.local) {
            (false, _) => Some(true),
            (true, false) => Some(false),
            // The node's own packet, masqueraded or not, shows its address.
            (true, true) => None,
        };
        if let Some(want) = want {
            assert_eq!(
                t.masquerade(),
                BTreeSet::from([want]),
                "{ctx}\n(the pods saw {peer})"
            );
        }
    }
}

/// After a probe that was refused: the trace rejects.
pub(crate) fn refused(c: &EdgeCluster, from: &str, p: &Probe, case: &str) {
    if enabled() {
        let t = c.trace(from, p);
        assert_eq!(t.verdict(), "reject", "{}", context(case, from, p, &t));
    }
}

/// After a probe that was dropped: the trace drops.
pub(crate) fn dropped(c: &EdgeCluster, from: &str, p: &Probe, case: &str) {
    if enabled() {
        let t = c.trace(from, p);
        assert_eq!(t.verdict(), "drop", "{}", context(case, from, p, &t));
    }
}
