//! The methods the baseline bench times: seed 001's hashes, plain COPY, the baseline, and a
//! backup beside it.

use super::*;

/// Seed 001's content check: per table, the md5 of the rows' md5s in key order.
pub(crate) async fn seed_hashes(url: &str, tables: &[String]) {
    let client = connect(url, "seed").await;
    for table in tables {
        let order: String = client
            .query_one(
                "SELECT coalesce(
                     (SELECT string_agg(format('t.%I', a.attname), ', ' ORDER BY array_position(i.indkey::int2[], a.attnum))
                        FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                       WHERE i.indrelid = $1::text::regclass AND i.indisprimary),
                     (SELECT string_agg(format('t.%I', a.attname), ', ' ORDER BY a.attnum)
                        FROM pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped))",
                &[table],
            )
            .await
            .expect("a table's key can be read")
            .get(0);
        client
            .query_one(
                &format!("SELECT md5(string_agg(md5(t::text), '' ORDER BY {order})) FROM {table} t"),
                &[],
            )
            .await
            .expect("seed 001's hash query runs");
    }
}

/// The reference: every table's COPY text output, written to /dev/null.
pub(crate) async fn copy_client(url: &str, tables: &[String]) {
    let client = connect(url, "copy").await;
    let mut null = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create("/dev/null").expect("/dev/null"));
    for table in tables {
        let stream = client
            .copy_out(&format!("COPY {table} TO STDOUT"))
            .await
            .expect("COPY starts");
        futures_util::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            null.write_all(&chunk.expect("COPY streams"))
                .expect("/dev/null takes everything");
        }
    }
    null.flush().expect("/dev/null takes everything");
}

/// The same COPYs through psql, one process for all tables, its output into /dev/null.
pub(crate) fn copy_psql(tools: &PgTools, tables: &[String]) {
    let mut psql = tools.command("psql");
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
    for table in tables {
        psql.arg("-c").arg(format!("COPY {table} TO STDOUT"));
    }
    psql.stdin(Stdio::null())
        .stdout(std::fs::File::create("/dev/null").expect("/dev/null"))
        .stderr(Stdio::piped());
    succeed(&mut psql, "psql COPY");
}

/// The baseline as a backup takes it: a fresh session and its snapshot, then every table and
/// the object inventory, the tables read as `readers` says.
pub(crate) async fn baseline(
    url: &str,
    excluded: &[String],
    readers: Readers,
) -> BTreeMap<String, proof::TableContent> {
    let client = connect(url, "baseline").await;
    let snapshot = tables::begin_snapshot(&client).await.expect("the snapshot opens");
    take(url, &client, &snapshot, excluded, readers).await
}

/// `baseline::take`, or what it becomes with `all_table_contents_parallel`: the tables, then
/// the object inventory on the snapshot's own session.
pub(crate) async fn take(
    url: &str,
    client: &Client,
    snapshot: &str,
    excluded: &[String],
    readers: Readers,
) -> BTreeMap<String, proof::TableContent> {
    if readers == 0 {
        return proof::baseline::take(client, excluded)
            .await
            .expect("the baseline is taken")
            .tables;
    }
    let url = url.to_owned();
    let open = move || {
        let url = url.clone();
        async move { db::connect(&url, "bench", "baseline-reader").await }
    };
    let contents = tables::all_table_contents_parallel(client, snapshot, excluded, readers, open)
        .await
        .expect("the readers read every table");
    proof::objects::inventory(client, excluded)
        .await
        .expect("the inventory is read");
    contents
}

/// What `BackupService::dump_with_baseline` does: pg_dump in the baseline session's exported
/// snapshot on a blocking thread while the baseline is taken.
pub(crate) async fn dump_with_baseline(
    url: &str,
    tools: &PgTools,
    archive: Box<dyn ArchiveWriter>,
    excluded: &[String],
    readers: Readers,
) -> dump::DumpOutcome {
    let client = connect(url, "baseline").await;
    let snapshot = tables::begin_snapshot(&client).await.expect("the snapshot opens");
    let (tools, exported) = (tools.clone(), snapshot.clone());
    let dump = tokio::task::spawn_blocking(move || dump::dump_into(&tools, EXCLUDED, archive, Some(&exported), None));
    take(url, &client, &snapshot, excluded, readers).await;
    dump.await
        .expect("the dump thread does not panic")
        .expect("pg_dump succeeds")
}
