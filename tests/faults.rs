//! Faults and bad input: every failure tells the truth.
//!
//! Each test reproduces one thing an independent fault and bad-input probe did to the system
//! (`dNN_…`: its ten defects; `mNN_…`: its minor findings) and asserts what an operator must
//! see: the operation refused or reported with its cause and its documented exit code, nothing
//! changed that was said not to change, and the truth recoverable after a restart. Each one
//! failed before its fix; docs/OPERATIONS.md says what an operator sees after each fault.

use autonomy_lab as common;
#[path = "faults/fixture.rs"]
mod fixture;

use std::{io::Write, thread::JoinHandle, time::Duration};

use common::{
    cli::{Cli, CliRun},
    lab::Lab,
    node::Node,
    sql, LAB_TOKEN,
};
use fixture::*;
use nix::sys::signal::Signal;

// ---------------------------------------------------------------------------------------------
// Defect 1: a restore killed mid-way is never without a record
// ---------------------------------------------------------------------------------------------

/// A large database backed up and changed, and a restore of the backup under way (in
/// maintenance mode, by node `label`): the lab, the backup's id and the restoring CLI call;
/// None when no backend can run.
fn restoring_after_a_change(label: &str) -> Option<(Setup, String, JoinHandle<CliRun>)> {
    let mut lab = Setup::start(label, Fixture::Big(60), true)?;
    let id = lab.backup();
    lab.db
        .batch_execute("UPDATE marker SET note = 'after the backup'")
        .expect("a change");
    let restoring = lab.restore_in_background(&id);
    Some((lab, id, restoring))
}

/// The id of the one restore the audit says started.
#[track_caller]
fn the_restore_started(audit_dir: &std::path::Path) -> String {
    let started = events(audit_dir, "ha.backup.restore_started");
    assert_eq!(started.len(), 1, "the restore's start is in the audit: {started:?}");
    started[0].details["restore_id"]
        .as_str()
        .expect("a restore id")
        .to_owned()
}

#[test]
fn d01_a_restore_killed_before_its_commit_changes_nothing_and_says_so_after_a_restart() {
    let (mut lab, id, restoring) = autonomy_lab::or_skip!(restoring_after_a_change("faults-d01a"));
    wait_for_sql(
        &mut lab.db,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'psql' AND datname = current_database())",
        "the restore's psql session",
        Duration::from_secs(60),
    );
    lab.node.signal(Signal::SIGKILL);
    let _ = restoring.join();
    wait_for_sql(
        &mut lab.db,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'psql')",
        "the orphaned psql to end",
        Duration::from_secs(60),
    );
    assert_eq!(
        lab.note(),
        "after the backup",
        "a restore killed before its COMMIT changed the database"
    );
    let audit_dir = lab.lab.audit_dir();
    let restore_id = the_restore_started(&audit_dir);
    lab.kill_and_restart("2");
    let interrupted = events(&audit_dir, "ha.backup.restore_interrupted");
    assert!(
        interrupted
            .iter()
            .any(|e| e.details["restore_id"] == restore_id.as_str() && e.details["committed"] == false),
        "no uncommitted ha.backup.restore_interrupted for {restore_id}: {interrupted:?}"
    );
    assert_eq!(
        last_restore_outcome(&mut lab.db, &id),
        None,
        "an uncommitted restore is not in the inventory"
    );
}

#[test]
fn d01_a_restore_killed_after_its_commit_is_recognised_from_the_audit_and_the_inventory() {
    let (mut lab, id, restoring) = autonomy_lab::or_skip!(restoring_after_a_change("faults-d01b"));
    wait_for_sql(
        &mut lab.db,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                         WHERE application_name IN ('autonomy-ha:faults-d01b:proof', 'autonomy-ha:faults-d01b:baseline-reader')
                           AND state = 'active')",
        "the restore's proof reading",
        Duration::from_secs(120),
    );
    lab.node.signal(Signal::SIGKILL);
    let _ = restoring.join();
    assert_eq!(lab.note(), "backed up", "the restore had committed");
    let audit_dir = lab.lab.audit_dir();
    let restore_id = the_restore_started(&audit_dir);
    assert!(
        events(&audit_dir, "ha.backup.restored").is_empty(),
        "the killed restore cannot have recorded its outcome"
    );
    assert_eq!(
        last_restore_outcome(&mut lab.db, &id).as_deref(),
        Some("committed_unproven")
    );
    lab.kill_and_restart("2");
    let interrupted = events(&audit_dir, "ha.backup.restore_interrupted");
    assert!(
        interrupted
            .iter()
            .any(|e| e.details["restore_id"] == restore_id.as_str() && e.details["committed"] == true),
        "no committed ha.backup.restore_interrupted for {restore_id}: {interrupted:?}"
    );
    let listed = lab.cli.run(&["ha", "backup", "list"]);
    assert!(
        listed.stdout.contains("last_restore=interrupted_after_commit"),
        "{listed}"
    );
}

// ---------------------------------------------------------------------------------------------
// Defect 2: audit write failures were silent; the status says so
// ---------------------------------------------------------------------------------------------

#[test]
fn d02_an_audit_store_that_cannot_be_written_refuses_backups_and_restores() {
    if !is_root_or_skip(
        "d02_an_audit_store_that_cannot_be_written_refuses_backups_and_restores",
        "chattr +i needs root",
    ) {
        return;
    }
    let mut lab = autonomy_lab::or_skip!(Setup::start("faults-d02", Fixture::Small, true));
    let id = lab.backup();
    lab.db
        .batch_execute("UPDATE val15_small SET payload = 'after the backup' WHERE id = 1")
        .expect("a change a refused restore must keep");
    let before = sql::fingerprint(&mut lab.db);
    let files_before = std::fs::read_dir(lab.backups_dir()).unwrap().count();
    let cli = lab.cli.clone();
    {
        let _frozen = Immutable::set(&lab.lab.audit_dir().join("faults-d02.jsonl"));
        let refused = cli.run(&["ha", "backup", "create"]);
        assert_eq!(refused.exit_code, Some(11), "{refused}");
        assert!(
            refused.stderr.contains("nothing was started") && refused.stderr.contains("audit"),
            "{refused}"
        );
        let refused = cli.run(&["ha", "backup", "restore", &id, "--confirm"]);
        assert_eq!(refused.exit_code, Some(11), "{refused}");
        assert!(refused.stderr.contains("the database was not touched"), "{refused}");
        assert_eq!(
            before.diff(&sql::fingerprint(&mut lab.db)),
            Vec::<String>::new(),
            "a refused restore changed the database"
        );
        assert_eq!(
            std::fs::read_dir(lab.backups_dir()).unwrap().count(),
            files_before,
            "a refused backup wrote to the repository"
        );
        let status = cli.run(&["ha", "status"]);
        assert!(status.stdout.contains("\naudit writable=false"), "{status}");
        let json = cli.run(&["--output", "json", "ha", "status"]);
        let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("status JSON");
        assert_eq!(report["audit"]["writable"], false, "{json}");
        assert!(
            report["audit"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("faults-d02.jsonl")),
            "{json}"
        );
    }
    // Writable again: the next backup goes through and the status clears.
    lab.backup();
    let status = cli.run(&["ha", "status"]);
    assert!(!status.stdout.contains("audit writable=false"), "{status}");
}

// ---------------------------------------------------------------------------------------------
// Defect 3: a restore whose proof finds differences exited 0
// ---------------------------------------------------------------------------------------------

#[test]
fn d03_a_restore_that_does_not_reproduce_its_baseline_exits_10() {
    let mut lab = autonomy_lab::or_skip!(Setup::start("faults-d03", Fixture::Small, true));
    let id = lab.backup();
    // Whoever can write the repository can re-seal an edited manifest: the restore runs, and
    // its proof cannot reproduce what the baseline claims.
    let mut manifest: autonomy::backup::Manifest =
        serde_json::from_slice(&std::fs::read(lab.manifest_path(&id)).unwrap()).unwrap();
    manifest
        .baseline
        .as_mut()
        .unwrap()
        .tables
        .get_mut("public.val15_small")
        .expect("a table")
        .rows += 1;
    std::fs::write(lab.manifest_path(&id), autonomy::backup::manifest::seal(&manifest)).unwrap();
    let differed = lab.cli.run(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(differed.exit_code, Some(10), "{differed}");
    assert_eq!(
        differed.field("status").as_deref(),
        Some("restored_with_differences"),
        "{differed}"
    );
    assert!(
        differed.stdout.contains("difference table public.val15_small"),
        "{differed}"
    );
    assert!(differed.stderr.contains("COMMITTED"), "{differed}");
    let restored = events(&lab.lab.audit_dir(), "ha.backup.restored");
    assert_eq!(
        restored.last().expect("an outcome event").details["status"],
        "restored_with_differences"
    );
    assert_eq!(last_restore_outcome(&mut lab.db, &id).as_deref(), Some("differences"));
}

// ---------------------------------------------------------------------------------------------
// Defect 4: the seal could be stripped by downgrading the manifest
// ---------------------------------------------------------------------------------------------

#[test]
fn d04_a_downgraded_manifest_is_refused_even_with_the_flag() {
    let mut lab = autonomy_lab::or_skip!(Setup::start("faults-d04", Fixture::Small, true));
    let older = lab.backup();
    lab.db
        .batch_execute("UPDATE val15_small SET payload = 'between the backups' WHERE id = 1")
        .expect("a change");
    let newer = lab.backup();
    lab.db
        .batch_execute("UPDATE val15_small SET payload = 'live' WHERE id = 1")
        .expect("a change");
    let live = sql::fingerprint(&mut lab.db);
    // The newer manifest: version 2, no seal, the older backup's checksum and size, and the
    // older archive in place of the newer one.
    let older_manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.manifest_path(&older)).unwrap()).unwrap();
    rewrite_manifest(&lab.manifest_path(&newer), |m| {
        m["manifest_version"] = serde_json::json!(2);
        m.as_object_mut().unwrap().remove("manifest_sha256");
        m["sha256"] = older_manifest["sha256"].clone();
        m["size_bytes"] = older_manifest["size_bytes"].clone();
    });
    std::fs::copy(lab.lab.archive_path(&older), lab.lab.archive_path(&newer)).expect("the archive is swapped");
    for flags in [&["--confirm"][..], &["--confirm", "--allow-unsealed-manifest"][..]] {
        let refused = lab.cli.run(&[&["ha", "backup", "restore", &newer][..], flags].concat());
        assert_eq!(refused.exit_code, Some(7), "{refused}");
        assert!(
            refused
                .stderr
                .contains("manifest_version is `2` but the inventory recorded `3`"),
            "{refused}"
        );
        assert_eq!(
            live.diff(&sql::fingerprint(&mut lab.db)),
            Vec::<String>::new(),
            "{flags:?} changed the database"
        );
    }
}

#[test]
fn d04_an_old_unsealed_manifest_restores_only_with_the_flag() {
    let mut lab = autonomy_lab::or_skip!(Setup::start("faults-d04-old", Fixture::Small, true));
    let id = lab.backup();
    rewrite_manifest(&lab.manifest_path(&id), |m| {
        m["manifest_version"] = serde_json::json!(2);
        m.as_object_mut().unwrap().remove("manifest_sha256");
    });
    // As indexed by a release that did not record manifest versions.
    lab.db
        .execute(
            "UPDATE autonomy_ha.backup_inventory SET manifest_version = NULL WHERE backup_id = $1",
            &[&id],
        )
        .expect("the row is aged");
    lab.db
        .batch_execute("UPDATE val15_small SET payload = 'live' WHERE id = 1")
        .expect("a change");
    let live = sql::fingerprint(&mut lab.db);
    let refused = lab.cli.run(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(refused.stderr.contains("--allow-unsealed-manifest"), "{refused}");
    assert_eq!(live.diff(&sql::fingerprint(&mut lab.db)), Vec::<String>::new());
    let allowed = lab
        .cli
        .run(&["ha", "backup", "restore", &id, "--confirm", "--allow-unsealed-manifest"]);
    assert!(allowed.success(), "{allowed}");
    assert_eq!(allowed.field("proof").as_deref(), Some("proven"), "{allowed}");
}

// ---------------------------------------------------------------------------------------------
// Defect 5: a FIFO in place of an archive hung the restore
// ---------------------------------------------------------------------------------------------

#[test]
fn d05_a_fifo_in_place_of_the_archive_is_refused_at_once() {
    let mut lab = autonomy_lab::or_skip!(Setup::start("faults-d05", Fixture::Small, true));
    let id = lab.backup();
    let live = sql::fingerprint(&mut lab.db);
    mkfifo(&lab.lab.archive_path(&id));
    let refused = lab
        .cli
        .run_within(&["ha", "backup", "restore", &id, "--confirm"], Duration::from_secs(60));
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(refused.stderr.contains("is a FIFO, not a regular file"), "{refused}");
    assert_eq!(live.diff(&sql::fingerprint(&mut lab.db)), Vec::<String>::new());
    let drill = lab
        .cli
        .run_within(&["ha", "backup", "verify", &id], Duration::from_secs(60));
    assert_eq!(drill.exit_code, Some(1), "{drill}");
    assert!(
        drill.stdout.contains(&format!("difference archive {id}.dump")),
        "{drill}"
    );
    assert!(drill.stdout.contains("found `a FIFO`"), "{drill}");
    lab.backup(); // the node is not left busy
}

#[test]
fn d05_a_fifo_in_place_of_the_manifest_is_refused_and_listing_still_works() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-d05-manifest", Fixture::Small, true));
    let id = lab.backup();
    mkfifo(&lab.manifest_path(&id));
    let refused = lab
        .cli
        .run_within(&["ha", "backup", "restore", &id, "--confirm"], Duration::from_secs(60));
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(refused.stderr.contains("is a FIFO"), "{refused}");
    let listed = lab.cli.run_within(&["ha", "backup", "list"], Duration::from_secs(60));
    assert!(listed.success(), "{listed}");
    assert!(listed.stdout.contains("files=not_a_regular_file"), "{listed}");
    lab.backup();
}

// ---------------------------------------------------------------------------------------------
// Defect 6: repository write errors were reported as a pg_dump SIGPIPE
// ---------------------------------------------------------------------------------------------

#[test]
fn d06_a_full_repository_is_named_as_such() {
    if !is_root_or_skip("d06_a_full_repository_is_named_as_such", "mounting a tmpfs needs root") {
        return;
    }
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("faults-d06"));
    let mut db = sql::connect(&lab.url());
    sql::load_big_table(&mut db, 16);
    let small = Tmpfs::mount(&lab.scratch.path().join("small"), "2m").expect("a 2 MB tmpfs mounts");
    let mut spec = lab.node_spec("faults-d06", false);
    spec.backup_dir = small.0.join("backups");
    let node = Node::start_leader(spec).unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli::for_server(&node.url);
    let full = cli.run(&["ha", "backup", "create"]);
    assert_eq!(full.exit_code, Some(8), "{full}");
    assert!(full.stderr.contains("No space left on device"), "{full}");
    assert!(!full.stderr.contains("SIGPIPE"), "{full}");
    let (status, _, body) = http(
        "POST",
        &format!("{}/v1/ha/backups", node.url),
        Some(&bearer()),
        Some(b"{}".to_vec()),
    );
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("\"code\":\"repository_io\"") && body.contains("No space left on device"),
        "{body}"
    );
    assert_eq!(
        partial_archives(&small.0.join("backups")),
        Vec::<String>::new(),
        "a partial archive is left"
    );
    let listed = cli.run(&["ha", "backup", "list"]);
    assert!(
        !listed.stdout.contains("status=running") && !listed.stdout.contains("status=completed"),
        "{listed}"
    );
}

#[test]
fn d06_an_immutable_repository_is_named_as_such() {
    if !is_root_or_skip("d06_an_immutable_repository_is_named_as_such", "chattr +i needs root") {
        return;
    }
    let lab = autonomy_lab::or_skip!(Setup::start("faults-d06-eperm", Fixture::Small, false));
    {
        let _immutable = Immutable::set(&lab.backups_dir());
        let refused = lab.cli.run(&["ha", "backup", "create"]);
        assert_eq!(refused.exit_code, Some(8), "{refused}");
        assert!(
            refused.stderr.contains("repository I/O failed") && refused.stderr.contains("Operation not permitted"),
            "{refused}"
        );
    }
    lab.backup();
}

// ---------------------------------------------------------------------------------------------
// Defect 7: interrupted backups never cleared
// ---------------------------------------------------------------------------------------------

#[test]
fn d07_a_backup_killed_mid_way_is_failed_and_cleared_at_the_next_start() {
    let mut lab = autonomy_lab::or_skip!(Setup::start("faults-d07", Fixture::Big(60), false));
    let (id, running) = lab.backup_caught_writing();
    lab.node.signal(Signal::SIGKILL);
    let _ = running.join();
    assert_eq!(inventory_row(&mut lab.db, &id).0, "running");
    lab.kill_and_restart("2");
    let (status, error) = inventory_row(&mut lab.db, &id);
    assert_eq!(
        status,
        "failed",
        "the killed backup is still {status}; log:\n{}",
        lab.node.log()
    );
    assert!(error.as_deref().is_some_and(|e| e.contains("interrupted")), "{error:?}");
    assert_eq!(
        partial_archives(&lab.backups_dir()),
        Vec::<String>::new(),
        "stale partial files remain"
    );
    assert!(
        events(&lab.lab.audit_dir(), "ha.backup.interrupted")
            .iter()
            .any(|e| e.details["backup_id"] == id.as_str()),
        "no ha.backup.interrupted event for {id}"
    );
    let listed = lab.cli.run(&["ha", "backup", "list"]);
    assert!(
        listed.stdout.contains(&format!("backup_id={id} status=failed")),
        "{listed}"
    );
}

#[test]
fn d07_a_backup_cut_off_by_postgres_stopping_is_failed_once_it_is_back() {
    let mut lab = autonomy_lab::or_skip!(Setup::start("faults-d07-pg", Fixture::Big(60), false));
    let (id, running) = lab.backup_caught_writing();
    lab.lab.pg.stop_abruptly().expect("PostgreSQL stops");
    let failed = running.join().expect("the backup call returns");
    assert!(!failed.success(), "{failed}");
    lab.lab.pg.start_again().expect("PostgreSQL starts again");
    lab.node
        .wait_for_role("leader", Duration::from_secs(60))
        .expect("the node leads again");
    let cli = lab.cli.clone();
    wait_until(
        "the listing to show the cut-off backup failed",
        Duration::from_secs(30),
        || {
            cli.run(&["ha", "backup", "list"])
                .stdout
                .contains(&format!("backup_id={id} status=failed"))
        },
    );
    let mut db = watcher(&lab.lab.url());
    assert_eq!(inventory_row(&mut db, &id).0, "failed");
    assert_eq!(
        partial_archives(&lab.backups_dir()),
        Vec::<String>::new(),
        "its partial archive remains"
    );
}

// ---------------------------------------------------------------------------------------------
// Defect 8: stored input that could not be read back
// ---------------------------------------------------------------------------------------------

#[test]
fn d08_a_spec_nested_beyond_what_reads_back_is_refused() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-d08", Fixture::Small, false));
    let mut spec = serde_json::json!({});
    for _ in 0..125 {
        spec = serde_json::json!({ "a": spec });
    }
    let body = serde_json::to_vec(&serde_json::json!({ "name": "deep", "spec": spec })).unwrap();
    let (status, _, answer) = http(
        "POST",
        &format!("{}/v1/rollouts", lab.node.url),
        Some(&bearer()),
        Some(body),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("\"code\":\"invalid_spec\"") && answer.contains("126 levels deep"),
        "{answer}"
    );
    lab.cli.run_ok(&["rollout", "list"]);
}

// ---------------------------------------------------------------------------------------------
// Defect 9: a CLI call hung on a frozen node
// ---------------------------------------------------------------------------------------------

#[test]
fn d09_a_frozen_node_never_holds_the_cli() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-d09", Fixture::Small, false));
    {
        let _frozen = Frozen::freeze(&lab.node);
        let status = lab.cli.run_within(&["ha", "status"], Duration::from_secs(60));
        assert_eq!(status.exit_code, Some(3), "{status}");
        assert!(
            status.stderr.contains("within 5 s") && status.stderr.contains("GET /v1/ha/status"),
            "{status}"
        );
        assert!(status.elapsed_ms < 30_000, "{status}");
        let listed = lab
            .cli
            .run_within(&["--timeout", "2", "rollout", "list"], Duration::from_secs(60));
        assert_eq!(listed.exit_code, Some(3), "{listed}");
        assert!(
            listed.stderr.contains("within 2 s") && listed.stderr.contains("GET /v1/rollouts"),
            "{listed}"
        );
    }
    lab.cli.run_ok(&["ha", "status"]);
}

// ---------------------------------------------------------------------------------------------
// Defect 10: one bad byte hid every node's audit
// ---------------------------------------------------------------------------------------------

#[test]
fn d10_a_damaged_audit_line_hides_nothing_else() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-d10", Fixture::Small, false));
    lab.backup();
    let audit_dir = lab.lab.audit_dir();
    std::fs::OpenOptions::new()
        .append(true)
        .open(audit_dir.join("faults-d10.jsonl"))
        .unwrap()
        .write_all(b"{\"id\": \"ev-\xe2\x82\n")
        .unwrap();
    lab.backup();
    let (status, _, answer) = http(
        "GET",
        &format!("{}/v1/audit/events", lab.node.url),
        Some(&bearer()),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        listed.iter().filter(|e| e["type"] == "ha.backup.created").count(),
        2,
        "{answer}"
    );
    let queried = lab.cli.run_ok(&[
        "audit",
        "query",
        "--event-type",
        "ha.backup.created",
        "--audit-dir",
        audit_dir.to_str().unwrap(),
    ]);
    assert!(
        queried.stderr.contains("faults-d10.jsonl has a malformed line") && queried.stderr.contains("not UTF-8"),
        "{queried}"
    );
    assert_eq!(queried.stdout.lines().count(), 2, "{queried}");
}

// ---------------------------------------------------------------------------------------------
// Minor findings (m02, a failed manifest write leaving a complete-looking archive, is the unit
// test `a_failed_manifest_write_leaves_no_complete_looking_archive` in src/backup/repository.rs)
// ---------------------------------------------------------------------------------------------

#[test]
fn m01_a_drill_whose_archive_fails_its_check_still_says_the_manifest_was_sealed() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-m01", Fixture::Small, false));
    let id = lab.backup();
    let archive = lab.lab.archive_path(&id);
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let drill = lab.cli.run(&["ha", "backup", "verify", &id]);
    assert_eq!(drill.exit_code, Some(1), "{drill}");
    assert_eq!(drill.field("manifest_sealed").as_deref(), Some("true"), "{drill}");
}

#[test]
fn m03_backups_whose_files_are_gone_are_listed_as_such() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-m03", Fixture::Small, false));
    let intact = lab.backup();
    let no_archive = lab.backup();
    let no_manifest = lab.backup();
    std::fs::remove_file(lab.lab.archive_path(&no_archive)).unwrap();
    std::fs::remove_file(lab.manifest_path(&no_manifest)).unwrap();
    let listed = lab.cli.run(&["ha", "backup", "list"]);
    let line = |id: &str| {
        listed
            .stdout
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line(&intact).contains("files=present"), "{listed}");
    assert!(line(&no_archive).contains("files=archive_missing"), "{listed}");
    assert!(line(&no_manifest).contains("files=manifest_missing"), "{listed}");
}

#[test]
fn m04_every_error_is_code_and_message_json() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-m04", Fixture::Small, false));
    // A body over the limit: refused from its announced length, before any of it is sent.
    let (status, content_type, answer) = post_head_only(&lab.node.url, "/v1/rollouts", 3 << 20);
    assert_eq!(status, 413, "{answer}");
    assert!(content_type.starts_with("application/json"), "{content_type} {answer}");
    assert!(answer.contains("\"code\":\"payload_too_large\""), "{answer}");
    for (method, path, body, status) in [
        ("GET", "/v1/ha/backups/%FF", None, 400),
        ("GET", "/v1/audit/events?event_type=a&event_type=b", None, 400),
        ("GET", "/v1/ha/backups/bk-1/restore", None, 405),
        ("GET", "/v1/no-such-route", None, 404),
    ] {
        let (got, content_type, answer) = http(method, &format!("{}{path}", lab.node.url), Some(&bearer()), body);
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {content_type} {answer}"
        );
        let error: serde_json::Value =
            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{method} {path}: {e}: {answer}"));
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{method} {path}: {answer}"
        );
    }
}

#[test]
fn m08_the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-m08", Fixture::Small, false));
    let url = format!("{}/v1/ha/status", lab.node.url);
    let (status, _, answer) = http("GET", &url, Some(&format!("bearer {LAB_TOKEN}")), None);
    assert_eq!(status, 200, "{answer}");
    let (status, _, _) = http("GET", &url, Some(&format!("BEARER {LAB_TOKEN}")), None);
    assert_eq!(status, 200);
    let (status, _, _) = http("GET", &url, Some(&format!("bearer {}", LAB_TOKEN.to_uppercase())), None);
    assert_eq!(status, 401);
}

#[test]
fn m11_archives_manifests_and_audit_files_are_private() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-m11", Fixture::Small, false));
    let id = lab.backup();
    assert_eq!(mode(&lab.backups_dir()), 0o700, "the backup directory");
    assert_eq!(mode(&lab.lab.archive_path(&id)), 0o600, "the archive");
    assert_eq!(mode(&lab.manifest_path(&id)), 0o600, "the manifest");
    assert_eq!(mode(&lab.lab.audit_dir()), 0o700, "the audit directory");
    assert_eq!(
        mode(&lab.lab.audit_dir().join("faults-m11.jsonl")),
        0o600,
        "the audit file"
    );
}

#[test]
fn m12_a_second_process_with_the_same_node_id_says_so() {
    let lab = autonomy_lab::or_skip!(Setup::start("faults-m12", Fixture::Small, false));
    let mut twin = lab.lab.node_spec("faults-m12", false);
    twin.log_path = lab.lab.scratch.path().join("faults-m12-twin.log");
    let twin = Node::start(twin).unwrap_or_else(|e| panic!("{e}"));
    let twin_cli = Cli::for_server(&twin.url);
    wait_until("the twin's warning", Duration::from_secs(20), || {
        twin_cli
            .run(&["ha", "status"])
            .stdout
            .contains("\nwarning another process holds the leader lease under this node's id `faults-m12`")
    });
    assert!(twin.log().contains("node ids must be unique"), "{}", twin.log());
    assert!(!events(&lab.lab.audit_dir(), "ha.node.duplicate_id").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Offline bad input: refused with exit 2 (or 3) before anything is touched
// ---------------------------------------------------------------------------------------------

/// A well-formed URL no server answers: a start that got past validation would fail on it.
const UNREACHABLE_DB: &str = "postgresql://127.0.0.1:1/x";

#[rstest::rstest]
#[case::negative_number(&[UNREACHABLE_DB, "--lease-ttl-ms", "-5"], None, "invalid value '-5' for '--lease-ttl-ms")]
#[case::empty_database_url(&[""], None, "--database-url is not a valid PostgreSQL URL: it is empty")]
#[case::token_of_spaces(&[UNREACHABLE_DB], Some("                "), "the API token has a space at character 1")]
#[case::token_with_control_character(&[UNREACHABLE_DB], Some("abcdefgh\u{1}ijklmnop"), "a control character at character 9")]
fn m05_m06_m07_serve_refuses_bad_values_with_exit_2(
    #[case] extra: &[&str],
    #[case] token: Option<&str>,
    #[case] says: &str,
) {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let backups = scratch.path().join("backups");
    let mut args = vec![
        "ha",
        "serve",
        "--node-id",
        "x",
        "--backup-dir",
        backups.to_str().unwrap(),
        "--database-url",
    ];
    args.extend_from_slice(extra);
    let cli = Cli::for_server("http://127.0.0.1:1").with_token(Some(token.unwrap_or(LAB_TOKEN)));
    let run = cli.run_within(&args, Duration::from_secs(60));
    assert_eq!(run.exit_code, Some(2), "{run}");
    assert!(run.stderr.contains(says), "expected `{says}`:\n{run}");
    assert!(!backups.exists(), "a refused start created its backup directory");
}

#[test]
fn m10_a_backup_dir_whose_parent_is_missing_is_an_error_not_a_new_tree() {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let typo = scratch.path().join("no-such-parent").join("backups");
    let cli = Cli::for_server("http://127.0.0.1:1");
    let run = cli.run_within(
        &[
            "ha",
            "serve",
            "--node-id",
            "x",
            "--database-url",
            "postgresql://127.0.0.1:1/x",
            "--backup-dir",
            typo.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.exit_code, Some(2), "{run}");
    assert!(
        run.stderr.contains("parent directory") && run.stderr.contains("--backup-dir"),
        "{run}"
    );
    assert!(
        !scratch.path().join("no-such-parent").exists(),
        "the mistyped tree was created"
    );
}

#[test]
fn m09_a_missing_audit_dir_is_an_error_not_an_empty_store() {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let cli = Cli::for_server("http://127.0.0.1:1");
    let missing = scratch.path().join("audit-typo");
    let run = cli.run_within(
        &["audit", "query", "--audit-dir", missing.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(run.exit_code, Some(2), "{run}");
    assert!(run.stderr.contains("no audit store"), "{run}");
}

#[test]
fn m13_a_server_url_with_userinfo_is_never_echoed() {
    let run = Cli::for_server("http://admin:s3cret@127.0.0.1:1").run_within(&["ha", "status"], Duration::from_secs(60));
    assert_eq!(run.exit_code, Some(3), "{run}");
    assert!(run.stderr.contains("http://***@127.0.0.1:1"), "{run}");
    assert!(
        !run.stderr.contains("s3cret") && !run.stdout.contains("s3cret"),
        "{run}"
    );
    // With several servers, neither the per-node lines nor the summary echo it.
    let run = Cli::for_server("http://admin:s3cret@127.0.0.1:1,http://127.0.0.1:2")
        .run_within(&["ha", "status"], Duration::from_secs(60));
    assert_eq!(run.exit_code, Some(3), "{run}");
    assert!(run.stdout.contains("server=http://***@127.0.0.1:1"), "{run}");
    assert!(
        !run.stderr.contains("s3cret") && !run.stdout.contains("s3cret"),
        "{run}"
    );
}
