//! VAL17's ten checks (issue 4, seed 004), each computed from the phases' observations alone.

use autonomy::evidence::Check;

use super::observations::Observations;
use crate::{
    verdict::{Judge, Verdict},
    watch::{dual_leaders, StatusSample},
};

/// Seed 004: loss detected and recovery detected within 30 s each.
pub const LOSS_DETECTION_MS_THRESHOLD: u64 = 30_000;
pub const RECOVERY_MS_THRESHOLD: u64 = 30_000;
/// A status answer during the loss must come within a second.
pub const STATUS_LATENCY_US_THRESHOLD: u64 = 1_000_000;
/// Answers per node the loss window must hold for VAL17-03/05 to mean something.
pub const MIN_SAMPLES_DURING_LOSS: usize = 10;

pub fn evaluate(judge: &Judge, obs: &Observations) -> Vec<Check> {
    vec![
        judge.check("VAL17-01", "baseline_healthy", "one leader accepting writes, one follower, both reaching the database, no write block; a write through the leader stored",
            baseline_healthy(obs)),
        judge.check("VAL17-02", "loss_detected", "every node reports db_reachable=false with writes blocked within 30,000 ms of the database going down",
            (!obs.detections.is_empty()).then(|| {
                let ms = obs.loss_detection_ms();
                (ms.is_some_and(|ms| ms <= LOSS_DETECTION_MS_THRESHOLD),
                 Some(ms.map_or("loss_detection_ms=none".into(), |ms| format!("loss_detection_ms={ms}"))),
                 format!("{} (val17-02-loss-detected.txt)", obs.detections.iter()
                     .map(|d| format!("{}: {:?} ms", d.node, d.detected_ms)).collect::<Vec<_>>().join(", ")))
            })),
        judge.check("VAL17-03", "write_block_active", "every status answered during the loss shows write_block_active=true and can_accept_protected_writes=false",
            during_loss(obs).map(|window| {
                let wrong: Vec<&&StatusSample> = window.iter().filter(|s| s.error.is_none()
                    && !(s.write_block_active == Some(true) && s.can_accept_protected_writes == Some(false))).collect();
                let per_node = answered_per_node(obs, &window);
                (wrong.is_empty() && per_node.iter().all(|(_, n)| *n >= MIN_SAMPLES_DURING_LOSS),
                 Some(format!("answers={} unblocked={}", window.iter().filter(|s| s.error.is_none()).count(), wrong.len())),
                 match wrong.first() {
                     Some(s) => format!("{} at {} us: write_block_active={:?} can_accept_protected_writes={:?} (val17-status-samples.jsonl)",
                                        s.node_id, s.sent_us, s.write_block_active, s.can_accept_protected_writes),
                     None => format!("answers per node {per_node:?}, at least {MIN_SAMPLES_DURING_LOSS} each (val17-status-samples.jsonl)"),
                 })
            })),
        judge.check("VAL17-04", "protected_write_refused", "a protected write to every node during the loss: 503 quorum_lost, and nothing stored",
            (!obs.refused_writes.is_empty()).then(|| {
                let ok = obs.refused_writes.len() == obs.detections.len()
                    && obs.refused_writes.iter().all(|w| w.answer.status == 503 && w.answer.code == "quorum_lost" && w.stored == Some(false));
                (ok, Some(obs.refused_writes.iter().map(|w| format!("{}:{} {}", w.node, w.answer.status, w.answer.code)).collect::<Vec<_>>().join(" ")),
                 format!("stored afterwards: {:?} (val17-04-refused-writes.txt)",
                         obs.refused_writes.iter().map(|w| (w.node.as_str(), w.stored)).collect::<Vec<_>>()))
            })),
        judge.check("VAL17-05", "status_served_during_loss", "every status request during the loss answered, each within 1,000 ms",
            during_loss(obs).map(|window| {
                let failed = window.iter().filter(|s| s.error.is_some() || s.latency_us() > STATUS_LATENCY_US_THRESHOLD).count();
                let slowest = window.iter().map(|s| s.latency_us()).max().unwrap_or(0);
                let per_node = answered_per_node(obs, &window);
                (failed == 0 && per_node.iter().all(|(_, n)| *n >= MIN_SAMPLES_DURING_LOSS),
                 Some(format!("requests={} failed_or_slow={failed} slowest_ms={}", window.len(), slowest / 1000)),
                 format!("answers per node {per_node:?} (val17-status-samples.jsonl)"))
            })),
        judge.check("VAL17-06", "recovery_detected", "from the database accepting connections again to both nodes reaching it with one leader accepting writes: within 30,000 ms",
            obs.accepting_us.map(|_| {
                (obs.recovery_ms.is_some_and(|ms| ms <= RECOVERY_MS_THRESHOLD),
                 Some(obs.recovery_ms.map_or("recovery_ms=none".into(), |ms| format!("recovery_ms={ms}"))),
                 "val17-06-recovery.txt".into())
            })),
        judge.check("VAL17-07", "writes_resume", "after the recovery a protected write through the leader: 201 at an epoch above the one before the loss, and stored",
            obs.resumed_write.as_ref().map(|w| {
                let newer = w.epoch.zip(obs.epoch_before()).is_some_and(|(after, before)| after > before);
                (w.answer.created() && newer && w.stored == Some(true),
                 Some(format!("status={} epoch={:?}", w.answer.status, w.epoch)),
                 format!("through {}; epoch before the loss {:?}; stored={:?} (val17-06-recovery.txt)", w.node, obs.epoch_before(), w.stored))
            })),
        judge.check("VAL17-08", "single_leader_after_recovery", "after the recovery exactly one leader, followed by the other node at an epoch above the one before the loss; never two leaders in the whole slice",
            obs.settled.as_ref().map(|settled| {
                let leaders = settled.views.iter().filter(|v| v.is_leader()).count();
                let overlaps = dual_leaders(&obs.samples);
                let newer = obs.epoch_before().is_some_and(|before| settled.epoch > before);
                (leaders == 1 && crate::cluster::agreed(&settled.views) && newer && overlaps.is_empty(),
                 Some(format!("leader={} epoch={}", settled.leader, settled.epoch)),
                 format!("epoch before the loss {:?}; leaders={leaders}; overlapping leaders in the samples={} (val17-06-recovery.txt)",
                         obs.epoch_before(), overlaps.len()))
            })),
        judge.check("VAL17-09", "pre_loss_data_intact", "every row stored before the loss is there afterwards, unchanged (id, name, epoch, writer, spec)",
            (!obs.pre_loss_rows.is_empty() && !obs.post_rows.is_empty()).then(|| {
                let missing: Vec<_> = obs.pre_loss_rows.iter().filter(|r| !obs.post_rows.contains(r)).collect();
                (missing.is_empty(),
                 Some(format!("rows_before={} missing_or_changed={}", obs.pre_loss_rows.len(), missing.len())),
                 match missing.first() {
                     Some(r) => format!("row {} `{}` missing or changed (val17-09-rows-*.txt)", r.id, r.name),
                     None => "val17-09-rows-before-loss.txt, val17-09-rows-at-end.txt".into(),
                 })
            })),
        judge.check("VAL17-10", "audit_events_captured", "every node audited ha.quorum.lost and ha.quorum.restored; the leader's step-down and a new acquisition audited",
            (!obs.audit.is_empty()).then(|| audit_captured(obs))),
    ]
}

fn baseline_healthy(obs: &Observations) -> Option<Verdict> {
    let baseline = obs.baseline.as_ref()?;
    let write = obs.baseline_write.as_ref()?;
    let views = &baseline.views;
    let accepting = views
        .iter()
        .filter(|v| v.can_accept_protected_writes == Some(true))
        .count();
    let healthy = views
        .iter()
        .all(|v| v.db_reachable == Some(true) && v.write_block_active == Some(false));
    let stored = obs.pre_loss_rows.iter().any(|r| r.name == write.name);
    Some((
        crate::cluster::agreed(views) && accepting == 1 && healthy && write.answer.created() && stored,
        Some(format!("leader={} epoch={}", baseline.leader, baseline.epoch)),
        format!(
            "accepting={accepting} all reachable and unblocked={healthy}; write {} -> {} stored={stored} (val17-01-baseline.txt)",
            write.name, write.answer.status
        ),
    ))
}

/// Samples sent while the database was down, from each node's detection on (before it, a
/// node may still rightly report the old state).
fn during_loss(obs: &Observations) -> Option<Vec<&StatusSample>> {
    obs.outage_started_us?;
    let ended = obs.restart_issued_us?;
    let window: Vec<&StatusSample> = obs
        .samples
        .iter()
        .filter(|s| s.sent_us < ended)
        .filter(|s| {
            obs.detections
                .iter()
                .any(|d| d.node == s.node_id && d.detected_at_us.is_some_and(|at| s.sent_us >= at))
        })
        .collect();
    Some(window)
}

fn answered_per_node(obs: &Observations, window: &[&StatusSample]) -> Vec<(String, usize)> {
    obs.detections
        .iter()
        .map(|d| {
            let answered = window
                .iter()
                .filter(|s| s.node_id == d.node && s.error.is_none())
                .count();
            (d.node.clone(), answered)
        })
        .collect()
}

fn audit_captured(obs: &Observations) -> Verdict {
    let count = |node: &str, kind: &str| {
        obs.audit
            .iter()
            .filter(|e| e.node == node && e.event_type == kind)
            .count()
    };
    let nodes: Vec<&str> = obs.detections.iter().map(|d| d.node.as_str()).collect();
    let quorum = nodes
        .iter()
        .all(|n| count(n, "ha.quorum.lost") >= 1 && count(n, "ha.quorum.restored") >= 1);
    let leader = obs.baseline.as_ref().map(|b| b.leader.as_str()).unwrap_or_default();
    let epoch_before = obs.epoch_before().unwrap_or(i64::MAX);
    // The step-down of the term the outage ended, not any other.
    let stepped_down = obs.audit.iter().any(|e| {
        e.node == leader
            && e.event_type == "ha.leader.stepped_down"
            && e.details["epoch"].as_i64() == Some(epoch_before)
    });
    let reacquired = obs.audit.iter().any(|e| {
        e.event_type == "ha.leader.acquired" && e.details["epoch"].as_i64().is_some_and(|epoch| epoch > epoch_before)
    });
    let summary: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "{n}: lost={} restored={} stepped_down={}",
                count(n, "ha.quorum.lost"),
                count(n, "ha.quorum.restored"),
                count(n, "ha.leader.stepped_down")
            )
        })
        .collect();
    (
        quorum && stepped_down && reacquired,
        Some(format!("events={}", obs.audit.len())),
        format!(
            "{}; acquired above epoch {epoch_before}: {reacquired} (val17-audit-events.json)",
            summary.join("; ")
        ),
    )
}
