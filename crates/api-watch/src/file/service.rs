//! `v1 Service` → [`Service`].

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::{deserialize, ip, key_of, port_number, protocol, FieldError};
use crate::{Service, ServicePort, ServiceType, TargetPort, TrafficPolicy};

/// Converts a raw `v1 Service`. The standard fields come from
/// k8s-openapi's type; `spec.topologyKeys` (removed from the API in 1.22,
/// so k8s-openapi no longer has it) is read from the raw value.
pub(super) fn convert(raw: &Value) -> Result<Service, FieldError> {
    let service: core::Service = deserialize(raw, "Service")?;
    let key = key_of(&service.metadata)?;
    let spec = service.spec.unwrap_or_default();
    let ports = spec
        .ports
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| service_port(i, p))
        .collect::<Result<_, _>>()?;
    Ok(Service {
        key,
        service_type: service_type(spec.type_.as_deref())?,
        cluster_ips: cluster_ips(spec.cluster_ips.as_deref(), spec.cluster_ip.as_deref())?,
        ports,
        topology_keys: topology_keys(&raw["spec"]["topologyKeys"])?,
        internal_traffic_policy: traffic_policy(
            "spec.internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
        )?,
        external_traffic_policy: traffic_policy(
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy.as_deref(),
        )?,
        traffic_distribution: spec.traffic_distribution,
        external_ips: external_ips(spec.external_ips.as_deref())?,
        load_balancer_ips: load_balancer_ips(service.status.as_ref())?,
        annotations: service.metadata.annotations.unwrap_or_default(),
    })
}

fn service_type(written: Option<&str>) -> Result<ServiceType, FieldError> {
    match written {
        None | Some("ClusterIP") => Ok(ServiceType::ClusterIp),
        Some("NodePort") => Ok(ServiceType::NodePort),
        Some("LoadBalancer") => Ok(ServiceType::LoadBalancer),
        Some("ExternalName") => Ok(ServiceType::ExternalName),
        Some(other) => Err(FieldError::new(
            "spec.type",
            format!("unknown type {other:?} (expected ClusterIP, NodePort, LoadBalancer or ExternalName)"),
        )),
    }
}

/// `spec.clusterIPs`, else `spec.clusterIP`; `None` or empty means
/// headless (no cluster IP).
fn cluster_ips(ips: Option<&[String]>, ip_: Option<&str>) -> Result<Vec<IpAddr>, FieldError> {
    let headless = |s: &str| s.is_empty() || s == "None";
    match ips {
        Some(ips) if !ips.is_empty() => {
            if headless(&ips[0]) {
                return Ok(Vec::new());
            }
            ips.iter()
                .enumerate()
                .map(|(i, s)| ip(format!("spec.clusterIPs[{i}]"), s))
                .collect()
        }
        _ => match ip_ {
            Some(s) if !headless(s) => Ok(vec![ip("spec.clusterIP", s)?]),
            _ => Ok(Vec::new()),
        },
    }
}

/// `spec.externalIPs`: every entry must be an IP address.
fn external_ips(ips: Option<&[String]>) -> Result<Vec<IpAddr>, FieldError> {
    ips.unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, s)| ip(format!("spec.externalIPs[{i}]"), s))
        .collect()
}

/// `status.loadBalancer.ingress[].ip`; entries with only a `hostname` (as
/// some cloud load balancers publish) have no IP and are left out.
fn load_balancer_ips(status: Option<&core::ServiceStatus>) -> Result<Vec<IpAddr>, FieldError> {
    let ingress = status
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    ingress
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let written = entry.ip.as_deref().filter(|s| !s.is_empty())?;
            Some(ip(format!("status.loadBalancer.ingress[{i}].ip"), written))
        })
        .collect()
}

fn service_port(i: usize, p: &core::ServicePort) -> Result<ServicePort, FieldError> {
    let field = |name: &str| format!("spec.ports[{i}].{name}");
    let port = port_number(field("port"), p.port)?;
    // Kubernetes defaults a missing, zero or empty targetPort to the port.
    let target_port = match &p.target_port {
        None | Some(IntOrString::Int(0)) => TargetPort::Number(port),
        Some(IntOrString::String(s)) if s.is_empty() => TargetPort::Number(port),
        Some(IntOrString::Int(n)) => TargetPort::Number(port_number(field("targetPort"), *n)?),
        Some(IntOrString::String(s)) => TargetPort::Name(s.clone()),
    };
    // 0 means "not allocated".
    let node_port = match p.node_port {
        None | Some(0) => None,
        Some(n) => Some(port_number(field("nodePort"), n)?),
    };
    Ok(ServicePort {
        name: p.name.clone().unwrap_or_default(),
        protocol: protocol(field("protocol"), p.protocol.as_deref())?,
        port,
        target_port,
        node_port,
    })
}

fn traffic_policy(field: &str, written: Option<&str>) -> Result<TrafficPolicy, FieldError> {
    match written {
        None | Some("Cluster") => Ok(TrafficPolicy::Cluster),
        Some("Local") => Ok(TrafficPolicy::Local),
        Some(other) => Err(FieldError::new(
            field,
            format!("unknown traffic policy {other:?} (expected Cluster or Local)"),
        )),
    }
}

/// `spec.topologyKeys` as written: a list of strings, or absent.
fn topology_keys(raw: &Value) -> Result<Option<Vec<String>>, FieldError> {
    match raw {
        Value::Null => Ok(None),
        Value::Array(keys) => keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                k.as_str().map(str::to_string).ok_or_else(|| {
                    FieldError::new(format!("spec.topologyKeys[{i}]"), "expected a string")
                })
            })
            .collect::<Result<_, _>>()
            .map(Some),
        _ => Err(FieldError::new(
            "spec.topologyKeys",
            "expected a list of strings",
        )),
    }
}
