//! The VAL26 check matrix, the evidence window and the readiness levels (docs/VALIDATION.md, VAL26).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::{
    bounds::{self, Bound},
    digest::FileDigest,
    load::SliceEvidence,
};
use crate::evidence::{Check, CheckStatus, Metric, Outcome, Report};

/// Every report must fall within one 6-hour window: one run of one build, not a collage.
pub const EVIDENCE_WINDOW: Duration = Duration::hours(6);
/// Of `val26-report.json`.
pub const SCHEMA_VERSION: u32 = 1;

/// The readiness levels; only the first is reachable with VAL13–VAL17.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    pub design_partner: bool,
    /// Why not, when it is not.
    pub design_partner_gaps: Vec<String>,
    pub ga: bool,
    pub ga_gaps: Vec<String>,
    pub public_production: bool,
    pub public_production_gaps: Vec<String>,
}

/// One readiness level as the reports show it.
pub struct Level<'a> {
    /// Names the level in the HTML page (`level-<key>`).
    pub key: &'static str,
    pub name: &'static str,
    pub ready: bool,
    pub gaps: &'a [String],
}

impl Readiness {
    /// The three levels, lowest first.
    pub fn levels(&self) -> [Level<'_>; 3] {
        [
            Level {
                key: "design-partner",
                name: "HA Design Partner Ready",
                ready: self.design_partner,
                gaps: &self.design_partner_gaps,
            },
            Level {
                key: "ga",
                name: "HA GA Ready",
                ready: self.ga,
                gaps: &self.ga_gaps,
            },
            Level {
                key: "public",
                name: "HA Public Production Claim",
                ready: self.public_production,
                gaps: &self.public_production_gaps,
            },
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Val26 {
    /// Of this JSON layout; bumped when a field changes meaning.
    pub schema_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub evidence_dir: String,
    pub slices: Vec<SliceEvidence>,
    /// The earliest and latest report times found, and whether they fit the window.
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_start: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_end: Option<OffsetDateTime>,
    pub window_coherent: bool,
    pub checks: Vec<Check>,
    pub pass: usize,
    pub fail: usize,
    pub readiness: Readiness,
    /// `HA DESIGN PARTNER READY` or `NOT READY`.
    pub verdict: String,
    #[serde(flatten)]
    pub digests: Digests,
}

/// What `autonomy evidence verify` checks a VAL26 report's directory against.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Digests {
    /// The SHA-256 of every file of the slice bundles read (`digest.rs`); empty until hashed.
    pub evidence_files: Vec<FileDigest>,
    /// The SHA-256 of `val26-report.txt` and `.html` as written beside this JSON.
    pub report_files: Vec<FileDigest>,
}

impl Val26 {
    /// The ids of the checks that did not pass, in matrix order.
    pub fn failing_checks(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status != CheckStatus::Pass)
            .map(|c| c.id.as_str())
            .collect()
    }

    /// Whether the reports fall within one evidence window, and its bounds, for the reports.
    pub fn window_summary(&self, coherent: &str) -> String {
        let at = |t: Option<OffsetDateTime>| {
            t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| "-".into())
        };
        format!(
            "{} ({} .. {})",
            if self.window_coherent {
                coherent
            } else {
                "NOT within one 6-hour window"
            },
            at(self.window_start),
            at(self.window_end)
        )
    }

    /// The report of `slice`, when it was found.
    pub fn report(&self, slice: &str) -> Option<&Report> {
        self.slices.iter().find(|s| s.slice == slice).and_then(|s| s.report())
    }

    /// The backends the found reports ran on, sorted, each once.
    pub fn backends(&self) -> Vec<&str> {
        let mut backends: Vec<&str> = self
            .slices
            .iter()
            .filter_map(|s| s.report())
            .map(|r| r.backend.as_str())
            .collect();
        backends.sort();
        backends.dedup();
        backends
    }

    /// The lease stores the HA slices (VAL13, VAL16, VAL17) ran on, sorted, without repeats.
    pub fn lease_stores(&self) -> Vec<&str> {
        let mut stores: Vec<&str> = ["val13", "val16", "val17"]
            .iter()
            .filter_map(|slice| self.report(slice))
            .map(|r| r.lease_store.as_str())
            .collect();
        stores.sort();
        stores.dedup();
        stores
    }

    /// A slice's row in the coverage table: its outcome as VAL26 judged it (VAL26-01..05),
    /// with the checks counted from the report's checks, not its own tally.
    pub fn coverage_line(&self, slice: &str) -> String {
        let Some(index) = self.slices.iter().position(|s| s.slice == slice) else {
            return "MISSING".into();
        };
        let evidence = &self.slices[index];
        let Some(report) = evidence.report() else {
            return match &evidence.coverage {
                super::Coverage::Missing { reason } => format!("MISSING ({reason})"),
                super::Coverage::Found { .. } => unreachable!("a found slice has a report"),
            };
        };
        let judged_pass = self.checks.get(index).is_some_and(|c| c.status == CheckStatus::Pass);
        let passing = report.checks.iter().filter(|c| c.status == CheckStatus::Pass).count();
        let outcome = match (judged_pass, report.outcome) {
            (true, outcome) => outcome.to_string(),
            (false, Outcome::Pass) => "FAIL (its report says PASS)".to_owned(),
            (false, outcome) => outcome.to_string(),
        };
        let skipped = report
            .skip_reason
            .as_ref()
            .map(|r| format!(" skipped: {r}"))
            .unwrap_or_default();
        format!("{outcome} ({passing}/{} checks){skipped}", report.checks.len())
    }

    /// The PostgreSQL version the first report that names one ran against.
    pub fn server_version(&self) -> Option<&str> {
        self.slices
            .iter()
            .filter_map(|s| s.report())
            .find_map(|r| r.server_version.as_deref())
    }
}

/// What GA needs beyond VAL13–VAL17 (docs/VALIDATION.md, VAL26), always missing from this suite's evidence.
const GA_GAPS: [&str; 3] = [
    "VAL18 30-day HA soak not run (>= 3 scheduled failovers, all <= 10,000 ms, data continuity 1.000, uptime >= 99.9%)",
    "streaming-replication promotion failover not validated (standby promoted to primary under a real PostgreSQL HA configuration)",
    "VAL14 alerting thresholds not recalibrated against production write_lag",
];
const PUBLIC_GAPS: [&str; 3] = [
    "multi-AZ or multi-region topology not validated",
    "no external security hardening audit of the HA auth surfaces",
    "production-grade monitoring and alerting not validated",
];

/// VAL26-06..09: named checks of one slice, and a bounded metric of it where there is one.
struct MetricCheck {
    id: &'static str,
    name: &'static str,
    /// `{bound}` stands for the bound, as printed by [`Bound::described`].
    threshold: &'static str,
    slice: &'static str,
    source_checks: &'static [&'static str],
    bound: Option<Bound>,
}

const METRIC_CHECKS: [MetricCheck; 4] = [
    MetricCheck {
        id: "VAL26-06",
        name: "sigterm_failover",
        threshold: "SIGTERM leader failover <= {bound} (VAL13-03)",
        slice: "val13",
        source_checks: &["VAL13-03"],
        bound: Some(bounds::SIGTERM_FAILOVER),
    },
    MetricCheck {
        id: "VAL26-07",
        name: "zero_data_loss",
        threshold: "zero data loss across leader failover (VAL13-04)",
        slice: "val13",
        source_checks: &["VAL13-04"],
        bound: None,
    },
    MetricCheck {
        id: "VAL26-08",
        name: "restore_correct",
        threshold: "backup restore correctness verified (VAL15-06)",
        slice: "val15",
        source_checks: &["VAL15-06"],
        bound: None,
    },
    MetricCheck {
        id: "VAL26-09",
        name: "quorum_loss_blocked",
        threshold: "quorum loss detected and writes blocked within {bound} (VAL17-02, -03, -04)",
        slice: "val17",
        source_checks: &["VAL17-02", "VAL17-03", "VAL17-04"],
        bound: Some(bounds::LOSS_DETECTION),
    },
];

/// The earliest and latest report times found, and whether they fit the evidence window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
    coherent: bool,
}

impl Window {
    fn of(slices: &[SliceEvidence]) -> Self {
        let times: Vec<OffsetDateTime> = slices
            .iter()
            .filter_map(|s| s.report())
            .map(|r| r.generated_at)
            .collect();
        let (start, end) = (times.iter().min().copied(), times.iter().max().copied());
        let coherent = match (start, end) {
            (Some(start), Some(end)) => end - start <= EVIDENCE_WINDOW,
            _ => false,
        };
        Self { start, end, coherent }
    }

    /// Why the window does not hold, when it does not.
    fn gap(self) -> Option<String> {
        if self.coherent {
            return None;
        }
        Some(match (self.start, self.end) {
            (Some(start), Some(end)) => {
                let seconds = (end - start).whole_seconds();
                format!(
                    "the reports span {} h {:02} min {:02} s, more than the 6-hour evidence window",
                    seconds / 3600,
                    seconds % 3600 / 60,
                    seconds % 60
                )
            }
            _ => "no report found: no evidence window".into(),
        })
    }
}

pub fn assess(evidence_dir: &str, slices: Vec<SliceEvidence>, now: OffsetDateTime) -> Val26 {
    let window = Window::of(&slices);
    let mut checks: Vec<Check> = slices.iter().enumerate().map(|(n, s)| slice_check(n + 1, s)).collect();
    let report = |slice: &str| slices.iter().find(|s| s.slice == slice).and_then(|s| s.report());
    checks.extend(
        METRIC_CHECKS
            .iter()
            .map(|check| metric_check(check, report(check.slice))),
    );
    let mut design_partner_gaps: Vec<String> = checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .map(|c| format!("{} did not pass", c.id))
        .collect();
    design_partner_gaps.extend(window.gap());
    let design_partner = design_partner_gaps.is_empty();
    checks.push(summary_check(&design_partner_gaps, window.coherent));
    let pass = checks.iter().filter(|c| c.status == CheckStatus::Pass).count();
    let ga_gaps: Vec<String> = GA_GAPS.iter().map(|g| (*g).to_owned()).collect();
    let mut public_production_gaps = ga_gaps.clone();
    public_production_gaps.extend(PUBLIC_GAPS.iter().map(|g| (*g).to_owned()));
    Val26 {
        schema_version: SCHEMA_VERSION,
        generated_at: now,
        evidence_dir: evidence_dir.to_owned(),
        slices,
        window_start: window.start,
        window_end: window.end,
        window_coherent: window.coherent,
        pass,
        fail: checks.len() - pass,
        checks,
        readiness: Readiness {
            design_partner,
            design_partner_gaps,
            ga: false,
            ga_gaps,
            public_production: false,
            public_production_gaps,
        },
        verdict: if design_partner {
            "HA DESIGN PARTNER READY".into()
        } else {
            "NOT READY".into()
        },
        digests: Digests::default(),
    }
}

/// VAL26-10: every other check passed and the reports fit one window.
fn summary_check(design_partner_gaps: &[String], window_coherent: bool) -> Check {
    let design_partner = design_partner_gaps.is_empty();
    Check {
        id: "VAL26-10".into(),
        name: "design_partner_ready".into(),
        status: if design_partner {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        value: Some(format!("window_coherent={window_coherent}")),
        threshold: "VAL26-01..09 all PASS and every report within one 6-hour window".into(),
        detail: if design_partner {
            "all criteria hold".into()
        } else {
            design_partner_gaps.join("; ")
        },
    }
}

/// VAL26-01..05: the slice's report was found and every one of its checks passed.
fn slice_check(number: usize, evidence: &SliceEvidence) -> Check {
    let (status, value, detail) = match evidence.report() {
        None => (CheckStatus::Fail, Some("MISSING".to_owned()), missing_reason(evidence)),
        Some(report) => {
            let failing: Vec<&str> = report
                .checks
                .iter()
                .filter(|c| c.status != CheckStatus::Pass)
                .map(|c| c.id.as_str())
                .collect();
            // Every one of the slice's ten checks must be there: a report with one removed
            // (and its tally lowered to match) is not a passing slice.
            let absent: Vec<String> = (1..=10)
                .map(|n| format!("{}-{n:02}", evidence.slice.to_uppercase()))
                .filter(|id| report.check(id).is_none())
                .collect();
            // The checks themselves decide, not the slice's own tally: a report whose summary
            // says PASS over a failed check does not pass.
            let all_pass = report.outcome == Outcome::Pass
                && absent.is_empty()
                && failing.is_empty()
                && report.counts.pass == report.counts.total;
            (
                if all_pass { CheckStatus::Pass } else { CheckStatus::Fail },
                Some(format!(
                    "{} {}/{} checks",
                    report.outcome,
                    report.checks.len() - failing.len(),
                    report.checks.len()
                )),
                match (&report.skip_reason, failing.is_empty(), absent.is_empty()) {
                    (Some(reason), _, _) => format!("skipped: {reason}"),
                    (None, false, _) => format!("not passing: {}", failing.join(", ")),
                    (None, true, false) => format!("checks absent from the report: {}", absent.join(", ")),
                    (None, true, true) if !all_pass => format!(
                        "the report's own outcome is {} ({}/{} by its tally)",
                        report.outcome, report.counts.pass, report.counts.total
                    ),
                    (None, true, true) => format!("{} ({})", evidence.path.display(), report.backend),
                },
            )
        }
    };
    Check {
        id: format!("VAL26-{number:02}"),
        name: format!("{}_report", evidence.slice),
        status,
        value,
        threshold: format!(
            "{} {} report found and all checks pass",
            evidence.slice.to_uppercase(),
            evidence.name
        ),
        detail,
    }
}

fn missing_reason(evidence: &SliceEvidence) -> String {
    match &evidence.coverage {
        super::Coverage::Missing { reason } => format!("MISSING: {reason} ({})", evidence.path.display()),
        super::Coverage::Found { .. } => String::new(),
    }
}

/// VAL26-06..09: the named checks of one slice passed, and its metric (if bounded) within its bound.
fn metric_check(check: &MetricCheck, report: Option<&Report>) -> Check {
    let source_checks = check.source_checks;
    let (status, value, detail) = match report {
        None => (CheckStatus::Fail, None, "the source report is MISSING".to_owned()),
        Some(report) => {
            let not_passing: Vec<&str> = source_checks
                .iter()
                .copied()
                .filter(|id| report.check(id).is_none_or(|c| c.status != CheckStatus::Pass))
                .collect();
            let measured = check.bound.map(|bound| (bound, report.metrics.get(bound.metric)));
            let metric_ok = match measured {
                None => true,
                Some((bound, Some(Metric::Value(value)))) => *value <= bound.ms,
                Some(_) => false,
            };
            (
                if not_passing.is_empty() && metric_ok {
                    CheckStatus::Pass
                } else {
                    CheckStatus::Fail
                },
                measured.map(|(bound, value)| {
                    format!("{}={}", bound.metric, value.map_or("none".into(), ToString::to_string))
                }),
                if not_passing.is_empty() {
                    format!("{} passed", source_checks.join(", "))
                } else {
                    format!("not passing: {}", not_passing.join(", "))
                },
            )
        }
    };
    let threshold = match check.bound {
        Some(bound) => check.threshold.replace("{bound}", &bound.described()),
        None => check.threshold.to_owned(),
    };
    Check {
        id: check.id.into(),
        name: check.name.into(),
        status,
        value,
        threshold,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{
        report::all_checks_outcome,
        val26::{Coverage, SLICES},
    };

    fn passing(slice: &str, at: OffsetDateTime) -> Report {
        let mut report = Report::new(slice, "t", "run");
        report.generated_at = at;
        report.backend = "process".into();
        report.checks = (1..=10)
            .map(|n| Check {
                id: format!("{}-{n:02}", slice.to_uppercase()),
                name: "c".into(),
                status: CheckStatus::Pass,
                value: None,
                threshold: String::new(),
                detail: String::new(),
            })
            .collect();
        report.metrics.insert("sigterm_failover_ms".into(), Metric::Value(60));
        report.metrics.insert("loss_detection_ms".into(), Metric::Value(25));
        report.tally(all_checks_outcome)
    }

    fn bundle(at: OffsetDateTime) -> Vec<SliceEvidence> {
        SLICES
            .iter()
            .map(|(slice, name)| SliceEvidence {
                slice: (*slice).into(),
                name: (*name).into(),
                path: format!("e/{slice}/{slice}-report.json").into(),
                coverage: Coverage::Found {
                    report: Box::new(passing(slice, at)),
                },
            })
            .collect()
    }

    const AT: OffsetDateTime = time::macros::datetime!(2026-11-29 10:00 UTC);

    #[test]
    fn a_complete_passing_bundle_is_design_partner_ready_and_nothing_more() {
        let val26 = assess("e", bundle(AT), AT);
        assert_eq!((val26.pass, val26.fail), (10, 0), "{:#?}", val26.checks);
        assert_eq!(val26.verdict, "HA DESIGN PARTNER READY");
        assert!(!val26.readiness.ga && !val26.readiness.public_production);
        assert!(val26.readiness.ga_gaps.iter().any(|g| g.contains("VAL18")));
    }

    #[test]
    fn a_missing_slice_fails_its_check_and_the_verdict_and_is_named() {
        let mut slices = bundle(AT);
        slices[1].coverage = Coverage::Missing {
            reason: "no report file".into(),
        };
        let val26 = assess("e", slices, AT);
        let check = &val26.checks[1];
        assert_eq!((check.id.as_str(), check.status), ("VAL26-02", CheckStatus::Fail));
        assert!(check.detail.contains("MISSING: no report file"), "{check:#?}");
        assert_eq!(val26.verdict, "NOT READY");
        assert!(val26
            .readiness
            .design_partner_gaps
            .iter()
            .any(|g| g.contains("VAL26-02")));
    }

    #[test]
    fn one_failed_check_in_a_slice_fails_its_row_and_the_dependent_metric_check() {
        let mut slices = bundle(AT);
        if let Coverage::Found { report } = &mut slices[0].coverage {
            report.checks[3].status = CheckStatus::Fail; // VAL13-04
            **report = report.as_ref().clone().tally(all_checks_outcome);
        }
        let val26 = assess("e", slices, AT);
        let failed = val26.failing_checks();
        assert_eq!(failed, ["VAL26-01", "VAL26-07", "VAL26-10"]);
        assert!(val26.checks[0].detail.contains("VAL13-04"));
    }

    #[test]
    fn reports_more_than_six_hours_apart_are_not_coherent() {
        let mut slices = bundle(AT);
        if let Coverage::Found { report } = &mut slices[4].coverage {
            report.generated_at = AT + Duration::hours(7);
        }
        let val26 = assess("e", slices, AT);
        assert!(!val26.window_coherent);
        assert_eq!(val26.checks[9].status, CheckStatus::Fail);
        assert!(val26.checks[..9].iter().all(|c| c.status == CheckStatus::Pass));
        assert_eq!(val26.verdict, "NOT READY");
    }

    #[test]
    fn a_skipped_slice_does_not_pass() {
        let mut slices = bundle(AT);
        let mut skipped = Report::new("val16", "t", "run");
        skipped.skip_reason = Some("no backend".into());
        slices[3].coverage = Coverage::Found {
            report: Box::new(skipped.tally(all_checks_outcome)),
        };
        let val26 = assess("e", slices, AT);
        assert_eq!(val26.checks[3].status, CheckStatus::Fail);
        assert!(val26.checks[3].detail.contains("skipped: no backend"));
    }

    #[test]
    fn a_failover_over_the_bound_fails_06_even_if_the_slice_said_pass() {
        let mut slices = bundle(AT);
        if let Coverage::Found { report } = &mut slices[0].coverage {
            report
                .metrics
                .insert("sigterm_failover_ms".into(), Metric::Value(5_001));
        }
        let val26 = assess("e", slices, AT);
        assert_eq!(val26.checks[5].status, CheckStatus::Fail);
        assert_eq!(val26.checks[5].value.as_deref(), Some("sigterm_failover_ms=5001"));
    }

    /// Each of the ten checks turns FAIL when the one thing it guards is broken, and the
    /// summary (10) with it; nothing else fails unless it depends on the same fact.
    #[rstest::rstest]
    #[case::val13_check(0, Break::Check("VAL13-01"), &["VAL26-01", "VAL26-10"])]
    #[case::val14_check(1, Break::Check("VAL14-01"), &["VAL26-02", "VAL26-10"])]
    #[case::val15_check(2, Break::Check("VAL15-01"), &["VAL26-03", "VAL26-10"])]
    #[case::val16_check(3, Break::Check("VAL16-01"), &["VAL26-04", "VAL26-10"])]
    #[case::val17_check(4, Break::Check("VAL17-01"), &["VAL26-05", "VAL26-10"])]
    #[case::sigterm_over_bound(0, Break::Metric("sigterm_failover_ms", 5_001), &["VAL26-06", "VAL26-10"])]
    #[case::data_lost(0, Break::Check("VAL13-04"), &["VAL26-01", "VAL26-07", "VAL26-10"])]
    #[case::restore_wrong(2, Break::Check("VAL15-06"), &["VAL26-03", "VAL26-08", "VAL26-10"])]
    #[case::writes_not_blocked(4, Break::Check("VAL17-04"), &["VAL26-05", "VAL26-09", "VAL26-10"])]
    #[case::loss_detected_late(4, Break::Metric("loss_detection_ms", 30_001), &["VAL26-09", "VAL26-10"])]
    #[case::sigterm_not_measured(0, Break::NoMetric("sigterm_failover_ms"), &["VAL26-06", "VAL26-10"])]
    #[case::late_report(4, Break::Late, &["VAL26-10"])]
    #[case::failed_under_a_passing_tally(2, Break::CheckUntallied("VAL15-03"), &["VAL26-03", "VAL26-10"])]
    #[case::check_removed(1, Break::Removed("VAL14-05"), &["VAL26-02", "VAL26-10"])]
    fn each_check_fails_when_what_it_guards_is_broken(
        #[case] slice: usize,
        #[case] fault: Break,
        #[case] failing: &[&str],
    ) {
        let mut slices = bundle(AT);
        if let Coverage::Found { report } = &mut slices[slice].coverage {
            match fault {
                Break::Check(id) => {
                    report.checks.iter_mut().find(|c| c.id == id).unwrap().status = CheckStatus::Fail;
                    **report = report.as_ref().clone().tally(all_checks_outcome);
                }
                Break::Metric(name, value) => {
                    report.metrics.insert(name.into(), Metric::Value(value));
                }
                Break::NoMetric(name) => {
                    report.metrics.remove(name);
                }
                Break::Late => report.generated_at = AT + Duration::hours(6) + Duration::seconds(1),
                Break::CheckUntallied(id) => {
                    report.checks.iter_mut().find(|c| c.id == id).unwrap().status = CheckStatus::Fail;
                }
                Break::Removed(id) => {
                    report.checks.retain(|c| c.id != id);
                    **report = report.as_ref().clone().tally(all_checks_outcome);
                }
            }
        }
        let val26 = assess("e", slices, AT);
        let failed = val26.failing_checks();
        assert_eq!(failed, failing, "{:#?}", val26.checks);
        assert_eq!(val26.verdict, "NOT READY");
    }

    #[derive(Debug)]
    enum Break {
        Check(&'static str),
        Metric(&'static str, u64),
        NoMetric(&'static str),
        Late,
        /// A check edited to FAIL while the report's tally still says PASS 10/10.
        CheckUntallied(&'static str),
        /// A check taken out, the tally redone over the nine left.
        Removed(&'static str),
    }

    #[test]
    fn the_text_report_names_missing_slices_gaps_and_the_verdict() {
        let mut slices = bundle(AT);
        slices[1].coverage = Coverage::Missing {
            reason: "no report file".into(),
        };
        let text = crate::evidence::val26::text::render(&assess("e", slices, AT));
        assert!(
            text.contains("VAL14 HA Replication Lag Baseline    MISSING (no report file)"),
            "{text}"
        );
        assert!(
            text.contains("SIGTERM graceful failover: 60 ms [target <= 5000 ms] PASS"),
            "{text}"
        );
        assert!(text.contains("HA GA READY ✗ (NOT YET)"), "{text}");
        assert!(text.contains("missing: VAL26-02 did not pass"), "{text}");
        assert!(text.contains("NOT representative of cloud VM"), "{text}");
        assert!(text.trim_end().ends_with("Verdict: NOT READY"), "{text}");
    }

    #[test]
    fn load_reports_absent_and_mismatched_files_as_missing() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let write = |slice: &str, body: String| {
            std::fs::create_dir_all(dir.path().join(slice)).unwrap();
            std::fs::write(dir.path().join(slice).join(format!("{slice}-report.json")), body).unwrap();
        };
        write("val13", serde_json::to_string(&passing("val13", AT)).unwrap());
        write("val14", "{\"slice\": \"val14\"}".into());
        write("val15", serde_json::to_string(&passing("val16", AT)).unwrap());
        let slices = super::super::load(dir.path());
        let reasons: Vec<String> = slices
            .iter()
            .map(|s| match &s.coverage {
                Coverage::Found { .. } => "found".into(),
                Coverage::Missing { reason } => reason.clone(),
            })
            .collect();
        assert_eq!(reasons[0], "found");
        assert!(reasons[1].starts_with("schema mismatch"), "{reasons:?}");
        assert!(reasons[2].contains("of slice `val16`"), "{reasons:?}");
        assert_eq!(reasons[3], "no report file");
    }
}
