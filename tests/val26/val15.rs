//! VAL15's phases (tests/val15/), as a module of the VAL26 test binary.
#![allow(dead_code, unused_imports)]

use crate::common;
#[path = "../val15/checks.rs"]
mod checks;
#[path = "../val15/slice.rs"]
mod slice;

/// The slice's report and bundle for this run, running its phases if no test has yet.
pub fn run() -> (autonomy::evidence::Report, std::path::PathBuf) {
    use slice::Sabotage::None;
    let outcome = common::phase::run_once(None.bundle_name(), || slice::run_slice(None));
    (outcome.report, outcome.evidence_dir)
}
