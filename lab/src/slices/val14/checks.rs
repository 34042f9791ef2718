//! VAL14's ten checks (issue 5, seed 004), each computed from the phases' observations alone.

use autonomy::{
    evidence::{lag::DerivedThresholds, Check},
    ha::replication::Health,
};

use super::{
    observations::{ceil_ms, LagSample, Observations, Workload},
    slice::{HEAVY, IDLE_SAMPLES, LIGHT, STANDBY},
};
use crate::verdict::Judge;

/// Seed 004's targets for the drains.
pub const LIGHT_DRAIN_MS_THRESHOLD: u64 = 2_000;
pub const HEAVY_DRAIN_MS_THRESHOLD: u64 = 5_000;
/// Seed 004: the idle p95 comes from at least 50 samples.
pub const MIN_IDLE_SAMPLES: usize = 50;
/// A workload's percentile means little from fewer samples than this.
pub const MIN_WORKLOAD_SAMPLES: usize = 10;
/// A silent cut must be reported before the primary's wal_sender_timeout (2 s in the lab)
/// would have dropped the standby anyway.
pub const SILENT_CUT_MS_THRESHOLD: u64 = 2_000;
/// A row written on the primary must be readable on the standby within this.
pub const MARKER_VISIBLE_MS_THRESHOLD: u64 = 5_000;

pub fn evaluate(judge: &Judge, obs: &Observations) -> Vec<Check> {
    vec![
        judge.check("VAL14-01", "standby_streaming", "pg_stat_replication shows the standby streaming, it is in recovery, and a row written on the primary is readable on it within 5,000 ms",
            obs.streaming_state.as_ref().map(|state| {
                let ok = state == "streaming" && obs.standby_in_recovery == Some(true)
                    && obs.marker_visible_ms.is_some_and(|ms| ms <= MARKER_VISIBLE_MS_THRESHOLD);
                (ok, Some(format!("state={state} in_recovery={:?} marker_visible_ms={:?}", obs.standby_in_recovery, obs.marker_visible_ms)),
                 "val14-pg-setup.txt".into())
            })),
        judge.check("VAL14-02", "status_reports_replication", "/v1/ha/status lists the standby (the one pg_stat_replication lists) streaming from its slot, with its LSNs, and healthy",
            (!obs.sql_application_names.is_empty() || obs.reported.is_some()).then(|| {
                let ok = obs.sql_application_names.iter().any(|n| n == STANDBY) && obs.reported.as_ref().is_some_and(|r| {
                    r.state == "streaming" && r.slot_name.as_deref() == Some(STANDBY)
                        && [&r.positions.sent_lsn, &r.positions.write_lsn, &r.positions.flush_lsn, &r.positions.replay_lsn].iter().all(|lsn| lsn.is_some())
                        && r.health == Health::Healthy
                }) && obs.reported_health == Some(Health::Healthy);
                (ok, Some(obs.reported.as_ref().map_or("not listed".into(), |r| format!("{} state={} health={} ({})", r.application_name, r.state, r.health, r.reason))),
                 format!("pg_stat_replication lists {:?} (val14-02-status.json)", obs.sql_application_names))
            })),
        judge.check("VAL14-03", "idle_lag_sampled", "at least 50 samples of write_lag at rest, the standby listed in each; idle_p95_ms recorded",
            (!obs.idle.is_empty()).then(|| {
                let listed = obs.idle.iter().filter(|s| s.replay_gap_bytes.is_some()).count();
                (obs.idle.len() >= MIN_IDLE_SAMPLES && listed == obs.idle.len(),
                 obs.idle_p95_ms().map(|p| format!("idle_p95_ms={p:.3}")),
                 format!("{} samples ({} planned), standby listed in {listed} (val14-lag-samples.json)", obs.idle.len(), IDLE_SAMPLES))
            })),
        judge.check("VAL14-04", "light_workload_lag", "write_lag sampled throughout 100 rows x 500 B, the standby listed in each sample; light_p95_ms recorded",
            workload_sampled(&obs.light, LIGHT, obs.light_p95_ms(), "light_p95_ms")),
        judge.check("VAL14-05", "light_drain_bound", "after the light workload the standby replays everything within 2,000 ms [target]",
            drained(&obs.light, LIGHT_DRAIN_MS_THRESHOLD, "light_drain_ms")),
        judge.check("VAL14-06", "heavy_workload_lag", "write_lag sampled throughout 500 rows x 2,000 B, the standby listed in each sample; heavy_p99_ms recorded",
            workload_sampled(&obs.heavy, HEAVY, obs.heavy_p99_ms(), "heavy_p99_ms")),
        judge.check("VAL14-07", "heavy_drain_bound", "after the heavy workload the standby replays everything within 5,000 ms [target]",
            drained(&obs.heavy, HEAVY_DRAIN_MS_THRESHOLD, "heavy_drain_ms")),
        judge.check("VAL14-08", "standby_consistent", "after the drains the standby holds the same rows as the primary: equal count (marker + 600) and content hash",
            obs.primary_table.as_ref().map(|primary| {
                let expected_rows = 1 + (LIGHT.0 + HEAVY.0) as i64;
                let ok = obs.standby_table.as_ref() == Some(primary) && primary.0 == expected_rows;
                (ok, Some(format!("primary {} rows {} / standby {:?}", primary.0, primary.1, obs.standby_table)),
                 format!("expected {expected_rows} rows on both"))
            })),
        judge.check("VAL14-09", "thresholds_derived", "DERIVED from idle_p95 and light_p95 by seed 004's formulas (not targets): healthy = max(p95 x 3 + 1, 10), degraded = max(healthy x 10, 100), alert = max(healthy x 50, 500)",
            obs.derived.map(|derived| {
                let expected = by_the_seed(obs);
                (Some(derived) == expected,
                 Some(format!("DERIVED healthy_ms={} degraded_ms={} alert_ms={} (observed_p95_ms={})", derived.healthy_ms, derived.degraded_ms, derived.alert_ms, derived.observed_p95_ms)),
                 format!("recomputed from the samples: {expected:?}; recalibrate against production write_lag before alerting"))
            })),
        judge.check("VAL14-10", "lag_classified", "the node reports healthy at rest, alert when the standby is stopped (disconnected) or silently cut off (stalled, within 2,000 ms: before the primary drops it), healthy and streaming again after each return",
            (!obs.classified.is_empty()).then(|| {
                let expected = [("idle", Health::Healthy), ("stopped", Health::Alert), ("restarted", Health::Healthy), ("cut", Health::Alert), ("healed", Health::Healthy)];
                let wrong: Vec<String> = expected.iter().filter_map(|(moment, health)| {
                    let seen = obs.classified.iter().find(|c| c.moment == *moment);
                    let standby = seen.and_then(|c| c.standby.as_ref());
                    let ok = seen.is_some_and(|c| c.waited_ms.is_some() && c.health == Some(*health))
                        && match *moment {
                            "stopped" => standby.is_some_and(|s| s.state == "disconnected"),
                            // Noticed by the node's own stall timer while the connection still
                            // looked alive, before the primary's 2 s wal_sender_timeout dropped it.
                            "cut" => standby.is_some_and(|s| s.state == "streaming" && s.reason.starts_with("stalled"))
                                && seen.and_then(|c| c.waited_ms).is_some_and(|ms| ms < SILENT_CUT_MS_THRESHOLD),
                            _ => standby.is_some_and(|s| s.state == "streaming"),
                        };
                    (!ok).then(|| format!("{moment}: expected {health}{}, saw health={:?} after {:?} ms, standby {:?}",
                        match *moment { "stopped" => " (disconnected)", "cut" => " (streaming, stalled, within 2,000 ms)", _ => " (streaming)" },
                        seen.and_then(|c| c.health), seen.and_then(|c| c.waited_ms),
                        standby.map(|s| format!("state={} reason={}", s.state, s.reason))))
                }).collect();
                (wrong.is_empty(),
                 Some(obs.classified.iter().map(|c| format!("{}:{}@{:?}ms", c.moment, c.health.map_or("none".into(), |h| h.to_string()), c.waited_ms)).collect::<Vec<_>>().join(" ")),
                 if wrong.is_empty() { "val14-10-classified.json".into() } else { wrong.join("; ") })
            })),
    ]
}

fn workload_sampled(
    workload: &Workload,
    (rows, bytes): (usize, usize),
    percentile: Option<f64>,
    metric: &str,
) -> Option<(bool, Option<String>, String)> {
    (workload.rows > 0).then(|| {
        let listed = workload
            .samples
            .iter()
            .filter(|s: &&LagSample| s.replay_gap_bytes.is_some())
            .count();
        let ok = workload.rows == rows
            && workload.row_bytes == bytes
            && workload.samples.len() >= MIN_WORKLOAD_SAMPLES
            && listed == workload.samples.len();
        (
            ok,
            percentile.map(|p| format!("{metric}={p:.3}")),
            format!(
                "{} rows x {} B, {} samples, standby listed in {listed} (val14-lag-samples.json)",
                workload.rows,
                workload.row_bytes,
                workload.samples.len()
            ),
        )
    })
}

fn drained(workload: &Workload, bound_ms: u64, metric: &str) -> Option<(bool, Option<String>, String)> {
    (workload.rows > 0).then(|| {
        (
            workload.drain_ms.is_some_and(|ms| ms <= bound_ms),
            Some(
                workload
                    .drain_ms
                    .map_or(format!("{metric}=none"), |ms| format!("{metric}={ms}")),
            ),
            format!("from the last commit to a replay gap of 0 bytes; bound {bound_ms} ms"),
        )
    })
}

/// Seed 004's formulas written out again, independently of the library's derivation.
fn by_the_seed(obs: &Observations) -> Option<DerivedThresholds> {
    let idle = ceil_ms(obs.idle_p95_ms()?);
    let light = ceil_ms(obs.light_p95_ms()?);
    let observed = idle.max(light);
    let healthy = std::cmp::max(observed * 3 + 1, 10);
    Some(DerivedThresholds {
        idle_p95_ms: idle,
        light_p95_ms: light,
        observed_p95_ms: observed,
        healthy_ms: healthy,
        degraded_ms: std::cmp::max(healthy * 10, 100),
        alert_ms: std::cmp::max(healthy * 50, 500),
    })
}
