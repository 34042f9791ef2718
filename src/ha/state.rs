//! What the handlers know of the node: the election's last published view, read from memory,
//! and the two gates a handler may close ahead of the lease loop (a fenced write, a shutdown).

pub use crate::api::{ReplicationSample, Role, SplitBrain, StatusReport};

use std::{sync::Mutex, time::Instant};

use tokio::sync::mpsc;

use super::replication::ReplicationView;
use time::OffsetDateTime;

use crate::{
    ha::{
        election::{Divergence, Event, Snapshot},
        store::LeaseRow,
    },
    ident::NodeId,
};

impl StatusReport {
    /// Adds the audit store's health.
    pub fn with_audit(mut self, audit: crate::audit::AuditHealth) -> Self {
        self.audit = audit;
        self
    }

    /// Adds the lease store's kind and health.
    pub fn with_lease_store(mut self, store: crate::api::LeaseStoreStatus) -> Self {
        self.lease_store = store;
        self
    }

    /// Adds what the replication sampler saw last.
    pub fn with_replication(mut self, view: ReplicationView) -> Self {
        self.replication = view.standbys;
        self.replication_health = view.health;
        self.replication_sample = view.sample;
        self
    }
}

/// The view as the handlers read it.
#[derive(Debug, Default)]
struct Published {
    snapshot: Snapshot,
    last_renewed_at: Option<OffsetDateTime>,
    split_brain: Option<SplitBrain>,
    /// Terms up to this epoch accept no write here any more: a protected write was fenced at
    /// it. Epochs only grow, so the gate never needs opening again.
    fenced_through: i64,
    /// The node is shutting down: it accepts no write from the signal on.
    resigned: bool,
}

/// Shared between the lease loop (which publishes the election's view) and the API handlers
/// (which read it, and tell the loop what they saw over a channel).
pub struct NodeState {
    pub node_id: NodeId,
    pub maintenance_mode: bool,
    inner: Mutex<Published>,
    events: mpsc::UnboundedSender<Event>,
    /// Told how long each lease renewal took (the metrics' histogram), once set.
    renew_observer: std::sync::OnceLock<Box<dyn Fn(std::time::Duration) + Send + Sync>>,
}

/// Converts a monotonic instant in the past to the wall clock, for the status report.
fn wall_clock_of(instant: Instant) -> OffsetDateTime {
    OffsetDateTime::now_utc() - Instant::now().saturating_duration_since(instant)
}

impl NodeState {
    /// The state, and the receiving end of the events the handlers send to the lease loop.
    pub fn new(node_id: NodeId, maintenance_mode: bool) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (events, inbox) = mpsc::unbounded_channel();
        let state = Self {
            node_id,
            maintenance_mode,
            inner: Mutex::new(Published::default()),
            events,
            renew_observer: std::sync::OnceLock::new(),
        };
        (state, inbox)
    }

    /// Has every lease renewal's duration told to `observer` (set once).
    pub fn on_renew(&self, observer: impl Fn(std::time::Duration) + Send + Sync + 'static) {
        let _ = self.renew_observer.set(Box::new(observer));
    }

    /// The lease loop's report of one renewal.
    pub fn observe_renew(&self, took: std::time::Duration) {
        if let Some(observer) = self.renew_observer.get() {
            observer(took);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lease loop publishes what the election decided.
    pub fn publish(&self, snapshot: Snapshot) {
        let mut inner = self.lock();
        inner.last_renewed_at = snapshot.renewed_at.map(wall_clock_of);
        if snapshot.split_brain != inner.snapshot.split_brain {
            inner.split_brain = snapshot.split_brain.as_ref().map(|d: &Divergence| SplitBrain {
                detected_at: wall_clock_of(d.detected_at),
                local_epoch: d.local_epoch,
                store_epoch: d.store_epoch,
                store_holder_id: d.store_holder_id.clone(),
            });
        }
        inner.snapshot = snapshot;
    }

    /// The epoch this node leads at, if its local deadline has not passed and no gate is closed.
    pub fn leader_epoch(&self) -> Option<i64> {
        let inner = self.lock();
        if inner.resigned {
            return None;
        }
        inner
            .snapshot
            .leader_epoch(Instant::now())
            .filter(|epoch| *epoch > inner.fenced_through)
    }

    pub fn role(&self) -> Role {
        if self.leader_epoch().is_some() {
            return Role::Leader;
        }
        let inner = self.lock();
        match inner.snapshot.lease.as_ref().and_then(LeaseRow::live_holder) {
            Some(holder) if inner.snapshot.reachable && self.node_id != holder => Role::Follower,
            _ => Role::Candidate,
        }
    }

    /// A protected write found the lease no longer naming this node at `epoch`: refuse writes
    /// of that epoch at once, and let the election find out why.
    pub fn step_down_from(&self, epoch: i64) {
        if self.leader_epoch() == Some(epoch) {
            let mut inner = self.lock();
            inner.fenced_through = inner.fenced_through.max(epoch);
            drop(inner);
            // The loop is gone only when the node is stopping; nothing is left to tell.
            let _ = self.events.send(Event::FencedWrite { epoch });
        }
    }

    /// Shutdown: refuse protected writes from this instant, even if the lease loop is
    /// mid-round, and tell the loop to release the lease and stop.
    pub fn resign(&self) {
        self.lock().resigned = true;
        let _ = self.events.send(Event::Shutdown);
    }

    /// Whether the lease loop's last request reached the store.
    pub fn db_reachable(&self) -> bool {
        self.lock().snapshot.reachable
    }

    /// The node the clients should write to, as last seen: (holder_id, holder_address). Never
    /// this node itself, and nothing while the database is lost.
    pub fn leader_hint(&self) -> (Option<String>, Option<String>) {
        let inner = self.lock();
        let other = |l: &&LeaseRow| l.valid && l.holder_id.as_deref() != Some(self.node_id.as_str());
        match inner
            .snapshot
            .lease
            .as_ref()
            .filter(other)
            .filter(|_| inner.snapshot.reachable)
        {
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
        let view = &inner.snapshot;
        let db_reachable = view.reachable;
        let lease = view.lease.as_ref();
        let valid = lease.filter(|l| l.valid && db_reachable);
        StatusReport {
            node_id: self.node_id.clone(),
            role,
            holder_id: valid.and_then(|l| l.holder_id.clone()),
            holder_address: valid.and_then(|l| l.holder_address.clone()),
            epoch: lease.map_or(view.last_epoch, |l| l.epoch),
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
            warnings: view.warnings.clone(),
            lease_store: Default::default(),
            version: crate::VERSION.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ha::election::Term;

    fn lease(holder: &str, epoch: i64, valid: bool) -> LeaseRow {
        LeaseRow::held_by(holder, epoch, valid)
    }

    fn leading(epoch: i64, valid_for: Duration) -> Snapshot {
        Snapshot {
            lease: Some(lease("n1", epoch, true)),
            term: Some(Term {
                epoch,
                until: Instant::now() + valid_for,
            }),
            last_epoch: epoch,
            renewed_at: Some(Instant::now()),
            reachable: true,
            ..Snapshot::default()
        }
    }

    fn node() -> (NodeState, mpsc::UnboundedReceiver<Event>) {
        NodeState::new(NodeId::parse("n1").unwrap(), false)
    }

    /// Node n1 once the lease loop has published `snapshot`.
    fn published(snapshot: Snapshot) -> (NodeState, mpsc::UnboundedReceiver<Event>) {
        let (state, inbox) = node();
        state.publish(snapshot);
        (state, inbox)
    }

    #[test]
    fn leadership_ends_at_the_local_deadline_even_if_the_loop_publishes_nothing() {
        let (state, _inbox) = published(leading(3, Duration::from_millis(30)));
        assert_eq!(state.leader_epoch(), Some(3));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(state.leader_epoch(), None);
        assert_ne!(state.role(), Role::Leader);
        assert!(!state.report(false).can_accept_protected_writes);
    }

    #[test]
    fn an_unreachable_database_blocks_writes_and_hides_the_holder() {
        let (state, _inbox) = published(Snapshot {
            lease: Some(lease("n1", 1, true)),
            last_epoch: 1,
            ..Snapshot::default()
        });
        assert_eq!(state.role(), Role::Candidate);
        let report = state.report(false);
        assert!(!report.db_reachable);
        assert!(report.write_block_active);
        assert_eq!(report.holder_id, None);
    }

    #[test]
    fn a_valid_lease_of_another_node_makes_a_follower_and_an_expired_one_a_candidate() {
        let (state, _inbox) = node();
        let following = |valid| Snapshot {
            lease: Some(lease("n2", 4, valid)),
            reachable: true,
            ..Snapshot::default()
        };
        state.publish(following(true));
        assert_eq!(state.role(), Role::Follower);
        assert_eq!(state.leader_hint(), (Some("n2".into()), Some("http://n2".into())));
        let report = state.report(false);
        assert!(!report.write_block_active && !report.can_accept_protected_writes);
        state.publish(following(false));
        assert_eq!(state.role(), Role::Candidate);
        assert_eq!(state.leader_hint(), (None, None));
    }

    #[test]
    fn a_leader_accepts_writes_unless_a_restore_pauses_them() {
        let (state, _inbox) = published(leading(2, Duration::from_secs(60)));
        let report = state.report(false);
        assert!(report.can_accept_protected_writes && !report.write_block_active);
        assert!(report.last_renewed_at.is_some());
        let paused = state.report(true);
        assert!(!paused.can_accept_protected_writes && paused.write_block_active);
    }

    #[test]
    fn a_fenced_write_closes_the_gate_at_once_and_tells_the_loop() {
        let (state, mut inbox) = published(leading(2, Duration::from_secs(60)));
        state.step_down_from(1); // an older term's write: nothing changes
        assert_eq!(state.leader_epoch(), Some(2));
        state.step_down_from(2);
        assert_eq!(state.leader_epoch(), None);
        assert_eq!(inbox.try_recv().ok(), Some(Event::FencedWrite { epoch: 2 }));
        assert!(inbox.try_recv().is_err(), "told once");
        // The loop has not caught up and publishes the old term again: the gate stays shut.
        state.publish(leading(2, Duration::from_secs(60)));
        assert_eq!(state.leader_epoch(), None);
        state.publish(leading(3, Duration::from_secs(60)));
        assert_eq!(state.leader_epoch(), Some(3), "a new term opens it");
    }

    #[test]
    fn resigning_refuses_writes_from_that_instant() {
        let (state, mut inbox) = published(leading(2, Duration::from_secs(60)));
        state.resign();
        assert_eq!(state.leader_epoch(), None);
        assert!(!state.report(false).can_accept_protected_writes);
        assert_eq!(inbox.try_recv().ok(), Some(Event::Shutdown));
    }

    #[test]
    fn a_split_brain_is_reported_with_its_epochs() {
        let (state, _inbox) = published(Snapshot {
            lease: Some(lease("rogue", 900, true)),
            last_epoch: 2,
            reachable: true,
            split_brain: Some(Divergence {
                detected_at: Instant::now(),
                local_epoch: 2,
                store_epoch: 900,
                store_holder_id: Some("rogue".into()),
            }),
            ..Snapshot::default()
        });
        let report = state.report(false);
        assert_eq!(report.role, Role::Follower);
        assert!(!report.can_accept_protected_writes);
        let split = report.split_brain.expect("reported");
        assert_eq!((split.local_epoch, split.store_epoch), (2, 900));
    }

    #[test]
    fn a_node_that_never_reached_the_database_reports_it_unreachable() {
        let (state, _inbox) = node();
        let report = state.report(false);
        assert!(!report.db_reachable && report.write_block_active && !report.can_accept_protected_writes);
        assert_eq!(report.role, Role::Candidate);
    }
}
