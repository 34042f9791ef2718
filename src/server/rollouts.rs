//! `POST /v1/rollouts` and `GET /v1/rollouts`: protected writes, committed by the leader only.

use axum::{extract::State, http::StatusCode, Json};

use crate::{
    ha::rollouts::{self, Fencing, NewRollout, Rollout, RolloutError},
    server::{error::ApiError, handlers::AppState},
};

/// How long a protected write (or a rollout listing) may take, waiting for the database
/// included.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

pub async fn create(
    State(app): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Rollout>), ApiError> {
    let new: NewRollout = serde_json::from_slice(&body).map_err(|e| {
        // Nesting beyond what the parser reads is a spec too deep, like one the limit refuses.
        if e.to_string().contains("recursion limit exceeded") {
            return ApiError::from(RolloutError::SpecTooLarge(format!(
                "nests more than 127 levels deep; the limit is {}",
                rollouts::MAX_SPEC_DEPTH
            )));
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body is not {{\"name\": \"...\", \"spec\": {{...}}}}: {e}"),
        )
    })?;
    rollouts::validate(&new)?;
    if app.backups.restore_running() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "restore_in_progress",
            "a restore is replacing the database's contents and would discard this write; nothing was written. Retry when it has finished",
        ));
    }
    let node = app.node.clone();
    let fencing = match (node.leader_epoch(), app.writes.skip_fencing) {
        (Some(epoch), false) => Fencing::Checked {
            epoch,
            fence: app.backups.fence,
        },
        (None, false) if !node.db_reachable() => return Err(quorum_lost(&app)),
        (None, false) => return Err(not_leader(&app)),
        (epoch, true) => Fencing::Skipped {
            epoch: epoch.unwrap_or_else(|| node.report(false).epoch),
        },
    };
    // On its own task: a client that hangs up cannot cut the transaction off mid-commit.
    let db = app.writes.db.clone();
    let name = new.name.clone();
    let write = tokio::spawn(async move {
        let mut client = db.get().await.map_err(RolloutError::from)?;
        let result = rollouts::create(&mut client, &node.node_id, fencing, &new).await;
        if let Ok(rollout) = &result {
            tracing::info!(name = %rollout.name, id = rollout.id, epoch = rollout.epoch, "rollout committed");
        }
        result
    });
    // A database that stops answering must not hold the request (or a shutdown) forever.
    let written = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(joined) => joined.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the write panicked: {e}"),
            )
        })?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "commit_unknown",
                format!(
                    "the write of rollout `{name}` did not finish within {} s; it may or may not be stored. \
                     Retry with the same name: `already exists` means it was",
                    WRITE_TIMEOUT.as_secs()
                ),
            ))
        }
    };
    match written {
        Ok(rollout) => Ok((StatusCode::CREATED, Json(rollout))),
        Err(RolloutError::Fenced(epoch)) => {
            app.node.step_down_from(epoch);
            Err(ApiError::from(RolloutError::Fenced(epoch)).with_leader(app.node.leader_hint()))
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn list(State(app): State<AppState>) -> Result<Json<Vec<Rollout>>, ApiError> {
    let read = async {
        let client = app.writes.db.get().await.map_err(RolloutError::from)?;
        rollouts::list(&client).await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, read).await {
        Ok(rows) => Ok(Json(rows?)),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            format!(
                "the database did not answer within {} s; retry",
                WRITE_TIMEOUT.as_secs()
            ),
        )),
    }
}

fn quorum_lost(app: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "quorum_lost",
        format!(
            "node `{}` cannot reach the database that decides leadership, so no node may accept \
             protected writes through it; nothing was written. Retry when `autonomy ha status` \
             shows db_reachable=true",
            app.node.node_id
        ),
    )
}

fn not_leader(app: &AppState) -> ApiError {
    let hint = app.node.leader_hint();
    let message = match &hint {
        (Some(id), Some(address)) => format!(
            "node `{}` is not the leader; nothing was written. Send protected writes to the leader `{id}` at {address}",
            app.node.node_id
        ),
        _ => format!(
            "node `{}` is not the leader and no leader holds the lease right now; nothing was written. Retry shortly",
            app.node.node_id
        ),
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", message).with_leader(hint)
}
