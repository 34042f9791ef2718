//! The VAL16 slice: a rogue holder and epoch written into the lease row (with the lease on
//! etcd: the leader key) under a leader, a leader frozen past its TTL, and a leader cut off from
//! PostgreSQL by a real partition (on etcd, then also from etcd alone), all under a client
//! writing continuously; the report from what was observed.

use std::time::{Duration, Instant};

use autonomy::evidence::{writer::Bundle, Report};
use nix::sys::signal::Signal;

use super::{
    checks::evaluate,
    observations::{Divergence, Injection, Observations, Partition, Pause, Takeover},
};
use crate::{
    backend::{PgBackend, LAB_DATABASE},
    cluster::{
        history_and_rows, lease_history, look_up, rows_table, single_write, stored_rows, writes_jsonl, Agreement,
        Cluster, SingleWrite,
    },
    etcd::EtcdCluster,
    harness::connect_and_describe,
    harness::{guarded, Slice, SliceLab},
    netns::NetnsHost,
    run,
    writes::{Writer, WRITES_BEFORE_FAULT, WRITES_WAIT},
};

pub const NODES: [&str; 2] = ["val16-n1", "val16-n2"];
/// The node that runs on a host of its own for the partition.
pub const PARTITIONED: &str = "val16-n3";
pub const ROGUE_HOLDER: &str = "val16-rogue";
/// The defaults, spelled out so the checks know the bounds they hold the nodes to.
pub const LEASE_TTL_MS: u64 = 5_000;
pub const RENEW_INTERVAL_MS: u64 = 1_666;

/// VAL16, split-brain chaos.
pub struct Val16;

impl Slice for Val16 {
    crate::slice_identity!("val16", "VAL 16 — Split-Brain Chaos Validation", [SkipFencing]);
    const ON_EITHER_LEASE_STORE: bool = true;

    fn run(lab: SliceLab<'_>, obs: &mut Observations, report: &mut Report) -> Option<String> {
        let mut cluster = lab.cluster(Self::ID);
        cluster.extra_args.extend([
            "--lease-ttl-ms".into(),
            LEASE_TTL_MS.to_string(),
            "--renew-interval-ms".into(),
            RENEW_INTERVAL_MS.to_string(),
        ]);
        obs.lease_store = lab.lease.kind().to_owned();
        let etcd = lab.lease.etcd();
        let mut writer = None;
        let mut host = None;
        let aborted = guarded(|| phases(&mut cluster, &*lab.pg, etcd, &mut writer, &mut host, obs, report));
        if let Some(writer) = writer.take() {
            obs.writes.extend(writer.finish());
        }
        finish(&mut cluster, &*lab.pg, obs);
        drop(host); // after the nodes in it are stopped
        report.node = Some(cluster.addresses());
        aborted
    }

    fn summarize(obs: &Observations, report: &mut Report, _bundle: &Bundle) {
        if let Some(ms) = obs.divergence.as_ref().and_then(|d| d.detected_ms) {
            report.metrics.insert("detection_ms".into(), ms.into());
        }
        if let Some(ms) = obs.recovery_ms {
            report.metrics.insert("recovery_ms".into(), ms.into());
        }
        if let Some(ms) = obs.partition.as_ref().and_then(|p| p.takeover.takeover_ms) {
            report.metrics.insert("partition_takeover_ms".into(), ms.into());
        }
    }
}

fn phases(
    cluster: &mut Cluster,
    pg: &dyn PgBackend,
    etcd: Option<&EtcdCluster>,
    writer: &mut Option<Writer>,
    host: &mut Option<NetnsHost>,
    obs: &mut Observations,
    report: &mut Report,
) -> Result<(), String> {
    let (mut db, setup) = connect_and_describe(pg, report)?;
    cluster.write(
        "val16-pg-setup.txt",
        format!("{setup}node flags={:?}\n", cluster.extra_args),
    )?;

    // 01: one leader; a first batch of data through it.
    cluster.start_all(&NODES)?;
    let baseline = cluster.wait_for_agreement(Duration::from_secs(15))?;
    for n in 0..20 {
        let write = cluster.write_rollout(&baseline.leader, &format!("baseline-{n:02}"));
        if !write.answer.created() {
            return Err(format!("the leader refused a baseline write: {write:?}"));
        }
    }
    cluster.write("val16-01-baseline.txt", format!("{baseline:#?}\n"))?;
    obs.baseline = Some(baseline.clone());

    // 02–06: a client writes through every node while the lease row is rewritten under the
    // leader, as a bug or an operator's mistake would.
    obs.pre_rows = stored_rows(&mut db)?;
    cluster.write(
        "val16-06-rows-before.txt",
        rows_table("before the injection", &obs.pre_rows),
    )?;
    *writer = Some(Writer::start(
        cluster.clock,
        "load",
        cluster.urls.clone(),
        Duration::from_millis(5),
    ));
    // Writes under the stale leader's term, so VAL16-04 has rows to count at the injection and
    // VAL16-06 acknowledged writes from before it.
    wait_for_writes(writer);
    let (injection, injected) = match etcd {
        None => inject(&mut db, cluster, &baseline)?,
        Some(etcd) => inject_into_etcd(&mut db, cluster, &baseline, etcd)?,
    };
    let stale = injection.stale_leader.clone();
    let mut divergence = Divergence {
        detected_ms: None,
        stepped_down_ms: None,
        reported: None,
    };
    while injected.elapsed() < Duration::from_secs(10)
        && (divergence.detected_ms.is_none() || divergence.stepped_down_ms.is_none())
    {
        let status = cluster.status(&stale);
        let elapsed = injected.elapsed().as_millis() as u64;
        if status.error.is_none() && !status.is_leader() {
            divergence.stepped_down_ms.get_or_insert(elapsed);
        }
        if status.split_brain_store_epoch == Some(injection.injected_epoch) {
            divergence.detected_ms.get_or_insert(elapsed);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Ok(answer) = cluster.client(&stale).get::<serde_json::Value>("/v1/ha/status") {
        divergence.reported = answer["split_brain"]["local_epoch"]
            .as_i64()
            .zip(answer["split_brain"]["store_epoch"].as_i64());
        cluster.write("val16-02-stale-leader-status.json", format!("{answer:#}\n"))?;
    }
    cluster.write("val16-02-divergence.txt", format!("{injection:#?}\n{divergence:#?}\n"))?;
    let injected_epoch = injection.injected_epoch;
    obs.injection = Some(injection);
    obs.divergence = Some(divergence);
    let recovered = cluster.wait_for_agreement_where(Duration::from_secs(15), |views| {
        views.iter().all(|v| v.epoch.is_some_and(|e| e > injected_epoch))
    })?;
    obs.recovery_ms = Some(injected.elapsed().as_millis() as u64);
    if etcd.is_some() {
        // The rewrite of the etcd key does not move the database's fence; the successor's
        // acquisition does, and from then on no write of the stale epoch can commit.
        if let Some(injection) = obs.injection.as_mut() {
            injection.stale_rows_at_injection = count_epoch_rows(&mut db, injection.stale_epoch)?;
        }
    }
    cluster.write("val16-05-recovered.txt", format!("{recovered:#?}\n"))?;
    obs.recovered = Some(recovered.clone());
    // Writes under the recovered leader, so the pause starts from a term with rows (VAL16-07's
    // write gap needs rows on both sides).
    wait_for_writes(writer);

    // 07: the leader frozen past its TTL, then resumed.
    let pause = pause_leader(cluster, &mut db, &recovered)?;
    cluster.write("val16-07-paused-leader.txt", format!("{pause:#?}\n"))?;
    obs.pause = Some(pause);

    // 08: a leader cut off from PostgreSQL while the other node still reaches it.
    if let Some(writer) = writer.take() {
        obs.writes.extend(writer.finish());
    }
    match crate::netns::unavailable() {
        Some(reason) if !run::lab_required() => {
            cluster.write("val16-08-partition.txt", format!("SKIP: {reason}\n"))?;
            obs.partition_skipped = Some(reason);
            return Ok(());
        }
        Some(reason) => return Err(format!("the partition cannot run here: {reason}")),
        None => {}
    }
    for node in NODES {
        cluster.stop_node(node);
    }
    let made = host.insert(NetnsHost::create("val16")?);
    let relays = Relays::start(made, pg, etcd)?;
    let from_database = partition(cluster, pg, made, &relays, &relays.database, "partition", writer)?;
    cluster.write("val16-08-partition.txt", format!("{from_database:#?}\n"))?;
    obs.partition = Some(from_database);
    if !relays.etcd.is_empty() {
        // The new fault of the etcd lease: cut off from etcd, PostgreSQL still reachable. It
        // must stop writing before etcd lets anyone else lead.
        if let Some(writer) = writer.take() {
            obs.writes.extend(writer.finish());
        }
        lead_from_namespace(cluster)?;
        let from_etcd = partition(cluster, pg, made, &relays, &relays.etcd, "cut-from-etcd", writer)?;
        cluster.write("val16-08-partition-from-etcd.txt", format!("{from_etcd:#?}\n"))?;
        obs.partition_from_etcd = Some(from_etcd);
    }
    Ok(())
}

/// The host's relays the namespace node reaches the database and etcd's members through.
struct Relays {
    database: Vec<u16>,
    etcd: Vec<u16>,
    /// `--etcd-endpoints` for the namespace node: the members through the relays.
    etcd_endpoints: String,
}

impl Relays {
    fn start(host: &mut NetnsHost, pg: &dyn PgBackend, etcd: Option<&EtcdCluster>) -> Result<Self, String> {
        let database = vec![host.relay_to(pg.port())?];
        let mut relayed = Vec::new();
        for port in etcd.map(EtcdCluster::client_ports).unwrap_or_default() {
            relayed.push(host.relay_to(port)?);
        }
        let etcd_endpoints = relayed
            .iter()
            .map(|port| format!("http://{}:{port}", host.host_ip))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self {
            database,
            etcd: relayed,
            etcd_endpoints,
        })
    }
}

/// Makes the namespace node the leader again: the other leader is stopped cleanly (its release
/// wakes the namespace node) and restarted as a follower.
fn lead_from_namespace(cluster: &mut Cluster) -> Result<(), String> {
    for _ in 0..3 {
        let agreed = cluster.wait_for_agreement(Duration::from_secs(15))?;
        if agreed.leader == PARTITIONED {
            return Ok(());
        }
        let leader = agreed.leader.clone();
        cluster.stop_node(&leader);
        cluster.nodes[PARTITIONED].wait_for_role("leader", Duration::from_secs(15))?;
        let spec = cluster.spec(&leader);
        cluster.start_spec(spec)?;
    }
    Err(format!("{PARTITIONED} did not lead again for the cut from etcd"))
}

/// Counts the rows committed at `epoch`.
fn count_epoch_rows(db: &mut postgres::Client, epoch: i64) -> Result<i64, String> {
    Ok(db
        .query_one("SELECT count(*) FROM autonomy_app.rollouts WHERE epoch = $1", &[&epoch])
        .map_err(|e| format!("count the rows of epoch {epoch}: {e}"))?
        .get(0))
}

/// Rewrites the leader key in etcd by hand (`etcdctl put`): a rogue holder at a far higher
/// epoch, on the stale leader's own etcd lease, as the row's rewrite keeps the holder's session:
/// only the stale leader's own checks can notice, and the key frees once it lets go. Returns it
/// with the instant the put returned.
fn inject_into_etcd(
    db: &mut postgres::Client,
    cluster: &Cluster,
    baseline: &Agreement,
    etcd: &EtcdCluster,
) -> Result<(Injection, Instant), String> {
    let key = format!("{}leader", crate::lease_store::prefix("val16"));
    // The lease from the JSON form (whose values are base64), the value from the plain one.
    let read = etcd.etcdctl(&["get", "-w", "json", &key]);
    let answer: serde_json::Value =
        serde_json::from_slice(&read.stdout).map_err(|e| format!("read the leader key {key}: {e}: {read:?}"))?;
    let lease = answer["kvs"][0]["lease"]
        .as_i64()
        .ok_or_else(|| format!("the leader key {key} has no lease: {answer}"))?;
    let read = etcd.etcdctl(&["get", "--print-value-only", &key]);
    let mut value: serde_json::Value =
        serde_json::from_slice(&read.stdout).map_err(|e| format!("read the leader key {key}: {e}: {read:?}"))?;
    let stale_leader = value["holder_id"].as_str().unwrap_or_default().to_owned();
    let stale_epoch = value["epoch"].as_i64().unwrap_or_default();
    let injected_epoch = stale_epoch + 1000;
    value["holder_id"] = ROGUE_HOLDER.into();
    value["holder_address"] = "http://127.0.0.1:9".into();
    value["epoch"] = injected_epoch.into();
    value["instance"] = "rogue".into();
    let put = etcd.etcdctl(&["put", &format!("--lease={lease:x}"), &key, &value.to_string()]);
    if !put.status.success() {
        return Err(format!("rewrite the leader key: {put:?}"));
    }
    let committed = Instant::now();
    let injected_at_us = cluster.clock.now_us();
    if stale_leader != baseline.leader {
        return Err(format!("the lease moved to {stale_leader} before the injection"));
    }
    let injection = Injection {
        stale_leader,
        stale_epoch,
        rogue_holder: ROGUE_HOLDER.into(),
        injected_epoch,
        injected_at_us,
        stale_rows_at_injection: count_epoch_rows(db, stale_epoch)?,
        renew_interval_ms: RENEW_INTERVAL_MS,
    };
    Ok((injection, committed))
}

/// Rewrites the lease row to name a rogue holder at a far higher epoch, keeping the rest (the
/// holder session included): only the leader's own checks can notice. Returns it with the
/// instant it committed.
fn inject(db: &mut postgres::Client, cluster: &Cluster, baseline: &Agreement) -> Result<(Injection, Instant), String> {
    let mut tx = db.transaction().map_err(|e| e.to_string())?;
    let row = tx
        .query_one("SELECT holder_id, epoch FROM autonomy_ha.leader_lease FOR UPDATE", &[])
        .map_err(|e| format!("read the lease: {e}"))?;
    let (stale_leader, stale_epoch): (Option<String>, i64) = (row.get(0), row.get(1));
    let injected_epoch: i64 = tx
        .query_one(
            "UPDATE autonomy_ha.leader_lease
                SET holder_id = $1, holder_address = 'http://127.0.0.1:9', epoch = epoch + 1000
          RETURNING epoch",
            &[&ROGUE_HOLDER],
        )
        .map_err(|e| format!("inject the rogue holder: {e}"))?
        .get(0);
    tx.commit().map_err(|e| format!("commit the injection: {e}"))?;
    let committed = Instant::now();
    let injected_at_us = cluster.clock.now_us();
    let stale_rows_at_injection = count_epoch_rows(db, stale_epoch)?;
    let stale_leader = stale_leader.unwrap_or_default();
    if stale_leader != baseline.leader {
        return Err(format!("the lease moved to {stale_leader} before the injection"));
    }
    let injection = Injection {
        stale_leader,
        stale_epoch,
        rogue_holder: ROGUE_HOLDER.into(),
        injected_epoch,
        injected_at_us,
        stale_rows_at_injection,
        renew_interval_ms: RENEW_INTERVAL_MS,
    };
    Ok((injection, committed))
}

fn count_rows(db: &mut postgres::Client, node: &str, epoch: i64) -> Result<i64, String> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM autonomy_app.rollouts WHERE leader_id = $1 AND epoch = $2",
            &[&node, &epoch],
        )
        .map_err(|e| format!("count {node}'s rows at epoch {epoch}: {e}"))?
        .get(0))
}

/// SIGSTOP the leader for the TTL and two seconds more, with a write waiting on it; SIGCONT.
fn pause_leader(cluster: &mut Cluster, db: &mut postgres::Client, current: &Agreement) -> Result<Pause, String> {
    let node = current.leader.clone();
    let successor = NODES
        .iter()
        .find(|n| **n != node)
        .map(|n| n.to_string())
        .unwrap_or_default();
    let paused_for = Duration::from_millis(LEASE_TTL_MS) + Duration::from_secs(2);
    cluster.set_watched(&node, false);
    let stopped = Instant::now();
    cluster.nodes[&node].signal(Signal::SIGSTOP);
    // Whatever happens while it is frozen, it is resumed (and watched again) afterwards.
    let frozen = watch_frozen(cluster, db, &node, &successor, current.epoch, stopped, paused_for);
    cluster.nodes[&node].signal(Signal::SIGCONT);
    cluster.set_watched(&node, true);
    let paused_ms = stopped.elapsed().as_millis() as u64;
    let (pending, takeover_ms, successor_epoch, rows_at_takeover) = frozen?;
    let pending_write = pending.join().ok();
    // A second for the resumed node's loop to run a round; its role then must not be leader.
    std::thread::sleep(Duration::from_secs(1));
    let role_after_resume = cluster.status(&node).role;
    Ok(Pause {
        takeover: Takeover {
            old_leader: node,
            old_epoch: current.epoch,
            successor: takeover_ms.map(|_| successor),
            new_epoch: successor_epoch,
            takeover_ms,
        },
        paused_ms,
        rows_at_takeover,
        rows_at_end: None,
        pending_write,
        role_after_resume,
    })
}

/// While `node` is frozen: a write is sent to it (read only after SIGCONT), the successor is
/// watched until it leads above `epoch`, the frozen node's rows are counted, and the pause
/// is held until `paused_for`. Returns (the pending write's thread, takeover ms, successor
/// epoch, rows at takeover).
#[allow(clippy::type_complexity)]
fn watch_frozen(
    cluster: &Cluster,
    db: &mut postgres::Client,
    node: &str,
    successor: &str,
    epoch: i64,
    stopped: Instant,
    paused_for: Duration,
) -> Result<(std::thread::JoinHandle<SingleWrite>, Option<u64>, Option<i64>, i64), String> {
    let pending = {
        let (clock, url, node) = (cluster.clock, cluster.url(node), node.to_owned());
        // Read by the frozen node only after SIGCONT, so the client waits longer than the pause.
        std::thread::spawn(move || single_write(clock, &url, &node, "sent-while-paused", Duration::from_secs(30)))
    };
    // Only the successor is polled: a status request to the frozen node would wait a second.
    let mut takeover_ms = None;
    let mut successor_epoch = None;
    while stopped.elapsed() < paused_for + Duration::from_secs(5) {
        let seen = cluster.status(successor);
        if seen.is_leader() && seen.epoch.is_some_and(|e| e > epoch) {
            takeover_ms = Some(stopped.elapsed().as_millis() as u64);
            successor_epoch = seen.epoch;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let rows_at_takeover = count_rows(db, node, epoch)?;
    std::thread::sleep(paused_for.saturating_sub(stopped.elapsed()));
    Ok((pending, takeover_ms, successor_epoch, rows_at_takeover))
}

/// The partitioned node leads from its own namespace with a follower on this host (started
/// the first time); iptables in the namespace then drops its traffic to the relays `cut` (the
/// database's, or etcd's); later the rules are removed.
fn partition(
    cluster: &mut Cluster,
    pg: &dyn PgBackend,
    host: &mut NetnsHost,
    relays: &Relays,
    cut_ports: &[u16],
    label: &str,
    writer: &mut Option<Writer>,
) -> Result<Partition, String> {
    let follower = NODES[0];
    if !cluster.nodes.contains_key(PARTITIONED) {
        // Its etcd endpoints are the relays too, so the namespace reaches etcd only through them.
        let saved = cluster.extra_args.clone();
        if let Some(at) = cluster.extra_args.iter().position(|a| a == "--etcd-endpoints") {
            cluster.extra_args[at + 1] = relays.etcd_endpoints.clone();
        }
        let started = cluster.start_in_namespace(PARTITIONED, pg, host, relays.database[0]);
        cluster.extra_args = saved;
        started?;
        cluster.nodes[PARTITIONED].wait_for_role("leader", Duration::from_secs(15))?;
        let spec = cluster.spec(follower);
        cluster.start_spec(spec)?;
    }
    let formed = cluster.wait_for_agreement(Duration::from_secs(15))?;
    if formed.leader != PARTITIONED {
        return Err(format!("{PARTITIONED} should lead before the cut: {formed:#?}"));
    }
    *writer = Some(Writer::start(
        cluster.clock,
        label,
        cluster.urls.clone(),
        Duration::from_millis(5),
    ));
    // Writes through the namespace node before the cut (rows of the old epoch).
    wait_for_writes(writer);

    let cut = Instant::now();
    for port in cut_ports {
        host.cut(*port)?;
    }
    let mut blocked_ms = None;
    let mut takeover_ms = None;
    let mut new_epoch = None;
    while cut.elapsed() < Duration::from_millis(LEASE_TTL_MS) + Duration::from_secs(10)
        && (blocked_ms.is_none() || takeover_ms.is_none())
    {
        let old = cluster.status(PARTITIONED);
        if old.db_reachable == Some(false) && old.can_accept_protected_writes == Some(false) {
            blocked_ms.get_or_insert(cut.elapsed().as_millis() as u64);
        }
        let successor = cluster.status(follower);
        if successor.is_leader() && successor.epoch.is_some_and(|e| e > formed.epoch) {
            takeover_ms.get_or_insert(cut.elapsed().as_millis() as u64);
            new_epoch = successor.epoch;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Writes through the successor (rows of the new epoch for the gap), then the link comes back.
    wait_for_writes(writer);
    for port in cut_ports {
        host.heal(*port)?;
    }
    let rejoined = cluster.nodes[PARTITIONED].wait_for_role("follower", Duration::from_secs(15));
    let role_after_heal = cluster.status(PARTITIONED).role;
    if let Err(error) = rejoined {
        return Err(format!(
            "{PARTITIONED} did not rejoin as follower after the heal: {error}"
        ));
    }
    Ok(Partition {
        takeover: Takeover {
            old_leader: PARTITIONED.into(),
            old_epoch: formed.epoch,
            successor: takeover_ms.map(|_| follower.to_owned()),
            new_epoch,
            takeover_ms,
        },
        blocked_ms,
        role_after_heal,
    })
}

/// Stops the nodes and keeps what the checks need: samples, rows, history, audit.
fn finish(cluster: &mut Cluster, pg: &dyn PgBackend, obs: &mut Observations) {
    obs.samples = cluster.stop();
    if let Ok(mut db) = postgres::Client::connect(&pg.url(LAB_DATABASE), postgres::NoTls) {
        if let Ok(rows) = stored_rows(&mut db) {
            obs.rows = rows;
        }
        if let Ok(history) = lease_history(&mut db) {
            obs.lease_history = history;
        }
        if let Some(pause) = obs.pause.as_mut() {
            pause.rows_at_end = count_rows(&mut db, &pause.takeover.old_leader, pause.takeover.old_epoch).ok();
        }
    }
    if let Some(pause) = obs.pause.as_mut() {
        if let Some(write) = pause.pending_write.as_mut() {
            look_up(std::slice::from_mut(write), &obs.rows);
        }
    }
    let _ = cluster.write("val16-writes.jsonl", writes_jsonl(&obs.writes));
    let _ = cluster.write(
        "val16-rows-and-lease-history.txt",
        history_and_rows(&obs.lease_history, rows_table("at the end", &obs.rows)),
    );
    obs.audit = cluster.audit_events(&["ha.leader.", "ha.split_brain.", "ha.quorum.", "ha.fencing."]);
}

/// Waits for the load's next acknowledged writes (see `WRITES_BEFORE_FAULT`).
fn wait_for_writes(writer: &Option<Writer>) {
    if let Some(writer) = writer {
        writer.wait_for_acknowledged(WRITES_BEFORE_FAULT, WRITES_WAIT);
    }
}
