//! Evidence: the report schema every slice shares, its text rendering, and the atomic writer.

pub mod lag;
pub mod render;
pub mod report;
pub mod val26;
pub mod writer;

pub use report::{Check, CheckStatus, Metric, Outcome, Report};
