//! VAL19, restore fidelity: the fidelity fixture backed up, changed in every way a catalog can
//! change, restored and proven, then a drill.

pub mod checks;
mod slice;

pub use slice::{Observations, Val19, DRILL_PHASES, DRILL_RTO_MS_THRESHOLD, MUTATIONS, REORDERS};
