//! What a restore drill (`ha backup verify`) reports: its outcome, each phase's time, and
//! every difference it found.

pub use crate::api::{DrillOutcome, DrillPhase, Phase, VerifyReport};

/// Times one phase of the drill, from `start` to `stop`.
pub struct PhaseClock {
    started: std::time::Instant,
}

impl PhaseClock {
    pub fn start() -> Self {
        Self {
            started: std::time::Instant::now(),
        }
    }

    pub fn stop(self, report: &mut VerifyReport, name: DrillPhase) {
        report.phases.push(Phase {
            name,
            ms: self.started.elapsed().as_millis() as u64,
        });
    }
}
