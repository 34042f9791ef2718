//! Renders command results as `key=value` text lines or as JSON.

use serde::Serialize;

use crate::{
    audit::AuditEvent,
    backup::{drill::VerifyReport, manifest::RestoreReport, proof::Difference, BackupRecord},
    cli::{args::OutputFormat, cluster::ClusterView},
    evidence::{lag::DerivedThresholds, Outcome, Report},
    ha::{rollouts::Rollout, StatusReport},
};

pub(super) fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("output values always serialise")
}

/// A list: JSON as it is, or one text line per item (`empty` when there are none).
fn listing<T: Serialize>(items: &[T], format: OutputFormat, empty: &str, line: impl Fn(&T) -> String) -> String {
    match format {
        OutputFormat::Json => json(&items),
        OutputFormat::Text if items.is_empty() => empty.to_owned(),
        OutputFormat::Text => items.iter().map(line).collect::<Vec<_>>().join("\n"),
    }
}

pub(super) fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string)
}

pub fn backup(record: &BackupRecord, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(record),
        OutputFormat::Text => format!(
            "backup_id={} status={} checksum={} size_bytes={} duration_ms={}",
            record.backup_id,
            record.status.as_str(),
            opt(&record.checksum),
            opt(&record.size_bytes),
            opt(&record.duration_ms),
        ),
    }
}

/// `reindexed manifests= added=`, then a `foreign <name>` line for each object that is not a
/// backup's.
pub fn reindex(report: &crate::api::ReindexReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(report),
        OutputFormat::Text => {
            let mut out = format!("reindexed manifests={} added={}", report.manifests, report.added);
            for name in &report.foreign_objects {
                out.push_str(&format!("\nforeign {name:?} (not a backup; left alone)"));
            }
            out
        }
    }
}

/// One line per backup: the record's figures, then whether its files are in the repository
/// (`files=archive_missing`, … for a completed backup that can no longer be restored) and its
/// last restore.
pub fn backups(records: &[BackupRecord], format: OutputFormat) -> String {
    listing(records, format, "no backups", |r| {
        let mut line = backup(r, format);
        if let Some(files) = r.files {
            line.push_str(&format!(" files={}", files.as_str()));
        }
        if let Some(outcome) = &r.last_restore_outcome {
            line.push_str(&format!(" last_restore={outcome}"));
        }
        if let Some(error) = &r.error {
            line.push_str(&format!(" error={error:?}"));
        }
        line
    })
}

pub fn restore(report: &RestoreReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(report),
        OutputFormat::Text => {
            let mut line = format!(
                "backup_id={} status={} checksum={} restore_ms={} terminated_sessions={} restore_id={}",
                report.backup_id,
                report.status.as_str(),
                report.checksum,
                report.restore_ms,
                report.terminated_sessions,
                report.restore_id
            );
            match &report.proof {
                None => line.push_str(" proof=none (the backup has no baseline)"),
                Some(proof) => {
                    line.push_str(&format!(
                        " proof={} tables_checked={} objects_checked={} differences={} proof_ms={}",
                        proof.outcome.as_str(),
                        proof.tables_checked,
                        proof.objects_checked,
                        proof.differences.len(),
                        proof.proof_ms
                    ));
                    if let Some(error) = &proof.error {
                        line.push_str(&format!("\nproof error: {error}"));
                    }
                    push_differences(&mut line, &proof.differences);
                }
            }
            line
        }
    }
}

/// The retention plan: `prune dry_run= kept= deleted=`, then per backup, newest first,
/// `backup_id= created_at= keep <rule>; <rule>` or `delete` (`deleted` once done).
pub fn prune(report: &crate::backup::prune::PruneReport, format: OutputFormat) -> String {
    if format == OutputFormat::Json {
        return json(report);
    }
    let doomed = report.entries.iter().filter(|e| e.deletes()).count();
    let mut text = format!(
        "prune dry_run={} kept={} {}={}",
        report.dry_run,
        report.entries.len() - doomed,
        if report.dry_run { "to_delete" } else { "deleted" },
        if report.dry_run { doomed } else { report.deleted.len() }
    );
    for entry in &report.entries {
        let created = entry
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let action = match (entry.deletes(), report.dry_run) {
            (true, true) => "delete".to_owned(),
            (true, false) => "deleted".to_owned(),
            (false, _) => {
                let rules: Vec<String> = entry.kept_by.iter().map(|r| r.describe()).collect();
                format!("keep {}", rules.join("; "))
            }
        };
        text.push_str(&format!(
            "\nbackup_id={} created_at={created} {action}",
            entry.backup_id
        ));
    }
    text
}

/// The drill's proof report: a summary line, a line per phase, a line per difference.
pub fn verify(report: &VerifyReport, format: OutputFormat) -> String {
    if format == OutputFormat::Json {
        return json(report);
    }
    let mut text = format!(
        "backup_id={} outcome={} rto_ms={} tables_checked={} objects_checked={} indexes_checked={} differences={} target={} kept={} manifest_sealed={}",
        report.backup_id,
        report.outcome.as_str(),
        opt(&report.rto_ms),
        report.tables_checked,
        report.objects_checked,
        report.indexes_checked,
        report.differences.len(),
        report.target,
        report.kept,
        report.manifest_sealed
    );
    if let Some(key) = &report.decrypted_with {
        text.push_str(&format!(" decrypted_with={key}"));
    }
    for phase in &report.phases {
        text.push_str(&format!("\nphase {} ms={}", phase.name.as_str(), phase.ms));
    }
    push_differences(&mut text, &report.differences);
    if !report.abandoned_dropped.is_empty() {
        text.push_str(&format!(
            "\ndropped scratch databases earlier drills abandoned: {}",
            report.abandoned_dropped.join(", ")
        ));
    }
    text
}

fn push_differences(text: &mut String, differences: &[Difference]) {
    for difference in differences {
        text.push_str(&format!(
            "\ndifference {}: expected `{}`, found `{}`",
            difference.object, difference.expected, difference.found
        ));
    }
}

pub fn status(report: &StatusReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(report),
        OutputFormat::Text => status_line(report),
    }
}

fn status_line(report: &StatusReport) -> String {
    let line = format!(
        "node_id={} role={} holder_id={} epoch={} lease_expires_in_ms={} can_accept_protected_writes={} \
         write_block_active={} maintenance_mode={} db_reachable={} version={}",
        report.node_id,
        report.role,
        opt(&report.holder_id),
        report.epoch,
        opt(&report.lease_expires_in_ms),
        report.can_accept_protected_writes,
        report.write_block_active,
        report.maintenance_mode,
        report.db_reachable,
        report.version
    );
    let mut lines = vec![line];
    if let Some(detected) = &report.split_brain {
        // Shown only when it happened: a rewritten lease row is rare and needs a human's look.
        lines.push(format!(
            "split_brain detected_at={} local_epoch={} store_epoch={} store_holder_id={}",
            detected
                .detected_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            detected.local_epoch,
            detected.store_epoch,
            opt(&detected.store_holder_id)
        ));
    }
    if report.lease_store.kind == "etcd" {
        let store = &report.lease_store;
        let healthy = store.endpoints.iter().filter(|e| e.healthy).count();
        lines.push(format!(
            "lease_store=etcd prefix={} endpoints_healthy={healthy}/{}",
            store.prefix.as_deref().unwrap_or("-"),
            store.endpoints.len()
        ));
        for endpoint in &store.endpoints {
            lines.push(format!(
                "etcd_endpoint {} healthy={} cluster_id={}{}",
                endpoint.endpoint,
                endpoint.healthy,
                opt(&endpoint.cluster_id),
                endpoint.error.as_ref().map_or(String::new(), |e| format!(" error={e}"))
            ));
        }
    }
    // Shown only when it fails: while it does, backups and restores are refused.
    if !report.audit.writable {
        lines.push(format!(
            "audit writable=false failed_at={} error={}",
            report
                .audit
                .failed_at
                .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| "-".into()),
            opt(&report.audit.last_error)
        ));
    }
    for warning in &report.warnings {
        lines.push(format!("warning {warning}"));
    }
    // Shown once there is something to say: a standby, or a sampling error.
    if let Some(health) = report.replication_health {
        lines.push(format!("replication health={health}"));
    }
    for standby in &report.replication {
        lines.push(format!(
            "standby {} state={} health={} write_lag_ms={:.3} flush_lag_ms={:.3} replay_lag_ms={:.3} byte_lag={} replay_lsn={} ({})",
            standby.application_name,
            standby.state,
            standby.health,
            standby.lag.write_lag_ms,
            standby.lag.flush_lag_ms,
            standby.lag.replay_lag_ms,
            opt(&standby.byte_lag),
            opt(&standby.positions.replay_lsn),
            standby.reason
        ));
    }
    if let Some(error) = &report.replication_sample.error {
        lines.push(format!("replication sample failed: {error}"));
    }
    lines.join("\n")
}

/// `ha lag-thresholds`: the derivation shown step by step, then the node's flags.
pub fn lag_thresholds(derived: &DerivedThresholds, report: &Report, format: OutputFormat) -> String {
    if format == OutputFormat::Json {
        return json(derived);
    }
    let mut text = format!(
        "DERIVED lag thresholds (seed 004), not targets: recalibrate against production write_lag before alerting.\n\
         source: {} run {} backend {} outcome {} generated {}\n\
         observed_p95 = max(idle_p95 {} ms, light_p95 {} ms) = {} ms\n\
         healthy_ms   = max(observed_p95 x 3 + 1, 10) = {}\n\
         degraded_ms  = max(healthy_ms x 10, 100)     = {}\n\
         alert_ms     = max(healthy_ms x 50, 500)     = {}  (page from an alerting rule above this)\n\
         node flags: --lag-healthy-ms {} --lag-degraded-ms {}",
        report.slice,
        report.run_id,
        report.backend,
        report.outcome,
        report
            .generated_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        derived.idle_p95_ms,
        derived.light_p95_ms,
        derived.observed_p95_ms,
        derived.healthy_ms,
        derived.degraded_ms,
        derived.alert_ms,
        derived.healthy_ms,
        derived.degraded_ms
    );
    if report.outcome != Outcome::Pass {
        text.push_str(&format!(
            "\nwarning: the report's outcome is {}; thresholds from a run that did not pass may be wrong",
            report.outcome
        ));
    }
    text
}

pub fn cluster(view: &ClusterView, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(view),
        OutputFormat::Text => {
            let mut lines: Vec<String> = view
                .nodes
                .iter()
                .map(|node| match (&node.status, &node.error) {
                    (Some(status), _) => format!("server={} {}", node.server, status_line(status)),
                    (None, error) => format!("server={} error={}", node.server, opt(error)),
                })
                .collect();
            lines.push(format!(
                "cluster leaders={} agree={} holder_id={} epoch={}",
                if view.leaders.is_empty() {
                    "-".to_owned()
                } else {
                    view.leaders.join(",")
                },
                view.agree,
                opt(&view.holder_id),
                opt(&view.epoch),
            ));
            lines.join("\n")
        }
    }
}

pub fn rollout(rollout: &Rollout, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(rollout),
        OutputFormat::Text => format!(
            "id={} name={} epoch={} leader_id={} created_at={} spec={}",
            rollout.id,
            rollout.name,
            rollout.epoch,
            rollout.leader_id,
            rollout
                .created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            rollout.spec
        ),
    }
}

pub fn rollouts(rollouts: &[Rollout], format: OutputFormat) -> String {
    listing(rollouts, format, "no rollouts", |r| rollout(r, format))
}

pub fn events(events: &[AuditEvent], format: OutputFormat) -> String {
    listing(events, format, "no events", |e| {
        let time = e
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        format!(
            "{time} {} node_id={} id={} {}",
            e.event_type, e.node_id, e.id, e.details
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::{state::SplitBrain, Role};

    fn report(split_brain: Option<SplitBrain>) -> StatusReport {
        StatusReport {
            node_id: crate::ident::NodeId::parse("n1").unwrap(),
            role: Role::Follower,
            holder_id: Some("n2".into()),
            holder_address: None,
            epoch: 1002,
            lease_expires_in_ms: Some(4000),
            write_block_active: false,
            can_accept_protected_writes: false,
            last_renewed_at: None,
            maintenance_mode: false,
            db_reachable: true,
            split_brain,
            replication: Vec::new(),
            replication_health: None,
            replication_sample: Default::default(),
            audit: Default::default(),
            warnings: Vec::new(),
            lease_store: Default::default(),
            version: "0".into(),
        }
    }

    #[test]
    fn a_split_brain_gets_its_own_line_and_only_when_it_happened() {
        assert!(!status(&report(None), OutputFormat::Text).contains("split_brain"));
        let detected = SplitBrain {
            detected_at: time::macros::datetime!(2026-11-22 05:00:00 UTC),
            local_epoch: 1,
            store_epoch: 1001,
            store_holder_id: Some("rogue".into()),
        };
        let text = status(&report(Some(detected)), OutputFormat::Text);
        assert!(
            text.ends_with(
                "\nsplit_brain detected_at=2026-11-22T05:00:00Z local_epoch=1 store_epoch=1001 store_holder_id=rogue"
            ),
            "{text}"
        );
    }

    #[test]
    fn each_standby_gets_a_line_with_its_health_and_reason() {
        use crate::ha::replication::{Health, StandbyStatus};
        assert!(!status(&report(None), OutputFormat::Text).contains("replication"));
        let mut with_standby = report(None);
        with_standby.replication_health = Some(Health::Alert);
        with_standby.replication = vec![StandbyStatus::disconnected("s1".into(), Some("s1".into()), Some(4096))];
        let text = status(&with_standby, OutputFormat::Text);
        assert!(
            text.ends_with(
                "\nreplication health=alert\nstandby s1 state=disconnected health=alert write_lag_ms=0.000 \
                 flush_lag_ms=0.000 replay_lag_ms=0.000 byte_lag=4096 replay_lsn=- (disconnected: nothing streams from slot s1)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failing_audit_store_and_warnings_get_lines_of_their_own() {
        let healthy = status(&report(None), OutputFormat::Text);
        assert!(
            !healthy.contains("\naudit") && !healthy.contains("\nwarning"),
            "{healthy}"
        );
        let mut failing = report(None);
        failing.audit = crate::audit::AuditHealth {
            writable: false,
            last_error: Some("cannot write the audit log /a/n1.jsonl: Operation not permitted".into()),
            failed_at: Some(time::macros::datetime!(2026-12-01 09:00:00 UTC)),
        };
        failing.warnings = vec!["another process holds the leader lease under this node's id `n1`".into()];
        let text = status(&failing, OutputFormat::Text);
        assert!(
            text.ends_with(
                "\naudit writable=false failed_at=2026-12-01T09:00:00Z error=cannot write the audit log /a/n1.jsonl: \
                 Operation not permitted\nwarning another process holds the leader lease under this node's id `n1`"
            ),
            "{text}"
        );
    }
}
