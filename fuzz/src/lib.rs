//! Shared pieces of nftopo's fuzz targets: the checks every planned
//! ruleset must pass, and structured generators (`arbitrary`) for cluster
//! states and nf_tables operations.

pub mod gen;
/// The tracer's checks, shared with nft-writer's `cargo test`.
#[path = "../../crates/nft-writer/tests/trace_agree/mod.rs"]
pub mod trace_agree;
pub mod wire;

use nft_writer::{FakeKernel, Kernel, PlannerConfig, Ruleset, Syncer, Transaction};

/// `nft` accepts a name without quotes: a letter, `_` or `.`, then
/// letters, digits, `/`, `-`, `_` and `.`.
pub fn nft_word(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
        && s.len() < 256
}

/// The `nft` text of a ruleset stays a script `nft -f` can read whatever
/// the input: one statement per line, no control characters, and every
/// chain, map and set name one word.
pub fn check_text(ruleset: &Ruleset) {
    let text = ruleset.to_string();
    for line in text.lines() {
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "control character in {line:?}"
        );
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if matches!(pair[0], "chain" | "goto" | "jump" | "map" | "set" | "table") {
                let word = pair[1].trim_end_matches(',').trim_start_matches('@');
                assert!(nft_word(word), "{word:?} is not one nft word in {line:?}");
            }
        }
    }
}

/// Plans `state` for `node`, checks the text, applies the ruleset to a
/// fake kernel (which refuses dangling references and duplicates), and
/// returns it. (Determinism is left to the crates' tests: planning twice
/// here would cost a third of the executions.)
pub fn plan_and_check(state: &api_watch::ClusterState, node: &str, cfg: &PlannerConfig) -> Ruleset {
    let plan = topology_filter::plan(state, node);
    let (ruleset, _problems) = nft_writer::plan_ruleset(&plan, cfg);
    check_text(&ruleset);
    let mut kernel = FakeKernel::new();
    if let Err(e) = kernel.apply(&Transaction::replace(&ruleset)) {
        panic!("the fake kernel refuses a planned ruleset: {e}\n{ruleset}");
    }
    ruleset
}

/// Converges the fake kernel to `rulesets` in order through a [`Syncer`]
/// (each convergence reads the kernel back and sends only differences)
/// and checks after each that the kernel holds exactly what a full
/// replace would give, and that converging again sends nothing. Each
/// ruleset is converged twice: the second carries the deletions the
/// first deferred (chains and sets it stopped referring to).
pub fn check_incremental(rulesets: &[Ruleset]) {
    let mut syncer = Syncer::new(FakeKernel::new());
    for (i, ruleset) in rulesets.iter().enumerate() {
        for pass in 0..2 {
            if let Err(e) = syncer.converge(ruleset) {
                panic!("sync {i} (pass {pass}) refused: {e}\n{ruleset}");
            }
        }
        match syncer.converge(ruleset) {
            Ok(st) => assert_eq!(st.operations, 0, "sync {i}: not in step after converging"),
            Err(e) => panic!("sync {i} (in step) refused: {e}"),
        }
        let mut fresh = FakeKernel::new();
        fresh
            .apply(&Transaction::replace(ruleset))
            .expect("a full replace of a checked ruleset");
        assert_eq!(
            syncer.kernel().dump(),
            fresh.dump(),
            "sync {i}: the incremental result differs from a full replace"
        );
    }
}
