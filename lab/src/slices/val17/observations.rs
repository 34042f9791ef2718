//! What the VAL17 phases saw; the ten checks are computed from this alone.

use serde::{Deserialize, Serialize};

pub use crate::harness::Sabotage;

use crate::{
    cluster::{Agreement, AuditSeen, SingleWrite, StoredRow},
    watch::StatusSample,
};

/// When one node first reported the loss (db_reachable=false, writes blocked).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detection {
    pub node: String,
    /// From the stop command to the first status showing the loss; None if never within the wait.
    pub detected_ms: Option<u64>,
    /// When that status answer came, on the slice clock.
    pub detected_at_us: Option<u64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Observations {
    /// One leader and one follower before the outage.
    pub baseline: Option<Agreement>,
    /// A write through the leader before the outage.
    pub baseline_write: Option<SingleWrite>,
    /// Every row with SQL just before the outage.
    pub pre_loss_rows: Vec<StoredRow>,
    /// Slice clock: the stop command was issued.
    pub outage_started_us: Option<u64>,
    pub detections: Vec<Detection>,
    /// One protected write to every node while the database was down.
    pub refused_writes: Vec<SingleWrite>,
    /// Slice clock: the start command was issued, and a test connection first succeeded.
    pub restart_issued_us: Option<u64>,
    pub accepting_us: Option<u64>,
    /// From `accepting_us` to both nodes reachable again with one leader accepting writes.
    pub recovery_ms: Option<u64>,
    /// The agreement some time after the recovery.
    pub settled: Option<Agreement>,
    /// A write through the new leader after the recovery.
    pub resumed_write: Option<SingleWrite>,
    /// Every row with SQL at the end.
    pub post_rows: Vec<StoredRow>,
    pub audit: Vec<AuditSeen>,
    pub samples: Vec<StatusSample>,
    /// Set when a phase could not go on; checks not reached fail with this reason.
    pub aborted: Option<String>,
}

impl Observations {
    /// The epoch led before the outage.
    pub fn epoch_before(&self) -> Option<i64> {
        self.baseline.as_ref().map(|b| b.epoch)
    }

    /// The latest detection: when every node had reported the loss.
    pub fn loss_detection_ms(&self) -> Option<u64> {
        if self.detections.is_empty() {
            return None;
        }
        self.detections
            .iter()
            .map(|d| d.detected_ms)
            .collect::<Option<Vec<u64>>>()?
            .into_iter()
            .max()
    }
}

crate::observed_with_aborted_field!(Observations);
