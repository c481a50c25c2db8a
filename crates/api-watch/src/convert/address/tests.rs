//! `parse_ip_sloppy` and `parse_cidr_sloppy` against upstream's tables.

use super::*;

/// k8s.io/utils `internal/third_party/forked/golang/net/ip_test.go`
/// (`parseIPTests`) and `net/ips_test.go`, as cases.
#[test]
fn addresses_parse_as_parse_ip_sloppy_reads_them() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "a plain IPv4 address parses",
            "127.0.1.2",
            Some("127.0.1.2"),
        ),
        (
            "an IPv4 octet with leading zeros is decimal (issue 100895)",
            "127.001.002.003",
            Some("127.1.2.3"),
        ),
        (
            "octets 008 and 009 are decimal, not invalid octal",
            "127.007.008.009",
            Some("127.7.8.9"),
        ),
        (
            "octet 010 is ten, not octal eight",
            "127.010.020.030",
            Some("127.10.20.30"),
        ),
        (
            "the issue's example cluster IP reads as 172.30.0.71",
            "172.30.0.071",
            Some("172.30.0.71"),
        ),
        (
            "any number of leading zeros is one octet",
            "10.0.0.0000000001",
            Some("10.0.0.1"),
        ),
        (
            "an all-zero octet written 000 is zero",
            "123.000.000.000",
            Some("123.0.0.0"),
        ),
        (
            "an IPv4-mapped IPv6 address is the IPv4 address (Go's To4)",
            "::ffff:127.1.2.3",
            Some("127.1.2.3"),
        ),
        (
            "leading zeros in an IPv4 tail are decimal too",
            "::ffff:127.010.020.030",
            Some("127.10.20.30"),
        ),
        (
            "an IPv4-mapped address written in hex is IPv4",
            "::ffff:7f01:0203",
            Some("127.1.2.3"),
        ),
        (
            "a written-out IPv4-mapped prefix is IPv4",
            "0:0:0:0:0000:ffff:127.1.2.3",
            Some("127.1.2.3"),
        ),
        (
            "an IPv6 group of six hex digits is accepted while its value fits",
            "0:0:0:0:000000:ffff:127.1.2.3",
            Some("127.1.2.3"),
        ),
        (
            "a mapped prefix with :: inside is IPv4",
            "0:0:0:0::ffff:127.1.2.3",
            Some("127.1.2.3"),
        ),
        (
            "a compressed IPv6 address parses",
            "2001:4860:0:2001::68",
            Some("2001:4860:0:2001::68"),
        ),
        (
            "a written-out IPv6 address parses",
            "2001:4860:0000:2001:0000:0000:0000:0068",
            Some("2001:4860:0:2001::68"),
        ),
        (
            "an IPv4-compatible (not mapped) tail stays IPv6",
            "::1.2.3.4",
            Some("::102:304"),
        ),
        ("only :: is the unspecified IPv6 address", "::", Some("::")),
        ("a trailing :: pads the rest", "fd00::", Some("fd00::")),
        ("upper-case hex parses", "FD00::A", Some("fd00::a")),
        (
            "a sign before the first octet is rejected",
            "-0.0.0.0",
            None,
        ),
        ("a sign in the second octet is rejected", "0.-1.0.0", None),
        ("a sign in the third octet is rejected", "0.0.-2.0", None),
        ("a sign in the last octet is rejected", "0.0.0.-3", None),
        ("an octet above 255 is rejected", "127.0.0.256", None),
        ("leading zeros do not make 0256 fit", "10.0.0.0256", None),
        ("a word is rejected", "abc", None),
        (
            "a group with nothing after its colon is rejected",
            "123:",
            None,
        ),
        ("a zone is rejected", "fe80::1%lo0", None),
        ("a numeric zone is rejected", "fe80::1%911", None),
        ("an empty string is rejected", "", None),
        (
            "nine groups around :: are rejected (Go issue 6628)",
            "a1:a2:a3:a4::b1:b2:b3:b4",
            None,
        ),
        ("an empty octet is rejected", "1.2..4", None),
        ("three octets are rejected", "172.31.11", None),
        ("five octets are rejected", "1.2.3.4.5", None),
        (
            "an IPv6 address with a hostname part is rejected",
            "fd00::zz",
            None,
        ),
        ("a group above 16 bits is rejected", "fd00::10000", None),
        ("two :: are rejected", "1::2::3", None),
        (
            "a :: standing for no group is rejected",
            "1:2:3:4:5:6:7::8",
            None,
        ),
        (
            "seven groups without :: are rejected",
            "1:2:3:4:5:6:7",
            None,
        ),
        (
            "an IPv4 tail in the middle is rejected",
            "1:2:3:4:5:1.2.3.4:8",
            None,
        ),
        ("surrounding spaces are rejected", " 10.0.0.1", None),
        ("a host name is rejected", "lb.example.com", None),
        ("an address with a port is rejected", "10.0.0.1:80", None),
        ("a prefix is not an address", "10.0.0.0/8", None),
    ];
    for (name, input, want) in cases {
        let want = want.map(|w| w.parse::<IpAddr>().unwrap());
        assert_eq!(parse_ip_sloppy(input), want, "{name}: {input:?}");
    }
}

/// k8s.io/utils forked `parseCIDRTests` and `net/ips_test.go`, as cases.
#[test]
fn prefixes_parse_as_parse_cidr_sloppy_reads_them() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "an IPv4 host prefix parses",
            "135.104.0.1/32",
            Some("135.104.0.1/32"),
        ),
        (
            "host bits are cleared",
            "135.104.0.1/24",
            Some("135.104.0.0/24"),
        ),
        ("the zero prefix parses", "0.0.0.0/0", Some("0.0.0.0/0")),
        (
            "leading zeros in octets are decimal (issue 100895)",
            "127.000.000.001/32",
            Some("127.0.0.1/32"),
        ),
        (
            "octets 007, 008 and 009 are decimal",
            "127.007.008.009/32",
            Some("127.7.8.9/32"),
        ),
        (
            "octet 010 is ten",
            "172.030.010.000/24",
            Some("172.30.10.0/24"),
        ),
        (
            "leading zeros in the length are decimal",
            "10.0.0.0/08",
            Some("10.0.0.0/8"),
        ),
        ("an IPv6 host prefix parses", "::1/128", Some("::1/128")),
        (
            "an IPv6 prefix keeps its network",
            "abcd:2345::/65",
            Some("abcd:2345::/65"),
        ),
        (
            "IPv6 host bits are cleared",
            "abcd:2345::/24",
            Some("abcd:2300::/24"),
        ),
        (
            "upper-case IPv6 parses",
            "2001:DB8::1/48",
            Some("2001:db8::/48"),
        ),
        (
            "an IPv4-mapped network is the IPv4 prefix",
            "::ffff:10.1.2.3/104",
            Some("10.0.0.0/8"),
        ),
        (
            "a mapped address under a short length is an IPv6 prefix",
            "::ffff:10.1.2.3/64",
            Some("::/64"),
        ),
        (
            "a dotted mask is rejected",
            "192.168.1.1/255.255.255.0",
            None,
        ),
        (
            "an IPv4 length above 32 is rejected",
            "192.168.1.1/35",
            None,
        ),
        ("an IPv6 length above 128 is rejected", "fd00::/129", None),
        ("a negative length is rejected", "2001:db8::1/-1", None),
        ("a negative zero length is rejected", "2001:db8::1/-0", None),
        ("a plus sign in the length is rejected", "10.0.0.0/+8", None),
        ("an empty length is rejected", "10.0.0.0/", None),
        ("a sign in an octet is rejected", "0.-1.0.0/32", None),
        (
            "a length of zero with a sign is rejected",
            "0.0.0.0/-0",
            None,
        ),
        ("an address without a length is rejected", "192.0.2.1", None),
        ("a host name is rejected", "office.example/24", None),
        ("an empty string is rejected", "", None),
        ("a zone is rejected", "fe80::1%eth0/64", None),
        (
            "spaces are rejected (callers trim source ranges first)",
            " 10.0.0.0/8",
            None,
        ),
    ];
    for (name, input, want) in cases {
        let got = parse_cidr_sloppy(input).map(|c| c.to_string());
        assert_eq!(got.as_deref(), *want, "{name}: {input:?}");
    }
}
