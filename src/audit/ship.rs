//! Ships this node's audit events into `autonomy_ha.audit_events`, the trail every node's API
//! answers `GET /v1/audit/events` from. The local file stays the record: an event is fsynced
//! there before anything else happens, and shipping only copies it. The shipper keeps its place
//! in the file (a byte offset, only ever advanced past lines the database took), so an event
//! written while the database is unreachable (quorum loss) waits in the file and arrives with
//! the first round that reaches the database again. Rows are deduplicated by event id: a
//! restarted node ships its file from the start again and changes nothing.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::sync::watch;

use super::{parse_line, AuditEvent, AuditLog};

/// How often the shipper retries when nothing woke it (the database was unreachable).
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How long one round may take before its session is dropped as hung (a cut-off database).
const ROUND_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this much of the file is read per round; a long backlog takes several rounds.
const ROUND_BYTES: u64 = 4 << 20;

/// Events per INSERT.
const BATCH: usize = 500;

/// Copies `log`'s events to the database at `database_url` until `shutdown` turns true.
pub async fn run(log: Arc<AuditLog>, database_url: String, node_id: String, mut shutdown: watch::Receiver<bool>) {
    let appended = log.appended();
    let path = log.path().to_owned();
    let mut shipper = Shipper {
        path,
        offset: 0,
        client: None,
        database_url,
        node_id,
    };
    loop {
        // Ships until caught up, then waits for the next event or the retry tick.
        while let Ok(true) = shipper.round().await {}
        tokio::select! {
            _ = appended.notified() => {}
            _ = tokio::time::sleep(RETRY_EVERY) => {}
            _ = shutdown.changed() => {
                // One last round, so a clean shutdown leaves nothing behind that it could ship.
                let _ = shipper.round().await;
                return;
            }
        }
    }
}

struct Shipper {
    path: PathBuf,
    offset: u64,
    client: Option<tokio_postgres::Client>,
    database_url: String,
    node_id: String,
}

impl Shipper {
    /// Ships the next stretch of the file; Ok(true) when there may be more.
    async fn round(&mut self) -> Result<bool, ()> {
        let (path, offset) = (self.path.clone(), self.offset);
        let read = tokio::task::spawn_blocking(move || complete_lines(&path, offset))
            .await
            .expect("reading the audit file does not panic");
        let (events, consumed, more) = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, "cannot read this node's audit file to ship it");
                return Err(());
            }
        };
        if consumed == 0 {
            return Ok(false);
        }
        match tokio::time::timeout(ROUND_TIMEOUT, self.insert(&events)).await {
            Ok(Ok(())) => {
                self.offset += consumed;
                Ok(more)
            }
            failed => {
                // A failed or hung session is dropped; the next round connects again.
                self.client = None;
                let reason = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {ROUND_TIMEOUT:?}"),
                };
                tracing::debug!(%reason, pending = events.len(), "audit events not shipped yet; retrying");
                Err(())
            }
        }
    }

    async fn insert(&mut self, events: &[AuditEvent]) -> Result<(), crate::db::DbError> {
        if self.client.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            self.client = Some(crate::db::connect(&self.database_url, &self.node_id, "audit-ship").await?);
        }
        let client = self.client.as_ref().expect("connected above");
        for batch in events.chunks(BATCH) {
            let rows = serde_json::to_value(batch).expect("audit events always serialise");
            client
                .execute(INSERT, &[&rows])
                .await
                .map_err(crate::db::DbError::query("ship audit events"))?;
        }
        Ok(())
    }
}

const INSERT: &str = "
    INSERT INTO autonomy_ha.audit_events (id, time, type, node_id, details)
    SELECT e->>'id', (e->>'time')::timestamptz, e->>'type', e->>'node_id', e->'details'
    FROM jsonb_array_elements($1::jsonb) AS e
    ON CONFLICT (id) DO NOTHING";

/// The events on the complete lines of `path` from `offset` (at most ROUND_BYTES), how many
/// bytes those lines take, and whether the file may hold more. A damaged line is skipped (it
/// is consumed, never shipped); a last line without its newline is left for a later round.
fn complete_lines(path: &Path, offset: u64) -> std::io::Result<(Vec<AuditEvent>, u64, bool)> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut chunk = Vec::new();
    file.take(ROUND_BYTES).read_to_end(&mut chunk)?;
    let Some(end) = chunk.iter().rposition(|&b| b == b'\n') else {
        return Ok((Vec::new(), 0, false));
    };
    let events = chunk[..end]
        .split(|&b| b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .filter_map(|line| parse_line(line).ok())
        .collect();
    Ok((events, (end + 1) as u64, chunk.len() as u64 == ROUND_BYTES))
}
