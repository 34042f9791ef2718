//! Retention applied by the leader: the plan (`retention::plan`) over the inventory's completed
//! backups, shown as a dry run or carried out. A backup is deleted manifest first, inside the
//! transaction that removes its inventory row under the lease's fence: the row and the manifest
//! go together or not at all, and from then on the archive is only a leftover, removed next
//! (or by reconciliation, after a crash). Each deletion is audited before it starts.

use serde::{Deserialize, Serialize};

use crate::{
    audit::EventType,
    backup::{
        retention::{self, Candidate, PlanEntry, RetentionPolicy},
        BackupError, BackupService, BackupStatus,
    },
    db::DbError,
    ident::BackupId,
};

/// The answer of `POST /v1/ha/backups/prune`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub policy: RetentionPolicy,
    /// Every completed backup, newest first, with what keeps it (none: deleted, or to delete).
    pub entries: Vec<PlanEntry>,
    /// What this run deleted (empty for a dry run).
    pub deleted: Vec<BackupId>,
}

impl BackupService {
    /// The retention plan, carried out unless `dry_run`. Leader only.
    pub async fn prune(&self, dry_run: bool) -> Result<PruneReport, BackupError> {
        let epoch = self.leader_epoch()?;
        // Every manifest in the store has its row first; the files are not looked at.
        self.rebuild_inventory().await?;
        let records = self.records().await?;
        let candidates: Vec<Candidate> = {
            let in_use = self.in_use.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            records
                .iter()
                .filter(|record| record.status == BackupStatus::Completed)
                .filter_map(|record| {
                    let backup_id = BackupId::parse(&record.backup_id).ok()?;
                    Some(Candidate {
                        in_use: in_use.get(&backup_id).map(|by| (*by).to_owned()),
                        proven: record.last_verify_outcome.as_deref() == Some("proven"),
                        created_at: record.created_at,
                        backup_id,
                    })
                })
                .collect()
        };
        let mut entries = retention::plan(&self.retention, &candidates);
        let mut deleted = Vec::new();
        if !dry_run {
            for entry in entries.iter_mut().filter(|entry| entry.deletes()) {
                match self.delete_backup(&entry.backup_id, epoch).await? {
                    Some(by) => entry.kept_by.push(retention::Reason::InUse { by }),
                    None => deleted.push(entry.backup_id.clone()),
                }
            }
        }
        Ok(PruneReport {
            dry_run,
            policy: self.retention,
            entries,
            deleted,
        })
    }

    /// Deletes one backup, unless something took it up since the plan (then says what).
    async fn delete_backup(&self, backup_id: &BackupId, epoch: i64) -> Result<Option<String>, BackupError> {
        let _pruning = match self.take_for(backup_id, "prune") {
            Ok(guard) => guard,
            Err(by) => return Ok(Some(by.to_owned())),
        };
        self.audit_required(
            EventType::BackupPruned,
            serde_json::json!({ "backup_id": backup_id, "epoch": epoch }),
            || format!("prune stopped before deleting backup `{backup_id}`: nothing of it was deleted"),
        )?;
        let mut client = self.db.get().await?;
        let tx = self.begin_fenced(&mut client, epoch).await?;
        tx.execute(
            "DELETE FROM autonomy_ha.backup_inventory WHERE backup_id = $1",
            &[&backup_id.as_str()],
        )
        .await
        .map_err(DbError::query("delete the inventory row"))?;
        let id = backup_id.clone();
        self.on_store(move |store| store.unpublish(id.as_str())).await?;
        tx.commit().await.map_err(DbError::query("commit"))?;
        let id = backup_id.clone();
        if let Err(error) = self
            .on_store(move |store| store.remove_leftovers(&[format!("{id}.dump")]))
            .await
        {
            // A leftover now; reconciliation removes it.
            tracing::warn!(%error, %backup_id, "the pruned backup's archive stays until reconciliation removes it");
        }
        tracing::info!(%backup_id, epoch, "backup pruned");
        Ok(None)
    }
}
