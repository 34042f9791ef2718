//! The lease loop: keeps this node's view of leadership current until shutdown, then releases.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

use crate::{
    audit::AuditLog,
    db,
    ha::{
        lease::{self, Attempt},
        NodeState,
    },
};

/// How the loop paces itself (validated in config.rs).
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub ttl: Duration,
    /// The leader renews this often.
    pub renew_every: Duration,
    /// Followers and candidates try to acquire this often (and at once on a release).
    pub poll_every: Duration,
    /// How long a renew keeps this node leader, counted from before it was sent: the TTL less
    /// a safety margin, so the node fences itself before any other node may take over
    /// (decision 2; docs/ARCHITECTURE.md has the argument).
    pub lead_for: Duration,
}

impl LeaseTiming {
    /// The safety margin is a fifth of the TTL.
    pub fn new(ttl: Duration, renew_every: Duration, poll_every: Duration) -> Self {
        Self {
            ttl,
            renew_every,
            poll_every,
            lead_for: ttl - ttl / 5,
        }
    }
}

/// Runs until `shutdown` flips to true; then, if this node leads, steps down and releases the
/// lease before returning, so a successor can take over before this process exits.
pub async fn run_lease_loop(
    database_url: String,
    address: String,
    state: Arc<NodeState>,
    audit: Arc<AuditLog>,
    timing: LeaseTiming,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut session: Option<LeaseSession> = None;
    let mut leadership = Transitions::new(state.clone(), audit.clone());
    // Consecutive failed connection attempts: retries back off up to a second, so a database
    // that is down is not hammered (nor the log flooded) every poll interval.
    let mut failed_connects: u32 = 0;
    loop {
        if session.is_none() {
            match LeaseSession::open(&database_url, &state.node_id).await {
                Ok(opened) => {
                    if failed_connects > 0 {
                        tracing::info!(failed_connects, "lease session re-established");
                    }
                    failed_connects = 0;
                    session = Some(opened);
                }
                Err(error) => {
                    state.lose_database();
                    leadership.stepped_down("the database is unreachable");
                    if failed_connects == 0 {
                        tracing::warn!(%error, "cannot reach the database for the lease; retrying with backoff");
                    } else {
                        tracing::debug!(%error, failed_connects, "still cannot reach the database");
                    }
                    failed_connects = failed_connects.saturating_add(1);
                }
            }
        }
        if let Some(active) = session.as_ref() {
            // A hung connection must not stall the loop: past the local lead time, reconnect.
            match tokio::time::timeout(
                timing.lead_for,
                round(active, &state, &address, timing, &mut leadership),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "lease round failed");
                    state.lose_database();
                    leadership.stepped_down("a lease round failed");
                    session = None;
                }
                Err(_) => {
                    tracing::warn!(timeout_ms = timing.lead_for.as_millis() as u64, "lease round timed out");
                    state.lose_database();
                    leadership.stepped_down("a lease round timed out");
                    session = None;
                }
            }
        }
        let wait = if state.leader_epoch().is_some() {
            timing.renew_every
        } else if failed_connects > 0 {
            (timing.poll_every * 2u32.saturating_pow(failed_connects.min(6))).min(Duration::from_secs(1))
        } else {
            timing.poll_every
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            event = next_event(&mut session) => {
                if event.is_none() {
                    // The lease session ended: the lease row no longer names a live session,
                    // so another node may take over now. Stop leading before it can.
                    state.lose_database();
                    leadership.stepped_down("the lease session ended");
                    tracing::warn!("lease session lost; stepped down until it is re-established");
                    session = None;
                }
                // A release notification: try to acquire at once (the next round).
            }
            _ = shutdown.changed() => break,
        }
    }
    // The stop handler resigned already (so writes were refused from the signal on); this
    // covers any other way the loop is told to stop.
    if let (Some(active), Some(epoch)) = (session.as_mut(), state.resign()) {
        match tokio::time::timeout(
            timing.lead_for,
            lease::release(&mut active.client, &state.node_id, epoch),
        )
        .await
        {
            Ok(Ok(true)) => {
                tracing::info!(epoch, "released the leader lease");
                leadership.released(epoch);
            }
            Ok(Ok(false)) => tracing::warn!(epoch, "the lease had already moved on; nothing to release"),
            Ok(Err(error)) => tracing::warn!(%error, "could not release the lease; it expires by itself"),
            Err(_) => tracing::warn!("releasing the lease timed out; it expires by itself"),
        }
    }
}

/// The dedicated connection the lease is held through; its backend pid is in the lease row.
struct LeaseSession {
    client: Client,
    /// Release notifications; ends when the connection does.
    events: mpsc::UnboundedReceiver<String>,
}

impl LeaseSession {
    async fn open(database_url: &str, node_id: &str) -> Result<Self, db::DbError> {
        let (client, events) = db::connect_with_events(database_url, node_id, "lease").await?;
        lease::listen_for_releases(&client).await?;
        Ok(Self { client, events })
    }
}

/// The next notification or the end of the session; never resolves without a session.
async fn next_event(session: &mut Option<LeaseSession>) -> Option<String> {
    match session {
        Some(active) => active.events.recv().await,
        None => std::future::pending().await,
    }
}

/// One round: renew if leading, else try to acquire.
async fn round(
    session: &LeaseSession,
    state: &NodeState,
    address: &str,
    timing: LeaseTiming,
    leadership: &mut Transitions,
) -> Result<(), db::DbError> {
    if state.resigned() {
        return Ok(()); // shutting down: never acquire again
    }
    let sent_at = Instant::now();
    match state.leader_epoch() {
        Some(epoch) => match lease::renew(&session.client, &state.node_id, epoch, timing.ttl).await? {
            Some(row) => {
                state.lead(row, sent_at, timing.lead_for);
                return Ok(());
            }
            None => {
                state.step_down("the lease was taken, released or expired before this renew");
                leadership.stepped_down("the lease was taken, released or expired before this renew");
            }
        },
        None => leadership.stepped_down(
            state
                .take_step_down_reason()
                .unwrap_or("the local deadline passed before a renew succeeded"),
        ),
    }
    match lease::try_acquire(&session.client, &state.node_id, address, timing.ttl).await? {
        Attempt::Acquired(row) => {
            let epoch = row.epoch;
            state.lead(row, sent_at, timing.lead_for);
            leadership.acquired(epoch);
        }
        Attempt::Held(row) => state.follow(row),
    }
    Ok(())
}

/// Logs and audits every change of leadership exactly once.
struct Transitions {
    state: Arc<NodeState>,
    audit: Arc<AuditLog>,
    /// The epoch this node last acted as leader at, until it stepped down.
    led: Option<i64>,
}

impl Transitions {
    fn new(state: Arc<NodeState>, audit: Arc<AuditLog>) -> Self {
        Self {
            state,
            audit,
            led: None,
        }
    }

    fn acquired(&mut self, epoch: i64) {
        tracing::info!(epoch, "acquired the leader lease");
        self.record("ha.leader.acquired", serde_json::json!({ "epoch": epoch }));
        self.led = Some(epoch);
    }

    /// Records a step-down if this node was leading and no longer is.
    fn stepped_down(&mut self, reason: &str) {
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

    fn released(&mut self, epoch: i64) {
        self.record("ha.leader.released", serde_json::json!({ "epoch": epoch }));
        self.led = None;
    }

    /// An audit write failure must not stop the lease loop.
    fn record(&self, event_type: &str, details: serde_json::Value) {
        if let Err(error) = self.audit.record(event_type, details) {
            tracing::error!(%error, event_type, "could not write an audit event");
        }
    }
}
