//! A background poller of every node's `/v1/ha/status`, recording what each said and when.
//!
//! The slices assert on the samples afterwards (no two leaders, failover times). Times are
//! microseconds on the slice's own monotonic clock, so samples line up with its signals.

use std::{
    collections::BTreeMap,
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::{background::Background, LAB_TOKEN};

/// A slice-wide monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Self(Instant::now())
    }

    pub fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// One status answer (or failure) from one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusSample {
    /// The polling round; every node is asked once per round.
    pub round: u64,
    pub node_id: String,
    pub sent_us: u64,
    pub received_us: u64,
    pub role: Option<String>,
    pub holder_id: Option<String>,
    pub epoch: Option<i64>,
    #[serde(default)]
    pub db_reachable: Option<bool>,
    #[serde(default)]
    pub write_block_active: Option<bool>,
    #[serde(default)]
    pub can_accept_protected_writes: Option<bool>,
    /// The store epoch of the node's last split-brain detection, if it reported one.
    #[serde(default)]
    pub split_brain_store_epoch: Option<i64>,
    pub error: Option<String>,
}

impl StatusSample {
    /// How long the node took to answer.
    pub fn latency_us(&self) -> u64 {
        self.received_us.saturating_sub(self.sent_us)
    }

    pub fn is_leader(&self) -> bool {
        self.role.as_deref() == Some("leader")
    }
}

/// Asks one node for its status once, with a short timeout (a dead node must not stall).
pub fn sample(clock: Clock, round: u64, node_id: &str, url: &str) -> StatusSample {
    let client = autonomy::client::NodeClient::with_timeout(url, Some(LAB_TOKEN.into()), Some(Duration::from_secs(1)));
    let sent_us = clock.now_us();
    let answer = client.get::<serde_json::Value>("/v1/ha/status");
    let received_us = clock.now_us();
    let status = answer.as_ref().ok();
    let text = |key: &str| status.and_then(|s| s[key].as_str()).map(str::to_owned);
    let flag = |key: &str| status.and_then(|s| s[key].as_bool());
    StatusSample {
        round,
        node_id: node_id.to_owned(),
        sent_us,
        received_us,
        role: text("role"),
        holder_id: text("holder_id"),
        epoch: status.and_then(|s| s["epoch"].as_i64()),
        db_reachable: flag("db_reachable"),
        write_block_active: flag("write_block_active"),
        can_accept_protected_writes: flag("can_accept_protected_writes"),
        split_brain_store_epoch: status.and_then(|s| s["split_brain"]["store_epoch"].as_i64()),
        error: answer.err().map(|e| e.to_string()),
    }
}

/// Polls every registered node every `interval` until finished.
pub struct StatusWatch {
    targets: Arc<Mutex<BTreeMap<String, String>>>,
    poller: Background<Vec<StatusSample>>,
}

impl StatusWatch {
    pub fn start(clock: Clock, interval: Duration) -> Self {
        let targets: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let polled = targets.clone();
        let poller = Background::spawn(move |stop| {
            let mut samples = Vec::new();
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let nodes = polled.lock().unwrap().clone();
                for (node_id, url) in &nodes {
                    samples.push(sample(clock, round, node_id, url));
                }
                round += 1;
                std::thread::sleep(interval.saturating_sub(started.elapsed()));
            }
            samples
        });
        Self { targets, poller }
    }

    /// Adds a node, or points it at its new address after a restart.
    pub fn watch(&self, node_id: &str, url: &str) {
        self.targets.lock().unwrap().insert(node_id.to_owned(), url.to_owned());
    }

    /// Stops polling a node that was stopped for good.
    pub fn unwatch(&self, node_id: &str) {
        self.targets.lock().unwrap().remove(node_id);
    }

    /// Stops polling and returns every sample, in the order taken.
    pub fn finish(self) -> Vec<StatusSample> {
        self.poller.finish()
    }
}

/// Pairs of samples showing two leaders at once: two nodes claiming the same epoch, or a node
/// claiming an epoch after (its request sent after) another node was seen leading a higher
/// one. Either means both acted as leader at the same moment.
pub fn dual_leaders(samples: &[StatusSample]) -> Vec<(StatusSample, StatusSample)> {
    let leaders: Vec<&StatusSample> = samples.iter().filter(|s| s.role.as_deref() == Some("leader")).collect();
    let mut overlaps = Vec::new();
    for a in &leaders {
        for b in &leaders {
            if a.node_id == b.node_id {
                continue;
            }
            let (ea, eb) = (a.epoch.unwrap_or(-1), b.epoch.unwrap_or(-1));
            let same_epoch = ea == eb && a.node_id < b.node_id;
            let stale_after_newer = ea < eb && a.sent_us > b.received_us;
            if same_epoch || stale_after_newer {
                overlaps.push(((*a).clone(), (*b).clone()));
            }
        }
    }
    overlaps
}

/// The most nodes answering `leader` within one polling round.
pub fn max_leaders_per_round(samples: &[StatusSample]) -> usize {
    let mut per_round: BTreeMap<u64, usize> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.role.as_deref() == Some("leader")) {
        *per_round.entry(s.round).or_default() += 1;
    }
    per_round.values().copied().max().unwrap_or(0)
}
