//! `v1 Node` → [`Node`].

use k8s_openapi::api::core::v1 as core;

use super::{ip, name_of, FieldError};
use crate::{Node, TO_BE_DELETED_TAINT};

/// Converts a `v1 Node`.
pub(crate) fn node(node: &core::Node) -> Result<Node, FieldError> {
    let name = name_of(&node.metadata)?;
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_deref())
        .unwrap_or_default()
        .iter()
        .enumerate()
        // Hostname, InternalDNS and ExternalDNS hold names, not addresses.
        .filter(|(_, a)| !is_dns_name_type(&a.type_))
        .map(|(i, a)| {
            let address = ip(format!("status.addresses[{i}].address"), &a.address)?;
            Ok((a.type_.clone(), address))
        })
        .collect::<Result<_, _>>()?;
    let default_spec = core::NodeSpec::default();
    let spec = node.spec.as_ref().unwrap_or(&default_spec);
    let pod_cidrs = match &spec.pod_cidrs {
        Some(cidrs) if !cidrs.is_empty() => cidrs.clone(),
        _ => spec
            .pod_cidr
            .iter()
            .filter(|c| !c.is_empty())
            .cloned()
            .collect(),
    };
    let tainted = spec
        .taints
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|t| t.key == TO_BE_DELETED_TAINT);
    Ok(Node {
        name,
        labels: node.metadata.labels.clone().unwrap_or_default(),
        annotations: node.metadata.annotations.clone().unwrap_or_default(),
        addresses,
        pod_cidrs,
        deleting: node.metadata.deletion_timestamp.is_some() || tainted,
    })
}

fn is_dns_name_type(address_type: &str) -> bool {
    matches!(address_type, "Hostname" | "InternalDNS" | "ExternalDNS")
}
