//! Manifests read as kube-proxy reads the same objects from the API: how
//! it reads slice ports and endpoint conditions. Each case names the
//! upstream rule it follows.

use super::*;
use crate::{Conditions, ObjectKey};

fn load(text: &str) -> (ClusterState, Vec<LoadError>) {
    let mut state = ClusterState::default();
    let errors = load_str("test.yaml", text, &mut state);
    (state, errors)
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("default", name)
}

#[test]
fn slice_ports_and_conditions_are_read_as_kube_proxy_reads_them() {
    struct Case {
        name: &'static str,
        body: &'static str,
        ports: &'static [u16],
        conditions: Conditions,
    }
    let ready = Conditions {
        ready: true,
        serving: true,
        terminating: false,
    };
    let cases = [
        Case {
            // endpointslicecache.go: "Ignoring invalid endpoint port".
            name: "a port with port: null is skipped and the slice's other ports are kept",
            body: "ports: [{name: a, port: null}, {name: b, port: 8080}]\nendpoints: [{addresses: [10.42.0.5]}]",
            ports: &[8080],
            conditions: ready,
        },
        Case {
            name: "a port without a port field is skipped like port: null",
            body: "ports: [{name: http}]\nendpoints: [{addresses: [10.42.0.5]}]",
            ports: &[],
            conditions: ready,
        },
        Case {
            name: "a port of 0 is skipped, as upstream skips it",
            body: "ports: [{name: a, port: 0}, {name: b, port: 9090}]\nendpoints: [{addresses: [10.42.0.5]}]",
            ports: &[9090],
            conditions: ready,
        },
        Case {
            // endpointslicecache.go: Serving == nil || *Serving.
            name: "serving: null means serving even when the endpoint is not ready",
            body: "ports: [{port: 80}]\nendpoints: [{addresses: [10.42.0.5], conditions: {ready: false, serving: null, terminating: true}}]",
            ports: &[80],
            conditions: Conditions { ready: false, serving: true, terminating: true },
        },
        Case {
            name: "missing conditions mean ready, serving and not terminating",
            body: "ports: [{port: 80}]\nendpoints: [{addresses: [10.42.0.5], conditions: {}}]",
            ports: &[80],
            conditions: ready,
        },
        Case {
            name: "serving: false is kept as written",
            body: "ports: [{port: 80}]\nendpoints: [{addresses: [10.42.0.5], conditions: {ready: false, serving: false, terminating: true}}]",
            ports: &[80],
            conditions: Conditions { ready: false, serving: false, terminating: true },
        },
    ];
    for case in cases {
        let text = format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\n{}\n",
            case.body
        );
        let (state, errors) = load(&text);
        assert_eq!(errors, vec![], "{}", case.name);
        let slice = &state.endpoint_slices[&key("s")];
        let ports: Vec<u16> = slice.ports.iter().map(|p| p.port).collect();
        assert_eq!(ports, case.ports, "{}", case.name);
        assert_eq!(
            slice.endpoints[0].conditions, case.conditions,
            "{}",
            case.name
        );
    }
}
