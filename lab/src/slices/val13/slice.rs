//! The VAL13 slice: two nodes on one database, failovers by SIGTERM and SIGKILL, a rejoin,
//! rapid cycles and a client writing through a failover; the report from what was observed.

use std::time::{Duration, Instant};

use autonomy::{
    client::ClientError,
    evidence::{writer::Bundle, Report},
};
use nix::sys::signal::Signal;

use super::{
    checks::{evaluate, RAPID_CYCLES},
    lab::{Lab, NODES},
    observations::{FollowerWrite, Formation, Observations, Rejoin},
};
use crate::{
    cluster::Answer,
    harness::connect_and_describe,
    harness::{guarded, Slice, SliceLab},
    node::Node,
    writes::{Writer, WRITES_BEFORE_FAULT, WRITES_WAIT},
};

/// VAL13, HA failover.
pub struct Val13;

impl Slice for Val13 {
    crate::slice_identity!("val13", "VAL 13 — HA Failover Validation", [SkipFencing]);
    const ON_EITHER_LEASE_STORE: bool = true;

    fn run(lab: SliceLab<'_>, obs: &mut Observations, report: &mut Report) -> Option<String> {
        let mut cluster = lab.cluster(Self::ID);
        cluster.samples_file = "val13-09-status-samples.jsonl".into();
        let mut lab = Lab {
            pg: &*lab.pg,
            sabotage: lab.sabotage,
            lease_store: lab.lease.describe(),
            cluster,
        };
        let aborted = guarded(|| lab.phases(obs, report));
        lab.finish(obs);
        report.node = Some(lab.addresses());
        aborted
    }

    fn summarize(obs: &Observations, report: &mut Report, _bundle: &Bundle) {
        for (name, failover) in [
            ("sigterm_failover_ms", &obs.sigterm),
            ("sigkill_failover_ms", &obs.sigkill),
        ] {
            if let Some(ms) = failover.as_ref().and_then(|f| f.failover_ms) {
                report.metrics.insert(name.into(), ms.into());
            }
        }
        let cycles: Vec<u64> = obs.cycles.iter().filter_map(|c| c.failover_ms).collect();
        if !cycles.is_empty() {
            report.metrics.insert("rapid_cycle_ms".into(), cycles.into());
        }
    }
}

impl Lab<'_> {
    fn phases(&mut self, obs: &mut Observations, report: &mut Report) -> Result<(), String> {
        // Setup: the database, then both nodes at the same moment.
        let (mut db, setup) = connect_and_describe(self.pg, report)?;
        self.write(
            "val13-pg-setup.txt",
            format!("{setup}{}\nsabotage={:?}\n", self.lease_store, self.sabotage),
        )?;
        let started = Instant::now();
        let mut spawned = Vec::new();
        for node_id in NODES {
            let spec = self.spec(node_id);
            spawned.push((node_id, Node::spawn(spec)?));
        }
        for (node_id, mut node) in spawned {
            node.wait_until_listening()?;
            self.register(node_id, node);
        }

        // 01: one leader, one follower, agreeing on holder and epoch.
        let formation = loop {
            let views: Vec<_> = NODES.iter().map(|n| self.status(n)).collect();
            let leader = views.iter().find(|v| v.role.as_deref() == Some("leader"));
            let follower = views.iter().find(|v| v.role.as_deref() == Some("follower"));
            let agreed = views
                .windows(2)
                .all(|w| (&w[0].holder_id, w[0].epoch) == (&w[1].holder_id, w[1].epoch));
            let timed_out = started.elapsed() > Duration::from_secs(15);
            if let (Some(leader), Some(follower), true) = (leader, follower, agreed) {
                break Formation {
                    formed_ms: started.elapsed().as_millis() as u64,
                    leader: leader.node_id.clone(),
                    follower: follower.node_id.clone(),
                    views: views
                        .iter()
                        .map(|v| {
                            (
                                v.node_id.clone(),
                                v.role.clone().unwrap_or_default(),
                                v.holder_id.clone(),
                                v.epoch,
                            )
                        })
                        .collect(),
                };
            }
            if timed_out {
                return Err(format!("no leader and follower agreeing after 15 s: {views:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.write("val13-01-cluster-formed.txt", format!("{formation:#?}\n"))?;
        let leader = formation.leader.clone();
        let follower = formation.follower.clone();
        obs.formation = Some(formation);

        // Rollouts acknowledged by the leader before it is stopped.
        for n in 0..20 {
            let name = format!("before-sigterm-{n:02}");
            let row: serde_json::Value = self
                .client(&leader)
                .post("/v1/rollouts", &serde_json::json!({ "name": name, "spec": { "n": n } }))
                .map_err(|e| format!("write {name} through the leader: {e}"))?;
            obs.acked_before_sigterm.push((
                name,
                crate::writes::Acknowledged {
                    id: row["id"].as_i64().unwrap_or(-1),
                    epoch: row["epoch"].as_i64().unwrap_or(-1),
                    leader_id: row["leader_id"].as_str().unwrap_or_default().to_owned(),
                },
            ));
        }

        // 02: a write sent to the follower.
        let name = "sent-to-follower".to_owned();
        let answer = self
            .client(&follower)
            .post::<_, serde_json::Value>("/v1/rollouts", &serde_json::json!({ "name": name, "spec": {} }));
        let (leader_id, leader_address) = match &answer {
            Err(ClientError::Api {
                leader_id,
                leader_address,
                ..
            }) => (leader_id.clone(), leader_address.clone()),
            _ => (None, None),
        };
        let body = match &answer {
            Err(ClientError::Api { message, .. }) => message.clone(),
            Ok(row) => row.to_string(),
            Err(error) => error.to_string(),
        };
        let stored: i64 = db
            .query_one("SELECT count(*) FROM autonomy_app.rollouts WHERE name = $1", &[&name])
            .map_err(|e| format!("look for {name}: {e}"))?
            .get(0);
        let follower_write = FollowerWrite {
            name,
            answer: Answer::of(&answer),
            leader_id,
            leader_address,
            expected_leader: leader.clone(),
            expected_address: self.url(&leader),
            stored: stored > 0,
        };
        self.write(
            "val13-02-follower-write.txt",
            format!("{follower_write:#?}\nmessage: {body}\n"),
        )?;
        obs.follower_write = Some(follower_write);

        // 03: SIGTERM the leader; 04: everything acknowledged is readable through the successor.
        let sigterm = self.fail_over(&leader, Signal::SIGTERM)?;
        let successor = sigterm.to.clone();
        let files = ["val13-03-sigterm-failover.txt", "val13-04-data-after-failover.txt"];
        let read = self.read_after(&sigterm, "after SIGTERM", files);
        obs.sigterm = Some(sigterm);
        obs.read_after_sigterm = Some(read?);

        // 07: the old leader restarts and stays a follower.
        let before = self.status(&successor);
        self.start(&leader)?;
        let rejoin_started = Instant::now();
        self.nodes[&leader].wait_for_role("follower", Duration::from_secs(15))?;
        // Longer than a renew interval (TTL/3 ≈ 1.7 s by default) and forty follower polls:
        // enough rounds for a rejoining node that wrongly takes the lease to show it.
        std::thread::sleep(Duration::from_secs(2));
        let after = self.status(&leader);
        let rejoin = Rejoin {
            node: leader.clone(),
            role: after.role.clone(),
            holder_before: before.holder_id,
            holder_after: after.holder_id,
            epoch_before: before.epoch,
            epoch_after: after.epoch,
            watched_ms: rejoin_started.elapsed().as_millis() as u64,
        };
        self.write("val13-07-rejoin.txt", format!("{rejoin:#?}\n"))?;
        obs.rejoin = Some(rejoin);

        // 05 and 10: SIGKILL the leader while a client writes through every node in turn.
        let writer = Writer::start(
            self.clock,
            "during-sigkill",
            self.urls.clone(),
            Duration::from_millis(5),
        );
        // Let the client write through the leader first, so VAL13-10 has acknowledged writes
        // from before the kill as well as after the takeover.
        writer.wait_for_acknowledged(WRITES_BEFORE_FAULT, WRITES_WAIT);
        obs.sigkill_sent_us = Some(self.clock.now_us());
        let sigkill = self.fail_over(&successor, Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(1500));
        obs.writes = writer.finish();
        let sigkill = sigkill?;
        let read = self.read_after(
            &sigkill,
            "after SIGKILL",
            ["val13-05-sigkill-failover.txt", "val13-10-rows.txt"],
        );
        obs.sigkill = Some(sigkill);
        obs.read_after_sigkill = Some(read?);

        // 08: rapid cycles: restart the killed node, kill the leader, measure; three times.
        let mut killed = successor;
        for cycle in 0..RAPID_CYCLES {
            self.start(&killed)?;
            self.nodes[&killed].wait_for_role("follower", Duration::from_secs(15))?;
            let current = Self::other(&killed).to_owned();
            let failover = self.fail_over(&current, Signal::SIGKILL)?;
            let ok = failover.failover_ms.is_some();
            obs.cycles.push(failover);
            if !ok {
                return Err(format!("cycle {}: no takeover after SIGKILL of {current}", cycle + 1));
            }
            killed = current;
        }
        self.write("val13-08-rapid-cycles.txt", format!("{:#?}\n", obs.cycles))?;
        Ok(())
    }
}
