//! The schedules' driver: on the leader, records what `plan::due` decides (slots claimed under
//! the lease's fence and run on tasks of their own, missed slots with their reasons) and
//! settles slots whose attempt ended without an outcome; on other nodes it only watches.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use time::OffsetDateTime;
use tokio::sync::watch;

use super::{
    calendar::Calendar,
    plan::{self, Due},
    slots::{self, Attempt},
    ScheduleKind, ScheduleReport, ScheduleView, Schedules, SlotRecord, SlotState,
};
use crate::{
    api::ProofOutcome,
    audit::EventType,
    backup::{
        drill::{VerifyRequest, WhichBackup},
        service::new_backup_id,
        BackupError, BackupService, BackupStatus,
    },
    db::{DbError, SharedClient},
    ident::BackupId,
};

/// How often a node looks at its role, and the longest the driver sleeps: a new leader starts
/// its catch-up within this, and nothing else wakes it between slots.
const ROLE_POLL: Duration = Duration::from_millis(250);
/// After a database error, the driver tries again this much later.
const RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two tries of writing a slot's outcome while the database does not
/// take it (the first wait is [`RETRY`], each next one twice as long).
const FINISH_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A slot whose attempts keep ending without an outcome (each one's leader lost mid-run) is
/// recorded `interrupted` after this many, instead of taking down leader after leader.
pub const MAX_ATTEMPTS: i32 = 3;
const SKIPPED_BUSY: &str = "another backup, drill or restore was running on the leader";

/// An attempt this process runs now: kind, slot, epoch, attempt (the node is this one).
type Running = (ScheduleKind, OffsetDateTime, i64, i32);

pub struct Scheduler {
    pub schedules: Schedules,
    backups: Arc<BackupService>,
    /// The driver's own session: slot claims never wait behind a backup's statements.
    db: Arc<SharedClient>,
    /// The attempts running in this process: a sweep leaves them to their task.
    in_flight: Mutex<BTreeSet<Running>>,
}

/// What the leader knows of one schedule between wake-ups.
struct Cursor {
    /// The newest slot recorded; every later one is unhandled.
    recorded: OffsetDateTime,
    /// When to look next: the first slot after the last look.
    next: Option<OffsetDateTime>,
}

/// What an attempt ended with.
struct Outcome {
    state: SlotState,
    backup_id: Option<String>,
    detail: String,
}

/// Takes an attempt off the in-flight set however its task ends.
struct InFlight {
    scheduler: Arc<Scheduler>,
    key: Running,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.scheduler.lock_in_flight().remove(&self.key);
    }
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
                                tracing::warn!(%error, epoch, "schedules: could not settle or read the recorded slots; retrying");
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
                _ = tokio::time::sleep(wake) => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    /// On becoming leader at `epoch`: settles what lost attempts left running, and reads where
    /// each schedule's record ends.
    async fn take_over(self: &Arc<Self>, epoch: i64) -> Result<BTreeMap<ScheduleKind, Cursor>, BackupError> {
        self.sweep(epoch).await;
        let now = OffsetDateTime::now_utc();
        let mut cursors = BTreeMap::new();
        for (kind, calendar) in self.schedules.configured() {
            let recorded = {
                let client = self.db.get().await?;
                slots::newest(&*client, kind).await?
            };
            // A schedule with no record starts now: slots before it were never asked for.
            let recorded = recorded.unwrap_or(now);
            let next = calendar.next_after(recorded);
            cursors.insert(kind, Cursor { recorded, next });
        }
        Ok(cursors)
    }

    /// Handles what is due for each schedule; returns how long to sleep.
    async fn step(self: &Arc<Self>, epoch: i64, cursors: &mut BTreeMap<ScheduleKind, Cursor>) -> Duration {
        let now = OffsetDateTime::now_utc();
        let mut wake = ROLE_POLL;
        for (kind, calendar) in self.schedules.configured() {
            let Some(cursor) = cursors.get_mut(&kind) else { continue };
            if cursor.next.is_some_and(|next| next <= now) {
                if let Err(error) = self.catch_up(kind, calendar, cursor, epoch, now).await {
                    tracing::warn!(%error, kind = kind.as_str(), "schedules: could not record a due slot; retrying");
                    return RETRY;
                }
                // Every slot up to now is handled, so the next look is in the future whatever
                // the record says (a clock that stepped back cannot make this loop spin).
                cursor.next = calendar.next_after(now);
            }
            if let Some(next) = cursor.next {
                let until = (next - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
                wake = wake.min(until.unsigned_abs());
            }
        }
        wake
    }

    /// Records the slots due for `kind` up to `now`; the cursor moves past each part once it
    /// is recorded, so a retry repeats only what failed.
    async fn catch_up(
        self: &Arc<Self>,
        kind: ScheduleKind,
        calendar: &Calendar,
        cursor: &mut Cursor,
        epoch: i64,
        now: OffsetDateTime,
    ) -> Result<(), BackupError> {
        self.sweep(epoch).await;
        let due = plan::due(calendar, cursor.recorded, now, self.schedules.grace);
        if let Some((newest_missed, _)) = due.missed.first() {
            self.record_missed(kind, calendar, &due, epoch).await?;
            cursor.recorded = cursor.recorded.max(*newest_missed);
        }
        if let Some(slot) = due.run {
            self.claim_and_start(kind, calendar, slot, epoch).await?;
            cursor.recorded = slot;
        }
        Ok(())
    }

    /// Records the slots `due` names missed, under the fence at `epoch`, and audits those this
    /// call recorded (a retry finds them recorded and audits nothing twice).
    async fn record_missed(
        &self,
        kind: ScheduleKind,
        calendar: &Calendar,
        due: &Due,
        epoch: i64,
    ) -> Result<(), BackupError> {
        let reasons: Vec<(OffsetDateTime, String)> = due
            .missed
            .iter()
            .map(|(slot, reason)| (*slot, reason.describe(self.schedules.grace)))
            .collect();
        let recorded = {
            let mut client = self.db.get().await?;
            let tx = self.backups.begin_fenced(&mut client, epoch).await?;
            let by = (self.backups.state.node_id.as_str(), epoch);
            let recorded = slots::record_missed(&tx, kind, calendar.expression(), by, &reasons).await?;
            tx.commit().await.map_err(DbError::query("commit"))?;
            recorded
        };
        if recorded.is_empty() {
            return Ok(());
        }
        // The slots counted beyond the listed ones belong to the first recording only.
        let unlisted = if recorded.len() == due.missed.len() {
            due.more_missed
        } else {
            0
        };
        let count = recorded.len() as u64 + unlisted;
        tracing::warn!(kind = kind.as_str(), count, "schedule slots missed");
        self.backups.audit_quietly(
            EventType::ScheduleSlotsMissed,
            serde_json::json!({
                "kind": kind.as_str(),
                "count": count,
                "slots": recorded.iter().map(|slot| rfc3339(*slot)).collect::<Vec<_>>(),
                "unlisted": unlisted,
                "reasons": reasons.iter().map(|(_, reason)| reason).collect::<BTreeSet<_>>(),
                "epoch": epoch,
            }),
        );
        Ok(())
    }

    /// Claims the first attempt at `slot` under the fence at `epoch` and starts it, unless the
    /// slot is recorded already.
    async fn claim_and_start(
        self: &Arc<Self>,
        kind: ScheduleKind,
        calendar: &Calendar,
        slot: OffsetDateTime,
        epoch: i64,
    ) -> Result<(), BackupError> {
        let first = (kind, slot, epoch, 1);
        let backup_id = (kind == ScheduleKind::Backup).then(new_backup_id);
        let claimed = {
            let mut client = self.db.get().await?;
            let tx = self.backups.begin_fenced(&mut client, epoch).await?;
            let claimed = slots::claim(&tx, &self.attempt(first), calendar.expression(), id_str(&backup_id)).await?;
            tx.commit().await.map_err(DbError::query("commit"))?;
            claimed
        };
        if claimed {
            self.start(first, backup_id);
        }
        Ok(())
    }

    /// [`Self::settle_orphans`], best effort: claims do not depend on it, so a store or
    /// database that fails it delays only the settling (to the next sweep), never a slot.
    async fn sweep(self: &Arc<Self>, epoch: i64) {
        if let Err(error) = self.settle_orphans(epoch).await {
            tracing::warn!(%error, "schedules: could not settle the slots left running; trying again at the next slot");
        }
    }

    /// Settles every slot left `running` by an attempt that no task runs any more: one of a
    /// lost leader, or of this node whose outcome could not be written. Epochs above `epoch`
    /// belong to a newer leader and are left to it.
    async fn settle_orphans(self: &Arc<Self>, epoch: i64) -> Result<(), BackupError> {
        let running = {
            let client = self.db.get().await?;
            slots::running(&*client).await?
        };
        let orphans: Vec<SlotRecord> = {
            let in_flight = self.lock_in_flight();
            let node_id = self.backups.state.node_id.as_str();
            running
                .into_iter()
                .filter(|slot| slot.epoch <= epoch)
                .filter(|slot| {
                    let key = (slot.kind, slot.slot_at, slot.epoch, slot.attempt);
                    !(slot.node_id == node_id && in_flight.contains(&key))
                })
                .collect()
        };
        if orphans.is_empty() {
            return Ok(());
        }
        // An orphan's backup may be complete in the store but not yet in the inventory; it is
        // credited, not run again, so the inventory must be whole first.
        self.backups.rebuild_inventory().await?;
        for slot in orphans {
            self.settle_orphan(slot, epoch).await?;
        }
        Ok(())
    }

    /// One orphan: credited if its backup completed, run again if it may be, else recorded
    /// interrupted with the reason.
    async fn settle_orphan(self: &Arc<Self>, slot: SlotRecord, epoch: i64) -> Result<(), BackupError> {
        let lost = format!(
            "attempt {} by `{}` at epoch {} ended without an outcome",
            slot.attempt, slot.node_id, slot.epoch
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
        let why_not_again = if completed {
            None
        } else if self.schedules.of(slot.kind).is_none() {
            Some("this leader has no such schedule".to_owned())
        } else if OffsetDateTime::now_utc() - slot.slot_at > self.schedules.grace {
            Some(format!(
                "it is older than the grace ({} s)",
                self.schedules.grace.as_secs()
            ))
        } else if slot.attempt >= MAX_ATTEMPTS {
            Some(format!("it was tried {} times", slot.attempt))
        } else {
            None
        };
        let mut client = self.db.get().await?;
        let tx = self.backups.begin_fenced(&mut client, epoch).await?;
        if !completed && why_not_again.is_none() {
            let next = (slot.kind, slot.slot_at, epoch, slot.attempt + 1);
            let backup_id = (slot.kind == ScheduleKind::Backup).then(new_backup_id);
            let reclaimed = slots::reclaim(&tx, &slot, &self.attempt(next), id_str(&backup_id)).await?;
            tx.commit().await.map_err(DbError::query("commit"))?;
            if reclaimed {
                tracing::warn!(kind = slot.kind.as_str(), slot = %rfc3339(slot.slot_at), %lost, "schedule slot runs again");
                self.start(next, backup_id);
            }
            return Ok(());
        }
        let (state, detail) = match why_not_again {
            None => (SlotState::Succeeded, format!("{lost}, after its backup completed")),
            Some(why) => (SlotState::Interrupted, format!("{lost}, and is not run again: {why}")),
        };
        let settled = slots::settle(&tx, &slot, state, &detail).await?;
        tx.commit().await.map_err(DbError::query("commit"))?;
        if settled {
            let key = (slot.kind, slot.slot_at, slot.epoch, slot.attempt);
            let outcome = Outcome {
                state,
                backup_id: slot.backup_id.clone(),
                detail,
            };
            self.audit_finished(key, &outcome);
        }
        Ok(())
    }

    /// Runs a claimed attempt on a task of its own, so the driver keeps time meanwhile (a slot
    /// that comes while it runs is skipped as busy, not delayed).
    fn start(self: &Arc<Self>, key: Running, backup_id: Option<BackupId>) {
        let (kind, slot, epoch, attempt) = key;
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
        self.lock_in_flight().insert(key);
        let guard = InFlight {
            scheduler: self.clone(),
            key,
        };
        tokio::spawn(async move {
            let scheduler = guard.scheduler.clone();
            let outcome = match backup_id {
                Some(backup_id) => scheduler.run_backup(backup_id).await,
                None => scheduler.run_drill().await,
            };
            scheduler.finish(key, outcome).await;
            drop(guard);
        });
    }

    /// A scheduled backup, then retention.
    async fn run_backup(&self, backup_id: BackupId) -> Outcome {
        match self.backups.create_with_id(backup_id.clone()).await {
            Ok(record) => {
                let detail = match self.backups.prune(false).await {
                    Ok(report) => format!("retention deleted {} backup(s)", report.deleted.len()),
                    Err(error) => {
                        tracing::warn!(%error, "retention after a scheduled backup failed");
                        format!("retention failed: {error}")
                    }
                };
                Outcome {
                    state: SlotState::Succeeded,
                    backup_id: Some(record.backup_id),
                    detail,
                }
            }
            Err(BackupError::Busy) => Outcome {
                state: SlotState::Skipped,
                backup_id: None,
                detail: SKIPPED_BUSY.to_owned(),
            },
            // The inventory holds the failed backup under this id.
            Err(error) => Outcome {
                state: SlotState::Failed,
                backup_id: Some(backup_id.to_string()),
                detail: error.to_string(),
            },
        }
    }

    /// A scheduled drill of the newest backup, into a scratch database.
    async fn run_drill(&self) -> Outcome {
        let (state, backup_id, detail) = match self.backups.verify(WhichBackup::Latest, VerifyRequest::default()).await
        {
            Ok(report) => {
                let mut detail = format!("drill outcome {}", report.outcome.as_str());
                if let Some(error) = &report.error {
                    detail.push_str(&format!(": {error}"));
                } else if !report.differences.is_empty() {
                    detail.push_str(&format!(": {} difference(s)", report.differences.len()));
                }
                let state = match report.outcome {
                    ProofOutcome::Proven => SlotState::Succeeded,
                    ProofOutcome::Differences | ProofOutcome::NotRun => SlotState::Failed,
                };
                (state, Some(report.backup_id.to_string()), detail)
            }
            Err(BackupError::Busy) => (SlotState::Skipped, None, SKIPPED_BUSY.to_owned()),
            Err(BackupError::NotFound(_)) => (
                SlotState::Skipped,
                None,
                "the repository holds no backup to verify yet".to_owned(),
            ),
            Err(error) => (SlotState::Failed, None, error.to_string()),
        };
        Outcome {
            state,
            backup_id,
            detail,
        }
    }

    /// Records the attempt's outcome, tried until the database takes it (or a new leader has
    /// taken the slot over), and audits it once written.
    async fn finish(&self, key: Running, outcome: Outcome) {
        let attempt = self.attempt(key);
        let mut wait = RETRY;
        let mut failed_before = false;
        loop {
            let written = async {
                let client = self.db.get().await?;
                if slots::finish(
                    &*client,
                    &attempt,
                    outcome.state,
                    outcome.backup_id.as_deref(),
                    &outcome.detail,
                )
                .await?
                {
                    return Ok(true);
                }
                // After a failed try, the write may have committed although its answer was lost.
                if !failed_before {
                    return Ok(false);
                }
                let row = slots::one(&*client, key.0, key.1).await?;
                Ok::<_, DbError>(row.is_some_and(|row| {
                    Attempt::of(&row) == attempt
                        && row.state == outcome.state
                        && row.detail.as_deref() == Some(&outcome.detail)
                }))
            }
            .await;
            match written {
                Ok(true) => break,
                Ok(false) => {
                    // A new leader settled or took over the slot: its outcome is the slot's.
                    tracing::warn!(kind = key.0.as_str(), slot = %rfc3339(key.1), outcome = outcome.state.as_str(), "a new leader took this schedule slot over; this attempt's outcome is only logged");
                    return;
                }
                Err(error) => {
                    if !failed_before {
                        tracing::warn!(%error, "could not record a schedule slot's outcome; retrying until the database takes it");
                    }
                    failed_before = true;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(FINISH_BACKOFF_MAX);
                }
            }
        }
        tracing::info!(kind = key.0.as_str(), slot = %rfc3339(key.1), outcome = outcome.state.as_str(), detail = %outcome.detail, "schedule slot finished");
        self.audit_finished(key, &outcome);
    }

    fn audit_finished(&self, (kind, slot, epoch, attempt): Running, outcome: &Outcome) {
        self.backups.audit_quietly(
            EventType::ScheduleSlotFinished,
            serde_json::json!({
                "kind": kind.as_str(),
                "slot": rfc3339(slot),
                "attempt": attempt,
                "outcome": outcome.state.as_str(),
                "backup_id": outcome.backup_id,
                "detail": outcome.detail,
                "epoch": epoch,
            }),
        );
    }

    /// `GET /v1/ha/schedule`: this node's schedules with the slots recorded for every node.
    pub async fn report(&self) -> Result<ScheduleReport, BackupError> {
        let now = OffsetDateTime::now_utc();
        let client = self.db.get().await?;
        let not_run = [SlotState::Missed, SlotState::Interrupted];
        let ran = [
            SlotState::Running,
            SlotState::Succeeded,
            SlotState::Failed,
            SlotState::Skipped,
        ];
        let mut schedules = Vec::new();
        for kind in ScheduleKind::ALL {
            let calendar = self.schedules.of(kind);
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

    /// `key` as this node's attempt.
    fn attempt(&self, (kind, slot, epoch, attempt): Running) -> Attempt<'_> {
        Attempt {
            kind,
            slot,
            node_id: self.backups.state.node_id.as_str(),
            epoch,
            attempt,
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, BTreeSet<Running>> {
        self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn id_str(backup_id: &Option<BackupId>) -> Option<&str> {
    backup_id.as_ref().map(BackupId::as_str)
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
