//! The planner on arbitrary cluster states (structured by `arbitrary`):
//! topology_filter::plan, then nft_writer::plan_ruleset, must not panic,
//! must give `nft` text with one word per name and
//! a ruleset the fake kernel accepts; and syncing a series of states
//! incrementally must leave the fake kernel exactly as full replaces do.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nftopo_fuzz::gen::Scenario;
use nftopo_fuzz::{check_incremental, plan_and_check};

fuzz_target!(|scenario: Scenario| {
    let rulesets: Vec<_> = scenario
        .states
        .iter()
        .map(|state| plan_and_check(state, &scenario.node, &scenario.config))
        .collect();
    check_incremental(&rulesets);
});
