//! The VAL14 slice: a primary, a streaming standby and one node; lag at rest and under two
//! workloads, the drains, and the node's classification as the standby stops and is cut off.

use std::time::{Duration, Instant};

use autonomy::{
    evidence::{lag, writer::Bundle, Report},
    ha::{replication::Health, StatusReport},
};

use super::{
    checks::evaluate,
    lag::{self as lagging, TABLE},
    observations::{ceil_ms, percentile, Classified, Observations, Sabotage, Workload},
};
use crate::{
    backend::{PgBackend, LAB_DATABASE, LAB_PG_PASSWORD},
    background::Background,
    cluster::Cluster,
    harness::connect_and_describe,
    harness::{guarded, Slice, SliceLab},
    run::wait_until,
    sql,
    standby::StandbyPg,
};

pub const STANDBY: &str = "val14_standby";
pub const NODE: &str = "val14-n1";
/// The node samples replication this often, so the classification phase moves quickly.
const REPLICATION_POLL_MS: u64 = 100;
/// Seed 004: idle p95 from at least 50 samples.
pub const IDLE_SAMPLES: usize = 60;
/// Seed 004's workloads: rows × bytes.
pub const LIGHT: (usize, usize) = (100, 500);
pub const HEAVY: (usize, usize) = (500, 2_000);

/// VAL14, the replication lag baseline.
pub struct Val14;

impl Slice for Val14 {
    crate::slice_identity!(
        "val14",
        "VAL 14 — HA Replication Lag Baseline",
        [NodeWithoutMonitorRole]
    );

    fn observations() -> Observations {
        Observations {
            standby_name: STANDBY.into(),
            ..Observations::default()
        }
    }

    fn run(lab: SliceLab<'_>, obs: &mut Observations, report: &mut Report) -> Option<String> {
        let mut standby: Option<Box<dyn StandbyPg>> = None;
        let mut cluster: Option<Cluster> = None;
        let aborted = guarded(|| {
            phases(
                lab.bundle,
                &*lab.pg,
                lab.sabotage,
                lab.scratch,
                &mut standby,
                &mut cluster,
                obs,
                report,
            )
        });
        if let Some(mut cluster) = cluster {
            let _ = cluster.stop();
            report.node = cluster
                .urls
                .lock()
                .unwrap()
                .iter()
                .map(|(id, url)| format!("{id}@{url}"))
                .next();
        }
        drop(standby);
        aborted
    }

    fn summarize(obs: &Observations, report: &mut Report, _bundle: &Bundle) {
        metrics(obs, report);
    }
}

/// The seed's metrics; the thresholds are DERIVED (their check says so), never targets.
fn metrics(obs: &Observations, report: &mut Report) {
    let mut put = |name: &str, value: Option<u64>| {
        if let Some(value) = value {
            report.metrics.insert(name.into(), value.into());
        }
    };
    put("idle_p95_ms", obs.idle_p95_ms().map(ceil_ms));
    put("light_p95_ms", obs.light_p95_ms().map(ceil_ms));
    put("light_drain_ms", obs.light.drain_ms);
    put("heavy_p99_ms", obs.heavy_p99_ms().map(ceil_ms));
    put("heavy_drain_ms", obs.heavy.drain_ms);
    // Microseconds too: local lags are far below a millisecond.
    put("idle_p95_us", obs.idle_p95_ms().map(|ms| (ms * 1000.0).round() as u64));
    put(
        "light_p95_us",
        obs.light_p95_ms().map(|ms| (ms * 1000.0).round() as u64),
    );
    put(
        "heavy_p99_us",
        obs.heavy_p99_ms().map(|ms| (ms * 1000.0).round() as u64),
    );
    // The distribution per workload, for the VAL26 chart: p50, p95, p99 and max in µs.
    for (workload, samples) in [
        ("idle", &obs.idle),
        ("light", &obs.light.samples),
        ("heavy", &obs.heavy.samples),
    ] {
        let lags: Vec<f64> = samples.iter().map(|s| s.write_lag_ms).collect();
        for (point, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)] {
            put(
                &format!("{workload}_{point}_us"),
                percentile(&lags, p).map(|ms| (ms * 1000.0).round() as u64),
            );
        }
    }
    if let Some(derived) = obs.derived {
        put("healthy_ms", Some(derived.healthy_ms));
        put("degraded_ms", Some(derived.degraded_ms));
        put("alert_ms", Some(derived.alert_ms));
    }
}

#[allow(clippy::too_many_arguments)]
fn phases<'a>(
    bundle: &'a Bundle,
    pg: &dyn PgBackend,
    sabotage: Sabotage,
    scratch: &std::path::Path,
    standby_slot: &mut Option<Box<dyn StandbyPg>>,
    cluster_slot: &mut Option<Cluster<'a>>,
    obs: &mut Observations,
    report: &mut Report,
) -> Result<(), String> {
    let primary_url = pg.url(LAB_DATABASE);
    let (mut db, setup) = connect_and_describe(pg, report)?;

    // 01: a standby streams from the primary, and a row written there shows up on it.
    let standby = standby_slot.insert(pg.start_standby(STANDBY)?);
    bundle
        .write(
            "val14-pg-setup.txt",
            format!("{setup}standby: {}\n", standby.describe()),
        )
        .map_err(|e| e.to_string())?;
    let streaming = wait_until(Duration::from_secs(10), || {
        db.query_opt(
            "SELECT state FROM pg_stat_replication WHERE application_name = $1",
            &[&STANDBY],
        )
        .ok()
        .flatten()
        .map(|row| row.get::<_, String>(0))
        .filter(|state| state == "streaming")
    });
    // The state as observed: the one it reached, else whatever it was when the wait ended.
    obs.streaming_state = streaming.map(|(state, _)| state).or_else(|| {
        db.query_opt(
            "SELECT state FROM pg_stat_replication WHERE application_name = $1",
            &[&STANDBY],
        )
        .ok()
        .flatten()
        .map(|row| row.get(0))
    });
    let mut on_standby = sql::connect(&standby.url(LAB_DATABASE));
    obs.standby_in_recovery = on_standby
        .query_one("SELECT pg_is_in_recovery()", &[])
        .ok()
        .map(|r| r.get(0));
    db.batch_execute(&format!(
        "CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, payload text NOT NULL)"
    ))
    .map_err(|e| format!("create {TABLE}: {e}"))?;
    let written = Instant::now();
    db.execute(&format!("INSERT INTO {TABLE} (payload) VALUES ('marker')"), &[])
        .map_err(|e| format!("insert the marker: {e}"))?;
    obs.marker_visible_ms = wait_until(Duration::from_secs(5), || {
        on_standby
            .query_opt(&format!("SELECT 1 FROM {TABLE} WHERE payload = 'marker'"), &[])
            .ok()
            .flatten()
            .map(|_| ())
    })
    .map(|_| (written.elapsed().as_micros() as u64).div_ceil(1000));
    drop(on_standby);
    if obs.streaming_state.as_deref() != Some("streaming") {
        return Err(format!("the standby {STANDBY} never streamed"));
    }

    // 02: the node reports the standby from pg_stat_replication.
    let node_url = match sabotage {
        Sabotage::NodeWithoutMonitorRole => {
            db.batch_execute(&format!(
                "CREATE ROLE val14_plain LOGIN PASSWORD '{LAB_PG_PASSWORD}'; GRANT CREATE ON DATABASE {LAB_DATABASE} TO val14_plain"
            ))
            .map_err(|e| format!("create the plain role: {e}"))?;
            primary_url.replacen("postgres://postgres:", "postgres://val14_plain:", 1)
        }
        _ => primary_url.clone(),
    };
    let mut cluster = Cluster::new(bundle, "val14", node_url, scratch.to_owned(), Duration::from_millis(50));
    cluster
        .extra_args
        .extend(["--replication-poll-interval-ms".into(), REPLICATION_POLL_MS.to_string()]);
    let cluster = cluster_slot.insert(cluster);
    cluster.start_all(&[NODE])?;
    cluster.wait_for_agreement(Duration::from_secs(15))?;
    let listed = wait_until(Duration::from_secs(5), || {
        status(cluster).filter(|s| {
            s.replication
                .iter()
                .any(|r| r.application_name == STANDBY && r.state == "streaming")
        })
    });
    let reported = listed.map(|(s, _)| s).or_else(|| status(cluster));
    obs.reported_health = reported.as_ref().and_then(|s| s.replication_health);
    obs.reported = reported.and_then(|s| s.replication.into_iter().find(|r| r.application_name == STANDBY));
    obs.sql_application_names = db
        .query("SELECT application_name FROM pg_stat_replication ORDER BY 1", &[])
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    bundle
        .write(
            "val14-02-status.json",
            serde_json::to_string_pretty(&status(cluster)).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;

    // 03: lag at rest.
    for _ in 0..IDLE_SAMPLES {
        obs.idle.push(lagging::sample(&mut db, cluster.clock, STANDBY)?);
        std::thread::sleep(Duration::from_millis(20));
    }

    // 04–07: the light and the heavy workload, each sampled while it runs, then drained.
    obs.light = workload(&mut db, &primary_url, cluster.clock, LIGHT, 1)?;
    obs.heavy = workload(&mut db, &primary_url, cluster.clock, HEAVY, 2)?;
    bundle
        .write(
            "val14-lag-samples.json",
            serde_json::to_string_pretty(&(&obs.idle, &obs.light, &obs.heavy)).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;

    // 09: the thresholds, DERIVED from what was measured.
    if let (Some(idle), Some(light)) = (obs.idle_p95_ms(), obs.light_p95_ms()) {
        obs.derived = Some(lag::derive(ceil_ms(idle), ceil_ms(light)));
    }

    // 08: the standby holds exactly what the primary does.
    obs.primary_table = Some(lagging::table_fingerprint(&primary_url)?);
    obs.standby_table = Some(lagging::table_fingerprint(&standby.url(LAB_DATABASE))?);

    // 10: the node's health follows the standby: healthy, alert when stopped or cut off,
    // healthy again when it is back.
    classify(cluster, obs, "idle", Health::Healthy, Duration::from_secs(5));
    standby.stop()?;
    classify(cluster, obs, "stopped", Health::Alert, Duration::from_secs(10));
    standby.start()?;
    classify(cluster, obs, "restarted", Health::Healthy, Duration::from_secs(15));
    standby.cut();
    // Bytes must flow for a silent cut to show: the primary's walsender times out only while
    // it has nothing back from the standby.
    lagging::insert_rows(&mut db, cluster.clock, 10, 100, 3)?;
    classify(cluster, obs, "cut", Health::Alert, Duration::from_secs(15));
    standby.heal();
    classify(cluster, obs, "healed", Health::Healthy, Duration::from_secs(15));
    bundle
        .write(
            "val14-10-classified.json",
            serde_json::to_string_pretty(&obs.classified).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The node's whole status, if it answers.
fn status(cluster: &Cluster) -> Option<StatusReport> {
    cluster.client(NODE).get::<StatusReport>("/v1/ha/status").ok()
}

/// Waits (at most `limit`) for the node to report `wanted` and records what it reported.
fn classify(cluster: &Cluster, obs: &mut Observations, moment: &str, wanted: Health, limit: Duration) {
    let seen = wait_until(limit, || {
        status(cluster).filter(|s| s.replication_health == Some(wanted))
    });
    let waited_ms = seen.as_ref().map(|(_, waited)| waited.as_millis() as u64);
    let last = seen.map(|(status, _)| status).or_else(|| status(cluster));
    obs.classified.push(Classified {
        moment: moment.into(),
        waited_ms,
        health: last.as_ref().and_then(|s| s.replication_health),
        standby: last.and_then(|s| s.replication.into_iter().find(|r| r.application_name == STANDBY)),
    });
}

/// Runs one workload with a sampler beside it, then waits for the standby to catch up.
fn workload(
    db: &mut postgres::Client,
    primary_url: &str,
    clock: crate::watch::Clock,
    (rows, row_bytes): (usize, usize),
    seed: u64,
) -> Result<Workload, String> {
    let url = primary_url.to_owned();
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampling = ready.clone();
    let sampler = Background::spawn(move |stop| {
        lagging::sample_until(&url, clock, STANDBY, Duration::from_millis(1), &sampling, stop)
    });
    wait_until(Duration::from_secs(5), || {
        ready.load(std::sync::atomic::Ordering::SeqCst).then_some(())
    })
    .ok_or("the lag sampler never took a sample")?;
    let last_commit = lagging::insert_rows(db, clock, rows, row_bytes, seed)?;
    let samples = sampler.finish();
    let drain_ms = lagging::wait_for_drain(db, clock, STANDBY, last_commit, Duration::from_secs(10));
    Ok(Workload {
        rows,
        row_bytes,
        samples,
        drain_ms,
    })
}
