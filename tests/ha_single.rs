//! Nodes on one database: schema creation does not collide, exactly one node leads, and the
//! schema and lease survive restarts.

mod common;

use common::{lab::Lab, node::Node, LAB_TOKEN};

fn status(node: &Node) -> serde_json::Value {
    autonomy::client::NodeClient::new(&node.url, Some(LAB_TOKEN.into()))
        .get("/v1/ha/status")
        .unwrap_or_else(|e| panic!("status of {}: {e}\nlog:\n{}", node.spec.node_id, node.log()))
}

/// Two nodes started at the same moment on an empty database both come up (the schema is
/// created once, under a lock), and exactly one of them leads.
#[test]
fn two_nodes_starting_at_once_elect_exactly_one_leader() {
    let Some(lab) = Lab::start_or_skip("ha-single") else {
        return;
    };
    let spec = |node_id: &str| lab.node_spec(node_id, false);
    let mut a = Node::spawn(spec("node-a")).expect("node a starts");
    let mut b = Node::spawn(spec("node-b")).expect("node b starts");
    a.wait_until_listening().unwrap_or_else(|e| panic!("{e}"));
    b.wait_until_listening().unwrap_or_else(|e| panic!("{e}"));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (sa, sb) = loop {
        let (sa, sb) = (status(&a), status(&b));
        let leaders = [&sa, &sb].iter().filter(|s| s["role"] == "leader").count();
        if leaders == 1 || std::time::Instant::now() > deadline {
            break (sa, sb);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let leaders: Vec<_> = [&sa, &sb].into_iter().filter(|s| s["role"] == "leader").collect();
    assert_eq!(
        leaders.len(),
        1,
        "exactly one leader expected:\n{sa}\n{sb}\nlogs:\n{}\n{}",
        a.log(),
        b.log()
    );
    let leader_id = leaders[0]["node_id"].clone();
    assert_eq!(sa["holder_id"], leader_id, "node a sees the leader: {sa}");
    assert_eq!(sb["holder_id"], leader_id, "node b sees the leader: {sb}");
    assert_eq!(sa["epoch"], sb["epoch"]);
    for log in [a.log(), b.log()] {
        assert!(!log.contains("ERROR"), "a node logged an error:\n{log}");
    }

    // A clean stop of the leader releases the lease: the other takes over without the TTL.
    let (leader, follower) = if sa["role"] == "leader" { (a, b) } else { (b, a) };
    let old_epoch = sa["epoch"].as_i64().expect("an epoch");
    leader.stop();
    follower
        .wait_for_role("leader", std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    let after = status(&follower);
    assert!(
        after["epoch"].as_i64().expect("an epoch") > old_epoch,
        "a new leader has a new epoch: {after}"
    );
}
