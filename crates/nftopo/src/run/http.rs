//! The HTTP server of the metrics, health and health-check node-port
//! endpoints, on hyper (HTTP/1.1, keep-alive for scrapers): GET and HEAD
//! only. Made for an open port that anyone on the network may reach:
//!
//! * at most [`MAX_CONNECTIONS`] connections per listener; a new one
//!   beyond that closes the oldest (gracefully: a request in flight is
//!   answered first), so that idle connections, however many are opened,
//!   never lock a probe out;
//! * a client that does not send a whole request head within
//!   [`HEADER_TIMEOUT`] (first request, or the next one on a kept-alive
//!   connection) is disconnected;
//! * the process's descriptor limit is raised to its hard limit at start
//!   ([`raise_fd_limit`]), as Go programs do.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Connections kept per listener; the oldest goes when a new one comes.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: String,
}

impl Response {
    /// A JSON response with kube-proxy's `X-Content-Type-Options: nosniff`.
    pub fn json(status: u16, body: String) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: vec![("X-Content-Type-Options", "nosniff".into())],
            body,
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::text(
            404,
            "text/plain; charset=utf-8",
            "404 page not found\n".into(),
        )
    }

    /// As hyper's response.
    pub fn into_hyper(self) -> hyper::Response<Body> {
        let mut r = hyper::Response::new(Full::new(Bytes::from(self.body)).boxed());
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        r
    }
}

/// Answers a request for a path (query string removed).
pub type Handler = Arc<dyn Fn(&str) -> Response + Send + Sync>;

/// A response body: whole, or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// A response that takes waiting for.
pub type Reply = Pin<Box<dyn Future<Output = hyper::Response<Body>> + Send>>;

/// Answers the paths it knows (given the path and the query string)
/// asynchronously; `None` leaves the request to the [`Handler`].
pub type Routes = Arc<dyn Fn(&str, Option<&str>) -> Option<Reply> + Send + Sync>;

/// The open connections of one listener, oldest first, each with the
/// signal that closes it.
#[derive(Default)]
struct Connections {
    open: Mutex<BTreeMap<u64, Arc<Notify>>>,
    next: AtomicU64,
}

impl Connections {
    /// Registers a new connection; closes the oldest when full.
    fn admit(&self) -> (u64, Arc<Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        let mut open = self.open.lock().expect("connections lock");
        if open.len() >= MAX_CONNECTIONS {
            if let Some((_, oldest)) = open.pop_first() {
                oldest.notify_one();
            }
        }
        open.insert(id, close.clone());
        (id, close)
    }

    fn gone(&self, id: u64) {
        self.open.lock().expect("connections lock").remove(&id);
    }
}

/// Serves `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, handler: Handler) {
    serve_with(listener, handler, None).await
}

/// [`serve`], where `routes` answers first what it knows (GET and HEAD).
pub async fn serve_with(listener: TcpListener, handler: Handler, routes: Option<Routes>) {
    let connections = Arc::new(Connections::default());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (id, close) = connections.admit();
        let connections = connections.clone();
        let handler = handler.clone();
        let routes = routes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let read = matches!(*req.method(), Method::GET | Method::HEAD);
                let routed = routes
                    .as_ref()
                    .filter(|_| read)
                    .and_then(|r| r(req.uri().path(), req.uri().query()));
                let response = match routed {
                    Some(reply) => Err(reply),
                    None => Ok(answer(&handler, &req)),
                };
                async move {
                    Ok::<_, Infallible>(match response {
                        Ok(r) => r.into_hyper(),
                        Err(reply) => reply.await,
                    })
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = close.notified() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            connections.gone(id);
        });
    }
}

/// GET and HEAD go to the handler (hyper leaves HEAD's body out); other
/// methods are refused.
fn answer(handler: &Handler, req: &Request<Incoming>) -> Response {
    match *req.method() {
        Method::GET | Method::HEAD => handler(req.uri().path()),
        _ => Response::text(
            405,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
        ),
    }
}

/// Raises the soft limit on open descriptors to the hard limit (Go's
/// runtime does the same at start): the default soft limit of 1024 is
/// what a few idle HTTP connections per second used to exhaust. Returns
/// the limit now in force.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Sends `request` (with `Connection: close` added) to `addr`; returns
    /// the whole response.
    pub(crate) async fn fetch(addr: std::net::SocketAddr, request: &str) -> String {
        let request = request.replacen("\r\n", "\r\nConnection: close\r\n", 1);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn handler() -> Handler {
        Arc::new(|path: &str| match path {
            "/ok" => Response::json(200, "{}".into()),
            _ => Response::not_found(),
        })
    }

    #[tokio::test]
    async fn answers_get_and_head_and_refuses_other_methods() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, handler()));
        let get = fetch(addr, "GET /ok?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.contains("content-type: application/json\r\n"), "{get}");
        assert!(get.contains("x-content-type-options: nosniff\r\n"), "{get}");
        assert!(get.ends_with("\r\n\r\n{}"), "{get}");
        let head = fetch(addr, "HEAD /ok HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let missing = fetch(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = fetch(addr, "POST /ok HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        server.abort();
    }

    /// A scraper keeps its connection: two requests on one.
    #[tokio::test]
    async fn a_kept_alive_connection_serves_several_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, handler()));
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        for _ in 0..2 {
            s.write_all(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .unwrap();
            let n = s.read(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        }
        server.abort();
    }

    /// Idle connections beyond the cap do not lock anyone out: the oldest
    /// are closed, and a new client is answered at once.
    #[tokio::test]
    async fn idle_connections_beyond_the_cap_close_the_oldest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, handler()));
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS + 10 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let answered = tokio::time::timeout(
            Duration::from_secs(5),
            fetch(addr, "GET /ok HTTP/1.1\r\n\r\n"),
        )
        .await
        .expect("answered while idle connections are held");
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        // The first idle connections were closed by the server.
        let mut first = idle.remove(0);
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut b))
            .await
            .expect("the oldest is closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "EOF on the oldest idle connection");
        server.abort();
    }
}
