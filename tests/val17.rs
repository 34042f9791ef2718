//! VAL17 — quorum loss validation (issue 4, seed 004): one test per check, phases run once.
//!
//! The lab's PostgreSQL is taken down abruptly (container killed, or postmaster stopped with
//! `-m immediate`) under two nodes, held down, then started again. `val17_sabotage_*` runs
//! the slice with protected writes unfenced and shows the write check fail;
//! `val17_each_check_fails_*` breaks each check's evidence in turn and shows it turn FAIL.

use autonomy::evidence::Outcome;
use autonomy_lab::slices::{val17::Observations, Val17};
use autonomy_lab::{check_tests, fixture_tests, harness::*};
use rstest::rstest;

check_tests!(Val17:
    val17_01_baseline_healthy val17_02_loss_detected val17_03_write_block_active
    val17_04_protected_write_refused val17_05_status_served_during_loss val17_06_recovery_detected
    val17_07_writes_resume val17_08_single_leader_after_recovery val17_09_pre_loss_data_intact
    val17_10_audit_events_captured
);

/// The whole report: 10/10 and PASS, both metrics present, phases run once, the bundle complete.
#[test]
fn val17_report_is_pass_with_loss_and_recovery_metrics() {
    let Some(_outcome) = assert_report_passes::<Val17>(
        "val17_report_is_pass_with_loss_and_recovery_metrics",
        &["loss_detection_ms", "recovery_ms"],
        &[
            "val17-pg-setup.txt",
            "val17-01-baseline.txt",
            "val17-02-loss-detected.txt",
            "val17-04-refused-writes.txt",
            "val17-06-recovery.txt",
            "val17-09-rows-before-loss.txt",
            "val17-09-rows-at-end.txt",
            "val17-status-samples.jsonl",
            "val17-audit-events.json",
            "val17-n1-1.log",
            "val17-n2-1.log",
            "val17-report.txt",
        ],
    ) else {
        return;
    };
}

/// With protected writes unfenced, a node does not refuse a write for the lost quorum: it
/// tries the dead database instead, so the refusal check fails, and so does the slice.
#[test]
fn val17_sabotage_skip_fencing_fails_04() {
    let Some(outcome) = assert_sabotage_fails::<Val17>(Sabotage::SkipFencing, &["VAL17-04"], Outcome::Fail) else {
        return;
    };
    // For the reason it guards: the writes were not refused for the lost quorum.
    assert!(
        outcome
            .observations
            .refused_writes
            .iter()
            .all(|w| w.answer.code != "quorum_lost"),
        "{:#?}",
        outcome.observations.refused_writes
    );
}

fixture_tests!(Val17: val17_fixture_observations_pass_every_check val17_fixture_has_the_fields_of_this_run);

/// Each check fails when the evidence it guards is broken: the committed observations of a
/// passing run, with one fact changed, turn the named check to FAIL. No database is needed:
/// `cargo test --test val17 each_check_fails` takes a second.
#[rstest]
#[case::no_leader_accepting("VAL17-01", |o: &mut Observations| for v in &mut o.baseline.as_mut().unwrap().views { v.can_accept_protected_writes = Some(false); })]
#[case::baseline_write_refused("VAL17-01", |o: &mut Observations| o.baseline_write.as_mut().unwrap().answer.status = 503)]
#[case::slow_detection("VAL17-02", |o: &mut Observations| o.detections[1].detected_ms = Some(30_001))]
#[case::never_detected("VAL17-02", |o: &mut Observations| { o.detections[0].detected_ms = None; o.detections[0].detected_at_us = None; })]
#[case::writes_open_during_loss("VAL17-03", |o: &mut Observations| { let start = o.detections.iter().filter_map(|d| d.detected_at_us).max().unwrap(); let s = o.samples.iter_mut().find(|s| s.sent_us > start && s.error.is_none()).unwrap(); s.can_accept_protected_writes = Some(true); })]
#[case::write_accepted_during_loss("VAL17-04", |o: &mut Observations| { o.refused_writes[0].answer.status = 201; o.refused_writes[0].answer.code = "created".into(); })]
#[case::refused_write_stored("VAL17-04", |o: &mut Observations| o.refused_writes[1].stored = Some(true))]
#[case::status_unanswered("VAL17-05", |o: &mut Observations| { let start = o.detections.iter().filter_map(|d| d.detected_at_us).max().unwrap(); let s = o.samples.iter_mut().find(|s| s.sent_us > start).unwrap(); s.received_us = s.sent_us + 1_000_001; })]
#[case::slow_recovery("VAL17-06", |o: &mut Observations| o.recovery_ms = Some(30_001))]
#[case::never_recovered("VAL17-06", |o: &mut Observations| o.recovery_ms = None)]
#[case::write_after_recovery_refused("VAL17-07", |o: &mut Observations| o.resumed_write.as_mut().unwrap().answer.status = 503)]
#[case::epoch_did_not_rise("VAL17-08", |o: &mut Observations| { let before = o.epoch_before().unwrap(); o.settled.as_mut().unwrap().epoch = before; })]
#[case::two_leaders_after_recovery("VAL17-08", |o: &mut Observations| for v in &mut o.settled.as_mut().unwrap().views { v.role = Some("leader".into()); })]
#[case::pre_loss_row_changed("VAL17-09", |o: &mut Observations| { let name = o.pre_loss_rows[3].name.clone(); let row = o.post_rows.iter_mut().find(|r| r.name == name).unwrap(); row.spec = "{}".into(); })]
#[case::pre_loss_row_lost("VAL17-09", |o: &mut Observations| { o.post_rows.remove(0); })]
#[case::quorum_loss_not_audited("VAL17-10", |o: &mut Observations| o.audit.retain(|e| e.event_type != "ha.quorum.lost"))]
fn val17_each_check_fails_when_its_evidence_is_broken(#[case] id: &str, #[case] break_it: fn(&mut Observations)) {
    assert_check_fails_when_broken::<Val17>(id, break_it);
}
