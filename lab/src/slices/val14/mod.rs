//! VAL14, the replication lag baseline: a streaming standby's lag idle, under light and heavy
//! load, through a silent cut, and the thresholds derived from it.

pub mod checks;
pub mod lag;
pub mod observations;
mod slice;

pub use observations::Observations;
pub use slice::{Val14, HEAVY, IDLE_SAMPLES, LIGHT, NODE, STANDBY};
