//! The body of every non-2xx answer of the node API.

use serde::{Deserialize, Serialize};

/// The body of every non-2xx response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable kind (`not_found`, `not_in_maintenance`, ...).
    pub code: String,
    /// What failed, with which input, and what to do.
    pub message: String,
    /// On `not_leader` and `fenced`: the node holding the lease, if one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<String>,
    /// On `not_leader` and `fenced`: where the leader's API listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_address: Option<String>,
}
