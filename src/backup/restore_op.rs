//! The leader's restore: every check before the database is touched, the durable start record,
//! the replay, the proof, and the outcome in the inventory and the audit.

use crate::{
    backup::{
        inventory,
        manifest::{self, RestoreReport, RestoreRequest, RestoreStatus},
        restore,
        service::{terminate_other_sessions, RestoringFlag},
        BackupError, BackupService,
    },
    db::DbError,
    ident,
};

impl BackupService {
    pub async fn restore(&self, backup_id: &str, request: RestoreRequest) -> Result<RestoreReport, BackupError> {
        ident::validate("backup id", backup_id)?;
        if !request.confirm {
            return Err(BackupError::NotConfirmed);
        }
        let manifest = match self.store.manifest(backup_id) {
            Ok(manifest) => manifest,
            Err(error @ (BackupError::ManifestUntrusted { .. } | BackupError::NotRegularFile { .. })) => {
                return Err(self.reject_restore(error))
            }
            Err(error) => return Err(error),
        };
        let epoch = self.leader_epoch()?;
        if !self.state.maintenance_mode {
            return Err(BackupError::NotInMaintenance(self.state.node_id.clone()));
        }
        let _running = self.operation.try_lock().map_err(|_| BackupError::Busy)?;
        let _restoring = RestoringFlag::raise(&self.restoring);
        let started = std::time::Instant::now();

        let recorded = {
            let client = self.db.get().await?;
            inventory::get(&*client, backup_id).await?
        };
        if let Err(reason) = manifest::trust_for_restore(&manifest, recorded.as_ref(), request.allow_unsealed_manifest)
        {
            return Err(self.reject_restore(BackupError::ManifestUntrusted {
                backup_id: backup_id.to_owned(),
                reason,
            }));
        }
        // The archive is opened once: the file hashed is the file restored.
        let store = self.store.clone();
        let id = backup_id.to_owned();
        let opened = tokio::task::spawn_blocking(move || {
            let mut staged = store.stage_archive(&id)?;
            let actual = staged.sha256()?;
            Ok::<_, BackupError>((staged, actual))
        })
        .await
        .expect("hashing does not panic");
        let (archive, actual) = match opened {
            Ok(opened) => opened,
            Err(error) => return Err(self.reject_restore(error)),
        };
        if actual != manifest.sha256 {
            return Err(self.reject_restore(BackupError::ChecksumMismatch {
                backup_id: backup_id.to_owned(),
                expected: manifest.sha256.clone(),
                actual,
            }));
        }
        let mark = restore::RestoreMark {
            backup_id: backup_id.to_owned(),
            restore_id: new_restore_id(),
        };
        // Durable before the database is touched: a restore is never without a record.
        self.audit_required(
            "ha.backup.restore_started",
            serde_json::json!({
                "backup_id": backup_id,
                "restore_id": mark.restore_id,
                "sha256": manifest.sha256,
                "manifest_version": manifest.manifest_version,
                "epoch": epoch,
            }),
            || format!("restore of backup `{backup_id}` refused: the database was not touched"),
        )?;
        if recorded.is_none() {
            // The restore's transaction records itself in this row.
            let indexed = async {
                let client = self.db.get().await?;
                Ok::<_, BackupError>(inventory::upsert_completed(&*client, &manifest).await?)
            }
            .await;
            if let Err(error) = indexed {
                return Err(self.restore_failed(&mark, error).await);
            }
        }

        let terminated = async {
            let mut client = self.db.get().await?;
            // The store's own fence, not a read of where one store keeps its lease.
            let tx = client.transaction().await.map_err(DbError::query("begin"))?;
            let holds = self.fence.holds(&tx, &self.state.node_id, epoch).await?;
            tx.commit().await.map_err(DbError::query("commit"))?;
            if !holds || self.state.leader_epoch() != Some(epoch) {
                return Err(BackupError::Fenced(epoch));
            }
            Ok(terminate_other_sessions(&client).await?)
        }
        .await;
        let terminated_sessions = match terminated {
            Ok(count) => count,
            Err(error) => return Err(self.restore_failed(&mark, error).await),
        };

        let tools = self.tools.clone();
        let node_id = self.state.node_id.clone();
        let replay_mark = mark.clone();
        let fence = self.fence;
        let replayed = tokio::task::spawn_blocking(move || {
            restore::replay_archive(&tools, &archive, fence, &node_id, epoch, &replay_mark)
        })
        .await
        .expect("the restore thread does not panic");
        if let Err(error) = replayed {
            return Err(self.restore_failed(&mark, error).await);
        }
        let restore_ms = started.elapsed().as_millis() as u64;
        let proof = self.prove_restore(&manifest).await;
        let (status, outcome) = match proof.as_ref().map(|p| p.outcome.as_str()) {
            None => (RestoreStatus::Restored, "no_baseline"),
            Some("proven") => (RestoreStatus::Restored, "proven"),
            Some("differences") => (RestoreStatus::RestoredWithDifferences, "differences"),
            Some(_) => (RestoreStatus::RestoredUnproven, "not_run"),
        };
        match self.db.get().await {
            Ok(client) => {
                if let Err(error) =
                    inventory::record_restore_outcome(&*client, backup_id, &mark.restore_id, outcome).await
                {
                    tracing::error!(%error, backup_id, "could not record the restore's outcome in the inventory");
                }
            }
            Err(error) => tracing::error!(%error, backup_id, "could not record the restore's outcome in the inventory"),
        }
        self.audit_required(
            "ha.backup.restored",
            serde_json::json!({
                "backup_id": backup_id,
                "restore_id": mark.restore_id,
                "status": status.as_str(),
                "sha256": manifest.sha256,
                "restore_ms": restore_ms,
                "terminated_sessions": terminated_sessions,
                "epoch": epoch,
                "proof": proof.as_ref().map(|p| p.outcome.clone()),
                "differences": proof.as_ref().map_or(0, |p| p.differences.len()),
            }),
            || {
                format!(
                    "restore of backup `{backup_id}` COMMITTED ({}; the database now holds the backup), but its outcome could not be audited",
                    status.as_str()
                )
            },
        )?;
        tracing::info!(
            backup_id,
            restore_ms,
            terminated_sessions,
            status = status.as_str(),
            "backup restored"
        );
        Ok(RestoreReport {
            backup_id: backup_id.to_owned(),
            restore_id: mark.restore_id,
            status,
            checksum: manifest.sha256,
            restore_ms,
            terminated_sessions,
            proof,
        })
    }

    /// A restore refused before anything was touched: audited (best effort: a refusal changes
    /// nothing) and returned.
    fn reject_restore(&self, error: BackupError) -> BackupError {
        self.audit_quietly(
            "ha.backup.restore_rejected",
            serde_json::json!({ "reason": error.to_string(), "backup_id": backup_id_of(&error) }),
        );
        error
    }

    /// A started restore that failed: its outcome goes beside its start in the audit, with
    /// whether it committed as the inventory row (marked inside its transaction) tells: a
    /// failure reported after the COMMIT was sent (psql dying then) may still have committed.
    async fn restore_failed(&self, mark: &restore::RestoreMark, error: BackupError) -> BackupError {
        let committed = match self.db.get().await {
            Ok(client) => inventory::restore_outcome(&*client, &mark.restore_id)
                .await
                .ok()
                .map(|outcome| outcome.is_some()),
            Err(_) => None,
        };
        self.audit_quietly(
            "ha.backup.restore_failed",
            serde_json::json!({
                "backup_id": mark.backup_id,
                "restore_id": mark.restore_id,
                "error": error.to_string(),
                "committed": committed,
            }),
        );
        error
    }
}

/// The backup a refusal names, for its audit record.
fn backup_id_of(error: &BackupError) -> Option<&str> {
    match error {
        BackupError::ChecksumMismatch { backup_id, .. } | BackupError::ManifestUntrusted { backup_id, .. } => {
            Some(backup_id)
        }
        BackupError::ArchiveMissing(backup_id) => Some(backup_id),
        _ => None,
    }
}

/// `rs-<UTC time>-<8 hex>`: names one restore in the audit and the inventory.
fn new_restore_id() -> String {
    format!(
        "rs-{}-{}",
        crate::backup::service::utc_stamp(),
        hex::encode(rand::random::<[u8; 4]>())
    )
}
