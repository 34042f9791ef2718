//! Logs and audits every change of leadership and of database reachability exactly once.

use std::{sync::Arc, time::Instant};

use crate::{
    audit::AuditLog,
    ha::{state::SplitBrain, NodeState},
};

/// Whether the lease loop reaches the database, as last recorded.
#[derive(Debug, Clone, Copy)]
enum Quorum {
    /// No round has finished yet.
    Unknown,
    Held,
    /// Lost at this instant (for the outage length in the restore record).
    Lost(Instant),
}

pub struct Transitions {
    state: Arc<NodeState>,
    audit: Arc<AuditLog>,
    /// The epoch this node last acted as leader at, until it stepped down.
    led: Option<i64>,
    quorum: Quorum,
}

impl Transitions {
    pub fn new(state: Arc<NodeState>, audit: Arc<AuditLog>) -> Self {
        Self {
            state,
            audit,
            led: None,
            quorum: Quorum::Unknown,
        }
    }

    pub fn acquired(&mut self, epoch: i64) {
        tracing::info!(epoch, "acquired the leader lease");
        self.record("ha.leader.acquired", serde_json::json!({ "epoch": epoch }));
        self.led = Some(epoch);
    }

    /// Records a step-down if this node was leading and no longer is.
    pub fn stepped_down(&mut self, reason: &str) {
        if let Some(epoch) = self.led {
            if self.state.leader_epoch() != Some(epoch) {
                tracing::warn!(epoch, reason, "stepped down");
                self.record(
                    "ha.leader.stepped_down",
                    serde_json::json!({ "epoch": epoch, "reason": reason }),
                );
                self.led = None;
            }
        }
    }

    pub fn released(&mut self, epoch: i64) {
        self.record("ha.leader.released", serde_json::json!({ "epoch": epoch }));
        self.led = None;
    }

    /// The lease row was rewritten under this leader; it has already stepped down.
    pub fn split_brain(&mut self, detected: &SplitBrain) {
        tracing::error!(
            local_epoch = detected.local_epoch,
            store_epoch = detected.store_epoch,
            store_holder_id = detected.store_holder_id.as_deref().unwrap_or(""),
            "split brain: the lease row no longer names this node at its epoch; stepped down"
        );
        self.record(
            "ha.split_brain.detected",
            serde_json::json!({
                "local_epoch": detected.local_epoch,
                "store_epoch": detected.store_epoch,
                "store_holder_id": detected.store_holder_id,
            }),
        );
        self.stepped_down("split brain: the lease row names another holder or epoch");
    }

    /// A round reached the database.
    pub fn quorum_held(&mut self) {
        if let Quorum::Lost(since) = self.quorum {
            let outage_ms = since.elapsed().as_millis() as u64;
            tracing::info!(outage_ms, "the database is reachable again");
            self.record("ha.quorum.restored", serde_json::json!({ "outage_ms": outage_ms }));
        }
        self.quorum = Quorum::Held;
    }

    /// The database could not be reached; the state has already dropped leadership.
    pub fn quorum_lost(&mut self, reason: &str) {
        if !matches!(self.quorum, Quorum::Lost(_)) {
            tracing::warn!(reason, "lost the database: no leadership, protected writes blocked");
            self.record("ha.quorum.lost", serde_json::json!({ "reason": reason }));
            self.quorum = Quorum::Lost(Instant::now());
        }
        self.stepped_down(reason);
    }

    /// Another process leads under this node's id.
    pub fn duplicate_node_id(&mut self, warning: &str) {
        self.record("ha.node.duplicate_id", serde_json::json!({ "warning": warning }));
    }

    /// An audit write failure must not stop the lease loop (the store is local files, so it
    /// fails only with the local disk).
    fn record(&self, event_type: &str, details: serde_json::Value) {
        if let Err(error) = self.audit.record(event_type, details) {
            tracing::error!(%error, event_type, "could not write an audit event");
        }
    }
}
