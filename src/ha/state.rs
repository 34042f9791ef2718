//! What a node knows about itself: its role, epoch, local leadership deadline and last lease read.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ha::lease::LeaseRow;

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
    pub node_id: String,
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
    pub db_reachable: bool,
    pub version: String,
}

#[derive(Debug, Default)]
struct Leadership {
    /// The lease as last read or written by this node.
    lease: Option<LeaseRow>,
    /// The epoch this node leads at, while `leader_until` has not passed.
    epoch: i64,
    /// Past this instant the node stops acting as leader, whether or not it heard back.
    leader_until: Option<Instant>,
    last_renewed_at: Option<OffsetDateTime>,
    /// The lease loop lost the database (cleared by its next successful round). Starts false:
    /// before the first round, the status read alone says whether the database answers.
    db_lost: bool,
    /// Why leadership was given up outside the lease loop, for its audit record.
    step_down_reason: Option<&'static str>,
    /// Set on shutdown: the node never leads again; holds the epoch it resigned from.
    resigned: Option<Option<i64>>,
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
        if inner.resigned.is_some() {
            return None;
        }
        match inner.leader_until {
            Some(until) if Instant::now() < until => Some(inner.epoch),
            _ => None,
        }
    }

    pub fn role(&self) -> Role {
        if self.leader_epoch().is_some() {
            return Role::Leader;
        }
        let inner = self.lock();
        match inner.lease.as_ref().and_then(LeaseRow::live_holder) {
            Some(holder) if !inner.db_lost && holder != self.node_id => Role::Follower,
            _ => Role::Candidate,
        }
    }

    /// Records a successful acquire or renew whose request left at `sent_at`.
    pub fn lead(&self, lease: LeaseRow, sent_at: Instant, valid_for: Duration) {
        let mut inner = self.lock();
        inner.epoch = lease.epoch;
        inner.lease = Some(lease);
        inner.leader_until = Some(sent_at + valid_for);
        inner.last_renewed_at = Some(OffsetDateTime::now_utc());
        inner.db_lost = false;
    }

    /// Records the lease as another node holds it (or nobody): this node does not lead.
    pub fn follow(&self, lease: LeaseRow) {
        let mut inner = self.lock();
        inner.lease = Some(lease);
        inner.leader_until = None;
        inner.last_renewed_at = None;
        inner.db_lost = false;
    }

    /// Stops leading now (lost lease, fenced write, shutdown), keeping what is known about
    /// the lease; `reason` goes into the audit record.
    pub fn step_down(&self, reason: &'static str) {
        let mut inner = self.lock();
        if inner.leader_until.take().is_some() {
            inner.step_down_reason = Some(reason);
        }
        inner.last_renewed_at = None;
    }

    /// Steps down if still leading at `epoch` (a fenced write of an older epoch must not end
    /// a newer term).
    pub fn step_down_from(&self, epoch: i64, reason: &'static str) {
        if self.leader_epoch() == Some(epoch) {
            self.step_down(reason);
        }
    }

    /// Shutdown: stop leading now and for good. Returns the epoch led at, if any, to release.
    pub fn resign(&self) -> Option<i64> {
        let epoch = self.leader_epoch();
        let mut inner = self.lock();
        inner.leader_until = None;
        inner.last_renewed_at = None;
        *inner.resigned.get_or_insert(epoch)
    }

    /// True once `resign` was called: the lease loop must not acquire again.
    pub fn resigned(&self) -> bool {
        self.lock().resigned.is_some()
    }

    /// The reason given to the last `step_down`, once.
    pub fn take_step_down_reason(&self) -> Option<&'static str> {
        self.lock().step_down_reason.take()
    }

    /// The database could not be reached: stop leading now (decision 1: no database, no leader).
    pub fn lose_database(&self) {
        let mut inner = self.lock();
        inner.leader_until = None;
        inner.last_renewed_at = None;
        inner.db_lost = true;
    }

    /// The node the clients should write to, as last seen: (holder_id, holder_address). Never
    /// this node itself, and nothing while the database is lost.
    pub fn leader_hint(&self) -> (Option<String>, Option<String>) {
        let inner = self.lock();
        let other = |l: &&LeaseRow| l.valid && l.holder_id.as_deref() != Some(self.node_id.as_str());
        match inner.lease.as_ref().filter(other).filter(|_| !inner.db_lost) {
            Some(lease) => (lease.holder_id.clone(), lease.holder_address.clone()),
            None => (None, None),
        }
    }

    /// The status as this node knows it; `live` (a fresh read of the lease, if one could be
    /// made) replaces the last lease the loop saw. `writes_paused` is true during a restore.
    pub fn report(&self, live: Option<LeaseRow>, writes_paused: bool) -> StatusReport {
        // A fresh read that no longer names this node at its epoch wins over the local view:
        // the lease loop will step down at its next round; the report must not wait for it.
        let contradicted = |epoch: i64| {
            live.as_ref()
                .is_some_and(|l| !l.valid || l.epoch != epoch || l.holder_id.as_deref() != Some(&self.node_id))
        };
        let leader_epoch = self.leader_epoch().filter(|epoch| !contradicted(*epoch));
        let role = match self.role() {
            Role::Leader if leader_epoch.is_none() => Role::Candidate,
            role => role,
        };
        let inner = self.lock();
        let db_reachable = !inner.db_lost && live.is_some();
        let lease = live.or_else(|| inner.lease.clone());
        let valid = lease.as_ref().filter(|l| l.valid && db_reachable);
        let can_accept = leader_epoch.is_some() && db_reachable && !writes_paused;
        StatusReport {
            node_id: self.node_id.clone(),
            role,
            holder_id: valid.and_then(|l| l.holder_id.clone()),
            holder_address: valid.and_then(|l| l.holder_address.clone()),
            epoch: lease.as_ref().map_or(inner.epoch, |l| l.epoch),
            lease_expires_in_ms: valid.map(|l| l.expires_in_ms),
            write_block_active: valid.is_none() || writes_paused,
            can_accept_protected_writes: can_accept,
            last_renewed_at: inner.last_renewed_at.filter(|_| leader_epoch.is_some()),
            maintenance_mode: self.maintenance_mode,
            db_reachable,
            version: crate::VERSION.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, epoch: i64, valid: bool) -> LeaseRow {
        LeaseRow {
            holder_id: Some(holder.into()),
            holder_address: Some(format!("http://{holder}")),
            epoch,
            valid,
            expires_in_ms: if valid { 1000 } else { 0 },
        }
    }

    #[test]
    fn leadership_ends_at_the_local_deadline() {
        let state = NodeState::new("n1".into(), false);
        state.lead(lease("n1", 3, true), Instant::now(), Duration::from_millis(30));
        assert_eq!(state.leader_epoch(), Some(3));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(state.leader_epoch(), None);
        assert_ne!(state.role(), Role::Leader);
        assert!(
            !state
                .report(Some(lease("n1", 3, true)), false)
                .can_accept_protected_writes
        );
    }

    #[test]
    fn losing_the_database_ends_leadership_at_once() {
        let state = NodeState::new("n1".into(), false);
        state.lead(lease("n1", 1, true), Instant::now(), Duration::from_secs(60));
        state.lose_database();
        assert_eq!(state.role(), Role::Candidate);
        let report = state.report(None, false);
        assert!(!report.db_reachable);
        assert!(report.write_block_active);
        assert_eq!(report.holder_id, None);
    }

    #[test]
    fn a_valid_lease_of_another_node_makes_a_follower_and_an_expired_one_a_candidate() {
        let state = NodeState::new("n1".into(), false);
        state.follow(lease("n2", 4, true));
        assert_eq!(state.role(), Role::Follower);
        assert_eq!(state.leader_hint(), (Some("n2".into()), Some("http://n2".into())));
        let report = state.report(Some(lease("n2", 4, true)), false);
        assert!(!report.write_block_active && !report.can_accept_protected_writes);
        state.follow(lease("n2", 4, false));
        assert_eq!(state.role(), Role::Candidate);
        assert_eq!(state.leader_hint(), (None, None));
    }

    #[test]
    fn a_leader_accepts_writes_unless_a_restore_pauses_them() {
        let state = NodeState::new("n1".into(), false);
        state.lead(lease("n1", 2, true), Instant::now(), Duration::from_secs(60));
        let report = state.report(Some(lease("n1", 2, true)), false);
        assert!(report.can_accept_protected_writes && !report.write_block_active);
        assert!(report.last_renewed_at.is_some());
        let paused = state.report(Some(lease("n1", 2, true)), true);
        assert!(!paused.can_accept_protected_writes && paused.write_block_active);
    }

    #[test]
    fn a_fresh_read_naming_another_holder_overrides_local_leadership() {
        let state = NodeState::new("n1".into(), false);
        state.lead(lease("n1", 2, true), Instant::now(), Duration::from_secs(60));
        let report = state.report(Some(lease("n2", 3, true)), false);
        assert_eq!(report.role, Role::Candidate);
        assert!(!report.can_accept_protected_writes);
        assert_eq!(report.holder_id.as_deref(), Some("n2"));
    }
}
