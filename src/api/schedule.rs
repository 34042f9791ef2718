//! `GET /v1/ha/schedule`: the configured schedules, their next slots and what their slots did.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// `--backup-schedule`: a backup, then retention.
    Backup,
    /// `--verify-schedule`: a restore drill of the newest backup.
    Verify,
}

impl ScheduleKind {
    pub const ALL: [ScheduleKind; 2] = [ScheduleKind::Backup, ScheduleKind::Verify];

    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Backup => "backup",
            ScheduleKind::Verify => "verify",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// Where a slot stands; every slot that came while a schedule was configured ends in one of
/// the last five.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Claimed by the leader at `epoch`; its backup or drill is under way.
    Running,
    /// The backup completed (and retention ran), or the drill proved the backup.
    Succeeded,
    /// The backup failed, or the drill found differences or could not run.
    Failed,
    /// A backup, drill or restore was already running (or there was nothing to verify).
    Skipped,
    /// No leader ran it in time (`detail` says why).
    Missed,
    /// Its leader was lost mid-run and the slot was too old to run again.
    Interrupted,
}

impl SlotState {
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Running => "running",
            SlotState::Succeeded => "succeeded",
            SlotState::Failed => "failed",
            SlotState::Skipped => "skipped",
            SlotState::Missed => "missed",
            SlotState::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            SlotState::Running,
            SlotState::Succeeded,
            SlotState::Failed,
            SlotState::Skipped,
            SlotState::Missed,
            SlotState::Interrupted,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// One slot as `autonomy_ha.schedule_slots` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub kind: ScheduleKind,
    #[serde(with = "time::serde::rfc3339")]
    pub slot_at: OffsetDateTime,
    pub state: SlotState,
    /// The cron expression that named the slot.
    pub expression: String,
    /// 1, or 2 and up when a new leader ran a slot again whose leader was lost mid-run.
    pub attempt: i32,
    /// The node that ran or recorded it, and its epoch.
    pub node_id: String,
    pub epoch: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub claimed_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The backup it created, or the one its drill restored.
    #[serde(default)]
    pub backup_id: Option<String>,
    /// Why it was skipped, missed, interrupted or failed; what retention did after a backup.
    #[serde(default)]
    pub detail: Option<String>,
}

/// One schedule: its expression on this node, what comes next, what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub kind: ScheduleKind,
    /// None when this node has no such schedule (its history is still shown).
    pub expression: Option<String>,
    #[serde(with = "rfc3339_list")]
    pub next_slots: Vec<OffsetDateTime>,
    /// The newest slot that ran or tried to (not missed).
    pub last_run: Option<SlotRecord>,
    /// The newest slots, newest first (at most 20).
    pub recent: Vec<SlotRecord>,
    /// Missed and interrupted slots among the recorded ones, newest first (at most 20).
    pub missed: Vec<SlotRecord>,
    /// Every missed or interrupted slot recorded, counted.
    pub missed_total: i64,
}

/// The answer of `GET /v1/ha/schedule` (any node answers it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleReport {
    /// The node that answered, and whether it leads (only the leader runs slots).
    pub node_id: String,
    pub leader: bool,
    /// The zone the expressions are read in (IANA name).
    pub timezone: String,
    /// How late a slot may still run once a leader can run it.
    pub grace_s: u64,
    pub schedules: Vec<ScheduleView>,
}

mod rfc3339_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use time::{format_description::well_known::Rfc3339, OffsetDateTime};

    pub fn serialize<S: Serializer>(times: &[OffsetDateTime], serializer: S) -> Result<S::Ok, S::Error> {
        let texts: Vec<String> = times
            .iter()
            .map(|t| t.format(&Rfc3339).map_err(serde::ser::Error::custom))
            .collect::<Result<_, _>>()?;
        texts.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<OffsetDateTime>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| OffsetDateTime::parse(text, &Rfc3339).map_err(serde::de::Error::custom))
            .collect()
    }
}
