//! Reading the standby's lag on the primary, and the workloads that make it move.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use super::observations::LagSample;
use crate::watch::Clock;

/// The table the workloads fill; created by the slice on the primary.
pub const TABLE: &str = "val14_lag";

/// One read of pg_stat_replication for `standby`.
pub fn sample(db: &mut postgres::Client, clock: Clock, standby: &str) -> Result<LagSample, String> {
    let row = db
        .query_opt(
            "SELECT coalesce(extract(epoch FROM write_lag) * 1000, 0)::float8,
                    pg_wal_lsn_diff(pg_current_wal_flush_lsn(), replay_lsn)::bigint
               FROM pg_stat_replication WHERE application_name = $1",
            &[&standby],
        )
        .map_err(|e| format!("read pg_stat_replication: {e}"))?;
    Ok(LagSample {
        at_us: clock.now_us(),
        write_lag_ms: row.as_ref().map_or(0.0, |r| r.get(0)),
        replay_gap_bytes: row.as_ref().map(|r| r.get(1)),
    })
}

/// Samples every `every` until `stop` turns true (for the background sampler); `ready` turns
/// true once the first sample is in, so a workload can wait for the sampler to be running.
pub fn sample_until(
    url: &str,
    clock: Clock,
    standby: &str,
    every: Duration,
    ready: &AtomicBool,
    stop: &AtomicBool,
) -> Vec<LagSample> {
    let mut db = crate::sql::connect(url);
    let mut samples = Vec::new();
    while !stop.load(Ordering::SeqCst) || samples.is_empty() {
        if let Ok(sample) = sample(&mut db, clock, standby) {
            samples.push(sample);
            ready.store(true, Ordering::SeqCst);
        }
        std::thread::sleep(every);
    }
    samples
}

/// Inserts `rows` rows of `row_bytes` incompressible bytes (hex of a pseudo-random stream),
/// one transaction each, as an application would. Returns the slice time of the last commit.
pub fn insert_rows(
    db: &mut postgres::Client,
    clock: Clock,
    rows: usize,
    row_bytes: usize,
    seed: u64,
) -> Result<u64, String> {
    let mut state = seed | 1;
    for _ in 0..rows {
        let mut payload = String::with_capacity(row_bytes);
        while payload.len() < row_bytes {
            // xorshift64: cheap, and hex of it does not compress the way a repeated string does.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            payload.push_str(&format!("{state:016x}"));
        }
        payload.truncate(row_bytes);
        db.execute(&format!("INSERT INTO {TABLE} (payload) VALUES ($1)"), &[&payload])
            .map_err(|e| format!("insert a workload row: {e}"))?;
    }
    Ok(clock.now_us())
}

/// Polls until the standby has replayed everything the primary has; returns the ms from
/// `since_us`, or None after `limit`.
pub fn wait_for_drain(
    db: &mut postgres::Client,
    clock: Clock,
    standby: &str,
    since_us: u64,
    limit: Duration,
) -> Option<u64> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(LagSample {
            replay_gap_bytes: Some(0),
            at_us,
            ..
        }) = sample(db, clock, standby)
        {
            // Rounded up, like every metric of the slice: a bound is never passed by rounding.
            return Some(at_us.saturating_sub(since_us).div_ceil(1000));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Row count and an order-independent content hash of the workload table.
pub fn table_fingerprint(url: &str) -> Result<(i64, String), String> {
    let mut db = postgres::Client::connect(url, postgres::NoTls).map_err(|e| format!("connect: {e}"))?;
    let row = db
        .query_one(
            &format!("SELECT count(*), coalesce(md5(string_agg(md5(id::text || ':' || payload), ',' ORDER BY id)), '') FROM {TABLE}"),
            &[],
        )
        .map_err(|e| format!("fingerprint {TABLE}: {e}"))?;
    Ok((row.get(0), row.get(1)))
}
