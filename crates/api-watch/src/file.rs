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
mod loader;
#[cfg(test)]
mod parity_tests;
#[cfg(test)]
mod regressions;
mod slice;
#[cfg(test)]
mod tests;
mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::convert::{self, FieldError};
use crate::ClusterState;
use loader::*;
use yaml::*;

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
        names: crate::Names::default(),
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
