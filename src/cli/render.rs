//! Renders command results as `key=value` text lines or as JSON.

use serde::Serialize;

use crate::{
    audit::AuditEvent,
    backup::{manifest::RestoreReport, BackupRecord},
    cli::args::OutputFormat,
    ha::StatusReport,
};

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("output values always serialise")
}

fn opt<T: ToString>(value: &Option<T>) -> String {
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

pub fn backups(records: &[BackupRecord], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(&records),
        OutputFormat::Text if records.is_empty() => "no backups".to_owned(),
        OutputFormat::Text => records.iter().map(|r| backup(r, format)).collect::<Vec<_>>().join("\n"),
    }
}

pub fn restore(report: &RestoreReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(report),
        OutputFormat::Text => format!(
            "backup_id={} status={} checksum={} restore_ms={} terminated_sessions={}",
            report.backup_id, report.status, report.checksum, report.restore_ms, report.terminated_sessions
        ),
    }
}

pub fn status(report: &StatusReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(report),
        OutputFormat::Text => format!(
            "node_id={} role={} holder_id={} epoch={} maintenance_mode={} db_reachable={} version={}",
            report.node_id,
            report.role,
            opt(&report.holder_id),
            report.epoch,
            report.maintenance_mode,
            report.db_reachable,
            report.version
        ),
    }
}

pub fn events(events: &[AuditEvent], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(&events),
        OutputFormat::Text if events.is_empty() => "no events".to_owned(),
        OutputFormat::Text => events
            .iter()
            .map(|e| {
                let time = e
                    .time
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                format!(
                    "{time} {} node_id={} id={} {}",
                    e.event_type, e.node_id, e.id, e.details
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}
