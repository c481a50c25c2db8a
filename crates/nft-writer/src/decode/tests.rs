//! The decoder against the kernel's dump form: rulesets encoded with the
//! encoder and turned into the bytes the kernel would dump (a model of
//! the kernel's canonical form, checked byte for byte against a real
//! dump of Linux 6.18), and that real dump itself.

mod kernel;

use std::net::IpAddr;

use api_watch::Protocol;

use super::*;
use kernel::*;

/// `nft list table ip nftopo` and `ip6` of tests/fixtures/edge.yaml as
/// Linux 6.18 answered them (every construct of the data plane, dual
/// stack): the answer messages of each dump, one after the other.
const EDGE_DUMP: &[u8] = include_bytes!("../../tests/fixtures/readback-edge.dump");

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Every statement the model has, with addresses of `family`.
fn every_statement(family: Family) -> Vec<Stmt> {
    let (net, host, odd, addr) = match family {
        Family::Ip => (
            "10.42.0.0/16",
            "10.43.0.10/32",
            "198.51.100.0/22",
            "10.42.1.7",
        ),
        Family::Ip6 => (
            "fd00:42::/48",
            "fd00:43::10/128",
            "2001:db8::/61",
            "fd00:42::7",
        ),
    };
    let mut out = vec![
        Stmt::DestVmap {
            map: "service-ips".into(),
        },
        Stmt::PortVmap {
            map: "service-nodeports".into(),
        },
        Stmt::SaddrIn(cidr(net)),
        Stmt::SaddrNotIn(cidr(net)),
        Stmt::DaddrIn(cidr(host)),
        Stmt::DaddrNotIn(cidr(odd)),
        Stmt::SaddrIn(cidr(odd)),
        Stmt::IifnameIs(IfacePattern::exact("cbr0").unwrap()),
        Stmt::IifnameIsNot(IfacePattern::exact("a-name-of-15-by").unwrap()),
        Stmt::IifnameIs(IfacePattern::prefix("c").unwrap()),
        Stmt::IifnameIsNot(IfacePattern::prefix("cali").unwrap()),
        Stmt::FibDaddrLocal,
        Stmt::FibSaddrLocal,
        Stmt::AddrPairInSet {
            set: "hairpin".into(),
        },
        Stmt::SaddrInSet {
            set: "aff-x".into(),
        },
        Stmt::NumgenIs {
            modulus: 3,
            value: 2,
        },
        Stmt::MarkBitsClear(0x4000),
        Stmt::MarkSetBits(0x4000),
        Stmt::MarkToggleBits(0x4000),
        Stmt::UpdateSaddr {
            set: "aff-x".into(),
        },
        Stmt::Masquerade,
        Stmt::DnatSpread {
            modulus: 5,
            offset: 10,
            map: "service-endpoints".into(),
        },
        Stmt::DnatSpreadPort {
            modulus: 2,
            offset: 0,
            map: "nodeport-endpoints".into(),
        },
        Stmt::DnatTo(ip(addr), 8080),
        Stmt::Reject,
        Stmt::RejectTcpReset,
    ];
    for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        out.push(Stmt::L4ProtoIs(p));
    }
    for v in [
        Verdict::Accept,
        Verdict::Drop,
        Verdict::Return,
        Verdict::Jump("services".into()),
        Verdict::Goto("reject-chain".into()),
    ] {
        out.push(Stmt::Verdict(v));
    }
    out
}

fn table_with_rules(family: Family, rules: Vec<Rule>) -> Table {
    let mut t = Table::new(family, crate::names::TABLE);
    let base = BaseChain {
        chain_type: ChainType::Nat,
        hook: HookPoint::Prerouting,
        priority: -100,
        policy_drop: false,
    };
    t.chains.insert(
        "nat-prerouting".into(),
        Chain {
            name: "nat-prerouting".into(),
            base: Some(base),
            rules,
        },
    );
    t
}

#[test]
fn every_statement_alone_and_after_every_other_reads_back_as_itself() {
    for family in [Family::Ip, Family::Ip6] {
        let all = every_statement(family);
        let mut rules: Vec<Rule> = all.iter().map(|s| Rule(vec![s.clone()])).collect();
        for a in &all {
            for b in &all {
                rules.push(Rule(vec![a.clone(), b.clone()]));
            }
        }
        rules.push(Rule(all.clone()));
        let rs = Ruleset {
            tables: vec![table_with_rules(family, rules)],
        };
        let got = decode_dump(&kernel_dump(&rs)).unwrap();
        let want = &rs.tables[0].chains["nat-prerouting"].rules;
        let got = &got.tables[0].chains["nat-prerouting"].rules;
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g, w, "{family:?}");
        }
    }
}

/// A table of `family` with one map of every kind, each with elements of
/// every shape it takes.
fn every_map(family: Family) -> Table {
    let (a, b, c) = match family {
        Family::Ip => (ip("10.43.0.10"), ip("10.42.1.7"), ip("10.42.1.8")),
        Family::Ip6 => (ip("fd00:43::10"), ip("fd00:42::7"), ip("fd00:42::8")),
    };
    let mut t = Table::new(family, crate::names::TABLE);
    let mut add = |name: &str, kind: MapKind, elements: Vec<(ElemKey, ElemValue)>| {
        let mut m = Map::new(name, kind);
        m.elements = elements.into_iter().collect();
        t.maps.insert(name.into(), m);
    };
    let protos = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
    let verdicts = [
        Verdict::Goto("svc-a".into()),
        Verdict::Jump("svc-b".into()),
        Verdict::Drop,
        Verdict::Accept,
        Verdict::Return,
    ];
    add(
        "service-ips",
        MapKind::ServiceVerdict,
        (0..5)
            .map(|i| {
                let key = ElemKey::service(a, protos[i % 3], 80 + i as u16);
                (key, ElemValue::Verdict(verdicts[i].clone()))
            })
            .collect(),
    );
    add(
        "service-nodeports",
        MapKind::PortVerdict,
        (0..5)
            .map(|i| {
                let key = ElemKey::Port {
                    proto: protos[i % 3],
                    port: 30000 + i as u16,
                    index: None,
                };
                (key, ElemValue::Verdict(verdicts[i].clone()))
            })
            .collect(),
    );
    add(
        "service-endpoints",
        MapKind::EndpointDnat,
        (0..4u32)
            .map(|i| {
                let key = ElemKey::Service {
                    addr: a,
                    proto: protos[i as usize % 3],
                    port: 53,
                    index: Some(i),
                };
                (key, ElemValue::Dnat(b, 5353))
            })
            .collect(),
    );
    add(
        "nodeport-endpoints",
        MapKind::PortEndpointDnat,
        vec![(
            ElemKey::Port {
                proto: Protocol::Tcp,
                port: 30080,
                index: Some(1),
            },
            ElemValue::Dnat(c, 65535),
        )],
    );
    add(
        "hairpin",
        MapKind::AddrPairSet,
        vec![(ElemKey::Pair(b, b), ElemValue::Member)],
    );
    add(
        "aff-x",
        MapKind::AffinitySet { timeout: 10800 },
        vec![(
            ElemKey::Raw(crate::model::addr_bytes(&b)),
            ElemValue::Member,
        )],
    );
    add(
        "foreign-set",
        MapKind::Other {
            flags: 0x4,
            key_type: 7,
            key_len: 4,
            data_type: 0,
            data_len: 0,
        },
        vec![(ElemKey::Raw(vec![192, 0, 2, 1]), ElemValue::Member)],
    );
    add(
        "foreign-vmap",
        MapKind::Other {
            flags: 0x8,
            key_type: 9,
            key_len: 4,
            data_type: 0xffff_ff00,
            data_len: 16,
        },
        vec![(
            ElemKey::Raw(vec![1, 2, 3, 4]),
            ElemValue::Verdict(Verdict::Drop),
        )],
    );
    t
}

#[test]
fn every_map_kind_and_element_shape_reads_back_as_itself() {
    for family in [Family::Ip, Family::Ip6] {
        let rs = Ruleset {
            tables: vec![every_map(family)],
        };
        let got = decode_dump(&kernel_dump(&rs)).unwrap();
        assert_eq!(got, read_back_view(&rs), "{family:?}");
        assert!(got.tables[0].maps["aff-x"].elements.is_empty());
    }
}

#[test]
fn both_tables_read_back_sorted_by_family_with_their_layout() {
    let rs = Ruleset {
        tables: vec![every_map(Family::Ip), table_with_rules(Family::Ip6, vec![])],
    };
    let mut reversed = rs.clone();
    reversed.tables.reverse();
    let got = decode_dump(&kernel_dump(&reversed)).unwrap();
    assert_eq!(got, read_back_view(&rs));
    assert_eq!(got.tables[1].layout, Some(crate::names::LAYOUT));
}

/// The real dump: every rule decodes to known statements, and those
/// statements, encoded and put in the kernel's form by the model above,
/// give back the kernel's bytes exactly (which checks the model).
#[test]
fn a_real_dump_of_the_full_data_plane_decodes_without_anything_unknown() {
    let rs = decode_dump(EDGE_DUMP).unwrap();
    assert_eq!(rs.tables.len(), 2);
    let mut rules = 0;
    for t in &rs.tables {
        // Captured at layout 2 (`spread-N` chains); the kernel tests read
        // back the current layout (`spread` rules with offsets).
        assert_eq!(t.layout, Some(2));
        for m in t.maps.values() {
            assert!(!matches!(m.kind, MapKind::Other { .. }), "{}", m.name);
            for (k, v) in &m.elements {
                assert!(!matches!(k, ElemKey::Raw(_)), "{}: {k:?}", m.name);
                assert!(!matches!(v, ElemValue::Raw(_)), "{}: {v:?}", m.name);
            }
        }
        for c in t.chains.values() {
            for r in &c.rules {
                assert!(
                    !r.0.iter().any(|s| matches!(s, Stmt::Unknown { .. })),
                    "{r:?}"
                );
                rules += 1;
            }
        }
    }
    let mut checked = 0;
    for frame in frames(EDGE_DUMP).unwrap() {
        if frame.kind != (SUBSYS_NFTABLES << 8) | MSG_NEWRULE {
            continue;
        }
        let family = family_of(frame.payload[0]).unwrap();
        let body = &frame.payload[4..];
        let stmts = expr::statements(family, find(body, RULE_EXPRESSIONS).unwrap());
        assert_eq!(
            kernel_exprs(family, &Rule(stmts.clone())),
            find(body, RULE_EXPRESSIONS).unwrap(),
            "{stmts:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, rules);
    assert!(rules > 50, "{rules} rules");
}

#[test]
fn every_prefix_and_every_corrupted_byte_of_a_real_dump_decodes_without_panic() {
    for end in 0..EDGE_DUMP.len() {
        let _ = decode_dump(&EDGE_DUMP[..end]);
    }
    let mut bytes = EDGE_DUMP.to_vec();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..4000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = (state as usize) % bytes.len();
        let old = bytes[at];
        bytes[at] = (state >> 32) as u8;
        let _ = decode_dump(&bytes);
        if i % 2 == 0 {
            bytes[at] = old;
        }
    }
}

/// A rule of the seed table with `extra` expressions (name, data) after
/// its statements, as the kernel dumps it.
fn rule_message(
    family: Family,
    stmts: Vec<Stmt>,
    extra: &[(&str, Vec<u8>)],
    attrs_after: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    let mut exprs = kernel_exprs(family, &Rule(stmts));
    for (name, data) in extra {
        let mut inner = Vec::new();
        nla(&mut inner, 1, &strz(name));
        nla(&mut inner, 2, data);
        nla(&mut exprs, LIST_ELEM, &inner);
    }
    let mut body = Vec::new();
    nla(&mut body, RULE_TABLE, &strz("nftopo"));
    nla(&mut body, RULE_CHAIN, &strz("nat-prerouting"));
    nla(&mut body, RULE_HANDLE, &9u64.to_be_bytes());
    nla(&mut body, RULE_POSITION, &8u64.to_be_bytes());
    nla(&mut body, RULE_EXPRESSIONS, &exprs);
    for (k, v) in attrs_after {
        nla(&mut body, *k, v);
    }
    let mut out = kernel_dump(&Ruleset {
        tables: vec![table_with_rules(family, vec![])],
    });
    message(&mut out, MSG_NEWRULE, family, &body);
    out
}

fn only_rule(dump: &[u8]) -> Vec<Stmt> {
    let rs = decode_dump(dump).unwrap();
    let rules = &rs.tables[0].chains["nat-prerouting"].rules;
    assert_eq!(rules.len(), 1);
    rules[0].0.clone()
}

#[test]
fn what_the_model_has_no_words_for_is_kept_raw_in_place() {
    let counter = {
        let mut d = Vec::new();
        nla(&mut d, 1, &0u64.to_be_bytes());
        nla(&mut d, 2, &0u64.to_be_bytes());
        d
    };
    let comment = b"\x00\x06hello\x00".to_vec();
    let stmts = vec![
        Stmt::L4ProtoIs(Protocol::Tcp),
        Stmt::Verdict(Verdict::Accept),
    ];
    let got = only_rule(&rule_message(
        Family::Ip,
        stmts.clone(),
        &[("counter", counter.clone())],
        &[(7, comment.clone()), (99, vec![1, 2, 3, 4])],
    ));
    let mut want = stmts;
    want.push(Stmt::Unknown {
        name: "counter".into(),
        data: counter,
    });
    want.push(Stmt::Unknown {
        name: "rule-attr 7".into(),
        data: comment,
    });
    want.push(Stmt::Unknown {
        name: "rule-attr 99".into(),
        data: vec![1, 2, 3, 4],
    });
    assert_eq!(got, want);
}

#[test]
fn an_expression_that_differs_in_anything_but_a_default_is_unknown() {
    // `meta l4proto tcp` with the cmp's operator changed to `<` (2), and
    // `numgen` with an offset of 1: both stay raw, nothing is dropped.
    let mut exprs = kernel_exprs(Family::Ip, &Rule(vec![Stmt::L4ProtoIs(Protocol::Tcp)]));
    let cmp_op = [8, 0, 2, 0, 0, 0, 0, 0];
    let at = exprs.windows(8).position(|w| w == cmp_op).unwrap();
    exprs[at + 7] = 2;
    let mut body = Vec::new();
    nla(&mut body, RULE_TABLE, &strz("nftopo"));
    nla(&mut body, RULE_CHAIN, &strz("nat-prerouting"));
    nla(&mut body, RULE_EXPRESSIONS, &exprs);
    let mut dump = kernel_dump(&Ruleset {
        tables: vec![table_with_rules(Family::Ip, vec![])],
    });
    message(&mut dump, MSG_NEWRULE, Family::Ip, &body);
    let got = only_rule(&dump);
    assert_eq!(got.len(), 2);
    assert!(
        got.iter().all(|s| matches!(s, Stmt::Unknown { .. })),
        "{got:?}"
    );
    assert!(matches!(&got[0], Stmt::Unknown { name, .. } if name == "meta"));
    assert!(matches!(&got[1], Stmt::Unknown { name, .. } if name == "cmp"));

    let mut numgen = Vec::new();
    for (k, v) in [(1, 1u32), (2, 3), (3, 1), (4, 1)] {
        nla(&mut numgen, k, &v.to_be_bytes());
    }
    let mut cmp = Vec::new();
    nla(&mut cmp, 1, &1u32.to_be_bytes());
    nla(&mut cmp, 2, &0u32.to_be_bytes());
    let mut value = Vec::new();
    nla(&mut value, 1, &0u32.to_ne_bytes());
    nla(&mut cmp, 3, &value);
    let got = only_rule(&rule_message(
        Family::Ip,
        vec![],
        &[("numgen", numgen.clone()), ("cmp", cmp.clone())],
        &[],
    ));
    assert_eq!(
        got,
        vec![
            Stmt::Unknown {
                name: "numgen".into(),
                data: numgen.clone()
            },
            Stmt::Unknown {
                name: "cmp".into(),
                data: cmp.clone()
            },
        ]
    );
    // The same with the default offset 0 is `numgen random mod 3 0`.
    numgen.truncate(numgen.len() - 8);
    nla(&mut numgen, 4, &0u32.to_be_bytes());
    let got = only_rule(&rule_message(
        Family::Ip,
        vec![],
        &[("numgen", numgen), ("cmp", cmp)],
        &[],
    ));
    assert_eq!(
        got,
        vec![Stmt::NumgenIs {
            modulus: 3,
            value: 0
        }]
    );
}

#[test]
fn elements_that_do_not_fit_their_map_are_kept_raw() {
    let a = ip("10.43.0.10");
    let fits = ElemKey::service(a, Protocol::Tcp, 80);
    let mut gre = key_bytes_of(&fits);
    gre[4] = 47;
    let mut padded = key_bytes_of(&fits);
    padded[7] = 1;
    let cases = [
        ("an unknown protocol", gre),
        ("a padding byte set", padded),
        ("a key too short", vec![10, 43, 0, 10]),
    ];
    for (case, key) in cases {
        assert_eq!(
            elem::key(Family::Ip, MapKind::ServiceVerdict, &key),
            ElemKey::Raw(key.clone()),
            "{case}"
        );
    }
    assert_eq!(
        elem::key(Family::Ip6, MapKind::ServiceVerdict, &key_bytes_of(&fits)),
        ElemKey::Raw(key_bytes_of(&fits)),
        "an IPv4 key in an ip6 table"
    );
    let mut queue = Vec::new();
    let mut verdict = Vec::new();
    nla(&mut verdict, VERDICT_CODE, &3u32.to_be_bytes());
    nla(&mut queue, DATA_VERDICT, &verdict);
    assert_eq!(
        elem::value(Family::Ip, MapKind::ServiceVerdict, Some(&queue)),
        ElemValue::Raw("verdict 3".into())
    );
    let mut short = Vec::new();
    nla(&mut short, DATA_VALUE, &[10, 42, 1, 7, 0, 80]);
    assert_eq!(
        elem::value(Family::Ip, MapKind::EndpointDnat, Some(&short)),
        ElemValue::Raw("value 0x0a2a01070050".into())
    );
    assert_eq!(
        elem::value(Family::Ip, MapKind::EndpointDnat, None),
        ElemValue::Raw("no data".into())
    );
    assert_eq!(
        elem::value(Family::Ip, MapKind::AddrPairSet, Some(&short)),
        ElemValue::Raw("value 0x0a2a01070050".into())
    );
}

fn key_bytes_of(k: &ElemKey) -> Vec<u8> {
    crate::encode::key_bytes(k)
}

#[test]
fn chains_and_sets_the_model_cannot_name_come_back_as_other() {
    let mut body = Vec::new();
    nla(&mut body, CHAIN_TABLE, &strz("nftopo"));
    nla(&mut body, CHAIN_NAME, &strz("odd"));
    let mut hook = Vec::new();
    nla(&mut hook, HOOK_NUM, &1u32.to_be_bytes());
    nla(&mut hook, HOOK_PRIORITY, &(-150i32 as u32).to_be_bytes());
    nla(&mut body, CHAIN_HOOK, &hook);
    nla(&mut body, CHAIN_POLICY, &0u32.to_be_bytes());
    nla(&mut body, CHAIN_TYPE, &strz("route"));
    let mut set = Vec::new();
    nla(&mut set, SET_TABLE, &strz("nftopo"));
    nla(&mut set, SET_NAME, &strz("sticky"));
    nla(&mut set, SET_FLAGS, &0x30u32.to_be_bytes());
    nla(&mut set, SET_KEY_TYPE, &7u32.to_be_bytes());
    nla(&mut set, SET_KEY_LEN, &4u32.to_be_bytes());
    nla(&mut set, SET_TIMEOUT, &1500u64.to_be_bytes());
    let mut dump = kernel_dump(&Ruleset {
        tables: vec![Table::new(Family::Ip, "nftopo")],
    });
    message(&mut dump, MSG_NEWCHAIN, Family::Ip, &body);
    message(&mut dump, MSG_NEWSET, Family::Ip, &set);
    let rs = decode_dump(&dump).unwrap();
    let t = &rs.tables[0];
    assert_eq!(
        t.chains["odd"].base,
        Some(BaseChain {
            chain_type: ChainType::Other,
            hook: HookPoint::Input,
            priority: -150,
            policy_drop: true,
        })
    );
    // A timeout of 1.5 s is no whole number of seconds.
    assert_eq!(
        t.maps["sticky"].kind,
        MapKind::Other {
            flags: 0x30,
            key_type: 7,
            key_len: 4,
            data_type: 0,
            data_len: 0
        }
    );
}

#[test]
fn broken_framing_is_an_error_and_other_messages_are_skipped() {
    assert!(decode_dump(&[1, 2, 3]).is_err());
    let mut lying = 40u32.to_ne_bytes().to_vec();
    lying.extend_from_slice(&[0; 12]);
    assert!(decode_dump(&lying).is_err());
    // NLMSG_DONE, a conntrack message and an nf_tables message of the
    // inet family decode to nothing.
    let mut other = Vec::new();
    for (kind, family) in [(3u16, 0u8), (0x0100, 2), (0x0a00, 1)] {
        other.extend_from_slice(&24u32.to_ne_bytes());
        other.extend_from_slice(&kind.to_ne_bytes());
        other.extend_from_slice(&[0; 10]);
        other.extend_from_slice(&[family, 0, 0, 0, 0, 0, 0, 0]);
    }
    assert_eq!(decode_dump(&other).unwrap(), Ruleset::default());
}

/// A set's element dump the kernel wrote twice over (its hash table
/// resized under the dump: elements repeated, as many missed) shows as
/// repeats; `restart_elements` empties the set and the count, and a dump
/// without repeats gives back exactly the set.
#[test]
fn repeated_elements_are_counted_and_a_restart_starts_the_set_empty() {
    let rs = Ruleset {
        tables: vec![every_map(Family::Ip)],
    };
    let dump = kernel_dump(&rs);
    let frames = frames(&dump).unwrap();
    let is_elements = |kind: u16| kind == (SUBSYS_NFTABLES << 8) | MSG_NEWSETELEM;
    let mut d = Decoder::default();
    for f in &frames {
        d.message(f.kind, f.payload);
    }
    assert_eq!(d.repeated_elements, 0);
    let once = read_back_view(&rs);
    let set = "service-endpoints";
    let held = once.tables[0].maps[set].elements.len();
    assert!(held > 0);
    // The set's own element messages (they name it).
    let name = format!("{set}\0");
    let own: Vec<_> = frames
        .iter()
        .filter(|f| is_elements(f.kind))
        .filter(|f| f.payload.windows(name.len()).any(|w| w == name.as_bytes()))
        .collect();
    for f in &own {
        d.message(f.kind, f.payload);
    }
    assert_eq!(d.repeated_elements, held);
    d.restart_elements(Family::Ip, set);
    assert_eq!(d.repeated_elements, 0);
    assert!(d.tables[0].maps[set].elements.is_empty());
    // Dumped again without repeats: whole.
    for f in &own {
        d.message(f.kind, f.payload);
    }
    assert_eq!(d.repeated_elements, 0);
    assert_eq!(d.finish(), once);
}
