//! The proof run: every VAL13–VAL17 slice this run has not run yet, through the shared phase
//! cache, with a progress line per slice; then the real `autonomy lab report` on the bundle.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use autonomy::evidence::{Outcome, Report};
use serde::{Deserialize, Serialize};

use crate::common::{cli::Cli, phase::run_once, run};

/// One slice as the proof run found it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SliceRun {
    pub slice: String,
    pub outcome: Outcome,
    pub checks: String,
    /// Seconds this process spent on it: the whole slice when it ran here, else the wait for
    /// the process that ran it.
    pub seconds: f64,
    /// False when another test process of this run had already run it.
    pub ran_here: bool,
}

/// The proof run's outcome, cached for every check test of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    /// `evidence/<run-id>`: the bundle VAL26 read.
    pub evidence_dir: PathBuf,
    pub slices: Vec<SliceRun>,
    /// Set when no backend could run: every slice recorded a SKIP, for this reason.
    pub skipped: Option<String>,
    /// `autonomy lab report <evidence_dir>`, as run.
    pub report_run: crate::common::cli::CliRun,
}

impl Proof {
    pub fn val26_dir(&self) -> PathBuf {
        self.evidence_dir.join("val26")
    }

    /// `val26-report.json` as written by the CLI.
    pub fn json(&self) -> serde_json::Value {
        let path = self.val26_dir().join("val26-report.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} could not be read ({e}); the CLI run:\n{}",
                path.display(),
                self.report_run
            )
        });
        serde_json::from_str(&text).expect("val26-report.json is JSON")
    }
}

/// A slice of the proof: its name and how to get its report from the phase cache (running it
/// if this run has not).
pub struct Slice {
    pub slice: &'static str,
    pub name: &'static str,
    pub run: fn() -> (Report, bool),
}

impl Slice {
    /// Slice `S`: its id, its name (its title after the number), its unsabotaged run.
    pub fn of<S: autonomy_lab::harness::Slice>() -> Self {
        Self {
            slice: S::ID,
            name: S::TITLE.split_once(" — ").map_or(S::TITLE, |(_, name)| name),
            run: autonomy_lab::harness::report_of::<S>,
        }
    }
}

/// Runs (or reads) every slice, printing a line per slice, then the VAL26 report.
pub fn proof(slices: &[Slice]) -> Proof {
    run_once("val26", || {
        let evidence_dir = run::evidence_root().join(run::run_id());
        let backend = std::env::var("AUTONOMY_LAB_BACKEND").unwrap_or_else(|_| "auto".into());
        eprintln!(
            "VAL26 proof run: run id {}, backend {backend}, evidence {}",
            run::run_id(),
            evidence_dir.display()
        );
        let mut runs = Vec::new();
        let mut skip_reasons = Vec::new();
        for (n, slice) in slices.iter().enumerate() {
            eprintln!(
                "[{}/{}] {} {} ...",
                n + 1,
                slices.len(),
                slice.slice.to_uppercase(),
                slice.name
            );
            let started = Instant::now();
            let (report, ran_here) = (slice.run)();
            let seconds = started.elapsed().as_secs_f64();
            skip_reasons.push(report.skip_reason.clone().filter(|_| report.outcome == Outcome::Skip));
            eprintln!(
                "      {} {}/{} checks in {seconds:.1} s{}",
                report.outcome,
                report.counts.pass,
                report.counts.total,
                if ran_here {
                    ""
                } else {
                    " (run by another test process of this run)"
                }
            );
            runs.push(SliceRun {
                slice: slice.slice.into(),
                outcome: report.outcome,
                checks: format!("{}/{}", report.counts.pass, report.counts.total),
                seconds,
                ran_here,
            });
        }
        // A SKIP of the whole proof only when no slice could run at all; one slice skipped
        // among passing ones is a gap the report shows and the checks fail on.
        let skipped = if skip_reasons.iter().all(Option::is_some) {
            skip_reasons.into_iter().flatten().next()
        } else {
            None
        };
        let dir = evidence_dir.display().to_string();
        // --force: the slices above just wrote this run's evidence, whatever an earlier
        // report of a reused run id recorded.
        let report_run = Cli::for_server("http://127.0.0.1:9")
            .with_token(None)
            .run(&["lab", "report", "--force", &dir]);
        assert!(
            matches!(report_run.exit_code, Some(0) | Some(9)),
            "lab report could not make the report:\n{report_run}"
        );
        assert!(
            report_run.elapsed_ms < Duration::from_secs(60).as_millis() as u64,
            "the report took {} ms",
            report_run.elapsed_ms
        );
        let timings: String = runs
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {:.1}s ran_here={}\n",
                    r.slice, r.outcome, r.checks, r.seconds, r.ran_here
                )
            })
            .collect();
        let _ = std::fs::create_dir_all(evidence_dir.join("val26"));
        let _ = autonomy::evidence::writer::write_atomically(
            &evidence_dir.join("val26").join("val26-proof-run.txt"),
            format!("{timings}report {} ms\n", report_run.elapsed_ms).as_bytes(),
        );
        Proof {
            evidence_dir,
            slices: runs,
            skipped,
            report_run,
        }
    })
}
