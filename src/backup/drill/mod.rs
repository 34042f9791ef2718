//! `ha backup verify`: a restore drill. The archive is checked, restored section by section
//! into a scratch database (never the live one), its baseline recomputed and compared object
//! by object with the manifest's, every btree index checked by amcheck, each phase timed; the
//! scratch database is removed unless kept, also when the drill fails.

pub use crate::api::VerifyRequest;

pub mod amcheck;
pub mod report;
pub mod sections;
pub mod target;

use time::OffsetDateTime;

use report::PhaseClock;
pub use report::{DrillOutcome, DrillPhase, Phase, VerifyReport};
use target::{Target, TargetKind};

use crate::{
    audit::EventType,
    backup::{
        inventory,
        proof::{self, Difference},
        BackupError, BackupService, Manifest,
    },
    db::{self, DbError},
    ident::{BackupId, InvalidIdent},
};

/// Which backup a drill restores: the repository's newest, or one by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhichBackup {
    Latest,
    Id(BackupId),
}

impl WhichBackup {
    /// `latest`, or a backup id.
    pub fn parse(which: &str) -> Result<Self, InvalidIdent> {
        match which {
            "latest" => Ok(WhichBackup::Latest),
            id => BackupId::parse(id).map(WhichBackup::Id),
        }
    }
}

impl std::fmt::Display for WhichBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhichBackup::Latest => f.write_str("latest"),
            WhichBackup::Id(id) => id.fmt(f),
        }
    }
}

/// What the archive check found.
enum ArchiveCheck {
    /// The manifest is sound and the archive matches it.
    Sound(Manifest),
    /// The backup cannot be restored as recorded; the manifest, when it could be read.
    Mismatch {
        manifest: Option<Manifest>,
        difference: Difference,
    },
}

/// The phases whose sum is the restore's time to recovery (the proof and amcheck come after
/// the data is back).
const RECOVERY_PHASES: [DrillPhase; 5] = [
    DrillPhase::ArchiveCheck,
    DrillPhase::CreateDatabase,
    DrillPhase::PreData,
    DrillPhase::Data,
    DrillPhase::PostData,
];

impl BackupService {
    /// Runs a drill of `which`. Errors mean the drill did not start (bad request, unknown
    /// backup, not leader, busy); once started, every outcome, `not_run` included, is a report.
    pub async fn verify(&self, which: WhichBackup, request: VerifyRequest) -> Result<VerifyReport, BackupError> {
        let backup_id = match which {
            WhichBackup::Latest => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || store.latest_backup_id())
                    .await
                    .expect("the repository scan does not panic")?
                    .ok_or_else(|| BackupError::NotFound("latest (the repository holds no backup)".into()))?
            }
            WhichBackup::Id(backup_id) => backup_id,
        };
        // Taken up first: retention keeps a backup being drilled, and one being deleted is not drilled.
        let _in_use = self.take_for(&backup_id, "drill").map_err(|_| BackupError::Busy)?;
        let id = backup_id.clone();
        if !self.on_store(move |store| store.has_manifest(id.as_str())).await? {
            return Err(BackupError::NotFound(backup_id.to_string()));
        }
        let target = self.drill_target(&backup_id, &request)?;
        self.leader_epoch()?;
        let _running = self.operation.try_lock().map_err(|_| BackupError::Busy)?;
        let mut report = VerifyReport::new(&backup_id, target.described.clone(), target.database.clone());

        let clock = PhaseClock::start();
        let checked = self.check_archive(&backup_id).await;
        clock.stop(&mut report, DrillPhase::ArchiveCheck);
        match checked {
            Err(error) => report.fail(error),
            Ok(ArchiveCheck::Mismatch { manifest, difference }) => {
                report.manifest_sealed = manifest.is_some_and(|m| m.manifest_sha256.is_some());
                report.differences.push(difference);
            }
            Ok(ArchiveCheck::Sound(manifest)) => {
                report.manifest_sealed = manifest.manifest_sha256.is_some();
                match &manifest.baseline {
                    None => report.fail(format!(
                        "backup `{backup_id}` has no baseline (manifest version {}): there is nothing to prove it \
                         against. Take a new backup",
                        manifest.manifest_version
                    )),
                    Some(baseline) => {
                        let restored = self.restore_and_prove(&manifest, baseline, &target, &mut report).await;
                        self.clean_up(&target, restored, request.keep, &mut report).await;
                    }
                }
            }
        }
        if target.kind == TargetKind::Scratch {
            report.rto_ms = Some(
                report
                    .phases
                    .iter()
                    .filter(|phase| RECOVERY_PHASES.contains(&phase.name))
                    .map(|phase| phase.ms)
                    .sum(),
            );
        }
        report.conclude();
        self.record_verification(&report, target.kind).await;
        Ok(report)
    }

    /// Where this drill restores; a bad `--target-url` or flag combination is refused here,
    /// before anything is touched.
    fn drill_target(&self, backup_id: &BackupId, request: &VerifyRequest) -> Result<Target, BackupError> {
        let given = request
            .target_url
            .as_deref()
            .map(|url| {
                let config = url.parse::<tokio_postgres::Config>().map_err(|e| {
                    BackupError::InvalidRequest(format!(
                        "--target-url is not a PostgreSQL URL ({e}); use postgresql://user@host:port/database"
                    ))
                })?;
                match target::unsupported_target(&config) {
                    Some(reason) => Err(BackupError::InvalidRequest(reason.into())),
                    None => Ok(config),
                }
            })
            .transpose()?;
        let scratch = target::scratch_name(backup_id.as_str());
        match (given, request.proof_only) {
            (None, true) => Err(BackupError::InvalidRequest(
                "--proof-only needs --target-url: the database that already holds the restore to prove".into(),
            )),
            (Some(config), true) if config.get_dbname().is_none() => Err(BackupError::InvalidRequest(
                "--target-url names no database; add /<database> to the URL".into(),
            )),
            (Some(config), true) => Ok(Target::existing(config)),
            (Some(server), false) => Ok(Target::scratch(server, scratch)),
            (None, false) => Ok(Target::scratch(
                self.db.config_for_database(&self.tools.database)?,
                scratch,
            )),
        }
    }

    /// The manifest (its seal checked, and against the inventory's record) and the archive
    /// against its checksum. A backup that fails here is a difference: it could not be
    /// restored as recorded.
    async fn check_archive(&self, backup_id: &BackupId) -> Result<ArchiveCheck, BackupError> {
        let manifest_difference = |found: String| Difference {
            object: format!("manifest {backup_id}.json"),
            expected: "sealed by its manifest_sha256, agreeing with the inventory".into(),
            found,
        };
        let id = backup_id.clone();
        let manifest = match self.on_store(move |store| store.manifest(id.as_str())).await {
            Ok(manifest) => manifest,
            Err(BackupError::ManifestUntrusted { reason, .. }) => {
                return Ok(ArchiveCheck::Mismatch {
                    manifest: None,
                    difference: manifest_difference(reason.to_string()),
                })
            }
            Err(BackupError::NotRegularFile { kind, .. }) => {
                return Ok(ArchiveCheck::Mismatch {
                    manifest: None,
                    difference: manifest_difference(kind.to_owned()),
                })
            }
            Err(error) => return Err(error),
        };
        let recorded = {
            let client = self.db.get().await?;
            inventory::get(&*client, backup_id.as_str()).await?
        };
        // A drill restores nothing live, so an unsealed (old) manifest is drilled as it is.
        let trusted = crate::backup::manifest::trust_for_restore(&manifest, recorded.as_ref(), true).and_then(|()| {
            crate::backup::manifest::check_signature(&manifest, self.keys.verifier.as_ref()).map(|_| ())
        });
        if let Err(reason) = trusted {
            return Ok(ArchiveCheck::Mismatch {
                manifest: Some(manifest),
                difference: manifest_difference(reason.to_string()),
            });
        }
        let store = self.store.clone();
        let id = backup_id.clone();
        let actual = tokio::task::spawn_blocking(move || store.archive_sha256(id.as_str()))
            .await
            .expect("hashing does not panic");
        let found = match actual {
            Ok(actual) if actual == manifest.sha256 => return Ok(ArchiveCheck::Sound(manifest)),
            Ok(actual) => format!("sha256 {actual}"),
            Err(BackupError::ArchiveMissing(_)) => "absent".into(),
            Err(BackupError::NotRegularFile { kind, .. }) => kind.to_owned(),
            Err(error) => return Err(error),
        };
        let difference = Difference {
            object: format!("archive {backup_id}.dump"),
            expected: format!("sha256 {}", manifest.sha256),
            found,
        };
        Ok(ArchiveCheck::Mismatch {
            manifest: Some(manifest),
            difference,
        })
    }

    /// Prepares the target, restores into it, proves it and checks its indexes, timing each
    /// phase. Returns how far it got, so clean-up knows what there is to remove.
    async fn restore_and_prove(
        &self,
        manifest: &Manifest,
        expected: &proof::Baseline,
        target: &Target,
        report: &mut VerifyReport,
    ) -> Restored {
        if target.kind == TargetKind::Scratch {
            if let Err(restored) = self.restore_into_scratch(manifest, target, report).await {
                return restored;
            }
        }
        let clock = PhaseClock::start();
        let client = match self.open_target(target).await {
            Ok(client) => client,
            Err((restored, reason)) => {
                report.fail(reason);
                return restored;
            }
        };
        let found = self.read_baseline(&client, target, &manifest.excluded_schemas).await;
        clock.stop(report, DrillPhase::Proof);
        match found {
            Ok(found) => {
                report.tables_checked = expected.tables.len();
                report.objects_checked = expected.objects.len();
                report.differences.extend(proof::baseline::compare(expected, &found));
            }
            Err(error) => {
                report.fail(error);
                return Restored::Created;
            }
        }

        let clock = PhaseClock::start();
        let checked = amcheck::check_indexes(&client, &manifest.excluded_schemas).await;
        clock.stop(report, DrillPhase::Amcheck);
        match checked {
            Ok(checked) => {
                report.indexes_checked = checked.indexes_checked;
                report.differences.extend(checked.differences);
            }
            Err(error) => report.fail(error),
        }
        Restored::Created
    }

    /// Creates the scratch database and restores the archive into it section by section, each
    /// a phase. On failure, says how far it got (the failure is in the report).
    async fn restore_into_scratch(
        &self,
        manifest: &Manifest,
        target: &Target,
        report: &mut VerifyReport,
    ) -> Result<(), Restored> {
        // Staged (and, encrypted, decrypted and checked) before the scratch database exists:
        // a missing or wrong key stops the drill before anything is restored.
        let (store, keys) = (self.store.clone(), self.keys.clone());
        let checked = manifest.clone();
        let staged = tokio::task::spawn_blocking(move || {
            crate::backup::plaintext::open(
                &*store,
                &checked,
                &keys,
                crate::backup::plaintext::StoredBytes::AlreadyChecked,
            )
        })
        .await
        .expect("staging does not panic");
        let staged = match staged {
            Ok(staged) => std::sync::Arc::new(staged),
            Err(error) => {
                report.fail(error);
                return Err(Restored::Nothing);
            }
        };
        if manifest.storage.openpgp.is_some() {
            report.decrypted_with = self.keys.decryption.as_ref().map(|key| key.fingerprint.clone());
        }
        let clock = PhaseClock::start();
        let created = self.create_scratch(target, report).await;
        clock.stop(report, DrillPhase::CreateDatabase);
        if let Err(error) = created {
            report.fail(error);
            return Err(Restored::Nothing);
        }
        let tools = self.tools.for_config(&target.config);
        for (section, phase) in sections::SECTIONS {
            let clock = PhaseClock::start();
            let (tools, staged) = (tools.clone(), staged.clone());
            let restored =
                tokio::task::spawn_blocking(move || sections::restore_section(&tools, &staged.path, section))
                    .await
                    .expect("the restore thread does not panic");
            clock.stop(report, phase);
            if let Err(error) = restored {
                report.fail(error);
                return Err(Restored::Created);
            }
        }
        Ok(())
    }

    /// A session on the database to prove. An existing target that autonomy manages is
    /// refused: a drill proves restores, never a live node's database.
    async fn open_target(&self, target: &Target) -> Result<tokio_postgres::Client, (Restored, String)> {
        let client = db::connect_config(target.config.clone(), self.db.node_id().as_str(), "verify")
            .await
            .map_err(|error| {
                let reason = format!("cannot reach the database {}: {error}", target.described);
                (Restored::Created, reason)
            })?;
        if target.kind == TargetKind::Existing {
            match target::refuse_managed(&client).await {
                Ok(None) => {}
                Ok(Some(refusal)) => return Err((Restored::Nothing, refusal)),
                Err(error) => return Err((Restored::Nothing, error.to_string())),
            }
        }
        Ok(client)
    }

    /// The target's baseline, read in a snapshot of its own by parallel sessions.
    async fn read_baseline(
        &self,
        client: &tokio_postgres::Client,
        target: &Target,
        excluded_schemas: &[String],
    ) -> Result<proof::Baseline, BackupError> {
        let snapshot = proof::tables::begin_snapshot(client).await?;
        let (config, node_id) = (target.config.clone(), self.db.node_id().to_owned());
        let open = move || {
            let (config, node_id) = (config.clone(), node_id.clone());
            async move { db::connect_config(config, node_id.as_str(), "verify-reader").await }
        };
        let found = proof::baseline::take_parallel(
            client,
            &snapshot,
            excluded_schemas,
            proof::baseline::default_readers(),
            open,
        )
        .await?;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(DbError::query("end the proof's snapshot"))?;
        Ok(found)
    }

    /// Drops what earlier drills abandoned on the drill's server, then creates this drill's
    /// scratch database like the application's.
    async fn create_scratch(&self, target: &Target, report: &mut VerifyReport) -> Result<(), String> {
        let node_id = self.db.node_id().to_owned();
        let server = db::connect_config(target.maintenance.clone(), node_id.as_str(), "verify")
            .await
            .map_err(|e| {
                format!(
                    "cannot reach the drill's server {}: {e}",
                    target::describe(&target.maintenance)
                )
            })?;
        match target::drop_abandoned(&server).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::warn!(?dropped, "dropped scratch databases that earlier drills abandoned");
                report.abandoned_dropped = dropped;
            }
            Ok(_) => {}
            Err(error) => return Err(error.to_string()),
        }
        let live = self.db.get().await.map_err(|e| e.to_string())?;
        target::create_scratch(&server, &target.database, &live)
            .await
            .map_err(|e| e.to_string())
    }

    /// Drops the scratch database (or marks it kept): whatever the drill created.
    async fn clean_up(&self, target: &Target, restored: Restored, keep: bool, report: &mut VerifyReport) {
        if restored == Restored::Nothing || target.kind == TargetKind::Existing {
            report.kept = target.kind == TargetKind::Existing && restored == Restored::Created;
            return;
        }
        let clock = PhaseClock::start();
        let cleaned = async {
            let server = db::connect_config(target.maintenance.clone(), self.db.node_id().as_str(), "verify").await?;
            if keep {
                target::mark_kept(&server, &target.database).await
            } else {
                target::drop_scratch(&server, &target.database).await
            }
        }
        .await;
        clock.stop(report, DrillPhase::Cleanup);
        match cleaned {
            Ok(()) => report.kept = keep,
            Err(error) => {
                report.kept = true;
                report.fail(format!(
                    "the drill ran but its database {} could not be {} ({error}); the next drill drops it, or drop it by hand",
                    target.described,
                    if keep { "marked kept" } else { "removed" }
                ));
            }
        }
    }

    /// The inventory's last_verified_at and the audit event; failures here are logged, the
    /// report stands.
    async fn record_verification(&self, report: &VerifyReport, kind: TargetKind) {
        // A --proof-only run proves another database, not this backup's restore.
        match self.db.get().await {
            Ok(_) if kind == TargetKind::Existing => {}
            Ok(client) => {
                if let Err(error) = inventory::record_verification(
                    &*client,
                    report.backup_id.as_str(),
                    OffsetDateTime::now_utc(),
                    report.outcome.as_str(),
                )
                .await
                {
                    tracing::error!(%error, "could not record the verification in the inventory");
                }
            }
            Err(error) => tracing::error!(%error, "could not record the verification in the inventory"),
        }
        self.audit_quietly(
            EventType::BackupVerified,
            serde_json::json!({
                "backup_id": report.backup_id,
                "outcome": report.outcome.as_str(),
                "target": report.target,
                "kept": report.kept,
                "rto_ms": report.rto_ms,
                "proof_only": kind == TargetKind::Existing,
                "manifest_sealed": report.manifest_sealed,
                "phases": report.phases,
                "tables_checked": report.tables_checked,
                "objects_checked": report.objects_checked,
                "indexes_checked": report.indexes_checked,
                "differences": report.differences.len(),
                "error": report.error,
            }),
        );
        tracing::info!(backup_id = %report.backup_id, outcome = report.outcome.as_str(), rto_ms = ?report.rto_ms, "backup verified");
    }
}

/// How far a drill got with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restored {
    /// Nothing was created, or the target was refused.
    Nothing,
    /// The scratch database exists (or the existing target was read).
    Created,
}
