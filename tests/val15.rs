//! VAL15 — backup/restore validation (seed 000): one test per check, phases run once per run.
//!
//! `cargo test --test val15` runs the slice; `cargo test --test val15 restore_correct` runs one
//! check (the phases still run, once). The `sabotage_*` tests break what a check guards and
//! show that the check then fails.

use autonomy::evidence::Outcome;
use autonomy_lab::slices::{val15::Observations, Val15};
use autonomy_lab::{self as common, check_tests, fixture_tests, harness::*};
use rstest::rstest;

check_tests!(Val15:
    val15_01_backup_created val15_02_backup_file_valid val15_03_backup_metadata_correct
    val15_04_checksum_verified val15_05_backup_timing_bound val15_06_restore_correct
    val15_07_restore_timing_bound val15_08_multi_backup_inventory val15_09_restore_requires_confirm
    val15_10_audit_events_captured
);

/// The whole report: 10/10 and PASS, with both timings, and the phases ran once.
#[test]
fn val15_report_is_pass_with_timings() {
    let Some(outcome) = assert_report_passes::<Val15>(
        "val15_report_is_pass_with_timings",
        &["backup_ms", "restore_ms"],
        &[
            "backups/backup-val15-a.dump",
            "backups/backup-val15-b.dump",
            "val15-ha-server.log",
            "val15-ha-server-maint.log",
            "val15-ha-server-post.log",
        ],
    ) else {
        return;
    };
    assert_eq!(
        outcome.observations.backups_in_first_node_log, 1,
        "the first node should have made exactly one backup"
    );
    let latest = common::run::evidence_root().join("latest/val15/val15-report.json");
    assert!(latest.exists(), "{} should exist", latest.display());
}

/// Every kind of post-backup change (rows updated and deleted, a table, an index, a schema, a
/// sequence and large objects created, a sequence advanced, a large object changed) is undone:
/// the content-and-catalog fingerprint after the restore equals the one before the backup.
#[test]
fn val15_restore_returns_exactly_the_backed_up_database() {
    let outcome = autonomy_lab::or_skip!(unsabotaged::<Val15>(
        "val15_restore_returns_exactly_the_backed_up_database"
    ));
    let obs = &outcome.observations;
    let before = obs
        .fingerprint_before
        .as_ref()
        .expect("a fingerprint before the backup");
    let mutated = obs
        .fingerprint_mutated
        .as_ref()
        .expect("a fingerprint after the mutations");
    let after = obs.fingerprint_after.as_ref().expect("a fingerprint after the restore");
    let changes = before.diff(mutated);
    for kind in [
        "table public.val15_after_backup is extra",
        "index CREATE INDEX val15_small_payload_idx",
        "schema val15_extra",
        "sequence public.val15_small_id_seq last_value=5000",
        "large objects",
    ] {
        assert!(
            changes.iter().any(|c| c.contains(kind)),
            "the mutations should include `{kind}`; they were: {changes:#?}"
        );
    }
    assert_eq!(before.diff(after), Vec::<String>::new(), "restore left differences");
    assert_eq!(before.digest, after.digest);
}

/// The restore reports its proof (issue 7): every table and object of the backup's baseline,
/// read again after the restore, matches; the transcript in the bundle shows it.
#[test]
fn val15_restore_reports_its_proof() {
    let outcome = autonomy_lab::or_skip!(unsabotaged::<Val15>("val15_restore_reports_its_proof"));
    let path = outcome.evidence_dir.join("val15-06-restore.txt");
    let transcript = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let field = |key: &str| {
        transcript
            .split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{key}=")).map(str::to_owned))
    };
    assert_eq!(field("proof").as_deref(), Some("proven"), "{transcript}");
    assert_eq!(field("differences").as_deref(), Some("0"), "{transcript}");
    assert!(
        field("tables_checked").is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 2)),
        "{transcript}"
    );
    assert!(
        field("objects_checked").is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 10)),
        "{transcript}"
    );
}

/// A restore that "succeeds" to the wrong data fails VAL15-06, and the slice is FAIL.
#[test]
fn val15_sabotage_wrong_restore_fails_06() {
    assert_sabotage_fails::<Val15>(Sabotage::WrongRestore, &["VAL15-06"], Outcome::Fail);
}

/// An archive changed after creation fails VAL15-04 (and the restore refuses it, so 06 too).
#[test]
fn val15_sabotage_altered_archive_fails_04() {
    assert_sabotage_fails::<Val15>(Sabotage::AlterArchive, &["VAL15-04"], Outcome::Fail);
}

/// If the confirm gate were bypassed, VAL15-09 fails; the core checks pass, so PARTIAL.
#[test]
fn val15_sabotage_bypassed_confirm_fails_09() {
    assert_sabotage_fails::<Val15>(Sabotage::BypassConfirm, &["VAL15-09"], Outcome::Partial);
}

fixture_tests!(Val15: val15_fixture_observations_pass_every_check val15_fixture_has_the_fields_of_this_run);

/// Each check fails when the evidence it guards is broken: the committed observations of a
/// passing run, with one fact changed, turn the named check to FAIL (no database needed).
#[rstest]
#[case::backup_failed("VAL15-01", |o: &mut Observations| o.backup_a.as_mut().unwrap().exit_code = Some(1))]
#[case::empty_archive("VAL15-01", |o: &mut Observations| o.archive_a_size = Some(0))]
#[case::no_table_data("VAL15-02", |o: &mut Observations| { let toc = o.toc.as_mut().unwrap(); toc.1 = toc.1.replace("TABLE DATA", "TABLE"); })]
#[case::not_listed("VAL15-03", |o: &mut Observations| o.backup_a_id = Some("backup-none".into()))]
#[case::checksum_differs("VAL15-04", |o: &mut Observations| o.archive_a_sha256 = Some("0".repeat(64)))]
#[case::slow_backup("VAL15-05", |o: &mut Observations| o.backup_a.as_mut().unwrap().elapsed_ms = 30_001)]
#[case::rows_missing("VAL15-06", |o: &mut Observations| o.spot_check.as_mut().unwrap().0 = 99)]
#[case::catalog_differs("VAL15-06", |o: &mut Observations| o.fingerprint_after = o.fingerprint_mutated.clone())]
#[case::slow_restore("VAL15-07", |o: &mut Observations| o.restore.as_mut().unwrap().elapsed_ms = 60_001)]
#[case::second_backup_missing("VAL15-08", |o: &mut Observations| o.backup_b_id = Some("backup-none".into()))]
#[case::restored_without_confirm("VAL15-09", |o: &mut Observations| o.no_confirm.as_mut().unwrap().exit_code = Some(0))]
#[case::changed_without_confirm("VAL15-09", |o: &mut Observations| o.fingerprint_after_no_confirm = o.fingerprint_before.clone())]
#[case::restore_not_audited("VAL15-10", |o: &mut Observations| o.audit_restored = Some(0))]
fn val15_each_check_fails_when_its_evidence_is_broken(#[case] id: &str, #[case] break_it: fn(&mut Observations)) {
    assert_check_fails_when_broken::<Val15>(id, break_it);
}
