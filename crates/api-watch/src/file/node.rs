//! `v1 Node` → [`Node`].

use k8s_openapi::api::core::v1 as core;
use serde_json::Value;

use super::{deserialize, ip, name_of, FieldError};
use crate::Node;

/// Converts a raw `v1 Node`.
pub(super) fn convert(raw: &Value) -> Result<Node, FieldError> {
    let node: core::Node = deserialize(raw, "Node")?;
    let name = name_of(&node.metadata)?;
    let addresses = node
        .status
        .and_then(|s| s.addresses)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        // Hostname, InternalDNS and ExternalDNS hold names, not addresses.
        .filter(|(_, a)| !is_dns_name_type(&a.type_))
        .map(|(i, a)| {
            let address = ip(format!("status.addresses[{i}].address"), &a.address)?;
            Ok((a.type_, address))
        })
        .collect::<Result<_, _>>()?;
    let spec = node.spec.unwrap_or_default();
    let pod_cidrs = match spec.pod_cidrs {
        Some(cidrs) if !cidrs.is_empty() => cidrs,
        _ => spec
            .pod_cidr
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect(),
    };
    Ok(Node {
        name,
        labels: node.metadata.labels.unwrap_or_default(),
        annotations: node.metadata.annotations.unwrap_or_default(),
        addresses,
        pod_cidrs,
    })
}

fn is_dns_name_type(address_type: &str) -> bool {
    matches!(address_type, "Hostname" | "InternalDNS" | "ExternalDNS")
}
