//! VAL26: the HA proof report, computed from the VAL13–VAL17 reports of one evidence
//! directory (seed 004). Reads files only, never a live system.

pub mod assess;
pub mod load;
pub mod text;

pub use assess::{assess, Readiness, Val26};
pub use load::{load, Coverage, SliceEvidence};

/// The five slices VAL26 reads, with the seed's names.
pub const SLICES: [(&str, &str); 5] = [
    ("val13", "HA Failover Validation"),
    ("val14", "HA Replication Lag Baseline"),
    ("val15", "Backup/Restore Validation"),
    ("val16", "Split-Brain Chaos Validation"),
    ("val17", "Quorum Loss Validation"),
];
