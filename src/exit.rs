//! The CLI's documented exit codes, one per kind of failure an operator acts on differently.

use std::process::ExitCode;

/// Why the CLI stopped. The numbers are part of the interface (README "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// An unexpected failure (a bug, or an error no other code covers).
    Internal = 1,
    /// Bad command-line input: unknown flag, malformed id, a missing `--confirm`.
    Usage = 2,
    /// The node could not be reached (not running, wrong `--server`).
    Unreachable = 3,
    /// The node refused the API token (missing or wrong).
    Unauthorized = 4,
    /// The named thing does not exist (unknown backup id).
    NotFound = 5,
    /// The node refused in its current state (not leader, not in maintenance mode, busy).
    Refused = 6,
    /// An integrity check failed (archive checksum does not match its manifest).
    Integrity = 7,
    /// The operation ran and failed (pg_dump, pg_restore or the database reported an error).
    OperationFailed = 8,
    /// The evidence assessed does not support the readiness claim (VAL26 verdict NOT READY).
    NotReady = 9,
    /// A restore committed, but its proof found differences or could not run: the database
    /// is not shown to be what was backed up.
    RestoreUnproven = 10,
    /// The node's audit store failed (`audit_io`): a write failed and the operation was refused
    /// (or, if it had already committed, the message says so), or the store could not be read.
    AuditIo = 11,
    /// An encrypted backup cannot be opened by this node: it has no decryption key, its key is
    /// not one of the backup's recipients, or the key did not decrypt it. Nothing was touched.
    KeyUnusable = 12,
}

impl Exit {
    /// `ha backup verify` speaks the three codes restore-verification schedulers expect (README, exit codes), for schedulers that tell a bad backup
    /// from a drill that did not run: 0 proven, 1 differences found, 2 could not run.
    pub const DIFFERENCES_FOUND: Exit = Exit::Internal;
    pub const DRILL_NOT_RUN: Exit = Exit::Usage;

    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}
