//! The manifest written beside each archive, and the inventory record shown to operators.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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

/// How an archive is stored; recorded now so encryption and object stores fit later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    pub kind: String,
    pub format: String,
    pub encryption: String,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            format: "pg_dump_custom".into(),
            encryption: "none".into(),
        }
    }
}

/// `<backup-dir>/<id>.json`: the catalog of record for one completed archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub backup_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
    pub database: String,
    pub server_version: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub duration_ms: u64,
    pub status: BackupStatus,
    pub node_id: String,
    pub epoch: i64,
    pub excluded_schemas: Vec<String>,
    pub storage: Storage,
    /// What the database held in the dump's snapshot (manifest_version 2); absent in older
    /// manifests, whose restores then report no proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::backup::proof::Baseline>,
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
}

impl From<&Manifest> for BackupRecord {
    fn from(m: &Manifest) -> Self {
        Self {
            backup_id: m.backup_id.clone(),
            status: m.status,
            created_at: m.created_at,
            completed_at: Some(m.completed_at),
            database: m.database.clone(),
            server_version: Some(m.server_version.clone()),
            size_bytes: Some(m.size_bytes),
            checksum: Some(m.sha256.clone()),
            duration_ms: Some(m.duration_ms),
            node_id: m.node_id.clone(),
            epoch: m.epoch,
            error: None,
        }
    }
}

/// The answer to a restore request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    pub backup_id: String,
    pub status: String,
    pub checksum: String,
    pub restore_ms: u64,
    pub terminated_sessions: i64,
    /// The restored database compared with the backup's baseline; None for a backup made
    /// without one.
    #[serde(default)]
    pub proof: Option<crate::backup::proof::ProofReport>,
}
