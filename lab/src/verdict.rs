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

impl Judge {
    /// SKIP for one check whose fault cannot be made on this machine (the phases fail instead
    /// under AUTONOMY_LAB_REQUIRE=1, so CI never skips it).
    pub fn skip(&self, id: &str, name: &str, threshold: &str, reason: &str) -> Check {
        let mut check = self.check(id, name, threshold, Some((false, None, String::new())));
        if self.skip_reason.is_none() {
            check.status = CheckStatus::Skip;
            check.detail = format!("skipped: {reason}");
        }
        check
    }
}

/// True when no backend could run: the SKIP is in the report and printed here. Under
/// AUTONOMY_LAB_REQUIRE=1 a skipped lab fails the test instead.
#[track_caller]
pub fn skipped(report: &autonomy::evidence::Report, evidence_dir: &std::path::Path, test: &str) -> bool {
    if report.outcome != autonomy::evidence::Outcome::Skip {
        return false;
    }
    let reason = report.skip_reason.clone().unwrap_or_default();
    assert!(
        !super::run::lab_required(),
        "AUTONOMY_LAB_REQUIRE=1 but the lab was skipped: {reason}"
    );
    eprintln!("SKIP {test}: {reason} (recorded in {})", evidence_dir.display());
    true
}

/// Asserts that check `id` passed, explaining any failure in full (what, value, threshold,
/// where the evidence is, and why the phases stopped if they did).
#[track_caller]
pub fn assert_check_passes(
    report: &autonomy::evidence::Report,
    evidence_dir: &std::path::Path,
    aborted: Option<&str>,
    id: &str,
) {
    if skipped(report, evidence_dir, id) {
        return;
    }
    let check = report
        .check(id)
        .unwrap_or_else(|| panic!("the report has no check {id}"));
    if check.status == CheckStatus::Skip && !super::run::lab_required() {
        eprintln!("SKIP {id}: {} (recorded in {})", check.detail, evidence_dir.display());
        return;
    }
    assert_eq!(
        check.status,
        CheckStatus::Pass,
        "{id} {} failed: {}\nvalue: {:?}\nthreshold: {}\nevidence: {}\naborted: {aborted:?}",
        check.name,
        check.detail,
        check.value,
        check.threshold,
        evidence_dir.display(),
    );
}

/// A protected write as stored: its id, the epoch it committed at, the node that wrote it.
pub trait FencedRow {
    fn id(&self) -> i64;
    fn epoch(&self) -> i64;
    fn leader_id(&self) -> &str;
}

/// Rows whose epoch was not held by the node that wrote them, or that committed after a row
/// of a later epoch (ids are taken inside the fenced transaction, so in id order epochs never
/// fall), each with why. `history` is the lease history: (epoch, holder).
pub fn misattributed_rows<'a, R: FencedRow>(rows: &'a [R], history: &[(i64, String)]) -> Vec<(&'a R, String)> {
    let holders: std::collections::BTreeMap<i64, &str> = history.iter().map(|(e, h)| (*e, h.as_str())).collect();
    let mut wrong = Vec::new();
    let mut highest = i64::MIN;
    let mut ordered: Vec<&R> = rows.iter().collect();
    ordered.sort_by_key(|r| r.id());
    for row in ordered {
        let (epoch, writer) = (row.epoch(), row.leader_id());
        match holders.get(&epoch) {
            Some(holder) if *holder == writer => {}
            Some(holder) => wrong.push((row, format!("epoch {epoch} was held by {holder}, not {writer}"))),
            None => wrong.push((row, format!("epoch {epoch} was never acquired"))),
        }
        if epoch < highest {
            wrong.push((row, format!("epoch {epoch} committed after a row of epoch {highest}")));
        }
        highest = highest.max(epoch);
    }
    wrong
}

/// `FencedRow` for a row struct with `id`, `epoch` and `leader_id` fields.
#[macro_export]
macro_rules! fenced_row {
    ($row:ty) => {
        impl $crate::verdict::FencedRow for $row {
            fn id(&self) -> i64 {
                self.id
            }
            fn epoch(&self) -> i64 {
                self.epoch
            }
            fn leader_id(&self) -> &str {
                &self.leader_id
            }
        }
    };
}
