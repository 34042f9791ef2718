//! VAL16 — split-brain chaos validation (issue 4, seed 004): one test per check, phases run once.
//!
//! Under a client writing through every node: a rogue holder and epoch written into the lease
//! row by SQL, the leader frozen with SIGSTOP past its TTL, and the leader cut off from
//! PostgreSQL by iptables in a network namespace of its own (root; under
//! AUTONOMY_LAB_REQUIRE=1 a machine that cannot do it fails the run, elsewhere VAL16-08 is an
//! explicit SKIP). `val16_sabotage_*` runs the slice with protected writes unfenced;
//! `val16_each_check_fails_*` breaks each check's evidence in turn and shows it turn FAIL.

use autonomy::evidence::Outcome;
use autonomy_lab::slices::{val16::Observations, Val16};
use autonomy_lab::{self as common, check_tests, fixture_tests, harness::*};
use rstest::rstest;

check_tests!(Val16:
    val16_01_baseline_single_leader val16_02_epoch_divergence_detected val16_03_stale_leader_stepped_down
    val16_04_stale_writes_rejected val16_05_recovered_single_leader val16_06_user_data_integrity
    val16_07_paused_leader_fenced val16_08_network_partition val16_09_no_dual_leader
    val16_10_audit_events_captured
);

/// The whole report: 10/10 and PASS (9 and PARTIAL where the partition cannot be made and the
/// lab is not required), the metrics present, phases run once, the bundle complete.
#[test]
fn val16_report_is_pass_with_detection_metrics() {
    let outcome = autonomy_lab::or_skip!(unsabotaged::<Val16>("val16_report_is_pass_with_detection_metrics"));
    let report = &outcome.report;
    let expected = match &outcome.observations.partition_skipped {
        None => (10, 0, Outcome::Pass),
        Some(reason) => {
            eprintln!("VAL16-08 skipped: {reason}");
            (9, 1, Outcome::Partial)
        }
    };
    assert_eq!(
        (report.counts.pass, report.counts.skip, report.outcome),
        expected,
        "report: {report:#?}"
    );
    let mut metrics = vec!["detection_ms", "recovery_ms"];
    if outcome.observations.partition_skipped.is_none() {
        metrics.push("partition_takeover_ms");
    }
    for metric in metrics {
        assert!(
            report.metrics.contains_key(metric),
            "no {metric} in {:?}",
            report.metrics
        );
    }
    assert_eq!(
        common::phase::times_run("val16"),
        1,
        "the phases must run once per run, whatever the number of test processes"
    );
    for file in [
        "val16-pg-setup.txt",
        "val16-01-baseline.txt",
        "val16-02-divergence.txt",
        "val16-02-stale-leader-status.json",
        "val16-05-recovered.txt",
        "val16-06-rows-before.txt",
        "val16-07-paused-leader.txt",
        "val16-08-partition.txt",
        "val16-writes.jsonl",
        "val16-rows-and-lease-history.txt",
        "val16-status-samples.jsonl",
        "val16-audit-events.json",
        "val16-n1-1.log",
        "val16-n2-1.log",
        "val16-report.txt",
    ] {
        assert!(outcome.evidence_dir.join(file).is_file(), "the bundle lacks {file}");
    }
}

/// With protected writes unfenced, the stale leader goes on committing under its old epoch
/// after the injection, and the frozen leader commits what waited for it after it resumes.
#[test]
fn val16_sabotage_skip_fencing_fails_04_and_07() {
    let Some(outcome) = assert_sabotage_fails::<Val16>(Sabotage::SkipFencing, &["VAL16-04", "VAL16-07"], Outcome::Fail)
    else {
        return;
    };
    let obs = &outcome.observations;
    // And for the reason they guard: rows under the stale epoch after the injection (with the
    // lease on etcd, whose rewrite does not move the database's fence, rows under an epoch their
    // writer did not hold), and the frozen leader's rows after its successor's first.
    let injection = obs.injection.as_ref().expect("the injection ran");
    if obs.lease_store == "etcd" {
        let misattributed = autonomy_lab::verdict::misattributed_rows(&obs.rows, &obs.lease_history);
        assert!(
            !misattributed.is_empty(),
            "unfenced writes should land under epochs their writers did not hold"
        );
    } else {
        let stale_now = obs.rows.iter().filter(|r| r.epoch == injection.stale_epoch).count() as i64;
        assert!(
            stale_now > injection.stale_rows_at_injection,
            "{stale_now} stale rows, {} at the injection",
            injection.stale_rows_at_injection
        );
    }
    let pause = obs.pause.as_ref().expect("the pause ran");
    let gap = pause.takeover.write_gap_us(&obs.rows);
    assert!(
        gap.is_some_and(|g| g < 0),
        "the frozen leader's write should land after its successor's first: gap {gap:?} us"
    );
}

fixture_tests!(Val16: val16_fixture_observations_pass_every_check val16_fixture_has_the_fields_of_this_run);

/// Each check fails when the evidence it guards is broken: the committed observations of a
/// passing run, with one fact changed, turn the named check to FAIL. No database is needed:
/// `cargo test --test val16 each_check_fails` takes a second.
#[rstest]
#[case::two_leaders_at_start("VAL16-01", |o: &mut Observations| for v in &mut o.baseline.as_mut().unwrap().views { v.role = Some("leader".into()); })]
#[case::divergence_not_reported("VAL16-02", |o: &mut Observations| o.divergence.as_mut().unwrap().reported = None)]
#[case::slow_detection("VAL16-02", |o: &mut Observations| o.divergence.as_mut().unwrap().detected_ms = Some(1_667))]
#[case::slow_step_down("VAL16-03", |o: &mut Observations| o.divergence.as_mut().unwrap().stepped_down_ms = Some(1_667))]
#[case::never_stepped_down("VAL16-03", |o: &mut Observations| o.divergence.as_mut().unwrap().stepped_down_ms = None)]
#[case::stale_row_after_injection("VAL16-04", |o: &mut Observations| o.injection.as_mut().unwrap().stale_rows_at_injection -= 1)]
#[case::row_at_rogue_epoch("VAL16-04", |o: &mut Observations| { let e = o.injection.as_ref().unwrap().injected_epoch; o.rows.last_mut().unwrap().epoch = e; })]
#[case::not_above_injected("VAL16-05", |o: &mut Observations| { let e = o.injection.as_ref().unwrap().injected_epoch; o.recovered.as_mut().unwrap().epoch = e; })]
#[case::row_changed("VAL16-06", |o: &mut Observations| { let name = o.pre_rows[0].name.clone(); o.rows.iter_mut().find(|r| r.name == name).unwrap().spec = "{}".into(); })]
#[case::acknowledged_lost("VAL16-06", |o: &mut Observations| { let name = o.writes.iter().find(|w| w.acknowledged.is_some()).unwrap().name.clone(); o.rows.retain(|r| r.name != name); })]
#[case::row_from_nowhere("VAL16-06", |o: &mut Observations| { let mut extra = o.rows[0].clone(); extra.name = "nobody-sent-this".into(); extra.id = i64::MAX; o.rows.push(extra); })]
#[case::paused_leader_wrote("VAL16-07", |o: &mut Observations| { let p = o.pause.as_mut().unwrap(); p.rows_at_end = Some(p.rows_at_takeover + 1); })]
#[case::pending_write_accepted("VAL16-07", |o: &mut Observations| { let w = o.pause.as_mut().unwrap().pending_write.as_mut().unwrap(); w.answer.status = 201; w.stored = Some(true); })]
#[case::no_takeover_while_paused("VAL16-07", |o: &mut Observations| o.pause.as_mut().unwrap().takeover.new_epoch = None)]
#[case::old_leader_wrote_after_successor("VAL16-07", |o: &mut Observations| { let p = o.pause.clone().unwrap(); let newest = o.rows.iter().map(|r| r.created_us).max().unwrap(); o.rows.iter_mut().find(|r| r.epoch == p.takeover.old_epoch).unwrap().created_us = newest + 1; })]
#[case::takeover_before_block("VAL16-08", |o: &mut Observations| { let p = o.partition.as_mut().unwrap(); p.blocked_ms = p.takeover.takeover_ms.map(|t| t + 1); })]
#[case::no_rejoin_after_heal("VAL16-08", |o: &mut Observations| o.partition.as_mut().unwrap().role_after_heal = Some("candidate".into()))]
#[case::two_leaders("VAL16-09", |o: &mut Observations| { let mut dual = o.samples.iter().find(|s| s.is_leader()).unwrap().clone(); dual.node_id = if dual.node_id == "val16-n1" { "val16-n2".into() } else { "val16-n1".into() }; o.samples.push(dual); })]
#[case::split_brain_not_audited("VAL16-10", |o: &mut Observations| o.audit.retain(|e| e.event_type != "ha.split_brain.detected"))]
fn val16_each_check_fails_when_its_evidence_is_broken(#[case] id: &str, #[case] break_it: fn(&mut Observations)) {
    assert_check_fails_when_broken::<Val16>(id, break_it);
}
