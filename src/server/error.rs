//! API errors: one JSON shape, one HTTP status per kind, which the CLI maps to exit codes.

pub use crate::api::ErrorBody;

use axum::{
    extract::Request,
    http::{header::CONTENT_TYPE, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};

use crate::{backup::BackupError, ha::rollouts::RolloutError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                leader_id: None,
                leader_address: None,
            },
        }
    }

    /// Adds the leader hint a client needs to retry where the write can commit.
    pub fn with_leader(mut self, (leader_id, leader_address): (Option<String>, Option<String>)) -> Self {
        self.body.leader_id = leader_id;
        self.body.leader_address = leader_address;
        self
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// The largest request body accepted (axum's default, stated): a rollout spec is far smaller.
pub const BODY_LIMIT: usize = 2 << 20;

/// Gives every error response the `{code, message}` body, also those axum's extractors and
/// limits produce themselves as plain text (a body over the limit, a path that is not UTF-8,
/// a repeated query parameter, a wrong method): a client parses one shape, always. A body
/// announced larger than [`BODY_LIMIT`] is refused before any of it is read, so the client
/// gets its answer instead of a connection reset in the middle of sending.
pub async fn errors_as_json(request: Request, next: Next) -> Response {
    let route = format!("{} {}", request.method(), request.uri().path());
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > BODY_LIMIT as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is too large: {route}: {} bytes announced, the limit is {BODY_LIMIT}",
                announced.unwrap_or_default()
            ),
        )
        .into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|body| String::from_utf8_lossy(&body).trim().to_owned())
        .unwrap_or_default();
    let (code, what) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "the route does not take this method"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "the body's content type is not accepted"),
        status if status.is_server_error() => ("internal", "the node failed to answer"),
        _ => ("invalid_request", "the request is malformed"),
    };
    let message = if text.is_empty() {
        format!("{what}: {route}")
    } else {
        format!("{what}: {route}: {text}")
    };
    ApiError::new(status, code, message).into_response()
}

impl From<BackupError> for ApiError {
    fn from(error: BackupError) -> Self {
        let (status, code) = match &error {
            BackupError::InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
            BackupError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            BackupError::NotConfirmed => (StatusCode::BAD_REQUEST, "not_confirmed"),
            BackupError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            BackupError::NotLeader { .. } => (StatusCode::CONFLICT, "not_leader"),
            BackupError::NotInMaintenance(_) => (StatusCode::CONFLICT, "not_in_maintenance"),
            BackupError::Busy => (StatusCode::CONFLICT, "busy"),
            BackupError::Fenced(_) => (StatusCode::CONFLICT, "fenced"),
            BackupError::ChecksumMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "checksum_mismatch"),
            BackupError::ManifestUntrusted { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "manifest_untrusted"),
            BackupError::Undecryptable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "undecryptable"),
            BackupError::PlaintextMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "checksum_mismatch"),
            BackupError::UnknownEncryption { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_encryption"),
            BackupError::ArchiveMissing(_) => (StatusCode::UNPROCESSABLE_ENTITY, "archive_missing"),
            BackupError::Tool { .. } | BackupError::Spawn { .. } | BackupError::Proof(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "operation_failed")
            }
            BackupError::Db(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            BackupError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "repository_io"),
            BackupError::NotRegularFile { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "not_regular_file"),
            BackupError::Audit { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "audit_io"),
        };
        Self::new(status, code, error.to_string())
    }
}

impl From<RolloutError> for ApiError {
    fn from(error: RolloutError) -> Self {
        let (status, code) = match &error {
            RolloutError::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
            RolloutError::InvalidSpec(_) | RolloutError::SpecTooLarge(_) => (StatusCode::BAD_REQUEST, "invalid_spec"),
            RolloutError::Exists(_) => (StatusCode::CONFLICT, "already_exists"),
            RolloutError::Fenced(_) => (StatusCode::SERVICE_UNAVAILABLE, "fenced"),
            RolloutError::CommitUnknown { .. } => (StatusCode::SERVICE_UNAVAILABLE, "commit_unknown"),
            RolloutError::Db(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
        };
        Self::new(status, code, error.to_string())
    }
}
