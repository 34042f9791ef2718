//! The node's HTTP API: router, authentication and the `ha serve` entry point.

pub mod auth;
pub mod error;
pub mod handlers;
pub mod rollouts;
pub mod serve;

pub use serve::serve;
