//! `autonomy_ha.schedule_slots`: one row per slot, inserted under the lease's fence, so a slot
//! is claimed once across every node and failover; then its outcome.

use time::OffsetDateTime;
use tokio_postgres::{types::ToSql, GenericClient, Row, Transaction};

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
        kind: ScheduleKind::parse(&kind).ok_or(DbError::Unknown {
            what: "schedule_slots.kind",
            value: kind,
        })?,
        slot_at: row.get(1),
        state: SlotState::parse(&state).ok_or(DbError::Unknown {
            what: "schedule_slots.state",
            value: state,
        })?,
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

/// One attempt at a slot: which, by whom (the leader at its epoch), the how-many-th.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attempt<'a> {
    pub kind: ScheduleKind,
    pub slot: OffsetDateTime,
    pub node_id: &'a str,
    pub epoch: i64,
    pub attempt: i32,
}

impl<'a> Attempt<'a> {
    /// The attempt a recorded row names.
    pub fn of(record: &'a SlotRecord) -> Self {
        Self {
            kind: record.kind,
            slot: record.slot_at,
            node_id: &record.node_id,
            epoch: record.epoch,
            attempt: record.attempt,
        }
    }
}

/// Claims the first attempt of a slot: true if this call inserted it (no node ever had), false
/// if it is recorded already. In `tx`, which the caller has checked the fence in.
pub async fn claim(
    tx: &Transaction<'_>,
    first: &Attempt<'_>,
    expression: &str,
    backup_id: Option<&str>,
) -> Result<bool, DbError> {
    let inserted = tx
        .execute(
            "INSERT INTO autonomy_ha.schedule_slots
                    (kind, slot_at, state, expression, attempt, node_id, epoch, claimed_at, backup_id)
             VALUES ($1, $2, 'running', $3, $4, $5, $6, now(), $7)
             ON CONFLICT (kind, slot_at) DO NOTHING",
            &[
                &first.kind.as_str(),
                &first.slot,
                &expression,
                &first.attempt,
                &first.node_id,
                &first.epoch,
                &backup_id,
            ],
        )
        .await
        .map_err(DbError::query("claim a schedule slot"))?;
    trim(tx, first.kind).await?;
    Ok(inserted == 1)
}

/// Claims `slot` again as `next` (its attempt one more than the row's): true if the row was
/// still the one read, `running`, so this call now owns it. In the caller's fenced `tx`.
pub async fn reclaim(
    tx: &Transaction<'_>,
    slot: &SlotRecord,
    next: &Attempt<'_>,
    backup_id: Option<&str>,
) -> Result<bool, DbError> {
    update_running(
        tx,
        &Attempt::of(slot),
        "attempt = $6, node_id = $7, epoch = $8, claimed_at = now(), backup_id = $9",
        &[&next.attempt, &next.node_id, &next.epoch, &backup_id],
        "claim an interrupted schedule slot again",
    )
    .await
}

/// Records `slots` (time and reason) as missed, unless already recorded; returns the ones this
/// call recorded. In the caller's fenced `tx`: only the leader says a slot will not run.
pub async fn record_missed(
    tx: &Transaction<'_>,
    kind: ScheduleKind,
    expression: &str,
    by: (&str, i64),
    slots: &[(OffsetDateTime, String)],
) -> Result<Vec<OffsetDateTime>, DbError> {
    let (times, reasons): (Vec<OffsetDateTime>, Vec<&str>) =
        slots.iter().map(|(slot, reason)| (*slot, reason.as_str())).unzip();
    // One statement: the lease row is held FOR SHARE until the commit, and renewals wait on it.
    let rows = tx
        .query(
            "INSERT INTO autonomy_ha.schedule_slots
                    (kind, slot_at, state, expression, attempt, node_id, epoch, claimed_at, finished_at, detail)
             SELECT $1, slot_at, 'missed', $2, 0, $3, $4, now(), now(), detail
               FROM unnest($5::timestamptz[], $6::text[]) AS missed(slot_at, detail)
             ON CONFLICT (kind, slot_at) DO NOTHING
             RETURNING slot_at",
            &[&kind.as_str(), &expression, &by.0, &by.1, &times, &reasons],
        )
        .await
        .map_err(DbError::query("record missed schedule slots"))?;
    trim(tx, kind).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Writes the outcome of `attempt`; false if the slot is no longer its (a new leader took it
/// over). Not fenced: an outcome is a fact, whoever leads now.
pub async fn finish(
    client: &impl GenericClient,
    attempt: &Attempt<'_>,
    state: SlotState,
    backup_id: Option<&str>,
    detail: &str,
) -> Result<bool, DbError> {
    update_running(
        client,
        attempt,
        "state = $6, finished_at = now(), backup_id = $7, detail = $8",
        &[&state.as_str(), &backup_id, &detail],
        "record a schedule slot's outcome",
    )
    .await
}

/// Settles a slot left `running` by an attempt that is gone, if the row is still that
/// attempt's. In the caller's fenced `tx`.
pub async fn settle(tx: &Transaction<'_>, slot: &SlotRecord, state: SlotState, detail: &str) -> Result<bool, DbError> {
    update_running(
        tx,
        &Attempt::of(slot),
        "state = $6, finished_at = now(), detail = $7",
        &[&state.as_str(), &detail],
        "settle an interrupted schedule slot",
    )
    .await
}

/// Sets `set` (its parameters from $6 on are `values`) on the row of `attempt`, if that row is
/// still this very attempt and `running`; true if it was.
async fn update_running(
    client: &impl GenericClient,
    attempt: &Attempt<'_>,
    set: &str,
    values: &[&(dyn ToSql + Sync)],
    doing: &'static str,
) -> Result<bool, DbError> {
    let kind = attempt.kind.as_str();
    let mut params: Vec<&(dyn ToSql + Sync)> =
        vec![&kind, &attempt.slot, &attempt.node_id, &attempt.epoch, &attempt.attempt];
    params.extend_from_slice(values);
    let updated = client
        .execute(
            &format!(
                "UPDATE autonomy_ha.schedule_slots SET {set}
                  WHERE kind = $1 AND slot_at = $2 AND state = 'running'
                    AND node_id = $3 AND epoch = $4 AND attempt = $5"
            ),
            &params,
        )
        .await
        .map_err(DbError::query(doing))?;
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

/// The row of one slot, if recorded.
pub async fn one(
    client: &impl GenericClient,
    kind: ScheduleKind,
    slot: OffsetDateTime,
) -> Result<Option<SlotRecord>, DbError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM autonomy_ha.schedule_slots WHERE kind = $1 AND slot_at = $2"),
            &[&kind.as_str(), &slot],
        )
        .await
        .map_err(DbError::query("read a schedule slot"))?;
    row.as_ref().map(record_of).transpose()
}

/// Every slot still `running`, oldest first.
pub async fn running(client: &impl GenericClient) -> Result<Vec<SlotRecord>, DbError> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM autonomy_ha.schedule_slots WHERE state = 'running' ORDER BY slot_at"),
            &[],
        )
        .await
        .map_err(DbError::query("read the running schedule slots"))?;
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

/// How many slots of `kind` are recorded in `states` (among the rows kept).
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

/// Keeps the newest [`KEPT_ROWS`] slots of `kind` (and every running one).
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
