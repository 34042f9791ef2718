//! The CLI's HTTP client for the node API; maps each failure to the exit code an operator needs.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;
use ureq::Agent;

use crate::{exit::Exit, server::error::ErrorBody};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the autonomy node at {url}: {reason}; is `autonomy ha serve` running there (see --server / AUTONOMY_SERVER_URL)?")]
    Unreachable { url: String, reason: String },
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// The leader hint of a `not_leader` or `fenced` answer.
        leader_id: Option<String>,
        leader_address: Option<String>,
    },
    #[error("the node at {url} answered {status} with a body that is not the expected JSON: {reason}")]
    Decode { url: String, status: u16, reason: String },
}

impl ClientError {
    pub fn exit(&self) -> Exit {
        match self {
            ClientError::Unreachable { .. } => Exit::Unreachable,
            ClientError::Decode { .. } => Exit::Internal,
            ClientError::Api { status, code, .. } => match (status, code.as_str()) {
                (400, _) => Exit::Usage,
                (401 | 403, _) => Exit::Unauthorized,
                (404, _) => Exit::NotFound,
                (409, _) | (503, "not_leader" | "fenced" | "restore_in_progress" | "quorum_lost") => Exit::Refused,
                (422, _) => Exit::Integrity,
                _ => Exit::OperationFailed,
            },
        }
    }
}

pub struct NodeClient {
    base: String,
    token: Option<String>,
    agent: Agent,
}

impl NodeClient {
    pub fn new(server: &str, token: Option<String>) -> Self {
        // Backups and restores of large databases take long; only connecting is bounded.
        Self::with_timeout(server, token, None)
    }

    /// A client whose every request, answer included, must finish within `timeout` (for
    /// polling, where a hung node must not stall the poller).
    pub fn with_timeout(server: &str, token: Option<String>, timeout: Option<Duration>) -> Self {
        let agent: Agent = Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5).min(timeout.unwrap_or(Duration::MAX))))
            .timeout_global(timeout)
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: server.trim_end_matches('/').to_owned(),
            token,
            agent,
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.decode(&url, request.call())
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.decode(&url, request.send_json(body))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = result.map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&body).map_err(|e| ClientError::Decode {
                url: url.to_owned(),
                status,
                reason: e.to_string(),
            });
        }
        match serde_json::from_str::<ErrorBody>(&body) {
            Ok(error) => Err(ClientError::Api {
                status,
                code: error.code,
                message: error.message,
                leader_id: error.leader_id,
                leader_address: error.leader_address,
            }),
            Err(_) => Err(ClientError::Api {
                status,
                code: "http_error".into(),
                message: format!("the node answered HTTP {status}: {}", body.trim()),
                leader_id: None,
                leader_address: None,
            }),
        }
    }
}
