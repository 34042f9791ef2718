//! The VAL17 slice: two nodes, then their database (with the lease on etcd: etcd's quorum)
//! taken down abruptly and brought back; the report from what was observed.

use std::time::Duration;

use autonomy::evidence::{writer::Bundle, Report};

use super::{
    checks::evaluate,
    observations::{Detection, Observations},
};
use crate::{
    backend::{PgBackend, LAB_DATABASE},
    cluster::{look_up, rows_table, stored_rows, Cluster},
    etcd::EtcdCluster,
    harness::connect_and_describe,
    harness::{guarded, Slice, SliceLab},
};

pub const NODES: [&str; 2] = ["val17-n1", "val17-n2"];

/// How long the database stays down once every node has reported the loss: long enough for
/// many status samples and a write to each node during the loss.
const OUTAGE_HELD: Duration = Duration::from_secs(3);

/// VAL17, quorum loss.
pub struct Val17;

impl Slice for Val17 {
    crate::slice_identity!("val17", "VAL 17 — Quorum Loss Validation", [SkipFencing]);
    const ON_EITHER_LEASE_STORE: bool = true;

    fn run(mut lab: SliceLab<'_>, obs: &mut Observations, report: &mut Report) -> Option<String> {
        let mut cluster = lab.cluster(Self::ID);
        let described = lab.lease.describe();
        let mut outage = match lab.lease.etcd_mut() {
            Some(etcd) => Outage::EtcdQuorum(etcd),
            None => Outage::Database,
        };
        let aborted = guarded(|| phases(&mut cluster, &mut *lab.pg, &mut outage, &described, obs, report));
        finish(&mut cluster, &*lab.pg, obs);
        report.node = Some(cluster.addresses());
        aborted
    }

    fn summarize(obs: &Observations, report: &mut Report, _bundle: &Bundle) {
        if let Some(ms) = obs.loss_detection_ms() {
            report.metrics.insert("loss_detection_ms".into(), ms.into());
        }
        if let Some(ms) = obs.recovery_ms {
            report.metrics.insert("recovery_ms".into(), ms.into());
        }
    }
}

/// What goes away: the database (with the row lease, the store of the lease too), or with the
/// lease on etcd, etcd's quorum (two of its three members killed).
enum Outage<'e> {
    Database,
    EtcdQuorum(&'e mut EtcdCluster),
}

impl Outage<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Outage::Database => "outage: the database, stopped abruptly and started again",
            Outage::EtcdQuorum(_) => {
                "outage: etcd's quorum, two of its three members killed (SIGKILL), one started again"
            }
        }
    }

    fn begin(&mut self, pg: &mut dyn PgBackend) -> Result<(), String> {
        match self {
            Outage::Database => pg.stop_abruptly(),
            Outage::EtcdQuorum(etcd) => {
                etcd.stop_member(1);
                etcd.stop_member(2);
                Ok(())
            }
        }
    }

    /// Ends the outage; returns once the store takes requests again (etcd: a write commits).
    fn end(&mut self, pg: &mut dyn PgBackend) -> Result<(), String> {
        match self {
            Outage::Database => pg.start_again(),
            Outage::EtcdQuorum(etcd) => {
                etcd.start_member(1)?;
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while !etcd
                    .etcdctl(&["put", "/autonomy-lab/val17-probe", "back"])
                    .status
                    .success()
                {
                    if std::time::Instant::now() > deadline {
                        return Err("etcd did not take a write within 30 s of its second member's start".into());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            }
        }
    }
}

fn phases(
    cluster: &mut Cluster,
    pg: &mut dyn PgBackend,
    outage: &mut Outage,
    lease_store: &str,
    obs: &mut Observations,
    report: &mut Report,
) -> Result<(), String> {
    let (mut db, setup) = connect_and_describe(pg, report)?;
    cluster.write(
        "val17-pg-setup.txt",
        format!("{setup}{lease_store}\n{}\n", outage.describe()),
    )?;

    // 01: a healthy cluster, with data written through the leader.
    cluster.start_all(&NODES)?;
    let baseline = cluster.wait_for_agreement(Duration::from_secs(15))?;
    let leader = baseline.leader.clone();
    obs.baseline = Some(baseline);
    for n in 0..20 {
        let write = cluster.write_rollout(&leader, &format!("before-loss-{n:02}"));
        if !write.answer.created() {
            return Err(format!("the leader refused a write before the outage: {write:?}"));
        }
        obs.baseline_write = Some(write);
    }
    obs.pre_loss_rows = stored_rows(&mut db)?;
    cluster.write(
        "val17-01-baseline.txt",
        format!("{:#?}\n{:#?}\n", obs.baseline, obs.baseline_write),
    )?;
    cluster.write(
        "val17-09-rows-before-loss.txt",
        rows_table("before the outage", &obs.pre_loss_rows),
    )?;
    drop(db);

    // 02: the database (or etcd's quorum) goes away; every node must say so.
    obs.outage_started_us = Some(cluster.clock.now_us());
    outage.begin(pg)?;
    let lost = |s: &crate::watch::StatusSample| {
        s.db_reachable == Some(false)
            && s.write_block_active == Some(true)
            && s.can_accept_protected_writes == Some(false)
    };
    let waited = cluster.wait_for(Duration::from_secs(35), |views| views.iter().all(lost));
    // The wait saw every node report the loss by now; finish() refines each node's time with
    // its first watch sample showing it, when that came earlier.
    let seen_at_us = waited.is_ok().then(|| cluster.clock.now_us());
    for node in NODES {
        obs.detections.push(Detection {
            node: node.to_owned(),
            detected_ms: seen_at_us.map(|at| at.saturating_sub(obs.outage_started_us.unwrap_or_default()) / 1000),
            detected_at_us: seen_at_us,
        });
    }
    cluster.write("val17-02-loss-detected.txt", format!("{:#?}\n", obs.detections))?;
    if waited.is_err() {
        return Err("not every node reported the loss within 35 s".into());
    }

    // 03–05: during the loss, writes to every node are refused; statuses keep coming.
    for node in NODES {
        obs.refused_writes
            .push(cluster.write_rollout(node, &format!("during-loss-{node}")));
    }
    std::thread::sleep(OUTAGE_HELD);

    // 06: the database (or etcd's quorum) comes back; the cluster must recover by itself.
    obs.restart_issued_us = Some(cluster.clock.now_us());
    outage.end(pg)?;
    obs.accepting_us = Some(cluster.clock.now_us());
    let recovered = cluster.wait_for(Duration::from_secs(35), crate::cluster::recovered);
    obs.recovery_ms = recovered.as_ref().ok().map(|_| {
        (cluster
            .clock
            .now_us()
            .saturating_sub(obs.accepting_us.unwrap_or_default()))
            / 1000
    });
    if let Err(views) = recovered {
        return Err(format!("the cluster did not recover within 35 s: {views:#?}"));
    }

    // 07: writes resume through the new leader; 08: it stays one leader, at a new epoch.
    let agreement = cluster.wait_for_agreement(Duration::from_secs(15))?;
    obs.resumed_write = Some(cluster.write_rollout(&agreement.leader, "after-recovery"));
    // Longer than a renew interval (TTL/3 ≈ 1.7 s by default) and forty follower polls.
    std::thread::sleep(Duration::from_secs(2));
    obs.settled = Some(cluster.wait_for_agreement(Duration::from_secs(5))?);
    cluster.write(
        "val17-06-recovery.txt",
        format!(
            "recovery_ms={:?}\n{:#?}\n{:#?}\n",
            obs.recovery_ms, obs.resumed_write, obs.settled
        ),
    )?;
    Ok(())
}

/// Stops the nodes and keeps what the checks need: samples, rows, the refused writes' fate,
/// the audit events.
fn finish(cluster: &mut Cluster, pg: &dyn PgBackend, obs: &mut Observations) {
    obs.samples = cluster.stop();
    // Per node, the first watch sample after the outage began that showed the loss.
    if let Some(started) = obs.outage_started_us {
        for detection in &mut obs.detections {
            let first = obs
                .samples
                .iter()
                .filter(|s| s.node_id == detection.node && s.sent_us >= started)
                .find(|s| {
                    s.db_reachable == Some(false)
                        && s.write_block_active == Some(true)
                        && s.can_accept_protected_writes == Some(false)
                })
                .map(|s| s.received_us);
            if let Some(at_us) = first.filter(|at| detection.detected_at_us.is_none_or(|seen| *at < seen)) {
                detection.detected_at_us = Some(at_us);
                detection.detected_ms = Some(at_us.saturating_sub(started) / 1000);
            }
        }
    }
    if let Ok(mut db) = postgres::Client::connect(&pg.url(LAB_DATABASE), postgres::NoTls) {
        if let Ok(rows) = stored_rows(&mut db) {
            obs.post_rows = rows;
        }
    }
    look_up(&mut obs.refused_writes, &obs.post_rows);
    if let Some(write) = obs.resumed_write.as_mut() {
        look_up(std::slice::from_mut(write), &obs.post_rows);
    }
    let _ = cluster.write("val17-04-refused-writes.txt", format!("{:#?}\n", obs.refused_writes));
    let _ = cluster.write("val17-09-rows-at-end.txt", rows_table("at the end", &obs.post_rows));
    obs.audit = cluster.audit_events(&["ha.quorum.", "ha.leader."]);
}
