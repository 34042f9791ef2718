//! The CLI's HTTP client for the node API; maps each failure to the exit code an operator needs.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;
use ureq::Agent;

use crate::{api::ErrorBody, exit::Exit};

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
    #[error("no answer from the autonomy node at {url} within {} s (waiting for {waiting_for}); it may be frozen or overloaded. An operation it had started (a backup, a restore) still runs to its end there: `autonomy ha backup list` shows how it ended. Raise --timeout to wait longer", after.as_secs_f64())]
    TimedOut {
        url: String,
        after: Duration,
        waiting_for: String,
    },
    #[error("the node at {url} answered {status} with a body that is not the expected JSON: {reason}")]
    Decode { url: String, status: u16, reason: String },
}

impl ClientError {
    pub fn exit(&self) -> Exit {
        match self {
            ClientError::Unreachable { .. } | ClientError::TimedOut { .. } => Exit::Unreachable,
            ClientError::Decode { .. } => Exit::Internal,
            ClientError::Api { status, code, .. } => match (status, code.as_str()) {
                (400, _) => Exit::Usage,
                (401 | 403, _) => Exit::Unauthorized,
                (404, _) => Exit::NotFound,
                (409, _) | (503, "not_leader" | "fenced" | "restore_in_progress" | "quorum_lost") => Exit::Refused,
                (422, "undecryptable" | "unknown_encryption") => Exit::KeyUnusable,
                (422, _) => Exit::Integrity,
                (500, "audit_io") => Exit::AuditIo,
                _ => Exit::OperationFailed,
            },
        }
    }
}

pub struct NodeClient {
    base: String,
    token: Option<String>,
    agent: Agent,
    timeout: Option<Duration>,
}

impl NodeClient {
    /// A client without an answer deadline (only connecting is bounded); the CLI always sets one.
    pub fn new(server: &str, token: Option<String>) -> Self {
        Self::with_timeout(server, token, None)
    }

    /// A client whose every request, answer included, must finish within `timeout`: a frozen
    /// node must not hold its caller forever.
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
            timeout,
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.decode(&url, &format!("GET {path}"), request.call())
    }

    /// GET `path` with `params` as its (encoded) query string; a None value is left out.
    pub fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, Option<&str>)],
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        for (name, value) in params {
            if let Some(value) = value {
                request = request.query(*name, *value);
            }
        }
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.decode(&url, &format!("GET {path}"), request.call())
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.decode(&url, &format!("POST {path}"), request.send_json(body))
    }

    /// The error of a request that got no (whole) answer.
    fn no_answer(&self, url: &str, waiting_for: &str, error: ureq::Error) -> ClientError {
        let url = redact_userinfo(url);
        match (error, self.timeout) {
            (ureq::Error::Timeout(_), Some(after)) => ClientError::TimedOut {
                url,
                after,
                waiting_for: waiting_for.to_owned(),
            },
            (error, _) => ClientError::Unreachable {
                url,
                reason: error.to_string(),
            },
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        url: &str,
        waiting_for: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = result.map_err(|e| self.no_answer(url, waiting_for, e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.no_answer(url, waiting_for, e))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&body).map_err(|e| ClientError::Decode {
                url: redact_userinfo(url),
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

/// `url` with any `user:password@` replaced by `***@`: a URL in a message is never a leak.
pub fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| scheme_end + at);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end], &url[scheme_end + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_never_reaches_a_message() {
        assert_eq!(
            redact_userinfo("http://admin:s3cret@127.0.0.1:7432/v1/ha/status"),
            "http://***@127.0.0.1:7432/v1/ha/status"
        );
        assert_eq!(
            redact_userinfo("http://127.0.0.1:7432/x@y"),
            "http://127.0.0.1:7432/x@y"
        );
        assert_eq!(redact_userinfo("not a url"), "not a url");
    }
}
