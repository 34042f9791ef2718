//! The lab's etcd cluster is a real one: three members agree on a write, two stopped take the
//! quorum away (writes fail within a bound), and one back gives it back, with nothing lost.

use std::time::{Duration, Instant};

use autonomy_lab as common;
use common::etcd::EtcdCluster;

#[test]
fn three_members_hold_quorum_lose_it_without_two_and_regain_it_with_one_back() {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let mut etcd = common::or_skip!(EtcdCluster::start_or_skip(scratch.path(), "etcd-lab", 3));
    let put = |etcd: &EtcdCluster, value: &str| etcd.etcdctl(&["put", "/autonomy-lab/k", value]);
    assert!(put(&etcd, "one").status.success(), "{:?}", put(&etcd, "one"));

    etcd.stop_member(1);
    etcd.stop_member(2);
    let refused = put(&etcd, "two");
    assert!(
        !refused.status.success(),
        "a write succeeded on one member of three: {refused:?}"
    );

    etcd.start_member(1).unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !put(&etcd, "three").status.success() {
        assert!(
            Instant::now() < deadline,
            "the quorum did not come back with two members of three"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let read = etcd.etcdctl(&["get", "/autonomy-lab/k", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "three", "{read:?}");
}
