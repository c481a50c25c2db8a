//! k8s-openapi objects → the plain model, shared by both sources (manifest
//! files and the API server). Every converter checks what the planner
//! relies on and names the field that is wrong in a [`FieldError`]; the
//! caller adds where the object came from.

mod address;
mod block_affinity;
mod names;
mod node;
mod service;
mod service_cidr;
mod slice;

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub(crate) use block_affinity::{block_affinity, API_VERSION as CALICO_API_VERSION};
pub(crate) use names::shorten;
pub(crate) use node::node;
pub(crate) use service::service;
pub(crate) use service_cidr::service_cidr;
pub(crate) use slice::{slice_v1, HOSTNAME_KEY, ZONE_KEY};

/// The labels that take a Service or EndpointSlice away from kube-proxy:
/// its informers list and watch both kinds with the selector
/// `!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless`
/// (cmd/kube-proxy/app/server.go).
pub(crate) const UNPROXIED_LABELS: [&str; 2] =
    [crate::SERVICE_PROXY_NAME_LABEL, crate::HEADLESS_LABEL];

/// The first of [`UNPROXIED_LABELS`] that `has_label` says the object
/// carries (with any value): such an object is not proxied.
pub(crate) fn unproxied_label(has_label: impl Fn(&str) -> bool) -> Option<&'static str> {
    UNPROXIED_LABELS.into_iter().find(|l| has_label(l))
}

/// A problem with one field of an object, before the source of the object
/// is known. The converters return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The field, e.g. `spec.ports[0].port`; empty when not known.
    pub(crate) field: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// `metadata.name` (required) and `metadata.namespace` (default `default`).
/// Both must be valid Kubernetes names: the namespace a DNS-1123 label,
/// the name a DNS-1123 subdomain (the kinds with stricter rules check
/// them on top).
pub(crate) fn key_of(metadata: &ObjectMeta) -> Result<crate::ObjectKey, FieldError> {
    let name = name_of(metadata)?;
    let namespace = metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    names::dns1123_label(&namespace).map_err(|e| FieldError::new("metadata.namespace", e))?;
    Ok(crate::ObjectKey::new(namespace, name))
}

/// `metadata.name`, which every object needs; a DNS-1123 subdomain.
pub(crate) fn name_of(metadata: &ObjectMeta) -> Result<String, FieldError> {
    let name = metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| FieldError::new("metadata.name", "missing"))?;
    names::dns1123_subdomain(&name).map_err(|e| FieldError::new("metadata.name", e))?;
    Ok(name)
}

/// A port's `name`: empty, or a DNS-1123 label.
fn port_name(field: impl Into<String>, name: Option<&str>) -> Result<String, FieldError> {
    match name {
        None | Some("") => Ok(String::new()),
        Some(n) => names::dns1123_label(n)
            .map(|()| n.to_string())
            .map_err(|e| FieldError::new(field, e)),
    }
}

/// A port number from the API (`i32`) that must be 1..=65535.
fn port_number(field: impl Into<String>, port: i32) -> Result<u16, FieldError> {
    match u16::try_from(port) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(FieldError::new(
            field,
            format!("port {port} is not in 1..=65535"),
        )),
    }
}

/// A protocol in Kubernetes spelling; missing means TCP.
fn protocol(
    field: impl Into<String>,
    protocol: Option<&str>,
) -> Result<crate::Protocol, FieldError> {
    match protocol {
        None => Ok(crate::Protocol::Tcp),
        Some(p) => crate::Protocol::from_k8s(p).ok_or_else(|| {
            FieldError::new(
                field,
                format!("unknown protocol {p:?} (expected TCP, UDP or SCTP)"),
            )
        }),
    }
}

/// An IP address, read as kube-proxy reads it (`netutils.ParseIPSloppy`:
/// IPv4 octets with leading zeros are decimal); every address of every
/// kind goes through here.
fn ip(field: impl Into<String>, address: &str) -> Result<std::net::IpAddr, FieldError> {
    address::parse_ip_sloppy(address)
        .ok_or_else(|| FieldError::new(field, format!("{address:?} is not an IP address")))
}

/// A prefix (`10.0.0.0/8`), read as kube-proxy reads it
/// (`netutils.ParseCIDRSloppy`), as its network with host bits cleared:
/// [`crate::Cidr::parse_sloppy`].
pub(crate) use address::parse_cidr_sloppy;
