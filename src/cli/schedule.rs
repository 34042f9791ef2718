//! Renders `ha schedule`: a line per schedule, then its last run, its next slots and what it missed.

use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use super::{
    args::OutputFormat,
    render::{json, opt},
};
use crate::api::{ScheduleReport, SlotRecord};

fn at(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// `slot kind= slot_at= state= attempt= node_id= epoch= backup_id= detail="…"`.
fn slot_line(label: &str, slot: &SlotRecord) -> String {
    let mut line = format!(
        "{label} kind={} slot_at={} state={} attempt={} node_id={} epoch={} backup_id={}",
        slot.kind.as_str(),
        at(slot.slot_at),
        slot.state.as_str(),
        slot.attempt,
        slot.node_id,
        slot.epoch,
        opt(&slot.backup_id),
    );
    if let Some(detail) = &slot.detail {
        line.push_str(&format!(" detail={detail:?}"));
    }
    line
}

/// `schedule kind= expression="…" timezone= grace_s= next=…,…,… missed_total=`, then the
/// `last` slot, then each recorded `missed` one.
pub fn render(report: &ScheduleReport, format: OutputFormat) -> String {
    if format == OutputFormat::Json {
        return json(report);
    }
    let mut lines = vec![format!(
        "node_id={} leader={} timezone={} grace_s={}",
        report.node_id, report.leader, report.timezone, report.grace_s
    )];
    for view in &report.schedules {
        let next: Vec<String> = view.next_slots.iter().copied().map(at).collect();
        lines.push(format!(
            "schedule kind={} expression={} next={} missed_total={}",
            view.kind.as_str(),
            view.expression
                .as_ref()
                .map_or_else(|| "none".to_owned(), |e| format!("{e:?}")),
            if next.is_empty() {
                "-".to_owned()
            } else {
                next.join(",")
            },
            view.missed_total,
        ));
        if let Some(last) = &view.last_run {
            lines.push(slot_line("last", last));
        }
        lines.extend(view.missed.iter().map(|slot| slot_line("missed", slot)));
    }
    lines.join("\n")
}
