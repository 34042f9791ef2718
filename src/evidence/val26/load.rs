//! Finds each slice's report in an evidence directory; an absent or unreadable one is MISSING
//! with the reason, never an abort.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::SLICES;
use crate::evidence::{report::SCHEMA_VERSION, Report};

/// What VAL26 found for one slice.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "coverage", rename_all = "UPPERCASE")]
pub enum Coverage {
    Found { report: Box<Report> },
    Missing { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SliceEvidence {
    pub slice: String,
    pub name: String,
    /// `<dir>/<slice>/<slice>-report.json`
    pub path: PathBuf,
    #[serde(flatten)]
    pub coverage: Coverage,
}

impl SliceEvidence {
    pub fn report(&self) -> Option<&Report> {
        match &self.coverage {
            Coverage::Found { report } => Some(report),
            Coverage::Missing { .. } => None,
        }
    }
}

/// The reason given when a slice's report file does not exist.
pub const NO_REPORT: &str = "no report file";

/// Reads the five reports under `dir`, in slice order.
pub fn load(dir: &Path) -> Vec<SliceEvidence> {
    SLICES
        .iter()
        .map(|(slice, name)| {
            let path = dir.join(slice).join(format!("{slice}-report.json"));
            let coverage = match read(&path, slice) {
                Ok(report) => Coverage::Found {
                    report: Box::new(report),
                },
                Err(reason) => Coverage::Missing { reason },
            };
            SliceEvidence {
                slice: (*slice).to_owned(),
                name: (*name).to_owned(),
                path,
                coverage,
            }
        })
        .collect()
}

fn read(path: &Path, slice: &str) -> Result<Report, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(NO_REPORT.into()),
        Err(e) => return Err(format!("cannot read the report: {e}")),
    };
    let report: Report = serde_json::from_str(&text).map_err(|e| format!("schema mismatch: {e}"))?;
    if report.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "schema mismatch: schema_version {} (this generator reads {SCHEMA_VERSION})",
            report.schema_version
        ));
    }
    if report.slice != slice {
        return Err(format!("schema mismatch: the report is of slice `{}`", report.slice));
    }
    Ok(report)
}
