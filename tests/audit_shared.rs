//! The shared audit trail: two nodes on one database, each with its own audit directory (two
//! machines, as far as they can tell). `autonomy audit query` asked of either node shows both
//! nodes' events. An event a node writes while it cannot reach the database (its quorum loss)
//! stays in its local file, reaches the shared trail once the database is back, and a
//! restarted node re-shipping its whole file duplicates nothing.

use std::{net::SocketAddr, time::Duration};

use autonomy_lab as common;
use common::{cli::Cli, lab::Lab, node::Node, relay::Relay, run::wait_until, sql};

/// The ids of the events `cli`'s node answers with, of `event_type` by `node_id`.
fn ids_seen(cli: &Cli, event_type: &str, node_id: &str) -> Vec<String> {
    let run = cli.run_ok(&["audit", "query", "--event-type", event_type, "--output", "json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
    events
        .iter()
        .filter(|event| event["node_id"] == node_id)
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids of `event_type` in a node's own audit file.
fn ids_in_file(path: &std::path::Path, event_type: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["type"] == event_type)
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_node_answers_with_every_nodes_events_also_those_written_during_a_quorum_loss() {
    let lab = common::or_skip!(Lab::start_or_skip("audit-shared"));
    let _db = lab.load(common::lab::VAL15_SQL);
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], 0)), lab.pg.port()).unwrap();
    let through_relay = lab
        .url()
        .replace(&format!(":{}/", lab.pg.port()), &format!(":{}/", relay.addr.port()));

    let mut spec_a = lab.node_spec("aud-a", false);
    spec_a.database_url = through_relay;
    spec_a.audit_dir = lab.scratch.path().join("audit-a");
    spec_a.extra_args.extend(["--lease-ttl-ms", "2000"].map(str::to_owned));
    let mut spec_b = lab.node_spec("aud-b", false);
    spec_b.audit_dir = lab.scratch.path().join("audit-b");
    spec_b.extra_args.extend(["--lease-ttl-ms", "2000"].map(str::to_owned));
    let a = Node::start_leader(spec_a.clone()).unwrap_or_else(|e| panic!("{e}"));
    let b = Node::start(spec_b).unwrap_or_else(|e| panic!("{e}"));
    let (on_a, on_b) = (Cli::for_server(&a.url), Cli::for_server(&b.url));

    // A's backup, asked of B: B's machine has no file of A's.
    on_a.run_ok(&["ha", "backup", "create"]);
    let file_a = lab.scratch.path().join("audit-a").join("aud-a.jsonl");
    let created = ids_in_file(&file_a, "ha.backup.created");
    assert_eq!(created.len(), 1, "A recorded no backup");
    let seen = wait_until(Duration::from_secs(15), || {
        Some(ids_seen(&on_b, "ha.backup.created", "aud-a")).filter(|ids| *ids == created)
    });
    assert!(seen.is_some(), "B never showed A's backup event {created:?}");
    let offline =
        Cli::for_server(&b.url).run_ok(&["audit", "query", "--audit-dir", spec_a.audit_dir.to_str().unwrap()]);
    assert!(
        offline.stdout.contains("ha.backup.created") && !offline.stdout.contains("aud-b"),
        "--audit-dir reads that directory only:\n{offline}"
    );

    // A loses the database: its quorum-loss event exists only in its own file meanwhile.
    relay.cut();
    let lost = wait_until(Duration::from_secs(20), || {
        Some(ids_in_file(&file_a, "ha.quorum.lost")).filter(|ids| !ids.is_empty())
    })
    .expect("A never recorded losing the database")
    .0;
    let before_heal = ids_seen(&on_b, "ha.quorum.lost", "aud-a");
    assert!(
        before_heal.iter().all(|id| !lost.contains(id)),
        "B showed A's quorum loss while A could not reach the database"
    );
    relay.heal();
    let arrived = wait_until(Duration::from_secs(20), || {
        let ids = ids_seen(&on_b, "ha.quorum.lost", "aud-a");
        lost.iter().all(|id| ids.contains(id)).then_some(ids)
    });
    assert!(
        arrived.is_some(),
        "A's quorum-loss events {lost:?} never reached the shared trail"
    );

    // A restarted node ships its whole file again: nothing is duplicated.
    drop(a);
    let a = Node::start(spec_a).unwrap_or_else(|e| panic!("{e}"));
    let lines = std::fs::read_to_string(&file_a).unwrap().lines().count();
    let mut db = sql::connect(&lab.url());
    let shipped = wait_until(Duration::from_secs(15), || {
        let row = db
            .query_one(
                "SELECT count(*), count(DISTINCT id) FROM autonomy_ha.audit_events WHERE node_id = 'aud-a'",
                &[],
            )
            .unwrap();
        let (all, distinct): (i64, i64) = (row.get(0), row.get(1));
        (all as usize >= lines).then_some((all, distinct))
    });
    let ((all, distinct), _) = shipped.expect("A's restarted node did not ship its file");
    assert_eq!(all, distinct, "an event id is in the shared trail twice");
    drop(a);
}
