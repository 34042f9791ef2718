//! What the VAL16 phases saw; the ten checks are computed from this alone.

use serde::{Deserialize, Serialize};

pub use crate::harness::Sabotage;

use crate::{
    cluster::{Agreement, SingleWrite, StoredRow},
    watch::StatusSample,
    writes::WriteLog,
};

/// The lease row rewritten by SQL under the leader: another holder, a higher epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Injection {
    pub stale_leader: String,
    pub stale_epoch: i64,
    pub rogue_holder: String,
    pub injected_epoch: i64,
    /// Slice clock, right after the injecting transaction committed.
    pub injected_at_us: u64,
    /// Rows at the stale epoch, counted right after the injection committed (row lease) or,
    /// with the lease on etcd, once the successor had raised the database's fence (the rewrite
    /// of the etcd key does not move the fence, the successor's acquisition does).
    pub stale_rows_at_injection: i64,
    /// The stale leader's renew interval: the bound for its step-down.
    pub renew_interval_ms: u64,
}

/// What the stale leader reported after the injection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Divergence {
    /// First status naming the injected epoch as the split brain's store epoch.
    pub detected_ms: Option<u64>,
    /// First status not `leader`.
    pub stepped_down_ms: Option<u64>,
    /// (local_epoch, store_epoch) of the reported split brain.
    pub reported: Option<(i64, i64)>,
}

/// A leader lost to a fault, and the node that took over from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Takeover {
    pub old_leader: String,
    pub old_epoch: i64,
    /// None when nobody took over within the wait.
    pub successor: Option<String>,
    pub new_epoch: Option<i64>,
    /// From the fault to the successor reporting leader.
    pub takeover_ms: Option<u64>,
}

impl Takeover {
    /// The successor leads at a higher epoch than the old leader did.
    pub fn at_a_newer_epoch(&self) -> bool {
        self.new_epoch.is_some_and(|e| e > self.old_epoch)
    }

    /// From the old leader's last row to the successor's first, in `rows` (negative when the
    /// old leader wrote after the successor began).
    pub fn write_gap_us(&self, rows: &[StoredRow]) -> Option<i64> {
        self.new_epoch
            .and_then(|new| crate::cluster::write_gap_us(rows, self.old_epoch, new))
    }
}

/// A leader frozen with SIGSTOP past the TTL, then resumed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pause {
    /// From SIGSTOP.
    #[serde(flatten)]
    pub takeover: Takeover,
    pub paused_ms: u64,
    /// Rows of the paused node at its epoch when the successor took over, and at the end.
    pub rows_at_takeover: i64,
    pub rows_at_end: Option<i64>,
    /// A write sent to the paused node while it was stopped, answered after SIGCONT.
    pub pending_write: Option<SingleWrite>,
    /// The resumed node's role a second after SIGCONT.
    pub role_after_resume: Option<String>,
}

/// The leader cut off by iptables in its own network namespace: from PostgreSQL, or (with the
/// lease on etcd) from etcd while it still reaches PostgreSQL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partition {
    /// From the cut.
    #[serde(flatten)]
    pub takeover: Takeover,
    /// From the cut to the old leader reporting the store lost (db_reachable=false) and writes
    /// blocked.
    pub blocked_ms: Option<u64>,
    /// The old leader's role after the partition healed.
    pub role_after_heal: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Observations {
    pub baseline: Option<Agreement>,
    /// Every row with SQL just before the injection.
    pub pre_rows: Vec<StoredRow>,
    pub injection: Option<Injection>,
    pub divergence: Option<Divergence>,
    /// One leader again, after the injection.
    pub recovered: Option<Agreement>,
    pub recovery_ms: Option<u64>,
    pub pause: Option<Pause>,
    /// Why the partition could not run here (no root, no iptables); never in CI.
    pub partition_skipped: Option<String>,
    pub partition: Option<Partition>,
    /// With the lease on etcd: the leader cut off from etcd but not from PostgreSQL.
    #[serde(default)]
    pub partition_from_etcd: Option<Partition>,
    /// `row` or `etcd`: where the nodes' lease lived.
    #[serde(default = "row_lease")]
    pub lease_store: String,
    /// Every write of the load-balanced client, over all phases.
    pub writes: Vec<WriteLog>,
    /// Every row with SQL at the end.
    pub rows: Vec<StoredRow>,
    /// (epoch, holder) of every acquisition, from autonomy_ha.lease_history.
    pub lease_history: Vec<(i64, String)>,
    pub audit: Vec<crate::cluster::AuditSeen>,
    pub samples: Vec<StatusSample>,
    pub aborted: Option<String>,
}

crate::observed_with_aborted_field!(Observations);

fn row_lease() -> String {
    "row".into()
}
