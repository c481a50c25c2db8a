//! `testpod`: what runs inside the test pods.
//!
//! * `testpod serve --port P`: on TCP, accepts, writes the connection's
//!   local IP (the pod IP the client reached after DNAT) and a newline,
//!   closes; on UDP, answers every datagram with the pod's own IP.
//! * `testpod probe --target IP:PORT --count N [--udp] [--timeout-ms T]
//!   [--give-up-after K]`: makes N fresh connections (a new socket, so a
//!   new conntrack entry and a new load-balancing choice, each time) and
//!   prints one `<outcome> <count>` line per outcome: the answering IP,
//!   `refused`, `timeout`, `error:<kind>`, `skipped` (after K timeouts the
//!   probe stops), then `max_refused_ms <ms>`.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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

const USAGE: &str = "usage: testpod serve --port P | testpod probe --target IP:PORT --count N \
                     [--udp] [--timeout-ms T] [--give-up-after K]";

/// Command-line flags as `--name value` pairs, plus bare `--flag`s.
struct Flags(Vec<String>);

impl Flags {
    fn value(&self, name: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).map(String::as_str)
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

/// The address this namespace uses towards the pod gateway: the pod IP.
/// (Connecting a UDP socket sends nothing; it only picks a route.)
fn own_ip() -> Option<IpAddr> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((Ipv4Addr::new(169, 254, 1, 1), 9)).ok()?;
    Some(s.local_addr().ok()?.ip())
}

fn serve(args: &[String]) -> Result<(), String> {
    let flags = Flags(args.to_vec());
    let port: u16 = flags.parse("--port", None)?;
    let ip = own_ip().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let udp = UdpSocket::bind((ip, port))
        .or_else(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
        .map_err(|e| format!("udp bind :{port}: {e}"))?;
    let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| format!("tcp bind :{port}: {e}"))?;
    std::thread::spawn(move || {
        let reply = format!("{ip}\n");
        let mut buf = [0u8; 1500];
        loop {
            if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(reply.as_bytes(), peer);
            }
        }
    });
    for stream in tcp.incoming() {
        let Ok(mut stream) = stream else { continue };
        if let Ok(local) = stream.local_addr() {
            let _ = stream.write_all(format!("{}\n", local.ip()).as_bytes());
        }
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

fn udp_once(target: SocketAddr, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let attempt = || -> std::io::Result<String> {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.connect(target)?;
        s.set_read_timeout(Some(timeout))?;
        s.send(b"who are you?\n")?;
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
    let udp = flags.has("--udp");

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
            udp_once(target, timeout)
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
