//! The stand-in's object store: current objects by (resource, namespace,
//! name), one global resourceVersion counter, and the event history that
//! watches replay from.

use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// The resources the stand-in serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// core/v1 Service (namespaced).
    Service,
    /// discovery.k8s.io/v1 EndpointSlice (namespaced).
    EndpointSlice,
    /// core/v1 Node (cluster-scoped).
    Node,
    /// crd.projectcalico.org/v1 BlockAffinity (cluster-scoped; Calico's
    /// CRD, served as if installed).
    BlockAffinity,
    /// networking.k8s.io/v1 ServiceCIDR (cluster-scoped).
    ServiceCidr,
}

impl Resource {
    /// By `kind` (as in an object) or plural resource name (as in a path).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Service" | "services" => Some(Self::Service),
            "EndpointSlice" | "endpointslices" => Some(Self::EndpointSlice),
            "Node" | "nodes" => Some(Self::Node),
            "BlockAffinity" | "blockaffinities" => Some(Self::BlockAffinity),
            "ServiceCIDR" | "servicecidrs" => Some(Self::ServiceCidr),
            _ => None,
        }
    }
    /// The object kind.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
            Self::Node => "Node",
            Self::BlockAffinity => "BlockAffinity",
            Self::ServiceCidr => "ServiceCIDR",
        }
    }
    /// The plural name in paths.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Service => "services",
            Self::EndpointSlice => "endpointslices",
            Self::Node => "nodes",
            Self::BlockAffinity => "blockaffinities",
            Self::ServiceCidr => "servicecidrs",
        }
    }
    /// apiVersion of objects and lists.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::Service | Self::Node => "v1",
            Self::EndpointSlice => "discovery.k8s.io/v1",
            Self::BlockAffinity => "crd.projectcalico.org/v1",
            Self::ServiceCidr => "networking.k8s.io/v1",
        }
    }
    /// The API group ("" for the core group).
    pub fn group(self) -> &'static str {
        self.api_version()
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }
    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Self::Node | Self::BlockAffinity | Self::ServiceCidr)
    }
}

/// Store key: resource, namespace ("" when cluster-scoped), name.
pub type Key = (Resource, String, String);

/// One change as watches replay it.
#[derive(Clone, Debug)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Which object.
    pub key: Key,
    /// Object before the change (None when created).
    pub old: Option<Arc<Value>>,
    /// Object after the change; for a deletion the last state stamped with
    /// the deletion's resourceVersion.
    pub new: Arc<Value>,
    /// Whether this change deleted the object.
    pub deleted: bool,
}

/// A consistent list kept for `continue` tokens.
pub struct Snapshot {
    pub rv: u64,
    pub items: Vec<Arc<Value>>,
}

/// Everything the server knows.
#[derive(Default)]
pub struct Store {
    /// Last resourceVersion handed out.
    pub rv: u64,
    /// Watches may start from any resourceVersion >= floor; older ones get
    /// 410 Gone. Changes with rv > floor are in `history`.
    pub floor: u64,
    pub objects: BTreeMap<Key, Arc<Value>>,
    pub history: VecDeque<Change>,
    /// Paginated lists in progress, by id.
    pub snapshots: BTreeMap<u64, Snapshot>,
    pub next_snapshot: u64,
    /// History longer than this is trimmed from the front (raising floor).
    pub max_history: usize,
    /// events.k8s.io/v1 Events (apart: not watched).
    pub events: super::events::EventStore,
}

/// An error for a request to apply or delete.
#[derive(Debug)]
pub struct BadObject(pub String);

impl std::fmt::Display for BadObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadObject {}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

impl Store {
    /// Creates or replaces an object; returns its new resourceVersion.
    pub fn apply(&mut self, mut obj: Value) -> Result<u64, BadObject> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let res =
            Resource::parse(kind).ok_or_else(|| BadObject(format!("unsupported kind {kind:?}")))?;
        let name = meta_str(&obj, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| BadObject(format!("{kind} without metadata.name")))?
            .to_string();
        let ns = if res.namespaced() {
            meta_str(&obj, "namespace").unwrap_or("default").to_string()
        } else {
            String::new()
        };
        let key = (res, ns.clone(), name.clone());
        let old = self.objects.get(&key).cloned();
        self.rv += 1;
        let rv = self.rv;
        let map = obj
            .as_object_mut()
            .ok_or_else(|| BadObject("not an object".into()))?;
        map.entry("apiVersion")
            .or_insert_with(|| json!(res.api_version()));
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        let meta = meta
            .as_object_mut()
            .ok_or_else(|| BadObject("metadata is not an object".into()))?;
        if res.namespaced() {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        let (uid, created, generation) = match &old {
            Some(o) => (
                meta_str(o, "uid").unwrap_or_default().to_string(),
                meta_str(o, "creationTimestamp")
                    .unwrap_or_default()
                    .to_string(),
                o["metadata"]["generation"].as_u64().unwrap_or(1) + 1,
            ),
            None => (
                format!("00000000-0000-4000-8000-{rv:012x}"),
                now_rfc3339(),
                1,
            ),
        };
        meta.entry("uid").or_insert_with(|| json!(uid));
        meta.entry("creationTimestamp")
            .or_insert_with(|| json!(created));
        meta.insert("generation".into(), json!(generation));
        let new = Arc::new(obj);
        self.objects.insert(key.clone(), new.clone());
        self.push(Change {
            rv,
            key,
            old,
            new,
            deleted: false,
        });
        Ok(rv)
    }

    /// Deletes an object; its resourceVersion at deletion, or None when absent.
    pub fn delete(&mut self, res: Resource, ns: &str, name: &str) -> Option<u64> {
        let ns = if res.namespaced() { ns } else { "" };
        let key = (res, ns.to_string(), name.to_string());
        let old = self.objects.remove(&key)?;
        self.rv += 1;
        let rv = self.rv;
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.push(Change {
            rv,
            key,
            old: Some(old),
            new: Arc::new(last),
            deleted: true,
        });
        Some(rv)
    }

    fn push(&mut self, change: Change) {
        self.history.push_back(change);
        while self.history.len() > self.max_history.max(1) {
            if let Some(c) = self.history.pop_front() {
                self.floor = c.rv;
            }
        }
    }

    /// Forgets all history: watches from any older resourceVersion get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
        self.snapshots.clear();
    }

    /// Current objects of one resource in one namespace (None: all).
    pub fn list(&self, res: Resource, ns: Option<&str>, sel: &Selectors) -> Vec<Arc<Value>> {
        self.objects
            .iter()
            .filter(|((r, n, _), o)| *r == res && ns.is_none_or(|ns| ns == n) && sel.matches(o))
            .map(|(_, o)| o.clone())
            .collect()
    }
}

/// RFC 3339 UTC timestamp of now, seconds precision.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// One requirement of a label or field selector.
#[derive(Clone, Debug)]
enum Req {
    Exists(String),
    NotExists(String),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Parsed `labelSelector` and `fieldSelector`.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    labels: Vec<Req>,
    fields: Vec<Req>,
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_req(term: &str) -> Result<Req, String> {
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("bad set in selector term {term:?}"))?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
    };
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Req::NotExists(k.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Req::Ne(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Req::Eq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Ok(Req::NotIn(k.trim().into(), set(rest)?));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Ok(Req::In(k.trim().into(), set(rest)?));
    }
    Ok(Req::Exists(term.to_string()))
}

impl Req {
    fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
            Req::Eq(k, v) => get(k).as_deref() == Some(v),
            Req::Ne(k, v) => get(k).as_deref() != Some(v),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        }
    }
}

impl Selectors {
    /// Parses the two query parameters (already percent-decoded).
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        let p = |s: Option<&str>| -> Result<Vec<Req>, String> {
            split_terms(s.unwrap_or(""))
                .iter()
                .map(|t| parse_req(t))
                .collect()
        };
        Ok(Self {
            labels: p(labels)?,
            fields: p(fields)?,
        })
    }

    /// Whether the object matches both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| obj["metadata"]["labels"][k].as_str().map(str::to_string);
        let field = |k: &str| {
            let mut v = obj;
            for part in k.split('.') {
                v = &v[part];
            }
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => Some(String::new()),
                other => Some(other.to_string()),
            }
        };
        self.labels.iter().all(|r| r.matches(&label))
            && self.fields.iter().all(|r| r.matches(&field))
    }
}
