//! Backups and drills that run themselves: cron schedules the leader runs, each slot claimed
//! once under the lease's fence, missed slots caught up or reported (docs/ARCHITECTURE.md,
//! "Schedules").

pub mod calendar;
pub mod driver;
pub mod plan;
pub mod slots;

use std::time::Duration;

pub use crate::api::{ScheduleKind, ScheduleReport, ScheduleView, SlotRecord, SlotState};
pub use calendar::{Calendar, CalendarError};
pub use driver::Scheduler;

/// The node's schedules, validated: which run, in which zone, how late a slot may still run.
#[derive(Debug, Clone)]
pub struct Schedules {
    /// The IANA name the expressions are read in.
    pub timezone: String,
    /// A slot a leader could not run at its time still runs this long after it.
    pub grace: Duration,
    pub backup: Option<Calendar>,
    pub verify: Option<Calendar>,
}

impl Default for Schedules {
    /// No schedule: backups and drills run only when asked for.
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            grace: DEFAULT_GRACE,
            backup: None,
            verify: None,
        }
    }
}

/// One hour: a daily backup whose leader was away at 02:00 still runs until 03:00, and a
/// cluster that was down all night does not start a backup at the busiest hour.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

impl Schedules {
    /// The configured schedules, backup first.
    pub fn configured(&self) -> impl Iterator<Item = (ScheduleKind, &Calendar)> {
        [
            (ScheduleKind::Backup, self.backup.as_ref()),
            (ScheduleKind::Verify, self.verify.as_ref()),
        ]
        .into_iter()
        .filter_map(|(kind, calendar)| calendar.map(|calendar| (kind, calendar)))
    }

    pub fn of(&self, kind: ScheduleKind) -> Option<&Calendar> {
        match kind {
            ScheduleKind::Backup => self.backup.as_ref(),
            ScheduleKind::Verify => self.verify.as_ref(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.backup.is_none() && self.verify.is_none()
    }
}
