//! The tracer on arbitrary planned states (issue 17, item 3): for each
//! state the planner turns into a ruleset the fake kernel accepts,
//! `explain` over the fake kernel's read-back (what `nftopo trace`
//! evaluates) must not panic, its chances must sum to 1, and its outcomes
//! must be exactly `trace`'s over the planned ruleset, for packets drawn
//! from the table; a client put into an affinity set is pinned
//! (`crates/nft-writer/tests/trace_agree`, which `cargo test` runs on
//! seeded random states too).

#![no_main]

use libfuzzer_sys::fuzz_target;
use nftopo_fuzz::gen::Scenario;
use nftopo_fuzz::{plan_and_check, trace_agree};

fuzz_target!(|scenario: Scenario| {
    for state in &scenario.states {
        let ruleset = plan_and_check(state, &scenario.node, &scenario.config);
        if let Err(e) = trace_agree::check_trace(&ruleset) {
            panic!("{e}\n{ruleset}");
        }
    }
});
