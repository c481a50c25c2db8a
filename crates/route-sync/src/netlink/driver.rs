//! The rtnetlink connection behind [`super::NetlinkRoutes`]: its socket
//! options, the thread that drives it, and how an answer (or its absence)
//! becomes a route-sync [`Error`].
//!
//! rtnetlink is async: `new_connection()` returns a connection future that
//! must be polled for any request to make progress. route-sync's API is
//! blocking (the daemon's loop and the CLI call it between other kernel
//! work), so the connection runs on a current-thread tokio runtime on a
//! thread of its own, and each request is spawned there and waited for
//! with `futures::executor::block_on`, which works from any thread,
//! including one that is driving another runtime's future. The socket is
//! created by the caller's thread, in the caller's network namespace.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use netlink_packet_core::{ErrorMessage, NetlinkPayload};

use crate::Error;

/// How long a request may wait for the kernel's answer: the kernel answers
/// while the request is sent, so this only keeps an answer that never
/// comes from hanging the agent.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// `NLMSGERR_ATTR_MSG`: the extended ack's text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// How many route requests [`Driver::run_all`] keeps in flight.
pub(super) const IN_FLIGHT: usize = 32;

/// A request ready to run on the connection's thread.
pub(super) type Request = Pin<Box<dyn Future<Output = Result<(), Fail>> + Send>>;

/// Why a request did not succeed, before it is named.
pub(super) enum Fail {
    /// rtnetlink's error: the kernel's errno, or a message it did not expect.
    Rtnl(rtnetlink::Error),
    /// The answer stream ended without the ACK or `NLMSG_DONE` that ends a
    /// complete answer: the connection closed (socket error) mid-request.
    NoAnswer,
}

/// The thread driving one rtnetlink connection; it ends when the last
/// [`rtnetlink::Handle`] of that connection is dropped.
pub(super) struct Driver {
    runtime: tokio::runtime::Handle,
    /// Set when the connection has ended (its socket failed, or the
    /// thread panicked): every request would fail, so reconnect.
    closed: Arc<AtomicBool>,
    /// `NETLINK_CAP_ACK` and `NETLINK_EXT_ACK` are on: an error's payload
    /// is the request's header followed by the extended-ack attributes.
    ext_ack: bool,
}

/// Opens a NETLINK_ROUTE connection in the calling thread's network
/// namespace and starts the thread that drives it.
pub(super) fn connect() -> Result<(rtnetlink::Handle, Driver), Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    // The socket is created on the new thread, which shares the calling
    // thread's network namespace (a thread starts in its creator's); the
    // runtime is built and dropped there too, never in the caller's
    // (possibly async) context.
    std::thread::Builder::new()
        .name("route-sync-rtnl".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(e))),
            };
            let (mut conn, handle, unsolicited) =
                match rt.block_on(async { rtnetlink::new_connection() }) {
                    Ok(c) => c,
                    Err(e) => return drop(tx.send(Err(e))),
                };
            // No multicast groups: nothing unsolicited to read. The
            // connection ends (and this thread with it) once this receiver
            // and the last handle are gone.
            drop(unsolicited);
            // Hand the ACK and NLMSG_DONE to the request, so that a complete
            // answer can be told from a connection that closed before
            // answering (rtnetlink ends the answer stream the same way for
            // both otherwise).
            conn.set_forward_ack(true);
            conn.set_forward_done(true);
            let socket = rtnetlink::sys::AsyncSocket::socket_mut(conn.socket_mut());
            let ext_ack = socket.set_cap_ack(true).is_ok() && socket.set_ext_ack(true).is_ok();
            let closed = Arc::new(AtomicBool::new(false));
            let driver = Driver {
                runtime: rt.handle().clone(),
                closed: closed.clone(),
                ext_ack,
            };
            let _mark = MarkClosed(closed);
            if tx.send(Ok((handle, driver))).is_ok() {
                rt.block_on(conn);
            }
        })?;
    let (handle, driver) = rx.recv().map_err(|_| {
        io::Error::other("the rtnetlink thread ended before its connection was up")
    })??;
    Ok((handle, driver))
}

/// Sets the flag when the connection's thread ends, even by a panic.
struct MarkClosed(Arc<AtomicBool>);

impl Drop for MarkClosed {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Driver {
    /// Whether the connection has ended.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Runs one request on the connection's thread and waits for it. `what`
    /// names the request in `ip` syntax for errors.
    pub(super) fn run<T: Send + 'static>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, Fail>> + Send + 'static,
    ) -> Result<T, Error> {
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(ANSWER_TIMEOUT, request).await });
        match futures::executor::block_on(task) {
            Ok(answer) => self.settle(what, answer),
            Err(e) => Err(closed(what, &e)),
        }
    }

    /// Runs `requests` on the connection's thread, [`IN_FLIGHT`] at a time
    /// and sent in order, and waits for all: one result per request, each
    /// named in its error by its `String` (`ip` syntax).
    pub(super) fn run_all(&self, requests: Vec<(String, Request)>) -> Vec<Result<(), Error>> {
        let (names, requests): (Vec<String>, Vec<Request>) = requests.into_iter().unzip();
        let task = self.runtime.spawn(
            futures::stream::iter(requests)
                // The timeout starts when the request is sent.
                .map(|r| async move { tokio::time::timeout(ANSWER_TIMEOUT, r).await })
                .buffered(IN_FLIGHT)
                .collect::<Vec<_>>(),
        );
        match futures::executor::block_on(task) {
            Ok(answers) => names
                .iter()
                .zip(answers)
                .map(|(what, answer)| self.settle(what, answer))
                .collect(),
            Err(e) => names.iter().map(|what| Err(closed(what, &e))).collect(),
        }
    }

    /// One request's outcome as route-sync's result.
    fn settle<T>(
        &self,
        what: &str,
        answer: Result<Result<T, Fail>, tokio::time::error::Elapsed>,
    ) -> Result<T, Error> {
        match answer {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(fail)) => Err(self.error(what, fail)),
            Err(_elapsed) => Err(Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no answer from the kernel to {what} within {} s",
                    ANSWER_TIMEOUT.as_secs()
                ),
            ))),
        }
    }

    fn error(&self, what: &str, fail: Fail) -> Error {
        match fail {
            Fail::Rtnl(rtnetlink::Error::NetlinkError(e)) => self.kernel(what, &e),
            Fail::Rtnl(rtnetlink::Error::RequestFailed) | Fail::NoAnswer => {
                Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("rtnetlink connection closed before the kernel answered {what}"),
                ))
            }
            Fail::Rtnl(e) => Error::Protocol(format!("{what}: {e}")),
        }
    }

    fn kernel(&self, what: &str, e: &ErrorMessage) -> Error {
        Error::Kernel {
            op: what.to_string(),
            errno: e.raw_code().abs(),
            ext_ack: self.ext_ack.then(|| ext_ack_text(&e.header)).flatten(),
        }
    }
}

/// The connection's runtime is gone (its socket failed earlier), or the
/// request's task panicked.
fn closed(what: &str, e: &tokio::task::JoinError) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("rtnetlink connection closed before {what}: {e}"),
    ))
}

/// The text of an extended ack: with `NETLINK_CAP_ACK` the error's payload
/// is the request's 16-byte header, then attributes (`NLMSGERR_ATTR_*`).
fn ext_ack_text(payload: &[u8]) -> Option<String> {
    let mut at = 16;
    while at + 4 <= payload.len() {
        let len = usize::from(u16::from_ne_bytes([payload[at], payload[at + 1]]));
        let kind = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]) & 0x3fff;
        if len < 4 || at + len > payload.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = payload[at + 4..at + len].split(|b| *b == 0).next()?;
            let text = String::from_utf8_lossy(text).trim().to_string();
            return (!text.is_empty()).then_some(text);
        }
        at += (len + 3) & !3;
    }
    None
}

/// A request with `NLM_F_ACK` (add, replace, delete, set): rtnetlink's
/// `execute()` returns the forwarded ACK as a `NetlinkError` without a
/// code, and `Ok` only when the answer stream ended without one.
pub(super) async fn acked(
    request: impl Future<Output = Result<(), rtnetlink::Error>>,
) -> Result<(), Fail> {
    match request.await {
        Err(rtnetlink::Error::NetlinkError(e)) if e.code.is_none() => Ok(()),
        Err(e) => Err(Fail::Rtnl(e)),
        Ok(()) => Err(Fail::NoAnswer),
    }
}

/// A dump: every message up to `NLMSG_DONE` (forwarded; rtnetlink's
/// stream yields it as an unexpected message). A dump the kernel ended
/// with an error code in `NLMSG_DONE` fails with that errno.
pub(super) async fn dump<T>(
    answers: impl Stream<Item = Result<T, rtnetlink::Error>>,
) -> Result<Vec<T>, Fail> {
    let mut answers = std::pin::pin!(answers);
    let mut out = Vec::new();
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(m) => out.push(m),
            Err(rtnetlink::Error::UnexpectedMessage(m)) => match m.payload {
                NetlinkPayload::Done(d) if d.code == 0 => return Ok(out),
                NetlinkPayload::Done(d) => {
                    let mut e = ErrorMessage::default();
                    e.code = std::num::NonZeroI32::new(d.code);
                    return Err(Fail::Rtnl(rtnetlink::Error::NetlinkError(e)));
                }
                payload => {
                    let m = netlink_packet_core::NetlinkMessage::new(m.header, payload);
                    return Err(Fail::Rtnl(rtnetlink::Error::UnexpectedMessage(m)));
                }
            },
            Err(e) => return Err(Fail::Rtnl(e)),
        }
    }
    Err(Fail::NoAnswer)
}

/// A get of one object (`ip link show dev NAME`): its message.
pub(super) async fn one<T>(
    answers: impl Stream<Item = Result<T, rtnetlink::Error>>,
) -> Result<T, Fail> {
    let mut answers = std::pin::pin!(answers);
    match answers.next().await {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(Fail::Rtnl(e)),
        None => Err(Fail::NoAnswer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use netlink_packet_core::{DoneMessage, NetlinkHeader, NetlinkMessage};

    #[test]
    fn an_answer_that_ends_without_its_ack_or_done_is_not_a_success() {
        let closed = acked(async { Ok(()) });
        assert!(matches!(block_on(closed), Err(Fail::NoAnswer)));
        let ack = acked(async { Err(rtnetlink::Error::NetlinkError(ErrorMessage::default())) });
        assert!(block_on(ack).is_ok(), "the forwarded ACK is success");
        let cut = dump(futures::stream::iter([
            Ok::<u32, rtnetlink::Error>(1),
            Ok(2),
        ]));
        assert!(matches!(block_on(cut), Err(Fail::NoAnswer)));
    }

    #[test]
    fn a_dump_ends_at_done_and_fails_with_the_errno_done_carries() {
        let done = |code: i32| {
            let mut d = DoneMessage::default();
            d.code = code;
            Err(rtnetlink::Error::UnexpectedMessage(NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::Done(d),
            )))
        };
        let whole = dump(futures::stream::iter([Ok(1), Ok(2), done(0)]));
        assert_eq!(block_on(whole).ok(), Some(vec![1, 2]));
        let failed = dump(futures::stream::iter([Ok(1), done(-4)]));
        match block_on(failed) {
            Err(Fail::Rtnl(rtnetlink::Error::NetlinkError(e))) => assert_eq!(e.raw_code(), -4),
            _ => panic!("NLMSG_DONE with -EINTR must fail the dump"),
        }
    }

    #[test]
    fn the_extended_ack_text_is_read_after_the_capped_header() {
        let mut p = vec![0u8; 16];
        // NLMSGERR_ATTR_OFFS (2), then NLMSGERR_ATTR_MSG (1).
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&2u16.to_ne_bytes());
        p.extend_from_slice(&40u32.to_ne_bytes());
        let text = b"Nexthop has invalid gateway\0";
        p.extend_from_slice(&(4 + text.len() as u16).to_ne_bytes());
        p.extend_from_slice(&1u16.to_ne_bytes());
        p.extend_from_slice(text);
        assert_eq!(
            ext_ack_text(&p).as_deref(),
            Some("Nexthop has invalid gateway")
        );
        assert_eq!(ext_ack_text(&p[..16]), None, "no attributes, no text");
        assert_eq!(
            ext_ack_text(&p[..30]),
            None,
            "a truncated attribute is ignored"
        );
    }
}
