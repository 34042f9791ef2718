//! The leader lease row: acquire (new epoch), renew (same epoch), release, and the fencing check.
//!
//! The lease lives in `autonomy_ha.leader_lease`; its expiry uses the database clock so nodes
//! never compare their own clocks. The row also names the backend pid of the holder's lease
//! session: when the holder's process dies its session ends at once, and a follower may take
//! over without waiting for the expiry (DESIGN.md decisions 1 and 3). A holder that is alive but
//! paused keeps its session, so only the expiry frees its lease.

use std::time::Duration;

use tokio_postgres::{Client, GenericClient};

use crate::db::DbError;

/// Acquires the lease with a new epoch if it is free: never held, expired, its holder's lease
/// session is gone, or it is this very session (whose local deadline passed before a renew). Returns the new epoch, or None if another node holds it.
pub async fn acquire(client: &Client, node_id: &str, ttl: Duration) -> Result<Option<i64>, DbError> {
    let row = client
        .query_opt(
            "UPDATE autonomy_ha.leader_lease
                SET holder_id = $1, holder_pid = pg_backend_pid(), epoch = epoch + 1,
                    acquired_at = now(), expires_at = now() + $2::bigint * interval '1 millisecond'
              WHERE holder_id IS NULL
                 OR expires_at <= now()
                 OR (holder_id = $1 AND holder_pid = pg_backend_pid())
                 OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = holder_pid)
          RETURNING epoch",
            &[&node_id, &ttl_ms(ttl)],
        )
        .await
        .map_err(DbError::query("acquire the leader lease"))?;
    Ok(row.map(|r| r.get(0)))
}

/// Extends the lease this node holds at `epoch`. False means it was lost (taken or expired).
pub async fn renew(client: &Client, node_id: &str, epoch: i64, ttl: Duration) -> Result<bool, DbError> {
    let renewed = client
        .execute(
            "UPDATE autonomy_ha.leader_lease
                SET expires_at = now() + $3::bigint * interval '1 millisecond'
              WHERE holder_id = $1 AND epoch = $2 AND expires_at > now()
                AND holder_pid = pg_backend_pid()",
            &[&node_id, &epoch, &ttl_ms(ttl)],
        )
        .await
        .map_err(DbError::query("renew the leader lease"))?;
    Ok(renewed == 1)
}

/// Gives the lease up at once (clean shutdown), so a successor need not wait for the expiry.
pub async fn release(client: &Client, node_id: &str, epoch: i64) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE autonomy_ha.leader_lease SET expires_at = now()
              WHERE holder_id = $1 AND epoch = $2",
            &[&node_id, &epoch],
        )
        .await
        .map_err(DbError::query("release the leader lease"))?;
    Ok(())
}

/// The lease row as the database sees it now.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub holder_id: Option<String>,
    pub epoch: i64,
    pub valid: bool,
}

pub async fn read(client: &impl GenericClient) -> Result<LeaseRow, DbError> {
    let row = client
        .query_one(
            "SELECT holder_id, epoch, expires_at > now() FROM autonomy_ha.leader_lease",
            &[],
        )
        .await
        .map_err(DbError::query("read the leader lease"))?;
    Ok(LeaseRow {
        holder_id: row.get(0),
        epoch: row.get(1),
        valid: row.get(2),
    })
}

/// The fencing check of a protected write: inside the write's own transaction, the lease must
/// still name this node and epoch. The row lock makes a concurrent takeover wait for the commit.
pub async fn holds_lease_in_tx(
    tx: &tokio_postgres::Transaction<'_>,
    node_id: &str,
    epoch: i64,
) -> Result<bool, DbError> {
    let row = tx
        .query_opt(
            "SELECT 1 FROM autonomy_ha.leader_lease
              WHERE holder_id = $1 AND epoch = $2 AND expires_at > now()
                FOR SHARE",
            &[&node_id, &epoch],
        )
        .await
        .map_err(DbError::query("check the leader lease"))?;
    Ok(row.is_some())
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}
