//! The write fence in the database for a lease held elsewhere (etcd): raised by each new leader
//! to its epoch before its first protected write, checked by every protected write inside its
//! own transaction, lowered (released) by a leader that resigns.
//!
//! Why this keeps the writes of two epochs apart whatever the clocks do is in
//! docs/ARCHITECTURE.md ("The lease on etcd"): the raise is an UPDATE of the one fence row, so it
//! waits for every write that holds the row FOR SHARE, and a write that comes after it finds
//! another epoch and rolls back.

use tokio_postgres::{Client, GenericClient, Transaction};

use crate::db::DbError;

/// The fence as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub epoch: i64,
    pub holder_id: Option<String>,
    pub released: bool,
}

/// Every epoch any store ever granted on this database is at most this: the fence's, the row
/// lease's and the history's, and any epoch a node saw claimed in etcd (`note_epoch_seen`). A new epoch from etcd starts above it, so epochs never repeat,
/// even across an etcd cluster rebuilt empty or a change from the row lease.
pub async fn epoch_floor(client: &impl GenericClient) -> Result<i64, DbError> {
    let row = client
        .query_one(
            "SELECT GREATEST(
                    (SELECT GREATEST(epoch, epoch_seen) FROM autonomy_ha.write_fence),
                    (SELECT epoch FROM autonomy_ha.leader_lease),
                    (SELECT coalesce(max(epoch), 0) FROM autonomy_ha.lease_history))",
            &[],
        )
        .await
        .map_err(DbError::query("read the highest epoch granted"))?;
    Ok(row.get(0))
}

/// Records that a leader key in etcd claimed `epoch` although no acquisition granted it (the
/// epoch key is lower): a key rewritten by hand. The next term starts above it, as the row
/// lease's next term starts above a rewritten row's epoch, even after the key is gone.
pub async fn note_epoch_seen(client: &Client, epoch: i64) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE autonomy_ha.write_fence SET epoch_seen = $1 WHERE epoch_seen < $1",
            &[&epoch],
        )
        .await
        .map_err(DbError::query("record an epoch seen in etcd"))?;
    Ok(())
}

/// Raises the fence to `epoch` for `holder_id` and records the term in `lease_history`, in one
/// statement. Waits for protected writes of earlier epochs still in flight (they hold the row
/// FOR SHARE). False if the fence already stands at `epoch` or above: this acquisition is stale.
pub async fn raise(client: &Client, epoch: i64, holder_id: &str, address: &str) -> Result<bool, DbError> {
    let row = client
        .query_one(
            "WITH raised AS (
                 UPDATE autonomy_ha.write_fence
                    SET epoch = $1, holder_id = $2, released = false, raised_at = now()
                  WHERE epoch < $1
              RETURNING epoch, holder_id, raised_at
             ), history AS (
                 INSERT INTO autonomy_ha.lease_history (epoch, holder_id, holder_address, acquired_at)
                 SELECT epoch, holder_id, $3, raised_at FROM raised
             )
             SELECT count(*) FROM raised",
            &[&epoch, &holder_id, &address],
        )
        .await
        .map_err(DbError::query("raise the write fence"))?;
    Ok(row.get::<_, i64>(0) == 1)
}

/// Marks the fence of `epoch` released, after the protected writes still in flight at that
/// epoch have committed (the UPDATE waits for their share locks). False if it had moved on.
pub async fn release(client: &Client, epoch: i64, holder_id: &str) -> Result<bool, DbError> {
    let released = client
        .execute(
            "UPDATE autonomy_ha.write_fence SET released = true
              WHERE epoch = $1 AND holder_id = $2 AND NOT released",
            &[&epoch, &holder_id],
        )
        .await
        .map_err(DbError::query("release the write fence"))?;
    Ok(released == 1)
}

pub async fn read(client: &impl GenericClient) -> Result<Fence, DbError> {
    let row = client
        .query_one("SELECT epoch, holder_id, released FROM autonomy_ha.write_fence", &[])
        .await
        .map_err(DbError::query("read the write fence"))?;
    Ok(Fence {
        epoch: row.get(0),
        holder_id: row.get(1),
        released: row.get(2),
    })
}

/// The token naming this database (etcd's owner key carries it).
pub async fn database_token(client: &impl GenericClient) -> Result<String, DbError> {
    let row = client
        .query_one("SELECT database_token FROM autonomy_ha.write_fence", &[])
        .await
        .map_err(DbError::query("read the database token"))?;
    Ok(row.get(0))
}

/// The check of a protected write, last before its COMMIT: the fence stands at `epoch` for
/// `node_id` and is not released. The share lock makes a raise (a successor) wait for this
/// write's COMMIT.
pub async fn holds_in_tx(tx: &Transaction<'_>, node_id: &str, epoch: i64) -> Result<bool, DbError> {
    let row = tx
        .query_opt(
            "SELECT 1 FROM autonomy_ha.write_fence
              WHERE holder_id = $1 AND epoch = $2 AND NOT released
                FOR SHARE",
            &[&node_id, &epoch],
        )
        .await
        .map_err(DbError::query("check the write fence"))?;
    Ok(row.is_some())
}
