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
        lease::{self, Attempt, LeaseRow, Renewal},
        transitions::Transitions,
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
    /// A connect or lease query unanswered for this long means the database is lost: one renew
    /// interval (a leader that cannot renew within it is unhealthy), at least 500 ms so a
    /// short renew interval does not turn every slow commit into a failover. Always below
    /// `lead_for`, so a cut-off leader gives up before its deadline would.
    pub query_timeout: Duration,
}

impl LeaseTiming {
    /// The safety margin is a fifth of the TTL.
    pub fn new(ttl: Duration, renew_every: Duration, poll_every: Duration) -> Self {
        Self {
            ttl,
            renew_every,
            poll_every,
            lead_for: ttl - ttl / 5,
            query_timeout: renew_every.max(Duration::from_millis(500)).min(ttl - ttl / 5),
        }
    }
}

/// Longest wait between connection attempts while the database is unreachable: retries back
/// off so a database that is down is not hammered every poll interval (five refused
/// connections a second cost it nothing), and the node is back within a fifth of a second of
/// the database accepting again.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

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
    let mut transitions = Transitions::new(state.clone(), audit.clone());
    // Consecutive failures (connects or rounds) since the last successful round: retries back
    // off, so a database that keeps failing (down, schema dropped, read-only) is not hammered,
    // nor the audit flooded.
    let mut failures: u32 = 0;
    let mut next_renew = Instant::now();
    loop {
        if session.is_none() {
            let opened = tokio::time::timeout(timing.query_timeout, LeaseSession::open(&database_url, &state.node_id));
            match opened.await {
                Ok(Ok(opened)) => session = Some(opened),
                Ok(Err(error)) => {
                    lose_database(
                        &state,
                        &mut transitions,
                        "the database refused or closed the connection",
                        &error,
                        failures,
                    );
                    failures = failures.saturating_add(1);
                }
                Err(_) => {
                    let error = format!("no connection within {} ms", timing.query_timeout.as_millis());
                    lose_database(
                        &state,
                        &mut transitions,
                        "the database did not answer a connection attempt",
                        &error,
                        failures,
                    );
                    failures = failures.saturating_add(1);
                }
            }
        }
        // Set when the session is closed on purpose (a divergence): reconnect at once.
        let mut reconnect_now = false;
        if let Some(active) = session.as_ref() {
            // A query the database does not answer within the timeout (a cut-off network, a
            // hung server) counts as losing it: stop leading and reconnect.
            let pace = Pace { timing, next_renew };
            match tokio::time::timeout(
                timing.query_timeout,
                round(active, &state, &address, pace, &mut transitions),
            )
            .await
            {
                Ok(Ok(outcome)) => {
                    if failures > 0 {
                        tracing::info!(failures, "the lease session works again");
                    }
                    failures = 0;
                    if let Some(renewed_at) = outcome.renewed_at {
                        next_renew = renewed_at + timing.renew_every;
                    }
                    if outcome.drop_session {
                        // The row may name this session; closing it lets the election free the
                        // row at once instead of after its (possibly rewritten) expiry.
                        session = None;
                        reconnect_now = true;
                    }
                }
                Ok(Err(error)) => {
                    // The same termination reaches the loop either as this failed query or as
                    // the end of the session's event stream: name it the same way in both.
                    let reason = if error.session_ended() {
                        SESSION_ENDED
                    } else {
                        "a lease query failed"
                    };
                    lose_database(&state, &mut transitions, reason, &error, failures);
                    failures = failures.saturating_add(1);
                    session = None;
                }
                Err(_) => {
                    let error = format!("no answer within {} ms", timing.query_timeout.as_millis());
                    lose_database(
                        &state,
                        &mut transitions,
                        "a lease query went unanswered",
                        &error,
                        failures,
                    );
                    failures = failures.saturating_add(1);
                    session = None;
                }
            }
        }
        let wait = if reconnect_now {
            Duration::ZERO
        } else if failures > 0 {
            (timing.poll_every * 2u32.saturating_pow(failures.min(6))).min(MAX_RECONNECT_BACKOFF)
        } else if state.leader_epoch().is_some() {
            // Read the row back every poll interval, but never sleep past the renew.
            timing
                .poll_every
                .min(next_renew.saturating_duration_since(Instant::now()))
        } else {
            timing.poll_every
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            event = next_event(&mut session) => {
                if event.is_none() {
                    // The lease session ended: the lease row no longer names a live session,
                    // so another node may take over now. Stop leading before it can.
                    lose_database(&state, &mut transitions, SESSION_ENDED, &"connection closed", failures);
                    failures = failures.saturating_add(1);
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
                transitions.released(epoch);
            }
            Ok(Ok(false)) => tracing::warn!(epoch, "the lease had already moved on; nothing to release"),
            Ok(Err(error)) => tracing::warn!(%error, "could not release the lease; it expires by itself"),
            Err(_) => tracing::warn!("releasing the lease timed out; it expires by itself"),
        }
    }
}

/// The reason given when the server ends the lease session under the node.
const SESSION_ENDED: &str = "the lease session ended";

/// Decision 1: no database, no leader. Logs the first failure of a series at warn, the rest at
/// debug, so an outage does not flood the log.
fn lose_database(
    state: &NodeState,
    transitions: &mut Transitions,
    reason: &str,
    error: &dyn std::fmt::Display,
    failed_before: u32,
) {
    state.lose_database();
    if failed_before == 0 {
        tracing::warn!(%error, reason, "cannot reach the database for the lease; retrying with backoff");
    } else {
        tracing::debug!(%error, failed_before, "still cannot reach the database");
    }
    transitions.quorum_lost(reason);
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

/// When the leader's next renew is due.
#[derive(Clone, Copy)]
struct Pace {
    timing: LeaseTiming,
    next_renew: Instant,
}

/// What a round did that the loop must act on.
#[derive(Default)]
struct Outcome {
    /// The lease was acquired or renewed by a request sent at this instant.
    renewed_at: Option<Instant>,
    /// Close the lease session (after a divergence).
    drop_session: bool,
}

/// One round: a leader renews when due and otherwise reads the lease to check it still names
/// this node at its epoch; any other node tries to acquire.
async fn round(
    session: &LeaseSession,
    state: &NodeState,
    address: &str,
    pace: Pace,
    transitions: &mut Transitions,
) -> Result<Outcome, db::DbError> {
    if state.resigned() {
        return Ok(Outcome::default()); // shutting down: never acquire again
    }
    let timing = pace.timing;
    let sent_at = Instant::now();
    match state.leader_epoch() {
        Some(epoch) if sent_at >= pace.next_renew => {
            let renewal = lease::renew(&session.client, &state.node_id, epoch, timing.ttl).await?;
            transitions.quorum_held();
            match renewal {
                Renewal::Renewed(row) => {
                    state.lead(row, sent_at, timing.lead_for);
                    return Ok(Outcome {
                        renewed_at: Some(sent_at),
                        drop_session: false,
                    });
                }
                Renewal::Lost(row) => {
                    // A renew that waited on the row's lock (a rewrite in flight) returns the
                    // row as its statement first saw it: read it again to see what won.
                    let row = if names(&row, state, epoch) {
                        lease::read(&session.client).await?
                    } else {
                        row
                    };
                    if let Some(outcome) = lost(state, epoch, row, transitions) {
                        return Ok(outcome);
                    }
                }
            }
        }
        Some(epoch) => {
            let row = lease::read(&session.client).await?;
            transitions.quorum_held();
            if row.valid && names(&row, state, epoch) {
                state.observe(row);
                return Ok(Outcome::default());
            }
            if let Some(outcome) = lost(state, epoch, row, transitions) {
                return Ok(outcome);
            }
        }
        None => {
            // A fenced write stepped this node down while its deadline still ran: the row was
            // rewritten under it (a divergence) unless it merely names the same term, expired.
            if let Some(epoch) = state.take_fenced_epoch() {
                let row = lease::read(&session.client).await?;
                transitions.quorum_held();
                if !names(&row, state, epoch) {
                    state.take_step_down_reason();
                    return Ok(diverged(state, epoch, row, transitions));
                }
            }
            transitions.stepped_down(
                state
                    .take_step_down_reason()
                    .unwrap_or("the local deadline passed before a renew succeeded"),
            )
        }
    }
    let attempt = lease::try_acquire(&session.client, &state.node_id, address, timing.ttl).await?;
    // Before any acquisition, so the audit trail reads: lost, restored, acquired.
    transitions.quorum_held();
    match attempt {
        Attempt::Acquired(row) => {
            let epoch = row.epoch;
            state.clear_warnings();
            state.lead(row, sent_at, timing.lead_for);
            transitions.acquired(epoch);
            Ok(Outcome {
                renewed_at: Some(sent_at),
                drop_session: false,
            })
        }
        Attempt::Held(row) => {
            if row.live_holder() == Some(state.node_id.as_str()) && row.holder_address.as_deref() != Some(address) {
                // Not this process's session (it would have been re-acquired), nor an older
                // session of this process (same address) the server has not yet seen close:
                // another process runs with the same --node-id, and this one cannot lead.
                let warning = format!(
                    "another process holds the leader lease under this node's id `{}` (its API at {}); node ids must be unique: stop one of them",
                    state.node_id,
                    row.holder_address.as_deref().unwrap_or("unknown")
                );
                if state.warn_once(warning.clone()) {
                    tracing::error!("{warning}");
                    transitions.duplicate_node_id(&warning);
                }
            }
            state.follow(row);
            Ok(Outcome::default())
        }
    }
}

/// The leader at `epoch` found `row` no longer its valid lease. Another holder or epoch is a
/// divergence (split brain): step down and close the session (Some). The same holder and
/// epoch, expired, is an ordinary loss: step down and go on to the election (None).
fn lost(state: &NodeState, epoch: i64, row: LeaseRow, transitions: &mut Transitions) -> Option<Outcome> {
    if !names(&row, state, epoch) {
        return Some(diverged(state, epoch, row, transitions));
    }
    let reason = "the lease expired before this renew";
    state.step_down(reason);
    state.take_step_down_reason(); // recorded here, not by a later round
    transitions.stepped_down(reason);
    None
}

/// The row names this node at `epoch` (valid or not).
fn names(row: &LeaseRow, state: &NodeState, epoch: i64) -> bool {
    row.epoch == epoch && row.holder_id.as_deref() == Some(state.node_id.as_str())
}

/// Records a split brain: this node led at `epoch`, the row says otherwise. The session is
/// closed so a row still naming it (a rewrite that kept the holder session) frees at once.
fn diverged(state: &NodeState, epoch: i64, row: LeaseRow, transitions: &mut Transitions) -> Outcome {
    let detected = state.diverged(epoch, row);
    transitions.split_brain(&detected);
    Outcome {
        renewed_at: None,
        drop_session: true,
    }
}
