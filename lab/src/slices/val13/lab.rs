//! The VAL13 lab: the shared cluster of two nodes on one database, with what VAL13 adds to it
//! (failovers timed from the successor's view, rollouts read through a node, the evidence kept
//! at the end). The phases that drive it are in slice.rs.

use std::{
    ops::{Deref, DerefMut},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

use super::observations::{Failover, Observations, RowSeen, Sabotage};
use crate::{
    backend::{PgBackend, LAB_DATABASE},
    cluster::{history_and_rows, lease_history, writes_jsonl, Cluster},
};

pub const NODES: [&str; 2] = ["val13-n1", "val13-n2"];

/// The running lab of one VAL13 slice run; dropping it stops every node.
pub struct Lab<'a> {
    pub pg: &'a dyn PgBackend,
    pub sabotage: Sabotage,
    /// Which lease store the nodes use, for the setup evidence.
    pub lease_store: String,
    pub cluster: Cluster<'a>,
}

impl<'a> Deref for Lab<'a> {
    type Target = Cluster<'a>;

    fn deref(&self) -> &Cluster<'a> {
        &self.cluster
    }
}

impl<'a> DerefMut for Lab<'a> {
    fn deref_mut(&mut self) -> &mut Cluster<'a> {
        &mut self.cluster
    }
}

impl Lab<'_> {
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

    /// Records `failover` and, when the successor took over, every rollout read through it:
    /// into the two evidence files named (the failover, the rows), titled `when`.
    pub fn read_after(&self, failover: &Failover, when: &str, files: [&str; 2]) -> Result<Vec<RowSeen>, String> {
        self.write(files[0], format!("{failover:#?}\n"))?;
        if failover.failover_ms.is_none() {
            return Err(format!("{} did not take over {when}", failover.to));
        }
        let read = self.read_rollouts(&failover.to)?;
        self.write(files[1], rows_text(when, &read))?;
        Ok(read)
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
        obs.samples = self.cluster.stop();
        let _ = self.write("val13-10-writes.jsonl", writes_jsonl(&obs.writes));
        if let Ok(mut db) = postgres::Client::connect(&self.pg.url(LAB_DATABASE), postgres::NoTls) {
            if let Ok(history) = lease_history(&mut db) {
                obs.lease_history = history;
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
        let _ = self.write(
            "val13-06-lease-history.txt",
            history_and_rows(&obs.lease_history, rows_text("all rows at the end", &obs.rows)),
        );
        let audit = autonomy::audit::query(&self.audit_dir(), &autonomy::audit::AuditQuery::default())
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
