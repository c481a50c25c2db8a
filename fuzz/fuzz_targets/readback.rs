//! The read-back decoder on arbitrary bytes, as the answer messages of
//! `nft list table` dumps (`nft_writer::decode_dump`, the function the
//! netlink read-back feeds): no panic, hang or unbounded allocation on
//! any input; a framing error is an error, everything else decodes to
//! plain data, the same twice, that prints as `nft` text (what the engine
//! logs of a read-back) without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ruleset) = nft_writer::decode_dump(data) else {
        return;
    };
    assert_eq!(nft_writer::decode_dump(data).ok(), Some(ruleset.clone()));
    let _ = ruleset.to_string();
});
