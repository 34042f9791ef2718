//! The lease on etcd, end to end: real nodes on a real three-member etcd cluster and a real
//! database. One leader of three, a clean stop hands over through the revoke and the watch
//! (no TTL wait), a SIGKILL waits for the TTL, the fence in the database turns away the old
//! epoch, member keys list every node, and a start with unusable etcd settings exits 2 naming
//! the flag, with nothing written, and the database lost under the etcd lease blocks writes
//! until it is back.

use std::time::{Duration, Instant};

use autonomy_lab as common;
use common::{etcd::EtcdCluster, lab::Lab, node::Node, sql, LAB_TOKEN};
use nix::sys::signal::Signal;

/// The lease TTL of these tests (whole seconds, as etcd counts).
const TTL_MS: u64 = 3_000;

fn status(node: &Node) -> serde_json::Value {
    autonomy::client::NodeClient::new(&node.url, Some(LAB_TOKEN.into()))
        .get("/v1/ha/status")
        .unwrap_or_else(|e| panic!("status of {}: {e}\nlog:\n{}", node.spec.node_id, node.log()))
}

/// The flags that put a node's lease on `etcd` under `prefix`.
fn on_etcd(etcd: &EtcdCluster, prefix: &str) -> Vec<String> {
    vec![
        "--lease-store".into(),
        "etcd".into(),
        "--etcd-endpoints".into(),
        etcd.endpoints().join(","),
        "--etcd-prefix".into(),
        prefix.into(),
        "--lease-ttl-ms".into(),
        TTL_MS.to_string(),
    ]
}

fn start_nodes(lab: &Lab, etcd: &EtcdCluster, prefix: &str, ids: &[&str]) -> Vec<Node> {
    let mut nodes: Vec<Node> = ids
        .iter()
        .map(|id| {
            let mut spec = lab.node_spec(id, false);
            spec.extra_args = on_etcd(etcd, prefix);
            Node::spawn(spec).expect("the node starts")
        })
        .collect();
    for node in &mut nodes {
        node.wait_until_listening()
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", node.log()));
    }
    nodes
}

/// Polls until exactly one node leads and all agree on holder and an epoch above `past_epoch`.
fn settled(nodes: &[&Node], past_epoch: i64, limit: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        let all: Vec<serde_json::Value> = nodes.iter().map(|n| status(n)).collect();
        let leaders = all.iter().filter(|s| s["role"] == "leader").count();
        let agree = all
            .windows(2)
            .all(|w| (&w[0]["holder_id"], &w[0]["epoch"]) == (&w[1]["holder_id"], &w[1]["epoch"]));
        let newer = all.iter().all(|s| s["epoch"].as_i64().is_some_and(|e| e > past_epoch));
        if leaders == 1 && agree && newer {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "no single agreed leader past epoch {past_epoch} within {limit:?}: {all:#?}\nlogs:\n{}",
            nodes.iter().map(|n| n.log()).collect::<Vec<_>>().join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_rollout(node: &Node, name: &str) -> Result<serde_json::Value, autonomy::client::ClientError> {
    autonomy::client::NodeClient::new(&node.url, Some(LAB_TOKEN.into()))
        .post("/v1/rollouts", &serde_json::json!({ "name": name, "spec": {} }))
}

#[test]
fn three_nodes_on_etcd_elect_one_leader_hand_over_on_sigterm_at_once_and_after_sigkill_within_the_ttl() {
    let lab = common::or_skip!(Lab::start_or_skip("etcd-lease"));
    let etcd = common::or_skip!(EtcdCluster::start_or_skip(
        &lab.scratch.path().join("etcd"),
        "etcd-lease",
        3
    ));
    let prefix = "/autonomy-test/three/";
    let mut nodes = start_nodes(&lab, &etcd, prefix, &["node-1", "node-2", "node-3"]);
    let before = settled(&nodes.iter().collect::<Vec<_>>(), 0, Duration::from_secs(30));
    let leader = before.iter().position(|s| s["role"] == "leader").expect("a leader");
    let epoch = before[leader]["epoch"].as_i64().expect("an epoch");
    write_rollout(&nodes[leader], "on-etcd-1").unwrap_or_else(|e| panic!("the leader writes: {e}"));

    // Every node has its member key, and the leader key names the leader at its epoch.
    let members = etcd.etcdctl(&["get", "--prefix", "--keys-only", &format!("{prefix}members/")]);
    let listed = String::from_utf8_lossy(&members.stdout);
    for id in ["node-1", "node-2", "node-3"] {
        assert!(
            listed.contains(&format!("{prefix}members/{id}")),
            "{id} has a member key: {listed}"
        );
    }
    let key = etcd.etcdctl(&["get", "--print-value-only", &format!("{prefix}leader")]);
    let key: serde_json::Value = serde_json::from_slice(&key.stdout).expect("the leader key is JSON");
    assert_eq!(key["holder_id"], before[leader]["node_id"], "{key}");
    assert_eq!(key["epoch"], epoch, "{key}");

    // The status names the store, its prefix and every endpoint's health.
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        let store = status(&nodes[0])["lease_store"].clone();
        let healthy = store["endpoints"]
            .as_array()
            .map_or(0, |e| e.iter().filter(|e| e["healthy"] == true).count());
        if healthy == 3 || Instant::now() > deadline {
            break store;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(store["kind"], "etcd", "{store}");
    assert_eq!(store["prefix"], prefix, "{store}");
    let endpoints = store["endpoints"].as_array().cloned().unwrap_or_default();
    assert_eq!(endpoints.len(), 3, "{store}");
    assert!(
        endpoints
            .iter()
            .all(|e| e["healthy"] == true && e["cluster_id"].is_string()),
        "{store}"
    );

    // SIGTERM: the lease is revoked, the followers' watch fires, one takes over well inside
    // the TTL (waiting for the TTL would take at least 3 s).
    let stopped = nodes.remove(leader);
    let started = Instant::now();
    stopped.signal(Signal::SIGTERM);
    let after = settled(&nodes.iter().collect::<Vec<_>>(), epoch, Duration::from_secs(10));
    let handover = started.elapsed();
    assert!(
        handover < Duration::from_millis(TTL_MS * 2 / 3),
        "a clean stop must hand over through the revoke, not the TTL: {handover:?}\n{after:#?}"
    );
    let second = after.iter().position(|s| s["role"] == "leader").expect("a leader");
    let second_epoch = after[second]["epoch"].as_i64().expect("an epoch");
    assert!(second_epoch > epoch, "a higher epoch: {after:#?}");
    write_rollout(&nodes[second], "on-etcd-2").unwrap_or_else(|e| panic!("the successor writes: {e}"));
    drop(stopped);

    // SIGKILL: etcd cannot see a dead process, so the TTL bounds the takeover.
    let mut killed = nodes.remove(second);
    let started = Instant::now();
    killed.signal(Signal::SIGKILL);
    assert!(
        killed.wait_for_exit(Duration::from_secs(10)),
        "the leader exits on SIGKILL"
    );
    let after = settled(
        &nodes.iter().collect::<Vec<_>>(),
        second_epoch,
        Duration::from_millis(TTL_MS * 3),
    );
    let takeover = started.elapsed();
    assert!(
        takeover < Duration::from_millis(TTL_MS * 3),
        "the takeover after a SIGKILL is bounded by the TTL: {takeover:?}\n{after:#?}"
    );

    // The database saw every term, in order, and the fence stands at the last one.
    let mut db = sql::connect(&lab.url());
    let history: Vec<(i64, String)> = db
        .query(
            "SELECT epoch, holder_id FROM autonomy_ha.lease_history ORDER BY epoch",
            &[],
        )
        .expect("the lease history reads")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let last = after.iter().find(|s| s["role"] == "leader").expect("a leader");
    assert_eq!(
        history.last().map(|(epoch, _)| *epoch),
        last["epoch"].as_i64(),
        "{history:?}"
    );
    let fence = db
        .query_one("SELECT epoch, holder_id, released FROM autonomy_ha.write_fence", &[])
        .expect("the fence reads");
    assert_eq!(fence.get::<_, i64>(0), last["epoch"].as_i64().unwrap());
    assert_eq!(
        Some(fence.get::<_, String>(1)),
        last["node_id"].as_str().map(str::to_owned)
    );
    assert!(!fence.get::<_, bool>(2), "the leader's fence is not released");
}

/// Every key under `prefix`, with its value, as etcdctl prints them.
fn keys_under(etcd: &EtcdCluster, prefix: &str) -> String {
    String::from_utf8_lossy(&etcd.etcdctl(&["get", "--prefix", prefix]).stdout).into_owned()
}

/// A start with unusable etcd settings exits 2 with a message naming the flag, and writes
/// nothing: neither under the prefix nor in the database's fence.
#[test]
fn unusable_etcd_settings_exit_2_naming_the_flag_and_change_nothing() {
    let lab = common::or_skip!(Lab::start_or_skip("etcd-bad-input"));
    let etcd = common::or_skip!(EtcdCluster::start_or_skip(
        &lab.scratch.path().join("etcd"),
        "etcd-bad-input",
        1
    ));
    let other = common::or_skip!(EtcdCluster::start_or_skip(
        &lab.scratch.path().join("other"),
        "etcd-bad-input",
        1
    ));
    // The database's schema exists and its token is set: one node ran on the row lease.
    drop(lab.leader("node-row", false));
    let foreign = "/not-autonomy/";
    assert!(etcd
        .etcdctl(&["put", &format!("{foreign}config"), "someone else's"])
        .status
        .success());
    let mut db = sql::connect(&lab.url());
    let fence_before: (i64, Option<String>) = {
        let row = db
            .query_one("SELECT epoch, holder_id FROM autonomy_ha.write_fence", &[])
            .expect("the fence reads");
        (row.get(0), row.get(1))
    };
    let keys_before = keys_under(&etcd, "/");

    let serve = |extra: &[String]| {
        let backups = lab.scratch.path().join("backups");
        let audit = lab.audit_dir();
        let mut args: Vec<String> = ["ha", "serve", "--node-id", "node-bad", "--listen", "127.0.0.1:0"]
            .map(str::to_owned)
            .to_vec();
        args.extend(["--backup-dir".into(), backups.display().to_string()]);
        args.extend(["--audit-dir".into(), audit.display().to_string()]);
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::cli::Cli::for_server("http://127.0.0.1:1")
            .with_env("AUTONOMY_DATABASE_URL", &lab.url())
            .run_within(&args, Duration::from_secs(60))
    };
    let endpoints = etcd.endpoints().join(",");
    let with = |endpoints: &str, prefix: &str, ttl_ms: &str| {
        [
            "--lease-store",
            "etcd",
            "--etcd-endpoints",
            endpoints,
            "--etcd-prefix",
            prefix,
            "--lease-ttl-ms",
            ttl_ms,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let unreachable = format!("http://127.0.0.1:{}", common::backend::free_port());
    let mixed = format!("{endpoints},{}", other.endpoints().join(","));
    let cases: [(&str, Vec<String>, &[&str]); 4] = [
        (
            "unreachable endpoints",
            with(&unreachable, "/autonomy/app/", "5000"),
            &["--etcd-endpoints", "no member answered", &unreachable],
        ),
        (
            "an endpoint list mixing two clusters",
            with(&mixed, "/autonomy/app/", "5000"),
            &["--etcd-endpoints mixes etcd clusters"],
        ),
        (
            "a prefix written by something else",
            with(&endpoints, foreign, "5000"),
            &["--etcd-prefix /not-autonomy/", "/not-autonomy/config"],
        ),
        (
            "a TTL below etcd's minimum",
            with(&endpoints, "/autonomy/app/", "1000"),
            &["--lease-ttl-ms 1000", "at least 2 s"],
        ),
    ];
    for (name, args, expected) in cases {
        let run = serve(&args);
        assert_eq!(run.exit_code, Some(2), "{name}: exit 2\n{run}");
        for words in expected {
            assert!(run.stderr.contains(words), "{name}: the message says `{words}`\n{run}");
        }
        assert_eq!(keys_under(&etcd, "/"), keys_before, "{name}: nothing written to etcd");
        let row = db
            .query_one("SELECT epoch, holder_id FROM autonomy_ha.write_fence", &[])
            .expect("the fence reads");
        assert_eq!((row.get(0), row.get(1)), fence_before, "{name}: the fence unchanged");
    }
}

/// A database whose nodes were started on different lease stores (a half-done switch from the
/// row to etcd) has two nodes that each believe they lead, but never two writers: every
/// acquisition, on either store, raises the database's write fence, and every write checks it.
/// In commit order the epochs of the stored rows never fall, and each epoch's rows come from
/// the node that acquired it.
#[test]
fn nodes_on_different_lease_stores_never_interleave_their_writes() {
    let lab = common::or_skip!(Lab::start_or_skip("etcd-mixed"));
    let etcd = common::or_skip!(EtcdCluster::start_or_skip(
        &lab.scratch.path().join("etcd"),
        "etcd-mixed",
        1
    ));
    let on_row = lab.leader("node-row", false);
    let mut spec = lab.node_spec("node-etcd", false);
    spec.extra_args = on_etcd(&etcd, "/autonomy-test/mixed/");
    let on_etcd_node = Node::start(spec).unwrap_or_else(|e| panic!("{e}"));

    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(4) {
        for node in [&on_row, &on_etcd_node] {
            let _ = write_rollout(node, &format!("mixed-{n:04}"));
            n += 1;
        }
    }
    let mut db = sql::connect(&lab.url());
    let holders: std::collections::BTreeMap<i64, String> = db
        .query("SELECT epoch, holder_id FROM autonomy_ha.lease_history", &[])
        .expect("the lease history reads")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let rows: Vec<(i64, i64, String)> = db
        .query(
            "SELECT id, epoch, leader_id FROM autonomy_app.rollouts ORDER BY id",
            &[],
        )
        .expect("the rollouts read")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let logs = || format!("{}\n---\n{}", on_row.log(), on_etcd_node.log());
    assert!(!rows.is_empty(), "some write landed\n{}", logs());
    for pair in rows.windows(2) {
        assert!(
            pair[1].1 >= pair[0].1,
            "the epoch fell in commit order: {pair:?}\n{rows:?}"
        );
    }
    for (id, epoch, leader) in &rows {
        assert_eq!(
            holders.get(epoch),
            Some(leader),
            "row {id} at epoch {epoch} by {leader}: {holders:?}"
        );
    }
}

/// With etcd's auth on, a node with the user's password leads, and never writes the password
/// to its log; one with a wrong password exits 2 at start naming --etcd-user, without the
/// password in its message.
#[test]
fn etcd_auth_takes_the_password_from_the_environment_and_never_shows_it() {
    let lab = common::or_skip!(Lab::start_or_skip("etcd-auth"));
    let etcd = common::or_skip!(EtcdCluster::start_or_skip(
        &lab.scratch.path().join("etcd"),
        "etcd-auth",
        1
    ));
    let password = "pw-Zq8-never-shown";
    for args in [
        vec!["user", "add", &format!("root:{password}")[..]],
        vec!["auth", "enable"],
    ] {
        let done = etcd.etcdctl(&args);
        assert!(done.status.success(), "etcdctl {args:?}: {done:?}");
    }

    let mut spec = lab.node_spec("node-auth", false);
    spec.extra_args = on_etcd(&etcd, "/autonomy-test/auth/");
    spec.extra_args.extend(["--etcd-user".into(), "root".into()]);
    spec.env.push(("AUTONOMY_ETCD_PASSWORD".into(), password.into()));
    let node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    write_rollout(&node, "with-auth").unwrap_or_else(|e| panic!("the leader writes: {e}\n{}", node.log()));
    let log = node.log();
    drop(node);
    assert!(!log.contains(password), "the password is in the node's log:\n{log}");

    let backups = lab.scratch.path().join("backups").display().to_string();
    let audit = lab.audit_dir().display().to_string();
    let endpoints = etcd.endpoints().join(",");
    let refused = common::cli::Cli::for_server("http://127.0.0.1:1")
        .with_env("AUTONOMY_DATABASE_URL", &lab.url())
        .with_env("AUTONOMY_ETCD_PASSWORD", "not-the-password")
        .run_within(
            &[
                "ha",
                "serve",
                "--node-id",
                "node-bad-auth",
                "--listen",
                "127.0.0.1:0",
                "--backup-dir",
                &backups,
                "--audit-dir",
                &audit,
                "--lease-store",
                "etcd",
                "--etcd-endpoints",
                &endpoints,
                "--etcd-prefix",
                "/autonomy-test/auth/",
                "--etcd-user",
                "root",
            ],
            Duration::from_secs(60),
        );
    assert_eq!(refused.exit_code, Some(2), "{refused}");
    assert!(refused.stderr.contains("--etcd-user root"), "{refused}");
    assert!(!refused.stderr.contains("not-the-password"), "{refused}");
    assert!(
        refused.elapsed_ms < 10_000,
        "a refused password is not waited on: {refused}"
    );
}

/// With the lease on etcd, losing the database still means "no leader, writes blocked": the
/// lease session holds a database connection for the fence, so every node steps down and
/// refuses writes with quorum_lost; when the database is back, one node leads again at a
/// higher epoch and writes resume.
#[test]
fn the_database_lost_under_the_etcd_lease_blocks_writes_until_it_is_back() {
    let mut lab = common::or_skip!(Lab::start_or_skip("etcd-db-outage"));
    let etcd = common::or_skip!(EtcdCluster::start_or_skip(
        &lab.scratch.path().join("etcd"),
        "etcd-db-outage",
        1
    ));
    let nodes = start_nodes(&lab, &etcd, "/autonomy-test/db-outage/", &["node-1", "node-2"]);
    let before = settled(&nodes.iter().collect::<Vec<_>>(), 0, Duration::from_secs(30));
    let epoch = before[0]["epoch"].as_i64().expect("an epoch");

    lab.pg.stop_abruptly().unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all: Vec<serde_json::Value> = nodes.iter().map(status).collect();
        if all
            .iter()
            .all(|s| s["db_reachable"] == false && s["can_accept_protected_writes"] == false)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not report the database lost: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for node in &nodes {
        match write_rollout(node, &format!("during-outage-{}", node.spec.node_id)) {
            Err(autonomy::client::ClientError::Api { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (503, "quorum_lost"), "{}", node.spec.node_id)
            }
            other => panic!("a write during the outage must be refused: {other:?}"),
        }
    }

    lab.pg.start_again().unwrap_or_else(|e| panic!("{e}"));
    let after = settled(&nodes.iter().collect::<Vec<_>>(), epoch, Duration::from_secs(30));
    let leader = after.iter().position(|s| s["role"] == "leader").expect("a leader");
    write_rollout(&nodes[leader], "after-outage").unwrap_or_else(|e| panic!("writes resume: {e}"));
}
