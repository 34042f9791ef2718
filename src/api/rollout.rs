//! The rollout bodies of the node API (`/v1/rollouts`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A stored rollout: what `POST /v1/rollouts` answers with and `GET /v1/rollouts` lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: i64,
    pub name: String,
    pub spec: serde_json::Value,
    /// The lease epoch the write committed under (the fencing token).
    pub epoch: i64,
    /// The node that led at that epoch and committed the write.
    pub leader_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The body of `POST /v1/rollouts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRollout {
    pub name: String,
    pub spec: serde_json::Value,
}
