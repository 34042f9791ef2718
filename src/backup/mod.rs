//! Backups: the repository of archives and manifests, pg_dump and restore runners, the inventory.

pub mod drill;
pub mod dump;
pub mod error;
pub mod inventory;
pub mod manifest;
pub mod openpgp;
pub mod pgtools;
pub mod plaintext;
pub mod proof;
pub mod prune;
mod reconcile;
pub mod repository;
pub mod restore;
mod restore_op;
pub mod retention;
pub mod s3;
pub mod schedule;
pub mod service;
pub mod store;

pub use error::BackupError;
pub use manifest::{BackupRecord, BackupStatus, Manifest};
pub use service::BackupService;
