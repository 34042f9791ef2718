//! VAL13, HA failover: two nodes on one database, failovers by SIGTERM and SIGKILL, a rejoin,
//! rapid cycles and a client writing through a failover.

pub mod checks;
mod lab;
pub mod observations;
mod slice;

pub use observations::Observations;
pub use slice::Val13;
