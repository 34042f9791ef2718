//! VAL16, split-brain chaos: a rewritten lease, a paused leader and a partitioned node, and
//! whether any write committed under a stale epoch.

pub mod checks;
pub mod observations;
mod slice;

pub use observations::Observations;
pub use slice::{Val16, LEASE_TTL_MS, NODES, PARTITIONED, RENEW_INTERVAL_MS, ROGUE_HOLDER};
