//! The objects the daemon benchmark's API server stand-in holds: three
//! Nodes, N Services of one port and N EndpointSlices of 10 endpoints, as
//! realistic as a real cluster's (uid, `managedFields`, `ownerReferences`,
//! annotations, `targetRef`, zone and all three conditions).

use std::net::Ipv4Addr;

use serde_json::{json, Value};

/// Nodes of the cluster (the daemon runs as node-2).
pub const NODES: u32 = 3;

/// Service i's cluster IP.
pub fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a2b_0001 + i)
}

/// Endpoint j of service i.
fn pod(i: u32, j: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a40_0000 + i * 16 + j)
}

/// A uid for object `kind` number `i` (the API server's are random; these
/// are as long).
fn uid(kind: u32, i: u32) -> String {
    format!("{kind:08x}-{:04x}-4000-8000-{i:012x}", i >> 16)
}

/// What the API server and the controllers put into every object's
/// metadata besides name and namespace: uid, resourceVersion,
/// creationTimestamp, and the `managedFields` entries of the managers
/// that wrote it (`fields` is the FieldsV1 tree of the last one). nftopo
/// reads none of it, but the watch decodes it all: the issue's
/// "realistic objects".
fn metadata(name: &str, namespace: Option<&str>, uid: String, fields: Value) -> Value {
    let mut meta = json!({
        "name": name, "uid": uid, "resourceVersion": "1",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update",
             "apiVersion": "v1", "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:annotations": {".": {},
                 "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                 "f:labels": {".": {}, "f:app": {}}}}},
            {"manager": "kube-controller-manager", "operation": "Update",
             "apiVersion": "v1", "time": "2026-01-01T00:00:01Z", "fieldsType": "FieldsV1",
             "fieldsV1": fields}]});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

/// Node i (from 1).
pub fn node(i: u32) -> Value {
    let name = format!("node-{i}");
    let mut meta = metadata(
        &name,
        None,
        uid(1, i),
        json!({"f:status": {"f:addresses": {}, "f:conditions": {}}}),
    );
    meta["labels"] = json!({
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "m5.large",
        "topology.kubernetes.io/region": "region-1",
        "topology.kubernetes.io/zone": if i % 2 == 1 { "zone-a" } else { "zone-b" }});
    json!({"apiVersion": "v1", "kind": "Node", "metadata": meta,
        "spec": {"podCIDR": format!("10.42.{i}.0/24"), "podCIDRs": [format!("10.42.{i}.0/24")]},
        "status": {"addresses": [
            {"type": "InternalIP", "address": format!("172.31.11.{}", 10 + i)},
            {"type": "Hostname", "address": name}]}})
}

/// Service i (from 0), ClusterIP, one TCP port 80 -> 8080.
pub fn service(i: u32) -> Value {
    let name = format!("svc-{i}");
    let spec = json!({"type": "ClusterIP", "clusterIP": vip(i).to_string(),
        "clusterIPs": [vip(i).to_string()], "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
        "sessionAffinity": "None", "selector": {"app": name},
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]});
    let mut meta = metadata(&name, Some("bench"), uid(2, i), json!({}));
    meta["labels"] = json!({"app": name});
    // kubectl apply's copy of what it applied.
    let applied = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"labels": {"app": name}, "name": name, "namespace": "bench"},
        "spec": {"ports": spec["ports"], "selector": spec["selector"]}});
    meta["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": applied.to_string()});
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec,
        "status": {"loadBalancer": {}}})
}

/// Service i's slice, as the EndpointSlice controller writes it: its 10
/// endpoints (each with its Pod as `targetRef`, its zone, all three
/// conditions), plus `extra` if given; owned by the Service.
pub fn slice(i: u32, extra: Option<Ipv4Addr>) -> Value {
    let svc = format!("svc-{i}");
    let endpoint = |ip: Ipv4Addr, node: u32, pod: String| {
        json!({"addresses": [ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": format!("node-{node}"),
            "zone": if node % 2 == 1 { "zone-a" } else { "zone-b" },
            "targetRef": {"kind": "Pod", "namespace": "bench", "name": pod,
                "uid": uid(3, u32::from(ip))}})
    };
    let mut eps: Vec<Value> = (0..10)
        .map(|j| {
            endpoint(
                pod(i, j),
                1 + (i + j) % NODES,
                format!("{svc}-7d9c8b6f5-{j:05x}"),
            )
        })
        .collect();
    if let Some(ip) = extra {
        eps.push(endpoint(ip, 1, format!("{svc}-7d9c8b6f5-extra")));
    }
    let name = format!("{svc}-1");
    let mut meta = metadata(
        &name,
        Some("bench"),
        uid(4, i),
        json!({"f:addressType": {}, "f:endpoints": {}, "f:ports": {},
            "f:metadata": {"f:labels": {".": {}, "f:app": {},
                "f:endpointslice.kubernetes.io/managed-by": {},
                "f:kubernetes.io/service-name": {}},
                "f:ownerReferences": {".": {}, "k:{\"uid\":\"…\"}": {}}}}),
    );
    meta["generateName"] = json!(format!("{svc}-"));
    meta["labels"] = json!({"app": svc, "kubernetes.io/service-name": svc,
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"});
    meta["annotations"] =
        json!({"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"});
    meta["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Service", "name": svc,
        "uid": uid(2, i), "controller": true, "blockOwnerDeletion": true}]);
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps})
}
