//! The schedules' driver. On the leader it claims each due slot under the lease's fence and
//! runs its backup (then retention) or drill on a task of its own, records what the planner
//! calls missed, and when it becomes leader settles the slots a lost leader left running. It
//! decides nothing itself (`plan::due` does); on other nodes it only watches for leadership.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use time::OffsetDateTime;
use tokio::sync::watch;

use super::{
    plan::{self, Due},
    slots::{self, Claimant},
    ScheduleKind, ScheduleReport, ScheduleView, Schedules, SlotRecord, SlotState,
};
use crate::{
    audit::EventType,
    backup::{
        drill::{VerifyRequest, WhichBackup},
        BackupError, BackupService, BackupStatus,
    },
    db::SharedClient,
    ident::BackupId,
};

/// How often a node looks at its role, and the longest the driver sleeps: a new leader starts
/// its catch-up within this, and nothing else wakes it between slots.
const ROLE_POLL: Duration = Duration::from_millis(250);
/// After a database error, the driver tries again this much later.
const RETRY: Duration = Duration::from_secs(1);
/// How long a finished slot's outcome is retried while the database does not take it; after
/// that the slot stays `running` and the next leader settles it.
const FINISH_ATTEMPTS: u32 = 10;
const SKIPPED_BUSY: &str = "another backup, drill or restore was running on the leader";

pub struct Scheduler {
    pub schedules: Schedules,
    backups: Arc<BackupService>,
    /// The driver's own session: slot claims never wait behind a backup's statements.
    db: Arc<SharedClient>,
    /// Slots this process is running now: a catch-up leaves them to their task.
    in_flight: Mutex<BTreeSet<(ScheduleKind, OffsetDateTime)>>,
}

/// What the leader knows of each schedule between wake-ups.
struct Cursor {
    /// The newest slot recorded; every later one is unhandled.
    recorded: OffsetDateTime,
    /// The first slot after it, the next wake-up.
    next: Option<OffsetDateTime>,
}

impl Scheduler {
    pub fn new(schedules: Schedules, backups: Arc<BackupService>, db: Arc<SharedClient>) -> Self {
        Self {
            schedules,
            backups,
            db,
            in_flight: Mutex::default(),
        }
    }

    /// Runs until `shutdown`: idle on a follower, claiming and running slots on the leader.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut led: Option<(i64, BTreeMap<ScheduleKind, Cursor>)> = None;
        loop {
            let wake = match self.backups.state.leader_epoch() {
                None => {
                    led = None;
                    ROLE_POLL
                }
                Some(epoch) => {
                    if led.as_ref().is_none_or(|(at, _)| *at != epoch) {
                        led = match self.take_over(epoch).await {
                            Ok(cursors) => Some((epoch, cursors)),
                            Err(error) => {
                                tracing::warn!(%error, epoch, "schedules: could not read the recorded slots; retrying");
                                None
                            }
                        };
                    }
                    match led.as_mut() {
                        Some((_, cursors)) => self.step(epoch, cursors).await,
                        None => RETRY,
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wake.min(ROLE_POLL)) => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    /// Handles what is due for each schedule; returns how long until the next slot.
    async fn step(self: &Arc<Self>, epoch: i64, cursors: &mut BTreeMap<ScheduleKind, Cursor>) -> Duration {
        let now = OffsetDateTime::now_utc();
        let mut wake = ROLE_POLL;
        for (kind, calendar) in self.schedules.configured() {
            let Some(cursor) = cursors.get_mut(&kind) else { continue };
            if cursor.next.is_some_and(|next| next <= now) {
                let due = plan::due(calendar, cursor.recorded, now, self.schedules.grace);
                match self.handle(kind, &due, epoch).await {
                    Ok(()) => {
                        cursor.recorded = due.newest().unwrap_or(cursor.recorded);
                        cursor.next = calendar.next_after(cursor.recorded);
                    }
                    Err(error) => {
                        tracing::warn!(%error, kind = kind.as_str(), "schedules: could not record a due slot; retrying");
                        wake = wake.min(RETRY);
                        continue;
                    }
                }
            }
            if let Some(next) = cursor.next {
                let until = (next - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
                wake = wake.min(until.unsigned_abs());
            }
        }
        wake
    }

    /// Records the missed slots and claims the one to run, both under the fence at `epoch`.
    async fn handle(self: &Arc<Self>, kind: ScheduleKind, due: &Due, epoch: i64) -> Result<(), BackupError> {
        let expression = self.expression(kind);
        let by = self.claimant(epoch);
        if !due.missed.is_empty() {
            let reasons: Vec<(OffsetDateTime, String)> = due
                .missed
                .iter()
                .map(|(slot, reason)| (*slot, reason.describe(self.schedules.grace)))
                .collect();
            let mut client = self.db.get().await?;
            let tx = self.backups.begin_fenced(&mut client, epoch).await?;
            slots::record_missed(&tx, kind, &expression, by, &reasons).await?;
            tx.commit().await.map_err(crate::db::DbError::query("commit"))?;
            drop(client);
            let listed: Vec<String> = due.missed.iter().map(|(slot, _)| rfc3339(*slot)).collect();
            tracing::warn!(
                kind = kind.as_str(),
                count = due.missed_count(),
                "schedule slots missed"
            );
            self.backups.audit_quietly(
                EventType::ScheduleSlotsMissed,
                serde_json::json!({
                    "kind": kind.as_str(),
                    "count": due.missed_count(),
                    "slots": listed,
                    "unlisted": due.more_missed,
                    "reasons": reasons.iter().map(|(_, reason)| reason).collect::<BTreeSet<_>>(),
                    "epoch": epoch,
                }),
            );
        }
        if let Some(slot) = due.run {
            let backup_id = (kind == ScheduleKind::Backup).then(crate::backup::service::new_backup_id);
            let mut client = self.db.get().await?;
            let tx = self.backups.begin_fenced(&mut client, epoch).await?;
            let claimed = slots::claim(
                &tx,
                kind,
                slot,
                &expression,
                by,
                backup_id.as_ref().map(BackupId::as_str),
            )
            .await?;
            tx.commit().await.map_err(crate::db::DbError::query("commit"))?;
            drop(client);
            if claimed {
                self.start(kind, slot, epoch, 1, backup_id);
            }
        }
        Ok(())
    }

    /// On becoming leader at `epoch`: settles the slots lost leaders left running, and reads
    /// where each schedule's record ends.
    async fn take_over(self: &Arc<Self>, epoch: i64) -> Result<BTreeMap<ScheduleKind, Cursor>, BackupError> {
        // A lost leader's backup may be complete in the store but not yet in the inventory.
        if let Err(error) = self.backups.rebuild_inventory().await {
            tracing::warn!(%error, "schedules: the inventory could not be rebuilt before the catch-up");
        }
        let interrupted = {
            let client = self.db.get().await?;
            slots::running_before(&*client, epoch).await?
        };
        for slot in interrupted {
            let ours = self.lock_in_flight().contains(&(slot.kind, slot.slot_at));
            if !ours {
                self.settle_interrupted(slot, epoch).await?;
            }
        }
        let now = OffsetDateTime::now_utc();
        let mut cursors = BTreeMap::new();
        for (kind, calendar) in self.schedules.configured() {
            let recorded = {
                let client = self.db.get().await?;
                slots::newest(&*client, kind).await?
            };
            // A schedule with no record starts now: slots before it were never asked for.
            let recorded = recorded.unwrap_or(now);
            cursors.insert(
                kind,
                Cursor {
                    recorded,
                    next: calendar.next_after(recorded),
                },
            );
        }
        Ok(cursors)
    }

    /// A slot left `running` by a leader that is gone: credited if its backup completed, run
    /// again if it is still within the grace, else recorded as interrupted.
    async fn settle_interrupted(self: &Arc<Self>, slot: SlotRecord, epoch: i64) -> Result<(), BackupError> {
        let lost = format!(
            "its leader `{}` (epoch {}) was lost before it finished",
            slot.node_id, slot.epoch
        );
        let completed = match (&slot.kind, &slot.backup_id) {
            (ScheduleKind::Backup, Some(backup_id)) => self
                .backups
                .records()
                .await?
                .iter()
                .any(|r| r.backup_id == *backup_id && r.status == BackupStatus::Completed),
            _ => false,
        };
        let within_grace = OffsetDateTime::now_utc() - slot.slot_at <= self.schedules.grace;
        let mut client = self.db.get().await?;
        let tx = self.backups.begin_fenced(&mut client, epoch).await?;
        if !completed && within_grace {
            let backup_id = (slot.kind == ScheduleKind::Backup).then(crate::backup::service::new_backup_id);
            let by = self.claimant(epoch);
            let reclaimed = slots::reclaim(&tx, &slot, by, backup_id.as_ref().map(BackupId::as_str)).await?;
            tx.commit().await.map_err(crate::db::DbError::query("commit"))?;
            if reclaimed {
                tracing::warn!(kind = slot.kind.as_str(), slot = %rfc3339(slot.slot_at), %lost, "schedule slot runs again");
                self.start(slot.kind, slot.slot_at, epoch, slot.attempt + 1, backup_id);
            }
            return Ok(());
        }
        let (state, detail) = if completed {
            (SlotState::Succeeded, format!("{lost}, after its backup completed"))
        } else {
            (
                SlotState::Interrupted,
                format!(
                    "{lost}, and it is older than the grace ({} s)",
                    self.schedules.grace.as_secs()
                ),
            )
        };
        let settled = slots::settle(&tx, &slot, state, &detail).await?;
        tx.commit().await.map_err(crate::db::DbError::query("commit"))?;
        if settled {
            self.backups.audit_quietly(
                EventType::ScheduleSlotFinished,
                serde_json::json!({
                    "kind": slot.kind.as_str(),
                    "slot": rfc3339(slot.slot_at),
                    "attempt": slot.attempt,
                    "outcome": state.as_str(),
                    "backup_id": slot.backup_id,
                    "detail": detail,
                    "epoch": epoch,
                }),
            );
        }
        Ok(())
    }

    /// Runs a claimed slot on a task of its own, so the driver keeps time meanwhile (a slot that
    /// comes while it runs is skipped as busy, not delayed).
    fn start(
        self: &Arc<Self>,
        kind: ScheduleKind,
        slot: OffsetDateTime,
        epoch: i64,
        attempt: i32,
        backup_id: Option<BackupId>,
    ) {
        self.backups.audit_quietly(
            EventType::ScheduleSlotStarted,
            serde_json::json!({
                "kind": kind.as_str(),
                "slot": rfc3339(slot),
                "attempt": attempt,
                "backup_id": backup_id,
                "epoch": epoch,
            }),
        );
        tracing::info!(kind = kind.as_str(), slot = %rfc3339(slot), attempt, "schedule slot started");
        self.lock_in_flight().insert((kind, slot));
        let scheduler = self.clone();
        tokio::spawn(async move {
            let (state, backup_id, detail) = match backup_id {
                Some(backup_id) => scheduler.run_backup(backup_id).await,
                None => scheduler.run_drill().await,
            };
            scheduler
                .finish(kind, slot, epoch, attempt, state, backup_id, detail)
                .await;
            scheduler.lock_in_flight().remove(&(kind, slot));
        });
    }

    /// A scheduled backup, then retention.
    async fn run_backup(&self, backup_id: BackupId) -> (SlotState, Option<String>, String) {
        match self.backups.create_with_id(backup_id.clone()).await {
            Ok(record) => {
                let retention = match self.backups.prune(false).await {
                    Ok(report) => format!("retention deleted {} backup(s)", report.deleted.len()),
                    Err(error) => {
                        tracing::warn!(%error, "retention after a scheduled backup failed");
                        format!("retention failed: {error}")
                    }
                };
                (SlotState::Succeeded, Some(record.backup_id), retention)
            }
            Err(BackupError::Busy) => (SlotState::Skipped, None, SKIPPED_BUSY.to_owned()),
            Err(error) => (SlotState::Failed, Some(backup_id.to_string()), error.to_string()),
        }
    }

    /// A scheduled drill of the newest backup, into a scratch database.
    async fn run_drill(&self) -> (SlotState, Option<String>, String) {
        match self.backups.verify(WhichBackup::Latest, VerifyRequest::default()).await {
            Ok(report) => {
                let outcome = report.outcome.as_str();
                let state = if outcome == "proven" {
                    SlotState::Succeeded
                } else {
                    SlotState::Failed
                };
                let mut detail = format!("drill outcome {outcome}");
                if let Some(error) = &report.error {
                    detail.push_str(&format!(": {error}"));
                } else if !report.differences.is_empty() {
                    detail.push_str(&format!(": {} difference(s)", report.differences.len()));
                }
                (state, Some(report.backup_id.to_string()), detail)
            }
            Err(BackupError::Busy) => (SlotState::Skipped, None, SKIPPED_BUSY.to_owned()),
            Err(BackupError::NotFound(_)) => (
                SlotState::Skipped,
                None,
                "the repository holds no backup to verify yet".to_owned(),
            ),
            Err(error) => (SlotState::Failed, None, error.to_string()),
        }
    }

    /// Records the slot's outcome and audits it; retried while the database does not answer.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        kind: ScheduleKind,
        slot: OffsetDateTime,
        epoch: i64,
        attempt: i32,
        state: SlotState,
        backup_id: Option<String>,
        detail: String,
    ) {
        let by = self.claimant(epoch);
        for tried in 1..=FINISH_ATTEMPTS {
            let written = async {
                let client = self.db.get().await?;
                slots::finish(&*client, kind, slot, by, state, backup_id.as_deref(), Some(&detail)).await
            }
            .await;
            match written {
                Ok(true) => break,
                Ok(false) => {
                    tracing::warn!(kind = kind.as_str(), slot = %rfc3339(slot), "a new leader took this schedule slot over; its outcome here is only audited");
                    break;
                }
                Err(error) if tried < FINISH_ATTEMPTS => {
                    tracing::debug!(%error, tried, "could not record a schedule slot's outcome; retrying");
                    tokio::time::sleep(RETRY).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "a schedule slot's outcome could not be recorded; the next leader settles it")
                }
            }
        }
        tracing::info!(kind = kind.as_str(), slot = %rfc3339(slot), outcome = state.as_str(), %detail, "schedule slot finished");
        self.backups.audit_quietly(
            EventType::ScheduleSlotFinished,
            serde_json::json!({
                "kind": kind.as_str(),
                "slot": rfc3339(slot),
                "attempt": attempt,
                "outcome": state.as_str(),
                "backup_id": backup_id,
                "detail": detail,
                "epoch": epoch,
            }),
        );
    }

    /// `GET /v1/ha/schedule`: this node's schedules with the slots recorded for every node.
    pub async fn report(&self) -> Result<ScheduleReport, BackupError> {
        let now = OffsetDateTime::now_utc();
        let client = self.db.get().await?;
        let mut schedules = Vec::new();
        for kind in ScheduleKind::ALL {
            let calendar = self.schedules.of(kind);
            let not_run = [SlotState::Missed, SlotState::Interrupted];
            let ran = [
                SlotState::Running,
                SlotState::Succeeded,
                SlotState::Failed,
                SlotState::Skipped,
            ];
            schedules.push(ScheduleView {
                kind,
                expression: calendar.map(|c| c.expression().to_owned()),
                next_slots: calendar.map(|c| c.upcoming(now, 3)).unwrap_or_default(),
                last_run: slots::recent(&*client, kind, &ran, 1).await?.into_iter().next(),
                recent: slots::recent(&*client, kind, &[], 20).await?,
                missed: slots::recent(&*client, kind, &not_run, 20).await?,
                missed_total: slots::count(&*client, kind, &not_run).await?,
            });
        }
        Ok(ScheduleReport {
            node_id: self.backups.state.node_id.to_string(),
            leader: self.backups.state.leader_epoch().is_some(),
            timezone: self.schedules.timezone.clone(),
            grace_s: self.schedules.grace.as_secs(),
            schedules,
        })
    }

    fn expression(&self, kind: ScheduleKind) -> String {
        self.schedules
            .of(kind)
            .map(|c| c.expression().to_owned())
            .unwrap_or_default()
    }

    fn claimant(&self, epoch: i64) -> Claimant<'_> {
        Claimant {
            node_id: self.backups.state.node_id.as_str(),
            epoch,
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, BTreeSet<(ScheduleKind, OffsetDateTime)>> {
        self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
