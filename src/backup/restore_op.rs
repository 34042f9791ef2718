//! The leader's restore: every check before the database is touched, the durable start record,
//! the replay, the proof, and the outcome in the inventory and the audit.

use crate::{
    audit::EventType,
    backup::{
        inventory,
        manifest::{self, RestoreReport, RestoreRequest, RestoreStatus},
        proof::{ProofOutcome, ProofReport},
        restore,
        service::{terminate_other_sessions, RestoringFlag},
        store::StagedArchive,
        BackupError, BackupService, Manifest,
    },
    db::DbError,
    ident::BackupId,
};

impl BackupService {
    pub async fn restore(&self, backup_id: &BackupId, request: RestoreRequest) -> Result<RestoreReport, BackupError> {
        if !request.confirm {
            return Err(BackupError::NotConfirmed);
        }
        let id = backup_id.clone();
        let manifest = match self.on_store(move |store| store.manifest(id.as_str())).await {
            Ok(manifest) => manifest,
            Err(error @ (BackupError::ManifestUntrusted { .. } | BackupError::NotRegularFile { .. })) => {
                return Err(self.reject_restore(error))
            }
            Err(error) => return Err(error),
        };
        let epoch = self.leader_epoch()?;
        if !self.state.maintenance_mode {
            return Err(BackupError::NotInMaintenance(self.state.node_id.to_string()));
        }
        let _running = self.operation.try_lock().map_err(|_| BackupError::Busy)?;
        let _in_use = self.take_for(backup_id, "restore").map_err(|_| BackupError::Busy)?;
        let _restoring = RestoringFlag::raise(&self.restoring);
        let started = std::time::Instant::now();

        let indexed = self
            .trusted_by_inventory(&manifest, request.allow_unsealed_manifest)
            .await?;
        let archive = self.open_verified_archive(&manifest).await?;
        let mark = restore::RestoreMark {
            backup_id: backup_id.clone(),
            restore_id: new_restore_id(),
        };
        // Durable before the database is touched: a restore is never without a record.
        self.audit_required(
            EventType::RestoreStarted,
            serde_json::json!({
                "backup_id": backup_id,
                "restore_id": mark.restore_id,
                "sha256": manifest.sha256,
                "manifest_version": manifest.manifest_version,
                "epoch": epoch,
            }),
            || format!("restore of backup `{backup_id}` refused: the database was not touched"),
        )?;
        let replayed = async {
            if !indexed {
                // The restore's transaction records itself in this row.
                let client = self.db.get().await?;
                inventory::upsert_completed(&*client, &manifest).await?;
            }
            let terminated_sessions = self.terminate_sessions_fenced(epoch).await?;
            self.replay(archive, epoch, &mark).await?;
            Ok(terminated_sessions)
        }
        .await;
        let terminated_sessions = match replayed {
            Ok(count) => count,
            Err(error) => return Err(self.restore_failed(&mark, error).await),
        };
        let restore_ms = started.elapsed().as_millis() as u64;
        let proof = self.prove_restore(&manifest).await;
        let report = RestoreReport {
            backup_id: backup_id.clone(),
            restore_id: mark.restore_id,
            status: restore_status(proof.as_ref()),
            checksum: manifest.sha256,
            restore_ms,
            terminated_sessions,
            proof,
        };
        self.record_restored(&report, epoch).await?;
        Ok(report)
    }

    /// The manifest against the inventory's row of the backup; returns whether there is one.
    async fn trusted_by_inventory(&self, manifest: &Manifest, allow_unsealed: bool) -> Result<bool, BackupError> {
        let recorded = {
            let client = self.db.get().await?;
            inventory::get(&*client, manifest.backup_id.as_str()).await?
        };
        let trusted = manifest::trust_for_restore(manifest, recorded.as_ref(), allow_unsealed)
            .and_then(|()| manifest::check_signature(manifest, self.keys.verifier.as_ref()).map(|_| ()));
        match trusted {
            Ok(()) => Ok(recorded.is_some()),
            Err(reason) => Err(self.reject_restore(BackupError::ManifestUntrusted {
                backup_id: manifest.backup_id.to_string(),
                reason,
            })),
        }
    }

    /// Stages the archive and checks it against the manifest (and, encrypted, this node's key
    /// against its recipients, then the decrypted copy against the plaintext's digest). It is
    /// opened once: the file checked is the file restored.
    async fn open_verified_archive(&self, manifest: &Manifest) -> Result<StagedArchive, BackupError> {
        let (store, keys) = (self.store.clone(), self.keys.clone());
        let manifest = manifest.clone();
        let opened = tokio::task::spawn_blocking(move || {
            crate::backup::plaintext::open(&*store, &manifest, &keys, crate::backup::plaintext::StoredBytes::Check)
        })
        .await
        .expect("staging does not panic");
        opened.map_err(|error| self.reject_restore(error))
    }

    /// Ends the application's sessions, after checking through the store's own fence (not a
    /// read of where one store keeps its lease) that this node still leads at `epoch`.
    async fn terminate_sessions_fenced(&self, epoch: i64) -> Result<i64, BackupError> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await.map_err(DbError::query("begin"))?;
        let holds = self.fence.holds(&tx, &self.state.node_id, epoch).await?;
        tx.commit().await.map_err(DbError::query("commit"))?;
        if !holds || self.state.leader_epoch() != Some(epoch) {
            return Err(BackupError::Fenced(epoch));
        }
        Ok(terminate_other_sessions(&client).await?)
    }

    /// Replays the archive on a blocking thread, all or nothing.
    async fn replay(
        &self,
        archive: StagedArchive,
        epoch: i64,
        mark: &restore::RestoreMark,
    ) -> Result<u64, BackupError> {
        let tools = self.tools.clone();
        let node_id = self.state.node_id.clone();
        let mark = mark.clone();
        let fence = self.fence;
        tokio::task::spawn_blocking(move || restore::replay_archive(&tools, &archive, fence, &node_id, epoch, &mark))
            .await
            .expect("the restore thread does not panic")
    }

    /// The committed restore's outcome in the inventory (logged if that fails: the restore
    /// stands) and in the audit (required: an unaudited restore is reported as such).
    async fn record_restored(&self, report: &RestoreReport, epoch: i64) -> Result<(), BackupError> {
        let (backup_id, status) = (report.backup_id.as_str(), report.status.as_str());
        let outcome = restore_outcome(report.proof.as_ref());
        let recorded = async {
            let client = self.db.get().await?;
            inventory::record_restore_outcome(&*client, backup_id, &report.restore_id, outcome).await
        }
        .await;
        if let Err(error) = recorded {
            tracing::error!(%error, backup_id, "could not record the restore's outcome in the inventory");
        }
        self.audit_required(
            EventType::Restored,
            serde_json::json!({
                "backup_id": backup_id,
                "restore_id": report.restore_id,
                "status": status,
                "sha256": report.checksum,
                "restore_ms": report.restore_ms,
                "terminated_sessions": report.terminated_sessions,
                "epoch": epoch,
                "proof": report.proof.as_ref().map(|p| p.outcome),
                "differences": report.proof.as_ref().map_or(0, |p| p.differences.len()),
            }),
            || {
                format!(
                    "restore of backup `{backup_id}` COMMITTED ({status}; the database now holds the backup), but its outcome could not be audited"
                )
            },
        )?;
        tracing::info!(
            backup_id,
            restore_ms = report.restore_ms,
            terminated_sessions = report.terminated_sessions,
            status,
            "backup restored"
        );
        Ok(())
    }

    /// A restore refused before anything was touched: audited (best effort: a refusal changes
    /// nothing) and returned.
    fn reject_restore(&self, error: BackupError) -> BackupError {
        self.audit_quietly(
            EventType::RestoreRejected,
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
            EventType::RestoreFailed,
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

/// What a committed restore is, by its proof: restored as backed up, with differences, or unproven.
fn restore_status(proof: Option<&ProofReport>) -> RestoreStatus {
    match proof.map(|p| p.outcome) {
        None | Some(ProofOutcome::Proven) => RestoreStatus::Restored,
        Some(ProofOutcome::Differences) => RestoreStatus::RestoredWithDifferences,
        Some(ProofOutcome::NotRun) => RestoreStatus::RestoredUnproven,
    }
}

/// The inventory's `last_restore_outcome` of a committed restore, by its proof.
fn restore_outcome(proof: Option<&ProofReport>) -> &'static str {
    proof.map_or("no_baseline", |p| p.outcome.as_str())
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
