//! The restore proof's content baseline (issue 7) against real PostgreSQL: row counts and
//! order-independent content hashes per table, read with COPY in one exported snapshot.
//!
//! Physical reordering (VACUUM FULL, CLUSTER) and the reading session's settings must not
//! change a hash; one changed value, one duplicated row, must.

mod common;

use std::collections::BTreeMap;

use autonomy::backup::proof::{tables, TableContent};
use common::{lab::Lab, sql};

const SCHEMA: &str = "
    CREATE TABLE accounts (id int PRIMARY KEY, name text, balance numeric(12,2), seen timestamptz,
                           tags text[], doc jsonb, raw bytea, span interval, price money);
    CREATE TABLE events (kind text, payload text);
    CREATE TABLE measures (at date NOT NULL, value float8) PARTITION BY RANGE (at);
    CREATE TABLE measures_2025 PARTITION OF measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE measures_2026 PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    CREATE SCHEMA private_ops;
    CREATE TABLE private_ops.notes (n int);
    INSERT INTO accounts
    SELECT g, CASE g % 4 WHEN 0 THEN 'Ünïcødé 🚀 ' || g WHEN 1 THEN 'Привет 你好 مرحبا' WHEN 2 THEN '' ELSE NULL END,
           g * 1.25, '2026-03-01 12:00:00.123456+02'::timestamptz + g * interval '1 minute',
           ARRAY['a', 'b\"c', NULL], jsonb_build_object('n', g, 'nested', jsonb_build_array(1, 'x')),
           decode(md5(g::text), 'hex'), g * interval '1 day 2 hours', g * 0.5
    FROM generate_series(1, 500) g;
    INSERT INTO events SELECT 'tick', 'same payload' FROM generate_series(1, 3);
    INSERT INTO events VALUES ('tab\there', E'line\\nbreak'), (NULL, '');
    INSERT INTO measures SELECT DATE '2025-06-01' + g, g / 3.0 FROM generate_series(0, 400) g;
    INSERT INTO private_ops.notes VALUES (1);
";

/// Every table's content, read by a session of its own in a fresh snapshot, after `prepare`
/// (statements run on that session first, to show its settings do not matter).
fn contents(url: &str, prepare: &str) -> BTreeMap<String, TableContent> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = autonomy::db::connect(url, "proof-test", "baseline")
            .await
            .expect("a session");
        if !prepare.is_empty() {
            client.batch_execute(prepare).await.expect("the session's own settings");
        }
        let snapshot = tables::begin_snapshot(&client).await.expect("a snapshot");
        assert!(!snapshot.is_empty());
        tables::all_table_contents(&client, &["private_ops".to_owned()])
            .await
            .expect("every table can be read")
    })
}

#[test]
fn content_hashes_follow_the_data_not_its_order_or_the_session() {
    let Some(lab) = Lab::start_or_skip("proof-content") else {
        return;
    };
    let url = lab.url();
    let mut db = sql::connect(&url);
    db.batch_execute(SCHEMA).expect("the schema loads");

    let baseline = contents(&url, "");
    let names: Vec<&str> = baseline.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "public.accounts",
            "public.events",
            "public.measures_2025",
            "public.measures_2026"
        ],
        "partitions are read, their parent and excluded schemas are not"
    );
    assert_eq!(baseline["public.accounts"].rows, 500);
    assert_eq!(baseline["public.events"].rows, 5);
    assert_eq!(
        baseline["public.measures_2025"].rows + baseline["public.measures_2026"].rows,
        401
    );

    // Another session's output settings: the pinned ones win.
    let other_session = contents(
        &url,
        "SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Tokyo'; SET extra_float_digits = 0; \
         SET bytea_output = 'escape'; SET IntervalStyle = 'iso_8601'",
    );
    assert_eq!(other_session, baseline, "the session's settings leaked into the hashes");

    // Physical order: rewritten in another order, the same content.
    // (One statement per call: VACUUM refuses to run inside the implicit transaction of a batch.)
    for statement in [
        "CREATE INDEX accounts_name ON accounts (name)",
        "CLUSTER accounts USING accounts_name",
        "VACUUM FULL events",
    ] {
        db.batch_execute(statement).expect("the tables are rewritten");
    }
    assert_eq!(contents(&url, ""), baseline, "reordering rows changed a hash");

    // One value changed: that table's hash alone moves, its count does not.
    db.batch_execute("UPDATE accounts SET balance = balance + 0.01 WHERE id = 250")
        .expect("one row changes");
    let changed = contents(&url, "");
    assert_ne!(changed["public.accounts"].hash, baseline["public.accounts"].hash);
    assert_eq!(changed["public.accounts"].rows, 500);
    assert_eq!(changed["public.events"], baseline["public.events"]);

    // A duplicate in a table without a key: count and hash both move.
    db.batch_execute("INSERT INTO events VALUES ('tick', 'same payload')")
        .expect("a duplicate row");
    let duplicated = contents(&url, "");
    assert_eq!(duplicated["public.events"].rows, 6);
    assert_ne!(duplicated["public.events"].hash, baseline["public.events"].hash);
}

#[test]
fn the_baseline_sees_its_snapshot_only() {
    let Some(lab) = Lab::start_or_skip("proof-snapshot") else {
        return;
    };
    let url = lab.url();
    let mut db = sql::connect(&url);
    db.batch_execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 10)")
        .expect("a table");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (client, before) = runtime.block_on(async {
        let client = autonomy::db::connect(&url, "proof-test", "baseline")
            .await
            .expect("a session");
        tables::begin_snapshot(&client).await.expect("a snapshot");
        let before = tables::table_content(&client, "public.t").await.expect("t is read");
        (client, before)
    });
    // Committed by another session after the snapshot was taken: not part of it.
    db.batch_execute("INSERT INTO t VALUES (11)").expect("a later row");
    let after = runtime
        .block_on(tables::table_content(&client, "public.t"))
        .expect("t is read again");
    assert_eq!(before.rows, 10);
    assert_eq!(after, before, "a row committed after the snapshot was counted");
}
