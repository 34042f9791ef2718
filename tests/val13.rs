//! VAL13 — HA failover validation (issue 3, seed 004): one test per check, phases run once.
//!
//! `cargo test --test val13` runs the slice; `cargo test --test val13 no_dual_leader` runs one
//! check (the phases still run, once). `val13_sabotage_*` runs the slice with protected writes
//! unfenced and shows the checks that guard fencing fail; `val13_each_check_fails_*` breaks
//! each check's evidence in turn and shows that check turning FAIL.

use autonomy::evidence::Outcome;
use autonomy_lab::slices::{val13::Observations, Val13};
use autonomy_lab::{check_tests, fixture_tests, harness::*};
use rstest::rstest;

check_tests!(Val13:
    val13_01_cluster_formed val13_02_follower_rejects_writes val13_03_sigterm_failover_bound
    val13_04_zero_data_loss val13_05_sigkill_failover_bound val13_06_epoch_monotonic
    val13_07_rejoin_as_follower val13_08_rapid_cycles val13_09_no_dual_leader
    val13_10_writes_during_failover
);

/// The whole report: 10/10 and PASS, the three metrics present, phases run once, the bundle
/// complete, and every leadership change audited.
#[test]
fn val13_report_is_pass_with_failover_metrics() {
    let Some(outcome) = assert_report_passes::<Val13>(
        "val13_report_is_pass_with_failover_metrics",
        &["sigterm_failover_ms", "sigkill_failover_ms", "rapid_cycle_ms"],
        &[
            "val13-09-status-samples.jsonl",
            "val13-10-writes.jsonl",
            "val13-06-lease-history.txt",
            "val13-audit-leader-events.json",
            "val13-n1-1.log",
            "val13-n2-1.log",
            "val13-report.txt",
        ],
    ) else {
        return;
    };
    let events: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(outcome.evidence_dir.join("val13-audit-leader-events.json")).unwrap(),
    )
    .expect("the audit extract is JSON");
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    // Formation, then one acquisition per failover: SIGTERM, SIGKILL and the rapid cycles.
    let acquisitions = 1 + outcome.observations.failovers().len();
    assert_eq!(count("ha.leader.acquired"), acquisitions, "events: {events:#?}");
    assert!(
        count("ha.leader.released") >= 1,
        "the SIGTERM'd leader released: {events:#?}"
    );
    assert_eq!(outcome.observations.lease_history.len(), acquisitions);
}

/// With protected writes unfenced, a follower commits what the load-balanced client sends it:
/// the follower check, the epoch check and the writes check all fail, and so does the slice.
#[test]
fn val13_sabotage_skip_fencing_fails_02_06_10() {
    assert_sabotage_fails::<Val13>(
        Sabotage::SkipFencing,
        &["VAL13-02", "VAL13-06", "VAL13-10"],
        Outcome::Fail,
    );
}

fixture_tests!(Val13: val13_fixture_observations_pass_every_check val13_fixture_has_the_fields_of_this_run);

/// Each check fails when the evidence it guards is broken: the committed observations of a
/// passing run, with one fact changed, turn the named check to FAIL. No database is needed:
/// `cargo test --test val13 each_check_fails` takes a second.
#[rstest]
#[case::slow_formation("VAL13-01", |o: &mut Observations| o.formation.as_mut().unwrap().formed_ms = 10_001)]
#[case::follower_accepted("VAL13-02", |o: &mut Observations| { let w = o.follower_write.as_mut().unwrap(); w.answer.status = 201; w.stored = true; })]
#[case::wrong_leader_hint("VAL13-02", |o: &mut Observations| o.follower_write.as_mut().unwrap().leader_address = None)]
#[case::slow_sigterm("VAL13-03", |o: &mut Observations| o.sigterm.as_mut().unwrap().failover_ms = Some(5_001))]
#[case::no_sigterm_takeover("VAL13-03", |o: &mut Observations| o.sigterm.as_mut().unwrap().failover_ms = None)]
#[case::lost_before_sigterm("VAL13-04", |o: &mut Observations| { o.read_after_sigterm.as_mut().unwrap().remove(0); })]
#[case::slow_sigkill("VAL13-05", |o: &mut Observations| o.sigkill.as_mut().unwrap().failover_ms = Some(5_001))]
#[case::epoch_did_not_rise("VAL13-06", |o: &mut Observations| { let f = o.sigkill.as_mut().unwrap(); f.epoch_after = Some(f.epoch_before); })]
#[case::row_with_a_stale_epoch("VAL13-06", |o: &mut Observations| { let last = o.rows.last_mut().unwrap(); last.epoch = 1; })]
#[case::rejoin_took_the_lease("VAL13-07", |o: &mut Observations| { let r = o.rejoin.as_mut().unwrap(); r.role = Some("leader".into()); r.holder_after = Some(r.node.clone()); })]
#[case::slow_cycle("VAL13-08", |o: &mut Observations| o.cycles[1].failover_ms = Some(5_001))]
#[case::missing_cycle("VAL13-08", |o: &mut Observations| { o.cycles.pop(); })]
#[case::two_leaders("VAL13-09", |o: &mut Observations| { let mut dual = o.samples.iter().find(|s| s.role.as_deref() == Some("leader")).unwrap().clone(); dual.node_id = if dual.node_id == "val13-n1" { "val13-n2".into() } else { "val13-n1".into() }; o.samples.push(dual); })]
#[case::acknowledged_write_lost("VAL13-10", |o: &mut Observations| { let name = o.writes.iter().rev().find(|w| w.acknowledged.is_some()).unwrap().name.clone(); o.read_after_sigkill.as_mut().unwrap().retain(|r| r.name != name); })]
#[case::acknowledged_write_changed("VAL13-10", |o: &mut Observations| { let w = o.writes.iter_mut().find(|w| w.acknowledged.is_some()).unwrap(); w.acknowledged.as_mut().unwrap().id += 1_000_000; })]
fn val13_each_check_fails_when_its_evidence_is_broken(#[case] id: &str, #[case] break_it: fn(&mut Observations)) {
    assert_check_fails_when_broken::<Val13>(id, break_it);
}
