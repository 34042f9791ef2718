//! `autonomy lab report` and `lab verify-evidence`: the VAL26 proof report of an evidence
//! directory, and whether the files behind it are still the ones it read.

use std::path::Path;

use crate::{
    cli::{
        args::{LabCommand, OutputFormat},
        run::CliError,
    },
    evidence::val26::{self, Val26Error},
    exit::Exit,
};

pub fn run(command: LabCommand, format: OutputFormat) -> Result<String, CliError> {
    match command {
        LabCommand::Report { evidence_dir, force } => report(&evidence_dir, force, format),
        LabCommand::VerifyEvidence { evidence_dir } => verify(&evidence_dir, format),
    }
}

/// A wrong path or a missing VAL26 report is bad input; a report or evidence that no longer
/// match is an integrity failure; an I/O failure is neither.
pub fn exit(error: &Val26Error) -> Exit {
    match error {
        Val26Error::NotADirectory(_)
        | Val26Error::NoReports(_)
        | Val26Error::UnsafeOutput(_)
        | Val26Error::NoVal26Report { .. } => Exit::Usage,
        Val26Error::NotAVal26Report { .. } | Val26Error::EvidenceChanged { .. } => Exit::Integrity,
        Val26Error::Write { .. } => Exit::Internal,
    }
}

fn report(dir: &Path, force: bool, format: OutputFormat) -> Result<String, CliError> {
    let mut val26 = val26::generate(dir, time::OffsetDateTime::now_utc())?;
    let html = val26::write(dir, &mut val26, force)?;
    let output = match format {
        OutputFormat::Json => serde_json::to_string_pretty(&val26).expect("a VAL26 report always serialises"),
        OutputFormat::Text => format!(
            "{}\nReports: {} (txt, json, html)\nHTML report: {}",
            val26::text::render(&val26).trim_end(),
            html.parent().unwrap_or(dir).display(),
            html.display()
        ),
    };
    if val26.readiness.design_partner {
        return Ok(output);
    }
    Err(CliError::Incomplete {
        output,
        reason: format!(
            "verdict {}: {}",
            val26.verdict,
            val26.readiness.design_partner_gaps.join("; ")
        ),
        exit: Exit::NotReady,
    })
}

fn verify(dir: &Path, format: OutputFormat) -> Result<String, CliError> {
    let (checked, mismatches) = val26::verify(dir, time::OffsetDateTime::now_utc())?;
    let output = match format {
        OutputFormat::Json => serde_json::to_string_pretty(&serde_json::json!({
            "evidence_dir": dir.display().to_string(),
            "checked": checked,
            "mismatches": mismatches,
        }))
        .expect("a verification always serialises"),
        OutputFormat::Text if mismatches.is_empty() => {
            format!(
                "verified: all {checked} files under {} match val26-report.json, and so does its verdict",
                dir.display()
            )
        }
        OutputFormat::Text => mismatches
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if mismatches.is_empty() {
        return Ok(output);
    }
    Err(CliError::Incomplete {
        output,
        reason: format!(
            "{} of the evidence files under {} differ from what val26-report.json recorded; the report no longer describes this evidence",
            mismatches.len(),
            dir.display()
        ),
        exit: Exit::Integrity,
    })
}
