//! After a crash: backups left `running` and restores left without an outcome, found and recorded.

use crate::{
    audit::EventType,
    backup::{inventory, BackupError, BackupService},
    ident::BackupId,
};

impl BackupService {
    /// Marks `running` backups that no live operation owns as failed (`live`: this node's one
    /// running now, if any), audits each, and removes partial files no running backup claims.
    /// Best effort: a database or repository that fails here is tried again next time.
    pub async fn reconcile_interrupted(&self, live: Option<&BackupId>) {
        // The directory is read before the rows: a backup's `running` row is committed before
        // its partial file exists, so a partial seen here whose row is not `running` below is
        // dead, even if another node starts a backup meanwhile.
        let store = self.store.clone();
        let partials = match tokio::task::spawn_blocking(move || store.leftovers())
            .await
            .expect("listing files does not panic")
        {
            Ok(partials) => partials,
            Err(error) => {
                tracing::warn!(%error, "could not list the repository's partial files; will retry");
                return;
            }
        };
        let outcome = async {
            let client = self.db.get().await?;
            let failed =
                inventory::fail_interrupted(&*client, self.state.node_id.as_str(), live.map(BackupId::as_str)).await?;
            let running = inventory::running(&*client).await?;
            Ok::<_, BackupError>((failed, running))
        }
        .await;
        let (failed, running) = match outcome {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "could not reconcile interrupted backups; will retry");
                return;
            }
        };
        for backup_id in &failed {
            tracing::warn!(backup_id, "a backup was interrupted before it finished; marked failed");
            self.audit_quietly(
                EventType::BackupInterrupted,
                serde_json::json!({ "backup_id": backup_id, "reason": "the node running it stopped or lost its database before it finished" }),
            );
        }
        let stale: Vec<_> = partials
            .into_iter()
            .filter(|(id, _)| !running.iter().any(|r| *id == r.as_str()))
            .map(|(_, name)| name)
            .collect();
        let store = self.store.clone();
        let removed = tokio::task::spawn_blocking(move || store.remove_leftovers(&stale))
            .await
            .expect("removing files does not panic");
        match removed {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(files = ?removed, "removed the partial files of interrupted backups")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not remove stale partial files"),
        }
    }

    /// After a restart: a restore this node started and never recorded an outcome for is
    /// recorded now, committed or not, as the inventory (written inside the restore's own
    /// transaction) tells.
    pub async fn reconcile_restores(&self) {
        let dir = self.audit.dir().to_owned();
        let node_id = self.state.node_id.clone();
        let events = tokio::task::spawn_blocking(move || crate::audit::query(&dir, &Default::default()))
            .await
            .expect("the audit query does not panic");
        let events = match events {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "could not read this node's audit to find interrupted restores");
                return;
            }
        };
        let restore_id = |event: &crate::audit::AuditEvent| event.details["restore_id"].as_str().map(str::to_owned);
        let mine: Vec<_> = events.iter().filter(|e| e.node_id == node_id.as_str()).collect();
        let unfinished: Vec<_> = mine
            .iter()
            .filter(|e| e.is(EventType::RestoreStarted))
            .filter(|started| {
                let id = restore_id(started);
                !mine
                    .iter()
                    .any(|e| !e.is(EventType::RestoreStarted) && restore_id(e) == id)
            })
            .collect();
        for started in unfinished {
            let (Some(id), Some(backup_id)) = (restore_id(started), started.details["backup_id"].as_str()) else {
                continue;
            };
            let found = async {
                let client = self.db.get().await?;
                let outcome = inventory::restore_outcome(&*client, &id).await?;
                if outcome.as_deref() == Some("committed_unproven") {
                    inventory::record_restore_outcome(&*client, backup_id, &id, "interrupted_after_commit").await?;
                }
                Ok::<_, BackupError>(outcome)
            }
            .await;
            let outcome = match found {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::warn!(%error, "could not look up an interrupted restore; it is looked for again at the next start");
                    return;
                }
            };
            let committed = outcome.is_some();
            let meaning = match outcome.as_deref() {
                None => "the restore did not commit: the database is as it was before it".to_owned(),
                Some("committed_unproven") => "the restore committed (the database holds the backup) but its proof never finished: run `ha backup verify` or restore again".to_owned(),
                Some(outcome) => format!("the restore committed and its proof finished ({outcome}), but its outcome event was never written"),
            };
            tracing::warn!(backup_id, restore_id = %id, committed, "found a restore whose outcome was never audited");
            self.audit_quietly(
                EventType::RestoreInterrupted,
                serde_json::json!({
                    "backup_id": backup_id,
                    "restore_id": id,
                    "committed": committed,
                    "proof": outcome.filter(|o| o != "committed_unproven"),
                    "meaning": meaning,
                }),
            );
        }
    }
}
