//! The leader's backup operations: create, list and restore, with fencing, audit and one-at-a-time.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use time::OffsetDateTime;

use crate::{
    audit::AuditLog,
    backup::{
        dump, inventory,
        manifest::{self, RestoreReport, RestoreRequest, RestoreStatus, Storage},
        pgtools::PgTools,
        proof::{self, Baseline, ProofReport},
        repository::{self, FileState, LocalRepository},
        restore, BackupError, BackupRecord, BackupStatus, Manifest,
    },
    db::{self, DbError, SharedClient},
    ha::{lease, NodeState},
    ident,
};

pub struct BackupService {
    pub state: Arc<NodeState>,
    pub repo: Arc<LocalRepository>,
    pub tools: PgTools,
    pub db: Arc<SharedClient>,
    pub audit: Arc<AuditLog>,
    /// One backup or restore at a time on a node; a second request is refused, not queued.
    pub(crate) operation: tokio::sync::Mutex<()>,
    /// True while a restore replaces the data: protected writes are refused meanwhile, since
    /// the restore would discard them after they were acknowledged.
    restoring: AtomicBool,
}

/// Clears the restoring flag however the restore ends.
struct RestoringFlag<'a>(&'a AtomicBool);

impl<'a> RestoringFlag<'a> {
    fn raise(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        Self(flag)
    }
}

impl Drop for RestoringFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl BackupService {
    pub fn new(
        state: Arc<NodeState>,
        repo: LocalRepository,
        tools: PgTools,
        db: Arc<SharedClient>,
        audit: Arc<AuditLog>,
    ) -> Self {
        Self {
            state,
            repo: Arc::new(repo),
            tools,
            db,
            audit,
            operation: tokio::sync::Mutex::new(()),
            restoring: AtomicBool::new(false),
        }
    }

    /// True while a restore is replacing the database's contents.
    pub fn restore_running(&self) -> bool {
        self.restoring.load(Ordering::SeqCst)
    }

    pub(crate) fn leader_epoch(&self) -> Result<i64, BackupError> {
        self.state.leader_epoch().ok_or_else(|| BackupError::NotLeader {
            leader: self.state.leader_hint().0.unwrap_or_else(|| "unknown".into()),
        })
    }

    /// Adds manifests the inventory lacks (after a lost or dropped table).
    pub async fn rebuild_inventory(&self) -> Result<u64, BackupError> {
        let repo = self.repo.clone();
        let manifests = tokio::task::spawn_blocking(move || repo.manifests())
            .await
            .expect("the manifest scan does not panic")?;
        let mut client = self.db.get().await?;
        // Re-creates the inventory table if someone dropped it; a no-op otherwise.
        db::migrate(&mut client).await?;
        Ok(inventory::rebuild_from_manifests(&*client, &manifests).await?)
    }

    /// The inventory, each completed backup with whether its files are in the repository.
    /// On the leader, first indexes manifests the inventory lacks and, when no operation of
    /// its own runs, clears the interrupted ones.
    pub async fn list(&self) -> Result<Vec<BackupRecord>, BackupError> {
        if self.state.leader_epoch().is_some() {
            self.rebuild_inventory().await?;
            if let Ok(_idle) = self.operation.try_lock() {
                self.reconcile_interrupted(None).await;
            }
        }
        let mut records = {
            let client = self.db.get().await?;
            inventory::list(&*client).await?
        };
        let repo = self.repo.clone();
        let ids: Vec<String> = records
            .iter()
            .filter(|r| r.status == BackupStatus::Completed)
            .map(|r| r.backup_id.clone())
            .collect();
        let states = tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .map(|id| {
                    let state = repo.file_state(&id).unwrap_or(FileState::BothMissing);
                    (id, state)
                })
                .collect::<std::collections::HashMap<_, _>>()
        })
        .await
        .expect("stat does not panic");
        for record in &mut records {
            record.files = states.get(&record.backup_id).copied();
        }
        Ok(records)
    }

    /// Marks `running` backups that no live operation owns as failed (`live`: this node's one
    /// running now, if any), audits each, and removes partial files no running backup claims.
    /// Best effort: a database or repository that fails here is tried again next time.
    pub async fn reconcile_interrupted(&self, live: Option<&str>) {
        let outcome = async {
            let client = self.db.get().await?;
            let failed = inventory::fail_interrupted(&*client, &self.state.node_id, live).await?;
            let running = inventory::running(&*client).await?;
            Ok::<_, BackupError>((failed, running))
        }
        .await;
        let (failed, running) = match outcome {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "could not reconcile interrupted backups; will retry");
                return;
            }
        };
        for backup_id in &failed {
            tracing::warn!(backup_id, "a backup was interrupted before it finished; marked failed");
            self.audit_quietly(
                "ha.backup.interrupted",
                serde_json::json!({ "backup_id": backup_id, "reason": "the node running it stopped or lost its database before it finished" }),
            );
        }
        let repo = self.repo.clone();
        let removed =
            tokio::task::spawn_blocking(move || repo.remove_stale_partials(|id| running.iter().any(|r| r == id)))
                .await
                .expect("removing files does not panic");
        match removed {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(files = ?removed, "removed the partial files of interrupted backups")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not remove stale partial files"),
        }
    }

    /// After a restart: a restore this node started and never recorded an outcome for is
    /// recorded now, committed or not, as the inventory (written inside the restore's own
    /// transaction) tells.
    pub async fn reconcile_restores(&self) {
        let dir = self.audit.dir().to_owned();
        let node_id = self.state.node_id.clone();
        let events = tokio::task::spawn_blocking(move || crate::audit::query(&dir, &Default::default()))
            .await
            .expect("the audit query does not panic");
        let events = match events {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "could not read this node's audit to find interrupted restores");
                return;
            }
        };
        let restore_id = |event: &crate::audit::AuditEvent| event.details["restore_id"].as_str().map(str::to_owned);
        let mine: Vec<_> = events.iter().filter(|e| e.node_id == node_id).collect();
        let unfinished: Vec<_> = mine
            .iter()
            .filter(|e| e.event_type == "ha.backup.restore_started")
            .filter(|started| {
                let id = restore_id(started);
                !mine
                    .iter()
                    .any(|e| e.event_type != "ha.backup.restore_started" && restore_id(e) == id)
            })
            .collect();
        for started in unfinished {
            let (Some(id), Some(backup_id)) = (restore_id(started), started.details["backup_id"].as_str()) else {
                continue;
            };
            let committed = match self.db.get().await {
                Ok(client) => match inventory::committed_restore(&*client, &id).await {
                    Ok(found) => found.is_some(),
                    Err(error) => {
                        tracing::warn!(%error, "could not look up an interrupted restore");
                        continue;
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "could not look up an interrupted restore");
                    return;
                }
            };
            if committed {
                if let Ok(client) = self.db.get().await {
                    let _ =
                        inventory::record_restore_outcome(&*client, backup_id, &id, "interrupted_after_commit").await;
                }
            }
            tracing::warn!(backup_id, restore_id = %id, committed, "found a restore interrupted before its outcome was recorded");
            self.audit_quietly(
                "ha.backup.restore_interrupted",
                serde_json::json!({
                    "backup_id": backup_id,
                    "restore_id": id,
                    "committed": committed,
                    "meaning": if committed {
                        "the restore committed (the database holds the backup) but its proof never finished: run `ha backup verify` or restore again"
                    } else {
                        "the restore did not commit: the database is as it was before it"
                    },
                }),
            );
        }
    }

    pub async fn get(&self, backup_id: &str) -> Result<BackupRecord, BackupError> {
        ident::validate("backup id", backup_id)?;
        self.list()
            .await?
            .into_iter()
            .find(|record| record.backup_id == backup_id)
            .ok_or_else(|| BackupError::NotFound(backup_id.to_owned()))
    }

    pub async fn create(&self) -> Result<BackupRecord, BackupError> {
        let epoch = self.leader_epoch()?;
        let _running = self.operation.try_lock().map_err(|_| BackupError::Busy)?;
        // This node runs nothing else now: any `running` row of its own is a dead one.
        self.reconcile_interrupted(None).await;
        let backup_id = new_backup_id();
        self.audit_required(
            "ha.backup.started",
            serde_json::json!({ "backup_id": backup_id, "epoch": epoch }),
            || "backup refused: nothing was started".to_owned(),
        )?;
        let created_at = OffsetDateTime::now_utc();
        let database = self.tools.database.clone();
        let server_version = {
            let mut client = self.db.get().await?;
            let tx = client.transaction().await.map_err(DbError::query("begin"))?;
            if !lease::holds_lease_in_tx(&tx, &self.state.node_id, epoch).await? {
                return Err(BackupError::Fenced(epoch));
            }
            inventory::insert_running(&tx, &backup_id, created_at, &database, &self.state.node_id, epoch).await?;
            let version: String = tx
                .query_one("SHOW server_version", &[])
                .await
                .map_err(DbError::query("read the server version"))?
                .get(0);
            tx.commit().await.map_err(DbError::query("commit"))?;
            version
        };

        let excluded_schemas = vec![db::SCHEMA.to_owned()];
        let (dumped, baseline) = self.dump_with_baseline(&backup_id, &excluded_schemas).await;
        let (outcome, baseline) = match (dumped, baseline) {
            (Ok(outcome), Ok(mut baseline)) => match self.archived_sequence_positions(&backup_id).await {
                Ok(positions) => {
                    proof::sequences::apply(&mut baseline, &positions);
                    (outcome, baseline)
                }
                Err(error) => {
                    if let Ok(partial) = self.repo.partial_archive_path(&backup_id) {
                        let _ = std::fs::remove_file(partial);
                    }
                    return Err(self.record_failure(&backup_id, error).await);
                }
            },
            (Err(error), _) | (_, Err(error)) => {
                if let Ok(partial) = self.repo.partial_archive_path(&backup_id) {
                    let _ = std::fs::remove_file(partial);
                }
                return Err(self.record_failure(&backup_id, error).await);
            }
        };

        let manifest = Manifest {
            manifest_version: manifest::MANIFEST_VERSION,
            backup_id: backup_id.clone(),
            created_at,
            completed_at: OffsetDateTime::now_utc(),
            database,
            server_version,
            size_bytes: outcome.size_bytes,
            sha256: outcome.sha256,
            duration_ms: outcome.duration_ms,
            status: BackupStatus::Completed,
            node_id: self.state.node_id.clone(),
            epoch,
            excluded_schemas,
            storage: Storage::default(),
            baseline: Some(baseline),
            manifest_sha256: None,
        };
        let repo = self.repo.clone();
        let published = manifest.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || repo.publish(&published))
            .await
            .expect("publishing does not panic")
        {
            if let Ok(partial) = self.repo.partial_archive_path(&backup_id) {
                let _ = std::fs::remove_file(partial);
            }
            return Err(self.record_failure(&backup_id, error).await);
        }
        {
            let mut client = self.db.get().await?;
            let tx = client.transaction().await.map_err(DbError::query("begin"))?;
            if !lease::holds_lease_in_tx(&tx, &self.state.node_id, epoch).await? {
                // The archive and manifest are complete; the next leader indexes them.
                self.audit_quietly(
                    "ha.backup.fenced",
                    serde_json::json!({ "backup_id": manifest.backup_id, "epoch": epoch, "archive_complete": true }),
                );
                return Err(BackupError::Fenced(epoch));
            }
            inventory::upsert_completed(&tx, &manifest).await?;
            tx.commit().await.map_err(DbError::query("commit"))?;
        }
        self.audit_required(
            "ha.backup.created",
            serde_json::json!({
                "backup_id": manifest.backup_id,
                "sha256": manifest.sha256,
                "size_bytes": manifest.size_bytes,
                "duration_ms": manifest.duration_ms,
                "database": manifest.database,
                "epoch": epoch,
            }),
            || {
                format!(
                    "backup `{}` completed and is in the repository and the inventory, but its audit event could not be written",
                    manifest.backup_id
                )
            },
        )?;
        tracing::info!(backup_id = %manifest.backup_id, size_bytes = manifest.size_bytes, duration_ms = manifest.duration_ms, "backup created");
        Ok(BackupRecord::from(&manifest))
    }

    /// pg_dump in an exported snapshot while the baseline reads every table in that same
    /// snapshot, side by side: the archive and its baseline describe the same moment. The
    /// snapshot's transaction stays open until pg_dump has finished (it imports it at start).
    async fn dump_with_baseline(
        &self,
        backup_id: &str,
        excluded_schemas: &[String],
    ) -> (Result<dump::DumpOutcome, BackupError>, Result<Baseline, BackupError>) {
        let client = match self.db.open_another("baseline").await {
            Ok(client) => client,
            Err(error) => return (Err(error.into()), Err(BackupError::Proof("no session".into()))),
        };
        let snapshot = match proof::tables::begin_snapshot(&client).await {
            Ok(snapshot) => snapshot,
            Err(error) => return (Err(error), Err(BackupError::Proof("no snapshot".into()))),
        };
        let partial = match self.repo.partial_archive_path(backup_id) {
            Ok(partial) => partial,
            Err(error) => return (Err(error), Err(BackupError::Proof("no archive path".into()))),
        };
        let tools = self.tools.clone();
        let exported = snapshot.clone();
        let dump =
            tokio::task::spawn_blocking(move || dump::dump_to_partial(&tools, db::SCHEMA, &partial, Some(&exported)));
        let baseline = proof::baseline::take_parallel(
            &client,
            &snapshot,
            excluded_schemas,
            proof::baseline::default_readers(),
            self.reader_sessions(),
        )
        .await;
        let dumped = dump.await.expect("the dump thread does not panic");
        (dumped, baseline)
    }

    /// Opens the extra sessions a parallel baseline reads tables with.
    fn reader_sessions(
        &self,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<tokio_postgres::Client, DbError>> + Send>>
           + Send
           + Sync
           + 'static {
        let db = self.db.clone();
        move || {
            let db = db.clone();
            Box::pin(async move { db.open_another("baseline-reader").await })
        }
    }

    /// Where the finished (still partial) archive positions each sequence.
    async fn archived_sequence_positions(
        &self,
        backup_id: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, BackupError> {
        let partial = self.repo.partial_archive_path(backup_id)?;
        let tools = self.tools.clone();
        tokio::task::spawn_blocking(move || proof::sequences::archived_positions(&tools, &partial))
            .await
            .expect("reading the archive does not panic")
    }

    /// The restored database against the backup's baseline, in a snapshot of its own.
    async fn prove_restore(&self, manifest: &Manifest) -> Option<ProofReport> {
        let expected = manifest.baseline.as_ref()?;
        let started = std::time::Instant::now();
        let found = async {
            let client = self.db.open_another("proof").await?;
            let snapshot = proof::tables::begin_snapshot(&client).await?;
            proof::baseline::take_parallel(
                &client,
                &snapshot,
                &manifest.excluded_schemas,
                proof::baseline::default_readers(),
                self.reader_sessions(),
            )
            .await
        }
        .await;
        Some(match found {
            Ok(found) => ProofReport::of(expected, &found, started.elapsed().as_millis() as u64),
            Err(error) => ProofReport::not_run(error.to_string()),
        })
    }

    async fn record_failure(&self, backup_id: &str, error: BackupError) -> BackupError {
        tracing::error!(backup_id, %error, "backup failed");
        if let Ok(client) = self.db.get().await {
            if let Err(db_error) = inventory::mark_failed(&*client, backup_id, &error.to_string()).await {
                tracing::error!(%db_error, "could not record the failed backup");
            }
        }
        self.audit_quietly(
            "ha.backup.failed",
            serde_json::json!({ "backup_id": backup_id, "error": error.to_string() }),
        );
        // The row above may not have been written (the database is what failed): whatever
        // this node left running is cleared now, or by its next backup or listing.
        self.reconcile_interrupted(None).await;
        error
    }

    pub async fn restore(&self, backup_id: &str, request: RestoreRequest) -> Result<RestoreReport, BackupError> {
        ident::validate("backup id", backup_id)?;
        if !request.confirm {
            return Err(BackupError::NotConfirmed);
        }
        let manifest = self.repo.manifest(backup_id)?;
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
        let repo = self.repo.clone();
        let id = backup_id.to_owned();
        let opened = tokio::task::spawn_blocking(move || {
            let mut file = repo.open_archive(&id)?;
            let actual = repository::hash_from_start(&mut file, &repo.archive_path(&id)?)?;
            Ok::<_, BackupError>((file, actual))
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
        if recorded.is_none() {
            // The restore's transaction records itself in this row.
            let client = self.db.get().await?;
            inventory::upsert_completed(&*client, &manifest).await?;
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

        let terminated = async {
            let client = self.db.get().await?;
            if lease::read(&*client).await?.epoch != epoch || self.state.leader_epoch() != Some(epoch) {
                return Err(BackupError::Fenced(epoch));
            }
            Ok(terminate_other_sessions(&client).await?)
        }
        .await;
        let terminated_sessions = match terminated {
            Ok(count) => count,
            Err(error) => return Err(self.restore_failed(&mark, error)),
        };

        let tools = self.tools.clone();
        let node_id = self.state.node_id.clone();
        let replay_mark = mark.clone();
        let replayed = tokio::task::spawn_blocking(move || {
            restore::replay_archive(&tools, archive, &node_id, epoch, &replay_mark)
        })
        .await
        .expect("the restore thread does not panic");
        if let Err(error) = replayed {
            return Err(self.restore_failed(&mark, error));
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

    /// A started restore that did not commit: its outcome goes beside its start in the audit.
    fn restore_failed(&self, mark: &restore::RestoreMark, error: BackupError) -> BackupError {
        self.audit_quietly(
            "ha.backup.restore_failed",
            serde_json::json!({
                "backup_id": mark.backup_id,
                "restore_id": mark.restore_id,
                "error": error.to_string(),
                "committed": false,
            }),
        );
        error
    }

    /// Writes an audit event an operation depends on; if it cannot be written, the operation
    /// is refused (or, after a commit, reported) as `audit_io` with `what` saying what was done.
    pub(crate) fn audit_required(
        &self,
        event_type: &str,
        details: serde_json::Value,
        what: impl FnOnce() -> String,
    ) -> Result<(), BackupError> {
        match self.audit.record(event_type, details) {
            Ok(_) => Ok(()),
            Err(source) => {
                tracing::error!(error = %source, event_type, "could not write an audit event");
                Err(BackupError::Audit { what: what(), source })
            }
        }
    }

    pub(crate) fn audit_quietly(&self, event_type: &str, details: serde_json::Value) {
        if let Err(error) = self.audit.record(event_type, details) {
            tracing::error!(%error, event_type, "could not write an audit event");
        }
    }
}

/// Ends every client session on the database but autonomy's own, so the restore's locks are
/// not blocked by application connections. Returns how many were ended.
async fn terminate_other_sessions(client: &tokio_postgres::Client) -> Result<i64, DbError> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
               FROM pg_stat_activity
              WHERE datname = current_database()
                AND pid <> pg_backend_pid()
                AND backend_type = 'client backend'
                AND coalesce(application_name, '') NOT LIKE $1",
            &[&format!("{}%", db::APPLICATION_NAME_PREFIX)],
        )
        .await
        .map_err(DbError::query("terminate other sessions"))?;
    Ok(row.get(0))
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
    format!("rs-{}-{}", utc_stamp(), hex::encode(rand::random::<[u8; 4]>()))
}

fn utc_stamp() -> String {
    OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("a fixed format always formats")
}

/// `bk-<UTC time>-<6 hex>`: sorts by time, unique without coordination.
fn new_backup_id() -> String {
    format!("bk-{}-{}", utc_stamp(), hex::encode(rand::random::<[u8; 3]>()))
}
