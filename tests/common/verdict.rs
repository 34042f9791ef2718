//! Turns a slice's measured verdicts into report checks, the same way for every slice.

use autonomy::evidence::{Check, CheckStatus};

/// What a check measured: passed or not, the value, and where the evidence is.
pub type Verdict = (bool, Option<String>, String);

/// Decides each check of one slice run.
pub struct Judge {
    /// Set when the lab could not run: every check is SKIP with this reason.
    skip_reason: Option<String>,
    /// Why the checks without a verdict were not reached.
    not_reached: String,
}

impl Judge {
    pub fn new(skip_reason: Option<&str>, aborted: Option<&str>) -> Self {
        Self {
            skip_reason: skip_reason.map(str::to_owned),
            not_reached: aborted.map_or_else(|| "not reached".to_owned(), |r| format!("not reached: {r}")),
        }
    }

    /// SKIP when the lab was skipped, FAIL when the phases never got to measure it, else the
    /// verdict's.
    pub fn check(&self, id: &str, name: &str, threshold: &str, verdict: Option<Verdict>) -> Check {
        let (status, value, detail) = match (&self.skip_reason, verdict) {
            (Some(reason), _) => (CheckStatus::Skip, None, format!("skipped: {reason}")),
            (None, None) => (CheckStatus::Fail, None, self.not_reached.clone()),
            (None, Some((ok, value, detail))) => {
                (if ok { CheckStatus::Pass } else { CheckStatus::Fail }, value, detail)
            }
        };
        Check {
            id: id.into(),
            name: name.into(),
            status,
            value,
            threshold: threshold.into(),
            detail,
        }
    }
}
