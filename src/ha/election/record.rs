//! What the election writes to the audit trail, and how each record reads there.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::audit::EventType;

/// A divergence between this node's leadership and the lease: another holder or another epoch
/// than the one it was leading at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub detected_at: Instant,
    /// The epoch this node was leading at.
    pub local_epoch: i64,
    /// The epoch the lease holds.
    pub store_epoch: i64,
    /// The holder the lease names.
    pub store_holder_id: Option<String>,
}

/// One change of leadership or of the store's reachability, recorded exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Acquired {
        epoch: i64,
    },
    SteppedDown {
        epoch: i64,
        reason: &'static str,
    },
    Released {
        epoch: i64,
    },
    SplitBrain(Divergence),
    QuorumLost {
        reason: &'static str,
    },
    QuorumRestored {
        outage: Duration,
    },
    /// Another process leads under this node's id.
    DuplicateNodeId {
        warning: String,
    },
}

impl Record {
    pub fn event_type(&self) -> EventType {
        match self {
            Record::Acquired { .. } => EventType::LeaderAcquired,
            Record::SteppedDown { .. } => EventType::LeaderSteppedDown,
            Record::Released { .. } => EventType::LeaderReleased,
            Record::SplitBrain(_) => EventType::SplitBrainDetected,
            Record::QuorumLost { .. } => EventType::QuorumLost,
            Record::QuorumRestored { .. } => EventType::QuorumRestored,
            Record::DuplicateNodeId { .. } => EventType::DuplicateNodeId,
        }
    }

    pub fn details(&self) -> serde_json::Value {
        match self {
            Record::Acquired { epoch } | Record::Released { epoch } => json!({ "epoch": epoch }),
            Record::SteppedDown { epoch, reason } => json!({ "epoch": epoch, "reason": reason }),
            Record::SplitBrain(divergence) => json!({
                "local_epoch": divergence.local_epoch,
                "store_epoch": divergence.store_epoch,
                "store_holder_id": divergence.store_holder_id,
            }),
            Record::QuorumLost { reason } => json!({ "reason": reason }),
            Record::QuorumRestored { outage } => json!({ "outage_ms": outage.as_millis() as u64 }),
            Record::DuplicateNodeId { warning } => json!({ "warning": warning }),
        }
    }

    /// The log line that goes with the record, at the level its gravity asks for.
    pub fn log(&self) {
        match self {
            Record::Acquired { epoch } => tracing::info!(epoch, "acquired the leader lease"),
            Record::SteppedDown { epoch, reason } => tracing::warn!(epoch, reason, "stepped down"),
            Record::Released { epoch } => tracing::info!(epoch, "released the leader lease"),
            Record::SplitBrain(d) => tracing::error!(
                local_epoch = d.local_epoch,
                store_epoch = d.store_epoch,
                store_holder_id = d.store_holder_id.as_deref().unwrap_or(""),
                "split brain: the lease row no longer names this node at its epoch; stepped down"
            ),
            Record::QuorumLost { reason } => {
                tracing::warn!(reason, "lost the database: no leadership, protected writes blocked")
            }
            Record::QuorumRestored { outage } => {
                tracing::info!(outage_ms = outage.as_millis() as u64, "the database is reachable again")
            }
            Record::DuplicateNodeId { warning } => tracing::error!("{warning}"),
        }
    }
}
