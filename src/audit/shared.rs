//! Every node's audit events, as a node's API answers them: the shared table the nodes ship
//! into (`ship`), joined with the local audit directory (this node's events not shipped yet,
//! and any other node's file there), deduplicated by event id, oldest first. When the database
//! cannot be reached the local directory alone answers.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use time::OffsetDateTime;

use super::{query, selects, AuditError, AuditEvent, AuditQuery};

/// How long the shared table may take to answer before the local events alone are returned.
const SHARED_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a node finds every node's events.
#[derive(Clone)]
pub struct SharedAudit {
    /// The local audit directory (this node's file, and any other's kept there).
    pub dir: PathBuf,
    /// The database holding `autonomy_ha.audit_events`; holds a password, never printed.
    pub database_url: String,
    pub node_id: String,
}

impl SharedAudit {
    /// The events `selection` picks from the shared table and from the directory.
    pub async fn query(&self, selection: &AuditQuery) -> Result<Vec<AuditEvent>, AuditError> {
        let (dir, local_query) = (self.dir.clone(), selection.clone());
        let local = tokio::task::spawn_blocking(move || query(&dir, &local_query))
            .await
            .expect("the audit query does not panic")?;
        let shared = shared_events(&self.database_url, &self.node_id, selection);
        let shared = match tokio::time::timeout(SHARED_TIMEOUT, shared).await {
            Ok(Ok(events)) => Some(events),
            Ok(Err(error)) => {
                tracing::warn!(%error, "the shared audit trail is unreachable; answering from this node's directory");
                None
            }
            Err(_) => {
                tracing::warn!("the shared audit trail did not answer in time; answering from this node's directory");
                None
            }
        };
        let mut by_id: BTreeMap<String, AuditEvent> = BTreeMap::new();
        for event in shared.into_iter().flatten().chain(local) {
            by_id.entry(event.id.clone()).or_insert(event);
        }
        let mut events: Vec<AuditEvent> = by_id.into_values().filter(|event| selects(selection, event)).collect();
        events.sort_by_key(|event| event.time);
        Ok(events)
    }
}

async fn shared_events(
    database_url: &str,
    node_id: &str,
    selection: &AuditQuery,
) -> Result<Vec<AuditEvent>, crate::db::DbError> {
    let client = crate::db::connect(database_url, node_id, "audit-query").await?;
    let rows = client
        .query(
            "SELECT id, time, type, node_id, details FROM autonomy_ha.audit_events
             WHERE ($1::text IS NULL OR type = $1) AND ($2::timestamptz IS NULL OR time >= $2)
             ORDER BY time, id",
            &[&selection.event_type, &selection.since],
        )
        .await
        .map_err(crate::db::DbError::query("read the shared audit trail"))?;
    Ok(rows
        .iter()
        .map(|row| AuditEvent {
            id: row.get(0),
            time: row.get::<_, OffsetDateTime>(1),
            event_type: row.get(2),
            node_id: row.get(3),
            details: row.get(4),
        })
        .collect())
}
