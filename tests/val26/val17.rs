//! VAL17's phases (tests/val17/), as a module of the VAL26 test binary.
#![allow(dead_code, unused_imports)]

use crate::common;
#[path = "../val17/checks.rs"]
mod checks;
#[path = "../val17/observations.rs"]
mod observations;
#[path = "../val17/slice.rs"]
mod slice;

/// The slice's report for this run, and whether this call ran its phases (no test had yet).
pub fn run() -> (autonomy::evidence::Report, bool) {
    use observations::Sabotage::None;
    let (outcome, ran_here) = common::phase::run_once_here(None.bundle_name(), || slice::run_slice(None));
    (outcome.report, ran_here)
}
