//! The leader's backup operations: create, list and restore, with fencing, audit and one-at-a-time.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use time::OffsetDateTime;

use crate::{
    audit::{AuditLog, EventType},
    backup::{
        dump, inventory,
        manifest::{self, OpenPgpSeal, Storage},
        openpgp::{self, BackupKeys},
        pgtools::PgTools,
        proof::{self, Baseline, ProofReport},
        repository::FileState,
        store::BackupStore,
        BackupError, BackupRecord, BackupStatus, Manifest,
    },
    db::{self, DbError, SharedClient},
    ha::{store::WriteFence, NodeState},
    ident::BackupId,
};

pub struct BackupService {
    pub state: Arc<NodeState>,
    pub store: Arc<dyn BackupStore>,
    pub tools: PgTools,
    pub db: Arc<SharedClient>,
    pub audit: Arc<AuditLog>,
    /// The check every protected write of a backup or restore takes before its COMMIT.
    pub fence: WriteFence,
    /// Whom backups are encrypted to, and what restores decrypt with.
    pub keys: Arc<BackupKeys>,
    /// One backup or restore at a time on a node; a second request is refused, not queued.
    pub(crate) operation: tokio::sync::Mutex<()>,
    /// The backup this node is taking, if any. Held while a listing clears interrupted rows,
    /// so it never takes a backup that is just starting for a dead one.
    live_backup: tokio::sync::Mutex<Option<BackupId>>,
    /// True while a restore replaces the data: protected writes are refused meanwhile, since
    /// the restore would discard them after they were acknowledged.
    pub(crate) restoring: AtomicBool,
    /// The backups a drill, a restore or a deletion is working on, and which: retention keeps
    /// them, and a drill or restore of a backup being deleted is refused.
    pub(crate) in_use: std::sync::Mutex<std::collections::BTreeMap<BackupId, &'static str>>,
    /// What retention keeps.
    pub retention: crate::backup::retention::RetentionPolicy,
}

/// A backup taken up by one operation; released when dropped.
pub(crate) struct InUse<'a> {
    service: &'a BackupService,
    backup_id: BackupId,
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        let mut in_use = self
            .service
            .in_use
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        in_use.remove(&self.backup_id);
    }
}

/// Clears the restoring flag however the restore ends.
pub(crate) struct RestoringFlag<'a>(&'a AtomicBool);

impl<'a> RestoringFlag<'a> {
    pub(crate) fn raise(flag: &'a AtomicBool) -> Self {
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
    /// Runs `op` on the store from a blocking thread, as the store asks: its calls may wait on
    /// a disk or the network, and must not hold up the node's runtime.
    pub(crate) async fn on_store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn crate::backup::store::BackupStore) -> T + Send + 'static,
    ) -> T {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || op(&*store))
            .await
            .expect("a store call does not panic")
    }

    pub fn new(
        state: Arc<NodeState>,
        store: Arc<dyn BackupStore>,
        tools: PgTools,
        db: Arc<SharedClient>,
        audit: Arc<AuditLog>,
        fence: WriteFence,
        keys: Arc<BackupKeys>,
    ) -> Self {
        Self {
            state,
            store,
            tools,
            db,
            audit,
            fence,
            keys,
            operation: tokio::sync::Mutex::new(()),
            live_backup: tokio::sync::Mutex::new(None),
            restoring: AtomicBool::new(false),
            in_use: std::sync::Mutex::default(),
            retention: crate::backup::retention::RetentionPolicy::default(),
        }
    }

    /// Takes `backup_id` up for `by` (a drill, a restore, a prune); Err names what holds it.
    pub(crate) fn take_for(&self, backup_id: &BackupId, by: &'static str) -> Result<InUse<'_>, &'static str> {
        let mut in_use = self.in_use.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(holder) = in_use.get(backup_id) {
            return Err(holder);
        }
        in_use.insert(backup_id.clone(), by);
        Ok(InUse {
            service: self,
            backup_id: backup_id.clone(),
        })
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

    /// A transaction on `client` in which this node's writes at `epoch` may commit: the fence
    /// is checked first (and, with the row lease, holds until the commit).
    pub(crate) async fn begin_fenced<'c>(
        &self,
        client: &'c mut tokio_postgres::Client,
        epoch: i64,
    ) -> Result<tokio_postgres::Transaction<'c>, BackupError> {
        let tx = client.transaction().await.map_err(DbError::query("begin"))?;
        if !self.fence.holds(&tx, &self.state.node_id, epoch).await? {
            return Err(BackupError::Fenced(epoch));
        }
        Ok(tx)
    }

    /// Adds manifests the inventory lacks (after a lost or dropped table).
    pub async fn rebuild_inventory(&self) -> Result<u64, BackupError> {
        let store = self.store.clone();
        let manifests = tokio::task::spawn_blocking(move || store.manifests())
            .await
            .expect("the manifest scan does not panic")?;
        let mut client = self.db.get().await?;
        // Re-creates the inventory table if someone dropped it; a no-op otherwise.
        db::migrate(&mut client).await?;
        Ok(inventory::rebuild_from_manifests(&*client, &manifests).await?)
    }

    /// On the leader: the inventory rebuilt from the store's manifests (rows it lacks added),
    /// and what the store holds that is not a backup's, logged and reported.
    pub async fn reindex(&self) -> Result<crate::api::ReindexReport, BackupError> {
        self.leader_epoch()?;
        let added = self.rebuild_inventory().await?;
        let (manifests, foreign_objects) = self
            .on_store(|store| Ok::<_, BackupError>((store.manifest_ids()?.len(), store.foreign_objects()?)))
            .await?;
        if !foreign_objects.is_empty() {
            tracing::warn!(objects = ?foreign_objects, "the backup store holds objects that are not backups; they are left alone");
        }
        Ok(crate::api::ReindexReport {
            manifests,
            added,
            foreign_objects,
        })
    }

    /// The inventory, each completed backup with whether its files are in the repository.
    /// On the leader, first indexes manifests the inventory lacks and clears the interrupted
    /// backups (all but the one this node is taking).
    /// The inventory's rows as they are: no rebuild from the store, no look at the files.
    pub async fn records(&self) -> Result<Vec<BackupRecord>, BackupError> {
        let client = self.db.get().await?;
        Ok(inventory::list(&*client).await?)
    }

    pub async fn list(&self) -> Result<Vec<BackupRecord>, BackupError> {
        if self.state.leader_epoch().is_some() {
            self.rebuild_inventory().await?;
            let live = self.live_backup.lock().await;
            self.reconcile_interrupted(live.as_ref()).await;
        }
        let mut records = self.records().await?;
        let store = self.store.clone();
        let ids: Vec<String> = records
            .iter()
            .filter(|r| r.status == BackupStatus::Completed)
            .map(|r| r.backup_id.clone())
            .collect();
        let states = tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .map(|id| {
                    let state = store.file_state(&id).unwrap_or(FileState::BothMissing);
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

    pub async fn get(&self, backup_id: &BackupId) -> Result<BackupRecord, BackupError> {
        self.list()
            .await?
            .into_iter()
            .find(|record| *backup_id == record.backup_id.as_str())
            .ok_or_else(|| BackupError::NotFound(backup_id.to_string()))
    }

    pub async fn create(&self) -> Result<BackupRecord, BackupError> {
        self.create_with_id(new_backup_id()).await
    }

    /// A backup under an id chosen beforehand (a schedule records it with its slot first).
    pub async fn create_with_id(&self, backup_id: BackupId) -> Result<BackupRecord, BackupError> {
        let epoch = self.leader_epoch()?;
        let _running = self.operation.try_lock().map_err(|_| BackupError::Busy)?;
        {
            let mut live = self.live_backup.lock().await;
            // This node runs nothing else now: any `running` row of its own is a dead one.
            self.reconcile_interrupted(None).await;
            *live = Some(backup_id.clone());
        }
        let created = self.create_as(epoch, &backup_id).await;
        *self.live_backup.lock().await = None;
        created
    }

    async fn create_as(&self, epoch: i64, backup_id: &BackupId) -> Result<BackupRecord, BackupError> {
        self.audit_required(
            EventType::BackupStarted,
            serde_json::json!({ "backup_id": backup_id, "epoch": epoch }),
            || "backup refused: nothing was started".to_owned(),
        )?;
        let created_at = OffsetDateTime::now_utc();
        let server_version = match self.register_running(epoch, backup_id, created_at).await {
            Ok(version) => version,
            Err(error) => return Err(self.record_failure(backup_id, error).await),
        };
        let written = async {
            let excluded_schemas = vec![db::SCHEMA.to_owned()];
            let (outcome, baseline) = self.dump_and_baseline(backup_id, &excluded_schemas).await?;
            let manifest = Manifest {
                manifest_version: manifest::MANIFEST_VERSION,
                backup_id: backup_id.clone(),
                created_at,
                completed_at: OffsetDateTime::now_utc(),
                database: self.tools.database.clone(),
                server_version,
                size_bytes: outcome.size_bytes,
                sha256: outcome.sha256.clone(),
                duration_ms: outcome.duration_ms,
                status: BackupStatus::Completed,
                node_id: self.state.node_id.clone(),
                epoch,
                excluded_schemas,
                storage: self.storage_of(&outcome),
                baseline: Some(baseline),
                manifest_sha256: None,
                manifest_signature: None,
            };
            let manifest = self.signed(manifest)?;
            // A leader whose term ended while it dumped (frozen, cut off) publishes nothing: a
            // successor may be running this backup's schedule slot again already.
            if self.state.leader_epoch() != Some(epoch) {
                return Err(BackupError::Fenced(epoch));
            }
            let store = self.store.clone();
            let published = manifest.clone();
            tokio::task::spawn_blocking(move || store.publish(&published))
                .await
                .expect("publishing does not panic")?;
            Ok(manifest)
        }
        .await;
        let manifest = match written {
            Ok(manifest) => manifest,
            Err(error) => {
                let id = backup_id.clone();
                self.on_store(move |store| store.discard(id.as_str())).await;
                return Err(self.record_failure(backup_id, error).await);
            }
        };
        match self.index_fenced(&manifest, epoch).await {
            Ok(true) => {}
            Ok(false) => {
                // The archive and manifest are complete; the next leader indexes them.
                self.audit_quietly(
                    EventType::BackupFenced,
                    serde_json::json!({ "backup_id": manifest.backup_id, "epoch": epoch, "archive_complete": true }),
                );
                return Err(BackupError::Fenced(epoch));
            }
            // Complete in the repository; the next listing's rebuild indexes it.
            Err(error) => return Err(self.record_failure(backup_id, error).await),
        }
        self.audit_required(
            EventType::BackupCreated,
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

    /// `manifest` with this node's signature over its seal, when it has a signing key.
    fn signed(&self, mut manifest: Manifest) -> Result<Manifest, BackupError> {
        if let Some(signer) = &self.keys.signer {
            let signature = signer
                .sign(&manifest::seal_of(&manifest))
                .map_err(|e| BackupError::Proof(format!("the manifest could not be signed: {e}")))?;
            manifest.manifest_signature = Some(manifest::ManifestSignature {
                signer: signer.fingerprint().to_owned(),
                signature,
            });
        }
        Ok(manifest)
    }

    /// How the archive of `outcome` is stored: this store, encrypted to whom.
    fn storage_of(&self, outcome: &dump::DumpOutcome) -> Storage {
        let openpgp = match (&self.keys.recipients, &outcome.plaintext) {
            (Some(recipients), Some((size, sha256))) => Some(OpenPgpSeal {
                cipher: openpgp::stream::CIPHER.into(),
                recipients: recipients.fingerprints(),
                plaintext_sha256: sha256.clone(),
                plaintext_size_bytes: *size,
            }),
            _ => None,
        };
        Storage {
            kind: self.store.kind().into(),
            encryption: if openpgp.is_some() {
                openpgp::stream::ENCRYPTION
            } else {
                "none"
            }
            .into(),
            openpgp,
            ..Storage::default()
        }
    }

    /// The backup's `running` row, written under the fence; returns the server's version.
    async fn register_running(
        &self,
        epoch: i64,
        backup_id: &BackupId,
        created_at: OffsetDateTime,
    ) -> Result<String, BackupError> {
        let mut client = self.db.get().await?;
        let tx = self.begin_fenced(&mut client, epoch).await?;
        let database = &self.tools.database;
        inventory::insert_running(
            &tx,
            backup_id.as_str(),
            created_at,
            database,
            self.state.node_id.as_str(),
            epoch,
        )
        .await?;
        let version: String = tx
            .query_one("SHOW server_version", &[])
            .await
            .map_err(DbError::query("read the server version"))?
            .get(0);
        tx.commit().await.map_err(DbError::query("commit"))?;
        Ok(version)
    }

    /// The archive and its baseline, the baseline's sequences where the archive positions them.
    async fn dump_and_baseline(
        &self,
        backup_id: &BackupId,
        excluded_schemas: &[String],
    ) -> Result<(dump::DumpOutcome, Baseline), BackupError> {
        let (dumped, baseline) = self.dump_with_baseline(backup_id, excluded_schemas).await;
        let (mut outcome, mut baseline) = (dumped?, baseline?);
        let head = std::mem::take(&mut outcome.head);
        let whole = outcome.plaintext.as_ref().map_or(outcome.size_bytes, |(size, _)| *size) <= head.len() as u64;
        let positions = self.archived_sequence_positions(backup_id, head, whole).await?;
        proof::sequences::apply(&mut baseline, &positions);
        Ok((outcome, baseline))
    }

    /// The completed backup's inventory row, written under the fence; false when the fence
    /// refused it (this node no longer leads at `epoch`).
    async fn index_fenced(&self, manifest: &Manifest, epoch: i64) -> Result<bool, BackupError> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await.map_err(DbError::query("begin"))?;
        if !self.fence.holds(&tx, &self.state.node_id, epoch).await? {
            return Ok(false);
        }
        inventory::upsert_completed(&tx, manifest).await?;
        tx.commit().await.map_err(DbError::query("commit"))?;
        Ok(true)
    }

    /// pg_dump in an exported snapshot while the baseline reads every table in that same
    /// snapshot, side by side: the archive and its baseline describe the same moment. The
    /// snapshot's transaction stays open until pg_dump has finished (it imports it at start).
    async fn dump_with_baseline(
        &self,
        backup_id: &BackupId,
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
        let id = backup_id.clone();
        let archive = match self.on_store(move |store| store.create_archive(id.as_str())).await {
            Ok(archive) => archive,
            Err(error) => return (Err(error), Err(BackupError::Proof("no archive to write".into()))),
        };
        let (tools, keys) = (self.tools.clone(), self.keys.clone());
        let exported = snapshot.clone();
        let dump = tokio::task::spawn_blocking(move || {
            dump::dump_into(&tools, db::SCHEMA, archive, Some(&exported), keys.recipients.as_ref())
        });
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

    /// Where the finished (still unpublished) archive positions each sequence, read from its
    /// `head` (pg_dump's first bytes, `whole` when that is all of it): that holds the table of
    /// contents, so no key and no second read are needed. A table of contents larger than the
    /// head is read from the staged archive, which only an unencrypted one allows.
    async fn archived_sequence_positions(
        &self,
        backup_id: &BackupId,
        head: Vec<u8>,
        whole: bool,
    ) -> Result<std::collections::BTreeMap<String, String>, BackupError> {
        let store = self.store.clone();
        let tools = self.tools.clone();
        let id = backup_id.clone();
        let encrypted = self.keys.recipients.is_some();
        tokio::task::spawn_blocking(move || {
            use proof::sequences::ArchiveSource;
            let from_head = proof::sequences::archived_positions(&tools, ArchiveSource::Head(&head), store.scratch_dir());
            match from_head {
                Ok(positions) => Ok(positions),
                Err(error) if whole => Err(error),
                Err(_) if encrypted => Err(BackupError::Proof(format!(
                    "the archive's table of contents is larger than {} MiB, so the sequences' positions cannot be read without decrypting it; back this database up unencrypted",
                    dump::HEAD_LIMIT >> 20
                ))),
                Err(_) => {
                    let staged = store.stage_unpublished(id.as_str())?;
                    proof::sequences::archived_positions(&tools, ArchiveSource::File(&staged.path), store.scratch_dir())
                }
            }
        })
        .await
        .expect("reading the archive does not panic")
    }

    /// The restored database against the backup's baseline, in a snapshot of its own.
    pub(crate) async fn prove_restore(&self, manifest: &Manifest) -> Option<ProofReport> {
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

    async fn record_failure(&self, backup_id: &BackupId, error: BackupError) -> BackupError {
        tracing::error!(%backup_id, %error, "backup failed");
        if let Ok(client) = self.db.get().await {
            if let Err(db_error) = inventory::mark_failed(&*client, backup_id.as_str(), &error.to_string()).await {
                tracing::error!(%db_error, "could not record the failed backup");
            }
        }
        self.audit_quietly(
            EventType::BackupFailed,
            serde_json::json!({ "backup_id": backup_id, "error": error.to_string() }),
        );
        // The row above may not have been written (the database is what failed): whatever
        // this node left running is cleared now, or by its next backup or listing.
        self.reconcile_interrupted(None).await;
        error
    }

    /// Writes an audit event an operation depends on; if it cannot be written, the operation
    /// is refused (or, after a commit, reported) as `audit_io` with `what` saying what was done.
    pub(crate) fn audit_required(
        &self,
        event_type: EventType,
        details: serde_json::Value,
        what: impl FnOnce() -> String,
    ) -> Result<(), BackupError> {
        match self.audit.record(event_type, details) {
            Ok(_) => Ok(()),
            Err(source) => {
                tracing::error!(error = %source, event_type = event_type.as_str(), "could not write an audit event");
                Err(BackupError::Audit { what: what(), source })
            }
        }
    }

    pub(crate) fn audit_quietly(&self, event_type: EventType, details: serde_json::Value) {
        if let Err(error) = self.audit.record(event_type, details) {
            tracing::error!(%error, event_type = event_type.as_str(), "could not write an audit event");
        }
    }
}

/// Ends every client session on the database but autonomy's own, so the restore's locks are
/// not blocked by application connections. Returns how many were ended.
pub(crate) async fn terminate_other_sessions(client: &tokio_postgres::Client) -> Result<i64, DbError> {
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

/// The current UTC time as `YYYYMMDDTHHMMSSZ`, for ids that sort by time.
pub(crate) fn utc_stamp() -> String {
    OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("a fixed format always formats")
}

/// `bk-<UTC time>-<6 hex>`: sorts by time, unique without coordination.
pub(crate) fn new_backup_id() -> BackupId {
    BackupId::parse(&format!(
        "bk-{}-{}",
        utc_stamp(),
        hex::encode(rand::random::<[u8; 3]>())
    ))
    .expect("bk-, a UTC stamp and hex digits make a valid backup id")
}
