//! The daemon's answers about its own decisions, on the metrics address
//! (loopback by default):
//!
//! * `GET /debug/explain/NAMESPACE/NAME` — what `nftopo explain --output
//!   json` prints for that Service, planned from the daemon's own store
//!   at the time of the request (`?output=table` for the table form,
//!   which `nftopo explain --daemon` prints); 404 with a JSON error for a
//!   Service the store does not hold;
//! * `GET /debug/plan` — the whole topology plan the last sync used, as
//!   JSON, streamed while it is written.
//!
//! The HTTP tasks hold no state: each request goes to the sync loop
//! ([`DebugRequest`], a bounded queue) and is answered there between
//! syncs, from the one store. The plan is handed out shared
//! ([`proxier::Proxier::shared_plan`]) and written out by the HTTP task:
//! a sync while it is streamed re-plans a copy (once), so a slow reader
//! never holds the loop.

use std::convert::Infallible;
use std::sync::Arc;

use api_watch::{ClusterState, ObjectKey, SliceIndex};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use tokio::sync::{mpsc, oneshot};
use topology_filter::ProxyPlan;

use super::http::{Body, Reply, Response, Routes};
use crate::explain::{self, Output};

/// Requests waiting for the loop; more are refused with 503.
const QUEUE: usize = 16;
/// Bytes written into one chunk of the streamed plan.
const CHUNK: usize = 64 << 10;

/// A question for the sync loop.
#[derive(Debug)]
pub enum DebugRequest {
    /// Explain one Service.
    Explain {
        /// The Service.
        service: ObjectKey,
        /// JSON or table.
        output: Output,
        /// Where the answer goes.
        reply: oneshot::Sender<Response>,
    },
    /// The plan of the last sync (`None` before the first).
    Plan {
        /// Where the plan goes.
        reply: oneshot::Sender<Option<Arc<ProxyPlan>>>,
    },
}

/// The HTTP side: sends requests to the loop.
#[derive(Debug, Clone)]
pub struct DebugHandle(mpsc::Sender<DebugRequest>);

/// A handle for the HTTP side and the receiver the sync loop answers.
pub fn channel() -> (DebugHandle, mpsc::Receiver<DebugRequest>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (DebugHandle(tx), rx)
}

impl DebugHandle {
    /// The routes under `/debug/`, for [`super::http::serve_with`].
    pub fn routes(self) -> Routes {
        Arc::new(move |path: &str, query: Option<&str>| self.route(path, query))
    }

    fn route(&self, path: &str, query: Option<&str>) -> Option<Reply> {
        let tx = self.0.clone();
        if path == "/debug/plan" {
            return Some(Box::pin(async move {
                let (reply, answer) = oneshot::channel();
                if tx.try_send(DebugRequest::Plan { reply }).is_err() {
                    return busy();
                }
                match answer.await {
                    Ok(Some(plan)) => stream_plan(plan),
                    Ok(None) => not_synced(),
                    Err(_) => busy(),
                }
            }));
        }
        let rest = path.strip_prefix("/debug/explain/")?;
        let output = match query {
            Some(q) if q.split('&').any(|kv| kv == "output=table") => Output::Table,
            _ => Output::Json,
        };
        let service = explain::service_key(rest);
        Some(Box::pin(async move {
            let service = match service {
                Ok(s) => s,
                Err(e) => return error(400, &e.to_string()),
            };
            let (reply, answer) = oneshot::channel();
            let request = DebugRequest::Explain {
                service,
                output,
                reply,
            };
            if tx.try_send(request).is_err() {
                return busy();
            }
            match answer.await {
                Ok(r) => r.into_hyper(),
                Err(_) => busy(),
            }
        }))
    }
}

/// Answers `request` in the sync loop from its store (`state`, `slices`)
/// and the plan of its last sync (`plan`; `None` before the first).
pub fn answer(
    request: DebugRequest,
    state: &ClusterState,
    slices: Option<&SliceIndex>,
    node: &str,
    plan: Option<Arc<ProxyPlan>>,
) {
    match request {
        DebugRequest::Plan { reply } => {
            let _ = reply.send(plan);
        }
        DebugRequest::Explain {
            service,
            output,
            reply,
        } => {
            let response = if plan.is_none() {
                json_error(503, "the daemon has not synced yet")
            } else {
                match explain::explain_service(state, slices, node, &service, output) {
                    None => json_error(404, &format!("service {service} not found")),
                    Some(Err(e)) => json_error(500, &e.to_string()),
                    Some(Ok(text)) => match output {
                        Output::Json => Response::json(200, text),
                        Output::Table => Response::text(200, "text/plain; charset=utf-8", text),
                    },
                }
            };
            let _ = reply.send(response);
        }
    }
}

fn json_error(status: u16, message: &str) -> Response {
    Response::json(
        status,
        serde_json::json!({ "error": message }).to_string() + "\n",
    )
}

fn error(status: u16, message: &str) -> hyper::Response<Body> {
    json_error(status, message).into_hyper()
}

fn busy() -> hyper::Response<Body> {
    error(503, "the sync loop is busy; try again")
}

fn not_synced() -> hyper::Response<Body> {
    error(503, "the daemon has not synced yet")
}

/// `plan` as JSON (the value `serde_json` gives for it), written in chunks
/// by a task of its own as the client reads them.
fn stream_plan(plan: Arc<ProxyPlan>) -> hyper::Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(CHUNK);
        let head = serde_json::json!({
            "node": plan.node,
            "node_addresses": plan.node_addresses,
            "node_pod_cidrs": plan.node_pod_cidrs,
            "service_cidrs": plan.service_cidrs,
            "problems": plan.problems,
        });
        // The object's fields, the services last: `{"node": …, "services": [`.
        let head = head.to_string();
        buf.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        buf.extend_from_slice(b",\"services\":[");
        for (i, sp) in plan.services.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            if serde_json::to_writer(&mut buf, sp).is_err() {
                return;
            }
            if buf.len() >= CHUNK {
                let chunk = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK));
                if tx.send(Bytes::from(chunk)).await.is_err() {
                    return; // the client went away
                }
            }
        }
        buf.extend_from_slice(b"]}\n");
        let _ = tx.send(Bytes::from(buf)).await;
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let mut r = hyper::Response::new(StreamBody::new(frames).boxed());
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        "X-Content-Type-Options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests;
