//! The restore proof's content baseline (issue 7) against real PostgreSQL: row counts and
//! order-independent content hashes per table, read with COPY in one exported snapshot.
//!
//! Physical reordering (VACUUM FULL, CLUSTER) and the reading session's settings must not
//! change a hash; one changed value, one duplicated row, must.

use autonomy_lab as common;

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

/// The whole baseline (tables and objects), read by a session of its own in a fresh snapshot
/// after `prepare` (statements run on that session first, to show its settings do not
/// matter), without the schema `private_ops`.
fn baseline_after(url: &str, prepare: &str) -> autonomy::backup::proof::Baseline {
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
        autonomy::backup::proof::baseline::take(&client, &["private_ops".to_owned()])
            .await
            .expect("the baseline can be taken")
    })
}

/// Every table's content (see `baseline_after`).
fn contents(url: &str, prepare: &str) -> BTreeMap<String, TableContent> {
    baseline_after(url, prepare).tables
}

fn baseline(url: &str) -> autonomy::backup::proof::Baseline {
    baseline_after(url, "")
}

#[test]
fn content_hashes_follow_the_data_not_its_order_or_the_session() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("proof-content"));
    let url = lab.url();
    let mut db = lab.load(SCHEMA);

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

/// Several reader sessions sharing the exported snapshot give the one-session baseline, table
/// for table and object for object, whatever their number.
#[test]
fn parallel_readers_give_the_same_baseline() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("proof-parallel"));
    sql::connect(&lab.url())
        .batch_execute(SCHEMA)
        .expect("the schema loads");
    let alone = baseline(&lab.url());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    for readers in [1, 3] {
        let url = lab.url();
        let parallel = runtime.block_on(async {
            let client = autonomy::db::connect(&url, "proof-test", "baseline")
                .await
                .expect("a session");
            let snapshot = tables::begin_snapshot(&client).await.expect("a snapshot");
            let open = move || {
                let url = url.clone();
                async move { autonomy::db::connect(&url, "proof-test", "reader").await }
            };
            autonomy::backup::proof::baseline::take_parallel(
                &client,
                &snapshot,
                &["private_ops".to_owned()],
                readers,
                open,
            )
            .await
            .expect("the parallel baseline")
        });
        assert_eq!(parallel.tables, alone.tables, "{readers} readers");
        assert_eq!(parallel.objects, alone.objects, "{readers} readers");
    }
}

#[test]
fn the_baseline_sees_its_snapshot_only() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("proof-snapshot"));
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

const OBJECTS: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN positive AS int CHECK (VALUE > 0);
    CREATE TABLE parents (id serial PRIMARY KEY, name text UNIQUE, m mood DEFAULT 'ok', p positive);
    CREATE TABLE children (id int PRIMARY KEY CHECK (id > 0), parent_id int REFERENCES parents (id),
                           note text DEFAULT 'none');
    CREATE INDEX children_note ON children (note) WHERE note <> '';
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN NEW.note := coalesce(NEW.note, 'x'); RETURN NEW; END $$;
    CREATE TRIGGER children_touch BEFORE INSERT ON children FOR EACH ROW EXECUTE FUNCTION touch();
    CREATE VIEW parent_names AS SELECT name FROM parents;
    CREATE MATERIALIZED VIEW parent_count AS SELECT count(*) FROM parents;
    ALTER TABLE children ENABLE ROW LEVEL SECURITY;
    CREATE POLICY children_all ON children USING (true);
    INSERT INTO parents (name, p) VALUES ('a', 1), ('b', 2);
    SELECT lo_from_bytea(424242, 'large object body');
";

/// Each change a restore could get wrong is named, alone, by the object it touched.
#[test]
fn each_object_change_is_named() {
    let lab = autonomy_lab::or_skip!(Lab::start_or_skip("proof-objects"));
    let url = lab.url();
    let mut db = lab.load(OBJECTS);
    let mut before = baseline(&url);
    for kind in [
        "schema public",
        "enum public.mood",
        "domain public.positive",
        "constraint public.positive.positive_check",
        "column public.children.note",
        "index public.children_note",
        "trigger public.children.children_touch",
        "function public.touch()",
        "view public.parent_names",
        "materialized view public.parent_count",
        "sequence public.parents_id_seq",
        "policy public.children.children_all",
        "large object 424242",
    ] {
        assert!(
            before.objects.contains_key(kind),
            "no `{kind}` in {:#?}",
            before.objects
        );
    }
    for (change, named) in [
        ("DROP INDEX children_note", "index public.children_note"),
        (
            "ALTER TABLE children DISABLE TRIGGER children_touch",
            "trigger public.children.children_touch",
        ),
        (
            "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN NEW.note := 'changed'; RETURN NEW; END $$",
            "function public.touch()",
        ),
        (
            "SELECT setval('parents_id_seq', 1000)",
            "sequence public.parents_id_seq",
        ),
        (
            "ALTER TABLE children DROP CONSTRAINT children_id_check",
            "constraint public.children.children_id_check",
        ),
        (
            "ALTER TABLE children ALTER COLUMN note SET DEFAULT 'other'",
            "column public.children.note",
        ),
        ("SELECT lo_put(424242, 0, 'L')", "large object 424242"),
        // The key put back NOT VALID over a row naming no parent: the row, the key's
        // definition, and one orphan.
        (
            "ALTER TABLE children DROP CONSTRAINT children_parent_id_fkey; \
             INSERT INTO children (id, parent_id) VALUES (7, 999); \
             ALTER TABLE children ADD CONSTRAINT children_parent_id_fkey FOREIGN KEY (parent_id) \
             REFERENCES parents (id) NOT VALID",
            "table public.children, constraint public.children.children_parent_id_fkey, \
             orphans public.children.children_parent_id_fkey",
        ),
        ("ALTER TYPE mood ADD VALUE 'ecstatic'", "enum public.mood"),
        (
            "DROP POLICY children_all ON children",
            "policy public.children.children_all",
        ),
        (
            "CREATE OR REPLACE VIEW parent_names AS SELECT name FROM parents WHERE name <> ''",
            "view public.parent_names",
        ),
    ] {
        db.batch_execute(change).unwrap_or_else(|e| panic!("{change}: {e}"));
        let after = baseline(&url);
        let differences = autonomy::backup::proof::baseline::compare(&before, &after);
        let objects: Vec<&str> = differences.iter().map(|d| d.object.as_str()).collect();
        let named: Vec<&str> = named.split(", ").map(str::trim).collect();
        assert_eq!(objects, named, "after `{change}`: {differences:#?}");
        before = after;
    }
}
