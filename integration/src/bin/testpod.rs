//! `testpod`: what runs inside the test pods.
//!
//! * `testpod serve --port P [--port Q …] [--ports P,Q] [--echo-peer]
//!   [--wildcard] [--sctp]`: listens on every port given, for TCP and UDP,
//!   over IPv4 and (where the namespace has it) IPv6. On TCP it accepts,
//!   writes an answer line and closes; on UDP it answers every datagram.
//!   The answer is the local IP the client reached (the pod IP after
//!   DNAT); with `--echo-peer` it is `<own-ip> <peer-ip> <own-port>`, so
//!   a test can read the source address the pod saw (masquerade or not)
//!   and which target port the connection was sent to. UDP sockets are
//!   bound to the pod's own addresses (so replies come from them) unless
//!   `--wildcard` asks for the unspecified address (a node's sentinel on a
//!   node port, reachable on every local address). `--sctp` also listens
//!   on SCTP where the kernel has it.
//! * `testpod probe --target IP:PORT --count N [--udp|--sctp]
//!   [--timeout-ms T] [--give-up-after K] [--source-port S]`: makes N
//!   fresh connections (a new socket, so a new conntrack entry and a new
//!   load-balancing choice, each time; UDP with `--source-port` reuses one
//!   source port, so all datagrams belong to one conntrack flow; a
//!   datagram a local `output` rule drops (EPERM) still waits for the
//!   ICMP error a `reject` sends, so node-local UDP reads like a pod's) and
//!   prints one `<outcome> <count>` line per outcome: the answer (spaces
//!   replaced by `_`), `refused`, `timeout`, `error:<kind>`, `skipped`
//!   (after K timeouts the probe stops), then `max_refused_ms <ms>`.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("probe") => probe(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testpod: {e}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: testpod serve --port P [--port Q] [--ports P,Q] [--echo-peer] \
                     [--wildcard] [--sctp] | testpod probe --target IP:PORT --count N \
                     [--udp|--sctp] [--timeout-ms T] [--give-up-after K] [--source-port S]";

/// IP protocol number of SCTP.
const IPPROTO_SCTP: i32 = 132;

/// Command-line flags as `--name value` pairs, plus bare `--flag`s.
struct Flags(Vec<String>);

impl Flags {
    fn value(&self, name: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).map(String::as_str)
    }

    fn values(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, a)| *a == name)
            .filter_map(|(i, _)| self.0.get(i + 1).map(String::as_str))
            .collect()
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T, String> {
        match self.value(name) {
            Some(v) => v.parse().map_err(|_| format!("bad value {v:?} for {name}")),
            None => default.ok_or_else(|| format!("{name} is required\n{USAGE}")),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}

/// The address this namespace uses towards `probe`'s route (the pod
/// gateway): the pod IP of that family. (Connecting a UDP socket sends
/// nothing; it only picks a route.)
fn own_ip(v6: bool) -> Option<IpAddr> {
    let (bind, towards): (IpAddr, SocketAddr) = if v6 {
        (
            Ipv6Addr::UNSPECIFIED.into(),
            "[fd00:42::1]:9".parse().expect("literal"),
        )
    } else {
        (
            Ipv4Addr::UNSPECIFIED.into(),
            "169.254.1.1:9".parse().expect("literal"),
        )
    };
    let s = UdpSocket::bind((bind, 0)).ok()?;
    s.connect(towards).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// The answer line for a connection from `peer` to `local`.
fn answer(echo_peer: bool, local: SocketAddr, peer: SocketAddr) -> String {
    if echo_peer {
        format!("{} {} {}\n", local.ip(), unmap(peer.ip()), local.port())
    } else {
        format!("{}\n", local.ip())
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A listening or bound socket of one family; IPv6 ones are IPv6-only so
/// that they sit next to the IPv4 ones on the same port.
fn socket(v6: bool, ty: Type, proto: Option<Protocol>) -> std::io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, ty, proto)?;
    if v6 {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    Ok(s)
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    }
}

fn serve(args: &[String]) -> Result<(), String> {
    let flags = Flags(args.to_vec());
    let mut ports: Vec<u16> = Vec::new();
    for v in flags.values("--port") {
        ports.push(v.parse().map_err(|_| format!("bad port {v:?}"))?);
    }
    for list in flags.values("--ports") {
        for v in list.split(',') {
            ports.push(v.parse().map_err(|_| format!("bad port {v:?}"))?);
        }
    }
    if ports.is_empty() {
        return Err(format!("--port is required\n{USAGE}"));
    }
    let echo_peer = flags.has("--echo-peer");
    let wildcard = flags.has("--wildcard");

    // Bind everything first: once one port answers, all do.
    let mut tcp: Vec<TcpListener> = Vec::new();
    let mut udp: Vec<(UdpSocket, IpAddr)> = Vec::new();
    let mut sctp: Vec<Socket> = Vec::new();
    for &port in &ports {
        for v6 in [false, true] {
            let family = if v6 { "IPv6" } else { "IPv4" };
            let any = SocketAddr::new(unspecified(v6), port);
            match socket(v6, Type::STREAM, None).and_then(|s| {
                s.bind(&any.into())?;
                s.listen(128)?;
                Ok(s)
            }) {
                Ok(s) => tcp.push(s.into()),
                Err(e) if v6 => eprintln!("testpod: no {family} TCP :{port}: {e}"),
                Err(e) => return Err(format!("tcp bind :{port}: {e}")),
            }
            let own = own_ip(v6);
            let bind_ip = if wildcard {
                unspecified(v6)
            } else {
                own.unwrap_or(unspecified(v6))
            };
            match socket(v6, Type::DGRAM, None).and_then(|s| {
                s.bind(&SocketAddr::new(bind_ip, port).into())?;
                Ok(s)
            }) {
                Ok(s) => udp.push((s.into(), own.unwrap_or(bind_ip))),
                Err(e) if v6 => eprintln!("testpod: no {family} UDP :{port}: {e}"),
                Err(e) => return Err(format!("udp bind :{port}: {e}")),
            }
            if flags.has("--sctp") {
                match socket(v6, Type::STREAM, Some(Protocol::from(IPPROTO_SCTP))).and_then(|s| {
                    s.bind(&any.into())?;
                    s.listen(128)?;
                    Ok(s)
                }) {
                    Ok(s) => sctp.push(s),
                    Err(e) => eprintln!("testpod: no {family} SCTP :{port}: {e}"),
                }
            }
        }
    }

    let mut threads = Vec::new();
    for (sock, own) in udp {
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
            loop {
                if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                    let text = answer(echo_peer, SocketAddr::new(own, port), peer);
                    let _ = sock.send_to(text.as_bytes(), peer);
                }
            }
        }));
    }
    for listener in tcp {
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) {
                    let _ = stream.write_all(answer(echo_peer, local, peer).as_bytes());
                }
            }
        }));
    }
    for listener in sctp {
        threads.push(std::thread::spawn(move || loop {
            let Ok((mut conn, peer)) = listener.accept() else {
                continue;
            };
            let local = conn.local_addr().ok().and_then(|a| a.as_socket());
            if let (Some(local), Some(peer)) = (local, peer.as_socket()) {
                let _ = conn.write_all(answer(echo_peer, local, peer).as_bytes());
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// How one connection attempt ended.
enum Outcome {
    Answer(String),
    Refused(Duration),
    Timeout,
    Error(ErrorKind),
}

fn classify(e: std::io::Error, started: Instant) -> Outcome {
    match e.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused(started.elapsed()),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::Timeout,
        kind => Outcome::Error(kind),
    }
}

fn tcp_once(target: SocketAddr, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let mut stream = match TcpStream::connect_timeout(&target, timeout) {
        Ok(s) => s,
        Err(e) => return classify(e, started),
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let mut text = String::new();
    match stream.read_to_string(&mut text) {
        Ok(_) => Outcome::Answer(text.trim().to_owned()),
        Err(e) => classify(e, started),
    }
}

fn sctp_once(target: SocketAddr, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let attempt = || -> std::io::Result<String> {
        let s = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::from(IPPROTO_SCTP)),
        )?;
        s.connect_timeout(&SockAddr::from(target), timeout)?;
        s.set_read_timeout(Some(timeout))?;
        let mut stream: TcpStream = s.into();
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text.trim().to_owned())
    };
    match attempt() {
        Ok(text) => Outcome::Answer(text),
        Err(e) => classify(e, started),
    }
}

fn udp_once(target: SocketAddr, timeout: Duration, source_port: u16) -> Outcome {
    let started = Instant::now();
    let attempt = || -> std::io::Result<String> {
        let s = UdpSocket::bind((unspecified(target.is_ipv6()), source_port))?;
        s.connect(target)?;
        s.set_read_timeout(Some(timeout))?;
        match s.send(b"who are you?\n") {
            Ok(_) => {}
            // A datagram from this host that netfilter drops in `output`
            // fails with EPERM; a `reject` there drops it too but also
            // sends ICMP port unreachable, which the recv below reports
            // as a refusal. A plain `drop` lets the recv time out.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
        let mut buf = [0u8; 1500];
        let n = s.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
    };
    match attempt() {
        Ok(text) => Outcome::Answer(text),
        Err(e) => classify(e, started),
    }
}

fn probe(args: &[String]) -> Result<(), String> {
    let flags = Flags(args.to_vec());
    let target: SocketAddr = flags.parse("--target", None)?;
    let count: usize = flags.parse("--count", None)?;
    let timeout = Duration::from_millis(flags.parse("--timeout-ms", Some(2000))?);
    let give_up_after: usize = flags.parse("--give-up-after", Some(usize::MAX))?;
    let source_port: u16 = flags.parse("--source-port", Some(0))?;
    let udp = flags.has("--udp");
    let sctp = flags.has("--sctp");

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    counts.insert("refused".into(), 0);
    counts.insert("timeout".into(), 0);
    let mut max_refused = Duration::ZERO;
    for made in 0..count {
        if counts["timeout"] >= give_up_after {
            *counts.entry("skipped".into()).or_default() += count - made;
            break;
        }
        let outcome = if udp {
            udp_once(target, timeout, source_port)
        } else if sctp {
            sctp_once(target, timeout)
        } else {
            tcp_once(target, timeout)
        };
        let key = match outcome {
            Outcome::Answer(text) if text.is_empty() => "empty".to_owned(),
            Outcome::Answer(text) => text.replace(char::is_whitespace, "_"),
            Outcome::Refused(took) => {
                max_refused = max_refused.max(took);
                "refused".to_owned()
            }
            Outcome::Timeout => "timeout".to_owned(),
            Outcome::Error(kind) => format!("error:{kind:?}"),
        };
        *counts.entry(key).or_default() += 1;
    }
    let mut out = String::new();
    for (outcome, n) in &counts {
        out.push_str(&format!("{outcome} {n}\n"));
    }
    out.push_str(&format!("max_refused_ms {}\n", max_refused.as_millis()));
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| e.to_string())
}
