//! VAL13's ten checks (issue 3, seed 004), each computed from the phases' observations alone.

use autonomy::evidence::Check;

use super::observations::{Failover, Observations, RowSeen};
use crate::{
    verdict::misattributed_rows,
    verdict::{Judge, Verdict},
    watch::{dual_leaders, max_leaders_per_round},
};

pub const FORMATION_MS_THRESHOLD: u64 = 10_000;
pub const FAILOVER_MS_THRESHOLD: u64 = 5_000;
pub const RAPID_CYCLES: usize = 3;

pub fn evaluate(judge: &Judge, obs: &Observations) -> Vec<Check> {
    vec![
        judge.check("VAL13-01", "cluster_formed", "one leader and one follower within 10,000 ms; both agree on holder and epoch",
            obs.formation.as_ref().map(|f| {
                let leaders = f.views.iter().filter(|v| v.1 == "leader").count();
                let followers = f.views.iter().filter(|v| v.1 == "follower").count();
                let agree = f.views.windows(2).all(|w| (&w[0].2, w[0].3) == (&w[1].2, w[1].3))
                    && f.views.first().is_some_and(|v| v.2.as_deref() == Some(f.leader.as_str()));
                (f.formed_ms <= FORMATION_MS_THRESHOLD && leaders == 1 && followers == 1 && agree,
                 Some(format!("formed_ms={}", f.formed_ms)),
                 format!("leader={} follower={} leaders={leaders} followers={followers} agree={agree} (val13-01-cluster-formed.txt)", f.leader, f.follower))
            })),
        judge.check("VAL13-02", "follower_rejects_writes", "POST /v1/rollouts on the follower: 503 naming the leader (id and address); nothing written",
            obs.follower_write.as_ref().map(|w| {
                let hint = w.leader_id.as_deref() == Some(w.expected_leader.as_str())
                    && w.leader_address.as_deref() == Some(w.expected_address.as_str());
                (w.answer.status == 503 && w.answer.code == "not_leader" && hint && !w.stored,
                 Some(format!("status={} code={}", w.answer.status, w.answer.code)),
                 format!("leader hint {:?} at {:?} (expected {} at {}), stored={} (val13-02-follower-write.txt)",
                         w.leader_id, w.leader_address, w.expected_leader, w.expected_address, w.stored))
            })),
        judge.check("VAL13-03", "sigterm_failover_bound", "after SIGTERM the follower is holder and leader within 5,000 ms (status polled every 50 ms)",
            obs.sigterm.as_ref().map(|f| failover_verdict(f, "val13-03-sigterm-failover.txt"))),
        judge.check("VAL13-04", "zero_data_loss", "every rollout acknowledged before a kill is readable through the new leader, unchanged",
            zero_loss(obs)),
        judge.check("VAL13-05", "sigkill_failover_bound", "after SIGKILL the follower is holder and leader within 5,000 ms (status polled every 50 ms)",
            obs.sigkill.as_ref().map(|f| failover_verdict(f, "val13-05-sigkill-failover.txt"))),
        judge.check("VAL13-06", "epoch_monotonic", "the epoch rises at every failover; every stored row carries the epoch its writer held when it committed",
            epoch_monotonic(obs)),
        judge.check("VAL13-07", "rejoin_as_follower", "the restarted old leader reports follower; holder and epoch unchanged",
            obs.rejoin.as_ref().map(|r| {
                let ok = r.role.as_deref() == Some("follower") && r.holder_after == r.holder_before
                    && r.holder_after.as_deref() != Some(r.node.as_str()) && r.epoch_after == r.epoch_before && r.epoch_after.is_some();
                (ok, Some(format!("role={}", r.role.as_deref().unwrap_or("-"))),
                 format!("{} after {} ms: holder {:?} -> {:?}, epoch {:?} -> {:?} (val13-07-rejoin.txt)",
                         r.node, r.watched_ms, r.holder_before, r.holder_after, r.epoch_before, r.epoch_after))
            })),
        judge.check("VAL13-08", "rapid_cycles", "three SIGKILL/restart cycles, each failover within 5,000 ms",
            (!obs.cycles.is_empty()).then(|| {
                let times: Vec<String> = obs.cycles.iter().map(|c| c.failover_ms.map_or("none".into(), |ms| ms.to_string())).collect();
                let ok = obs.cycles.len() == RAPID_CYCLES && obs.cycles.iter().all(within_bound);
                (ok, Some(format!("rapid_cycle_ms=[{}]", times.join(", "))),
                 format!("{} of {RAPID_CYCLES} cycles ran (val13-08-rapid-cycles.txt)", obs.cycles.len()))
            })),
        judge.check("VAL13-09", "no_dual_leader", "status of every node polled every 50 ms through all transitions never shows two leaders at once",
            (!obs.samples.is_empty()).then(|| {
                let overlaps = dual_leaders(&obs.samples);
                let rounds = obs.samples.iter().map(|s| s.round).max().map_or(0, |r| r + 1);
                let leaders_seen: std::collections::BTreeSet<&str> = obs.samples.iter()
                    .filter(|s| s.role.as_deref() == Some("leader")).map(|s| s.node_id.as_str()).collect();
                let spans_failovers = leaders_seen.len() >= 2;
                (overlaps.is_empty() && spans_failovers,
                 Some(format!("rounds={rounds} max_leaders_per_round={} overlaps={}", max_leaders_per_round(&obs.samples), overlaps.len())),
                 match overlaps.first() {
                     Some((a, b)) => format!("{} claimed epoch {:?} at {} us while {} led epoch {:?} (seen at {} us) (val13-09-status-samples.jsonl)",
                                             a.node_id, a.epoch, a.sent_us, b.node_id, b.epoch, b.received_us),
                     None => format!("leaders seen: {leaders_seen:?} (val13-09-status-samples.jsonl)"),
                 })
            })),
        judge.check("VAL13-10", "writes_during_failover", "a client writing through a SIGKILL failover: every 201 is stored exactly once as acknowledged; no row has a stale epoch",
            writes_during_failover(obs)),
    ]
}

fn within_bound(failover: &Failover) -> bool {
    failover.failover_ms.is_some_and(|ms| ms <= FAILOVER_MS_THRESHOLD)
}

fn failover_verdict(f: &Failover, file: &str) -> Verdict {
    (
        within_bound(f),
        Some(
            f.failover_ms
                .map_or("failover_ms=none".into(), |ms| format!("failover_ms={ms}")),
        ),
        format!(
            "{} {} -> {}, epoch {} -> {:?}, old leader exited={} ({file})",
            f.signal, f.from, f.to, f.epoch_before, f.epoch_after, f.old_leader_exited
        ),
    )
}

fn epoch_monotonic(obs: &Observations) -> Option<Verdict> {
    let failovers = obs.failovers();
    if failovers.is_empty() || obs.lease_history.is_empty() {
        return None;
    }
    let rising = failovers
        .iter()
        .all(|f| f.epoch_after.is_some_and(|after| after > f.epoch_before));
    let history_rising = obs.lease_history.windows(2).all(|w| w[1].0 > w[0].0);
    let stale = misattributed_rows(&obs.rows, &obs.lease_history);
    let epochs: Vec<String> = failovers
        .iter()
        .map(|f| {
            format!(
                "{}->{}",
                f.epoch_before,
                f.epoch_after.map_or("?".into(), |e| e.to_string())
            )
        })
        .collect();
    Some((
        rising && history_rising && stale.is_empty(),
        Some(format!(
            "failover_epochs=[{}] stale_rows={}",
            epochs.join(", "),
            stale.len()
        )),
        match stale.first() {
            Some((row, why)) => format!("row {} `{}`: {why} (val13-06-lease-history.txt)", row.id, row.name),
            None => format!(
                "{} acquisitions, {} rows all written at their writer's epoch (val13-06-lease-history.txt)",
                obs.lease_history.len(),
                obs.rows.len()
            ),
        },
    ))
}

/// Acknowledged rows missing or changed in a later read.
fn missing<'a>(
    acked: impl Iterator<Item = (&'a str, &'a crate::writes::Acknowledged)>,
    read: &[RowSeen],
) -> Vec<String> {
    acked
        .filter(|(name, ack)| {
            let found: Vec<&RowSeen> = read.iter().filter(|r| r.name == *name).collect();
            !(found.len() == 1
                && found[0].id == ack.id
                && found[0].epoch == ack.epoch
                && found[0].leader_id == ack.leader_id)
        })
        .map(|(name, _)| name.to_owned())
        .collect()
}

fn zero_loss(obs: &Observations) -> Option<Verdict> {
    let after_sigterm = obs.read_after_sigterm.as_ref()?;
    let after_sigkill = obs.read_after_sigkill.as_ref()?;
    let sent = obs.sigkill_sent_us?;
    let before_term = obs.acked_before_sigterm.iter().map(|(n, a)| (n.as_str(), a));
    let before_kill = obs
        .writes
        .iter()
        .filter(|w| w.finished_us < sent)
        .filter_map(|w| w.acknowledged.as_ref().map(|a| (w.name.as_str(), a)));
    let lost_term = missing(before_term, after_sigterm);
    let lost_kill = missing(before_kill.clone(), after_sigkill);
    let acked = obs.acked_before_sigterm.len() + before_kill.count();
    Some((
        acked > 0 && lost_term.is_empty() && lost_kill.is_empty(),
        Some(format!(
            "acknowledged_before_kills={acked} lost={}",
            lost_term.len() + lost_kill.len()
        )),
        format!(
            "lost after SIGTERM: {lost_term:?}; lost after SIGKILL: {lost_kill:?} (val13-04-data-after-failover.txt)"
        ),
    ))
}

fn writes_during_failover(obs: &Observations) -> Option<Verdict> {
    let read = obs.read_after_sigkill.as_ref()?;
    let sent = obs.sigkill_sent_us?;
    let failover = obs.sigkill.as_ref()?;
    let taken_over_us = sent + failover.failover_ms? * 1000;
    let acked: Vec<_> = obs
        .writes
        .iter()
        .filter_map(|w| w.acknowledged.as_ref().map(|a| (w.name.as_str(), a, w)))
        .collect();
    let lost = missing(acked.iter().map(|(n, a, _)| (*n, *a)), read);
    let before = acked.iter().filter(|(_, _, w)| w.finished_us < sent).count();
    let after = acked.iter().filter(|(_, _, w)| w.started_us > taken_over_us).count();
    let unsettled = obs
        .writes
        .iter()
        .filter(|w| w.acknowledged.is_none() && !w.stored_unacknowledged)
        .count();
    let names: std::collections::BTreeSet<&str> = obs.writes.iter().map(|w| w.name.as_str()).collect();
    let writer_rows: Vec<RowSeen> = read
        .iter()
        .filter(|r| names.contains(r.name.as_str()))
        .cloned()
        .collect();
    let stale = misattributed_rows(&writer_rows, &obs.lease_history);
    let ok = before > 0 && after > 0 && lost.is_empty() && unsettled == 0 && stale.is_empty();
    Some((
        ok,
        Some(format!(
            "acknowledged={} before_kill={before} after_takeover={after} lost={} unsettled={unsettled} stale={}",
            acked.len(),
            lost.len(),
            stale.len()
        )),
        match (lost.first(), stale.first()) {
            (Some(name), _) => {
                format!("acknowledged `{name}` is missing or changed (val13-10-writes.jsonl, val13-10-rows.txt)")
            }
            (None, Some((row, why))) => format!("row {} `{}`: {why} (val13-10-rows.txt)", row.id, row.name),
            (None, None) => format!(
                "{} writes, {} rows from the writer (val13-10-writes.jsonl, val13-10-rows.txt)",
                obs.writes.len(),
                writer_rows.len()
            ),
        },
    ))
}
