//! High availability: the election core, the lease store seam and its two implementations (a row in the
//! database, etcd) with the database fence of the second,
//! the node's shared view and the loop that drives the election.

pub mod election;
pub mod etcd;
pub mod fence;
pub mod lease;
pub mod node;
pub mod replication;
pub mod rollouts;
pub mod state;
pub mod store;
pub mod store_health;

pub use state::{NodeState, Role, StatusReport};
