//! `ha backup verify`: a restore drill. The archive is checked, restored section by section
//! into a scratch database (never the live one), its baseline recomputed and compared object
//! by object with the manifest's, every btree index checked by amcheck, each phase timed; the
//! scratch database is removed unless kept, also when the drill fails.

pub mod amcheck;
pub mod report;
pub mod sections;
pub mod target;

use std::time::Instant;

use serde::Deserialize;
use time::OffsetDateTime;

pub use report::{DrillOutcome, Phase, VerifyReport};
use report::PhaseClock;
use target::{Target, TargetKind};

use crate::{
    backup::{
        inventory,
        proof::{self, Difference},
        BackupError, BackupService, Manifest,
    },
    db::{self, DbError},
    ident,
};

/// What `POST /v1/ha/backups/{id|latest}/verify` accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Restore into this (empty) database instead of a scratch one on the node's server.
    #[serde(default)]
    pub target_url: Option<String>,
    /// Leave the restored database in place for inspection.
    #[serde(default)]
    pub keep: bool,
    /// Restore nothing: prove the database at `target_url`, which already holds the restore.
    #[serde(default)]
    pub proof_only: bool,
}

impl BackupService {
    /// Runs a drill of `which` (a backup id, or `latest`). Errors mean the drill did not
    /// start (bad request, not leader, busy, unknown backup); once started, every outcome,
    /// `not_run` included, is a report.
    pub async fn verify(&self, which: &str, request: VerifyRequest) -> Result<VerifyReport, BackupError> {
        let backup_id = if which == "latest" {
            let repo = self.repo.clone();
            tokio::task::spawn_blocking(move || repo.latest_backup_id())
                .await
                .expect("the repository scan does not panic")?
                .ok_or_else(|| BackupError::NotFound("latest (the repository holds no backup)".into()))?
        } else {
            ident::validate("backup id", which)?;
            which.to_owned()
        };
        let target = self.drill_target(&backup_id, &request)?;
        self.leader_epoch()?;
        let _running = self.operation.try_lock().map_err(|_| BackupError::Busy)?;
        let started = Instant::now();
        let mut report = VerifyReport::new(&backup_id, target.described.clone(), target.database.clone());
        report.kept = request.keep || target.kind == TargetKind::Existing;

        let clock = PhaseClock::start();
        let checked = self.check_archive(&backup_id).await;
        clock.stop(&mut report, "archive_check");
        match checked {
            Err(error) => report.fail(error),
            Ok(Err(difference)) => report.differences.push(difference),
            Ok(Ok(manifest)) => match &manifest.baseline {
                None => report.fail(format!(
                    "backup `{backup_id}` has no baseline (manifest version {}): there is nothing to prove it \
                     against. Take a new backup",
                    manifest.manifest_version
                )),
                Some(baseline) => {
                    let restored = self.restore_and_prove(&manifest, baseline, &target, &mut report).await;
                    report.rto_ms = started.elapsed().as_millis() as u64;
                    if !report.kept || restored == Restored::Nothing {
                        self.clean_up(&target, restored, &mut report).await;
                    }
                }
            },
        }
        if report.rto_ms == 0 {
            report.rto_ms = started.elapsed().as_millis() as u64;
        }
        report.conclude();
        self.record_verification(&report).await;
        Ok(report)
    }

    /// Where this drill restores; a bad `--target-url` or flag combination is refused here,
    /// before anything is touched.
    fn drill_target(&self, backup_id: &str, request: &VerifyRequest) -> Result<Target, BackupError> {
        let given = request
            .target_url
            .as_deref()
            .map(|url| {
                url.parse::<tokio_postgres::Config>().map_err(|e| {
                    BackupError::InvalidRequest(format!(
                        "--target-url is not a PostgreSQL URL ({e}); use postgresql://user@host:port/database"
                    ))
                })
            })
            .transpose()?;
        match (given, request.proof_only) {
            (None, true) => Err(BackupError::InvalidRequest(
                "--proof-only needs --target-url: the database that already holds the restore to prove".into(),
            )),
            (Some(config), _) if config.get_dbname().is_none() => Err(BackupError::InvalidRequest(
                "--target-url names no database; add /<database> to the URL".into(),
            )),
            (Some(config), true) => Ok(Target::new(TargetKind::Existing, config)),
            (Some(config), false) => Ok(Target::new(TargetKind::Given, config)),
            (None, false) => Ok(Target::new(
                TargetKind::Scratch,
                self.db.config_for_database(&target::scratch_name(backup_id))?,
            )),
        }
    }

    /// The manifest (its seal checked) and the archive against its checksum. A backup that
    /// fails here is a difference: it could not be restored as recorded.
    async fn check_archive(&self, backup_id: &str) -> Result<Result<Manifest, Difference>, BackupError> {
        let manifest = match self.repo.manifest(backup_id) {
            Ok(manifest) => manifest,
            Err(BackupError::ManifestUntrusted { reason, .. }) => {
                return Ok(Err(Difference {
                    object: format!("manifest {backup_id}.json"),
                    expected: "sealed by its manifest_sha256".into(),
                    found: reason.to_string(),
                }))
            }
            Err(error) => return Err(error),
        };
        let repo = self.repo.clone();
        let id = backup_id.to_owned();
        let actual = tokio::task::spawn_blocking(move || repo.archive_sha256(&id))
            .await
            .expect("hashing does not panic");
        let found = match actual {
            Ok(actual) if actual == manifest.sha256 => return Ok(Ok(manifest)),
            Ok(actual) => format!("sha256 {actual}"),
            Err(BackupError::ArchiveMissing(_)) => "absent".into(),
            Err(error) => return Err(error),
        };
        Ok(Err(Difference {
            object: format!("archive {backup_id}.dump"),
            expected: format!("sha256 {}", manifest.sha256),
            found,
        }))
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
        let node_id = self.db.node_id().to_owned();
        let clock = PhaseClock::start();
        let prepared = match target.kind {
            TargetKind::Scratch => match self.db.open_another("verify").await {
                Ok(live) => target::create_scratch(&live, &target.database).await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            },
            TargetKind::Given => match db::connect_config(target.config.clone(), &node_id, "verify").await {
                Ok(client) => match target::refuse_unless_empty(&client).await {
                    Ok(None) => Ok(()),
                    Ok(Some(refusal)) => Err(refusal),
                    Err(error) => Err(error.to_string()),
                },
                Err(error) => Err(format!("cannot reach the target {}: {error}", target.described)),
            },
            TargetKind::Existing => Ok(()),
        };
        if target.kind != TargetKind::Existing {
            clock.stop(report, "create_database");
        }
        if let Err(error) = prepared {
            report.fail(error);
            return Restored::Nothing;
        }

        if target.kind != TargetKind::Existing {
            let archive = match self.repo.archive_path(&manifest.backup_id) {
                Ok(archive) => archive,
                Err(error) => {
                    report.fail(error);
                    return Restored::Created;
                }
            };
            let tools = self.tools.for_config(&target.config);
            for (section, phase) in sections::SECTIONS {
                let clock = PhaseClock::start();
                let (tools, archive) = (tools.clone(), archive.clone());
                let restored = tokio::task::spawn_blocking(move || sections::restore_section(&tools, &archive, section))
                    .await
                    .expect("the restore thread does not panic");
                clock.stop(report, phase);
                if let Err(error) = restored {
                    report.fail(error);
                    return Restored::Created;
                }
            }
        }

        let clock = PhaseClock::start();
        let client = match db::connect_config(target.config.clone(), &node_id, "verify").await {
            Ok(client) => client,
            Err(error) => {
                report.fail(format!("cannot reach the restored database {}: {error}", target.described));
                return Restored::Created;
            }
        };
        let found = async {
            proof::tables::begin_snapshot(&client).await?;
            let found = proof::baseline::take(&client, &manifest.excluded_schemas).await?;
            client.batch_execute("COMMIT").await.map_err(DbError::query("end the proof's snapshot"))?;
            Ok::<_, BackupError>(found)
        }
        .await;
        clock.stop(report, "proof");
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
        clock.stop(report, "amcheck");
        match checked {
            Ok(checked) => {
                report.indexes_checked = checked.indexes_checked;
                report.differences.extend(checked.differences);
            }
            Err(error) => report.fail(error),
        }
        Restored::Created
    }

    /// Drops the scratch database, or empties a given target: whatever the drill created.
    async fn clean_up(&self, target: &Target, restored: Restored, report: &mut VerifyReport) {
        if restored == Restored::Nothing || target.kind == TargetKind::Existing {
            return;
        }
        let clock = PhaseClock::start();
        let cleaned = match target.kind {
            TargetKind::Scratch => match self.db.open_another("verify").await {
                Ok(live) => target::drop_scratch(&live, &target.database).await,
                Err(error) => Err(error),
            },
            TargetKind::Given => match db::connect_config(target.config.clone(), self.db.node_id(), "verify").await {
                Ok(client) => target::empty_target(&client).await,
                Err(error) => Err(error),
            },
            TargetKind::Existing => Ok(()),
        };
        clock.stop(report, "cleanup");
        match cleaned {
            Ok(()) => report.kept = false,
            Err(error) => {
                report.kept = true;
                report.fail(format!(
                    "the drill ran but its database {} could not be removed ({error}); drop it by hand",
                    target.described
                ));
            }
        }
    }

    /// The inventory's last_verified_at and the audit event; failures here are logged, the
    /// report stands.
    async fn record_verification(&self, report: &VerifyReport) {
        match self.db.get().await {
            Ok(client) => {
                if let Err(error) = inventory::record_verification(
                    &*client,
                    &report.backup_id,
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
            "ha.backup.verified",
            serde_json::json!({
                "backup_id": report.backup_id,
                "outcome": report.outcome.as_str(),
                "target": report.target,
                "kept": report.kept,
                "rto_ms": report.rto_ms,
                "phases": report.phases,
                "tables_checked": report.tables_checked,
                "objects_checked": report.objects_checked,
                "indexes_checked": report.indexes_checked,
                "differences": report.differences.len(),
                "error": report.error,
            }),
        );
        tracing::info!(backup_id = %report.backup_id, outcome = report.outcome.as_str(), rto_ms = report.rto_ms, "backup verified");
    }
}

/// How far a drill got with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restored {
    /// Nothing was created (preparing the target failed, or it was refused).
    Nothing,
    /// The scratch database exists, or the given target may hold restored objects.
    Created,
}
