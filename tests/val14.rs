//! VAL14 — replication lag baseline (issue 5, seed 004): one test per check, phases run once.
//!
//! A primary and a streaming standby (pg_basebackup on a slot) and one node: write_lag at rest
//! and under the seed's light and heavy workloads, the drains, the standby's content, the
//! DERIVED thresholds, and the node's health as the standby stops and is cut off.
//! `val14_sabotage_*` runs the node without pg_monitor and shows the checks that rely on its
//! view fail; `val14_each_check_fails_*` breaks each check's evidence in turn.

use autonomy::{evidence::Outcome, ha::replication::Health};
use autonomy_lab::slices::{val14::Observations, Val14};
use autonomy_lab::{check_tests, fixture_tests, harness::*};
use rstest::rstest;

check_tests!(Val14:
    val14_01_standby_streaming val14_02_status_reports_replication val14_03_idle_lag_sampled
    val14_04_light_workload_lag val14_05_light_drain_bound val14_06_heavy_workload_lag
    val14_07_heavy_drain_bound val14_08_standby_consistent val14_09_thresholds_derived
    val14_10_lag_classified
);

/// The whole report: 10/10 and PASS, the seed's eight metrics, phases run once, the bundle.
#[test]
fn val14_report_is_pass_with_lag_metrics() {
    assert_report_passes::<Val14>(
        "val14_report_is_pass_with_lag_metrics",
        &[
            "idle_p95_ms",
            "light_p95_ms",
            "light_drain_ms",
            "heavy_p99_ms",
            "heavy_drain_ms",
            "healthy_ms",
            "degraded_ms",
            "alert_ms",
        ],
        &[
            "val14-pg-setup.txt",
            "val14-02-status.json",
            "val14-lag-samples.json",
            "val14-10-classified.json",
            "val14-observations.json",
            "val14-n1-1.log",
            "val14-report.txt",
        ],
    );
}

/// `autonomy ha lag-thresholds --from` the report the slice wrote prints the same DERIVED
/// thresholds as the report's metrics, as the node's flags.
#[test]
fn val14_lag_thresholds_command_reads_the_report() {
    let outcome = autonomy_lab::or_skip!(unsabotaged::<Val14>("val14_lag_thresholds_command_reads_the_report"));
    let metric = |name: &str| outcome.report.metrics[name].to_string();
    let report_file = outcome.evidence_dir.join("val14-report.json");
    assert_cmd::Command::cargo_bin("autonomy")
        .expect("the autonomy binary is built")
        .args(["ha", "lag-thresholds", "--from"])
        .arg(&report_file)
        .assert()
        .success()
        .stdout(predicates::str::contains("DERIVED"))
        .stdout(predicates::str::contains(format!(
            "node flags: --lag-healthy-ms {} --lag-degraded-ms {}",
            metric("healthy_ms"),
            metric("degraded_ms")
        )))
        .stdout(predicates::str::contains(format!(
            "alert_ms     = max(healthy_ms x 50, 500)     = {}",
            metric("alert_ms")
        )));
}

/// A node whose role lacks pg_monitor cannot see the standby's columns: it must say so
/// (alert, naming the grant) rather than call the standby healthy, so 02 and 10 fail.
#[test]
fn val14_sabotage_node_without_monitor_role_fails_02_and_10() {
    let Some(outcome) = assert_sabotage_fails::<Val14>(
        Sabotage::NodeWithoutMonitorRole,
        &["VAL14-02", "VAL14-10"],
        Outcome::Fail,
    ) else {
        return;
    };
    let _report = &outcome.report;
    let reported = outcome
        .observations
        .reported
        .as_ref()
        .expect("the node still lists the standby");
    assert_eq!(reported.health, Health::Alert, "{reported:#?}");
    assert!(reported.reason.contains("pg_monitor"), "{reported:#?}");
}

fixture_tests!(Val14: val14_fixture_observations_pass_every_check val14_fixture_has_the_fields_of_this_run);

/// Each check fails when the evidence it guards is broken: the committed observations of a
/// passing run, with one fact changed, turn the named check to FAIL. No database is needed:
/// `cargo test --test val14 each_check_fails` takes a second.
#[rstest]
#[case::not_streaming("VAL14-01", |o: &mut Observations| o.streaming_state = Some("catchup".into()))]
#[case::marker_never_seen("VAL14-01", |o: &mut Observations| o.marker_visible_ms = None)]
#[case::standby_not_listed("VAL14-02", |o: &mut Observations| o.reported = None)]
#[case::reported_unhealthy("VAL14-02", |o: &mut Observations| o.reported.as_mut().unwrap().health = Health::Degraded)]
#[case::too_few_idle_samples("VAL14-03", |o: &mut Observations| o.idle.truncate(49))]
#[case::idle_standby_missing("VAL14-03", |o: &mut Observations| o.idle[7].replay_gap_bytes = None)]
#[case::light_standby_missing("VAL14-04", |o: &mut Observations| o.light.samples[0].replay_gap_bytes = None)]
#[case::slow_light_drain("VAL14-05", |o: &mut Observations| o.light.drain_ms = Some(2_001))]
#[case::light_never_drained("VAL14-05", |o: &mut Observations| o.light.drain_ms = None)]
#[case::heavy_wrong_size("VAL14-06", |o: &mut Observations| o.heavy.row_bytes = 500)]
#[case::slow_heavy_drain("VAL14-07", |o: &mut Observations| o.heavy.drain_ms = Some(5_001))]
#[case::standby_row_missing("VAL14-08", |o: &mut Observations| o.standby_table.as_mut().unwrap().0 -= 1)]
#[case::standby_content_differs("VAL14-08", |o: &mut Observations| o.standby_table.as_mut().unwrap().1 = "0".repeat(32))]
#[case::wrong_derivation("VAL14-09", |o: &mut Observations| o.derived.as_mut().unwrap().alert_ms += 1)]
#[case::stopped_standby_still_healthy("VAL14-10", |o: &mut Observations| o.classified[1].health = Some(Health::Healthy))]
#[case::cut_never_noticed("VAL14-10", |o: &mut Observations| o.classified[3].waited_ms = None)]
#[case::cut_noticed_only_when_dropped("VAL14-10", |o: &mut Observations| { let s = o.classified[3].standby.as_mut().unwrap(); s.state = "disconnected".into(); s.reason = "disconnected: nothing streams from slot val14_standby".into(); })]
fn val14_each_check_fails_when_its_evidence_is_broken(#[case] id: &str, #[case] break_it: fn(&mut Observations)) {
    assert_only_check_fails_when_broken::<Val14>(id, break_it);
}
