//! `discovery.k8s.io/v1` EndpointSlice → [`EndpointSlice`].

use std::collections::BTreeMap;

use super::{ip, key_of, port_name, port_number, protocol, FieldError};
use crate::{AddressType, Conditions, Endpoint, EndpointPort, EndpointSlice, SERVICE_NAME_LABEL};
use k8s_openapi::api::discovery::v1 as discovery;

/// Node label (and v1beta1 topology key) naming the endpoint's node.
pub(crate) const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// Node label (and v1beta1 topology key) naming the endpoint's zone.
pub(crate) const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// Converts a `discovery.k8s.io/v1` EndpointSlice (the file loader reads
/// v1beta1 slices through it too, adding their `topology` map).
pub(crate) fn slice_v1(slice: &discovery::EndpointSlice) -> Result<EndpointSlice, FieldError> {
    let key = key_of(&slice.metadata)?;
    let service_name = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .filter(|n| !n.is_empty())
        .cloned()
        .ok_or_else(|| {
            FieldError::new(
                format!("metadata.labels[{SERVICE_NAME_LABEL:?}]"),
                "missing; nftopo cannot tell which Service the slice belongs to",
            )
        })?;
    // A value no Service can have: the slice could never be used.
    super::names::dns1035_label(&service_name)
        .map_err(|e| FieldError::new(format!("metadata.labels[{SERVICE_NAME_LABEL:?}]"), e))?;
    let address_type = match slice.address_type.as_str() {
        "IPv4" => AddressType::IPv4,
        "IPv6" => AddressType::IPv6,
        "FQDN" => AddressType::Fqdn,
        "" => return Err(FieldError::new("addressType", "missing")),
        other => {
            return Err(FieldError::new(
                "addressType",
                format!("unknown address type {other:?} (expected IPv4, IPv6 or FQDN)"),
            ))
        }
    };
    let ports = slice
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| endpoint_port(i, p))
        .collect::<Result<_, _>>()?;
    let endpoints = slice
        .endpoints
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, e)| endpoint(i, e, address_type))
        .collect::<Result<_, _>>()?;
    Ok(EndpointSlice {
        key,
        service_name,
        address_type,
        ports,
        endpoints,
    })
}

fn endpoint_port(i: usize, p: &discovery::EndpointPort) -> Result<EndpointPort, FieldError> {
    let field = |name: &str| format!("ports[{i}].{name}");
    let port = p
        .port
        .ok_or_else(|| FieldError::new(field("port"), "missing"))?;
    Ok(EndpointPort {
        name: port_name(field("name"), p.name.as_deref())?,
        protocol: protocol(field("protocol"), p.protocol.as_deref())?,
        port: port_number(field("port"), port)?,
    })
}

fn endpoint(
    i: usize,
    e: &discovery::Endpoint,
    address_type: AddressType,
) -> Result<Endpoint, FieldError> {
    let addresses = match address_type {
        // DNS names are not proxied; keep none.
        AddressType::Fqdn => Vec::new(),
        AddressType::IPv4 | AddressType::IPv6 => e
            .addresses
            .iter()
            .enumerate()
            .map(|(j, a)| {
                let field = format!("endpoints[{i}].addresses[{j}]");
                let address = ip(field.as_str(), a)?;
                let family_ok = match address_type {
                    AddressType::IPv4 => address.is_ipv4(),
                    _ => address.is_ipv6(),
                };
                if family_ok {
                    Ok(address)
                } else {
                    Err(FieldError::new(
                        field,
                        format!(
                            "{a} is not an {address_type:?} address like the slice's addressType"
                        ),
                    ))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let hints = e.hints.as_ref();
    Ok(Endpoint {
        addresses,
        conditions: conditions(e.conditions.as_ref()),
        node_name: e.node_name.clone(),
        zone: e.zone.clone(),
        hint_zones: hints
            .and_then(|h| h.for_zones.as_ref())
            .map(|z| z.iter().map(|z| z.name.clone()).collect())
            .unwrap_or_default(),
        hint_nodes: hints
            .and_then(|h| h.for_nodes.as_ref())
            .map(|n| n.iter().map(|n| n.name.clone()).collect())
            .unwrap_or_default(),
        topology: BTreeMap::new(),
    })
}

/// Kubernetes' defaults: ready missing = true (unknown state is treated as
/// ready); serving missing = ready; terminating missing = false.
fn conditions(c: Option<&discovery::EndpointConditions>) -> Conditions {
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    Conditions {
        ready,
        serving: c.and_then(|c| c.serving).unwrap_or(ready),
        terminating: c.and_then(|c| c.terminating).unwrap_or(false),
    }
}
