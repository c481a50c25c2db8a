//! [`NetlinkRoutes`] drives rtnetlink's connection on a thread of its own;
//! dropping it must end that thread (the daemon opens one per address
//! lookup in some modes). Its own test binary, so no other test's
//! connection is counted. Needs no root: opening a NETLINK_ROUTE socket
//! and dumping links is unprivileged.

use route_sync::{NetlinkRoutes, RouteKernel};

/// This process's threads named like the connection's.
fn connection_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "route-sync-rtnl")
        .count()
}

#[test]
fn a_dropped_connection_ends_its_thread() {
    let mut open: Vec<NetlinkRoutes> = (0..5).map(|_| NetlinkRoutes::open().unwrap()).collect();
    for k in &mut open {
        assert!(!k.interfaces().unwrap().is_empty(), "lo at least");
    }
    assert_eq!(connection_threads(), 5);
    drop(open);
    // The threads end once their connection sees the handle gone: wait
    // for that (bounded), then check.
    for _ in 0..200 {
        if connection_threads() == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        connection_threads(),
        0,
        "a connection thread outlived its NetlinkRoutes"
    );
}
