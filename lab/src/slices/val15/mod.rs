//! VAL15, backup and restore: seven phases from a backup to a proven restore, and the confirm
//! gate, inventory and audit around them.

pub mod checks;
mod slice;

pub use slice::{Observations, Val15, BACKUP_MS_THRESHOLD, RESTORE_MS_THRESHOLD};
