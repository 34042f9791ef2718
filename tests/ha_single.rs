//! Nodes on one database: schema creation does not collide, exactly one node leads (of two or
//! of three), a lost lease session ends leadership at once, and leadership moves on release.

use autonomy_lab as common;

use std::time::{Duration, Instant};

use common::{lab::Lab, node::Node, sql, LAB_TOKEN};

fn status(node: &Node) -> serde_json::Value {
    autonomy::client::NodeClient::new(&node.url, Some(LAB_TOKEN.into()))
        .get("/v1/ha/status")
        .unwrap_or_else(|e| panic!("status of {}: {e}\nlog:\n{}", node.spec.node_id, node.log()))
}

/// Two nodes started at the same moment on an empty database both come up (the schema is
/// created once, under a lock), and exactly one of them leads.
#[test]
fn two_nodes_starting_at_once_elect_exactly_one_leader() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("ha-single"));
    let spec = |node_id: &str| lab.node_spec(node_id, false);
    let mut a = Node::spawn(spec("node-a")).expect("node a starts");
    let mut b = Node::spawn(spec("node-b")).expect("node b starts");
    a.wait_until_listening().unwrap_or_else(|e| panic!("{e}"));
    b.wait_until_listening().unwrap_or_else(|e| panic!("{e}"));

    let all = settled(&[&a, &b], 0);
    let (sa, sb) = (&all[0], &all[1]);
    let leaders: Vec<_> = [sa, sb].into_iter().filter(|s| s["role"] == "leader").collect();
    let leader_id = leaders[0]["node_id"].clone();
    assert_eq!(sa["holder_id"], leader_id, "node a sees the leader: {sa}");
    assert_eq!(sb["holder_id"], leader_id, "node b sees the leader: {sb}");
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

/// Polls every node until exactly one leads and all agree on holder and an epoch above
/// `past_epoch`; returns the statuses. Panics with every node's log after 30 s.
fn settled(nodes: &[&Node], past_epoch: i64) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all: Vec<serde_json::Value> = nodes.iter().map(|n| status(n)).collect();
        let leaders = all.iter().filter(|s| s["role"] == "leader").count();
        let agree = all
            .windows(2)
            .all(|w| (&w[0]["holder_id"], &w[0]["epoch"]) == (&w[1]["holder_id"], &w[1]["epoch"]));
        let newer = all.iter().all(|s| s["epoch"].as_i64().is_some_and(|e| e > past_epoch));
        if leaders == 1 && agree && newer && all.iter().all(|s| s["role"] != "candidate") {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "no single agreed leader past epoch {past_epoch} after 30 s: {all:#?}\nlogs:\n{}",
            nodes.iter().map(|n| n.log()).collect::<Vec<_>>().join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The election is not limited to two nodes: of three, one leads; killed, exactly one of the
/// other two takes over at a higher epoch and the third follows it.
#[test]
fn three_nodes_elect_one_leader_and_one_successor() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("ha-three"));
    let mut nodes: Vec<Node> = ["node-1", "node-2", "node-3"]
        .iter()
        .map(|id| Node::spawn(lab.node_spec(id, false)).expect("the node starts"))
        .collect();
    for node in &mut nodes {
        node.wait_until_listening().unwrap_or_else(|e| panic!("{e}"));
    }
    let before = settled(&nodes.iter().collect::<Vec<_>>(), 0);
    let leader = before.iter().position(|s| s["role"] == "leader").expect("a leader");
    let epoch = before[leader]["epoch"].as_i64().expect("an epoch");

    let mut killed = nodes.remove(leader);
    killed.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(
        killed.wait_for_exit(Duration::from_secs(10)),
        "the leader exits on SIGKILL"
    );
    let after = settled(&nodes.iter().collect::<Vec<_>>(), epoch);
    let new_epoch = after[0]["epoch"].as_i64().expect("an epoch");
    assert!(new_epoch > epoch, "a higher epoch after the takeover: {after:#?}");
    assert_ne!(after[0]["holder_id"], before[leader]["node_id"], "{after:#?}");
}

/// When the leader's lease session ends under it (here: terminated by an administrator), the
/// node steps down at once and audits why; then exactly one node leads at a higher epoch.
#[test]
fn a_lost_lease_session_ends_leadership_and_is_audited() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("ha-session-lost"));
    let a = lab.leader("node-a", false);
    let b = Node::start(lab.node_spec("node-b", false)).unwrap_or_else(|e| panic!("{e}"));
    let before = settled(&[&a, &b], 0);
    assert_eq!(before[0]["holder_id"], "node-a");
    let epoch = before[0]["epoch"].as_i64().expect("an epoch");

    let mut db = sql::connect(&lab.url());
    let terminated: i64 = db
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE application_name = 'autonomy-ha:node-a:lease'",
            &[],
        )
        .expect("terminate the lease session")
        .get(0);
    assert_eq!(terminated, 1, "node-a has exactly one lease session");

    // The status may show the old term for a moment: wait for the next one.
    let after = settled(&[&a, &b], epoch);
    assert!(after[0]["epoch"].as_i64().expect("an epoch") > epoch, "{after:#?}");
    let query = autonomy::audit::AuditQuery {
        event_type: Some("ha.leader.stepped_down".into()),
        since: None,
    };
    let events = autonomy::audit::query(&lab.audit_dir(), &query).expect("the audit store reads");
    assert!(
        events.iter().any(|e| e.node_id == "node-a"
            && e.details["reason"] == "the lease session ended"
            && e.details["epoch"] == epoch),
        "node-a audited its step-down: {events:#?}\nlog:\n{}",
        a.log()
    );
}
