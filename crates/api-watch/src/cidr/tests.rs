use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn parsing_clears_host_bits_and_refuses_junk() {
    for (written, want) in [
        ("172.31.11.157/20", "172.31.0.0/20"),
        ("fd00:42::1/64", "fd00:42::/64"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("10.1.2.3/32", "10.1.2.3/32"),
        ("::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"),
    ] {
        assert_eq!(Cidr::parse(written).unwrap().to_string(), want, "{written}");
    }
    for bad in [
        "10.42.0.0",
        "10.42.0.0/33",
        "10.42.0/24",
        "x/8",
        "10.0.0.0/+8",
        "10.0.0.0/ 8",
        " 10.0.0.0/8",
        "010.0.0.0/8",
        "::/129",
        "",
    ] {
        assert_eq!(Cidr::parse(bad), Err(CidrError(bad.into())), "{bad:?}");
    }
}

#[test]
fn parse_host_keeps_the_address_as_written() {
    let (addr, cidr) = Cidr::parse_host("172.31.11.157/20").unwrap();
    assert_eq!(addr, ip("172.31.11.157"));
    assert_eq!(cidr.to_string(), "172.31.0.0/20");
}

#[test]
fn the_sloppy_parser_reads_leading_zeros_as_decimal_and_mapped_networks_as_ipv4() {
    assert_eq!(
        Cidr::parse_sloppy("10.044.1.2/16").unwrap().to_string(),
        "10.44.0.0/16"
    );
    assert_eq!(
        Cidr::parse_sloppy("::ffff:10.0.0.0/104")
            .unwrap()
            .to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(Cidr::parse_sloppy("10.0.0.0/33"), None);
}

#[test]
fn every_constructor_yields_a_network() {
    let c = Cidr::new(ip("10.1.2.3"), 8).unwrap();
    assert_eq!((c.addr(), c.prefix_len()), (ip("10.0.0.0"), 8));
    assert_eq!(Cidr::new(ip("10.1.2.3"), 33), None);
    assert_eq!(Cidr::new(ip("::1"), 129), None);
    let h = Cidr::host(ip("fd00::5"));
    assert_eq!(h.to_string(), "fd00::5/128");
    assert!(h.is_host());
    assert!(!c.is_host());
}

#[test]
fn contains_respects_length_and_family() {
    let c = Cidr::parse("172.31.0.0/20").unwrap();
    assert!(c.contains(&ip("172.31.11.157")));
    assert!(!c.contains(&ip("172.31.16.1")));
    assert!(!c.contains(&ip("::1")));
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(&ip("1.2.3.4")));
}

#[test]
fn prefixes_order_by_family_then_address_then_length() {
    let mut got: Vec<Cidr> = ["fd00::/8", "9.0.0.0/8", "10.0.0.0/16", "10.0.0.0/8"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    got.sort();
    let text: Vec<String> = got.iter().map(Cidr::to_string).collect();
    assert_eq!(text, ["9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "fd00::/8"]);
}

#[test]
fn serializes_as_its_text() {
    let c = Cidr::parse("10.0.0.0/8").unwrap();
    assert_eq!(serde_json::to_string(&c).unwrap(), "\"10.0.0.0/8\"");
}
