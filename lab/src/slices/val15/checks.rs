//! VAL15's ten checks (seed 000), each computed from the phases' observations alone.

use autonomy::evidence::Check;

use super::slice::{Observations, BACKUP_MS_THRESHOLD, RESTORE_MS_THRESHOLD};
use crate::{
    cli::CliRun,
    verdict::{Judge, Verdict},
};

pub fn tf(value: bool) -> &'static str {
    if value {
        "t"
    } else {
        "f"
    }
}

pub fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "-".into(), ToString::to_string)
}

/// The ten checks of seed 000, each from the observations alone.
pub fn evaluate(judge: &Judge, obs: &Observations) -> Vec<Check> {
    let check =
        |id: &str, name: &str, threshold: &str, verdict: Option<Verdict>| judge.check(id, name, threshold, verdict);
    let listed_ids = |run: &CliRun| -> Vec<(String, String)> {
        serde_json::from_str::<Vec<serde_json::Value>>(&run.stdout)
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    r["backup_id"].as_str().unwrap_or_default().to_owned(),
                    r["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let cli_checksum = obs.backup_a.as_ref().and_then(|r| r.field("checksum"));

    vec![
        check("VAL15-01", "backup_created", ".dump file exists and size > 0; CLI exits 0",
            obs.backup_a.as_ref().map(|run| {
                let size = obs.archive_a_size.unwrap_or(0);
                (run.success() && size > 0, Some(format!("size_bytes={size}")),
                 format!("exit={:?}, archive size {size} bytes (val15-01-backup-create.txt, val15-01-backup-file-stat.txt)", run.exit_code))
            })),
        check("VAL15-02", "backup_file_valid", "pg_restore -l exits 0; output contains TABLE DATA",
            obs.toc.as_ref().map(|(ok, text)| {
                let has_data = text.contains("TABLE DATA");
                (*ok && has_data, None, format!("pg_restore --list ok={ok}, TABLE DATA present={has_data} (val15-02-backup-toc.txt)"))
            })),
        check("VAL15-03", "backup_metadata_correct", "ha backup list --output json contains backup_id with status=completed",
            obs.list_first.as_ref().zip(obs.backup_a_id.as_ref()).map(|(run, id)| {
                let found = listed_ids(run).iter().any(|(b, s)| b == id && s == "completed");
                (run.success() && found, None, format!("{id} listed as completed: {found} (val15-03-backup-list.txt)"))
            })),
        check("VAL15-04", "checksum_verified", "CLI-reported checksum == SHA-256 of .dump file",
            obs.archive_a_sha256.as_ref().map(|file| {
                let cli = cli_checksum.clone().unwrap_or_default();
                (cli.len() == 64 && &cli == file, None, format!("cli_checksum={cli} file_checksum={file} (val15-04-checksum-verify.txt)"))
            })),
        check("VAL15-05", "backup_timing_bound", "backup_ms <= 30000",
            obs.backup_a.as_ref().map(|run| {
                (run.success() && run.elapsed_ms <= BACKUP_MS_THRESHOLD, Some(format!("backup_ms={}", run.elapsed_ms)),
                 format!("backup took {} ms, exit={:?} (val15-05-backup-timing.txt)", run.elapsed_ms, run.exit_code))
            })),
        check("VAL15-06", "restore_correct", "post-restore small_count=100, medium_count=1000, both payload checks = t; content and catalog fingerprint equal to the pre-backup one",
            obs.spot_check.zip(obs.fingerprint_after.as_ref()).map(|(spot, after)| {
                let diff = obs.fingerprint_before.as_ref().map(|b| b.diff(after)).unwrap_or_else(|| vec!["no pre-backup fingerprint".into()]);
                let ok = spot == (100, 1000, true, true) && diff.is_empty() && obs.restore.as_ref().is_some_and(CliRun::success);
                (ok, Some(format!("{}|{}|{}|{}", spot.0, spot.1, tf(spot.2), tf(spot.3))),
                 format!("fingerprint differences: {} (val15-06-integrity-result.txt)", if diff.is_empty() { "none".into() } else { diff.join("; ") }))
            })),
        check("VAL15-07", "restore_timing_bound", "restore_ms <= 60000",
            obs.restore.as_ref().map(|run| {
                (run.success() && run.elapsed_ms <= RESTORE_MS_THRESHOLD, Some(format!("restore_ms={}", run.elapsed_ms)),
                 format!("restore took {} ms, exit={:?} (val15-07-restore-timing.txt, val15-06-restore.txt)", run.elapsed_ms, run.exit_code))
            })),
        check("VAL15-08", "multi_backup_inventory", "ha backup list shows count >= 2 with both backup IDs present",
            obs.list_multi.as_ref().map(|run| {
                let listed = listed_ids(run);
                let both = [obs.backup_a_id.as_ref(), obs.backup_b_id.as_ref()]
                    .iter()
                    .all(|id| id.is_some_and(|id| listed.iter().any(|(b, s)| b == id && s == "completed")));
                (run.success() && listed.len() >= 2 && both, Some(format!("multi_backup_count={}", listed.len())),
                 format!("both backup ids listed as completed: {both} (val15-08-backup-list-multi.txt)"))
            })),
        check("VAL15-09", "restore_requires_confirm", "restore without --confirm exits non-zero, mentions --confirm, and changes nothing",
            obs.no_confirm.as_ref().map(|run| {
                let refused = !run.success();
                let mentions = format!("{}{}", run.stdout, run.stderr).contains("--confirm");
                let unchanged = obs.fingerprint_mutated.is_some() && obs.fingerprint_mutated == obs.fingerprint_after_no_confirm;
                (refused && mentions && unchanged, Some(format!("exit={}", opt(&run.exit_code))),
                 format!("refused={refused} mentions --confirm={mentions} database unchanged={unchanged} (val15-09-restore-no-confirm.txt)"))
            })),
        check("VAL15-10", "audit_events_captured", ">= 1 ha.backup.created and >= 1 ha.backup.restored event in the audit store",
            obs.audit_created.zip(obs.audit_restored).map(|(created, restored)| {
                (created >= 1 && restored >= 1, Some(format!("created={created} restored={restored}")),
                 "val15-10-audit-check.txt".into())
            })),
    ]
}
