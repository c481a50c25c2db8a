//! Raw `discovery.k8s.io/v1` and `v1beta1` EndpointSlice → [`EndpointSlice`]
//! (the fields of v1 are converted by [`crate::convert`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::deserialize;
use crate::convert::{slice_v1, FieldError, HOSTNAME_KEY, ZONE_KEY};
use crate::EndpointSlice;

/// Converts a raw `discovery.k8s.io/v1` EndpointSlice.
pub(super) fn convert_v1(raw: &Value) -> Result<EndpointSlice, FieldError> {
    slice_v1(&deserialize(raw, "EndpointSlice")?)
}

/// Converts a raw `discovery.k8s.io/v1beta1` EndpointSlice. Its shape is
/// v1's for every field we read except the endpoints' `topology` map, so it
/// is read as v1, and the map from the raw value: `nodeName` (present from
/// 1.20) else `topology["kubernetes.io/hostname"]` is the node, and
/// `topology["topology.kubernetes.io/zone"]` the zone.
pub(super) fn convert_v1beta1(raw: &Value) -> Result<EndpointSlice, FieldError> {
    let mut as_v1 = raw.clone();
    as_v1["apiVersion"] = Value::from("discovery.k8s.io/v1");
    let mut slice = slice_v1(&deserialize(&as_v1, "EndpointSlice")?)?;
    for (i, endpoint) in slice.endpoints.iter_mut().enumerate() {
        let topology = topology_map(i, &raw["endpoints"][i]["topology"])?;
        if endpoint.node_name.is_none() {
            endpoint.node_name = topology.get(HOSTNAME_KEY).map(|n| n.as_str().into());
        }
        if endpoint.zone.is_none() {
            endpoint.zone = topology.get(ZONE_KEY).map(|z| z.as_str().into());
        }
        endpoint.set_topology(topology);
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
