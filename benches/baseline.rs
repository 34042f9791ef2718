//! Baseline benchmark (not a test): the restore proof's baseline (issue 7) on a database of at
//! least 500 MB, against seed 001's per-table `md5(string_agg(md5(t::text), '' ORDER BY key))`
//! and against a plain `COPY … TO STDOUT` of the same tables into /dev/null, measured in the
//! same run; the baseline's peak memory on tables of 50, 1M and 5M rows; and what it adds to a
//! backup (pg_dump alone against pg_dump beside the baseline in its exported snapshot). The
//! baseline is timed as `baseline::take` reads it (on the snapshot's own session) and with the
//! tables read by `tables::all_table_contents_parallel` (1 and READERS reader sessions).
//!
//! `cargo bench --bench baseline` (RUNS, SCALE, READERS and AUTONOMY_LAB_BACKEND, default
//! process, tune it); prints markdown tables for docs/PERFORMANCE.md.

use autonomy_lab as common;
#[path = "baseline/measure.rs"]
mod measure;
#[path = "baseline/methods.rs"]
mod methods;

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use autonomy::{
    backup::{
        dump,
        pgtools::PgTools,
        proof,
        proof::tables,
        repository::LocalRepository,
        store::{ArchiveWriter, BackupStore},
    },
    db,
};
use common::backend::{self, LAB_DATABASE};
use futures_util::StreamExt;
use measure::*;
use methods::*;
use tokio_postgres::Client;

/// The id the benchmark's archives are written under (a valid backup id).
const BENCH_BACKUP: &str = "bk-bench";

/// What the backup service leaves out of the dump and the baseline.
const EXCLUDED: &str = db::SCHEMA;
/// Set in a child run of this binary: the table whose hashing it measures, or `*<readers>` for
/// the whole baseline.
const CHILD_TARGET: &str = "BENCH_BASELINE_CHILD";
const CHILD_URL: &str = "BENCH_BASELINE_URL";
/// A load average above this means another job shares the 2 cores; wait for it first.
const BUSY_LOAD: f64 = 1.5;

/// How the baseline's tables are read: 0 is `baseline::take` on the snapshot's own session,
/// n > 0 is `all_table_contents_parallel` with n readers.
type Readers = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Method {
    Seed,
    /// The reference.
    Copy,
    CopyOwnThread,
    CopyPsql,
    Baseline(Readers),
}

impl Method {
    fn label(self) -> String {
        match self {
            Method::Seed => "a. seed 001: `md5(string_agg(md5(t::text), '' ORDER BY key))` per table".into(),
            Method::Copy => "b. reference: `COPY t TO STDOUT` → /dev/null, tokio-postgres copy_out".into(),
            Method::CopyOwnThread => "b2. the same on a thread of its own (single-threaded runtime)".into(),
            Method::CopyPsql => "b3. `psql -c 'COPY t TO STDOUT' …` → /dev/null".into(),
            Method::Baseline(readers) => format!("{}. baseline: {}", short(readers), describe(readers)),
        }
    }
}

/// `c` for `baseline::take`, `c<n>` for n readers.
fn short(readers: Readers) -> String {
    match readers {
        0 => "c".into(),
        n => format!("c{n}"),
    }
}

fn describe(readers: Readers) -> String {
    match readers {
        0 => "`begin_snapshot` + `baseline::take`".into(),
        1 => "`begin_snapshot` + 1 reader (`all_table_contents_parallel`) + objects".into(),
        n => format!("`begin_snapshot` + {n} readers sharing the snapshot + objects"),
    }
}

fn main() {
    if let (Ok(target), Ok(url)) = (std::env::var(CHILD_TARGET), std::env::var(CHILD_URL)) {
        return measure_memory_here(&target, &url);
    }
    let runs = env_number("RUNS", 3);
    let scale = env_number("SCALE", 50);
    let readers = env_number("READERS", 2).max(2);
    if std::env::var_os("AUTONOMY_LAB_BACKEND").is_none() {
        std::env::set_var("AUTONOMY_LAB_BACKEND", "process");
    }
    let pg = backend::start("bench-baseline").unwrap_or_else(|e| panic!("no PostgreSQL backend: {}", e.0));
    let url = pg.url(LAB_DATABASE);
    let tools = PgTools::new(&url, backend::host_bin_dir()).expect("the lab URL parses");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let excluded = vec![EXCLUDED.to_owned()];
    println!("backend={} readers={readers} runs={runs} scale={scale}", pg.kind());

    let loading = Instant::now();
    load(&tools, &url, scale);
    println!("loaded in {:.0} s", loading.elapsed().as_secs_f64());
    let tables = runtime.block_on(async {
        let client = connect(&url, "list").await;
        tables::list_tables(&client, &excluded)
            .await
            .expect("the tables can be listed")
    });
    print_sizes(&url, &tables);
    // One untimed pass, so every method reads from a warm cache.
    runtime.block_on(copy_client(&url, &tables));

    println!("\n## Wall time ({runs} rounds, methods rotated each round)\n");
    settle();
    let methods = [
        Method::Seed,
        Method::Copy,
        Method::CopyOwnThread,
        Method::CopyPsql,
        Method::Baseline(0),
        Method::Baseline(1),
        Method::Baseline(readers),
    ];
    let mut times: BTreeMap<Method, Vec<(Duration, Duration)>> = BTreeMap::new();
    let mut baselines = Vec::new();
    for round in 0..runs {
        let mut order = methods;
        order.rotate_left(round % methods.len());
        for method in order {
            let (started, cpu) = (Instant::now(), cpu_time());
            match method {
                Method::Seed => runtime.block_on(seed_hashes(&url, &tables)),
                Method::Copy => runtime.block_on(copy_client(&url, &tables)),
                Method::CopyOwnThread => on_own_thread(|| copy_client(&url, &tables)),
                Method::CopyPsql => copy_psql(&tools, &tables),
                Method::Baseline(readers) => baselines.push(runtime.block_on(baseline(&url, &excluded, readers))),
            }
            let spent = (started.elapsed(), cpu_time().saturating_sub(cpu));
            times.entry(method).or_default().push(spent);
        }
        println!("round {} done, load {:.2}", round + 1, load_average());
    }
    // The hash must not depend on how the tables were read, nor on the round.
    assert!(
        baselines.windows(2).all(|pair| pair[0] == pair[1]),
        "the baseline differs between rounds or between `baseline::take`, 1 and {readers} readers"
    );
    println!(
        "baselines identical across rounds and ways of reading: {} compared",
        baselines.len()
    );
    print_times(&times, readers);
    let inventory = runtime.block_on(async {
        let client = connect(&url, "inventory").await;
        tables::begin_snapshot(&client).await.expect("the snapshot opens");
        let started = Instant::now();
        proof::objects::inventory(&client, &excluded)
            .await
            .expect("the inventory is read");
        started.elapsed()
    });
    println!(
        "(the object inventory alone: {:.0} ms)",
        inventory.as_secs_f64() * 1000.0
    );

    println!("\n## Peak memory of the baseline (a child run per target, VmHWM)\n");
    settle();
    println!("| hashed | rows | peak RSS MiB |\n|---|---|---|");
    let whole = |readers: Readers| format!("*{readers}");
    for target in [
        "public.pgbench_branches".to_owned(),
        "public.bench_accounts_1m".to_owned(),
        "public.pgbench_accounts".to_owned(),
        whole(0),
        whole(1),
        whole(readers),
    ] {
        let (rows, peak_kib) = memory_of_child(&url, &target);
        let name = match target.strip_prefix('*') {
            Some(readers) => format!("the whole baseline, {}", describe(readers.parse().expect("a number"))),
            None => target.clone(),
        };
        println!("| {name} | {rows} | {:.1} |", peak_kib as f64 / 1024.0);
    }

    println!("\n## What the baseline adds to a backup ({runs} rounds, rotated)\n");
    settle();
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let store = LocalRepository::open(&scratch.path().join("backups")).expect("a scratch backup store");
    // None: pg_dump alone; Some(readers): pg_dump beside a baseline read that way.
    let mut backups: BTreeMap<Option<Readers>, Vec<(Duration, Duration)>> = BTreeMap::new();
    let mut archive_bytes = 0;
    for round in 0..runs {
        let mut order = [None, Some(0), Some(1), Some(readers)];
        order.rotate_left(round % 4);
        let mut walls = Vec::new();
        for baseline_readers in order {
            let archive = store.create_archive(BENCH_BACKUP).expect("an archive to write");
            let (started, cpu) = (Instant::now(), cpu_time());
            let dumped = match baseline_readers {
                None => dump::dump_into(&tools, EXCLUDED, archive, None, None).expect("pg_dump succeeds"),
                Some(readers) => runtime.block_on(dump_with_baseline(&url, &tools, archive, &excluded, readers)),
            };
            let spent = (started.elapsed(), cpu_time().saturating_sub(cpu));
            archive_bytes = dumped.size_bytes;
            walls.push(format!(
                "{}: {:.0} ms (pg_dump {} ms)",
                baseline_readers.map_or("alone".to_owned(), short),
                spent.0.as_secs_f64() * 1000.0,
                dumped.duration_ms
            ));
            backups.entry(baseline_readers).or_default().push(spent);
            store.discard(BENCH_BACKUP);
        }
        println!("round {}: {}; load {:.2}", round + 1, walls.join(", "), load_average());
    }
    println!("\narchive {:.1} MiB\n", archive_bytes as f64 / 1048576.0);
    let alone = median_ms(&backups[&None]);
    println!("| backup | runs | median ms | min–max ms | client CPU s (median) | added to pg_dump alone (medians) |");
    println!("|---|---|---|---|---|---|");
    for (baseline_readers, spent) in &backups {
        let what = match baseline_readers {
            None => "pg_dump -Fc alone".to_owned(),
            Some(readers) => format!("pg_dump -Fc --snapshot beside the baseline, {}", describe(*readers)),
        };
        let median = median_ms(spent);
        println!(
            "| {what} | {} | {median:.0} | {} | {:.2} | {:+.2} s ({:+.1} %) |",
            spent.len(),
            range_ms(spent),
            median_cpu_s(spent),
            (median - alone) / 1000.0,
            (median / alone - 1.0) * 100.0
        );
    }
}

/// Runs `work` to completion on a new thread with a single-threaded runtime of its own.
fn on_own_thread<Work, Done>(work: Work)
where
    Work: FnOnce() -> Done + Send,
    Done: std::future::Future<Output = ()>,
{
    std::thread::scope(|scope| {
        scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a single-threaded runtime starts")
                .block_on(work())
        });
    });
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn connect(url: &str, purpose: &str) -> Client {
    db::connect(url, "bench", purpose)
        .await
        .unwrap_or_else(|e| panic!("connect to the lab database: {e}"))
}

/// Runs `command`, `what` it is, which must succeed; its stderr explains a failure.
fn succeed(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pgbench -i -s scale` (5M accounts rows at scale 50), a 1M-row copy of the accounts for the
/// memory comparison, and a wider table of text, jsonb, bytea, timestamptz, numeric, arrays,
/// interval, float8 and money (values with tabs, newlines and non-ASCII characters, and NULLs),
/// all generated server-side.
fn load(tools: &PgTools, url: &str, scale: usize) {
    let mut pgbench = tools.command("pgbench");
    pgbench
        .args(["-i", "-q", "-s", &scale.to_string()])
        .stdin(Stdio::null());
    succeed(
        &mut pgbench,
        &format!("pgbench -i -s {scale} (it ships with PostgreSQL's client tools)"),
    );
    let mut client = common::sql::connect(url);
    client
        .batch_execute(
            "CREATE TABLE bench_accounts_1m (LIKE pgbench_accounts INCLUDING ALL);
             INSERT INTO bench_accounts_1m SELECT * FROM pgbench_accounts WHERE aid <= 1000000;
             CREATE TABLE bench_wide (
                 id bigint PRIMARY KEY,
                 name text NOT NULL,
                 note text,
                 doc jsonb NOT NULL,
                 blob bytea NOT NULL,
                 created_at timestamptz NOT NULL,
                 amount numeric(12, 2) NOT NULL,
                 tags text[] NOT NULL,
                 span interval NOT NULL,
                 ratio float8 NOT NULL,
                 price money NOT NULL
             );
             INSERT INTO bench_wide
             SELECT g, CASE WHEN g % 5 = 0 THEN 'Ünïcødé 🚀 ' ELSE 'customer ' END || g,
                    CASE WHEN g % 7 <> 0 THEN repeat(md5(g::text), 3) || E'\\tand a tab\\nand a newline' END,
                    jsonb_build_object('id', g, 'kind', (ARRAY['retail', 'wholesale', 'staff'])[g % 3 + 1],
                                       'score', g * 0.25, 'nested', jsonb_build_object('key', md5(g::text))),
                    decode(md5(g::text) || md5((g + 1)::text), 'hex'),
                    timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second',
                    (g % 100000) / 100.0,
                    ARRAY[md5(g::text), 'tag' || g % 10],
                    g * interval '1 day 2 hours', g / 3.0, g * 0.5
               FROM generate_series(1, 400000) g;",
        )
        .expect("the extra tables load");
    // Each on its own: VACUUM refuses to run in the implicit transaction of a batch.
    for statement in ["VACUUM (FREEZE, ANALYZE) bench_accounts_1m, bench_wide", "CHECKPOINT"] {
        client
            .batch_execute(statement)
            .expect("the tables are vacuumed and checkpointed");
    }
}

fn print_sizes(url: &str, tables: &[String]) {
    let mut client = common::sql::connect(url);
    println!("\n| table | rows | pg_table_size MiB |\n|---|---|---|");
    let mut total = 0;
    for table in tables {
        let row = client
            .query_one(
                &format!("SELECT count(*), pg_table_size($1::text::regclass) FROM {table}"),
                &[table],
            )
            .expect("a table's size can be read");
        let (rows, bytes): (i64, i64) = (row.get(0), row.get(1));
        total += bytes;
        println!("| {table} | {rows} | {:.0} |", bytes as f64 / 1048576.0);
    }
    let database: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .expect("the database size can be read")
        .get(0);
    println!(
        "\ntables {:.0} MiB (pg_table_size, sum), database {:.0} MiB (pg_database_size)",
        total as f64 / 1048576.0,
        database as f64 / 1048576.0
    );
    assert!(total >= 500 << 20, "the tables hold less than 500 MiB: raise SCALE");
}

/// The load average over the last minute, from /proc/loadavg.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (up to 2 minutes) for other jobs on this shared machine to finish; prints the load.
fn settle() {
    let deadline = Instant::now() + Duration::from_secs(120);
    while load_average() > BUSY_LOAD && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(5));
    }
    println!("load average before this phase: {:.2}\n", load_average());
}
