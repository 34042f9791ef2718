//! The report schema shared by every validation slice (`<slice>-report.json`), and outcome rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skip,
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckStatus::Pass => "PASS",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "SKIP",
        })
    }
}

/// A slice's overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    Partial,
    Fail,
    Skip,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "PASS",
            Outcome::Partial => "PARTIAL",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `VAL15-06`
    pub id: String,
    /// `restore_correct`
    pub name: String,
    pub status: CheckStatus,
    /// What was measured (`restore_ms=812`, `small=100 medium=1000`), if anything.
    pub value: Option<String>,
    /// What it had to meet, in the seed's words.
    pub threshold: String,
    /// Why it passed or failed, and which evidence file shows it.
    pub detail: String,
}

/// One measurement: a single value or a series (one value per repetition, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Metric {
    Value(u64),
    Series(Vec<u64>),
}

impl From<u64> for Metric {
    fn from(value: u64) -> Self {
        Metric::Value(value)
    }
}

impl From<Vec<u64>> for Metric {
    fn from(values: Vec<u64>) -> Self {
        Metric::Series(values)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Value(value) => write!(f, "{value}"),
            Metric::Series(values) => {
                let values: Vec<String> = values.iter().map(u64::to_string).collect();
                write!(f, "[{}]", values.join(", "))
            }
        }
    }
}

/// `<slice>-report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// `val15`
    pub slice: String,
    pub title: String,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub run_id: String,
    /// `docker`, `process`, or `none` when the slice was skipped.
    pub backend: String,
    /// Where the nodes' leader lease lived: `row` (a row in the database) or `etcd`. Reports
    /// written before the etcd store existed read as `row`.
    #[serde(default = "row_lease")]
    pub lease_store: String,
    pub server_version: Option<String>,
    /// The node the slice drove, as `node-id@address`.
    pub node: Option<String>,
    pub checks: Vec<Check>,
    /// Named measurements, in milliseconds unless the name says otherwise.
    pub metrics: BTreeMap<String, Metric>,
    #[serde(flatten)]
    pub counts: Tally,
    pub outcome: Outcome,
    /// Set when outcome is SKIP: why the slice could not run.
    pub skip_reason: Option<String>,
    /// The raw evidence files of the bundle, relative to the slice directory.
    pub files: Vec<String>,
}

/// How many of a report's checks passed, failed and were skipped, of how many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
    pub total: usize,
}

impl Tally {
    pub fn of(checks: &[Check]) -> Self {
        let count = |status: CheckStatus| checks.iter().filter(|c| c.status == status).count();
        Self {
            pass: count(CheckStatus::Pass),
            fail: count(CheckStatus::Fail),
            skip: count(CheckStatus::Skip),
            total: checks.len(),
        }
    }
}

pub const SCHEMA_VERSION: u32 = 1;

fn row_lease() -> String {
    "row".into()
}

impl Report {
    /// An empty report of `slice` for `run_id`, generated now: no backend, no checks, SKIP
    /// until the checks are tallied.
    pub fn new(slice: &str, title: &str, run_id: &str) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            slice: slice.into(),
            title: title.into(),
            generated_at: OffsetDateTime::now_utc(),
            run_id: run_id.into(),
            backend: "none".into(),
            lease_store: row_lease(),
            server_version: None,
            node: None,
            checks: Vec::new(),
            metrics: BTreeMap::new(),
            counts: Tally::default(),
            outcome: Outcome::Skip,
            skip_reason: None,
            files: Vec::new(),
        }
    }

    /// Fills the counts from `checks` and takes the outcome from `rule`.
    pub fn tally(mut self, rule: impl Fn(&[Check]) -> Outcome) -> Self {
        self.counts = Tally::of(&self.checks);
        self.outcome = if self.skip_reason.is_some() {
            Outcome::Skip
        } else {
            rule(&self.checks)
        };
        self
    }

    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

fn passed(checks: &[Check], id: &str) -> bool {
    checks.iter().any(|c| c.id == id && c.status == CheckStatus::Pass)
}

/// VAL15's rules (docs/VALIDATION.md): PASS when all ten pass; PARTIAL when not all
/// do but 01, 05, 06 and 07 do (file produced, both timing bounds, restore correct); FAIL
/// otherwise, which includes every run where 06 or 01 failed. The seed leaves runs where 01 and
/// 06 pass but a timing bound fails unclassified; they are FAIL here, the safe reading.
pub fn val15_outcome(checks: &[Check]) -> Outcome {
    if !checks.is_empty() && checks.iter().all(|c| c.status == CheckStatus::Pass) {
        Outcome::Pass
    } else if ["VAL15-01", "VAL15-05", "VAL15-06", "VAL15-07"]
        .iter()
        .all(|id| passed(checks, id))
    {
        Outcome::Partial
    } else {
        Outcome::Fail
    }
}

/// The rule of the HA slices (VAL13, VAL16, VAL17): PASS when all ten pass, FAIL when any
/// fails. Every check guards either safety (one writer, no lost or stale write, writes blocked
/// without the database) or a timing bound, so none is optional; a check whose fault could not
/// be made on the machine (SKIP) leaves the slice PARTIAL, never PASS.
pub fn all_checks_outcome(checks: &[Check]) -> Outcome {
    if checks.is_empty() || checks.iter().any(|c| c.status == CheckStatus::Fail) {
        Outcome::Fail
    } else if checks.iter().all(|c| c.status == CheckStatus::Pass) {
        Outcome::Pass
    } else {
        Outcome::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(failing: &[&str]) -> Vec<Check> {
        (1..=10)
            .map(|n| {
                let id = format!("VAL15-{n:02}");
                let status = if failing.contains(&id.as_str()) {
                    CheckStatus::Fail
                } else {
                    CheckStatus::Pass
                };
                Check {
                    id,
                    name: "n".into(),
                    status,
                    value: None,
                    threshold: "t".into(),
                    detail: "d".into(),
                }
            })
            .collect()
    }

    #[test]
    fn all_ten_passing_is_pass() {
        assert_eq!(val15_outcome(&checks(&[])), Outcome::Pass);
    }

    #[test]
    fn a_failed_gate_or_audit_with_core_checks_passing_is_partial() {
        assert_eq!(val15_outcome(&checks(&["VAL15-09"])), Outcome::Partial);
        assert_eq!(
            val15_outcome(&checks(&["VAL15-02", "VAL15-03", "VAL15-04", "VAL15-08", "VAL15-10"])),
            Outcome::Partial
        );
    }

    #[test]
    fn a_wrong_restore_or_missing_file_is_fail() {
        assert_eq!(val15_outcome(&checks(&["VAL15-06"])), Outcome::Fail);
        assert_eq!(val15_outcome(&checks(&["VAL15-01"])), Outcome::Fail);
    }

    #[test]
    fn a_broken_timing_bound_is_fail() {
        assert_eq!(val15_outcome(&checks(&["VAL15-07"])), Outcome::Fail);
    }

    #[test]
    fn no_checks_is_not_a_pass() {
        assert_eq!(val15_outcome(&[]), Outcome::Fail);
        assert_eq!(all_checks_outcome(&[]), Outcome::Fail);
    }

    #[test]
    fn the_ha_slices_pass_only_with_all_ten() {
        let val13 = |failing: &[&str]| {
            let mut all = checks(failing);
            for check in &mut all {
                check.id = check.id.replace("VAL15", "VAL13");
            }
            all_checks_outcome(&all)
        };
        assert_eq!(val13(&[]), Outcome::Pass);
        assert_eq!(val13(&["VAL15-07"]), Outcome::Fail);
        let mut one_skipped = checks(&[]);
        one_skipped[7].status = CheckStatus::Skip;
        assert_eq!(all_checks_outcome(&one_skipped), Outcome::Partial);
        one_skipped[2].status = CheckStatus::Fail;
        assert_eq!(all_checks_outcome(&one_skipped), Outcome::Fail);
    }

    #[test]
    fn a_series_metric_reads_back_as_a_series() {
        let metrics: BTreeMap<String, Metric> =
            serde_json::from_str(r#"{"restore_ms": 90, "rapid_cycle_ms": [120, 95, 130]}"#).unwrap();
        assert_eq!(metrics["restore_ms"], Metric::Value(90));
        assert_eq!(metrics["rapid_cycle_ms"], Metric::Series(vec![120, 95, 130]));
        assert_eq!(metrics["rapid_cycle_ms"].to_string(), "[120, 95, 130]");
    }
}
