//! VAL19 — restore fidelity (issue 7): one test per check, phases run once per run.
//!
//! `cargo test --test val19` runs the slice on the fidelity fixture (fixtures/val19.sql):
//! backup, change, restore and proof; restore drills into scratch databases; and the mutation
//! suite, each change made to a copy of a drill's restored database and named by the verifier.
//! The `judging_*` tests break one fact per check and show the check then fails.

use autonomy_lab::slices::{val19::Observations, Val19};
use autonomy_lab::{check_tests, fixture_tests, harness::*};
use rstest::rstest;

check_tests!(Val19:
    val19_01_fixture_backed_up_with_sealed_baseline val19_02_restore_proven val19_03_drill_proven_and_removed
    val19_04_drill_timed_and_recorded val19_05_data_changes_named val19_06_schema_changes_named
    val19_07_sequence_and_large_object_named val19_08_physical_reorder_not_reported val19_09_damaged_backup_named
    val19_10_live_database_never_touched
);

/// The whole report: 10/10 PASS with the drill's RTO, and the phases ran once.
#[test]
fn val19_report_is_pass() {
    assert_report_passes::<Val19>("val19_report_is_pass", &["drill_rto_ms"], &[]);
}

fixture_tests!(Val19: val19_fixture_observations_pass_every_check val19_fixture_has_the_fields_of_this_run);

/// One fact broken per check, on the committed observations of a passing run: the check fails.
#[rstest]
#[case::fixture_without_large_objects("VAL19-01", |o: &mut Observations| o.fixture.as_mut().unwrap().large_objects = 0)]
#[case::unsealed_manifest("VAL19-01", |o: &mut Observations| { o.manifest.as_mut().unwrap()["manifest_sha256"] = serde_json::Value::Null; })]
#[case::restore_with_differences("VAL19-02", |o: &mut Observations| o.restore.as_mut().unwrap().stdout = o.restore.as_ref().unwrap().stdout.replace("proof=proven", "proof=differences"))]
#[case::scratch_left_behind("VAL19-03", |o: &mut Observations| o.leftover_after_drill = Some(vec!["autonomy_verify_x".into()]))]
#[case::no_amcheck("VAL19-03", |o: &mut Observations| { let run = o.drill.as_mut().unwrap(); run.stdout = run.stdout.replace(&format!("indexes_checked={}", run.field("indexes_checked").unwrap()), "indexes_checked=0"); })]
#[case::phase_untimed("VAL19-04", |o: &mut Observations| { let run = o.drill.as_mut().unwrap(); run.stdout = run.stdout.replace("\nphase amcheck ", "\n"); })]
#[case::no_audit("VAL19-04", |o: &mut Observations| o.audit_verified = Some(0))]
#[case::row_change_missed("VAL19-05", |o: &mut Observations| miss(o, "row_changed"))]
#[case::duplicate_missed("VAL19-05", |o: &mut Observations| miss(o, "row_duplicated_without_pk"))]
#[case::trigger_disable_missed("VAL19-06", |o: &mut Observations| miss(o, "trigger_disabled"))]
#[case::default_change_missed("VAL19-06", |o: &mut Observations| miss(o, "column_default_changed"))]
#[case::large_object_missed("VAL19-07", |o: &mut Observations| miss(o, "large_object_altered"))]
#[case::extra_object_named("VAL19-07", |o: &mut Observations| { let run = &mut o.mutations.iter_mut().find(|m| m.name == "sequence_reset").unwrap().run; run.stdout.push_str("\ndifference table public.orders: expected `a`, found `b`"); })]
#[case::reorder_reported("VAL19-08", |o: &mut Observations| { let run = &mut o.reorders[0].run; run.exit_code = Some(1); })]
#[case::damaged_archive_missed("VAL19-09", |o: &mut Observations| { o.damaged[0].run.exit_code = Some(0); })]
#[case::live_target_accepted("VAL19-10", |o: &mut Observations| { o.live_target.as_mut().unwrap().exit_code = Some(0); })]
#[case::live_changed("VAL19-10", |o: &mut Observations| { o.live_after_drills.as_mut().unwrap().tables.insert("public.extra".into(), "x".into()); })]
fn judging_a_broken_fact_fails_its_check(#[case] id: &str, #[case] breaks: fn(&mut Observations)) {
    assert_check_fails_when_broken::<Val19>(id, breaks);
}

/// As if the verifier had not seen `mutation`: exit 0, nothing named.
fn miss(observations: &mut Observations, mutation: &str) {
    let run = &mut observations
        .mutations
        .iter_mut()
        .find(|m| m.name == mutation)
        .unwrap()
        .run;
    run.exit_code = Some(0);
    run.stdout = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("difference "))
        .collect::<Vec<_>>()
        .join("\n");
}
