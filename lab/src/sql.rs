//! Synchronous SQL helpers and the content-and-catalog fingerprint of a database.

use std::collections::BTreeMap;

use postgres::{Client, NoTls};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[track_caller]
pub fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap_or_else(|e| panic!("connect to the lab database: {e}"))
}

/// Runs `sql` (several statements allowed) and returns a psql-like transcript for evidence.
pub fn exec_transcript(client: &mut Client, sql: &str) -> Result<String, String> {
    let messages = client.simple_query(sql).map_err(|e| format!("{sql}\nERROR: {e}"))?;
    let mut out = format!("{}\n", sql.trim());
    for message in messages {
        match message {
            postgres::SimpleQueryMessage::Row(row) => {
                let values: Vec<&str> = (0..row.len()).map(|i| row.get(i).unwrap_or("NULL")).collect();
                out.push_str(&values.join("|"));
                out.push('\n');
            }
            postgres::SimpleQueryMessage::CommandComplete(n) => out.push_str(&format!("-- {n} row(s)\n")),
            _ => {}
        }
    }
    Ok(out)
}

/// The schemas a fingerprint covers: everything but the system's and autonomy's own.
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'autonomy_ha')
                            AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

/// What a database holds, to compare a restore against the state it was backed up from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// SHA-256 over everything below.
    pub digest: String,
    /// `schema.table` -> `rows=<n> md5=<md5 of the sorted rows>`.
    pub tables: BTreeMap<String, String>,
    /// Schemas, relations with their kind, columns, indexes, constraints, sequence positions.
    pub catalog: Vec<String>,
    /// Large object oid -> md5 of its content.
    pub large_objects: BTreeMap<String, String>,
}

impl Fingerprint {
    /// Human-readable differences from `other`, empty when equal.
    pub fn diff(&self, other: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        for (name, before) in &self.tables {
            match other.tables.get(name) {
                None => out.push(format!("table {name} missing")),
                Some(after) if after != before => out.push(format!("table {name}: {before} -> {after}")),
                _ => {}
            }
        }
        for name in other.tables.keys().filter(|n| !self.tables.contains_key(*n)) {
            out.push(format!("table {name} is extra"));
        }
        for line in self.catalog.iter().filter(|l| !other.catalog.contains(l)) {
            out.push(format!("catalog lost: {line}"));
        }
        for line in other.catalog.iter().filter(|l| !self.catalog.contains(l)) {
            out.push(format!("catalog gained: {line}"));
        }
        if self.large_objects != other.large_objects {
            out.push(format!(
                "large objects: {:?} -> {:?}",
                self.large_objects, other.large_objects
            ));
        }
        out
    }
}

fn strings(client: &mut Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("fingerprint query failed: {e:?}\n{sql}"))
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

pub fn fingerprint(client: &mut Client) -> Fingerprint {
    let mut catalog = Vec::new();
    catalog.extend(strings(
        client,
        &format!("SELECT 'schema ' || n.nspname FROM pg_namespace n WHERE {USER_SCHEMAS} ORDER BY 1"),
    ));
    catalog.extend(strings(
        client,
        &format!(
            "SELECT 'relation ' || n.nspname || '.' || c.relname || ' kind=' || c.relkind::text
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS} ORDER BY 1"
        ),
    ));
    catalog.extend(strings(client, &format!(
        "SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm') AND {USER_SCHEMAS} ORDER BY 1"
    )));
    catalog.extend(strings(
        client,
        &format!(
            "SELECT 'index ' || pg_get_indexdef(i.indexrelid)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE {USER_SCHEMAS} ORDER BY 1"
        ),
    ));
    catalog.extend(strings(client, &format!(
        "SELECT 'constraint ' || con.conrelid::regclass::text || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
           FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace WHERE {USER_SCHEMAS} ORDER BY 1"
    )));
    catalog.extend(strings(client, &format!(
        "SELECT 'sequence ' || s.schemaname || '.' || s.sequencename || ' last_value=' || coalesce(s.last_value::text, 'unset')
           FROM pg_sequences s JOIN pg_namespace n ON n.nspname = s.schemaname WHERE {USER_SCHEMAS} ORDER BY 1"
    )));

    let mut tables = BTreeMap::new();
    let names = strings(
        client,
        &format!(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS} ORDER BY 1"
        ),
    );
    for name in names {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {name} t"
                ),
                &[],
            )
            .unwrap_or_else(|e| panic!("fingerprint of {name} failed: {e}"));
        tables.insert(
            name,
            format!("rows={} md5={}", row.get::<_, i64>(0), row.get::<_, String>(1)),
        );
    }

    let large_objects: BTreeMap<String, String> = client
        .query(
            "SELECT oid::text, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .expect("large objects can be read")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();

    let mut hasher = Sha256::new();
    for (name, value) in &tables {
        hasher.update(format!("table {name} {value}\n"));
    }
    for line in &catalog {
        hasher.update(format!("{line}\n"));
    }
    for (oid, md5) in &large_objects {
        hasher.update(format!("lo {oid} {md5}\n"));
    }
    Fingerprint {
        digest: hex::encode(hasher.finalize()),
        tables,
        catalog,
        large_objects,
    }
}

/// Fills `big` with about `megabytes` of hard-to-compress text, so dumps and restores take
/// long enough to be interrupted, and archives are too big for a small filesystem; `marker`
/// holds one row, `backed up`.
pub fn load_big_table(db: &mut postgres::Client, megabytes: u32) {
    let rows = megabytes * 1024 * 1024 / 100;
    db.batch_execute(&format!(
        "CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL);
         INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
           FROM generate_series(1, {rows}) g;
         CREATE TABLE marker (note text); INSERT INTO marker VALUES ('backed up');"
    ))
    .expect("the big table loads");
}

/// Fails the test unless the database at `url` has exactly the content of `expected`; `why`
/// says what would have changed it.
#[track_caller]
pub fn assert_still(url: &str, expected: &Fingerprint, why: &str) {
    let mut db = connect(url);
    assert_eq!(expected.diff(&fingerprint(&mut db)), Vec::<String>::new(), "{why}");
}
