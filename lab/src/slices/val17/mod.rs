//! VAL17, quorum loss: the database lost under a running pair of nodes, writes blocked within
//! the bound, and the pair recovering when it returns.

pub mod checks;
pub mod observations;
mod slice;

pub use observations::Observations;
pub use slice::{Val17, NODES};
