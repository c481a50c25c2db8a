//! A hand-rolled HTTP/1.1 server on std threads: one thread per
//! connection, keep-alive, chunked watch streams.

mod listwatch;

use listwatch::*;

use super::events::{EventRequest, Route};
use super::store::{Change, Resource, Selectors, Snapshot};
use super::Shared;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accepts until `stop` is set; the listener is non-blocking.
pub(super) fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut handles = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let (shared, stop) = (shared.clone(), stop.clone());
                handles.push(std::thread::spawn(move || {
                    serve_conn(stream, &shared, &stop)
                }));
                handles.retain(|h: &std::thread::JoinHandle<()>| !h.is_finished());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    drop(listener);
    shared.close_conns(false);
    for h in handles {
        let _ = h.join();
    }
}

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    raw: String,
    close: bool,
    content_type: String,
    body: Vec<u8>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_request(r: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (method, target, version) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("/").to_string(),
        parts.next().unwrap_or("HTTP/1.1").to_string(),
    );
    let mut close = version == "HTTP/1.0";
    let mut length = 0usize;
    let mut content_type = String::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            } else if k == "content-type" {
                content_type = v.to_string();
            } else if k == "connection" && v.eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
    let query = qs
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Ok(Some(Request {
        method,
        path: percent_decode(path),
        query,
        raw: target.clone(),
        close,
        content_type,
        body,
    }))
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn write_response(w: &mut TcpStream, code: u16, body: &Value, close: bool) -> io::Result<()> {
    write_body(
        w,
        code,
        &serde_json::to_vec(body).unwrap_or_default(),
        close,
    )
}

/// A response with an already serialized JSON body.
fn write_body(w: &mut TcpStream, code: u16, body: &[u8], close: bool) -> io::Result<()> {
    let text = match code {
        200 => "OK",
        201 => "Created",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        _ => "Bad Request",
    };
    let head = format!(
        "HTTP/1.1 {code} {text}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn write_chunk(w: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    let mut buf = format!("{:x}\r\n", data.len()).into_bytes();
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
    w.write_all(&buf)?;
    w.flush()
}

fn serve_conn(stream: TcpStream, shared: &Arc<Shared>, stop: &AtomicBool) {
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let id = shared.register(&stream);
    let mut r = BufReader::new(stream);
    while !stop.load(Ordering::SeqCst) {
        let req = match read_request(&mut r) {
            Ok(Some(req)) => req,
            _ => break,
        };
        shared.log(format!("{} {}", req.method, req.raw));
        let delay = *shared.delay.lock().unwrap();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if handle(&req, &mut w, shared, stop, id).is_err() || req.close {
            break;
        }
    }
    shared.unregister(id);
    let _ = w.shutdown(Shutdown::Both);
}

/// Where a resource path points.
struct Target {
    res: Resource,
    ns: Option<String>,
    name: Option<String>,
}

fn route(path: &str) -> Result<Target, Value> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "discovery.k8s.io", "v1", rest @ ..] => ("discovery.k8s.io", rest),
        ["apis", "crd.projectcalico.org", "v1", rest @ ..] => ("crd.projectcalico.org", rest),
        ["apis", "networking.k8s.io", "v1", rest @ ..] => ("networking.k8s.io", rest),
        _ => {
            return Err(status(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
            ))
        }
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => (*plural, None),
        [plural, name] => (*plural, Some(name.to_string())),
        _ => {
            return Err(status(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
            ))
        }
    };
    let res = Resource::parse(plural)
        .filter(|r| r.group() == group)
        .filter(|r| r.namespaced() || ns.is_none())
        .ok_or_else(|| {
            status(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
            )
        })?;
    Ok(Target { res, ns, name })
}

fn discovery(path: &str) -> Option<Value> {
    let res = |r: Resource| {
        json!({"name": r.plural(), "singularName": r.kind().to_ascii_lowercase(), "namespaced": r.namespaced(),
               "kind": r.kind(), "verbs": ["get", "list", "watch"]})
    };
    Some(match path.trim_end_matches('/') {
        "/version" => json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-nftopo-standin",
                             "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                             "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
            "name": "discovery.k8s.io",
            "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}}, {
            "name": "networking.k8s.io",
            "versions": [{"groupVersion": "networking.k8s.io/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "networking.k8s.io/v1", "version": "v1"}}]}),
        "/api/v1" => json!({"kind": "APIResourceList", "groupVersion": "v1",
                            "resources": [res(Resource::Service), res(Resource::Node)]}),
        "/apis/discovery.k8s.io" => {
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": "discovery.k8s.io",
            "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}})
        }
        "/apis/discovery.k8s.io/v1" => {
            json!({"kind": "APIResourceList", "groupVersion": "discovery.k8s.io/v1",
                                              "resources": [res(Resource::EndpointSlice)]})
        }
        "/apis/networking.k8s.io/v1" => {
            json!({"kind": "APIResourceList", "groupVersion": "networking.k8s.io/v1",
                                              "resources": [res(Resource::ServiceCidr)]})
        }
        "/apis/crd.projectcalico.org/v1" => {
            json!({"kind": "APIResourceList", "groupVersion": "crd.projectcalico.org/v1",
                                              "resources": [res(Resource::BlockAffinity)]})
        }
        _ => return None,
    })
}

fn handle(
    req: &Request,
    w: &mut TcpStream,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
    id: u64,
) -> io::Result<()> {
    if let Some(to) = super::events::route(&req.path) {
        let (code, body) = match to {
            Route::Events { ns, name } => {
                shared.store.lock().unwrap().events.serve(&EventRequest {
                    method: &req.method,
                    ns: ns.as_deref(),
                    name: name.as_deref(),
                    query: &req.query,
                    content_type: &req.content_type,
                    body: &req.body,
                })
            }
            Route::Discovery(doc) => (200, doc),
            Route::NotFound => (404, status(404, "NotFound", "no such path")),
        };
        return write_response(w, code, &body, req.close);
    }
    if req.method != "GET" {
        return write_response(
            w,
            405,
            &status(
                405,
                "MethodNotAllowed",
                "the stand-in is read-only over HTTP",
            ),
            req.close,
        );
    }
    if matches!(req.path.as_str(), "/healthz" | "/livez" | "/readyz") {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
        w.write_all(head.as_bytes())?;
        return w.flush();
    }
    if let Some(doc) = discovery(&req.path) {
        return write_response(w, 200, &doc, req.close);
    }
    let target = match route(&req.path) {
        Ok(t) => t,
        Err(st) => return write_response(w, 404, &st, req.close),
    };
    let refused = shared.refused.lock().unwrap().get(&target.res).copied();
    match refused {
        Some(404) => {
            let st = status(
                404,
                "NotFound",
                &format!(
                    "the server could not find the requested resource ({})",
                    req.path
                ),
            );
            return write_response(w, 404, &st, req.close);
        }
        Some(code) => {
            let message = format!(
                "{} is forbidden: User \"system:serviceaccount:kube-system:nftopo\" cannot list                  resource \"{}\" in API group \"{}\" at the cluster scope",
                target.res.plural(),
                target.res.plural(),
                target.res.group()
            );
            return write_response(w, code, &status(code, "Forbidden", &message), req.close);
        }
        None => {}
    }
    let q = |k: &str| req.query.get(k).map(String::as_str);
    let sel = match Selectors::parse(q("labelSelector"), q("fieldSelector")) {
        Ok(s) => s,
        Err(e) => return write_response(w, 400, &status(400, "BadRequest", &e), req.close),
    };
    let store = shared.store.lock().unwrap();
    if let Some(name) = &target.name {
        let key = (
            target.res,
            target.ns.clone().unwrap_or_default(),
            name.clone(),
        );
        let obj = store.objects.get(&key).cloned();
        drop(store);
        return match obj {
            Some(o) => write_response(w, 200, &o, req.close),
            None => write_response(
                w,
                404,
                &status(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", target.res.plural()),
                ),
                req.close,
            ),
        };
    }
    drop(store);
    if matches!(q("watch"), Some("1" | "true")) {
        return watch(req, w, shared, stop, id, &target, &sel);
    }
    list(req, w, shared, &target, &sel)
}
