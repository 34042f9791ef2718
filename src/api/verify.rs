//! The restore drill's request and report (`POST /v1/ha/backups/{id|latest}/verify`).

use serde::{Deserialize, Serialize};

use crate::{
    api::{Difference, ProofOutcome},
    ident::BackupId,
};

/// What `POST /v1/ha/backups/{id|latest}/verify` accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Create the scratch database on this server (the URL's database is only connected to)
    /// instead of the node's; with `proof_only`, the database to prove.
    #[serde(default)]
    pub target_url: Option<String>,
    /// Leave the restored database in place for inspection.
    #[serde(default)]
    pub keep: bool,
    /// Restore nothing: prove the database at `target_url`, which already holds the restore.
    #[serde(default)]
    pub proof_only: bool,
}

/// `proven`: restored, identical to the baseline, every btree index sound. `differences`:
/// the backup or its restore does not hold what the baseline says (each one named).
/// `not_run`: the drill could not finish, so it proves nothing (`error` says why).
pub type DrillOutcome = ProofOutcome;

/// The steps of a drill, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillPhase {
    ArchiveCheck,
    CreateDatabase,
    PreData,
    Data,
    PostData,
    Proof,
    Amcheck,
    Cleanup,
}

impl DrillPhase {
    /// Every phase, in the order a drill runs them.
    pub const ALL: [DrillPhase; 8] = [
        DrillPhase::ArchiveCheck,
        DrillPhase::CreateDatabase,
        DrillPhase::PreData,
        DrillPhase::Data,
        DrillPhase::PostData,
        DrillPhase::Proof,
        DrillPhase::Amcheck,
        DrillPhase::Cleanup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DrillPhase::ArchiveCheck => "archive_check",
            DrillPhase::CreateDatabase => "create_database",
            DrillPhase::PreData => "pre_data",
            DrillPhase::Data => "data",
            DrillPhase::PostData => "post_data",
            DrillPhase::Proof => "proof",
            DrillPhase::Amcheck => "amcheck",
            DrillPhase::Cleanup => "cleanup",
        }
    }
}

/// One timed step of the drill: the recovery-time breakdown an operator reports (schema, data, indexes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub name: DrillPhase,
    pub ms: u64,
}

/// The proof report of one drill (text and JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub backup_id: BackupId,
    pub outcome: DrillOutcome,
    /// Where the drill restored: `postgresql://user@host:port/database`, no credentials.
    pub target: String,
    /// The database restored into (the scratch database's name, or the proven one's).
    pub database: String,
    /// True when that database exists after the drill (`--keep`, or a `--proof-only` target).
    pub kept: bool,
    /// False for a manifest from before the seal (version 2): its baseline was trusted as read.
    pub manifest_sealed: bool,
    pub phases: Vec<Phase>,
    /// Archive check through post-data: what restoring this backup takes (the recovery time objective,
    /// without the proof and amcheck that follow). None when nothing was restored.
    pub rto_ms: Option<u64>,
    pub tables_checked: usize,
    pub objects_checked: usize,
    pub indexes_checked: usize,
    pub differences: Vec<Difference>,
    /// Why the drill did not run to its end (outcome `not_run`).
    pub error: Option<String>,
    /// Scratch databases earlier drills abandoned (their node died), dropped by this one.
    #[serde(default)]
    pub abandoned_dropped: Vec<String>,
    /// For an encrypted backup, the fingerprint of the key that decrypted it: the drill proves
    /// this node's key opens the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrypted_with: Option<String>,
}

impl VerifyReport {
    pub fn new(backup_id: &BackupId, target: String, database: String) -> Self {
        Self {
            backup_id: backup_id.clone(),
            outcome: DrillOutcome::NotRun,
            target,
            database,
            kept: false,
            manifest_sealed: false,
            phases: Vec::new(),
            rto_ms: None,
            tables_checked: 0,
            objects_checked: 0,
            indexes_checked: 0,
            differences: Vec::new(),
            decrypted_with: None,
            error: None,
            abandoned_dropped: Vec::new(),
        }
    }

    /// Ends the drill as not run, keeping the first reason.
    pub fn fail(&mut self, error: impl std::fmt::Display) {
        self.outcome = DrillOutcome::NotRun;
        self.error.get_or_insert_with(|| error.to_string());
    }

    /// The outcome once every step ran: proven unless something differs.
    pub fn conclude(&mut self) {
        if self.error.is_none() {
            self.outcome = if self.differences.is_empty() {
                DrillOutcome::Proven
            } else {
                DrillOutcome::Differences
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_outcomes_serialise_as_their_names() {
        for phase in DrillPhase::ALL {
            assert_eq!(
                serde_json::to_string(&phase).unwrap(),
                format!("\"{}\"", phase.as_str())
            );
        }
        for outcome in [ProofOutcome::Proven, ProofOutcome::Differences, ProofOutcome::NotRun] {
            assert_eq!(
                serde_json::to_string(&outcome).unwrap(),
                format!("\"{}\"", outcome.as_str())
            );
        }
        let phase = Phase {
            name: DrillPhase::PreData,
            ms: 3,
        };
        assert_eq!(serde_json::to_string(&phase).unwrap(), r#"{"name":"pre_data","ms":3}"#);
    }
}
