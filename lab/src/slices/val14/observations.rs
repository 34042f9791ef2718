//! What the VAL14 phases saw; the ten checks are computed from this alone.

use autonomy::{
    evidence::lag::DerivedThresholds,
    ha::replication::{Health, StandbyStatus},
};
use serde::{Deserialize, Serialize};

pub use crate::harness::Sabotage;

/// One read of pg_stat_replication on the primary for the lab's standby.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LagSample {
    /// Slice clock, microseconds.
    pub at_us: u64,
    /// write_lag in ms; PostgreSQL's NULL (caught up, no WAL flowing) read as 0.
    pub write_lag_ms: f64,
    /// pg_current_wal_flush_lsn() - replay_lsn, bytes; None when the standby was not listed.
    pub replay_gap_bytes: Option<i64>,
}

/// A workload and the lag while it ran, and how long the standby took to catch up after it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Workload {
    pub rows: usize,
    pub row_bytes: usize,
    pub samples: Vec<LagSample>,
    /// From the last commit to the first sample with a replay gap of 0.
    pub drain_ms: Option<u64>,
}

/// The node's view at one moment of the classification phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Classified {
    /// `idle`, `stopped`, `restarted`, `cut`, `healed`.
    pub moment: String,
    /// From the action to the node reporting the expected health; None if it never did.
    pub waited_ms: Option<u64>,
    pub health: Option<Health>,
    pub standby: Option<StandbyStatus>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Observations {
    pub standby_name: String,
    /// pg_stat_replication.state for the standby, and pg_is_in_recovery() on it.
    pub streaming_state: Option<String>,
    pub standby_in_recovery: Option<bool>,
    /// A row written on the primary was readable on the standby after this long.
    pub marker_visible_ms: Option<u64>,
    /// The standby as the node's status reported it, and the primary's LSN when SQL read it
    /// right after.
    pub reported: Option<StandbyStatus>,
    pub reported_health: Option<Health>,
    pub sql_application_names: Vec<String>,
    pub idle: Vec<LagSample>,
    pub light: Workload,
    pub heavy: Workload,
    /// Row count and content hash of the workload table on the primary and on the standby,
    /// after the drains.
    pub primary_table: Option<(i64, String)>,
    pub standby_table: Option<(i64, String)>,
    pub classified: Vec<Classified>,
    /// The library's derivation from idle_p95 and light_p95 (whole ms, rounded up).
    pub derived: Option<DerivedThresholds>,
    /// Set when a phase could not go on; checks not reached fail with this reason.
    pub aborted: Option<String>,
}

/// The p-th percentile (nearest rank) of `values`; None when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn lags(samples: &[LagSample]) -> Vec<f64> {
    samples.iter().map(|s| s.write_lag_ms).collect()
}

impl Observations {
    pub fn idle_p95_ms(&self) -> Option<f64> {
        percentile(&lags(&self.idle), 95.0)
    }
    pub fn light_p95_ms(&self) -> Option<f64> {
        percentile(&lags(&self.light.samples), 95.0)
    }
    pub fn heavy_p99_ms(&self) -> Option<f64> {
        percentile(&lags(&self.heavy.samples), 99.0)
    }
}

/// Whole milliseconds, rounded up: the report's metrics are integers, and rounding up keeps
/// the derived thresholds on the safe side.
pub fn ceil_ms(ms: f64) -> u64 {
    ms.max(0.0).ceil() as u64
}

crate::observed_with_aborted_field!(Observations);
