//! The `autonomy_ha.backup_inventory` table: an index of the repository, rebuilt from manifests.

use time::OffsetDateTime;
use tokio_postgres::{GenericClient, Row};

use crate::{
    backup::{BackupRecord, BackupStatus, Manifest},
    db::DbError,
};

/// Records a backup that has just started.
pub async fn insert_running(
    client: &impl GenericClient,
    backup_id: &str,
    created_at: OffsetDateTime,
    database: &str,
    node_id: &str,
    epoch: i64,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO autonomy_ha.backup_inventory (backup_id, status, created_at, database, node_id, epoch)
             VALUES ($1, 'running', $2, $3, $4, $5)",
            &[&backup_id, &created_at, &database, &node_id, &epoch],
        )
        .await
        .map_err(DbError::query("record a running backup"))?;
    Ok(())
}

/// Marks a backup completed with the figures of its manifest (insert if the row is missing).
pub async fn upsert_completed(client: &impl GenericClient, m: &Manifest) -> Result<u64, DbError> {
    client
        .execute(
            "INSERT INTO autonomy_ha.backup_inventory
                 (backup_id, status, created_at, completed_at, database, server_version,
                  size_bytes, sha256, duration_ms, node_id, epoch, error, manifest_version)
             VALUES ($1, 'completed', $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11)
             ON CONFLICT (backup_id) DO UPDATE SET
                 status = 'completed', completed_at = EXCLUDED.completed_at,
                 server_version = EXCLUDED.server_version, size_bytes = EXCLUDED.size_bytes,
                 sha256 = EXCLUDED.sha256, duration_ms = EXCLUDED.duration_ms, error = NULL,
                 manifest_version = EXCLUDED.manifest_version",
            &[
                &m.backup_id.as_str(),
                &m.created_at,
                &m.completed_at,
                &m.database,
                &m.server_version,
                &(m.size_bytes as i64),
                &m.sha256,
                &(m.duration_ms as i64),
                &m.node_id.as_str(),
                &m.epoch,
                &(m.manifest_version as i32),
            ],
        )
        .await
        .map_err(DbError::query("record a completed backup"))
}

/// Marks `running` rows no live operation owns as failed (interrupted) and returns their ids:
/// this node's own but `live` (it has no other operation running), and any whose leader's
/// epoch is over (its inventory write would be fenced; a manifest it still publishes is
/// indexed as completed again by the next rebuild).
pub async fn fail_interrupted(
    client: &impl GenericClient,
    node_id: &str,
    live: Option<&str>,
) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "UPDATE autonomy_ha.backup_inventory
                SET status = 'failed', completed_at = coalesce(completed_at, now()),
                    error = 'interrupted: the node running it stopped or lost its database before the backup finished'
              WHERE status = 'running'
                AND ((node_id = $1 AND backup_id IS DISTINCT FROM $2)
                     OR epoch < GREATEST((SELECT epoch FROM autonomy_ha.leader_lease),
                                         (SELECT epoch FROM autonomy_ha.write_fence)))
          RETURNING backup_id",
            &[&node_id, &live],
        )
        .await
        .map_err(DbError::query("mark interrupted backups failed"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The ids of backups still `running` (some live operation may own them).
pub async fn running(client: &impl GenericClient) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT backup_id FROM autonomy_ha.backup_inventory WHERE status = 'running'",
            &[],
        )
        .await
        .map_err(DbError::query("read the running backups"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Gives a committed restore its proof's outcome (its row was marked inside the restore's
/// transaction).
pub async fn record_restore_outcome(
    client: &impl GenericClient,
    backup_id: &str,
    restore_id: &str,
    outcome: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE autonomy_ha.backup_inventory SET last_restore_outcome = $3
              WHERE backup_id = $1 AND last_restore_id = $2",
            &[&backup_id, &restore_id, &outcome],
        )
        .await
        .map_err(DbError::query("record a restore's outcome"))?;
    Ok(())
}

/// How the restore `restore_id` stands in the inventory: None if it never committed (its
/// transaction marks the row), else the outcome recorded (`committed_unproven` until its proof
/// finished).
pub async fn restore_outcome(client: &impl GenericClient, restore_id: &str) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "SELECT last_restore_outcome FROM autonomy_ha.backup_inventory WHERE last_restore_id = $1",
            &[&restore_id],
        )
        .await
        .map_err(DbError::query("look up a restore"))?;
    Ok(row.map(|row| {
        row.get::<_, Option<String>>(0)
            .unwrap_or_else(|| "committed_unproven".into())
    }))
}

/// One inventory row.
pub async fn get(client: &impl GenericClient, backup_id: &str) -> Result<Option<BackupRecord>, DbError> {
    let row = client
        .query_opt(&format!("{SELECT_RECORD} WHERE backup_id = $1"), &[&backup_id])
        .await
        .map_err(DbError::query("read an inventory row"))?;
    Ok(row.as_ref().map(record_from_row))
}

/// Marks a backup failed, keeping the reason for `backup list`.
pub async fn mark_failed(client: &impl GenericClient, backup_id: &str, error: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE autonomy_ha.backup_inventory SET status = 'failed', completed_at = now(), error = $2
              WHERE backup_id = $1",
            &[&backup_id, &error],
        )
        .await
        .map_err(DbError::query("record a failed backup"))?;
    Ok(())
}

/// Records the outcome of a restore drill of `backup_id`.
pub async fn record_verification(
    client: &impl GenericClient,
    backup_id: &str,
    verified_at: OffsetDateTime,
    outcome: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE autonomy_ha.backup_inventory SET last_verified_at = $2, last_verify_outcome = $3
              WHERE backup_id = $1",
            &[&backup_id, &verified_at, &outcome],
        )
        .await
        .map_err(DbError::query("record a verification"))?;
    Ok(())
}

/// Adds every manifest the table lacks; returns how many rows were added.
pub async fn rebuild_from_manifests(client: &impl GenericClient, manifests: &[Manifest]) -> Result<u64, DbError> {
    let known: Vec<String> = client
        .query(
            "SELECT backup_id FROM autonomy_ha.backup_inventory WHERE status = 'completed'",
            &[],
        )
        .await
        .map_err(DbError::query("read the inventory"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut added = 0;
    for manifest in manifests
        .iter()
        .filter(|m| !known.iter().any(|id| m.backup_id == id.as_str()))
    {
        added += upsert_completed(client, manifest).await?;
    }
    Ok(added)
}

const SELECT_RECORD: &str = "SELECT backup_id, status, created_at, completed_at, database, server_version,
                size_bytes, sha256, duration_ms, node_id, epoch, error,
                last_verified_at, last_verify_outcome, manifest_version,
                last_restored_at, last_restore_outcome
           FROM autonomy_ha.backup_inventory";

/// Every inventory row, oldest first.
pub async fn list(client: &impl GenericClient) -> Result<Vec<BackupRecord>, DbError> {
    let rows = client
        .query(&format!("{SELECT_RECORD} ORDER BY created_at, backup_id"), &[])
        .await
        .map_err(DbError::query("list the inventory"))?;
    Ok(rows.iter().map(record_from_row).collect())
}

fn record_from_row(row: &Row) -> BackupRecord {
    let status: String = row.get(1);
    BackupRecord {
        backup_id: row.get(0),
        status: BackupStatus::parse(&status).unwrap_or(BackupStatus::Failed),
        created_at: row.get(2),
        completed_at: row.get(3),
        database: row.get(4),
        server_version: row.get(5),
        size_bytes: row.get::<_, Option<i64>>(6).map(|v| v as u64),
        checksum: row.get(7),
        duration_ms: row.get::<_, Option<i64>>(8).map(|v| v as u64),
        node_id: row.get(9),
        epoch: row.get(10),
        error: row.get(11),
        last_verified_at: row.get(12),
        last_verify_outcome: row.get(13),
        manifest_version: row.get::<_, Option<i32>>(14).map(|v| v as u32),
        last_restored_at: row.get(15),
        last_restore_outcome: row.get(16),
        files: None,
    }
}
