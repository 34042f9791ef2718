//! The lease store of the embedded default, a row in the application database: acquire (new
//! epoch), renew (same epoch), release, and the fencing check.
//!
//! The lease lives in `autonomy_ha.leader_lease`; its expiry uses the database clock so nodes
//! never compare their own clocks. The row also names the holder's lease session (backend pid
//! and start time): when the holder's process dies its session ends at once, and a follower may
//! take over without waiting for the expiry (docs/ARCHITECTURE.md, "The lease"). A holder that is
//! alive but paused or cut off keeps its session, so only the expiry frees its lease.

use std::time::Duration;

use tokio_postgres::{types::ToSql, Client, GenericClient, Row};

use crate::{
    db::{self, DbError},
    ha::store::{Attempt, LeaseRow, LeaseSession, LeaseStore, Notice, Renewal, StoreError, WriteFence},
    ident::NodeId,
};

/// The channel a releasing leader notifies, so followers try to acquire at once.
pub const RELEASE_CHANNEL: &str = "autonomy_ha_lease";

/// Runs `with`, whose CTE `changed` returns the lease row when the statement took or extended
/// it: the lease row as it stands either way, in one round trip, handed to `if_changed` when
/// the statement changed it and to `otherwise` when it did not.
async fn changed_and_row<T, C: FnOnce(LeaseRow) -> T, U: FnOnce(LeaseRow) -> T>(
    client: &Client,
    (with, changed): (&str, &str),
    params: &[&(dyn ToSql + Sync)],
    doing: &'static str,
    (if_changed, otherwise): (C, U),
) -> Result<T, DbError> {
    let sql = format!(
        "{with}
         SELECT true, {ROW_COLUMNS} FROM {changed}
         UNION ALL
         SELECT false, {ROW_COLUMNS} FROM autonomy_ha.leader_lease
          WHERE NOT EXISTS (SELECT 1 FROM {changed})"
    );
    let row = client.query_one(&sql, params).await.map_err(DbError::query(doing))?;
    let lease = lease_from_row(&row, 1);
    Ok(if row.get(0) {
        if_changed(lease)
    } else {
        otherwise(lease)
    })
}

fn lease_from_row(row: &Row, offset: usize) -> LeaseRow {
    LeaseRow {
        holder_id: row.get(offset),
        holder_address: row.get(offset + 1),
        epoch: row.get(offset + 2),
        valid: row.get(offset + 3),
        expires_in_ms: row.get(offset + 4),
    }
}

const ROW_COLUMNS: &str = "holder_id, holder_address, epoch, expires_at > now(),
     GREATEST(0, (EXTRACT(EPOCH FROM (expires_at - now())) * 1000))::bigint";

/// Takes the lease with a new epoch if it is free: never held, expired, released, naming no
/// session or one that is gone, or it is this very session (whose local deadline passed before
/// a renew). The new epoch is above every epoch ever granted (the row's and the history's), so
/// a row written by hand with a rogue epoch cannot make an epoch repeat. It is recorded in
/// `lease_history` in the same statement. One round trip either way: a follower polls with it.
pub async fn try_acquire(client: &Client, node_id: &str, address: &str, ttl: Duration) -> Result<Attempt, DbError> {
    // backend_start is NULL for sessions of other roles without pg_read_all_stats; then the pid
    // alone decides, which errs towards "still alive" (a slower takeover, never a stolen lease).
    // pg_stat_activity is a snapshot taken when this statement first reads it, so only a holder
    // whose session was registered before this statement began is sure to be in it. A row
    // written after that (a race winner, whose row we see after waiting on its lock) may name a
    // session that registered after our snapshot, even one forked before this statement: its
    // backend_start alone cannot tell (CI caught exactly that). Its acquired_at can: the winner
    // acquired in a transaction begun after its session registered. So only a row acquired
    // before this statement can be judged by the snapshot. A valid row naming no session at all
    // was not written by a node (a release also expires it): nobody holds it.
    let with = "WITH me AS (
             SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()
         ), taken AS (
             UPDATE autonomy_ha.leader_lease l
                SET holder_id = $1, holder_address = $2, holder_pid = me.pid,
                    holder_backend_start = me.backend_start,
                    epoch = GREATEST(l.epoch, (SELECT max(epoch) FROM autonomy_ha.lease_history),
                                     (SELECT epoch FROM autonomy_ha.write_fence)) + 1,
                    acquired_at = now(), expires_at = now() + $3::bigint * interval '1 millisecond'
               FROM me
              WHERE l.holder_id IS NULL
                 OR l.expires_at <= now()
                 OR l.holder_pid IS NULL
                 OR (l.holder_id = $1 AND l.holder_pid = me.pid)
                 OR (coalesce(l.acquired_at < statement_timestamp(), true)
                     AND coalesce(l.holder_backend_start < statement_timestamp(), true)
                     AND NOT EXISTS (
                        SELECT 1 FROM pg_stat_activity a
                         WHERE a.pid = l.holder_pid
                           AND (a.backend_start IS NULL OR a.backend_start = l.holder_backend_start)))
          RETURNING l.*
         ), history AS (
             INSERT INTO autonomy_ha.lease_history (epoch, holder_id, holder_address, acquired_at)
             SELECT epoch, holder_id, holder_address, acquired_at FROM taken
         ), fence AS (
             UPDATE autonomy_ha.write_fence f
                SET epoch = taken.epoch, holder_id = taken.holder_id, released = false, raised_at = now()
               FROM taken
              WHERE f.epoch < taken.epoch
         )";
    let params: [&(dyn ToSql + Sync); 3] = [&node_id, &address, &ttl_ms(ttl)];
    changed_and_row(
        client,
        (with, "taken"),
        &params,
        "acquire the leader lease",
        (Attempt::Acquired, Attempt::Held),
    )
    .await
}

/// Extends the lease this node holds at `epoch` through its lease session; one round trip,
/// returning the row as it stands either way.
pub async fn renew(client: &Client, node_id: &str, epoch: i64, ttl: Duration) -> Result<Renewal, DbError> {
    let with = "WITH renewed AS (
             UPDATE autonomy_ha.leader_lease
                SET expires_at = now() + $3::bigint * interval '1 millisecond'
              WHERE holder_id = $1 AND epoch = $2 AND expires_at > now()
                AND holder_pid = pg_backend_pid()
          RETURNING *
         )";
    let params: [&(dyn ToSql + Sync); 3] = [&node_id, &epoch, &ttl_ms(ttl)];
    changed_and_row(
        client,
        (with, "renewed"),
        &params,
        "renew the leader lease",
        (Renewal::Renewed, Renewal::Refused),
    )
    .await
}

/// Gives the lease up at once (clean shutdown) and wakes the followers, so a successor need
/// not wait for the expiry or its next poll. Waits for protected writes in flight at this
/// epoch (they hold the row FOR SHARE), so they commit before any successor's epoch begins.
pub async fn release(client: &mut Client, node_id: &str, epoch: i64) -> Result<bool, DbError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("begin the release"))?;
    let released = tx
        .execute(
            "UPDATE autonomy_ha.leader_lease SET expires_at = now(), holder_pid = NULL
              WHERE holder_id = $1 AND epoch = $2",
            &[&node_id, &epoch],
        )
        .await
        .map_err(DbError::query("release the leader lease"))?;
    tx.execute("SELECT pg_notify($1, $2)", &[&RELEASE_CHANNEL, &epoch.to_string()])
        .await
        .map_err(DbError::query("notify the followers"))?;
    tx.commit().await.map_err(DbError::query("commit the release"))?;
    Ok(released == 1)
}

/// Subscribes the session to release notifications.
pub async fn listen_for_releases(client: &Client) -> Result<(), DbError> {
    client
        .batch_execute(&format!("LISTEN {RELEASE_CHANNEL}"))
        .await
        .map_err(DbError::query("listen for lease releases"))
}

pub async fn read(client: &impl GenericClient) -> Result<LeaseRow, DbError> {
    let row = client
        .query_one(&format!("SELECT {ROW_COLUMNS} FROM autonomy_ha.leader_lease"), &[])
        .await
        .map_err(DbError::query("read the leader lease"))?;
    Ok(lease_from_row(&row, 0))
}

/// The fencing check of a protected write: inside the write's own transaction, the lease must
/// still name this node and epoch and be unexpired at this very moment (clock_timestamp, not
/// the transaction's start). The row lock makes a concurrent takeover or release wait for the
/// write's commit, so every write of epoch N commits before epoch N+1 exists. The write fence
/// (which every acquisition raises, on either store) must not stand above the epoch, and is
/// locked too: a node on the etcd lease that took over this database turns these writes away.
pub async fn holds_lease_in_tx(
    tx: &tokio_postgres::Transaction<'_>,
    node_id: &str,
    epoch: i64,
) -> Result<bool, DbError> {
    let row = tx
        .query_opt(
            "SELECT 1 FROM autonomy_ha.leader_lease l, autonomy_ha.write_fence f
              WHERE l.holder_id = $1 AND l.epoch = $2 AND l.expires_at > clock_timestamp()
                AND f.epoch <= $2
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

/// The lease row as a `LeaseStore`: each session is a dedicated connection whose backend pid
/// and start time the row names while it holds the lease.
pub struct RowLeaseStore {
    pub database_url: String,
    pub node_id: NodeId,
    /// This node's API address, written into the row as the leader hint.
    pub address: String,
    pub ttl: Duration,
}

impl RowLeaseStore {
    pub fn new(database_url: &str, node_id: &NodeId, address: &str, ttl: Duration) -> Self {
        Self {
            database_url: database_url.to_owned(),
            node_id: node_id.clone(),
            address: address.to_owned(),
            ttl,
        }
    }
}

pub struct RowLeaseSession {
    client: Client,
    /// Release notifications; ends when the connection does.
    events: tokio::sync::mpsc::UnboundedReceiver<String>,
    node_id: NodeId,
    address: String,
    ttl: Duration,
}

impl LeaseStore for RowLeaseStore {
    type Session = RowLeaseSession;

    async fn open(&self) -> Result<RowLeaseSession, StoreError> {
        let (client, events) = db::connect_with_events(&self.database_url, self.node_id.as_str(), "lease").await?;
        listen_for_releases(&client).await?;
        Ok(RowLeaseSession {
            client,
            events,
            node_id: self.node_id.clone(),
            address: self.address.clone(),
            ttl: self.ttl,
        })
    }

    fn write_fence(&self) -> WriteFence {
        WriteFence::LeaseRow
    }
}

impl LeaseSession for RowLeaseSession {
    async fn try_acquire(&mut self) -> Result<Attempt, StoreError> {
        Ok(try_acquire(&self.client, self.node_id.as_str(), &self.address, self.ttl).await?)
    }

    async fn renew(&mut self, epoch: i64) -> Result<Renewal, StoreError> {
        Ok(renew(&self.client, self.node_id.as_str(), epoch, self.ttl).await?)
    }

    async fn read(&mut self) -> Result<LeaseRow, StoreError> {
        Ok(read(&self.client).await?)
    }

    async fn release(&mut self, epoch: i64) -> Result<bool, StoreError> {
        Ok(release(&mut self.client, self.node_id.as_str(), epoch).await?)
    }

    async fn next_notice(&mut self) -> Notice {
        match self.events.recv().await {
            Some(_) => Notice::Released,
            None => Notice::Ended,
        }
    }
}
