//! `discovery.k8s.io/v1` EndpointSlice → [`EndpointSlice`].

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
    // Sized to what they hold (collecting through `Result` grows the
    // vector by doubling: 16 slots for 10 endpoints), as the store keeps
    // them.
    ports.shrink_to_fit();
    let listed = slice.endpoints.as_deref().unwrap_or_default();
    let mut endpoints = Vec::with_capacity(listed.len());
    for (i, e) in listed.iter().enumerate() {
        endpoints.push(endpoint(i, e, address_type)?);
    }
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
    // Every address is checked (a bad one skips the slice, naming it);
    // only the first is kept, the one kube-proxy uses.
    let mut address = None;
    if address_type != AddressType::Fqdn {
        // DNS names are not proxied; FQDN endpoints keep none.
        for (j, a) in e.addresses.iter().enumerate() {
            let field = format!("endpoints[{i}].addresses[{j}]");
            let parsed = ip(field.as_str(), a)?;
            let family_ok = match address_type {
                AddressType::IPv4 => parsed.is_ipv4(),
                _ => parsed.is_ipv6(),
            };
            if !family_ok {
                return Err(FieldError::new(
                    field,
                    format!("{a} is not an {address_type:?} address like the slice's addressType"),
                ));
            }
            address.get_or_insert(parsed);
        }
    }
    let hints = e.hints.as_ref();
    let mut endpoint = Endpoint {
        address,
        conditions: conditions(e.conditions.as_ref()),
        node_name: e.node_name.as_deref().map(Into::into),
        zone: e.zone.as_deref().map(Into::into),
        ..Endpoint::default()
    };
    let zones = hints
        .and_then(|h| h.for_zones.as_deref())
        .unwrap_or_default();
    if !zones.is_empty() {
        endpoint = endpoint.for_zones(zones.iter().map(|z| z.name.as_str()));
    }
    let nodes = hints
        .and_then(|h| h.for_nodes.as_deref())
        .unwrap_or_default();
    if !nodes.is_empty() {
        endpoint = endpoint.for_nodes(nodes.iter().map(|n| n.name.as_str()));
    }
    Ok(endpoint)
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
