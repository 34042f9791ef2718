//! Lag alert thresholds DERIVED from a VAL14 report (docs/VALIDATION.md): never targets, always to be
//! recalibrated against production numbers.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Metric, Outcome, Report};

/// The seed's derivation and what it was derived from, in whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedThresholds {
    pub idle_p95_ms: u64,
    pub light_p95_ms: u64,
    /// max(idle_p95_ms, light_p95_ms)
    pub observed_p95_ms: u64,
    /// max(observed_p95 × 3 + 1, 10)
    pub healthy_ms: u64,
    /// max(healthy × 10, 100)
    pub degraded_ms: u64,
    /// max(healthy × 50, 500): where to page from an external alerting rule.
    pub alert_ms: u64,
}

/// The formulas of docs/VALIDATION.md, VAL14.
pub fn derive(idle_p95_ms: u64, light_p95_ms: u64) -> DerivedThresholds {
    let observed_p95_ms = idle_p95_ms.max(light_p95_ms);
    let healthy_ms = (observed_p95_ms.saturating_mul(3).saturating_add(1)).max(10);
    DerivedThresholds {
        idle_p95_ms,
        light_p95_ms,
        observed_p95_ms,
        healthy_ms,
        degraded_ms: healthy_ms.saturating_mul(10).max(100),
        alert_ms: healthy_ms.saturating_mul(50).max(500),
    }
}

/// Why a report cannot give thresholds.
#[derive(Debug, Error, PartialEq)]
pub enum LagReportError {
    #[error("the report is of slice `{0}`, not val14; pass a val14-report.json")]
    WrongSlice(String),
    #[error("the val14 report has no `{metric}` metric (outcome {outcome}{reason}); rerun `cargo test --test val14` so it measures lag")]
    MissingMetric {
        metric: &'static str,
        outcome: Outcome,
        reason: String,
    },
    #[error("the val14 report's `{0}` metric is a series, not one value")]
    NotAValue(&'static str),
}

/// Thresholds from a VAL14 report's idle_p95_ms and light_p95_ms.
pub fn from_report(report: &Report) -> Result<DerivedThresholds, LagReportError> {
    if report.slice != "val14" {
        return Err(LagReportError::WrongSlice(report.slice.clone()));
    }
    let value = |metric: &'static str| match report.metrics.get(metric) {
        Some(Metric::Value(value)) => Ok(*value),
        Some(Metric::Series(_)) => Err(LagReportError::NotAValue(metric)),
        None => Err(LagReportError::MissingMetric {
            metric,
            outcome: report.outcome,
            reason: report
                .skip_reason
                .as_ref()
                .map(|reason| format!(": {reason}"))
                .unwrap_or_default(),
        }),
    };
    Ok(derive(value("idle_p95_ms")?, value("light_p95_ms")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_lab_gets_the_floors() {
        let derived = derive(0, 1);
        assert_eq!(
            (
                derived.observed_p95_ms,
                derived.healthy_ms,
                derived.degraded_ms,
                derived.alert_ms
            ),
            (1, 10, 100, 500)
        );
    }

    #[test]
    fn slower_measurements_scale_every_band() {
        let derived = derive(7, 4);
        assert_eq!(derived.observed_p95_ms, 7);
        assert_eq!(derived.healthy_ms, 22);
        assert_eq!(derived.degraded_ms, 220);
        assert_eq!(derived.alert_ms, 1100);
    }

    #[test]
    fn a_report_of_another_slice_or_without_metrics_is_refused() {
        let mut report = Report::new("val15", "Backup", "run");
        assert_eq!(from_report(&report), Err(LagReportError::WrongSlice("val15".into())));
        report.slice = "val14".into();
        assert!(matches!(
            from_report(&report),
            Err(LagReportError::MissingMetric {
                metric: "idle_p95_ms",
                ..
            })
        ));
        report.metrics.insert("idle_p95_ms".into(), Metric::Value(2));
        report.metrics.insert("light_p95_ms".into(), Metric::Value(3));
        assert_eq!(from_report(&report).map(|d| d.healthy_ms), Ok(10));
    }
}
