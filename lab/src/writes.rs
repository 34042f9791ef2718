//! A client writing rollouts continuously, like an application behind a load balancer.
//!
//! Each write goes to the next node in turn; a 503 naming the leader is retried there, any
//! other failure at the next node, always under the same name, until it is stored (201, or
//! 409 when an earlier attempt had committed). Every attempt is logged for the evidence.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use autonomy::client::{ClientError, NodeClient};
use serde::{Deserialize, Serialize};

use super::{background::Background, watch::Clock, LAB_TOKEN};

/// How many acknowledged writes a phase waits for around a fault, so each side of it has rows
/// to count: at the writers' 5 ms pace, a few hundred milliseconds of writes.
pub const WRITES_BEFORE_FAULT: usize = 50;

/// How long a phase waits for them before going on (the checks then judge what was written).
pub const WRITES_WAIT: Duration = Duration::from_secs(10);

/// What a 201 said was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub id: i64,
    pub epoch: i64,
    pub leader_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub target: String,
    pub at_us: u64,
    /// `201`, `409 already_exists`, `503 not_leader`, `error: ...`
    pub outcome: String,
}

/// One logical write (one rollout name) and every attempt it took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteLog {
    pub name: String,
    pub started_us: u64,
    pub finished_us: u64,
    pub attempts: Vec<Attempt>,
    /// Set when a 201 came back.
    pub acknowledged: Option<Acknowledged>,
    /// A retry found the name already stored: an earlier attempt committed unacknowledged.
    pub stored_unacknowledged: bool,
}

/// The writer thread; `finish` stops it after the write in progress is settled.
pub struct Writer {
    thread: Background<Vec<WriteLog>>,
    /// Writes acknowledged so far (a 201), for waiting on progress instead of sleeping.
    acknowledged: Arc<AtomicUsize>,
}

impl Writer {
    /// Writes `<prefix>-00000`, `<prefix>-00001`, ... to `nodes` (node id → URL, shared so a
    /// restarted node's new address is picked up), pausing `pause` between writes.
    pub fn start(clock: Clock, prefix: &str, nodes: Arc<Mutex<BTreeMap<String, String>>>, pause: Duration) -> Self {
        let prefix = prefix.to_owned();
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let counter = acknowledged.clone();
        let thread = Background::spawn(move |stop| {
            let mut logs = Vec::new();
            let mut turn = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("{prefix}-{:05}", logs.len());
                let log = write_one(clock, &name, &nodes, &mut turn);
                if log.acknowledged.is_some() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                logs.push(log);
                std::thread::sleep(pause);
            }
            logs
        });
        Self { thread, acknowledged }
    }

    /// Waits until `count` more writes than now are acknowledged, for at most `within`; false
    /// if they were not (the phases go on: the checks judge what was written).
    pub fn wait_for_acknowledged(&self, count: usize, within: Duration) -> bool {
        let target = self.acknowledged.load(Ordering::SeqCst) + count;
        let give_up = Instant::now() + within;
        while self.acknowledged.load(Ordering::SeqCst) < target {
            if Instant::now() >= give_up {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    pub fn finish(self) -> Vec<WriteLog> {
        self.thread.finish()
    }
}

/// Retries one name until it is settled, for at most 15 s.
fn write_one(clock: Clock, name: &str, nodes: &Mutex<BTreeMap<String, String>>, turn: &mut usize) -> WriteLog {
    let body = serde_json::json!({ "name": name, "spec": { "writer": "val13", "seq": name } });
    let mut log = WriteLog {
        name: name.to_owned(),
        started_us: clock.now_us(),
        finished_us: 0,
        attempts: Vec::new(),
        acknowledged: None,
        stored_unacknowledged: false,
    };
    let give_up = Instant::now() + Duration::from_secs(15);
    let mut hint: Option<String> = None;
    *turn += 1;
    while Instant::now() < give_up {
        let urls: Vec<String> = nodes.lock().unwrap().values().cloned().collect();
        let Some(target) = hint.take().or_else(|| urls.get(*turn % urls.len().max(1)).cloned()) else {
            // Every node is stopped for a moment (a bench restarting them all): wait for one.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let client = NodeClient::with_timeout(&target, Some(LAB_TOKEN.into()), Some(Duration::from_secs(3)));
        let at_us = clock.now_us();
        let answer = client.post::<_, serde_json::Value>("/v1/rollouts", &body);
        let outcome = match &answer {
            Ok(_) => "201".to_owned(),
            Err(ClientError::Api { status, code, .. }) => format!("{status} {code}"),
            Err(error) => format!("error: {error}"),
        };
        log.attempts.push(Attempt { target, at_us, outcome });
        match answer {
            Ok(row) => {
                log.acknowledged = Some(Acknowledged {
                    id: row["id"].as_i64().unwrap_or(-1),
                    epoch: row["epoch"].as_i64().unwrap_or(-1),
                    leader_id: row["leader_id"].as_str().unwrap_or_default().to_owned(),
                });
                break;
            }
            Err(ClientError::Api { status: 409, .. }) => {
                log.stored_unacknowledged = true;
                break;
            }
            Err(ClientError::Api {
                status: 503,
                leader_address: Some(leader),
                ..
            }) => {
                hint = Some(leader);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => {
                *turn += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    log.finished_us = clock.now_us();
    log
}
