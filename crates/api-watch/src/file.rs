//! The manifest file source: YAML (one object per document, or several
//! documents separated by `---`) and JSON files with Services,
//! EndpointSlices, Nodes, ServiceCIDRs and Calico BlockAffinities, or a
//! `kind: List` of them (what `kubectl get -o yaml` prints), reduced to a
//! [`ClusterState`].
//!
//! Bad input is skipped per object: every object that cannot be used is
//! left out and reported as a [`LoadError`] naming the file, the document,
//! the object and the field; every other object still loads. Objects with
//! the same key replace earlier ones (the last one read wins).
//!
//! Services and EndpointSlices that kube-proxy's informers do not select
//! (labelled `service.kubernetes.io/service-proxy-name` or
//! `service.kubernetes.io/headless`) are left out, with a log line: they
//! are not errors. Objects of kinds nftopo does not read (a Deployment,
//! or a typo in `kind:`) are not errors either, but they are counted by
//! kind ([`IgnoredKinds`], from [`read_files`]) so that the command line
//! can say what it left out.

mod guard;
#[cfg(test)]
mod parity_tests;
#[cfg(test)]
mod regressions;
mod slice;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::convert::{self, FieldError};
use crate::ClusterState;

/// Loads every file in order; returns the merged state and every object
/// that was skipped. An unreadable file is one error; the other files still
/// load.
pub fn load_files<P: AsRef<Path>>(paths: &[P]) -> (ClusterState, Vec<LoadError>) {
    let loaded = read_files(paths);
    (loaded.state, loaded.errors)
}

/// What [`read_files`] read: the merged state, every object skipped, and
/// the objects of kinds nftopo does not read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The merged cluster state.
    pub state: ClusterState,
    /// Every object that was skipped, in the order read.
    pub errors: Vec<LoadError>,
    /// Objects left out because nftopo does not read their kind.
    pub ignored: IgnoredKinds,
}

/// [`load_files`], also counting the objects of kinds nftopo does not
/// read, so that a typo in `kind:` or `apiVersion:` can be reported
/// instead of being a silent no-op.
pub fn read_files<P: AsRef<Path>>(paths: &[P]) -> Loaded {
    let mut loaded = Loaded::default();
    for path in paths {
        let path = path.as_ref();
        let source = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                let (text, lossy) = guard::decode(&bytes);
                let (errors, ignored) = load_text(&source, &text, lossy, &mut loaded.state);
                loaded.errors.extend(errors);
                loaded.ignored.merge(ignored);
            }
            Err(e) => loaded.errors.push(LoadError {
                file: source,
                document: 0,
                object: String::new(),
                field: String::new(),
                message: e.to_string(),
            }),
        }
    }
    loaded
}

/// How many objects of each kind nftopo does not read were left out.
///
/// Shown as `2 Deployment, 1 ConfigMap` (most frequent first); a kind
/// nftopo reads under another `apiVersion` is shown with it
/// (`Service (apiVersion v2)`), so that a wrong version is seen too.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IgnoredKinds(BTreeMap<String, usize>);

impl IgnoredKinds {
    /// Kinds listed by [`Display`](std::fmt::Display) before the rest is
    /// summed up, so that the line stays short.
    const SHOWN: usize = 8;

    /// How many objects were ignored.
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }

    /// Whether no object was ignored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The count for one kind as shown (`Deployment`, `Service (apiVersion v2)`).
    pub fn count(&self, kind: &str) -> usize {
        self.0.get(kind).copied().unwrap_or(0)
    }

    fn add(&mut self, api_version: &str, kind: &str) {
        let kind = printable(kind);
        let label = if READ_KINDS.contains(&&*kind) {
            format!("{kind} (apiVersion {})", printable(api_version))
        } else {
            kind
        };
        *self.0.entry(label).or_default() += 1;
    }

    fn merge(&mut self, other: IgnoredKinds) {
        for (kind, n) in other.0 {
            *self.0.entry(kind).or_default() += n;
        }
    }
}

impl std::fmt::Display for IgnoredKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<(&String, &usize)> = self.0.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        for (i, (kind, n)) in kinds.iter().take(Self::SHOWN).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{n} {kind}")?;
        }
        if kinds.len() > Self::SHOWN {
            let rest: usize = kinds[Self::SHOWN..].iter().map(|(_, n)| **n).sum();
            let more = kinds.len() - Self::SHOWN;
            write!(f, " and {rest} of {more} other kinds")?;
        }
        Ok(())
    }
}

/// The kinds nftopo reads (each under its own `apiVersion`s).
const READ_KINDS: &[&str] = &[
    "Service",
    "EndpointSlice",
    "Node",
    "ServiceCIDR",
    "BlockAffinity",
];

/// Loads one text (YAML, multi-document `---`, or JSON) under the name
/// `source` into `state`; returns every object skipped.
pub fn load_str(source: &str, text: &str, state: &mut ClusterState) -> Vec<LoadError> {
    load_text(source, text, false, state).0
}

/// Loads the bytes of one file (as [`load_str`]); bytes that are not
/// UTF-8 cost only the objects that hold them, each reported.
pub fn load_bytes(source: &str, bytes: &[u8], state: &mut ClusterState) -> Vec<LoadError> {
    let (text, lossy) = guard::decode(bytes);
    load_text(source, &text, lossy, state).0
}

/// [`load_str`]; `lossy`: the file was not valid UTF-8 and its invalid
/// bytes were replaced by U+FFFD, so objects holding U+FFFD are skipped.
/// Returns the objects skipped and the kinds ignored.
fn load_text(
    source: &str,
    text: &str,
    lossy: bool,
    state: &mut ClusterState,
) -> (Vec<LoadError>, IgnoredKinds) {
    let mut loader = Loader {
        file: source,
        document: 0,
        state,
        errors: Vec::new(),
        ignored: IgnoredKinds::default(),
    };
    // One document at a time: its parsed value is dropped once loaded,
    // so a file never sits in memory as values (at 10k services x 10
    // endpoints they were most of `nftopo apply`'s peak).
    let mut i = 0;
    parse_documents(text, |document| {
        i += 1;
        loader.document = i;
        match document {
            Ok(value) if value.is_null() => {}
            Ok(value) => match guard::replaced_field(&value).filter(|_| lossy) {
                None => loader.load_object(&value, None),
                Some(field) => {
                    let kind = value["kind"].as_str().unwrap_or("");
                    let object = match kind {
                        "" => "document".to_string(),
                        kind => object_name(kind, &value, None),
                    };
                    let message = "not valid UTF-8 (the file's invalid bytes are here)";
                    loader.error(object, FieldError::new(field, message));
                }
            },
            Err(message) => loader.error("document", FieldError::new("", message)),
        }
    });
    (loader.errors, loader.ignored)
}

/// One object that was skipped, and why.
///
/// Shown as `file: document N: object: field: message`; the parts that are
/// unknown are left out (`document` is 0 when the whole file failed, e.g.
/// it could not be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}{}{}: {message}", document_part(*.document), prefixed(.object), prefixed(.field))]
pub struct LoadError {
    /// The file (or source name) the object came from.
    pub file: String,
    /// 1-based number of the YAML document (or JSON value) in the file; 0
    /// when the error concerns the whole file.
    pub document: usize,
    /// The object, e.g. `Service default/web`, `EndpointSlice items[3]`,
    /// or `document` when it is not known.
    pub object: String,
    /// The field, e.g. `spec.ports[0].port`; empty when not known.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn document_part(document: usize) -> String {
    if document == 0 {
        String::new()
    } else {
        format!(": document {document}")
    }
}

fn prefixed(part: &str) -> String {
    if part.is_empty() {
        String::new()
    } else {
        format!(": {part}")
    }
}

/// Splits the text into documents and hands each to `each` as soon as it
/// is parsed (or the reason it was not), in order.
/// JSON (one or several concatenated values) is tried first when the text
/// looks like JSON; otherwise, or if that fails, YAML. YAML documents are
/// split at their `---` lines here ([`guard::documents`]) and parsed one
/// by one with serde-saphyr, so a document that fails (a syntax error, an
/// unknown anchor, too deep, too repetitive) costs only itself: the next
/// one is read from its own start. Documents nested deeper than
/// [`guard::MAX_FLOW_DEPTH`] are refused unparsed.
fn parse_documents(text: &str, mut each: impl FnMut(Result<Value, String>)) {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // All or nothing: JSON that fails anywhere is read as YAML.
        let json: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect();
        if let Ok(values) = json {
            values.into_iter().map(Ok).for_each(each);
            return;
        }
    }
    let text = guard::flatten_deep(text);
    for (lines_before, document) in guard::documents(&text) {
        each(parse_yaml(document, lines_before));
    }
}

/// One YAML document (its `---` line included) as a JSON value; `null`
/// for a document without content. Errors name lines of the file: the
/// document starts after `lines_before` lines.
fn parse_yaml(document: &str, lines_before: usize) -> Result<Value, String> {
    if !guard::has_content(document) {
        return Ok(Value::Null);
    }
    match serde_saphyr::from_str_with_options::<Value>(document, yaml_options()) {
        Ok(value) if guard::too_deep(&value) => Err(format!(
            "collections nested deeper than {} levels; not parsed",
            guard::MAX_FLOW_DEPTH
        )),
        Ok(value) => Ok(value),
        Err(e) => {
            let options = serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
                line_offset: lines_before as u64,
            };
            // One line without the snippet already; keep the first line
            // all the same, as every error is one line.
            let message = e.render_with_options(options);
            Err(message.lines().next().unwrap_or("").to_string())
        }
    }
}

/// What the YAML reader accepts. The limits that guard against hostile
/// input stay (nesting depth, aliases and how far they expand: the
/// billion laughs); the ones that cap a document's size are raised so
/// that a `kind: List` of 10,000 Services (`kubectl get -o yaml`) still
/// loads: a document's size is bounded by the file's, and the text is
/// already in memory.
fn yaml_options() -> serde_saphyr::Options {
    // Both types are non-exhaustive: set fields on the defaults.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = None;
    budget.max_events = usize::MAX;
    budget.max_nodes = usize::MAX;
    budget.max_total_scalar_bytes = usize::MAX;
    budget.max_documents = usize::MAX;
    // Kubernetes objects nest about 10 deep; deeper is refused before it
    // can overflow the stack (guard::MAX_DEPTH says why 64).
    budget.max_depth = guard::MAX_DEPTH;
    // An anchored node of more than 100,000 events is a bomb, not a
    // manifest (the default, 1,000,000, cost 5 s in a debug build).
    budget.max_recorded_anchor_events = 100_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // YAML 1.2's core schema, as serde_yaml read it: `on`, `yes` and `no`
    // are strings (annotation and label values often are).
    options.strict_booleans = true;
    // One line per error: no source snippet.
    options.with_snippet = false;
    options
}

struct Loader<'a> {
    file: &'a str,
    document: usize,
    state: &'a mut ClusterState,
    errors: Vec<LoadError>,
    ignored: IgnoredKinds,
}

impl Loader<'_> {
    fn error(&mut self, object: impl Into<String>, error: FieldError) {
        let error = LoadError {
            file: self.file.to_string(),
            document: self.document,
            object: object.into(),
            field: error.field,
            message: error.message,
        };
        // Returned, not logged: the caller reports it once, its own way.
        self.errors.push(error);
    }

    /// Loads one object; `path` is its place inside a `List` (`items[3]`).
    fn load_object(&mut self, value: &Value, path: Option<&str>) {
        let unnamed = path.unwrap_or("document").to_string();
        let Some(map) = value.as_object() else {
            let message = format!(
                "expected an object with apiVersion and kind, found {}",
                type_name(value)
            );
            return self.error(unnamed, FieldError::new("", message));
        };
        let str_field = |name: &str| map.get(name).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind) = (str_field("apiVersion"), str_field("kind"));
        if kind.is_empty() {
            return self.error(
                unnamed,
                FieldError::new("kind", "missing; every object needs apiVersion and kind"),
            );
        }
        let object = object_name(kind, value, path);
        let service_or_slice = matches!(
            (api_version, kind),
            ("v1", "Service")
                | (
                    "discovery.k8s.io/v1" | "discovery.k8s.io/v1beta1",
                    "EndpointSlice"
                )
        );
        if service_or_slice {
            if let Some(label) = unproxied(value) {
                return self.ignore(kind, value, &object, label);
            }
        }
        match (api_version, kind) {
            (_, "List") => self.load_list(map.get("items"), path, &object),
            ("v1", "Service") => match convert_service(value) {
                Ok(s) => {
                    self.state.services.insert(s.key.clone(), s);
                }
                Err(e) => self.error(object, e),
            },
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                self.insert_slice(slice::convert_v1(value), object)
            }
            ("discovery.k8s.io/v1beta1", "EndpointSlice") => {
                self.insert_slice(slice::convert_v1beta1(value), object)
            }
            ("v1", "Node") => match deserialize(value, "Node").and_then(|n| convert::node(&n)) {
                Ok(n) => {
                    self.state.nodes.insert(n.name.clone(), n);
                }
                Err(e) => self.error(object, e),
            },
            ("networking.k8s.io/v1", "ServiceCIDR") => {
                match deserialize(value, "ServiceCIDR").and_then(|c| convert::service_cidr(&c)) {
                    Ok(c) => {
                        self.state.service_cidrs.insert(c.name.clone(), c);
                    }
                    Err(e) => self.error(object, e),
                }
            }
            (convert::CALICO_API_VERSION, "BlockAffinity") => {
                let name = value["metadata"]["name"].as_str();
                match convert::block_affinity(name, &value["spec"]) {
                    Ok(b) => {
                        self.state.block_affinities.insert(b.name.clone(), b);
                    }
                    Err(e) => self.error(object, e),
                }
            }
            _ => {
                tracing::debug!(
                    file = self.file,
                    document = self.document,
                    api_version,
                    kind,
                    "ignoring object of a kind nftopo does not use"
                );
                self.ignored.add(api_version, kind);
            }
        }
    }

    /// Leaves out a Service or EndpointSlice that carries `label`, as
    /// kube-proxy's informers do (they select
    /// `!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless`);
    /// an object of the same key read earlier goes too, as the last one
    /// read wins. Not an error: such objects are meant for someone else.
    /// Each ignored Service is logged as a warning (`render`, `apply` and
    /// `explain` show warnings), slices only at debug level: every
    /// headless Service has slices with the headless label.
    fn ignore(&mut self, kind: &str, value: &Value, object: &str, label: &str) {
        if let Some(name) = value["metadata"]["name"].as_str() {
            let key = crate::ObjectKey::new(namespace_of(&value["metadata"]), name);
            if kind == "Service" {
                self.state.services.remove(&key);
            } else {
                self.state.endpoint_slices.remove(&key);
            }
        }
        let why = if label == crate::SERVICE_PROXY_NAME_LABEL {
            "it belongs to another proxy"
        } else {
            "it is marked headless"
        };
        if kind == "Service" {
            tracing::warn!(
                file = self.file,
                document = self.document,
                label,
                "ignoring {object}: {why} (label {label}), as kube-proxy ignores it"
            );
        } else {
            tracing::debug!(
                file = self.file,
                document = self.document,
                label,
                "ignoring {object}: {why} (label {label}), as kube-proxy ignores it"
            );
        }
    }

    fn load_list(&mut self, items: Option<&Value>, path: Option<&str>, object: &str) {
        let Some(items) = items.and_then(Value::as_array) else {
            let found = items.map_or("nothing", type_name);
            return self.error(
                object,
                FieldError::new(
                    "items",
                    format!("expected a list of objects, found {found}"),
                ),
            );
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = match path {
                Some(p) => format!("{p}.items[{i}]"),
                None => format!("items[{i}]"),
            };
            self.load_object(item, Some(&item_path));
        }
    }

    fn insert_slice(&mut self, slice: Result<crate::EndpointSlice, FieldError>, object: String) {
        match slice {
            Ok(s) => {
                self.state.endpoint_slices.insert(s.key.clone(), s);
            }
            Err(e) => self.error(object, e),
        }
    }
}

/// `Service default/web`, `Node node-1`, or `Service items[3]` when the
/// object has no name.
///
/// Names are shown escaped and shortened (`a\"b\n…`), so that a hostile
/// name is still one short log line.
fn object_name(kind: &str, value: &Value, path: Option<&str>) -> String {
    let metadata = &value["metadata"];
    let name = metadata["name"].as_str().filter(|n| !n.is_empty());
    let kind = printable(kind);
    match name.map(printable) {
        Some(name) if matches!(&*kind, "Node" | "List" | "BlockAffinity" | "ServiceCIDR") => {
            format!("{kind} {name}")
        }
        Some(name) => {
            let namespace = printable(namespace_of(metadata));
            format!("{kind} {namespace}/{name}")
        }
        None => format!("{kind} {}", path.unwrap_or("(unnamed)")),
    }
}

/// The label that takes this raw Service or EndpointSlice away from
/// kube-proxy, if it carries one.
fn unproxied(value: &Value) -> Option<&'static str> {
    let labels = value["metadata"]["labels"].as_object()?;
    convert::unproxied_label(|l| labels.contains_key(l))
}

/// `s` with quotes, backslashes and control characters escaped, cut
/// after 80 characters.
fn printable(s: &str) -> String {
    convert::shorten(&s.escape_debug().to_string())
}

/// `metadata.namespace`, or `default` when missing.
fn namespace_of(metadata: &Value) -> &str {
    metadata["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Deserializes a k8s-openapi type; a failure (wrong type of some field)
/// names no field, because serde does not tell which one.
fn deserialize<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> Result<T, FieldError> {
    T::deserialize(value).map_err(|e| FieldError::new("", format!("not a valid {what}: {e}")))
}

/// A raw `v1 Service`: the standard fields through k8s-openapi's type,
/// `spec.topologyKeys` (which that type no longer has) from the raw value.
fn convert_service(raw: &Value) -> Result<crate::Service, FieldError> {
    convert::service(&deserialize(raw, "Service")?, &raw["spec"]["topologyKeys"])
}
