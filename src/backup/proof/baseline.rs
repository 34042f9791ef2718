//! A backup's baseline (what its database held, in the dump's snapshot) and the comparison of a
//! restored database against it.

pub use crate::api::{Difference, ProofOutcome, ProofReport};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::{tables, TableContent};
use crate::backup::BackupError;

/// What the database held when the backup was taken, table by table (quoted qualified names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub tables: BTreeMap<String, TableContent>,
    /// Every schema object by name (`index public.accounts_pkey`), with its definition or a
    /// hash of it (`objects.rs`).
    #[serde(default)]
    pub objects: BTreeMap<String, String>,
    /// How long computing it took.
    pub taken_ms: u64,
}

/// Reads every table on `client`, whose snapshot `tables::begin_snapshot` opened.
pub async fn take(client: &Client, excluded_schemas: &[String]) -> Result<Baseline, BackupError> {
    let started = std::time::Instant::now();
    let tables = tables::all_table_contents(client, excluded_schemas).await?;
    let objects = super::objects::inventory(client, excluded_schemas).await?;
    Ok(Baseline {
        tables,
        objects,
        taken_ms: started.elapsed().as_millis() as u64,
    })
}

/// How many sessions read tables at once: the machine's cores, two to four. Two overlap the
/// server's COPY output with the hashing even on two cores (docs/PERFORMANCE.md); beyond four
/// the biggest table, read whole by one session, sets the pace anyway.
pub fn default_readers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// [`take`], with the tables read by `readers` sessions that `open` opens and that join the
/// snapshot `client` exported (`snapshot`, from `tables::begin_snapshot`). The result is the
/// same as `take`'s: each table is read whole by one session and its hash is a sum.
pub async fn take_parallel<Open, Opening, OpenError>(
    client: &Client,
    snapshot: &str,
    excluded_schemas: &[String],
    readers: usize,
    open: Open,
) -> Result<Baseline, BackupError>
where
    Open: Fn() -> Opening + Send + Sync + 'static,
    Opening: std::future::Future<Output = Result<Client, OpenError>>,
    BackupError: From<OpenError>,
{
    let started = std::time::Instant::now();
    let tables = tables::all_table_contents_parallel(client, snapshot, excluded_schemas, readers, open).await?;
    let objects = super::objects::inventory(client, excluded_schemas).await?;
    Ok(Baseline {
        tables,
        objects,
        taken_ms: started.elapsed().as_millis() as u64,
    })
}

fn describe(content: &TableContent) -> String {
    format!("rows={} hash={}", content.rows, content.hash)
}

/// Every difference between the baseline and what was found, by object name.
pub fn compare(expected: &Baseline, found: &Baseline) -> Vec<Difference> {
    let mut differences = Vec::new();
    for (table, want) in &expected.tables {
        match found.tables.get(table) {
            None => differences.push(Difference {
                object: format!("table {table}"),
                expected: describe(want),
                found: "absent".into(),
            }),
            Some(got) if got != want => differences.push(Difference {
                object: format!("table {table}"),
                expected: describe(want),
                found: describe(got),
            }),
            Some(_) => {}
        }
    }
    for (table, got) in &found.tables {
        if !expected.tables.contains_key(table) {
            differences.push(Difference {
                object: format!("table {table}"),
                expected: "absent".into(),
                found: describe(got),
            });
        }
    }
    let absent = String::from("absent");
    for (object, want) in &expected.objects {
        let got = found.objects.get(object).unwrap_or(&absent);
        if got != want {
            differences.push(Difference {
                object: object.clone(),
                expected: want.clone(),
                found: got.clone(),
            });
        }
    }
    for (object, got) in &found.objects {
        if !expected.objects.contains_key(object) {
            differences.push(Difference {
                object: object.clone(),
                expected: absent.clone(),
                found: got.clone(),
            });
        }
    }
    differences
}

impl ProofReport {
    pub fn of(expected: &Baseline, found: &Baseline, proof_ms: u64) -> Self {
        let differences = compare(expected, found);
        Self {
            outcome: if differences.is_empty() {
                ProofOutcome::Proven
            } else {
                ProofOutcome::Differences
            },
            tables_checked: expected.tables.len(),
            objects_checked: expected.objects.len(),
            differences,
            error: None,
            proof_ms,
        }
    }

    pub fn not_run(error: String) -> Self {
        Self {
            outcome: ProofOutcome::NotRun,
            tables_checked: 0,
            objects_checked: 0,
            differences: Vec::new(),
            error: Some(error),
            proof_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(tables: &[(&str, u64, &str)]) -> Baseline {
        Baseline {
            tables: tables
                .iter()
                .map(|(name, rows, hash)| {
                    (
                        (*name).to_owned(),
                        TableContent {
                            rows: *rows,
                            hash: (*hash).to_owned(),
                        },
                    )
                })
                .collect(),
            objects: BTreeMap::new(),
            taken_ms: 0,
        }
    }

    #[test]
    fn equal_baselines_are_proven() {
        let a = baseline(&[("public.a", 3, "aa"), ("public.b", 0, "00")]);
        let report = ProofReport::of(&a, &a.clone(), 5);
        assert_eq!((report.outcome, report.tables_checked), (ProofOutcome::Proven, 2));
    }

    #[test]
    fn a_changed_absent_or_extra_table_is_named() {
        let expected = baseline(&[("public.a", 3, "aa"), ("public.b", 1, "bb")]);
        let found = baseline(&[("public.a", 3, "ab"), ("public.c", 2, "cc")]);
        let differences = compare(&expected, &found);
        let named: Vec<(&str, &str, &str)> = differences
            .iter()
            .map(|d| (d.object.as_str(), d.expected.as_str(), d.found.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("table public.a", "rows=3 hash=aa", "rows=3 hash=ab"),
                ("table public.b", "rows=1 hash=bb", "absent"),
                ("table public.c", "absent", "rows=2 hash=cc"),
            ]
        );
    }
}
