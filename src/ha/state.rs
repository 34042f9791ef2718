//! What a node knows about itself: its role, epoch, local leadership deadline and last lease read.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::replication::{Health, LagThresholds, ReplicationView, StandbyStatus};
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
    pub audit: crate::audit::AuditHealth,
    /// Problems of this node's configuration found while running (another process using the
    /// same node id), newest last.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub version: String,
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

impl StatusReport {
    /// Adds the audit store's health.
    pub fn with_audit(mut self, audit: crate::audit::AuditHealth) -> Self {
        self.audit = audit;
        self
    }

    /// Adds what the replication sampler saw last.
    pub fn with_replication(mut self, view: ReplicationView) -> Self {
        self.replication = view.standbys;
        self.replication_health = view.health;
        self.replication_sample = ReplicationSample {
            sampled_at: view.sampled_at,
            primary_lsn: view.primary_lsn,
            thresholds: view.thresholds,
            error: view.error,
        };
        self
    }
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

#[derive(Debug, Default)]
struct Leadership {
    /// The lease as last read or written by this node.
    lease: Option<LeaseRow>,
    /// The epoch this node leads at, while `leader_until` has not passed.
    epoch: i64,
    /// Past this instant the node stops acting as leader, whether or not it heard back.
    leader_until: Option<Instant>,
    last_renewed_at: Option<OffsetDateTime>,
    /// The lease loop's last round reached the database (false until the first one does).
    reachable: bool,
    split_brain: Option<SplitBrain>,
    /// Why leadership was given up outside the lease loop, for its audit record.
    step_down_reason: Option<&'static str>,
    /// The epoch a protected write found the lease row no longer naming this node at, while
    /// its local deadline still ran: the lease loop reads the row to tell why.
    fenced_epoch: Option<i64>,
    /// Set on shutdown: the node never leads again; holds the epoch it resigned from.
    resigned: Option<Option<i64>>,
    /// Configuration problems found while running, for the status report.
    warnings: Vec<String>,
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
            Some(holder) if inner.reachable && holder != self.node_id => Role::Follower,
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
        inner.reachable = true;
        // A new term starts clean: nothing left over from the last one labels its end.
        inner.step_down_reason = None;
        inner.fenced_epoch = None;
    }

    /// Records a read of the lease that confirms what this node already knows (a leader
    /// between renews): its deadline is unchanged.
    pub fn observe(&self, lease: LeaseRow) {
        let mut inner = self.lock();
        inner.lease = Some(lease);
        inner.reachable = true;
    }

    /// The lease row no longer names this node at the epoch it was leading at: stop leading
    /// now and remember the divergence for the status.
    pub fn diverged(&self, local_epoch: i64, store: LeaseRow) -> SplitBrain {
        let detected = SplitBrain {
            detected_at: OffsetDateTime::now_utc(),
            local_epoch,
            store_epoch: store.epoch,
            store_holder_id: store.holder_id.clone(),
        };
        let mut inner = self.lock();
        inner.lease = Some(store);
        inner.leader_until = None;
        inner.last_renewed_at = None;
        inner.reachable = true;
        inner.split_brain = Some(detected.clone());
        inner.step_down_reason = None;
        inner.fenced_epoch = None;
        detected
    }

    /// Records the lease as another node holds it (or nobody): this node does not lead.
    pub fn follow(&self, lease: LeaseRow) {
        let mut inner = self.lock();
        inner.lease = Some(lease);
        inner.leader_until = None;
        inner.last_renewed_at = None;
        inner.reachable = true;
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
            self.lock().fenced_epoch = Some(epoch);
        }
    }

    /// The epoch a fenced write stepped this node down from, once.
    pub fn take_fenced_epoch(&self) -> Option<i64> {
        self.lock().fenced_epoch.take()
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
        inner.reachable = false;
        // Its own audit record says why; a fenced write before it needs no row read later.
        inner.step_down_reason = None;
        inner.fenced_epoch = None;
    }

    /// Forgets the warnings (this node now leads: no other process holds its lease).
    pub fn clear_warnings(&self) {
        self.lock().warnings.clear();
    }

    /// Adds a warning to the status report, once; true if it was new.
    pub fn warn_once(&self, warning: String) -> bool {
        let mut inner = self.lock();
        if inner.warnings.contains(&warning) {
            return false;
        }
        inner.warnings.push(warning);
        true
    }

    /// Whether the lease loop's last round reached the database.
    pub fn db_reachable(&self) -> bool {
        self.lock().reachable
    }

    /// The node the clients should write to, as last seen: (holder_id, holder_address). Never
    /// this node itself, and nothing while the database is lost.
    pub fn leader_hint(&self) -> (Option<String>, Option<String>) {
        let inner = self.lock();
        let other = |l: &&LeaseRow| l.valid && l.holder_id.as_deref() != Some(self.node_id.as_str());
        match inner.lease.as_ref().filter(other).filter(|_| inner.reachable) {
            Some(lease) => (lease.holder_id.clone(), lease.holder_address.clone()),
            None => (None, None),
        }
    }

    /// The status as this node knows it, from memory: a status request never waits on the
    /// database (the lease loop keeps this view at most a poll interval old, and marks the
    /// database lost when a query goes unanswered). `writes_paused` is true during a restore.
    pub fn report(&self, writes_paused: bool) -> StatusReport {
        let leader_epoch = self.leader_epoch();
        let role = self.role();
        let inner = self.lock();
        let db_reachable = inner.reachable;
        let lease = inner.lease.as_ref();
        let valid = lease.filter(|l| l.valid && db_reachable);
        StatusReport {
            node_id: self.node_id.clone(),
            role,
            holder_id: valid.and_then(|l| l.holder_id.clone()),
            holder_address: valid.and_then(|l| l.holder_address.clone()),
            epoch: lease.map_or(inner.epoch, |l| l.epoch),
            lease_expires_in_ms: valid.map(|l| l.expires_in_ms),
            write_block_active: valid.is_none() || writes_paused,
            can_accept_protected_writes: leader_epoch.is_some() && db_reachable && !writes_paused,
            last_renewed_at: inner.last_renewed_at.filter(|_| leader_epoch.is_some()),
            maintenance_mode: self.maintenance_mode,
            db_reachable,
            split_brain: inner.split_brain.clone(),
            replication: Vec::new(),
            replication_health: None,
            replication_sample: ReplicationSample::default(),
            audit: Default::default(),
            warnings: inner.warnings.clone(),
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
        assert!(!state.report(false).can_accept_protected_writes);
    }

    #[test]
    fn losing_the_database_ends_leadership_at_once() {
        let state = NodeState::new("n1".into(), false);
        state.lead(lease("n1", 1, true), Instant::now(), Duration::from_secs(60));
        state.lose_database();
        assert_eq!(state.role(), Role::Candidate);
        let report = state.report(false);
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
        let report = state.report(false);
        assert!(!report.write_block_active && !report.can_accept_protected_writes);
        state.follow(lease("n2", 4, false));
        assert_eq!(state.role(), Role::Candidate);
        assert_eq!(state.leader_hint(), (None, None));
    }

    #[test]
    fn a_leader_accepts_writes_unless_a_restore_pauses_them() {
        let state = NodeState::new("n1".into(), false);
        state.lead(lease("n1", 2, true), Instant::now(), Duration::from_secs(60));
        let report = state.report(false);
        assert!(report.can_accept_protected_writes && !report.write_block_active);
        assert!(report.last_renewed_at.is_some());
        let paused = state.report(true);
        assert!(!paused.can_accept_protected_writes && paused.write_block_active);
    }

    #[test]
    fn a_rewritten_lease_row_ends_leadership_and_is_reported() {
        let state = NodeState::new("n1".into(), false);
        state.lead(lease("n1", 2, true), Instant::now(), Duration::from_secs(60));
        let detected = state.diverged(2, lease("rogue", 900, true));
        assert_eq!((detected.local_epoch, detected.store_epoch), (2, 900));
        assert_eq!(state.leader_epoch(), None);
        let report = state.report(false);
        assert_eq!(report.role, Role::Follower);
        assert!(!report.can_accept_protected_writes);
        assert_eq!(report.split_brain, Some(detected));
    }

    #[test]
    fn a_node_that_never_reached_the_database_reports_it_unreachable() {
        let report = NodeState::new("n1".into(), false).report(false);
        assert!(!report.db_reachable && report.write_block_active && !report.can_accept_protected_writes);
        assert_eq!(report.role, Role::Candidate);
    }
}
