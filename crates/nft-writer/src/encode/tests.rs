use super::*;
use netlink_packet_core::Emitable;

fn emit(e: Expressions) -> Vec<u8> {
    let attr = ListAttribute::from(e);
    let mut buf = vec![0; attr.buffer_len()];
    attr.emit(&mut buf);
    buf
}

/// A list element (NFTA_LIST_ELEM, nested) holding NFTA_EXPR_NAME and
/// the nested NFTA_EXPR_DATA with `attrs`, each u32 attribute as
/// (type, big-endian value) and the rest raw.
fn expected(name: &str, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    fn nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut data = Vec::new();
    for (k, v) in attrs {
        nla(&mut data, *k, v);
    }
    let mut inner = Vec::new();
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    nla(&mut inner, 1, &cname);
    nla(&mut inner, 2 | 0x8000, &data);
    let mut out = Vec::new();
    nla(&mut out, 1 | 0x8000, &inner);
    out
}

#[test]
fn numgen_random_encodes_register_modulus_and_type() {
    let want = expected(
        "numgen",
        &[(1, &[0, 0, 0, 11]), (2, &[0, 0, 0, 5]), (3, &[0, 0, 0, 1])],
    );
    assert_eq!(emit(numgen_random(5, 11)), want);
    // The first bytes, spelled out: a 44-byte nested list element.
    assert_eq!(&want[..4], &[0x2c, 0x00, 0x01, 0x80]);
}

#[test]
fn dnat_encodes_type_family_and_registers() {
    let want = expected(
        "nat",
        &[
            (1, &[0, 0, 0, 1]),
            (2, &[0, 0, 0, 2]),
            (3, &[0, 0, 0, 1]),
            (5, &[0, 0, 0, 9]),
        ],
    );
    assert_eq!(emit(nat_dnat(Family::Ip, 1, 9)), want);
}

#[test]
fn masquerade_asks_for_fully_random_ports() {
    assert_eq!(
        emit(masquerade()),
        expected("masq", &[(1, &[0, 0, 0, 0x10])])
    );
}

#[test]
fn reject_is_icmp_port_unreachable_with_a_one_byte_code() {
    let got = emit(reject(Family::Ip));
    assert_eq!(got, expected("reject", &[(1, &[0, 0, 0, 0]), (2, &[3])]));
    // NFTA_REJECT_ICMP_CODE is a u8: a 5-byte attribute padded to 8.
    assert!(got.windows(5).any(|w| w == [5, 0, 2, 0, 3]));
}

#[test]
fn ct_state_loads_the_state_key_into_register_1() {
    assert_eq!(
        emit(ct_state()),
        expected("ct", &[(1, &[0, 0, 0, 1]), (2, &[0, 0, 0, 0])])
    );
}

#[test]
fn reject_with_tcp_reset_has_no_icmp_code() {
    assert_eq!(
        emit(reject_tcp_reset()),
        expected("reject", &[(1, &[0, 0, 0, 1])])
    );
}

#[test]
fn keys_pad_each_part_to_32_bits_with_the_index_in_host_order() {
    let k = ElemKey::Service {
        addr: "10.43.0.10".parse().unwrap(),
        proto: api_watch::Protocol::Udp,
        port: 53,
        index: Some(2),
    };
    let mut want = vec![10, 43, 0, 10, 17, 0, 0, 0, 0, 53, 0, 0];
    want.extend_from_slice(&2u32.to_ne_bytes());
    assert_eq!(key_bytes(&k), want);
}

#[test]
fn a_large_element_list_is_split_into_messages_that_fit_a_netlink_attribute() {
    let table = crate::TableRef {
        family: Family::Ip,
        name: "t".into(),
    };
    let elements: Vec<_> = (0..1000u32)
        .map(|i| {
            (
                ElemKey::Service {
                    addr: "10.43.0.1".parse().unwrap(),
                    proto: api_watch::Protocol::Tcp,
                    port: 80,
                    index: Some(i),
                },
                ElemValue::Dnat("10.42.0.1".parse().unwrap(), 80),
            )
        })
        .collect();
    let enc = encode_ops(&[Op::AddElements {
        table,
        map: "m".into(),
        kind: MapKind::EndpointDnat,
        elements,
    }]);
    assert_eq!(enc.len(), 3);
    for e in &enc {
        assert_eq!(e.op_index, 0);
        assert!(e.message.buffer_len() < 65_535);
    }
}
