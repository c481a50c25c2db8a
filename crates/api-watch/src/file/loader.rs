//! [`Loader`]: parsed documents into the [`ClusterState`], object by object,
//! each failure a [`LoadError`] naming the object and the field.

use super::*;

pub(super) struct Loader<'a> {
    pub(super) file: &'a str,
    pub(super) document: usize,
    pub(super) state: &'a mut ClusterState,
    pub(super) errors: Vec<LoadError>,
    pub(super) ignored: IgnoredKinds,
    /// Node and zone names, one copy each for the file's slices.
    pub(super) names: crate::Names,
}

impl Loader<'_> {
    pub(super) fn error(&mut self, object: impl Into<String>, error: FieldError) {
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
    pub(super) fn load_object(&mut self, value: &Value, path: Option<&str>) {
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
                    self.state.services.insert(s.key.clone(), Box::new(s));
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
            Ok(mut s) => {
                self.names.share(&mut s);
                self.state
                    .endpoint_slices
                    .insert(s.key.clone(), Box::new(s));
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
pub(super) fn object_name(kind: &str, value: &Value, path: Option<&str>) -> String {
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
pub(super) fn unproxied(value: &Value) -> Option<&'static str> {
    let labels = value["metadata"]["labels"].as_object()?;
    convert::unproxied_label(|l| labels.contains_key(l))
}

/// `s` with quotes, backslashes and control characters escaped, cut
/// after 80 characters.
pub(super) fn printable(s: &str) -> String {
    convert::shorten(&s.escape_debug().to_string())
}

/// `metadata.namespace`, or `default` when missing.
pub(super) fn namespace_of(metadata: &Value) -> &str {
    metadata["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

pub(super) fn type_name(value: &Value) -> &'static str {
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
pub(super) fn deserialize<T: serde::de::DeserializeOwned>(
    value: &Value,
    what: &str,
) -> Result<T, FieldError> {
    T::deserialize(value).map_err(|e| FieldError::new("", format!("not a valid {what}: {e}")))
}

/// A raw `v1 Service`: the standard fields through k8s-openapi's type,
/// `spec.topologyKeys` (which that type no longer has) from the raw value.
pub(super) fn convert_service(raw: &Value) -> Result<crate::Service, FieldError> {
    convert::service(&deserialize(raw, "Service")?, &raw["spec"]["topologyKeys"])
}
