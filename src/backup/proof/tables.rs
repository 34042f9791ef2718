//! Every table's exact row count and content hash, read with COPY inside one snapshot, under
//! pinned output settings so the hash does not depend on the session that computed it.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use tokio_postgres::Client;

use super::content::{ContentHash, TableContent};
use crate::{backup::BackupError, db::DbError};

/// Settings that change how values print in COPY text output. Pinned, so the baseline taken at
/// backup time and the one recomputed after a restore (another session, perhaps another
/// server configuration) hash the same data alike.
pub const PINNED_SETTINGS: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
     SET TimeZone = 'UTC'; SET extra_float_digits = 1; SET bytea_output = 'hex'; \
     SET lc_monetary = 'C'; SET client_encoding = 'UTF8'";

/// Opens a read-only REPEATABLE READ transaction with the settings pinned, exports its snapshot
/// (for `pg_dump --snapshot`) and returns the snapshot's id. Everything read on `client` until
/// the transaction ends sees exactly what pg_dump sees.
pub async fn begin_snapshot(client: &Client) -> Result<String, BackupError> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(DbError::query("opening the baseline snapshot"))?;
    client
        .batch_execute(PINNED_SETTINGS)
        .await
        .map_err(DbError::query("pinning the baseline's output settings"))?;
    let row = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(DbError::query("exporting the baseline snapshot"))?;
    Ok(row.get(0))
}

/// The ordinary tables (partitions included, partitioned parents not: their rows are their
/// partitions') outside the system schemas and `excluded_schemas`, as quoted qualified names.
pub async fn list_tables(client: &Client, excluded_schemas: &[String]) -> Result<Vec<String>, BackupError> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
               AND n.nspname <> ALL($1) \
             ORDER BY 1",
            &[&excluded_schemas],
        )
        .await
        .map_err(DbError::query("listing the tables of the baseline"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Row count and content hash of `table` (a quoted qualified name from `list_tables`), streamed
/// through COPY: memory stays flat however many rows the table has.
pub async fn table_content(client: &Client, table: &str) -> Result<TableContent, BackupError> {
    let stream = client
        .copy_out(&format!("COPY {table} TO STDOUT"))
        .await
        .map_err(DbError::query("reading a table for the baseline"))?;
    futures_util::pin_mut!(stream);
    let mut hash = ContentHash::new();
    while let Some(chunk) = stream.next().await {
        hash.feed(&chunk.map_err(DbError::query("reading a table for the baseline"))?);
    }
    hash.finish().map_err(|e| BackupError::Proof(format!("{table}: {e}")))
}

/// Every table's content, in name order.
pub async fn all_table_contents(
    client: &Client,
    excluded_schemas: &[String],
) -> Result<BTreeMap<String, TableContent>, BackupError> {
    let mut contents = BTreeMap::new();
    for table in list_tables(client, excluded_schemas).await? {
        let content = table_content(client, &table).await?;
        contents.insert(table, content);
    }
    Ok(contents)
}
