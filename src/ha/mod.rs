//! High availability: the leader lease, the node's shared state and the loop that keeps it.

pub mod lease;
pub mod node;
pub mod replication;
pub mod rollouts;
pub mod state;
pub mod transitions;

pub use state::{NodeState, Role, StatusReport};
