use super::*;
use crate::encode::encode_ops;
use crate::error::ErrorKind;
use crate::transaction::Op;
use crate::TableRef;
use netlink_packet_netfilter::{none::ControlMessage, NetfilterHeader};
use std::time::{Duration, Instant};

/// Runs `f` in a thread moved into a network namespace of its own
/// (gone with the thread, even when an assertion fails). Needs root.
fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kernel tests need root (network namespaces and CAP_NET_ADMIN)"
    );
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        f()
    })
    .join()
    .expect("test thread panicked");
}

fn table() -> TableRef {
    TableRef {
        family: Family::Ip,
        name: "nftopo-netlink-test".into(),
    }
}

fn add_table() -> Op {
    Op::AddTable(table())
}

fn add_chain(name: &str) -> Op {
    Op::AddChain {
        table: table(),
        name: name.into(),
        base: None,
    }
}

fn tx(ops: Vec<Op>) -> Transaction {
    Transaction { ops }
}

/// A batch whose begin names subsystem `res_id`, around one valid
/// operation.
fn batch_for_subsystem(res_id: u16, first: u32) -> Framed {
    let mut framed = BatchWriter::new(first);
    for e in encode_ops(&[add_table()]) {
        framed.push(e);
    }
    let mut framed = framed.finish();
    let begin = NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, res_id),
        ControlMessage::BatchBegin,
    );
    let mut buf = Vec::new();
    let msg = message(begin, 0, first);
    buf.resize(msg.buffer_len(), 0);
    msg.serialize(&mut buf);
    let all = framed.to_vec();
    buf.extend_from_slice(&all[buf.len()..]);
    framed.pages = vec![buf];
    framed
}

#[test]
fn a_batch_refused_as_a_whole_returns_its_errno_at_once() {
    in_netns(|| {
        let mut k = NetlinkKernel::open().unwrap();
        // An unknown subsystem (EINVAL) and one without batches
        // (ctnetlink, 1: EOPNOTSUPP): the kernel answers the batch
        // begin and nothing else; this used to wait out the 30 s
        // receive timeout and report EAGAIN.
        for (res_id, errno) in [(200, 22), (1, 95)] {
            let first = k.seq;
            k.seq = k.seq.wrapping_add(3);
            let started = Instant::now();
            let outcome = k.exchange(&batch_for_subsystem(res_id, first));
            let took = started.elapsed();
            match outcome {
                Err(Failure::Refused {
                    index, errno: got, ..
                }) => {
                    assert_eq!((index, got), (0, errno), "subsystem {res_id}");
                }
                Err(Failure::Other(e)) => panic!("subsystem {res_id}: {e}"),
                Ok(()) => panic!("subsystem {res_id}: accepted"),
            }
            eprintln!("subsystem {res_id}: errno {errno} after {took:?}");
            assert!(took < Duration::from_millis(500), "{took:?}");
        }
        // The socket still works.
        k.apply(&tx(vec![add_table()])).unwrap();
    });
}

#[test]
fn a_refused_message_reports_its_index_and_the_kernels_text() {
    in_netns(|| {
        let mut k = NetlinkKernel::open().unwrap();
        let long = "x".repeat(300);
        let err = k
            .apply(&tx(vec![add_table(), add_chain("ok"), add_chain(&long)]))
            .unwrap_err();
        // A name longer than NFT_NAME_MAXLEN fails the attribute policy:
        // ERANGE, with netlink's text and the attribute's offset.
        match &err {
            Error::Rejected {
                op_index,
                op,
                errno,
            } => {
                assert_eq!((*op_index, *errno), (Some(2), 34), "{err}");
                assert!(
                    op.contains(
                        "`, kernel: `Attribute failed policy validation (attribute at byte"
                    ),
                    "{err}"
                );
            }
            other => panic!("unexpected error {other}"),
        }
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    });
}

#[test]
fn answers_left_over_from_a_refused_batch_do_not_fail_the_next() {
    in_netns(|| {
        let mut k = NetlinkKernel::open().unwrap();
        // Two refused messages: the first ends the wait, the second's
        // answer stays queued for the next batch to skip.
        let missing = |name: &str| Op::AddChain {
            table: TableRef {
                family: Family::Ip,
                name: "no-such-table".into(),
            },
            name: name.into(),
            base: None,
        };
        let err = k
            .apply(&tx(vec![
                add_table(),
                missing("a"),
                missing("b"),
                add_chain("c"),
            ]))
            .unwrap_err();
        match &err {
            Error::Rejected {
                op_index, errno, ..
            } => {
                assert_eq!((*op_index, *errno), (Some(1), 2), "{err}");
            }
            other => panic!("unexpected error {other}"),
        }
        k.apply(&tx(vec![add_table(), add_chain("c")])).unwrap();
        k.apply(&tx(vec![add_chain("d")])).unwrap();
    });
}

#[test]
fn answers_dropped_by_a_full_socket_leave_the_state_unknown() {
    in_netns(|| {
        let mut k = NetlinkKernel::open().unwrap();
        // The smallest receive buffer, and 400 refused messages: the
        // kernel drops answers and the next read says ENOBUFS.
        setsockopt(&k.socket, sockopt::RcvBuf, &1).unwrap();
        let missing = |i: usize| Op::AddChain {
            table: TableRef {
                family: Family::Ip,
                name: "no-such-table".into(),
            },
            name: format!("c{i}"),
            base: None,
        };
        let err = k.apply(&tx((0..400).map(missing).collect())).unwrap_err();
        match &err {
            // Protocol: "treat as unknown state", what the Syncer
            // does after any error (it reads back and converges).
            Error::Protocol(m) => assert!(m.contains("ENOBUFS"), "{err}"),
            other => panic!("unexpected error {other}"),
        }
        // What the Syncer does next: read back (the answers left queued
        // were drained, so the kernel answers again), then apply.
        k.read_back().unwrap();
        k.apply(&tx(vec![add_table(), add_chain("after")])).unwrap();
    });
}

#[test]
fn error_answers_are_read_with_their_extended_ack() {
    // A capped NLMSG_ERROR (EINVAL) for sequence 7 with a message and
    // an offset, then an ack for sequence 8.
    let mut data = Vec::new();
    let msg = b"Chain not found\0";
    let tlvs_len = (4 + msg.len() + 3) & !3;
    let len = 16 + 4 + 16 + tlvs_len + 8;
    data.extend((len as u32).to_ne_bytes());
    data.extend(NLMSG_ERROR.to_ne_bytes());
    data.extend((NLM_F_CAPPED | NLM_F_ACK_TLVS).to_ne_bytes());
    data.extend(7u32.to_ne_bytes());
    data.extend(0u32.to_ne_bytes());
    data.extend((-22i32).to_ne_bytes());
    data.extend([0u8; 16]);
    data.extend(((4 + msg.len()) as u16).to_ne_bytes());
    data.extend(NLMSGERR_ATTR_MSG.to_ne_bytes());
    data.extend(msg);
    data.resize(16 + 4 + 16 + tlvs_len, 0);
    data.extend(8u16.to_ne_bytes());
    data.extend(NLMSGERR_ATTR_OFFS.to_ne_bytes());
    data.extend(24u32.to_ne_bytes());
    data.extend(36u32.to_ne_bytes());
    data.extend(NLMSG_ERROR.to_ne_bytes());
    data.extend(NLM_F_CAPPED.to_ne_bytes());
    data.extend(8u32.to_ne_bytes());
    data.extend(0u32.to_ne_bytes());
    data.extend(0i32.to_ne_bytes());
    data.extend([0u8; 16]);
    let answers = parse_errors(&data).unwrap();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!((answers[0].seq, answers[0].errno), (7, 22));
    assert_eq!(
        answers[0].text().as_deref(),
        Some("Chain not found (attribute at byte 24 of the message)")
    );
    assert_eq!(
        (answers[1].seq, answers[1].errno, answers[1].text()),
        (8, 0, None)
    );
    assert!(parse_errors(&data[..20]).is_err(), "a truncated message");
    assert!(parse_errors(&[0xff; 20]).is_err());
}

/// `add table ip nftopo`, `add set` of an `ipv4_addr` set and `add
/// element` of `n` addresses, the one at `bad` an IPv6 address (the
/// kernel refuses its key length). nftopo's own table name, so that the
/// read-back sees it.
fn set_with_elements(n: u32, bad: Option<u32>) -> Vec<Op> {
    use crate::model::{ElemKey, ElemValue, MapKind};
    let ours = TableRef {
        family: Family::Ip,
        name: crate::names::TABLE.into(),
    };
    let elements = (0..n)
        .map(|i| {
            let addr = if Some(i) == bad {
                std::net::IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 1])
            } else {
                std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8])
            };
            (ElemKey::Addr(addr), ElemValue::Member)
        })
        .collect();
    vec![
        Op::AddTable(ours.clone()),
        Op::AddMap {
            table: ours.clone(),
            name: "addrs".into(),
            kind: MapKind::AddrSet,
        },
        Op::AddElements {
            table: ours,
            map: "addrs".into(),
            kind: MapKind::AddrSet,
            elements,
        },
    ]
}

#[test]
fn an_owned_batch_names_the_refused_message_by_its_elements() {
    in_netns(|| {
        let mut k = NetlinkKernel::open().unwrap();
        // 1,000 elements go in three messages (400 a message): the
        // second, elements 400 to 799, holds the bad one.
        let err = k
            .apply_owned(tx(set_with_elements(1000, Some(500))))
            .unwrap_err();
        match &err {
            Error::Rejected { op_index, op, .. } => {
                assert_eq!(*op_index, Some(2), "{err}");
                let want = "add element ip nftopo addrs { 10.0.1.144, …, 10.0.3.31 } \
                            (400 elements, message 2 of the operation's 3, 1000 elements in all)";
                assert!(op.starts_with(want), "{err}");
            }
            other => panic!("unexpected error {other}"),
        }
        // Nothing was applied; the same operations, all good, are.
        assert_eq!(k.read_back().unwrap().tables, vec![]);
        let stats = k.apply_owned(tx(set_with_elements(1000, None))).unwrap();
        assert_eq!((stats.operations, stats.messages), (3, 2 + 2 + 3));
        let held = k.read_back().unwrap();
        let elements = &held.tables[0].maps["addrs"].elements;
        let want: Vec<_> = set_with_elements(1000, None)
            .into_iter()
            .find_map(|op| match op {
                Op::AddElements { elements, .. } => Some(elements),
                _ => None,
            })
            .unwrap();
        assert_eq!(elements.len(), 1000);
        assert!(want.iter().all(|(k, v)| elements.get(k) == Some(v)));
    });
}
