//! The nf_tables netlink encoding: arbitrary transactions (shaped as the
//! planner makes them) are encoded and framed as one batch, which a small
//! validating parser walks (lengths, padding, nesting, sequence numbers)
//! and `netlink-packet-netfilter` decodes; each decoded message must
//! encode to the same bytes. The first half of the input may instead be
//! raw bytes for the decoder alone, which must not panic on them.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::NetlinkMessage;
use netlink_packet_netfilter::NetfilterMessage;
use nft_writer::build_batch;
use nft_writer::encode::encode_ops;
use nftopo_fuzz::wire::{check_batch, op};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(raw) = u.arbitrary::<bool>() else {
        return;
    };
    if raw {
        let _ = NetlinkMessage::<NetfilterMessage>::deserialize(u.take_rest());
        return;
    }
    let Ok(first_seq) = u.arbitrary::<u32>() else {
        return;
    };
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 64 {
        match op(&mut u) {
            Ok(o) => ops.push(o),
            Err(_) => break,
        }
    }
    let encoded = encode_ops(&ops);
    let batch = build_batch(&encoded, first_seq);
    check_batch(&batch, &encoded, first_seq);
});
