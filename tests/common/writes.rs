//! A client writing rollouts continuously, like an application behind a load balancer.
//!
//! Each write goes to the next node in turn; a 503 naming the leader is retried there, any
//! other failure at the next node, always under the same name, until it is stored (201, or
//! 409 when an earlier attempt had committed). Every attempt is logged for the evidence.

use std::{
    collections::BTreeMap,
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, Instant},
};

use autonomy::client::{ClientError, NodeClient};
use serde::{Deserialize, Serialize};

use super::{background::Background, watch::Clock, LAB_TOKEN};

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
pub struct Writer(Background<Vec<WriteLog>>);

impl Writer {
    /// Writes `<prefix>-00000`, `<prefix>-00001`, ... to `nodes` (node id → URL, shared so a
    /// restarted node's new address is picked up), pausing `pause` between writes.
    pub fn start(clock: Clock, prefix: &str, nodes: Arc<Mutex<BTreeMap<String, String>>>, pause: Duration) -> Self {
        let prefix = prefix.to_owned();
        Self(Background::spawn(move |stop| {
            let mut logs = Vec::new();
            let mut turn = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("{prefix}-{:05}", logs.len());
                logs.push(write_one(clock, &name, &nodes, &mut turn));
                std::thread::sleep(pause);
            }
            logs
        }))
    }

    pub fn finish(self) -> Vec<WriteLog> {
        self.0.finish()
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
        let target = hint.take().unwrap_or_else(|| {
            let urls: Vec<String> = nodes.lock().unwrap().values().cloned().collect();
            urls[*turn % urls.len()].clone()
        });
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
