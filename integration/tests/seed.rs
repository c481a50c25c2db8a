//! The seed article's scenario on real kernels: see tests below.
use nftopo_integration::*;
use std::path::Path;

fn cluster() -> SeedCluster {
    require_root();
    SeedCluster::start(Path::new(env!("CARGO_BIN_EXE_testpod"))).expect("seed cluster")
}

#[test]
fn pods_answer_directly_by_pod_ip() {
    let c = cluster();
    for ip in backends() {
        let target = std::net::SocketAddrV4::new(ip, TARGET_PORT);
        let r = c.probe_from_pod(CLIENT, target, 20, false).unwrap();
        assert_eq!(r.answered(), [ip].into(), "{r}");
        let r = c.probe_from_pod(CLIENT, target, 5, true).unwrap();
        assert_eq!(r.answered(), [ip].into(), "{r}");
    }
}
