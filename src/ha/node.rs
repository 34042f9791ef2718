//! The lease loop: keeps this node's view of leadership current until shutdown.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::{audit::AuditLog, db, ha::lease, ha::NodeState};

/// How the loop paces itself, derived from the lease TTL.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub ttl: Duration,
    /// Renew this often: four tries before the local deadline passes.
    pub renew_every: Duration,
    /// How long a renew keeps this node leader, counted from before it was sent. Shorter than
    /// the TTL so the node fences itself before any other node may take over (decision 2).
    pub lead_for: Duration,
}

impl LeaseTiming {
    pub fn from_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            renew_every: ttl / 5,
            lead_for: ttl * 4 / 5,
        }
    }
}

/// Runs until `shutdown` flips to true, then releases the lease if this node holds it.
pub async fn run_lease_loop(
    database_url: String,
    state: Arc<NodeState>,
    audit: Arc<AuditLog>,
    timing: LeaseTiming,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut session: Option<LeaseSession> = None;
    loop {
        if session.as_ref().is_none_or(|s| s.client.is_closed()) {
            if session.take().is_some() {
                state.lose_database();
                tracing::warn!("lease session lost; stepped down until it is re-established");
            }
            match db::connect(&database_url, &state.node_id, "lease").await {
                Ok(client) => session = Some(LeaseSession { client }),
                Err(error) => {
                    state.lose_database();
                    tracing::warn!(%error, "cannot reach the database for the lease");
                }
            }
        }
        if let Some(active) = session.as_ref() {
            // A hung connection must not stall the loop: past the local lead time, reconnect.
            match tokio::time::timeout(timing.lead_for, tick(active, &state, &audit, timing)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "lease round failed");
                    state.lose_database();
                    session = None;
                }
                Err(_) => {
                    tracing::warn!(timeout_ms = timing.lead_for.as_millis() as u64, "lease round timed out");
                    state.lose_database();
                    session = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(timing.renew_every) => {}
            _ = shutdown.changed() => break,
        }
    }
    if let (Some(active), Some(epoch)) = (session.as_ref(), state.leader_epoch()) {
        match lease::release(&active.client, &state.node_id, epoch).await {
            Ok(()) => tracing::info!(epoch, "released the leader lease"),
            Err(error) => tracing::warn!(%error, "could not release the lease; it expires by itself"),
        }
    }
}

/// The dedicated connection the lease is held through; its backend pid is in the lease row.
struct LeaseSession {
    client: Client,
}

/// One round: renew if leading, else try to acquire.
async fn tick(
    session: &LeaseSession,
    state: &NodeState,
    audit: &AuditLog,
    timing: LeaseTiming,
) -> Result<(), db::DbError> {
    let sent_at = Instant::now();
    if let Some(epoch) = state.leader_epoch() {
        if lease::renew(&session.client, &state.node_id, epoch, timing.ttl).await? {
            state.lead(epoch, sent_at, timing.lead_for);
            return Ok(());
        }
        tracing::warn!(epoch, "lost the leader lease");
        audit_quietly(audit, "ha.leader.lost", serde_json::json!({ "epoch": epoch }));
    }
    match lease::acquire(&session.client, &state.node_id, timing.ttl).await? {
        Some(epoch) => {
            state.lead(epoch, sent_at, timing.lead_for);
            tracing::info!(epoch, "acquired the leader lease");
            audit_quietly(audit, "ha.leader.acquired", serde_json::json!({ "epoch": epoch }));
        }
        None => {
            let row = lease::read(&session.client).await?;
            state.follow(row.holder_id, row.epoch);
        }
    }
    Ok(())
}

/// Leadership changes are audited, but an audit write failure must not stop the lease loop.
fn audit_quietly(audit: &AuditLog, event_type: &str, details: serde_json::Value) {
    if let Err(error) = audit.record(event_type, details) {
        tracing::error!(%error, event_type, "could not write an audit event");
    }
}
