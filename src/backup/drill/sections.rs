//! Replays an archive into a scratch database one pg_restore section at a time (pre-data,
//! data, post-data), so each is timed on its own: seed 001's schema / data / index phases.

use std::{path::Path, process::Stdio};

use crate::backup::{
    pgtools::{stderr_tail, PgTools},
    BackupError,
};

/// pg_restore's sections, in order, with the phase name each is reported under.
pub const SECTIONS: [(&str, &str); 3] = [("pre-data", "pre_data"), ("data", "data"), ("post-data", "post_data")];

/// Restores one section of `archive` into the database `tools` names. Blocking.
pub fn restore_section(tools: &PgTools, archive: &Path, section: &str) -> Result<(), BackupError> {
    let output = tools
        .command("pg_restore")
        .args(["--exit-on-error", "--no-password"])
        .arg(format!("--section={section}"))
        .arg(format!("--dbname={}", tools.dbname_conninfo()))
        .arg(archive)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| BackupError::Spawn {
            tool: "pg_restore",
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(BackupError::Tool {
        tool: "pg_restore",
        status: output.status.to_string(),
        stderr: format!("section {section}: {}", stderr_tail(&output.stderr, 2000)),
    })
}
