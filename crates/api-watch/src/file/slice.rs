//! `discovery.k8s.io/v1` and `v1beta1` EndpointSlice → [`EndpointSlice`].

use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1 as discovery;
use serde_json::Value;

use super::{deserialize, ip, key_of, port_number, protocol, FieldError};
use crate::{AddressType, Conditions, Endpoint, EndpointPort, EndpointSlice, SERVICE_NAME_LABEL};

/// Node label (and v1beta1 topology key) naming the endpoint's node.
const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// Node label (and v1beta1 topology key) naming the endpoint's zone.
const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// Converts a raw `discovery.k8s.io/v1` EndpointSlice.
pub(super) fn convert_v1(raw: &Value) -> Result<EndpointSlice, FieldError> {
    convert(deserialize(raw, "EndpointSlice")?)
}

/// Converts a raw `discovery.k8s.io/v1beta1` EndpointSlice. Its shape is
/// v1's for every field we read except the endpoints' `topology` map, so it
/// is read as v1, and the map from the raw value: `nodeName` (present from
/// 1.20) else `topology["kubernetes.io/hostname"]` is the node, and
/// `topology["topology.kubernetes.io/zone"]` the zone.
pub(super) fn convert_v1beta1(raw: &Value) -> Result<EndpointSlice, FieldError> {
    let mut as_v1 = raw.clone();
    as_v1["apiVersion"] = Value::from("discovery.k8s.io/v1");
    let mut slice = convert(deserialize(&as_v1, "EndpointSlice")?)?;
    for (i, endpoint) in slice.endpoints.iter_mut().enumerate() {
        let topology = topology_map(i, &raw["endpoints"][i]["topology"])?;
        if endpoint.node_name.is_none() {
            endpoint.node_name = topology.get(HOSTNAME_KEY).cloned();
        }
        if endpoint.zone.is_none() {
            endpoint.zone = topology.get(ZONE_KEY).cloned();
        }
        endpoint.topology = topology;
    }
    Ok(slice)
}

fn topology_map(i: usize, raw: &Value) -> Result<BTreeMap<String, String>, FieldError> {
    let field = || format!("endpoints[{i}].topology");
    match raw {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(v) => Ok((k.clone(), v.to_string())),
                None => Err(FieldError::new(
                    format!("{}[{k:?}]", field()),
                    "expected a string",
                )),
            })
            .collect(),
        _ => Err(FieldError::new(field(), "expected a map of strings")),
    }
}

fn convert(slice: discovery::EndpointSlice) -> Result<EndpointSlice, FieldError> {
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
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| endpoint_port(i, p))
        .collect::<Result<_, _>>()?;
    let endpoints = slice
        .endpoints
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
        name: p.name.clone().unwrap_or_default(),
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
