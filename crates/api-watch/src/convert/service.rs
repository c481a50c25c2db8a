//! `v1 Service` → [`Service`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::{ip, key_of, parse_cidr_sloppy, port_name, port_number, protocol, FieldError};
use crate::{
    IpFamily, Service, ServicePort, ServiceType, TargetPort, TrafficPolicy,
    DEFAULT_SESSION_AFFINITY_TIMEOUT, MAX_SESSION_AFFINITY_TIMEOUT,
};

/// Converts a `v1 Service`. `topology_keys` is the raw
/// `spec.topologyKeys` (removed from the API in 1.22, so k8s-openapi no
/// longer has it): `Null` when absent, as it always is from the API
/// server, which drops the field.
pub(crate) fn service(
    service: &core::Service,
    topology_keys: &Value,
) -> Result<Service, FieldError> {
    let key = key_of(&service.metadata)?;
    super::names::dns1035_label(&key.name).map_err(|e| FieldError::new("metadata.name", e))?;
    let default_spec = core::ServiceSpec::default();
    let spec = service.spec.as_ref().unwrap_or(&default_spec);
    let listed = spec.ports.as_deref().unwrap_or_default();
    // Sized to what they hold, as the store keeps them (collecting
    // through `Result` would leave four slots for one port).
    let mut ports = Vec::with_capacity(listed.len());
    for (i, p) in listed.iter().enumerate() {
        ports.push(service_port(i, p)?);
    }
    let cluster_ips = cluster_ips(spec.cluster_ips.as_deref(), spec.cluster_ip.as_deref())?;
    let ip_families = ip_families(spec.ip_families.as_deref())?;
    let ip_family_policy = ip_family_policy(spec.ip_family_policy.as_deref())?;
    let from_list = spec.cluster_ips.as_ref().is_some_and(|l| !l.is_empty());
    check_families(
        from_list,
        &cluster_ips,
        &ip_families,
        ip_family_policy.as_deref(),
    )?;
    Ok(Service {
        key,
        service_type: service_type(spec.type_.as_deref())?,
        cluster_ips,
        ip_families,
        ip_family_policy,
        ports,
        topology_keys: self::topology_keys(topology_keys)?,
        internal_traffic_policy: traffic_policy(
            "spec.internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
        )?,
        external_traffic_policy: traffic_policy(
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy.as_deref(),
        )?,
        traffic_distribution: spec.traffic_distribution.clone(),
        external_ips: external_ips(spec.external_ips.as_deref())?,
        load_balancer_ips: load_balancer_ips(service.status.as_ref())?,
        load_balancer_source_ranges: source_ranges(spec.load_balancer_source_ranges.as_deref())?,
        session_affinity_timeout: session_affinity_timeout(
            spec.session_affinity.as_deref(),
            spec.session_affinity_config.as_ref(),
        )?,
        health_check_node_port: match spec.health_check_node_port {
            None | Some(0) => None,
            Some(n) => Some(port_number("spec.healthCheckNodePort", n)?),
        },
        annotations: annotations(service.metadata.annotations.as_ref()),
    })
}

/// Annotation in which `kubectl apply` keeps a copy of the whole object
/// it applied: nothing in nftopo reads it, and it is most of a Service's
/// size in the store (about 8 MiB at 10k Services).
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `metadata.annotations` without [`LAST_APPLIED_ANNOTATION`].
fn annotations(written: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    written
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED_ANNOTATION)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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

/// `spec.ipFamilies`: `IPv4` or `IPv6`, each at most once.
fn ip_families(written: Option<&[String]>) -> Result<Vec<IpFamily>, FieldError> {
    let mut families = Vec::new();
    for (i, s) in written.unwrap_or_default().iter().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        let family = IpFamily::from_k8s(s).ok_or_else(|| {
            FieldError::new(
                field.as_str(),
                format!("unknown IP family {s:?} (expected IPv4 or IPv6)"),
            )
        })?;
        if families.contains(&family) {
            return Err(FieldError::new(field, format!("{family} is listed twice")));
        }
        families.push(family);
    }
    Ok(families)
}

fn ip_family_policy(written: Option<&str>) -> Result<Option<String>, FieldError> {
    match written {
        None => Ok(None),
        Some(p @ ("SingleStack" | "PreferDualStack" | "RequireDualStack")) => Ok(Some(p.into())),
        Some(other) => Err(FieldError::new(
            "spec.ipFamilyPolicy",
            format!(
                "unknown IP family policy {other:?} (expected SingleStack, PreferDualStack or RequireDualStack)"
            ),
        )),
    }
}

/// The cluster IPs against each other, `spec.ipFamilies` and
/// `spec.ipFamilyPolicy`: at most one cluster IP per family; cluster IP
/// `i` of family `ipFamilies[i]` when both are written; a single family
/// for `SingleStack`. `from_list`: the cluster IPs came from
/// `spec.clusterIPs` (else from `spec.clusterIP`).
fn check_families(
    from_list: bool,
    cluster_ips: &[IpAddr],
    families: &[IpFamily],
    policy: Option<&str>,
) -> Result<(), FieldError> {
    let field = |i: usize| {
        if from_list {
            format!("spec.clusterIPs[{i}]")
        } else {
            "spec.clusterIP".to_string()
        }
    };
    for (i, &ip) in cluster_ips.iter().enumerate() {
        let family = IpFamily::of(ip);
        if let Some(j) = cluster_ips[..i]
            .iter()
            .position(|&other| IpFamily::of(other) == family)
        {
            return Err(FieldError::new(
                field(i),
                format!(
                    "{ip} is {family} like {}; a service has at most one cluster IP per family",
                    field(j)
                ),
            ));
        }
        if families.is_empty() {
            continue;
        }
        match families.get(i) {
            Some(&want) if want == family => {}
            Some(&want) => {
                return Err(FieldError::new(
                    field(i),
                    format!("{ip} is {family} but spec.ipFamilies[{i}] is {want}"),
                ))
            }
            None => {
                return Err(FieldError::new(
                    field(i),
                    format!(
                        "{ip} has no family in spec.ipFamilies, which lists {}",
                        families.len()
                    ),
                ))
            }
        }
    }
    if policy == Some("SingleStack") {
        let (what, count) = if cluster_ips.len() > 1 {
            ("cluster IPs", cluster_ips.len())
        } else {
            ("IP families", families.len())
        };
        if count > 1 {
            return Err(FieldError::new(
                "spec.ipFamilyPolicy",
                format!("SingleStack, but the service has {count} {what}"),
            ));
        }
    }
    Ok(())
}

/// `spec.loadBalancerSourceRanges`: every entry an IP prefix, normalised
/// to its network (host bits cleared); surrounding spaces are ignored and
/// octets with leading zeros are decimal, as kube-proxy reads them
/// (`strings.TrimSpace`, then `netutils.ParseCIDRSloppy`).
fn source_ranges(written: Option<&[String]>) -> Result<Vec<String>, FieldError> {
    written
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let cidr = parse_cidr_sloppy(s.trim()).ok_or_else(|| {
                FieldError::new(
                    format!("spec.loadBalancerSourceRanges[{i}]"),
                    format!("{s:?} is not an IP prefix (like 10.0.0.0/8 or 2001:db8::/32)"),
                )
            })?;
            Ok(cidr.to_string())
        })
        .collect()
}

/// `spec.sessionAffinity` with
/// `spec.sessionAffinityConfig.clientIP.timeoutSeconds`.
fn session_affinity_timeout(
    affinity: Option<&str>,
    config: Option<&core::SessionAffinityConfig>,
) -> Result<Option<u32>, FieldError> {
    match affinity {
        None | Some("None") => Ok(None),
        Some("ClientIP") => {
            let written = config
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match written {
                None => Ok(Some(DEFAULT_SESSION_AFFINITY_TIMEOUT)),
                Some(t) => match u32::try_from(t) {
                    Ok(t) if (1..=MAX_SESSION_AFFINITY_TIMEOUT).contains(&t) => Ok(Some(t)),
                    _ => Err(FieldError::new(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        format!("{t} is not in 1..={MAX_SESSION_AFFINITY_TIMEOUT}"),
                    )),
                },
            }
        }
        Some(other) => Err(FieldError::new(
            "spec.sessionAffinity",
            format!("unknown session affinity {other:?} (expected None or ClientIP)"),
        )),
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
/// some cloud load balancers publish) have no IP and are left out, and so
/// are those whose `ipMode` is not `VIP` (kube-proxy's `IsVIPMode`: unset
/// means VIP): with `ipMode: Proxy` the load balancer must see the
/// traffic (PROXY protocol, TLS termination), so in-cluster clients must
/// not be short-cut to the endpoints.
fn load_balancer_ips(status: Option<&core::ServiceStatus>) -> Result<Vec<IpAddr>, FieldError> {
    let ingress = status
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    ingress
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.ip_mode.as_deref().is_none_or(|m| m == "VIP"))
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
        name: port_name(field("name"), p.name.as_deref())?,
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
