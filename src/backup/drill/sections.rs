//! Replays an archive into a scratch database one pg_restore section at a time (pre-data,
//! data, post-data), so each is timed on its own: the schema / data / index phases of a recovery-time breakdown.

use std::path::Path;

use crate::backup::{
    drill::DrillPhase,
    pgtools::{run_to_end, PgTools},
    BackupError,
};

/// pg_restore's sections, in order, with the phase each is reported under.
pub const SECTIONS: [(&str, DrillPhase); 3] = [
    ("pre-data", DrillPhase::PreData),
    ("data", DrillPhase::Data),
    ("post-data", DrillPhase::PostData),
];

/// Restores one section of `archive` into the database `tools` names. Blocking.
pub fn restore_section(tools: &PgTools, archive: &Path, section: &str) -> Result<(), BackupError> {
    let mut command = tools.command("pg_restore");
    command
        .args(["--exit-on-error", "--no-password"])
        .arg(format!("--section={section}"))
        .arg(format!("--dbname={}", tools.dbname_conninfo()))
        .arg(archive);
    let tool = match section {
        "pre-data" => "pg_restore --section=pre-data",
        "data" => "pg_restore --section=data",
        _ => "pg_restore --section=post-data",
    };
    run_to_end(command, tool).map(|_| ())
}
