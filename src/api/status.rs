//! The body of `GET /v1/ha/status`: a node's role, the lease as it sees it, its reachability,
//! replication and audit health.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    audit::AuditHealth,
    ha::replication::{Health, LagThresholds, StandbyStatus},
    ident::NodeId,
};

/// A node's role as it acts on it right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Holds the lease and its local deadline has not passed: accepts protected writes.
    Leader,
    /// Another node holds a valid lease.
    Follower,
    /// Nobody holds a valid lease as far as this node knows (or the database is unreachable):
    /// it is trying to acquire.
    Candidate,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
        })
    }
}

/// The body of `GET /v1/ha/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub node_id: NodeId,
    pub role: Role,
    /// The holder of the valid lease (None when nobody holds one or the database is unreachable).
    pub holder_id: Option<String>,
    /// The holder's API address, for clients to follow.
    pub holder_address: Option<String>,
    /// The current lease epoch (the fencing token).
    pub epoch: i64,
    /// Milliseconds until the lease expires by the database clock (None without a holder).
    pub lease_expires_in_ms: Option<i64>,
    /// True when no node can accept protected writes as far as this node sees: no valid
    /// lease, the database unreachable, or a restore replacing the data.
    pub write_block_active: bool,
    /// True when this node would commit a protected write now.
    pub can_accept_protected_writes: bool,
    /// When this node last acquired or renewed the lease (None if it does not lead).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_renewed_at: Option<OffsetDateTime>,
    pub maintenance_mode: bool,
    /// False from the moment the lease loop cannot reach the database (a refused connection,
    /// a closed session, or a query unanswered for a renew interval) until it can again.
    pub db_reachable: bool,
    /// The last time this node found the lease row rewritten under it while it led (since it
    /// started); None if it never did.
    pub split_brain: Option<SplitBrain>,
    /// Streaming standbys as this node's latest sample of the primary saw them.
    #[serde(default)]
    pub replication: Vec<StandbyStatus>,
    /// The worst standby health; None without standbys.
    #[serde(default)]
    pub replication_health: Option<Health>,
    /// When replication was last sampled, where the primary's WAL was, the thresholds judged
    /// against, and the last sampling error.
    #[serde(default)]
    pub replication_sample: ReplicationSample,
    /// Whether this node's audit store took its last write: while it does not, backups and
    /// restores are refused (`audit_io`).
    #[serde(default)]
    pub audit: AuditHealth,
    /// Problems of this node's configuration found while running (another process using the
    /// same node id), newest last.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Where the lease lives, and for etcd each endpoint's health as last probed.
    #[serde(default)]
    pub lease_store: LeaseStoreStatus,
    pub version: String,
}

/// The lease store as a node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStoreStatus {
    /// `row` (the lease is a row in the database) or `etcd`.
    pub kind: String,
    /// etcd: the prefix this database's keys live under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// etcd: every endpoint, probed every two seconds.
    #[serde(default)]
    pub endpoints: Vec<EndpointHealth>,
    /// etcd: when the endpoints were last probed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub checked_at: Option<OffsetDateTime>,
}

/// One etcd endpoint as the node last probed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHealth {
    pub endpoint: String,
    /// It answered and sees a raft leader (without one it refuses every request).
    pub healthy: bool,
    /// The member's cluster (hex), when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The circumstances of the replication figures in a status report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicationSample {
    #[serde(with = "time::serde::rfc3339::option")]
    pub sampled_at: Option<OffsetDateTime>,
    pub primary_lsn: Option<String>,
    pub thresholds: Option<LagThresholds>,
    pub error: Option<String>,
}

/// A divergence between this node's leadership and the lease row: another holder or another
/// epoch than the one it was leading at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBrain {
    #[serde(with = "time::serde::rfc3339")]
    pub detected_at: OffsetDateTime,
    /// The epoch this node was leading at.
    pub local_epoch: i64,
    /// The epoch the lease row holds.
    pub store_epoch: i64,
    /// The holder the lease row names.
    pub store_holder_id: Option<String>,
}
