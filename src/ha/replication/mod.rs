//! Streaming standbys as the primary sees them: what each reports, how far it lags, and how
//! healthy that is against the configured thresholds.

pub mod monitor;
pub mod sample;
pub mod tracker;

use serde::{Deserialize, Serialize};

pub use monitor::{run_sampler, ReplicationMonitor};
pub use tracker::Tracker;

pub use crate::api::ReplicationSample;

/// How a standby's lag compares with the thresholds; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Alert,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Alert => "alert",
        })
    }
}

/// The lag bands (docs/VALIDATION.md, VAL14): healthy up to `healthy_ms`, degraded up to `degraded_ms`, alert
/// above it. Derive them from measurements with `autonomy ha lag-thresholds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LagThresholds {
    pub healthy_ms: u64,
    pub degraded_ms: u64,
}

impl Default for LagThresholds {
    /// The seed's floors: what the derivation gives for any lab that lags under 3 ms.
    fn default() -> Self {
        Self {
            healthy_ms: 10,
            degraded_ms: 100,
        }
    }
}

impl LagThresholds {
    pub fn classify(&self, lag_ms: f64) -> Health {
        if lag_ms <= self.healthy_ms as f64 {
            Health::Healthy
        } else if lag_ms <= self.degraded_ms as f64 {
            Health::Degraded
        } else {
            Health::Alert
        }
    }
}

/// Where a standby is, as pg_stat_replication reports it: its address and its four WAL
/// positions. All None when it is not connected (or hidden from a role without
/// pg_read_all_stats).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StandbyPositions {
    pub client_addr: Option<String>,
    pub sent_lsn: Option<String>,
    pub write_lsn: Option<String>,
    pub flush_lsn: Option<String>,
    pub replay_lsn: Option<String>,
}

/// pg_stat_replication's write_lag, flush_lag and replay_lag, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LagColumns<T> {
    pub write_lag_ms: T,
    pub flush_lag_ms: T,
    pub replay_lag_ms: T,
}

impl LagColumns<Option<f64>> {
    /// PostgreSQL reports NULL once the standby has caught up and no WAL flows: no lag.
    pub fn or_zero(self) -> LagColumns<f64> {
        LagColumns {
            write_lag_ms: self.write_lag_ms.unwrap_or(0.0),
            flush_lag_ms: self.flush_lag_ms.unwrap_or(0.0),
            replay_lag_ms: self.replay_lag_ms.unwrap_or(0.0),
        }
    }
}

/// One standby in `/v1/ha/status` → `replication`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyStatus {
    /// The standby's application_name (from its primary_conninfo; the cluster name or
    /// `walreceiver` by default). For a slot no standby has used since the node started: the
    /// slot name.
    pub application_name: String,
    /// The physical replication slot it streams from, if any.
    pub slot_name: Option<String>,
    /// pg_stat_replication.state (`streaming`, `catchup`, `startup`, ...), or `disconnected`
    /// when the standby is no longer connected.
    pub state: String,
    #[serde(flatten)]
    pub positions: StandbyPositions,
    /// pg_stat_replication's lag columns; NULL (caught up, no WAL flowing) is reported as 0.
    #[serde(flatten)]
    pub lag: LagColumns<f64>,
    /// Bytes of WAL the primary has that the standby has not replayed yet.
    pub byte_lag: Option<i64>,
    /// How long the standby has been behind at one unchanged write position, as seen by this
    /// node's samples: pg_stat_replication's lag columns only change when the standby replies,
    /// so a stalled or cut-off standby that has not been dropped yet keeps its last (small) lag.
    pub stalled_ms: f64,
    pub health: Health,
    /// Why the health is what it is, e.g. `write lag 12.0 ms > 10 ms`.
    pub reason: String,
}

/// Everything the node knows about replication, from its latest sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicationView {
    /// When it was taken, the primary's WAL position then, the thresholds and the last
    /// sampling error (the standbys are then those of the last successful sample, as old as
    /// `sampled_at` says, each an alert).
    pub sample: ReplicationSample,
    pub standbys: Vec<StandbyStatus>,
    /// The worst standby health; None when there is no standby to judge.
    pub health: Option<Health>,
}

impl ReplicationView {
    /// A sample failed: the standbys keep their last figures, but nobody can vouch for them
    /// now, so each is an alert that says why (never a stale `healthy`).
    pub fn unsampled(&mut self, error: String) {
        for standby in &mut self.standbys {
            standby.health = Health::Alert;
            standby.reason = format!("not sampled: {error}");
        }
        self.health = (!self.standbys.is_empty()).then_some(Health::Alert);
        self.sample.error = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_classified_into_the_three_bands() {
        let thresholds = LagThresholds::default();
        assert_eq!(thresholds.classify(0.0), Health::Healthy);
        assert_eq!(thresholds.classify(10.0), Health::Healthy);
        assert_eq!(thresholds.classify(10.5), Health::Degraded);
        assert_eq!(thresholds.classify(100.0), Health::Degraded);
        assert_eq!(thresholds.classify(100.1), Health::Alert);
        assert!(Health::Alert > Health::Degraded && Health::Degraded > Health::Healthy);
    }
}
