//! Bearer-token authentication, compared in constant time; the token is never logged.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::header::AUTHORIZATION,
    middleware::Next,
    response::Response,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::server::error::ApiError;

/// The expected token, shared with the middleware.
#[derive(Clone)]
pub struct ApiToken(pub Arc<String>);

pub async fn require_token(State(token): State<ApiToken>, request: Request, next: Next) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_credentials);
    match presented {
        Some(presented) if tokens_match(presented, &token.0) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::unauthorized(
            "the API token is wrong; check --token / AUTONOMY_API_TOKEN",
        )),
        None => Err(ApiError::unauthorized(
            "no API token: send `Authorization: Bearer <token>` (the CLI reads --token / AUTONOMY_API_TOKEN)",
        )),
    }
}

/// The token of a `Bearer` authorization; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Compares digests, not the tokens: equal lengths, so the time taken does not reveal the
/// token's length either.
fn tokens_match(presented: &str, expected: &str) -> bool {
    bool::from(Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::bearer_credentials;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_not() {
        assert_eq!(bearer_credentials("Bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_credentials("Basic abc"), None);
        assert_eq!(bearer_credentials("Bearer"), None);
    }
}
