//! A restore ends with its proof (issue 7): the restored database compared, table by table,
//! with the baseline the backup recorded in its manifest from the dump's own snapshot.
//!
//! The proven case is the ordinary restore. The manifest that carries the baseline is sealed by
//! its own checksum: one table's recorded hash edited in it makes the restore refuse the backup
//! before touching the database; re-sealed after the edit, the restore runs and its proof names
//! that table.

use autonomy_lab as common;

use common::{cli::Cli, lab::Lab, sql};

#[test]
fn a_restore_reports_its_proof_and_refuses_an_edited_manifest() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("restore-proof"));
    let mut db = lab.load(common::lab::VAL15_SQL);
    let node = lab.leader("proof-normal", false);
    let created = Cli::for_server(&node.url).run(&["ha", "backup", "create"]);
    assert!(created.success(), "{created}");
    let id = created.field("backup_id").expect("a backup id");
    drop(node);

    let manifest_path = lab.scratch.path().join("backups").join(format!("{id}.json"));
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("the manifest")).expect("JSON");
    assert_eq!(manifest["manifest_version"], 3);
    assert_eq!(
        manifest["manifest_sha256"].as_str().map(str::len),
        Some(64),
        "{manifest:#}"
    );
    let tables = manifest["baseline"]["tables"]
        .as_object()
        .expect("the manifest records a baseline per table")
        .clone();
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        ["public.val15_medium", "public.val15_small"],
        "{manifest:#}"
    );

    db.batch_execute("UPDATE val15_small SET payload = 'after the backup'")
        .expect("a post-backup change");
    let maint = lab.leader("proof-maint", true);
    let restored = Cli::for_server(&maint.url).run(&["ha", "backup", "restore", &id, "--confirm"]);
    assert!(restored.success(), "{restored}");
    assert_eq!(restored.field("proof").as_deref(), Some("proven"), "{restored}");
    assert_eq!(restored.field("tables_checked").as_deref(), Some("2"), "{restored}");
    assert_eq!(restored.field("differences").as_deref(), Some("0"), "{restored}");

    // The record says val15_small held something else: the seal no longer matches, and the
    // restore refuses before touching the database. (The restore ended our session.)
    let mut db = sql::connect(&lab.url());
    db.batch_execute("UPDATE val15_small SET payload = 'after the proven restore' WHERE id = 1")
        .expect("a change the refused restore must leave alone");
    manifest["baseline"]["tables"]["public.val15_small"]["hash"] = serde_json::json!("0".repeat(64));
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).expect("the manifest is edited");
    let refused = Cli::for_server(&maint.url).run(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(refused.exit_code, Some(7), "{refused}");
    assert!(
        refused.stderr.contains("cannot be trusted") && refused.stderr.contains("manifest_sha256"),
        "{refused}"
    );
    let kept: String = db
        .query_one("SELECT payload FROM val15_small WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        kept, "after the proven restore",
        "the refused restore touched the database"
    );

    // The seal is a checksum, not a signature: whoever can write the repository can re-seal an
    // edited manifest. The restore then runs, and its proof names the table whose recorded
    // content it cannot reproduce: a restore that does not reproduce its baseline is not a
    // success (exit 10, status restored_with_differences).
    let edited: autonomy::backup::Manifest = serde_json::from_value(manifest).expect("still a manifest");
    std::fs::write(&manifest_path, autonomy::backup::manifest::seal(&edited)).expect("re-sealed");
    let resealed = Cli::for_server(&maint.url).run(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(resealed.exit_code, Some(10), "{resealed}");
    assert_eq!(
        resealed.field("status").as_deref(),
        Some("restored_with_differences"),
        "{resealed}"
    );
    assert!(resealed.stderr.contains("COMMITTED"), "{resealed}");
    assert_eq!(resealed.field("proof").as_deref(), Some("differences"), "{resealed}");
    assert!(
        resealed
            .stdout
            .contains("\ndifference table public.val15_small: expected `rows="),
        "{resealed}"
    );
    assert!(!resealed.stdout.contains("public.val15_medium:"), "{resealed}");
}

/// Sequences are not transactional: a sequence advancing throughout the backup is read by
/// pg_dump at one moment and would be read by the baseline at another. The baseline takes the
/// position the archive holds, so the restore of a busy database is still proven.
#[test]
fn a_sequence_advancing_during_the_backup_is_still_proven() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("restore-proof-busy"));
    lab.load(common::lab::VAL19_SQL);
    let node = lab.leader("proof-busy", true);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let advancing = {
        let (stop, url) = (stop.clone(), lab.url());
        std::thread::spawn(move || {
            let mut client = sql::connect(&url);
            let mut calls = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                client
                    .batch_execute("SELECT nextval('invoice_number_seq')")
                    .expect("nextval");
                calls += 1;
            }
            calls
        })
    };
    let cli = Cli::for_server(&node.url);
    let created = cli.run(&["ha", "backup", "create"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let calls = advancing.join().expect("the advancing thread");
    assert!(created.success(), "{created}");
    assert!(calls > 10, "the sequence advanced only {calls} times");
    let id = created.field("backup_id").expect("a backup id");
    let restored = cli.run_ok(&["ha", "backup", "restore", &id, "--confirm"]);
    assert_eq!(restored.field("proof").as_deref(), Some("proven"), "{restored}");
}
