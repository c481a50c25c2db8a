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
    let mut ports = Vec::new();
    for (i, p) in slice
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match endpoint_port(i, p)? {
            Some(port) => ports.push(port),
            None => tracing::warn!(
                slice = %key,
                field = %format!("ports[{i}].port"),
                "ignoring an EndpointSlice port without a port number (null or 0), as kube-proxy does; the slice's other ports are used"
            ),
        }
    }
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

/// One slice port; `None` for a port without a number (`port: null` or
/// 0), which kube-proxy skips while keeping the slice's other ports
/// (endpointslicecache.go: "Ignoring invalid endpoint port").
fn endpoint_port(
    i: usize,
    p: &discovery::EndpointPort,
) -> Result<Option<EndpointPort>, FieldError> {
    let field = |name: &str| format!("ports[{i}].{name}");
    let port = match p.port {
        None | Some(0) => return Ok(None),
        Some(port) => port_number(field("port"), port)?,
    };
    Ok(Some(EndpointPort {
        name: port_name(field("name"), p.name.as_deref())?,
        protocol: protocol(field("protocol"), p.protocol.as_deref())?,
        port,
    }))
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
        node_name: e.node_name.as_deref().map(Into::into),
        zone: e.zone.as_deref().map(Into::into),
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

/// The API's reading of missing conditions, as kube-proxy applies it
/// (endpointslicecache.go): ready missing = true, serving missing = true
/// (not "= ready"), terminating missing = false.
fn conditions(c: Option<&discovery::EndpointConditions>) -> Conditions {
    Conditions {
        ready: c.and_then(|c| c.ready).unwrap_or(true),
        serving: c.and_then(|c| c.serving).unwrap_or(true),
        terminating: c.and_then(|c| c.terminating).unwrap_or(false),
    }
}
