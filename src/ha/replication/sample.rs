//! One read of pg_stat_replication and the physical replication slots.

use tokio_postgres::Client;

use super::{LagColumns, StandbyPositions};
use crate::db::DbError;

/// A walsender or an idle physical slot, as one sample saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawStandby {
    /// None for a slot without a connected standby.
    pub application_name: Option<String>,
    pub slot_name: Option<String>,
    /// None when connected but hidden from this role (it lacks pg_read_all_stats), or for an
    /// idle slot.
    pub state: Option<String>,
    pub connected: bool,
    pub positions: StandbyPositions,
    /// None where PostgreSQL reports NULL: caught up, or nothing connected.
    pub lag: LagColumns<Option<f64>>,
    /// Bytes between the primary's flush position and the standby's write / replay position
    /// (for an idle slot: its restart_lsn).
    pub unwritten_bytes: Option<i64>,
    pub unreplayed_bytes: Option<i64>,
}

/// What one sample read.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The primary's flush LSN; None when the server is itself in recovery.
    pub primary_lsn: Option<String>,
    pub standbys: Vec<RawStandby>,
}

/// pg_basebackup streams its WAL through a walsender of its own; it is a copy in progress,
/// not a standby, so it is never tracked.
const BASE_BACKUP_APPLICATION: &str = "pg_basebackup";

/// Reads every walsender of a physical standby, and every physical slot nobody streams from.
/// Positions are measured from the primary's flush LSN: walsenders ship only flushed WAL, so
/// against the write LSN a caught-up standby would look behind until the WAL writer flushes.
pub async fn read(client: &Client) -> Result<Sample, DbError> {
    let rows = client
        .query(
            "WITH here AS (
                 SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn() END AS lsn
             )
             SELECT r.application_name, s.slot_name, r.state, true, host(r.client_addr),
                    r.sent_lsn::text, r.write_lsn::text, r.flush_lsn::text, r.replay_lsn::text,
                    (extract(epoch FROM r.write_lag) * 1000)::float8,
                    (extract(epoch FROM r.flush_lag) * 1000)::float8,
                    (extract(epoch FROM r.replay_lag) * 1000)::float8,
                    pg_wal_lsn_diff(here.lsn, r.write_lsn)::bigint,
                    pg_wal_lsn_diff(here.lsn, r.replay_lsn)::bigint,
                    here.lsn::text
               FROM pg_stat_replication r
               CROSS JOIN here
               LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
              WHERE r.application_name IS DISTINCT FROM $1
                AND (s.slot_type IS NULL OR s.slot_type = 'physical')
             UNION ALL
             SELECT NULL, s.slot_name, NULL, false, NULL,
                    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                    pg_wal_lsn_diff(here.lsn, s.restart_lsn)::bigint,
                    pg_wal_lsn_diff(here.lsn, s.restart_lsn)::bigint,
                    here.lsn::text
               FROM pg_replication_slots s
               CROSS JOIN here
              WHERE s.slot_type = 'physical' AND s.active_pid IS NULL",
            &[&BASE_BACKUP_APPLICATION],
        )
        .await
        .map_err(DbError::query("read pg_stat_replication"))?;
    let primary_lsn = match rows.first() {
        Some(row) => row.get(14),
        None => client
            .query_one(
                "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END",
                &[],
            )
            .await
            .map_err(DbError::query("read the current WAL position"))?
            .get(0),
    };
    let standbys = rows
        .iter()
        .map(|row| RawStandby {
            application_name: row.get(0),
            slot_name: row.get(1),
            state: row.get(2),
            connected: row.get(3),
            positions: StandbyPositions {
                client_addr: row.get(4),
                sent_lsn: row.get(5),
                write_lsn: row.get(6),
                flush_lsn: row.get(7),
                replay_lsn: row.get(8),
            },
            lag: LagColumns {
                write_lag_ms: row.get(9),
                flush_lag_ms: row.get(10),
                replay_lag_ms: row.get(11),
            },
            unwritten_bytes: row.get(12),
            unreplayed_bytes: row.get(13),
        })
        .collect();
    Ok(Sample { primary_lsn, standbys })
}
