//! `nftopo apply` converges and `nftopo diff` tells what it would send, on
//! the real kernel in a namespace of each test (needs root). `nft
//! monitor`, running in the namespace during an apply, is the
//! independent witness of how many objects the kernel saw change.
//!
//! * an apply of the state the kernel already holds changes nothing:
//!   `an_unchanged_apply_sends_nothing_and_one_new_endpoint_a_handful`
//! * `diff` prints the operations (nothing when in step) and exits 0, 1
//!   or 2 as diff(1) does; a hand edit shows as its repair:
//!   `diff_prints_what_apply_would_send_and_exits_as_diff_does`
//! * a table of another layout is replaced once, then converged:
//!   `a_table_of_another_layout_is_replaced_once`

use std::path::PathBuf;

use nftopo_integration::*;

fn ok<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn seed(topology_keys: bool) -> Vec<PathBuf> {
    let svc = if topology_keys {
        "svc-hostname.yaml"
    } else {
        "svc-plain.yaml"
    };
    ["nodes.yaml", svc, "slices-v1.yaml"]
        .iter()
        .map(|f| seed_manifest(f))
        .collect()
}

/// `nftopo diff` in `ns`: (exit code, stdout).
fn diff(ns: &Netns, manifests: &[PathBuf]) -> (Option<i32>, String) {
    let bin = ok(nftopo_bin(), "nftopo");
    let mut args = vec!["diff".to_string(), "--node".into(), THIS_NODE.into()];
    for m in manifests {
        args.push("--manifests".into());
        args.push(m.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ns.command(&bin, &args).output().expect("nftopo diff");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn netns(what: &str) -> Netns {
    require_root();
    ok(
        Netns::create(format!("{}-{what}", unique_prefix())),
        "netns",
    )
}

#[test]
fn an_unchanged_apply_sends_nothing_and_one_new_endpoint_a_handful() {
    let ns = netns("unchanged");
    let plain = seed(false);
    ok(apply(&ns, THIS_NODE, &plain, &[]), "first apply");
    let before = ok(nft_list(&ns), "list");
    let m = ok(NftMonitor::start(&ns), "nft monitor");
    ok(apply(&ns, THIS_NODE, &plain, &[]), "second apply");
    let events = ok(m.events(), "nft monitor");
    assert!(events.is_empty(), "an unchanged apply changed: {events:#?}");
    assert_eq!(ok(nft_list(&ns), "list"), before);

    // node-4's pod replaced by another: its element is rewritten (the
    // index of five endpoints stays; no rule changes).
    let dir = std::env::temp_dir().join(format!("{}-unchanged", unique_prefix()));
    ok(std::fs::create_dir_all(&dir), "dir");
    let slices = ok(
        std::fs::read_to_string(seed_manifest("slices-v1.yaml")),
        "slices",
    );
    let without_e = slices.replace("10.42.201.2", "10.42.201.3");
    assert_ne!(slices, without_e, "the fixture names node-4's pod");
    let moved = dir.join("slices.yaml");
    ok(std::fs::write(&moved, without_e), "write slices");
    let changed = vec![plain[0].clone(), plain[1].clone(), moved];
    let m = ok(NftMonitor::start(&ns), "nft monitor");
    ok(
        apply(&ns, THIS_NODE, &changed, &[]),
        "apply with a moved pod",
    );
    let events = ok(m.events(), "nft monitor");
    // The endpoint element, rewritten; nothing else of the table.
    assert!(
        !events.is_empty() && events.len() <= 6,
        "one moved endpoint: {events:#?}"
    );
    assert!(
        events.iter().all(|e| e.contains("element")),
        "only elements change: {events:#?}"
    );
    let now = ok(nft_list(&ns), "list");
    assert!(
        now.contains("10.42.201.3") && !now.contains("10.42.201.2"),
        "{now}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diff_prints_what_apply_would_send_and_exits_as_diff_does() {
    let ns = netns("diff");
    let plain = seed(false);
    // Nothing programmed yet: everything is to add.
    let (code, text) = diff(&ns, &plain);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("add table ip nftopo\n"), "{text}");
    assert!(
        ok(nft_tables(&ns), "tables").trim().is_empty(),
        "diff changed nothing"
    );
    ok(apply(&ns, THIS_NODE, &plain, &[]), "apply");
    let (code, text) = diff(&ns, &plain);
    assert_eq!((code, text.as_str()), (Some(0), ""), "in step");

    // A hand edit shows as its repair, in nft syntax.
    ok(
        ns.exec(
            "nft",
            &[
                "delete",
                "element",
                "ip",
                "nftopo",
                "service-endpoints",
                "{ 10.43.118.32 . tcp . 80 . 14 }",
            ],
        ),
        "delete an element by hand",
    );
    let (code, text) = diff(&ns, &plain);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["add element ip nftopo service-endpoints { 10.43.118.32 . tcp . 80 . 14 : 10.42.201.2 . 5000 }"],
        "{text}"
    );
    // The text is what nft takes: feeding it repairs the table.
    let script = std::env::temp_dir().join(format!("{}-repair.nft", unique_prefix()));
    ok(std::fs::write(&script, &text), "write script");
    ok(
        ns.exec("nft", &["-f", &script.display().to_string()]),
        "nft -f the diff",
    );
    let _ = std::fs::remove_file(&script);
    assert_eq!(diff(&ns, &plain).0, Some(0), "repaired by the diff");

    // Another desired state: the rewritten chain and the endpoints that go.
    let (code, text) = diff(&ns, &seed(true));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("delete element ip nftopo service-endpoints"),
        "{text}"
    );
    // An error exits with 2.
    let (code, _) = diff(&ns, &[PathBuf::from("/nonexistent.yaml")]);
    assert_eq!(code, Some(2));
}

#[test]
fn a_table_of_another_layout_is_replaced_once() {
    let ns = netns("layout");
    let plain = seed(false);
    // A table as an older nftopo left it: no layout comment.
    ok(
        ns.exec(
            "nft",
            &["add table ip nftopo; add chain ip nftopo services; add rule ip nftopo services accept"],
        ),
        "an old table",
    );
    let (code, text) = diff(&ns, &plain);
    assert_eq!(code, Some(1));
    assert!(
        text.starts_with("delete table ip nftopo\nadd table ip nftopo\n"),
        "{text}"
    );
    ok(apply(&ns, THIS_NODE, &plain, &[]), "apply");
    let listing = ok(nft_list(&ns), "list");
    assert!(listing.contains("comment \"nftopo layout "), "{listing}");
    assert!(
        !listing.contains("\t\taccept\n"),
        "the old rule is gone: {listing}"
    );
    assert_eq!(
        diff(&ns, &plain),
        (Some(0), String::new()),
        "then converged"
    );
}
