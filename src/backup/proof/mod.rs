//! The restore proof (docs/ARCHITECTURE.md, "The restore proof"): what a backup's database held, computed in the dump's own
//! snapshot, so a restore can be checked against it. So far: per-table row counts and
//! order-independent content hashes, and the object inventory.

pub mod baseline;
pub mod content;
pub mod objects;
pub mod sequences;
pub mod tables;

pub use baseline::{Baseline, Difference, ProofOutcome, ProofReport};
pub use content::{ContentHash, TableContent};
