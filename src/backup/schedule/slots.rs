//! `autonomy_ha.schedule_slots`: one row per slot, inserted under the lease's fence, so a slot
//! is claimed once across every node and failover; then its outcome.

use time::OffsetDateTime;
use tokio_postgres::{GenericClient, Row, Transaction};

use crate::{
    api::{ScheduleKind, SlotRecord, SlotState},
    db::DbError,
};

/// How many slot rows of each kind are kept (the audit trail keeps every one).
pub const KEPT_ROWS: i64 = 1000;

const COLUMNS: &str =
    "kind, slot_at, state, expression, attempt, node_id, epoch, claimed_at, finished_at, backup_id, detail";

fn record_of(row: &Row) -> Result<SlotRecord, DbError> {
    let kind: String = row.get(0);
    let state: String = row.get(2);
    Ok(SlotRecord {
        kind: ScheduleKind::parse(&kind).unwrap_or(ScheduleKind::Backup),
        slot_at: row.get(1),
        state: SlotState::parse(&state).unwrap_or(SlotState::Failed),
        expression: row.get(3),
        attempt: row.get(4),
        node_id: row.get(5),
        epoch: row.get(6),
        claimed_at: row.get(7),
        finished_at: row.get(8),
        backup_id: row.get(9),
        detail: row.get(10),
    })
}

/// Who records a slot: the leader at its epoch, under its fence.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub node_id: &'a str,
    pub epoch: i64,
}

/// Claims `slot` for running: true if this call inserted it (no node ever had), false if it
/// is recorded already. Runs in `tx`, which the caller has checked the fence in.
pub async fn claim(
    tx: &Transaction<'_>,
    kind: ScheduleKind,
    slot: OffsetDateTime,
    expression: &str,
    by: Claimant<'_>,
    backup_id: Option<&str>,
) -> Result<bool, DbError> {
    let inserted = tx
        .execute(
            "INSERT INTO autonomy_ha.schedule_slots
                    (kind, slot_at, state, expression, attempt, node_id, epoch, claimed_at, backup_id)
             VALUES ($1, $2, 'running', $3, 1, $4, $5, now(), $6)
             ON CONFLICT (kind, slot_at) DO NOTHING",
            &[&kind.as_str(), &slot, &expression, &by.node_id, &by.epoch, &backup_id],
        )
        .await
        .map_err(DbError::query("claim a schedule slot"))?;
    trim(tx, kind).await?;
    Ok(inserted == 1)
}

/// Claims again a slot left `running` at `lost_epoch` by a leader that is gone: true if it was
/// still that one's (so this call now owns attempt + 1). In the caller's fenced `tx`.
pub async fn reclaim(
    tx: &Transaction<'_>,
    slot: &SlotRecord,
    by: Claimant<'_>,
    backup_id: Option<&str>,
) -> Result<bool, DbError> {
    let updated = tx
        .execute(
            "UPDATE autonomy_ha.schedule_slots
                SET attempt = attempt + 1, node_id = $3, epoch = $4, claimed_at = now(), backup_id = $5
              WHERE kind = $1 AND slot_at = $2 AND state = 'running' AND epoch = $6 AND attempt = $7",
            &[
                &slot.kind.as_str(),
                &slot.slot_at,
                &by.node_id,
                &by.epoch,
                &backup_id,
                &slot.epoch,
                &slot.attempt,
            ],
        )
        .await
        .map_err(DbError::query("claim an interrupted schedule slot again"))?;
    Ok(updated == 1)
}

/// Records `slots` as missed, each with its reason, unless already recorded. In the caller's
/// fenced `tx`: only the leader says a slot will not run.
pub async fn record_missed(
    tx: &Transaction<'_>,
    kind: ScheduleKind,
    expression: &str,
    by: Claimant<'_>,
    slots: &[(OffsetDateTime, String)],
) -> Result<u64, DbError> {
    let mut recorded = 0;
    for (slot, reason) in slots {
        recorded += tx
            .execute(
                "INSERT INTO autonomy_ha.schedule_slots
                        (kind, slot_at, state, expression, attempt, node_id, epoch, claimed_at, finished_at, detail)
                 VALUES ($1, $2, 'missed', $3, 0, $4, $5, now(), now(), $6)
                 ON CONFLICT (kind, slot_at) DO NOTHING",
                &[&kind.as_str(), slot, &expression, &by.node_id, &by.epoch, reason],
            )
            .await
            .map_err(DbError::query("record a missed schedule slot"))?;
    }
    trim(tx, kind).await?;
    Ok(recorded)
}

/// Writes the outcome of the attempt `by` owns; false if the slot is no longer its (a new
/// leader took it over). Not fenced: an outcome is a fact, whoever leads now.
pub async fn finish(
    client: &impl GenericClient,
    kind: ScheduleKind,
    slot: OffsetDateTime,
    by: Claimant<'_>,
    state: SlotState,
    backup_id: Option<&str>,
    detail: Option<&str>,
) -> Result<bool, DbError> {
    let updated = client
        .execute(
            "UPDATE autonomy_ha.schedule_slots
                SET state = $4, finished_at = now(), backup_id = coalesce($5, backup_id), detail = $6
              WHERE kind = $1 AND slot_at = $2 AND epoch = $3 AND state = 'running'",
            &[&kind.as_str(), &slot, &by.epoch, &state.as_str(), &backup_id, &detail],
        )
        .await
        .map_err(DbError::query("record a schedule slot's outcome"))?;
    Ok(updated == 1)
}

/// Settles a slot left `running` at its epoch by a lost leader (`slot.epoch` guards against a
/// concurrent settle). In the caller's fenced `tx`.
pub async fn settle(tx: &Transaction<'_>, slot: &SlotRecord, state: SlotState, detail: &str) -> Result<bool, DbError> {
    let updated = tx
        .execute(
            "UPDATE autonomy_ha.schedule_slots
                SET state = $3, finished_at = now(), detail = $4
              WHERE kind = $1 AND slot_at = $2 AND state = 'running' AND epoch = $5 AND attempt = $6",
            &[
                &slot.kind.as_str(),
                &slot.slot_at,
                &state.as_str(),
                &detail,
                &slot.epoch,
                &slot.attempt,
            ],
        )
        .await
        .map_err(DbError::query("settle an interrupted schedule slot"))?;
    Ok(updated == 1)
}

/// The newest slot recorded of `kind`, whatever its state: slots after it are unhandled.
pub async fn newest(client: &impl GenericClient, kind: ScheduleKind) -> Result<Option<OffsetDateTime>, DbError> {
    let row = client
        .query_one(
            "SELECT max(slot_at) FROM autonomy_ha.schedule_slots WHERE kind = $1",
            &[&kind.as_str()],
        )
        .await
        .map_err(DbError::query("read the newest schedule slot"))?;
    Ok(row.get(0))
}

/// Slots still `running` under an epoch older than `epoch`: their leader is gone.
pub async fn running_before(client: &impl GenericClient, epoch: i64) -> Result<Vec<SlotRecord>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM autonomy_ha.schedule_slots
                  WHERE state = 'running' AND epoch < $1 ORDER BY slot_at"
            ),
            &[&epoch],
        )
        .await
        .map_err(DbError::query("read the interrupted schedule slots"))?;
    rows.iter().map(record_of).collect()
}

/// The newest `limit` slots of `kind` in `states` (every state when empty), newest first.
pub async fn recent(
    client: &impl GenericClient,
    kind: ScheduleKind,
    states: &[SlotState],
    limit: i64,
) -> Result<Vec<SlotRecord>, DbError> {
    let states: Vec<&str> = states.iter().map(|state| state.as_str()).collect();
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM autonomy_ha.schedule_slots
                  WHERE kind = $1 AND (cardinality($2::text[]) = 0 OR state = ANY($2))
                  ORDER BY slot_at DESC LIMIT $3"
            ),
            &[&kind.as_str(), &states, &limit],
        )
        .await
        .map_err(DbError::query("read the schedule's slots"))?;
    rows.iter().map(record_of).collect()
}

/// How many slots of `kind` are recorded in `states`.
pub async fn count(client: &impl GenericClient, kind: ScheduleKind, states: &[SlotState]) -> Result<i64, DbError> {
    let states: Vec<&str> = states.iter().map(|state| state.as_str()).collect();
    let row = client
        .query_one(
            "SELECT count(*) FROM autonomy_ha.schedule_slots WHERE kind = $1 AND state = ANY($2)",
            &[&kind.as_str(), &states],
        )
        .await
        .map_err(DbError::query("count the schedule's slots"))?;
    Ok(row.get(0))
}

/// Keeps the newest [`KEPT_ROWS`] slots of `kind`.
async fn trim(tx: &Transaction<'_>, kind: ScheduleKind) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM autonomy_ha.schedule_slots
          WHERE kind = $1 AND state <> 'running' AND slot_at < (
                SELECT slot_at FROM autonomy_ha.schedule_slots WHERE kind = $1
                 ORDER BY slot_at DESC OFFSET $2 LIMIT 1)",
        &[&kind.as_str(), &(KEPT_ROWS - 1)],
    )
    .await
    .map_err(DbError::query("trim old schedule slots"))?;
    Ok(())
}
