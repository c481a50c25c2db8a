//! The manifest loader on arbitrary bytes: it must not panic, hang or
//! blow the stack; every error is one line; what it loads has Kubernetes
//! names; and what it loads plans into a ruleset the fake kernel accepts,
//! whose `nft` text stays parseable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nftopo_fuzz::plan_and_check;

fn kubernetes_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fuzz_target!(|data: &[u8]| {
    let mut state = api_watch::ClusterState::default();
    let errors = api_watch::file::load_bytes("fuzz.yaml", data, &mut state);
    for e in &errors {
        let line = e.to_string();
        assert!(!line.contains('\n'), "an error is not one line: {line:?}");
    }
    for key in state.services.keys().chain(state.endpoint_slices.keys()) {
        assert!(kubernetes_name(&key.namespace), "{key:?}");
        assert!(kubernetes_name(&key.name), "{key:?}");
    }
    plan_and_check(&state, "node-2", &nft_writer::PlannerConfig::default());
});
