//! VAL15 — backup/restore validation (seed 000): one test per check, phases run once per run.
//!
//! `cargo test --test val15` runs the slice; `cargo test --test val15 restore_correct` runs one
//! check (the phases still run, once). The `sabotage_*` tests break what a check guards and
//! show that the check then fails.

#[path = "val15/checks.rs"]
mod checks;
mod common;
#[path = "val15/slice.rs"]
mod slice;

use autonomy::evidence::{CheckStatus, Outcome};
use common::phase::run_once;
use slice::{run_slice, Sabotage, SliceOutcome};

fn outcome(sabotage: Sabotage) -> SliceOutcome {
    run_once(sabotage.bundle_name(), || run_slice(sabotage))
}

#[track_caller]
fn skipped(outcome: &SliceOutcome, test: &str) -> bool {
    common::verdict::skipped(&outcome.report, &outcome.evidence_dir, test)
}

#[track_caller]
fn assert_check_passes(id: &str) {
    let outcome = outcome(Sabotage::None);
    common::verdict::assert_check_passes(
        &outcome.report,
        &outcome.evidence_dir,
        outcome.observations.aborted.as_deref(),
        id,
    );
}

#[test]
fn val15_01_backup_created() {
    assert_check_passes("VAL15-01");
}

#[test]
fn val15_02_backup_file_valid() {
    assert_check_passes("VAL15-02");
}

#[test]
fn val15_03_backup_metadata_correct() {
    assert_check_passes("VAL15-03");
}

#[test]
fn val15_04_checksum_verified() {
    assert_check_passes("VAL15-04");
}

#[test]
fn val15_05_backup_timing_bound() {
    assert_check_passes("VAL15-05");
}

#[test]
fn val15_06_restore_correct() {
    assert_check_passes("VAL15-06");
}

#[test]
fn val15_07_restore_timing_bound() {
    assert_check_passes("VAL15-07");
}

#[test]
fn val15_08_multi_backup_inventory() {
    assert_check_passes("VAL15-08");
}

#[test]
fn val15_09_restore_requires_confirm() {
    assert_check_passes("VAL15-09");
}

#[test]
fn val15_10_audit_events_captured() {
    assert_check_passes("VAL15-10");
}

/// The whole report: 10/10 and PASS, with both timings, and the phases ran once.
#[test]
fn val15_report_is_pass_with_timings() {
    let outcome = outcome(Sabotage::None);
    let report = &outcome.report;
    if skipped(&outcome, "val15_report_is_pass_with_timings") {
        return;
    }
    assert_eq!(
        (report.pass, report.total, report.outcome),
        (10, 10, Outcome::Pass),
        "report: {report:#?}"
    );
    assert!(
        report.metrics.contains_key("backup_ms") && report.metrics.contains_key("restore_ms"),
        "{:?}",
        report.metrics
    );
    assert_eq!(
        outcome.backups_in_first_node_log, 1,
        "the first node should have made exactly one backup"
    );
    assert_eq!(
        common::phase::times_run(Sabotage::None.bundle_name()),
        1,
        "the phases must run once per run, whatever the number of test processes"
    );
    let evidence = &outcome.evidence_dir;
    for file in [
        "backups/backup-val15-a.dump",
        "backups/backup-val15-b.dump",
        "val15-ha-server.log",
        "val15-ha-server-maint.log",
        "val15-ha-server-post.log",
    ] {
        assert!(evidence.join(file).is_file(), "the bundle lacks {file}");
    }
    let latest = common::run::evidence_root().join("latest/val15/val15-report.json");
    assert!(latest.exists(), "{} should exist", latest.display());
}

/// Every kind of post-backup change (rows updated and deleted, a table, an index, a schema, a
/// sequence and large objects created, a sequence advanced, a large object changed) is undone:
/// the content-and-catalog fingerprint after the restore equals the one before the backup.
#[test]
fn val15_restore_returns_exactly_the_backed_up_database() {
    let outcome = outcome(Sabotage::None);
    if skipped(&outcome, "val15_restore_returns_exactly_the_backed_up_database") {
        return;
    }
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
    let outcome = outcome(Sabotage::None);
    if skipped(&outcome, "val15_restore_reports_its_proof") {
        return;
    }
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
    assert_sabotage_fails(Sabotage::WrongRestore, "VAL15-06", Outcome::Fail);
}

/// An archive changed after creation fails VAL15-04 (and the restore refuses it, so 06 too).
#[test]
fn val15_sabotage_altered_archive_fails_04() {
    assert_sabotage_fails(Sabotage::AlterArchive, "VAL15-04", Outcome::Fail);
}

/// If the confirm gate were bypassed, VAL15-09 fails; the core checks pass, so PARTIAL.
#[test]
fn val15_sabotage_bypassed_confirm_fails_09() {
    assert_sabotage_fails(Sabotage::BypassConfirm, "VAL15-09", Outcome::Partial);
}

#[track_caller]
fn assert_sabotage_fails(sabotage: Sabotage, id: &str, expected: Outcome) {
    let outcome = outcome(sabotage);
    let report = &outcome.report;
    if skipped(&outcome, id) {
        return;
    }
    let check = report.check(id).expect("the check exists");
    assert_eq!(
        check.status,
        CheckStatus::Fail,
        "{sabotage:?} should fail {id}; report: {report:#?}"
    );
    assert_eq!(report.outcome, expected, "{sabotage:?}: outcome; report: {report:#?}");
}
