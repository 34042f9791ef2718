//! The S3 store end to end: real nodes back up to a real S3 server (s3s-fs on loopback), and a
//! node on another backup directory — another machine, as far as it can tell — lists, drills
//! and restores what the first one made. Bad store settings stop a node at start.

use autonomy_lab as common;

use common::{cli::Cli, lab::Lab, node::Node, relay::Relay, s3::S3Server, sql};

#[test]
fn a_backup_in_the_bucket_is_listed_drilled_and_restored_by_another_node() {
    let lab = common::or_skip!(Lab::start_or_skip("s3-shared"));
    let server = common::or_skip!(S3Server::start_or_skip(&lab.scratch.path().join("s3"), "s3-shared"));
    let mut db = lab.load(common::lab::VAL15_SQL);

    let first = Node::start_leader(lab.node_spec("s3-n1", false).with_s3(&server, "cluster-a/"))
        .unwrap_or_else(|e| panic!("{e}"));
    let created = Cli::for_server(&first.url).run_ok(&["ha", "backup", "create"]);
    let id = created.field("backup_id").expect("a backup id");
    let archive = server.object_path(&format!("cluster-a/{id}.dump"));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(server.object_path(&format!("cluster-a/{id}.json"))).expect("the manifest is in the bucket"),
    )
    .unwrap();
    assert_eq!(manifest["storage"]["kind"], "s3", "{manifest}");
    assert!(archive.is_file(), "the archive is in the bucket");
    assert!(
        !lab.scratch.path().join("backups").join(format!("{id}.dump")).exists(),
        "the archive was written to the local directory too"
    );
    drop(first);

    // Another node, another local directory: it knows the backup only through the bucket.
    let mut spec = lab.node_spec("s3-n2", true).with_s3(&server, "cluster-a/");
    spec.backup_dir = lab.scratch.path().join("elsewhere");
    let second = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&second.url);
    let listed = cli.run_ok(&["ha", "backup", "list"]);
    assert!(
        listed.stdout.contains(&id),
        "the other node's backup is not listed:\n{listed}"
    );
    let drilled = cli.run_ok(&["ha", "backup", "verify", &id]);
    assert_eq!(drilled.field("outcome").as_deref(), Some("proven"), "{drilled}");

    let before = sql::fingerprint(&mut db);
    db.batch_execute("UPDATE val15_small SET payload = 'after the backup'")
        .unwrap();
    let restored = cli.run_ok(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(restored.field("proof").as_deref(), Some("proven"), "{restored}");
    sql::assert_still(&lab.url(), &before, "the restore is not the backup");
}

#[test]
fn a_wrong_secret_or_bucket_stops_the_node_at_start_naming_the_setting() {
    let lab = common::or_skip!(Lab::start_or_skip("s3-settings"));
    let server = common::or_skip!(S3Server::start_or_skip(&lab.scratch.path().join("s3"), "s3-settings"));
    let mut wrong_secret = lab.node_spec("s3-bad", false).with_s3(&server, "");
    wrong_secret.env.retain(|(name, _)| name != "AWS_SECRET_ACCESS_KEY");
    wrong_secret
        .env
        .push(("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()));
    let error = Node::start(wrong_secret)
        .err()
        .expect("a node with a wrong secret started");
    assert!(
        error.contains("exited (exit status: 2)"),
        "the exit is not the usage exit 2: {error}"
    );
    let log = std::fs::read_to_string(lab.scratch.path().join("s3-bad.log")).unwrap();
    assert!(log.contains("--s3-bucket") && log.contains("403"), "{log}");
    assert!(
        !log.contains(&server.secret_key) && !log.contains("not-the-secret"),
        "a secret is in the log:\n{log}"
    );
}

#[test]
fn an_s3_outage_mid_upload_fails_the_backup_publishes_nothing_and_the_next_backup_works() {
    let lab = common::or_skip!(Lab::start_or_skip("s3-outage"));
    let mut server = common::or_skip!(S3Server::start_or_skip(&lab.scratch.path().join("s3"), "s3-outage"));
    let mut db = sql::connect(&lab.url());
    sql::load_big_table(&mut db, 64);
    let node =
        Node::start_leader(lab.node_spec("s3-out", false).with_s3(&server, "")).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let running = {
        let cli = cli.clone();
        std::thread::spawn(move || cli.run(&["ha", "backup", "create"]))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !server.uploads_in_progress().iter().any(|name| name.contains(".part-")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no part of the archive was ever uploaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server.kill();
    let failed = running.join().expect("the backup call returns");
    assert!(
        !failed.success(),
        "a backup with the S3 server gone succeeded:\n{failed}"
    );
    assert!(failed.stderr.contains("repository I/O failed on s3://"), "{failed}");
    assert!(
        failed.elapsed_ms < 60_000,
        "the failure took {} ms: retries are not bounded",
        failed.elapsed_ms
    );

    server.restart().expect("the S3 server comes back");
    let manifests = manifests_in(&server.root.join(&server.bucket));
    assert!(
        manifests.is_empty(),
        "a manifest was published for a failed backup: {manifests:?}"
    );
    let listed = cli.run_ok(&["ha", "backup", "list"]);
    assert!(
        listed.stdout.contains("status=failed"),
        "the backup is not recorded failed:\n{listed}"
    );
    let next = cli.run_ok(&["ha", "backup", "create"]);
    let id = next.field("backup_id").expect("a backup id");
    let drilled = cli.run_ok(&["ha", "backup", "verify", &id]);
    assert_eq!(drilled.field("outcome").as_deref(), Some("proven"), "{drilled}");
}

/// The manifests in `dir` (a bucket directory of the lab's S3 server).
fn manifests_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_s3_answering_503_or_not_at_all_fails_the_backup_within_a_bound_and_publishes_nothing() {
    let lab = common::or_skip!(Lab::start_or_skip("s3-flaky"));
    let server = common::or_skip!(S3Server::start_or_skip(&lab.scratch.path().join("s3"), "s3-flaky"));
    let port: u16 = server.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let relay = Relay::start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), port).unwrap();
    let mut spec = lab.node_spec("s3-flaky", false).with_s3(&server, "flaky/");
    let endpoint = spec.extra_args.iter().position(|arg| arg == "--s3-endpoint").unwrap() + 1;
    spec.extra_args[endpoint] = format!("http://{}", relay.addr);
    spec.extra_args.extend(["--s3-timeout-ms", "2000"].map(str::to_owned));
    let node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let bucket = server.root.join(&server.bucket).join("flaky");

    for (fault, says) in [("503", "503"), ("no answer", "after 4 retries")] {
        let mut published = manifests_in(&bucket);
        match fault {
            "503" => relay.answer_unavailable(),
            _ => relay.cut(),
        }
        let failed = cli.run(&["ha", "backup", "create"]);
        assert_eq!(failed.exit_code, Some(8), "{fault}: {failed}");
        assert!(
            failed.stderr.contains("repository I/O failed on s3://") && failed.stderr.contains(says),
            "{fault}: {failed}"
        );
        assert!(
            failed.elapsed_ms < 90_000,
            "{fault}: the failure took {} ms: retries are not bounded",
            failed.elapsed_ms
        );
        relay.heal();
        assert_eq!(
            manifests_in(&bucket),
            published,
            "{fault}: a failed backup was published"
        );
        let next = cli.run_ok(&["ha", "backup", "create"]);
        published.push(format!("{}.json", next.field("backup_id").expect("a backup id")));
        let mut now = manifests_in(&bucket);
        now.sort();
        published.sort();
        assert_eq!(now, published, "{fault}: the next backup is not the one published");
    }
}

#[rstest::rstest]
fn a_truncated_or_flipped_archive_object_is_refused_before_the_database_is_touched(
    #[values("truncated", "flipped")] damage: &str,
) {
    let label = format!("s3-{damage}");
    let lab = common::or_skip!(Lab::start_or_skip(&label));
    let server = common::or_skip!(S3Server::start_or_skip(&lab.scratch.path().join("s3"), &label));
    let mut db = lab.load(common::lab::VAL15_SQL);
    let node =
        Node::start_leader(lab.node_spec("s3-trunc", true).with_s3(&server, "")).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let id = cli
        .run_ok(&["ha", "backup", "create"])
        .field("backup_id")
        .expect("a backup id");
    db.batch_execute("UPDATE val15_small SET payload = 'after the backup'")
        .unwrap();
    let before = sql::fingerprint(&mut db);
    let archive = server.object_path(&format!("{id}.dump"));
    let length = std::fs::metadata(&archive).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&archive)
        .unwrap();
    if damage == "truncated" {
        file.set_len(length / 2).unwrap();
    } else {
        use std::os::unix::fs::FileExt;
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, length / 2).unwrap();
        file.write_all_at(&[byte[0] ^ 0x01], length / 2).unwrap();
    }

    let restored = cli.run(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(
        restored.exit_code,
        Some(7),
        "a {damage} archive is an integrity failure:\n{restored}"
    );
    assert!(restored.stderr.contains("does not match its manifest"), "{restored}");
    let drilled = cli.run(&["ha", "backup", "verify", &id]);
    assert_eq!(drilled.field("outcome").as_deref(), Some("differences"), "{drilled}");
    assert_eq!(
        before.diff(&sql::fingerprint(&mut db)),
        Vec::<String>::new(),
        "the database was touched"
    );
}

/// `ha backup reindex` rebuilds a lost inventory from the store's manifests, on either store,
/// and names (never touches) what another system wrote into the store.
#[rstest::rstest]
fn reindex_rebuilds_the_inventory_and_names_foreign_objects(#[values(false, true)] on_s3: bool) {
    let lab = common::or_skip!(Lab::start_or_skip("store-reindex"));
    let server = match on_s3 {
        true => Some(common::or_skip!(S3Server::start_or_skip(
            &lab.scratch.path().join("s3"),
            "store-reindex"
        ))),
        false => None,
    };
    let mut db = lab.load(common::lab::VAL15_SQL);
    let spec = lab.node_spec("reindex-n1", false);
    let spec = match &server {
        Some(server) => spec.with_s3(server, ""),
        None => spec,
    };
    let node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let id = cli
        .run_ok(&["ha", "backup", "create"])
        .field("backup_id")
        .expect("a backup id");
    let foreign = match &server {
        Some(server) => server.object_path("notes-from-another-tool.txt"),
        None => lab.scratch.path().join("backups").join("notes-from-another-tool.txt"),
    };
    std::fs::write(&foreign, b"not a backup").unwrap();
    db.batch_execute("DELETE FROM autonomy_ha.backup_inventory").unwrap();

    let reindexed = cli.run_ok(&["ha", "backup", "reindex"]);
    assert!(
        reindexed.stdout.contains("reindexed manifests=1 added=1"),
        "{reindexed}"
    );
    assert!(
        reindexed.stdout.contains("foreign \"notes-from-another-tool.txt\""),
        "the foreign object is not named:\n{reindexed}"
    );
    assert!(foreign.exists(), "the foreign object was removed");
    let listed = cli.run_ok(&["ha", "backup", "list"]);
    assert!(
        listed.stdout.contains(&id),
        "the reindexed backup is not listed:\n{listed}"
    );
    let again = cli.run_ok(&["ha", "backup", "reindex"]);
    assert!(
        again.stdout.contains("added=0"),
        "a second reindex added rows again:\n{again}"
    );
}
