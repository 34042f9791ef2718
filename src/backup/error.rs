//! Everything a backup or restore can fail with, each variant saying what to do next.

use thiserror::Error;

use crate::{db::DbError, ident::InvalidIdent};

#[derive(Debug, Error)]
pub enum BackupError {
    #[error(transparent)]
    InvalidId(#[from] InvalidIdent),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no backup `{0}` in the repository; `autonomy ha backup list` shows the ids")]
    NotFound(String),
    #[error("this node is not the leader (leader: {leader}); send the request to the leader")]
    NotLeader { leader: String },
    #[error("restore refused: node `{0}` is not in maintenance mode; restart it with --maintenance-mode and stop application traffic first")]
    NotInMaintenance(String),
    #[error("restore refused: the request did not confirm it; pass --confirm (the restore replaces the database's contents)")]
    NotConfirmed,
    #[error("another backup or restore is running on this node; retry when it has finished")]
    Busy,
    #[error("archive of backup `{backup_id}` does not match its manifest (expected sha256 {expected}, found {actual}); the database was not touched. Restore another backup")]
    ChecksumMismatch {
        backup_id: String,
        expected: String,
        actual: String,
    },
    #[error("the manifest of backup `{backup_id}` cannot be trusted: {reason}; the database was not touched. Restore another backup")]
    ManifestUntrusted {
        backup_id: String,
        reason: crate::backup::manifest::ManifestError,
    },
    #[error("backup `{backup_id}` is encrypted to {}; {problem}. The database was not touched", recipients.join(", "))]
    Undecryptable {
        backup_id: String,
        recipients: Vec<String>,
        problem: KeyProblem,
    },
    #[error("backup `{backup_id}` decrypted to bytes that do not match its manifest (expected plaintext sha256 {expected}, found {actual}); the database was not touched. Restore another backup")]
    PlaintextMismatch {
        backup_id: String,
        expected: String,
        actual: String,
    },
    #[error("backup `{backup_id}` is stored with encryption `{found}`, which this version cannot open; the database was not touched. Restore it with the version that wrote it")]
    UnknownEncryption { backup_id: String, found: String },
    #[error("the archive of backup `{0}` is missing from the repository; the database was not touched")]
    ArchiveMissing(String),
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: &'static str,
        status: String,
        stderr: String,
    },
    #[error("this node lost the leader lease (epoch {0}) during the operation; it stopped before its next protected write. Retry on the current leader")]
    Fenced(i64),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("repository I/O failed on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is {kind}, not a regular file: something other than a backup sits in the repository; nothing was read or touched. Remove it, or restore another backup", path.display())]
    NotRegularFile {
        path: std::path::PathBuf,
        kind: &'static str,
    },
    #[error("{what}: {source}. The audit store must be writable (check the node's --audit-dir: disk space, permissions, immutable flags)")]
    Audit {
        /// What was or was not done, for the operator.
        what: String,
        #[source]
        source: crate::audit::AuditError,
    },
    #[error("the restore proof could not be computed: {0}")]
    Proof(String),
    #[error("cannot start {tool}: {source}; is PostgreSQL's client installed (or --pg-bin-dir set)?")]
    Spawn {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Why this node cannot decrypt an encrypted backup.
#[derive(Debug, Error)]
pub enum KeyProblem {
    #[error("this node has no decryption key: start it with --backup-decrypt-key and the secret key of one of them")]
    NoKey,
    #[error(
        "this node's key {0} is not one of them: start it with --backup-decrypt-key and the secret key of a recipient"
    )]
    NotRecipient(String),
    #[error("key {key} did not decrypt it ({reason})")]
    Failed { key: String, reason: String },
}

impl BackupError {
    /// For a tool that could not be started or waited for.
    pub fn spawn(tool: &'static str) -> impl FnOnce(std::io::Error) -> BackupError {
        move |source| BackupError::Spawn { tool, source }
    }

    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
        move |source| BackupError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
