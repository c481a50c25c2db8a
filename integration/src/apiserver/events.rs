//! events.k8s.io/v1 Events in the stand-in: create, patch (merge,
//! strategic merge and server-side apply, as kube-rs sends them), get and
//! list, checked as the real API server checks them
//! (`ValidateEventCreate` and `ValidateEventUpdate` of
//! pkg/apis/core/validation/events.go for the v1 API). Events are kept
//! apart from the watched kinds (no watch, no history): tests read them
//! with [`super::ApiServer::events`].
//!
//! Not served: JSON patch (415), update (PUT) and delete (405).

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The stored Events by (namespace, name), and their own version
/// counter (resourceVersions are opaque to clients).
#[derive(Default)]
pub struct EventStore {
    objects: BTreeMap<(String, String), Value>,
    rv: u64,
}

/// A request for an Event: method, namespace (None: every namespace, for
/// lists), name, query, `Content-Type` and body.
pub struct EventRequest<'a> {
    pub method: &'a str,
    pub ns: Option<&'a str>,
    pub name: Option<&'a str>,
    pub query: &'a BTreeMap<String, String>,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// Where a path under `/apis/events.k8s.io/v1` points.
pub enum Route {
    /// Events: of a namespace (or all, for lists), one of them by name.
    Events {
        /// The namespace; `None` for `/apis/events.k8s.io/v1/events`.
        ns: Option<String>,
        /// The Event's name.
        name: Option<String>,
    },
    /// The group version's resource list.
    Discovery(Value),
    /// Nothing there.
    NotFound,
}

/// Where `path` points; `None` outside `/apis/events.k8s.io/v1`.
pub fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["apis", "events.k8s.io", "v1", rest @ ..] => rest,
        _ => return None,
    };
    let events = |ns: Option<&str>, name: Option<&str>| Route::Events {
        ns: ns.map(str::to_string),
        name: name.map(str::to_string),
    };
    Some(match rest {
        ["events"] => events(None, None),
        ["namespaces", ns, "events"] => events(Some(ns), None),
        ["namespaces", ns, "events", name] => events(Some(ns), Some(name)),
        [] => Route::Discovery(
            json!({"kind": "APIResourceList", "groupVersion": "events.k8s.io/v1",
            "resources": [{"name": "events", "singularName": "event", "namespaced": true,
                           "kind": "Event", "verbs": ["create", "get", "list", "patch"]}]}),
        ),
        _ => Route::NotFound,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn invalid(name: &str, errors: &[String]) -> (u16, Value) {
    let msg = format!(
        "Event.events.k8s.io {name:?} is invalid: [{}]",
        errors.join(", ")
    );
    (422, status(422, "Invalid", &msg))
}

impl EventStore {
    /// Every stored Event, by namespace and name.
    pub fn all(&self) -> Vec<Value> {
        self.objects.values().cloned().collect()
    }

    /// Serves `req`: the HTTP status and the body.
    pub fn serve(&mut self, req: &EventRequest) -> (u16, Value) {
        match (req.method, req.ns, req.name) {
            ("GET", ns, None) => {
                let items: Vec<&Value> = (self.objects.iter())
                    .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                    .map(|(_, v)| v)
                    .collect();
                let list = json!({"kind": "EventList", "apiVersion": "events.k8s.io/v1",
                    "metadata": {"resourceVersion": self.rv.to_string()}, "items": items});
                (200, list)
            }
            ("GET", Some(ns), Some(name)) => self.get(ns, name),
            ("POST", Some(ns), None) => match parse(req.body) {
                Ok(obj) => self.create(ns, obj),
                Err(e) => (400, status(400, "BadRequest", &e)),
            },
            ("PATCH", Some(ns), Some(name)) => self.patch(ns, name, req),
            _ => (
                405,
                status(
                    405,
                    "MethodNotAllowed",
                    "the stand-in serves create, get, list and patch of events",
                ),
            ),
        }
    }

    fn get(&self, ns: &str, name: &str) -> (u16, Value) {
        match self.objects.get(&(ns.to_string(), name.to_string())) {
            Some(o) => (200, o.clone()),
            None => not_found(name),
        }
    }

    fn create(&mut self, ns: &str, mut obj: Value) -> (u16, Value) {
        let Some(map) = obj.as_object_mut() else {
            return (400, status(400, "BadRequest", "the body is not an object"));
        };
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(n) = meta["namespace"]
            .as_str()
            .filter(|n| !n.is_empty() && *n != ns)
        {
            let msg = format!(
                "the namespace of the provided object ({n}) does not match the namespace sent on the request ({ns})"
            );
            return (400, status(400, "BadRequest", &msg));
        }
        meta["namespace"] = json!(ns);
        let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(g)) if !g.is_empty() => format!("{g}{:05x}", self.rv + 1),
            _ => {
                return invalid(
                    "",
                    &["metadata.name: Required value: name or generateName is required".into()],
                )
            }
        };
        meta["name"] = json!(name);
        let errors = validate_create(&obj);
        if !errors.is_empty() {
            return invalid(&name, &errors);
        }
        let key = (ns.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            let msg = format!("events.events.k8s.io {name:?} already exists");
            return (409, status(409, "AlreadyExists", &msg));
        }
        self.rv += 1;
        obj["kind"] = json!("Event");
        obj["apiVersion"] = json!("events.k8s.io/v1");
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(format!("00000000-0000-4000-9000-{:012x}", self.rv));
        meta["creationTimestamp"] = json!(super::store::now_rfc3339());
        meta["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key, obj.clone());
        (201, obj)
    }

    fn patch(&mut self, ns: &str, name: &str, req: &EventRequest) -> (u16, Value) {
        let ct = req.content_type.split(';').next().unwrap_or("").trim();
        let apply = ct == "application/apply-patch+yaml";
        if !apply
            && ct != "application/merge-patch+json"
            && ct != "application/strategic-merge-patch+json"
        {
            let msg = format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (the stand-in does not serve {ct:?})");
            return (415, status(415, "UnsupportedMediaType", &msg));
        }
        if apply && req.query.get("fieldManager").is_none_or(|f| f.is_empty()) {
            let msg = "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch";
            return (422, status(422, "Invalid", msg));
        }
        let patch = match parse(req.body) {
            Ok(p) if p.is_object() => p,
            Ok(_) => return (400, status(400, "BadRequest", "the patch is not an object")),
            Err(e) => return (400, status(400, "BadRequest", &e)),
        };
        let key = (ns.to_string(), name.to_string());
        let Some(old) = self.objects.get(&key).cloned() else {
            if apply {
                let mut obj = patch;
                obj["metadata"]["name"] = json!(name);
                return match self.create(ns, obj) {
                    (201, o) => (201, o),
                    other => other,
                };
            }
            return not_found(name);
        };
        let mut new = old.clone();
        merge(&mut new, &patch);
        let errors = validate_update(&new, &old);
        if !errors.is_empty() {
            return invalid(name, &errors);
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key, new.clone());
        (200, new)
    }
}

fn not_found(name: &str) -> (u16, Value) {
    let msg = format!("events.events.k8s.io {name:?} not found");
    (404, status(404, "NotFound", &msg))
}

/// JSON, or YAML (server-side apply's body may be either).
fn parse(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).or_else(|e| {
        let text = std::str::from_utf8(body).map_err(|_| e.to_string())?;
        serde_saphyr::from_str(text).map_err(|y| format!("cannot decode the body: {e}; {y}"))
    })
}

/// RFC 7386 merge patch: objects merge, `null` removes, anything else
/// replaces.
fn merge(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn text<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj[field].as_str().unwrap_or("")
}

/// A DNS-1123 subdomain: at most 253 characters, lower-case
/// alphanumerics, `-` and `.`, alphanumeric at both ends.
fn is_subdomain(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.len() <= 253
        && s.starts_with(ok)
        && s.ends_with(ok)
        && s.chars().all(|c| ok(c) || c == '-' || c == '.')
}

/// A qualified name: `[subdomain/]name`, the name at most 63
/// alphanumerics, `-`, `_` and `.`, alphanumeric at both ends.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let ok = |c: char| c.is_ascii_alphanumeric();
    prefix.is_none_or(is_subdomain)
        && !name.is_empty()
        && name.len() <= 63
        && name.starts_with(ok)
        && name.ends_with(ok)
        && name.chars().all(|c| ok(c) || matches!(c, '-' | '_' | '.'))
}

/// What the API server refuses in a new v1 Event.
fn validate_create(e: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let meta = &e["metadata"];
    let (name, ns) = (text(meta, "name"), text(meta, "namespace"));
    if !is_subdomain(name) {
        errs.push(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain is required"
        ));
    }
    if !is_subdomain(ns) {
        errs.push(format!("metadata.namespace: Invalid value: {ns:?}"));
    }
    errs.extend(validate_series(e));
    if text(e, "eventTime").is_empty() {
        errs.push("eventTime: Required value".into());
    }
    let ty = text(e, "type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(format!(
            "type: Invalid value: \"\": has invalid value: {ty}"
        ));
    }
    for (field, name) in [
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedSource", "source"),
    ] {
        if !e[field].is_null() && e[field] != json!({}) {
            errs.push(format!("{name}: Invalid value: \"\": needs to be unset"));
        }
    }
    if e["deprecatedCount"].as_i64().is_some_and(|c| c != 0) {
        errs.push("count: Invalid value: \"\": needs to be unset".into());
    }
    if text(&e["regarding"], "namespace").is_empty() && ns != "default" && ns != "kube-system" {
        errs.push(
            "involvedObject.namespace: Invalid value: \"\": does not match event.namespace".into(),
        );
    }
    let controller = text(e, "reportingController");
    if controller.is_empty() {
        errs.push("reportingController: Required value".into());
    } else if !is_qualified_name(controller) {
        errs.push(format!(
            "reportingController: Invalid value: {controller:?}: not a qualified name"
        ));
    }
    for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let v = text(e, field);
        if v.is_empty() {
            errs.push(format!("{field}: Required value"));
        } else if v.len() > limit {
            errs.push(format!(
                "{field}: Invalid value: \"\": can have at most {limit} characters"
            ));
        }
    }
    if text(e, "note").len() > 1024 {
        errs.push("message: Invalid value: \"\": can have at most 1024 characters".into());
    }
    errs
}

fn validate_series(e: &Value) -> Vec<String> {
    let s = &e["series"];
    if s.is_null() {
        return Vec::new();
    }
    let mut errs = Vec::new();
    if s["count"].as_i64().unwrap_or(0) < 2 {
        errs.push("series.count: Invalid value: \"\": should be at least 2".into());
    }
    if text(s, "lastObservedTime").is_empty() {
        errs.push("series.lastObservedTime: Required value".into());
    }
    errs
}

/// What the API server refuses in a change to a v1 Event: the series
/// only may change (and must then be valid), not what the event says.
fn validate_update(new: &Value, old: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for field in ["name", "namespace", "uid", "creationTimestamp"] {
        if new["metadata"][field] != old["metadata"][field] {
            errs.push(format!(
                "metadata.{field}: Invalid value: field is immutable"
            ));
        }
    }
    if new["series"] != old["series"] {
        errs.extend(validate_series(new));
    }
    for field in [
        "regarding",
        "reason",
        "note",
        "deprecatedSource",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedCount",
        "type",
        "eventTime",
        "action",
        "related",
        "reportingController",
        "reportingInstance",
    ] {
        if new[field] != old[field] {
            errs.push(format!("{field}: Invalid value: field is immutable"));
        }
    }
    errs
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
