//! The backup and restore bodies of the node API: a backup's record, a restore's request and
//! answer, and the proof that answer carries.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ident::BackupId;

/// Where a backup stands; a manifest exists only for completed backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Running,
    Completed,
    Failed,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Running => "running",
            BackupStatus::Completed => "completed",
            BackupStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "running" => Some(BackupStatus::Running),
            "completed" => Some(BackupStatus::Completed),
            "failed" => Some(BackupStatus::Failed),
            _ => None,
        }
    }
}

/// One row of `autonomy ha backup list`, from the inventory table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub backup_id: String,
    pub status: BackupStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    pub database: String,
    pub server_version: Option<String>,
    pub size_bytes: Option<u64>,
    /// SHA-256 of the archive, lowercase hex. Named `checksum` in CLI output, as operators know it.
    pub checksum: Option<String>,
    pub duration_ms: Option<u64>,
    pub node_id: String,
    pub epoch: i64,
    pub error: Option<String>,
    /// When `ha backup verify` last ran a drill of this backup, and what it found.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_verified_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub last_verify_outcome: Option<String>,
    /// The manifest format it was written with (None for rows indexed before it was recorded).
    #[serde(default)]
    pub manifest_version: Option<u32>,
    /// When it was last restored (committed), and what that restore's proof found:
    /// proven, differences, not_run, no_baseline; `committed_unproven` while (or if) the proof
    /// never finished, `interrupted_after_commit` once a restarted node found it so.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_restored_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub last_restore_outcome: Option<String>,
    /// Whether a completed backup's archive and manifest are in the repository (a stat each,
    /// when listed by the leader's repository); None when not looked at.
    #[serde(default)]
    pub files: Option<FileState>,
}

/// The answer of `POST /v1/ha/backups/reindex`: the inventory rebuilt from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReindexReport {
    /// Manifest entries in the store (sound or not).
    pub manifests: usize,
    /// Inventory rows added for manifests the inventory lacked.
    pub added: u64,
    /// What the store holds that is not a backup's (another system wrote it): never read,
    /// never removed.
    pub foreign_objects: Vec<String>,
}

/// The body of `POST /v1/ha/backups/{id}/restore`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Must be true: the server checks the gate too, so a client that skips it is still refused.
    #[serde(default)]
    pub confirm: bool,
    /// Accept a manifest older than the sealed format (version 1 or 2), which nothing proves
    /// unchanged. It must still agree with the inventory's record.
    #[serde(default)]
    pub allow_unsealed_manifest: bool,
}

/// How a committed restore ended: whether the database now matches the backup's baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStatus {
    /// Committed and proven identical to the baseline (or the backup has none to prove).
    Restored,
    /// Committed, but the proof names differences: the database is not what was backed up.
    RestoredWithDifferences,
    /// Committed, but the proof could not run: nothing shows the database is what was backed up.
    RestoredUnproven,
}

impl RestoreStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreStatus::Restored => "restored",
            RestoreStatus::RestoredWithDifferences => "restored_with_differences",
            RestoreStatus::RestoredUnproven => "restored_unproven",
        }
    }
}

/// The answer to a restore request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    pub backup_id: BackupId,
    /// Names this restore in the audit (`ha.backup.restore_started` …) and the inventory.
    #[serde(default)]
    pub restore_id: String,
    pub status: RestoreStatus,
    pub checksum: String,
    pub restore_ms: u64,
    pub terminated_sessions: i64,
    /// The restored database compared with the backup's baseline; None for a backup made
    /// without one.
    #[serde(default)]
    pub proof: Option<ProofReport>,
}

/// Whether a completed backup's files are where its record says (a stat, not a rehash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Present,
    ArchiveMissing,
    ManifestMissing,
    BothMissing,
    /// Something other than a regular file sits where the archive or manifest should be.
    NotRegular,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Present => "present",
            FileState::ArchiveMissing => "archive_missing",
            FileState::ManifestMissing => "manifest_missing",
            FileState::BothMissing => "archive_and_manifest_missing",
            FileState::NotRegular => "not_a_regular_file",
        }
    }
}

/// One object that differs: what the baseline expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// `table public.accounts`
    pub object: String,
    pub expected: String,
    pub found: String,
}

/// What a proof found, a restore's or a drill's: `proven` (nothing differs from the baseline),
/// `differences` (each one named), or `not_run` (it could not finish, so it proves nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofOutcome {
    Proven,
    Differences,
    NotRun,
}

impl ProofOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ProofOutcome::Proven => "proven",
            ProofOutcome::Differences => "differences",
            ProofOutcome::NotRun => "not_run",
        }
    }
}

/// The proof of one restore: every table of the baseline compared with the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofReport {
    /// `not_run` comes with `error`.
    pub outcome: ProofOutcome,
    pub tables_checked: usize,
    #[serde(default)]
    pub objects_checked: usize,
    pub differences: Vec<Difference>,
    pub error: Option<String>,
    pub proof_ms: u64,
}
