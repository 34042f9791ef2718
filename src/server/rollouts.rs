//! `POST /v1/rollouts` and `GET /v1/rollouts`: protected writes, committed by the leader only.

use axum::{extract::State, http::StatusCode, Json};

use crate::{
    ha::rollouts::{self, Fencing, NewRollout, Rollout, RolloutError},
    server::{error::ApiError, handlers::AppState},
};

pub async fn create(
    State(app): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Rollout>), ApiError> {
    let new: NewRollout = serde_json::from_slice(&body).map_err(|e| {
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
    let fencing = match (node.leader_epoch(), app.skip_fencing) {
        (Some(epoch), false) => Fencing::Checked { epoch },
        (None, false) => return Err(not_leader(&app)),
        (epoch, true) => Fencing::Skipped {
            epoch: epoch.unwrap_or_else(|| node.report(None, false).epoch),
        },
    };
    // On its own task: a client that hangs up cannot cut the transaction off mid-commit.
    let db = app.writes_db.clone();
    let written = tokio::spawn(async move {
        let mut client = db.get().await.map_err(RolloutError::from)?;
        let result = rollouts::create(&mut client, &node.node_id, fencing, &new).await;
        if let Ok(rollout) = &result {
            tracing::info!(name = %rollout.name, id = rollout.id, epoch = rollout.epoch, "rollout committed");
        }
        result
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the write panicked: {e}"),
        )
    })?;
    match written {
        Ok(rollout) => Ok((StatusCode::CREATED, Json(rollout))),
        Err(error @ RolloutError::Fenced(_)) => {
            app.node
                .step_down("a protected write found the lease no longer names this node at its epoch");
            Err(ApiError::from(error).with_leader(app.node.leader_hint()))
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn list(State(app): State<AppState>) -> Result<Json<Vec<Rollout>>, ApiError> {
    let client = app.writes_db.get().await.map_err(RolloutError::from)?;
    Ok(Json(rollouts::list(&client).await?))
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
