//! Every table's exact row count and content hash, read with COPY inside one snapshot, under
//! pinned output settings so the hash does not depend on the session that computed it.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

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
    begin_pinned(
        client,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        "opening the baseline snapshot",
    )
    .await?;
    let row = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(DbError::query("exporting the baseline snapshot"))?;
    Ok(row.get(0))
}

/// Opens a read-only REPEATABLE READ transaction on `client` in the snapshot `begin_snapshot`
/// exported on another session (still open), with the same settings pinned: a second reader of
/// the very same moment.
pub async fn join_snapshot(client: &Client, snapshot: &str) -> Result<(), BackupError> {
    if !is_snapshot_id(snapshot) {
        return Err(BackupError::Proof(format!(
            "`{snapshot}` is not a snapshot id as pg_export_snapshot returns them"
        )));
    }
    let begin = format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'");
    begin_pinned(client, &begin, "importing the baseline snapshot").await
}

/// Runs `begin`, which opens the snapshot's transaction, then pins the output settings in it.
async fn begin_pinned(client: &Client, begin: &str, doing: &'static str) -> Result<(), BackupError> {
    client.batch_execute(begin).await.map_err(DbError::query(doing))?;
    client
        .batch_execute(PINNED_SETTINGS)
        .await
        .map_err(DbError::query("pinning the baseline's output settings"))?;
    Ok(())
}

/// Whether `id` looks like pg_export_snapshot's output (`00000003-0000001B-1`): hex digits and
/// dashes only, so it can be quoted into SET TRANSACTION SNAPSHOT (which takes no parameter).
fn is_snapshot_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
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

/// Every table's content, as `all_table_contents` returns it, read by `readers` sessions at
/// once, each opened by `open` and joined to `snapshot` (which `begin_snapshot` exported on
/// `client`; its transaction must stay open until this returns). Tables go biggest first to
/// whichever reader is free; a table is read whole by one reader and its hash is a sum, so the
/// result does not depend on the number of readers.
///
/// Each reader runs on a thread of its own with a single-threaded runtime, its session's
/// connection task included: the COPY stream and the socket's reader then never wake each other
/// across threads, which on the multi-threaded runtime cost as much CPU as hashing the rows.
/// Dropping the returned future stops the readers after the table each is reading.
pub async fn all_table_contents_parallel<Open, Opening, OpenError>(
    client: &Client,
    snapshot: &str,
    excluded_schemas: &[String],
    readers: usize,
    open: Open,
) -> Result<BTreeMap<String, TableContent>, BackupError>
where
    Open: Fn() -> Opening + Send + Sync + 'static,
    Opening: Future<Output = Result<Client, OpenError>>,
    BackupError: From<OpenError>,
{
    let tables = biggest_first(client, list_tables(client, excluded_schemas).await?).await?;
    let work = Arc::new(Work {
        tables: Mutex::new(tables.into_iter()),
        stop: AtomicBool::new(false),
    });
    let _stop_when_dropped = StopWhenDropped(work.clone());
    let open = Arc::new(open);
    let mut shares = Vec::new();
    for n in 0..readers.max(1) {
        let (sender, share) = tokio::sync::oneshot::channel();
        let (work, open, snapshot) = (work.clone(), open.clone(), snapshot.to_owned());
        std::thread::Builder::new()
            .name(format!("baseline-reader-{n}"))
            .spawn(move || {
                let _ = sender.send(read_share(&work, &*open, &snapshot));
            })
            .map_err(|e| BackupError::Proof(format!("cannot start a baseline reader thread: {e}")))?;
        shares.push(share);
    }
    let mut contents = BTreeMap::new();
    for share in shares {
        let share = share
            .await
            .map_err(|_| BackupError::Proof("a baseline reader thread panicked".into()))??;
        contents.extend(share);
    }
    Ok(contents)
}

/// What the readers of one baseline share: the tables left to read, and whether to stop.
struct Work {
    tables: Mutex<std::vec::IntoIter<String>>,
    stop: AtomicBool,
}

impl Work {
    fn next_table(&self) -> Option<String> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        self.tables.lock().expect("the table queue is never poisoned").next()
    }
}

struct StopWhenDropped(Arc<Work>);

impl Drop for StopWhenDropped {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// One reader's share: a session of its own in the snapshot, tables from the queue until it is
/// empty. A failure stops the other readers too.
fn read_share<Open, Opening, OpenError>(
    work: &Work,
    open: &Open,
    snapshot: &str,
) -> Result<Vec<(String, TableContent)>, BackupError>
where
    Open: Fn() -> Opening,
    Opening: Future<Output = Result<Client, OpenError>>,
    BackupError: From<OpenError>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BackupError::Proof(format!("cannot start a baseline reader's runtime: {e}")))?;
    let read = runtime.block_on(async {
        let session = open().await?;
        join_snapshot(&session, snapshot).await?;
        let mut share = Vec::new();
        while let Some(table) = work.next_table() {
            let content = table_content(&session, &table).await?;
            share.push((table, content));
        }
        // Ended before the runtime (and with it the connection) goes: a session closed inside
        // a transaction is logged by the server as an unexpected EOF.
        session
            .batch_execute("COMMIT")
            .await
            .map_err(DbError::query("ending a baseline reader's transaction"))?;
        Ok(share)
    });
    if read.is_err() {
        work.stop.store(true, Ordering::Relaxed);
    }
    read
}

/// `tables` ordered by their size on disk (TOAST included), biggest first.
async fn biggest_first(client: &Client, tables: Vec<String>) -> Result<Vec<String>, BackupError> {
    let rows = client
        .query(
            "SELECT t FROM unnest($1::text[]) AS t ORDER BY pg_table_size(t::regclass) DESC, t",
            &[&tables],
        )
        .await
        .map_err(DbError::query("sizing the tables of the baseline"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parallel_read_can_be_awaited_in_a_spawned_task() {
        fn is_send<T: Send>(_: &T) {}
        // Compiled, never called: the backup service awaits it inside an API handler's task.
        let _ = |client: &Client| {
            let open = || async { Err::<Client, _>(BackupError::Proof("no session".into())) };
            is_send(&all_table_contents_parallel(client, "1-1", &[], 2, open));
        };
    }

    #[test]
    fn only_exported_snapshot_ids_are_accepted() {
        assert!(is_snapshot_id("00000003-0000001B-1"));
        for bad in ["", "00000003-0000001B-1'; DROP TABLE t; --", "snap shot"] {
            assert!(!is_snapshot_id(bad), "{bad:?}");
        }
    }
}
