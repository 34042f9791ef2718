//! Route handlers: thin adapters from HTTP to the HA state, backup service and audit store.

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    Json,
};
use serde::Deserialize;

use crate::{
    audit::{AuditEvent, AuditQuery},
    backup::{
        drill::{VerifyReport, VerifyRequest, WhichBackup},
        manifest::{RestoreReport, RestoreRequest},
        BackupError, BackupRecord, BackupService,
    },
    db::SharedClient,
    ha::{replication::ReplicationMonitor, NodeState, StatusReport},
    ident::BackupId,
    server::error::ApiError,
};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub node: Arc<NodeState>,
    /// The latest sample of the primary's standbys.
    pub replication: Arc<ReplicationMonitor>,
    pub backups: Arc<BackupService>,
    /// The schedules and their recorded slots.
    pub schedule: Arc<crate::backup::schedule::Scheduler>,
    /// `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Every node's audit events: the shared table and the local directory.
    pub audit: Arc<crate::audit::shared::SharedAudit>,
    pub writes: ProtectedWrites,
    /// Which lease store, and for etcd its endpoints' health.
    pub lease_store: Arc<crate::ha::store_health::LeaseStoreHealth>,
}

/// What protected writes (and rollout reads) go through.
#[derive(Clone)]
pub struct ProtectedWrites {
    /// Their session, apart from the lease loop's and the backups'.
    pub db: Arc<SharedClient>,
    /// `--unsafe-skip-fencing`: they skip the leader and lease checks (tests only).
    pub skip_fencing: bool,
}

/// The OpenMetrics exposition, answered from memory like the status.
pub async fn metrics(State(app): State<AppState>) -> impl axum::response::IntoResponse {
    let status = app.node.report(app.backups.restore_running());
    let text = app.metrics.render(&status, &app.replication.view());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Answers from memory, never waiting on the database: during an outage the status is what an
/// operator needs most, and promptly.
pub async fn status(State(app): State<AppState>) -> Json<StatusReport> {
    Json(
        app.node
            .report(app.backups.restore_running())
            .with_replication(app.replication.view())
            .with_audit(app.backups.audit.health())
            .with_lease_store(app.lease_store.view()),
    )
}

pub async fn list_backups(State(app): State<AppState>) -> Result<Json<Vec<BackupRecord>>, ApiError> {
    Ok(Json(app.backups.list().await?))
}

/// Only `{"dry_run": false}` deletes: an empty body, or one without the field, plans only.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    #[serde(default = "plan_only")]
    pub dry_run: bool,
}

impl Default for PruneRequest {
    fn default() -> Self {
        Self { dry_run: plan_only() }
    }
}

fn plan_only() -> bool {
    true
}

pub async fn prune_backups(
    State(app): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<crate::backup::prune::PruneReport>, ApiError> {
    let request: PruneRequest = body_or_default(&body, "the prune body is not {\"dry_run\": bool}")?;
    let backups = app.backups.clone();
    let report = run_to_completion(async move { backups.prune(request.dry_run).await }).await?;
    Ok(Json(report))
}

/// Any node answers: its own schedules, every node's recorded slots.
pub async fn schedule(State(app): State<AppState>) -> Result<Json<crate::backup::schedule::ScheduleReport>, ApiError> {
    Ok(Json(app.schedule.report().await?))
}

pub async fn reindex_backups(State(app): State<AppState>) -> Result<Json<crate::api::ReindexReport>, ApiError> {
    Ok(Json(app.backups.reindex().await?))
}

pub async fn get_backup(
    State(app): State<AppState>,
    Path(backup_id): Path<String>,
) -> Result<Json<BackupRecord>, ApiError> {
    let backup_id = BackupId::parse(&backup_id).map_err(BackupError::from)?;
    Ok(Json(app.backups.get(&backup_id).await?))
}

pub async fn create_backup(State(app): State<AppState>) -> Result<(StatusCode, Json<BackupRecord>), ApiError> {
    let backups = app.backups.clone();
    let record = run_to_completion(async move { backups.create().await }).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// Runs an operation on its own task: if the client goes away, axum drops the handler, but the
/// backup or restore still finishes, records its outcome and only then frees the node.
async fn run_to_completion<T: Send + 'static>(
    operation: impl std::future::Future<Output = Result<T, crate::backup::BackupError>> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::spawn(operation).await {
        Ok(result) => Ok(result?),
        Err(error) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the operation panicked: {error}"),
        )),
    }
}

/// The request in a JSON body, or its default for an empty one; `expected` says what the body
/// should have been when it is not.
fn body_or_default<T: Default + serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("{expected}: {e}")))
}

pub async fn restore_backup(
    State(app): State<AppState>,
    Path(backup_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RestoreReport>, ApiError> {
    // An empty body is a request without confirmation, refused below with the usual message.
    let request: RestoreRequest = body_or_default(
        &body,
        "the restore body is not {\"confirm\": true, \"allow_unsealed_manifest\": bool}",
    )?;
    let backup_id = BackupId::parse(&backup_id).map_err(BackupError::from)?;
    let backups = app.backups.clone();
    let report = run_to_completion(async move { backups.restore(&backup_id, request).await }).await?;
    Ok(Json(report))
}

/// Runs a restore drill of a backup (`latest` for the newest). The drill's own outcome,
/// `not_run` included, is the 200 answer; an error means it did not start.
pub async fn verify_backup(
    State(app): State<AppState>,
    Path(backup_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<VerifyReport>, ApiError> {
    let request: VerifyRequest = body_or_default(
        &body,
        "the verify body is not {\"target_url\": …, \"keep\": bool, \"proof_only\": bool}",
    )?;
    let which = WhichBackup::parse(&backup_id).map_err(BackupError::from)?;
    let backups = app.backups.clone();
    let report = run_to_completion(async move { backups.verify(which, request).await }).await?;
    Ok(Json(report))
}

#[derive(Debug, Deserialize)]
pub struct AuditParams {
    pub event_type: Option<String>,
    pub since: Option<String>,
}

pub async fn audit_events(
    State(app): State<AppState>,
    Query(params): Query<AuditParams>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let since = params
        .since
        .as_deref()
        .map(|value| {
            time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_since",
                    format!("since `{value}` is not an RFC 3339 time: {e}"),
                )
            })
        })
        .transpose()?;
    let query = AuditQuery {
        event_type: params.event_type,
        since,
    };
    let events = app
        .audit
        .query(&query)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "audit_io", e.to_string()))?;
    Ok(Json(events))
}
