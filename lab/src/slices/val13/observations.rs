//! What the VAL13 phases saw; the ten checks are computed from this alone.

use serde::{Deserialize, Serialize};

pub use crate::harness::Sabotage;

use crate::{
    cluster::Answer,
    watch::StatusSample,
    writes::{Acknowledged, WriteLog},
};

/// The two nodes found each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Formation {
    pub formed_ms: u64,
    pub leader: String,
    pub follower: String,
    /// (node, role, holder, epoch) as each node last reported.
    pub views: Vec<(String, String, Option<String>, Option<i64>)>,
}

/// A write sent to the follower on purpose.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FollowerWrite {
    pub name: String,
    #[serde(flatten)]
    pub answer: Answer,
    pub leader_id: Option<String>,
    pub leader_address: Option<String>,
    pub expected_leader: String,
    pub expected_address: String,
    /// The name was found in the database afterwards.
    pub stored: bool,
}

/// One leader loss and the takeover that followed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failover {
    pub signal: String,
    pub from: String,
    pub to: String,
    pub epoch_before: i64,
    /// The epoch the successor reported when first seen as holder.
    pub epoch_after: Option<i64>,
    /// From the signal to the first status poll showing the successor as holder and leader;
    /// None when that did not happen within the wait.
    pub failover_ms: Option<u64>,
    pub old_leader_exited: bool,
}

/// A stored rollout as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowSeen {
    pub id: i64,
    pub name: String,
    pub epoch: i64,
    pub leader_id: String,
}

/// The restarted old leader, some time after it came back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rejoin {
    pub node: String,
    pub role: Option<String>,
    pub holder_before: Option<String>,
    pub holder_after: Option<String>,
    pub epoch_before: Option<i64>,
    pub epoch_after: Option<i64>,
    pub watched_ms: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Observations {
    pub formation: Option<Formation>,
    pub follower_write: Option<FollowerWrite>,
    /// Acknowledged before the SIGTERM: (name, what the 201 said).
    pub acked_before_sigterm: Vec<(String, Acknowledged)>,
    pub sigterm: Option<Failover>,
    /// Every rollout, read through the new leader's API after the SIGTERM failover.
    pub read_after_sigterm: Option<Vec<RowSeen>>,
    pub rejoin: Option<Rejoin>,
    pub sigkill: Option<Failover>,
    /// When the SIGKILL was sent, on the slice clock.
    pub sigkill_sent_us: Option<u64>,
    pub writes: Vec<WriteLog>,
    /// Every rollout, read through the new leader's API after the SIGKILL failover.
    pub read_after_sigkill: Option<Vec<RowSeen>>,
    pub cycles: Vec<Failover>,
    /// (epoch, holder) of every acquisition, from autonomy_ha.lease_history.
    pub lease_history: Vec<(i64, String)>,
    /// Every stored rollout at the end, in id order, read with SQL.
    pub rows: Vec<RowSeen>,
    pub samples: Vec<StatusSample>,
    /// Set when a phase could not go on; checks not reached fail with this reason.
    pub aborted: Option<String>,
}

impl Observations {
    /// Every failover, in the order they happened.
    pub fn failovers(&self) -> Vec<&Failover> {
        self.sigterm
            .iter()
            .chain(self.sigkill.iter())
            .chain(self.cycles.iter())
            .collect()
    }
}

crate::observed_with_aborted_field!(Observations);
crate::fenced_row!(RowSeen);
