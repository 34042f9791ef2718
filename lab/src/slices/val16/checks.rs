//! VAL16's ten checks (issue 4, seed 004), each computed from the phases' observations alone.

use std::collections::{BTreeMap, BTreeSet};

use autonomy::evidence::Check;

use super::{
    observations::{Observations, Partition},
    slice::LEASE_TTL_MS,
};
use crate::{
    cluster::{agreed, StoredRow},
    verdict::misattributed_rows,
    verdict::{Judge, Verdict},
    watch::dual_leaders,
};

pub fn evaluate(judge: &Judge, obs: &Observations) -> Vec<Check> {
    let on_etcd = obs.lease_store == "etcd";
    let partition_threshold = if on_etcd {
        "with iptables dropping the leader's traffic to PostgreSQL, and then (PostgreSQL reachable) to etcd, in its own network namespace: each time it blocks writes before the follower takes over at a higher epoch; no row of the new epoch is older than one of the old; it rejoins as follower after the heal"
    } else {
        "with iptables dropping the leader's traffic to PostgreSQL in its own network namespace: it blocks writes before the follower takes over at a higher epoch; no row of the new epoch is older than one of the old; it rejoins as follower after the heal"
    };
    let stale_threshold = if on_etcd {
        "no row committed under the stale epoch after the successor raised the database's fence, none under the rogue epoch, and every row's epoch held by its writer"
    } else {
        "no row committed under the stale epoch after the injection, none under the rogue epoch, and every row's epoch held by its writer"
    };
    vec![
        judge.check("VAL16-01", "baseline_single_leader", "exactly one leader, every other node its follower at the same epoch",
            obs.baseline.as_ref().map(|b| (agreed(&b.views), Some(format!("leader={} epoch={}", b.leader, b.epoch)), "val16-01-baseline.txt".into()))),
        judge.check("VAL16-02", "epoch_divergence_detected", "after a rogue holder and epoch are written into the lease row, the leader reports the split brain (its epoch, the store's) within one renew interval",
            obs.injection.as_ref().zip(obs.divergence.as_ref()).map(|(i, d)| {
                let reported = d.reported == Some((i.stale_epoch, i.injected_epoch));
                (reported && d.detected_ms.is_some_and(|ms| ms <= i.renew_interval_ms),
                 Some(d.detected_ms.map_or("detection_ms=none".into(), |ms| format!("detection_ms={ms}"))),
                 format!("{} reported split_brain {:?}, expected ({}, {}); renew interval {} ms (val16-02-divergence.txt)",
                         i.stale_leader, d.reported, i.stale_epoch, i.injected_epoch, i.renew_interval_ms))
            })),
        judge.check("VAL16-03", "stale_leader_stepped_down", "the leader whose lease row was rewritten stops reporting leader within one renew interval",
            obs.injection.as_ref().zip(obs.divergence.as_ref()).map(|(i, d)| {
                (d.stepped_down_ms.is_some_and(|ms| ms <= i.renew_interval_ms),
                 Some(d.stepped_down_ms.map_or("stepped_down_ms=none".into(), |ms| format!("stepped_down_ms={ms}"))),
                 format!("{} at epoch {}; renew interval {} ms (val16-02-divergence.txt)", i.stale_leader, i.stale_epoch, i.renew_interval_ms))
            })),
        judge.check("VAL16-04", "stale_writes_rejected", stale_threshold,
            obs.injection.as_ref().filter(|_| !obs.rows.is_empty()).map(|i| {
                let stale_now = obs.rows.iter().filter(|r| r.epoch == i.stale_epoch).count() as i64;
                let rogue = obs.rows.iter().filter(|r| r.epoch == i.injected_epoch).count();
                let misattributed = misattributed_rows(&obs.rows, &obs.lease_history);
                (stale_now == i.stale_rows_at_injection && rogue == 0 && misattributed.is_empty(),
                 Some(format!("stale_epoch_rows={} at_injection={}", stale_now, i.stale_rows_at_injection)),
                 match misattributed.first() {
                     Some((row, why)) => format!("row {} `{}`: {why} (val16-rows-and-lease-history.txt)", row.id, row.name),
                     None => format!("rows at rogue epoch {}: {rogue} (val16-rows-and-lease-history.txt)", i.injected_epoch),
                 })
            })),
        judge.check("VAL16-05", "recovered_single_leader", "after the injection one leader again, followed by every node, at an epoch above the injected one",
            obs.recovered.as_ref().zip(obs.injection.as_ref()).map(|(r, i)| {
                (agreed(&r.views) && r.epoch > i.injected_epoch,
                 Some(format!("leader={} epoch={} recovery_ms={}", r.leader, r.epoch, obs.recovery_ms.unwrap_or_default())),
                 format!("injected epoch {} (val16-05-recovered.txt)", i.injected_epoch))
            })),
        judge.check("VAL16-06", "user_data_integrity", "every row from before the injection unchanged at the end; every acknowledged write stored as acknowledged; no row the clients did not send",
            (!obs.pre_rows.is_empty() && !obs.rows.is_empty()).then(|| data_integrity(obs))),
        judge.check("VAL16-07", "paused_leader_fenced", "a leader frozen (SIGSTOP) past its TTL: the other node takes over at a higher epoch; the resumed node refuses the write that waited for it and commits nothing more; its last row is older than the successor's first",
            obs.pause.as_ref().map(|p| {
                let taken = p.takeover.at_a_newer_epoch();
                let refused = p.pending_write.as_ref().is_some_and(|w| w.answer.status == 503 && w.stored == Some(false));
                let nothing_more = p.rows_at_end == Some(p.rows_at_takeover);
                let gap = p.takeover.write_gap_us(&obs.rows);
                (taken && refused && nothing_more && p.paused_ms > LEASE_TTL_MS && gap.is_some_and(|g| g >= 0)
                     && p.role_after_resume.as_deref() != Some("leader"),
                 Some(format!("takeover_ms={} write_gap_ms={}", p.takeover.takeover_ms.map_or("none".into(), |ms| ms.to_string()), gap_ms(gap))),
                 format!("{} paused {} ms at epoch {}; successor epoch {:?}; pending write {:?}; rows at its epoch {} -> {:?}; role after resume {:?} (val16-07-paused-leader.txt)",
                         p.takeover.old_leader, p.paused_ms, p.takeover.old_epoch, p.takeover.new_epoch,
                         p.pending_write.as_ref().map(|w| (w.answer.status, w.answer.code.as_str(), w.stored)),
                         p.rows_at_takeover, p.rows_at_end, p.role_after_resume))
            })),
        match &obs.partition_skipped {
            Some(reason) => judge.skip("VAL16-08", "network_partition", partition_threshold, reason),
            None => judge.check("VAL16-08", "network_partition", partition_threshold,
                obs.partition.as_ref().filter(|_| !on_etcd || obs.partition_from_etcd.is_some()).map(|p| {
                    let cuts: Vec<(&str, &Partition)> = std::iter::once(("PostgreSQL", p))
                        .chain(obs.partition_from_etcd.as_ref().map(|e| ("etcd", e)))
                        .collect();
                    let held = |p: &Partition| {
                        let blocked_first = p.blocked_ms.zip(p.takeover.takeover_ms).is_some_and(|(b, t)| b < t);
                        let gap = p.takeover.write_gap_us(&obs.rows);
                        blocked_first && p.takeover.at_a_newer_epoch() && gap.is_some_and(|g| g >= 0)
                            && p.role_after_heal.as_deref() == Some("follower")
                    };
                    let measured = |(from, p): &(&str, &Partition)| {
                        format!("{from}: blocked_ms={} takeover_ms={} write_gap_ms={}",
                                p.blocked_ms.map_or("none".into(), |ms| ms.to_string()),
                                p.takeover.takeover_ms.map_or("none".into(), |ms| ms.to_string()),
                                gap_ms(p.takeover.write_gap_us(&obs.rows)))
                    };
                    (cuts.iter().all(|(_, p)| held(p)),
                     Some(cuts.iter().map(measured).collect::<Vec<_>>().join("; ")),
                     cuts.iter().map(|(from, p)| format!("cut from {from}: {} at epoch {} -> {:?} at {:?}; role after heal {:?}",
                             p.takeover.old_leader, p.takeover.old_epoch, p.takeover.successor, p.takeover.new_epoch, p.role_after_heal))
                         .collect::<Vec<_>>().join("; ") + " (val16-08-partition.txt)")
                })),
        },
        judge.check("VAL16-09", "no_dual_leader", "status of every node polled every 50 ms through the whole slice never shows two leaders at once",
            (!obs.samples.is_empty()).then(|| {
                let overlaps = dual_leaders(&obs.samples);
                let leaders: BTreeSet<&str> = obs.samples.iter().filter(|s| s.is_leader()).map(|s| s.node_id.as_str()).collect();
                (overlaps.is_empty() && leaders.len() >= 2,
                 Some(format!("samples={} overlaps={}", obs.samples.len(), overlaps.len())),
                 match overlaps.first() {
                     Some((a, b)) => format!("{} claimed epoch {:?} at {} us while {} led epoch {:?} (val16-status-samples.jsonl)",
                                             a.node_id, a.epoch, a.sent_us, b.node_id, b.epoch),
                     None => format!("leaders seen: {leaders:?} (val16-status-samples.jsonl)"),
                 })
            })),
        judge.check("VAL16-10", "audit_events_captured", "audited: the split brain (with both epochs), every forced step-down, the partitioned node's lost database, an acquisition above the injected epoch",
            (!obs.audit.is_empty()).then(|| audit_captured(obs))),
    ]
}

fn gap_ms(gap_us: Option<i64>) -> String {
    gap_us.map_or("none".into(), |us| format!("{:.1}", us as f64 / 1000.0))
}

fn data_integrity(obs: &Observations) -> Verdict {
    let changed: Vec<&StoredRow> = obs.pre_rows.iter().filter(|r| !obs.rows.contains(r)).collect();
    let by_name: BTreeMap<&str, &StoredRow> = obs.rows.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut sent: BTreeSet<&str> = obs.writes.iter().map(|w| w.name.as_str()).collect();
    sent.extend(obs.pre_rows.iter().map(|r| r.name.as_str()));
    if let Some(write) = obs.pause.as_ref().and_then(|p| p.pending_write.as_ref()) {
        sent.insert(write.name.as_str());
    }
    let acknowledged: Vec<_> = obs
        .writes
        .iter()
        .filter_map(|w| w.acknowledged.as_ref().map(|a| (w.name.as_str(), a)))
        .collect();
    let wrong_ack: Vec<&str> = acknowledged
        .iter()
        .filter(|(name, ack)| {
            !by_name
                .get(name)
                .is_some_and(|r| r.id == ack.id && r.epoch == ack.epoch && r.leader_id == ack.leader_id)
        })
        .map(|(name, _)| *name)
        .collect();
    let unknown: Vec<&str> = obs
        .rows
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| !sent.contains(n))
        .collect();
    (
        changed.is_empty() && wrong_ack.is_empty() && unknown.is_empty() && !acknowledged.is_empty(),
        Some(format!(
            "rows_before={} rows_after={} acknowledged={}",
            obs.pre_rows.len(),
            obs.rows.len(),
            acknowledged.len()
        )),
        format!(
            "changed or lost from before: {:?}; acknowledged but not stored as acknowledged: {:?}; rows nobody sent: {:?} (val16-06-rows-before.txt, val16-writes.jsonl, val16-rows-and-lease-history.txt)",
            changed.iter().map(|r| r.name.as_str()).take(5).collect::<Vec<_>>(),
            wrong_ack.iter().take(5).collect::<Vec<_>>(),
            unknown.iter().take(5).collect::<Vec<_>>()
        ),
    )
}

fn audit_captured(obs: &Observations) -> Verdict {
    let has = |node: &str, kind: &str| obs.audit.iter().any(|e| e.node == node && e.event_type == kind);
    // A step-down of that very term, not any earlier one of the node's.
    let stepped_down = |node: &str, epoch: i64| {
        obs.audit.iter().any(|e| {
            e.node == node && e.event_type == "ha.leader.stepped_down" && e.details["epoch"].as_i64() == Some(epoch)
        })
    };
    let injection = obs.injection.as_ref();
    let split_brain = injection.is_some_and(|i| {
        obs.audit.iter().any(|e| {
            e.node == i.stale_leader
                && e.event_type == "ha.split_brain.detected"
                && e.details["local_epoch"].as_i64() == Some(i.stale_epoch)
                && e.details["store_epoch"].as_i64() == Some(i.injected_epoch)
        })
    });
    let stale_stepped_down = injection.is_some_and(|i| stepped_down(&i.stale_leader, i.stale_epoch));
    let paused_stepped_down = obs
        .pause
        .as_ref()
        .is_some_and(|p| stepped_down(&p.takeover.old_leader, p.takeover.old_epoch));
    let partitioned = match (&obs.partition_skipped, &obs.partition) {
        (Some(_), _) => true,
        (None, Some(p)) => [Some(p), obs.partition_from_etcd.as_ref()]
            .into_iter()
            .flatten()
            .all(|p| {
                let t = &p.takeover;
                has(&t.old_leader, "ha.quorum.lost") && stepped_down(&t.old_leader, t.old_epoch)
            }),
        (None, None) => false,
    };
    let injected_epoch = injection.map_or(i64::MAX, |i| i.injected_epoch);
    let reacquired = obs.audit.iter().any(|e| {
        e.event_type == "ha.leader.acquired" && e.details["epoch"].as_i64().is_some_and(|epoch| epoch > injected_epoch)
    });
    (
        split_brain && stale_stepped_down && paused_stepped_down && partitioned && reacquired,
        Some(format!("events={}", obs.audit.len())),
        format!(
            "split_brain={split_brain} stale_stepped_down={stale_stepped_down} paused_stepped_down={paused_stepped_down} \
             partitioned_lost_and_stepped_down={partitioned} acquired_above_injected={reacquired} (val16-audit-events.json)"
        ),
    )
}
