//! `ha status` with several servers: each node's answer and whether the cluster agrees.

use serde::Serialize;

use crate::ha::{Role, StatusReport};

/// One `--server` and what it answered.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterNode {
    pub server: String,
    pub status: Option<StatusReport>,
    /// Why no status came back.
    pub error: Option<String>,
}

/// The cluster as the answering nodes describe it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub nodes: Vec<ClusterNode>,
    /// Node ids reporting role=leader; more than one would be a split brain.
    pub leaders: Vec<String>,
    /// True when every answering node names the same holder and epoch.
    pub agree: bool,
    pub holder_id: Option<String>,
    pub epoch: Option<i64>,
}

impl ClusterView {
    pub fn new(nodes: Vec<ClusterNode>) -> Self {
        let answers: Vec<&StatusReport> = nodes.iter().filter_map(|n| n.status.as_ref()).collect();
        let leaders = answers
            .iter()
            .filter(|s| s.role == Role::Leader)
            .map(|s| s.node_id.to_string())
            .collect();
        let first = answers.first().map(|s| (s.holder_id.clone(), s.epoch));
        let agree = first
            .as_ref()
            .is_some_and(|first| answers.iter().all(|s| (s.holder_id.clone(), s.epoch) == *first));
        let (holder_id, epoch) = match (agree, first) {
            (true, Some((holder, epoch))) => (holder, Some(epoch)),
            _ => (None, None),
        };
        Self {
            nodes,
            leaders,
            agree,
            holder_id,
            epoch,
        }
    }
}
