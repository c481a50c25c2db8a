use super::*;
use netlink_packet_core::DefaultNla;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A dump answer as the kernel frames it, decoded the way
/// [`Conntrack::exchange`] decodes it.
fn round_trip(attrs: Vec<ConntrackAttribute>) -> Option<Flow> {
    let bytes = request(
        ConntrackMessage::New(attrs),
        NetfilterProtoFamily::IPv4,
        0,
        7,
    );
    let m = NetlinkMessage::<NetfilterMessage>::deserialize(&bytes).unwrap();
    match m.payload {
        NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::Conntrack(ct),
            ..
        }) => flow_of(attributes(&ct)),
        other => panic!("unexpected {other:?}"),
    }
}

fn with_proto(t: Vec<Tuple>, proto: Protocol) -> Vec<Tuple> {
    t.into_iter()
        .map(|part| match part {
            Tuple::Proto(mut ps) => {
                ps[0] = ProtoTuple::Protocol(proto);
                Tuple::Proto(ps)
            }
            other => other,
        })
        .collect()
}

#[test]
fn a_dnated_udp_flow_decodes_with_both_directions_and_the_dnat_bit() {
    let flow = round_trip(vec![
        ConntrackAttribute::CtaTupleOrig(udp_tuple(sa("10.0.1.5:40000"), sa("10.43.0.10:53"))),
        ConntrackAttribute::CtaTupleReply(udp_tuple(sa("10.42.0.5:5353"), sa("10.0.1.5:40000"))),
        ConntrackAttribute::CtaStatus(Status::Confirmed | Status::DstNat | Status::DstNatDone),
        ConntrackAttribute::CtaTimeout(30),
    ]);
    assert_eq!(
        flow,
        Some(Flow {
            orig_src: sa("10.0.1.5:40000"),
            orig_dst: sa("10.43.0.10:53"),
            reply_src: sa("10.42.0.5:5353"),
            reply_dst: sa("10.0.1.5:40000"),
            dnat: true,
        })
    );
}

#[test]
fn an_ipv6_flow_without_nat_decodes_with_dnat_false() {
    let flow = round_trip(vec![
        ConntrackAttribute::CtaTupleOrig(udp_tuple(sa("[fd00::1]:40000"), sa("[fd43::a]:53"))),
        ConntrackAttribute::CtaTupleReply(udp_tuple(sa("[fd43::a]:53"), sa("[fd00::1]:40000"))),
        ConntrackAttribute::CtaStatus(Status::Confirmed),
    ])
    .unwrap();
    assert!(!flow.dnat);
    assert_eq!(flow.orig_dst, sa("[fd43::a]:53"));
}

#[test]
fn tcp_flows_are_left_out_of_the_udp_dump() {
    let orig = with_proto(
        udp_tuple(sa("10.0.1.5:40000"), sa("10.43.0.10:53")),
        Protocol::Tcp,
    );
    let reply = with_proto(
        udp_tuple(sa("10.42.0.5:5353"), sa("10.0.1.5:40000")),
        Protocol::Tcp,
    );
    let flow = round_trip(vec![
        ConntrackAttribute::CtaTupleOrig(orig),
        ConntrackAttribute::CtaTupleReply(reply),
        ConntrackAttribute::CtaStatus(Status::DstNat),
    ]);
    assert_eq!(flow, None);
}

#[test]
fn flows_in_another_conntrack_zone_are_left_out() {
    let attrs = |zone: u16| {
        vec![
            ConntrackAttribute::CtaTupleOrig(udp_tuple(sa("10.0.1.5:40000"), sa("10.43.0.10:53"))),
            ConntrackAttribute::CtaTupleReply(udp_tuple(
                sa("10.42.0.5:5353"),
                sa("10.0.1.5:40000"),
            )),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ZONE, zone.to_be_bytes().to_vec())),
        ]
    };
    assert!(round_trip(attrs(0)).is_some());
    assert_eq!(round_trip(attrs(7)), None);
}

#[test]
fn a_message_without_a_reply_tuple_is_no_flow() {
    let flow = round_trip(vec![ConntrackAttribute::CtaTupleOrig(udp_tuple(
        sa("10.0.1.5:40000"),
        sa("10.43.0.10:53"),
    ))]);
    assert_eq!(flow, None);
}

#[test]
fn a_delete_carries_only_the_original_tuple_in_the_flows_family() {
    let bytes = request(
        ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(udp_tuple(
            sa("[fd00::1]:40000"),
            sa("[fd43::a]:53"),
        ))]),
        NetfilterProtoFamily::IPv6,
        NLM_F_ACK,
        9,
    );
    // nlmsghdr: type = CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE.
    assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), (1 << 8) | 2);
    // nfgenmsg: AF_INET6, version 0.
    assert_eq!(&bytes[16..18], &[10, 0]);
}
