//! The lease store seam: what the election asks of whatever arbitrates leadership, and the
//! fence a protected write takes inside its own transaction.
//!
//! The lease row in the application database (`ha::lease`) is the embedded default; etcd
//! (`ha::etcd`) the store outside the database, whose fence in the database is `ha::fence`. Nothing
//! above this module knows where the lease lives: the election core sees only `LeaseRow`s,
//! `Attempt`s and `Renewal`s, and the driver only the two traits below.

use std::future::Future;

use tokio_postgres::Transaction;

use crate::{db::DbError, ident::NodeId};

/// The lease as the store sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub holder_id: Option<String>,
    pub holder_address: Option<String>,
    pub epoch: i64,
    /// The holder's lease has not expired (by the store's clock).
    pub valid: bool,
    /// Milliseconds until expiry by the store's clock; 0 once expired.
    pub expires_in_ms: i64,
}

impl LeaseRow {
    /// For tests: `holder` (reachable at `http://<holder>`) at `epoch`, valid for a second or expired.
    #[cfg(test)]
    pub(crate) fn held_by(holder: &str, epoch: i64, valid: bool) -> Self {
        Self {
            holder_id: Some(holder.into()),
            holder_address: Some(format!("http://{holder}")),
            epoch,
            valid,
            expires_in_ms: if valid { 1_000 } else { 0 },
        }
    }

    /// The holder, if its lease is still valid.
    pub fn live_holder(&self) -> Option<&str> {
        self.holder_id.as_deref().filter(|_| self.valid)
    }

    /// The lease names `node_id` at `epoch`, valid or not.
    pub fn names(&self, node_id: &str, epoch: i64) -> bool {
        self.epoch == epoch && self.holder_id.as_deref() == Some(node_id)
    }
}

/// What one acquisition attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This node now holds the lease at a new epoch.
    Acquired(LeaseRow),
    /// Another node holds it; the lease as it stands.
    Held(LeaseRow),
}

/// What a renew found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Extended: the lease as it now stands.
    Renewed(LeaseRow),
    /// Not this node's lease any more (taken, released, expired, or rewritten): the lease as it
    /// stands, for the election to tell an expiry from a divergence.
    Refused(LeaseRow),
}

/// Something the store said without being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A leader released the lease: try to acquire at once.
    Released,
    /// The session ended under the node: whatever it held through it is free to others now.
    Ended,
}

/// Why a store request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store ended the session (terminated, shut down, crashed, connection closed).
    #[error("{0}")]
    SessionEnded(String),
    /// The store refused the connection or the request.
    #[error("{0}")]
    Failed(String),
}

impl From<DbError> for StoreError {
    fn from(error: DbError) -> Self {
        if error.session_ended() {
            StoreError::SessionEnded(error.to_string())
        } else {
            StoreError::Failed(error.to_string())
        }
    }
}

/// Where the lease lives. Opening a session is the only way to act on it: the lease is held
/// through a session, and a session that ends frees it.
pub trait LeaseStore: Send + Sync + 'static {
    type Session: LeaseSession;

    /// Opens a session for this node (its id and address are the store's configuration).
    fn open(&self) -> impl Future<Output = Result<Self::Session, StoreError>> + Send;

    /// The fence this store's protected writes take inside their transaction.
    fn write_fence(&self) -> WriteFence;
}

/// One session on the lease store; every request is one round trip.
pub trait LeaseSession: Send + 'static {
    /// Takes the lease at a new epoch, above every epoch ever granted, if it is free.
    fn try_acquire(&mut self) -> impl Future<Output = Result<Attempt, StoreError>> + Send;
    /// Extends the lease this node holds at `epoch`, through this session only.
    fn renew(&mut self, epoch: i64) -> impl Future<Output = Result<Renewal, StoreError>> + Send;
    /// The lease as it stands.
    fn read(&mut self) -> impl Future<Output = Result<LeaseRow, StoreError>> + Send;
    /// Gives up the lease held at `epoch` and wakes the others; false if it had moved on.
    /// Waits for protected writes of that epoch still in flight.
    fn release(&mut self, epoch: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The next unsolicited notice; `Ended` once the session is gone.
    fn next_notice(&mut self) -> impl Future<Output = Notice> + Send;
}

/// The check a protected write makes inside its own transaction, last before its COMMIT: the
/// lease still names this node at this epoch, by the store's clock at that moment, and no
/// takeover can complete until the write has committed. A value, so every service that writes
/// can hold one without knowing which store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFence {
    /// The lease row itself, locked FOR SHARE (docs/ARCHITECTURE.md, "Why two writers cannot happen").
    LeaseRow,
    /// The fence row a leader of a lease held outside the database raised to its epoch, locked
    /// FOR SHARE (docs/ARCHITECTURE.md, "The lease on etcd").
    FenceRow,
}

impl WriteFence {
    /// True if a write of `node_id` at `epoch` may commit in `tx`.
    pub async fn holds(self, tx: &Transaction<'_>, node_id: &NodeId, epoch: i64) -> Result<bool, DbError> {
        match self {
            WriteFence::LeaseRow => crate::ha::lease::holds_lease_in_tx(tx, node_id.as_str(), epoch).await,
            WriteFence::FenceRow => crate::ha::fence::holds_in_tx(tx, node_id.as_str(), epoch).await,
        }
    }

    /// A boolean SQL expression: the lease names the node at the epoch now, taking no lock (a
    /// long write's early check, which must not block the node's own renewals). The same
    /// quoting rule as `plpgsql_check`.
    pub fn sql_holds_unlocked(self, node_id: &NodeId, epoch: i64) -> String {
        match self {
            WriteFence::LeaseRow => format!(
                "EXISTS (SELECT 1 FROM autonomy_ha.leader_lease l, autonomy_ha.write_fence f
                    WHERE l.holder_id = '{node_id}' AND l.epoch = {epoch} AND l.expires_at > now()
                      AND f.epoch <= {epoch})"
            ),
            WriteFence::FenceRow => format!(
                "EXISTS (SELECT 1 FROM autonomy_ha.write_fence
                    WHERE holder_id = '{node_id}' AND epoch = {epoch} AND NOT released)"
            ),
        }
    }

    /// The same check as a PL/pgSQL statement that sets FOUND, for writes replayed through psql
    /// (a restore). Quoted as a literal only: a node id cannot hold a quote, and the epoch is a
    /// number.
    pub fn plpgsql_check(self, node_id: &NodeId, epoch: i64) -> String {
        match self {
            WriteFence::LeaseRow => format!(
                "PERFORM 1 FROM autonomy_ha.leader_lease l, autonomy_ha.write_fence f
      WHERE l.holder_id = '{node_id}' AND l.epoch = {epoch} AND l.expires_at > clock_timestamp()
        AND f.epoch <= {epoch}
        FOR SHARE;"
            ),
            WriteFence::FenceRow => format!(
                "PERFORM 1 FROM autonomy_ha.write_fence
      WHERE holder_id = '{node_id}' AND epoch = {epoch} AND NOT released
        FOR SHARE;"
            ),
        }
    }
}
