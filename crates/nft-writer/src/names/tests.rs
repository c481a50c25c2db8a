use super::*;

#[test]
fn a_service_chain_name_is_readable_and_stable() {
    let key = ObjectKey::new("default", "swansea-city-api");
    let name = service_chain(&key, "", Protocol::Tcp, 80);
    assert!(name.starts_with("svc-"), "{name}");
    assert!(name.ends_with("-default/swansea-city-api/tcp/80"), "{name}");
    assert_eq!(name, service_chain(&key, "", Protocol::Tcp, 80));
}

#[test]
fn names_that_only_differ_after_truncation_stay_unique() {
    let long = "n".repeat(63);
    let a = service_chain(
        &ObjectKey::new(long.as_str(), format!("{long}a")),
        "",
        Protocol::Tcp,
        80,
    );
    let b = service_chain(
        &ObjectKey::new(long.as_str(), format!("{long}b")),
        "",
        Protocol::Tcp,
        80,
    );
    assert_eq!(a.len(), MAX_CHAIN_NAME);
    assert_eq!(b.len(), MAX_CHAIN_NAME);
    assert_ne!(a, b);
}

#[test]
fn dashes_cannot_make_two_services_collide() {
    let a = service_chain(&ObjectKey::new("a-b", "c"), "", Protocol::Tcp, 80);
    let b = service_chain(&ObjectKey::new("a", "b-c"), "", Protocol::Tcp, 80);
    assert_ne!(a, b);
}

#[test]
fn hostile_names_still_make_one_nft_word_and_stay_unique() {
    let hostile = [
        ("ns{x}", "we b\"; flush ruleset;\n#", "ht tp\"}"),
        ("ns", "\u{fc}mlaut\0z", ""),
        ("ns", "\u{fc}mlaut\0y", ""),
        ("a b", "c", "dns"),
        ("a_b", "c", "dns"),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (namespace, name, port_name) in hostile {
        let chain = service_chain(
            &ObjectKey::new(namespace, name),
            port_name,
            Protocol::Tcp,
            80,
        );
        let word = chain.starts_with(|c: char| c.is_ascii_alphabetic())
            && chain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
        assert!(word, "{chain:?} is not one nft word");
        assert!(chain.len() <= MAX_CHAIN_NAME, "{chain:?}");
        assert!(seen.insert(chain.clone()), "{chain:?} twice");
    }
}

#[test]
fn an_affinity_set_is_named_from_the_service_port_and_the_endpoint() {
    let key = ObjectKey::new("default", "web");
    let ep4 = (IpAddr::from([10, 42, 187, 66]), 5000);
    let name = affinity_set(&key, "http", Protocol::Tcp, 80, ep4, 10800);
    assert!(name.starts_with("aff-"), "{name}");
    assert!(
        name.ends_with("-default/web/tcp/http__10.42.187.66/5000"),
        "{name}"
    );
    assert_eq!(
        name,
        affinity_set(&key, "http", Protocol::Tcp, 80, ep4, 10800)
    );
    let ep6 = ("fd00:42::66".parse().unwrap(), 5000);
    let v6 = affinity_set(&key, "http", Protocol::Tcp, 80, ep6, 10800);
    assert!(v6.ends_with("__fd00.42..66/5000"), "{v6}");
}

#[test]
fn every_part_of_an_affinity_sets_identity_changes_its_name() {
    let key = ObjectKey::new("default", "web");
    let ip = IpAddr::from([10, 42, 187, 66]);
    let base = affinity_set(&key, "", Protocol::Tcp, 80, (ip, 5000), 10800);
    let variants = [
        affinity_set(
            &ObjectKey::new("default", "web2"),
            "",
            Protocol::Tcp,
            80,
            (ip, 5000),
            10800,
        ),
        affinity_set(
            &ObjectKey::new("other", "web"),
            "",
            Protocol::Tcp,
            80,
            (ip, 5000),
            10800,
        ),
        affinity_set(&key, "http", Protocol::Tcp, 80, (ip, 5000), 10800),
        affinity_set(&key, "", Protocol::Udp, 80, (ip, 5000), 10800),
        affinity_set(&key, "", Protocol::Tcp, 81, (ip, 5000), 10800),
        affinity_set(
            &key,
            "",
            Protocol::Tcp,
            80,
            (IpAddr::from([10, 42, 187, 67]), 5000),
            10800,
        ),
        affinity_set(&key, "", Protocol::Tcp, 80, (ip, 5001), 10800),
        affinity_set(&key, "", Protocol::Tcp, 80, (ip, 5000), 60),
    ];
    let mut seen = std::collections::BTreeSet::from([base.clone()]);
    for v in variants {
        assert!(seen.insert(v.clone()), "{v} collides");
    }
    // The timeout is in the hash only: same readable part.
    let short = affinity_set(&key, "", Protocol::Tcp, 80, (ip, 5000), 60);
    let hash_end = "aff-".len() + HASH_CHARS;
    assert_eq!(base[hash_end..], short[hash_end..]);
    assert_ne!(base[..hash_end], short[..hash_end]);
}

#[test]
fn long_affinity_set_names_are_cut_but_stay_unique_and_one_word() {
    let long = "n".repeat(63);
    let key = ObjectKey::new(long.as_str(), long.as_str());
    let ep = |last: u16| (IpAddr::from([0xfd00, 0x42, 0, 0, 0, 0, 0, last]), 5000);
    let a = affinity_set(&key, "", Protocol::Tcp, 80, ep(1), 10800);
    let b = affinity_set(&key, "", Protocol::Tcp, 80, ep(2), 10800);
    assert_eq!(a.len(), MAX_CHAIN_NAME);
    assert_ne!(a, b);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"/-_.".contains(&c)));
}

#[test]
fn protocol_and_port_name_are_part_of_the_identity() {
    let key = ObjectKey::new("default", "dns");
    let tcp = service_chain(&key, "dns", Protocol::Tcp, 53);
    let udp = service_chain(&key, "dns", Protocol::Udp, 53);
    assert_ne!(tcp, udp);
    assert!(udp.ends_with("/udp/dns"));
}

/// Issue 14 item 13: with a 40-bit FNV hash and the readable part cut
/// at 64 characters, these two Services shared one chain, and the
/// later one's rules replaced the earlier one's.
#[test]
fn two_services_whose_short_hashes_collided_get_their_own_chains() {
    let ns = "tenant-observability-metrics-collector-production-eu";
    let a = service_chain(&ObjectKey::new(ns, "s8btvuswuihjf"), "", Protocol::Tcp, 80);
    let b = service_chain(&ObjectKey::new(ns, "sutrbmhyouzpn"), "", Protocol::Tcp, 80);
    assert_ne!(a, b);
    assert_eq!(a.len(), MAX_CHAIN_NAME);
}

/// Random long identities (the readable part always cut) never share
/// a name: names are as unique as the identities they come from.
#[test]
fn random_long_identities_never_share_a_name() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let word = |n: u64, len: usize| -> String {
        (0..len)
            .map(|i| (b'a' + ((n >> (i % 12 * 5)) % 26) as u8) as char)
            .collect()
    };
    let ns = "n".repeat(60);
    let mut seen = std::collections::HashMap::new();
    for i in 0..200_000u32 {
        let name = word(next(), 13);
        let key = ObjectKey::new(ns.as_str(), name.as_str());
        let port = 1 + (next() % 3) as u16;
        let identity = (name.clone(), port);
        let chain = service_chain(&key, "", Protocol::Tcp, port);
        if let Some(other) = seen.insert(chain.clone(), identity.clone()) {
            assert_eq!(other, identity, "{chain} named two service ports (at {i})");
        }
    }
    assert!(seen.len() > 190_000, "{} distinct", seen.len());
}
