//! The VAL13 lab: two nodes on one database, their addresses, status, failovers and the
//! evidence kept at the end. The phases that drive it are in slice.rs.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use autonomy::{client::NodeClient, evidence::writer::Bundle};
use nix::sys::signal::Signal;

use super::{
    common::{
        backend::{PgBackend, LAB_DATABASE},
        node::{Node, NodeSpec},
        watch::{self, Clock, StatusWatch},
        LAB_TOKEN,
    },
    observations::{Failover, Observations, RowSeen, Sabotage},
};

pub const NODES: [&str; 2] = ["val13-n1", "val13-n2"];

/// The running lab of one VAL13 slice run; dropping it stops every node.
pub struct Lab<'a> {
    pub pg: &'a dyn PgBackend,
    pub bundle: &'a Bundle,
    pub scratch: PathBuf,
    pub sabotage: Sabotage,
    pub clock: Clock,
    pub nodes: BTreeMap<String, Node>,
    /// How many times each node was started (each start logs to its own file).
    pub starts: BTreeMap<String, usize>,
    /// Node id → current API URL, shared with the writer.
    pub urls: Arc<Mutex<BTreeMap<String, String>>>,
    /// Polls every node's status from the first start to the end of the phases.
    pub watch: Option<StatusWatch>,
}

impl Lab<'_> {
    pub fn write(&self, name: &str, body: impl AsRef<[u8]>) -> Result<(), String> {
        self.bundle
            .write(name, body)
            .map(|_| ())
            .map_err(|e| format!("write evidence {name}: {e}"))
    }

    pub fn spec(&mut self, node_id: &str) -> NodeSpec {
        let start = self.starts.entry(node_id.to_owned()).or_default();
        *start += 1;
        let mut extra_args = Vec::new();
        if self.sabotage == Sabotage::SkipFencing {
            extra_args.push("--unsafe-skip-fencing".to_owned());
        }
        NodeSpec {
            node_id: node_id.to_owned(),
            database_url: self.pg.url(LAB_DATABASE),
            backup_dir: self.scratch.join("backups"),
            audit_dir: self.scratch.join("audit"),
            maintenance_mode: false,
            log_path: self.bundle.path(&format!("{node_id}-{start}.log")),
            extra_args,
            listen: "127.0.0.1:0".into(),
            wrapper: Vec::new(),
        }
    }

    /// Starts (or restarts) a node and registers its address with the poller and the writer.
    pub fn start(&mut self, node_id: &str) -> Result<(), String> {
        let spec = self.spec(node_id);
        let node = Node::start(spec)?;
        self.register(node_id, node);
        Ok(())
    }

    pub fn register(&mut self, node_id: &str, node: Node) {
        if let Some(watch) = &self.watch {
            watch.watch(node_id, &node.url);
        }
        self.urls.lock().unwrap().insert(node_id.to_owned(), node.url.clone());
        self.nodes.insert(node_id.to_owned(), node);
    }

    pub fn url(&self, node_id: &str) -> String {
        self.urls.lock().unwrap()[node_id].clone()
    }

    pub fn client(&self, node_id: &str) -> NodeClient {
        NodeClient::with_timeout(&self.url(node_id), Some(LAB_TOKEN.into()), Some(Duration::from_secs(5)))
    }

    pub fn status(&self, node_id: &str) -> watch::StatusSample {
        watch::sample(self.clock, u64::MAX, node_id, &self.url(node_id))
    }

    pub fn other(node_id: &str) -> &'static str {
        if node_id == NODES[0] {
            NODES[1]
        } else {
            NODES[0]
        }
    }

    /// Every rollout, read through `node_id`'s API.
    pub fn read_rollouts(&self, node_id: &str) -> Result<Vec<RowSeen>, String> {
        let rows: Vec<serde_json::Value> = self
            .client(node_id)
            .get("/v1/rollouts")
            .map_err(|e| format!("list rollouts through {node_id}: {e}"))?;
        Ok(rows
            .iter()
            .map(|r| RowSeen {
                id: r["id"].as_i64().unwrap_or(-1),
                name: r["name"].as_str().unwrap_or_default().to_owned(),
                epoch: r["epoch"].as_i64().unwrap_or(-1),
                leader_id: r["leader_id"].as_str().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// Signals `leader` and polls the other node every 50 ms until it is holder and leader
    /// (at most 10 s); then waits for the old leader's process to end.
    pub fn fail_over(&mut self, leader: &str, signal: Signal) -> Result<Failover, String> {
        let successor = Self::other(leader);
        let epoch_before = self
            .status(leader)
            .epoch
            .ok_or_else(|| format!("{leader} reported no epoch before the {signal}"))?;
        let node = self
            .nodes
            .get_mut(leader)
            .ok_or_else(|| format!("{leader} is not running"))?;
        let sent = Instant::now();
        node.signal(signal);
        let mut failover_ms = None;
        let mut epoch_after = None;
        while sent.elapsed() < Duration::from_secs(10) {
            let seen = self.status(successor);
            if seen.role.as_deref() == Some("leader") && seen.holder_id.as_deref() == Some(successor) {
                failover_ms = Some(sent.elapsed().as_millis() as u64);
                epoch_after = seen.epoch;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let node = self.nodes.get_mut(leader).expect("checked above");
        let old_leader_exited = node.wait_for_exit(Duration::from_secs(10));
        Ok(Failover {
            signal: signal.to_string(),
            from: leader.to_owned(),
            to: successor.to_owned(),
            epoch_before,
            epoch_after,
            failover_ms,
            old_leader_exited,
        })
    }

    /// Stops everything and keeps what the checks need: samples, history, rows, audit.
    pub fn finish(&mut self, obs: &mut Observations) {
        obs.samples = self.watch.take().map(StatusWatch::finish).unwrap_or_default();
        let lines: Vec<String> = obs
            .samples
            .iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect();
        let _ = self.write("val13-09-status-samples.jsonl", lines.join("\n") + "\n");
        let lines: Vec<String> = obs
            .writes
            .iter()
            .map(|w| serde_json::to_string(w).unwrap_or_default())
            .collect();
        let _ = self.write("val13-10-writes.jsonl", lines.join("\n") + "\n");
        for (_, node) in std::mem::take(&mut self.nodes) {
            drop(node.stop());
        }
        if let Ok(mut db) = postgres::Client::connect(&self.pg.url(LAB_DATABASE), postgres::NoTls) {
            if let Ok(rows) = db.query(
                "SELECT epoch, holder_id FROM autonomy_ha.lease_history ORDER BY epoch",
                &[],
            ) {
                obs.lease_history = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            }
            if let Ok(rows) = db.query(
                "SELECT id, name, epoch, leader_id FROM autonomy_app.rollouts ORDER BY id",
                &[],
            ) {
                obs.rows = rows
                    .iter()
                    .map(|r| RowSeen {
                        id: r.get(0),
                        name: r.get(1),
                        epoch: r.get(2),
                        leader_id: r.get(3),
                    })
                    .collect();
            }
        }
        let history: Vec<String> = obs
            .lease_history
            .iter()
            .map(|(e, h)| format!("epoch={e} holder={h}"))
            .collect();
        let _ = self.write(
            "val13-06-lease-history.txt",
            format!(
                "{}\n\n{}",
                history.join("\n"),
                rows_text("all rows at the end", &obs.rows)
            ),
        );
        let audit = autonomy::audit::query(&self.scratch.join("audit"), &autonomy::audit::AuditQuery::default())
            .map(|events| {
                events
                    .into_iter()
                    .filter(|e| e.event_type.starts_with("ha.leader.") || e.event_type.starts_with("ha.fencing."))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let _ = self.write(
            "val13-audit-leader-events.json",
            serde_json::to_string_pretty(&audit).unwrap_or_default(),
        );
    }
}

pub fn rows_text(title: &str, rows: &[RowSeen]) -> String {
    let mut out = format!("# rollouts {title}: {} rows\nid|name|epoch|leader_id\n", rows.len());
    for r in rows {
        out.push_str(&format!("{}|{}|{}|{}\n", r.id, r.name, r.epoch, r.leader_id));
    }
    out
}
