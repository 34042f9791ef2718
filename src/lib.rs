//! autonomy: a PostgreSQL high-availability control plane with backup and restore management.

pub mod api;
pub mod audit;
pub mod backup;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod evidence;
pub mod exit;
pub mod fsio;
pub mod ha;
pub mod ident;
pub mod metrics;
pub mod secret;
pub mod server;

/// The version every node reports on `/v1/ha/status` and in manifests.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
