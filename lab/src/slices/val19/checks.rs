//! VAL19's ten checks (issue 7, restore fidelity), each computed from the observations alone.

use autonomy::evidence::Check;

use super::slice::{MutationRun, Observations, DRILL_PHASES, DRILL_RTO_MS_THRESHOLD};
use crate::{
    cli::CliRun,
    verdict::{Judge, Verdict},
};

fn number(run: &CliRun, key: &str) -> u64 {
    run.field(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The objects a drill's report named, from its `difference <object>: …` lines.
pub fn named_objects(run: &CliRun) -> Vec<String> {
    run.stdout
        .lines()
        .filter_map(|line| line.strip_prefix("difference "))
        .filter_map(|rest| rest.split_once(": expected ").map(|(object, _)| object.to_owned()))
        .collect()
}

/// A mutation is caught when `verify` exits 1 naming exactly its object (any object
/// starting with the expected name: a function's name is followed by its arguments); a
/// reorganisation is ignored when `verify` exits 0, proven.
fn judged(mutation: &MutationRun) -> (bool, String) {
    let named = named_objects(&mutation.run);
    let ok = match &mutation.names {
        Some(object) => mutation.run.exit_code == Some(1) && named.len() == 1 && named[0].starts_with(object.as_str()),
        None => mutation.run.exit_code == Some(0) && mutation.run.field("outcome").as_deref() == Some("proven"),
    };
    let line = format!(
        "{}: exit={:?} named={named:?} expected={}",
        mutation.name,
        mutation.run.exit_code,
        mutation.names.as_deref().unwrap_or("nothing")
    );
    (ok, line)
}

/// All of `runs` judged by [`judged`], for the mutations whose name is in `names`.
fn suite(runs: &[MutationRun], names: &[&str], evidence: &str) -> Option<Verdict> {
    let chosen: Vec<&MutationRun> = runs.iter().filter(|m| names.contains(&m.name.as_str())).collect();
    if chosen.len() != names.len() {
        return None;
    }
    let judgements: Vec<(bool, String)> = chosen.iter().map(|m| judged(m)).collect();
    let caught = judgements.iter().filter(|(ok, _)| *ok).count();
    let lines: Vec<String> = judgements.into_iter().map(|(_, line)| line).collect();
    Some((
        caught == names.len(),
        Some(format!("{caught}/{}", names.len())),
        format!("{} ({evidence})", lines.join("; ")),
    ))
}

/// The ten checks, each from the observations alone.
pub fn evaluate(judge: &Judge, obs: &Observations) -> Vec<Check> {
    let check =
        |id: &str, name: &str, threshold: &str, verdict: Option<Verdict>| judge.check(id, name, threshold, verdict);
    vec![
        check("VAL19-01", "fixture_backed_up_with_sealed_baseline",
            ">= 10 tables, 2 large objects, a duplicated row without a PK; backup exits 0; manifest v3 sealed; baseline >= 10 tables and >= 100 objects",
            obs.fixture.as_ref().zip(obs.backup.as_ref()).zip(obs.manifest.as_ref()).map(|((facts, backup), manifest)| {
                let tables = manifest["baseline"]["tables"].as_object().map_or(0, |t| t.len());
                let objects = manifest["baseline"]["objects"].as_object().map_or(0, |o| o.len());
                let sealed = manifest["manifest_version"] == 3 && manifest["manifest_sha256"].as_str().is_some_and(|s| s.len() == 64);
                (facts.tables >= 10 && facts.large_objects == 2 && facts.duplicated_rows_without_pk >= 1
                    && backup.success() && sealed && tables >= 10 && objects >= 100,
                 Some(format!("tables={tables} objects={objects}")),
                 format!("fixture {facts:?}; backup exit={:?}; sealed={sealed}; baseline tables={tables} objects={objects} (val19-fixture.json, val19-01-*)", backup.exit_code))
            })),
        check("VAL19-02", "restore_proven", "restore after changes exits 0 with proof=proven differences=0 tables_checked >= 10",
            obs.restore.as_ref().map(|run| {
                let proven = run.field("proof").as_deref() == Some("proven") && run.field("differences").as_deref() == Some("0");
                (run.success() && proven && number(run, "tables_checked") >= 10,
                 run.field("proof"),
                 format!("exit={:?} proof={:?} tables_checked={} objects_checked={} (val19-02-restore.txt)",
                     run.exit_code, run.field("proof"), number(run, "tables_checked"), number(run, "objects_checked")))
            })),
        check("VAL19-03", "drill_proven_and_removed", "verify exits 0, outcome=proven, indexes_checked >= 10, no scratch database left",
            obs.drill.as_ref().zip(obs.leftover_after_drill.as_ref()).map(|(run, left)| {
                (run.exit_code == Some(0) && run.field("outcome").as_deref() == Some("proven")
                    && number(run, "indexes_checked") >= 10 && left.is_empty(),
                 run.field("outcome"),
                 format!("exit={:?} outcome={:?} indexes_checked={} left behind={left:?} (val19-03-verify.txt)",
                     run.exit_code, run.field("outcome"), number(run, "indexes_checked")))
            })),
        check("VAL19-04", "drill_timed_and_recorded",
            &format!("every phase timed, rto_ms <= {DRILL_RTO_MS_THRESHOLD}; inventory last_verified_at set and last_verify_outcome equal to the drill's; audit ha.backup.verified"),
            obs.drill.as_ref().zip(obs.listed.as_ref()).zip(obs.audit_verified).map(|((run, listed), audited)| {
                let missing: Vec<&str> = DRILL_PHASES.iter().copied()
                    .filter(|phase| !run.stdout.contains(&format!("\nphase {phase} ms=")))
                    .collect();
                let rto = number(run, "rto_ms");
                let records: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap_or_default();
                let recorded = records.iter().any(|r| {
                    Some(r["backup_id"].as_str().unwrap_or_default()) == obs.backup_id.as_deref()
                        && r["last_verified_at"].is_string()
                        && r["last_verify_outcome"].as_str() == run.field("outcome").as_deref()
                });
                (missing.is_empty() && rto > 0 && rto <= DRILL_RTO_MS_THRESHOLD && recorded && audited >= 1,
                 Some(format!("rto_ms={rto}")),
                 format!("phases missing={missing:?} rto_ms={rto} inventory recorded={recorded} audit events={audited} (val19-03-verify.txt, val19-04-backup-list.txt, val19-audit.jsonl)"))
            })),
        check("VAL19-05", "data_changes_named", "a row changed, a row deleted, a row duplicated without a PK: each exits 1 naming its table alone",
            suite(&obs.mutations, &["row_changed", "row_deleted", "row_duplicated_without_pk"], "val19-mutation-row_*.txt")),
        check("VAL19-06", "schema_changes_named",
            "an index dropped, a trigger dropped, a trigger disabled, a function body changed, a constraint dropped, a column default changed: each exits 1 naming its object alone",
            suite(&obs.mutations, &["index_dropped", "trigger_dropped", "trigger_disabled", "function_body_changed", "constraint_dropped", "column_default_changed"], "val19-mutation-*.txt")),
        check("VAL19-07", "sequence_and_large_object_named", "a sequence reset, a large object altered: each exits 1 naming it alone",
            suite(&obs.mutations, &["sequence_reset", "large_object_altered"], "val19-mutation-sequence_reset.txt, val19-mutation-large_object_altered.txt")),
        check("VAL19-08", "physical_reorder_not_reported", "CLUSTER and VACUUM FULL: verify exits 0, proven",
            suite(&obs.reorders, &["cluster", "vacuum_full"], "val19-reorder-*.txt")),
        check("VAL19-09", "damaged_backup_named", "an archive byte flipped, a manifest baseline edited: each exits 1 naming the file",
            suite(&obs.damaged, &["archive_byte_flipped", "manifest_baseline_edited"], "val19-09-*.txt")),
        check("VAL19-10", "live_database_never_touched", "verify --proof-only of the live database exits 2 naming autonomy_ha; the live database is unchanged by every drill; no scratch database left",
            obs.live_target.as_ref().zip(obs.live_before_drills.as_ref()).zip(obs.live_after_drills.as_ref()).zip(obs.leftover_at_end.as_ref())
                .map(|(((run, before), after), left)| {
                    let refused = run.exit_code == Some(2) && run.stderr.contains("autonomy_ha");
                    let changes = before.diff(after);
                    (refused && changes.is_empty() && left.is_empty(),
                     None,
                     format!("live target exit={:?} refused={refused}; live changes={changes:?}; left behind={left:?} (val19-10-verify-live-target.txt)", run.exit_code))
                })),
    ]
}
