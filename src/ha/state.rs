//! What a node knows about itself: its role, epoch and local leadership deadline.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// A node's role as it acts on it right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
        })
    }
}

/// The body of `GET /v1/ha/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub node_id: String,
    pub role: Role,
    /// The lease holder as last read from the database (None if never held or unreachable).
    pub holder_id: Option<String>,
    pub epoch: i64,
    pub maintenance_mode: bool,
    pub db_reachable: bool,
    pub version: String,
}

#[derive(Debug, Default)]
struct Leadership {
    epoch: i64,
    holder_id: Option<String>,
    /// Past this instant the node stops acting as leader, whether or not it heard back.
    leader_until: Option<Instant>,
    db_reachable: bool,
}

/// Shared between the lease loop (writer) and the API handlers (readers).
pub struct NodeState {
    pub node_id: String,
    pub maintenance_mode: bool,
    inner: Mutex<Leadership>,
}

impl NodeState {
    pub fn new(node_id: String, maintenance_mode: bool) -> Self {
        Self {
            node_id,
            maintenance_mode,
            inner: Mutex::new(Leadership::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Leadership> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The epoch this node leads at, if its local deadline has not passed.
    pub fn leader_epoch(&self) -> Option<i64> {
        let inner = self.lock();
        match inner.leader_until {
            Some(until) if Instant::now() < until => Some(inner.epoch),
            _ => None,
        }
    }

    pub fn role(&self) -> Role {
        if self.leader_epoch().is_some() {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    /// Records a successful acquire or renew whose request left at `sent_at`.
    pub fn lead(&self, epoch: i64, sent_at: Instant, valid_for: Duration) {
        let mut inner = self.lock();
        inner.epoch = epoch;
        inner.holder_id = Some(self.node_id.clone());
        inner.leader_until = Some(sent_at + valid_for);
        inner.db_reachable = true;
    }

    /// Records that this node does not (or no longer) lead.
    pub fn follow(&self, holder_id: Option<String>, epoch: i64) {
        let mut inner = self.lock();
        inner.epoch = epoch;
        inner.holder_id = holder_id;
        inner.leader_until = None;
        inner.db_reachable = true;
    }

    /// The database could not be reached: stop leading now (decision 1: no database, no leader).
    pub fn lose_database(&self) {
        let mut inner = self.lock();
        inner.leader_until = None;
        inner.db_reachable = false;
    }

    pub fn report(&self) -> StatusReport {
        let role = self.role();
        let inner = self.lock();
        StatusReport {
            node_id: self.node_id.clone(),
            role,
            holder_id: inner.holder_id.clone(),
            epoch: inner.epoch,
            maintenance_mode: self.maintenance_mode,
            db_reachable: inner.db_reachable,
            version: crate::VERSION.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_ends_at_the_local_deadline() {
        let state = NodeState::new("n1".into(), false);
        state.lead(3, Instant::now(), Duration::from_millis(30));
        assert_eq!(state.leader_epoch(), Some(3));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(state.role(), Role::Follower);
    }

    #[test]
    fn losing_the_database_ends_leadership_at_once() {
        let state = NodeState::new("n1".into(), false);
        state.lead(1, Instant::now(), Duration::from_secs(60));
        state.lose_database();
        assert_eq!(state.role(), Role::Follower);
        assert!(!state.report().db_reachable);
    }
}
