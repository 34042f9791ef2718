//! Replays an archive into the database as one transaction that first clears every user object.
//!
//! `pg_restore --clean` drops only what the archive knows, and its DROP SCHEMA fails on objects
//! created after the backup. So the restore instead runs, in one psql session and one
//! transaction: drop every schema but `autonomy_ha` and the system ones, unlink every large
//! object, re-create an empty `public`, then the archive's own script (`pg_restore
//! --single-transaction -f -`). The node relays that script to psql and holds back its final
//! COMMIT: only when pg_restore has exited cleanly does it send a last fencing check and then
//! the COMMIT. A failure anywhere, an archive stream that stops early, or this process dying
//! mid-way never reaches that COMMIT, so the database stays as it was.

use std::{
    io::{Read, Write},
    process::{Child, ExitStatus, Stdio},
    time::Instant,
};

use crate::{
    backup::store::StagedArchive,
    backup::{
        pgtools::{drain, stderr_tail, PgTools},
        BackupError,
    },
    ha::store::WriteFence,
    ident::{BackupId, NodeId},
};

/// Runs first, inside the restore's transaction. It is a protected write: the lease must still
/// name this node and epoch (no row lock: holding one for the whole restore would block this
/// node's own renewals). `public` is re-created as PostgreSQL 15 creates it, because pg_dump
/// does not dump a default `public` schema. A node id (A-Z a-z 0-9 . _ -) cannot break out of
/// its quotes.
fn clear_database_sql(fence: WriteFence, node_id: &NodeId, epoch: i64) -> String {
    let holds = fence.sql_holds_unlocked(node_id, epoch);
    format!(
        r#"
SET client_min_messages = warning;
BEGIN;
SET LOCAL lock_timeout = '60s';
DO $autonomy_restore$
DECLARE
    schema_name name;
BEGIN
    IF NOT {holds} THEN
        RAISE EXCEPTION 'node {node_id} no longer holds the leader lease at epoch {epoch}; restore refused';
    END IF;
    FOR schema_name IN
        SELECT nspname FROM pg_namespace
         WHERE nspname NOT IN ('autonomy_ha', 'information_schema')
           AND nspname NOT LIKE 'pg\_%'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
    PERFORM lo_unlink(oid) FROM pg_largeobject_metadata;
    CREATE SCHEMA public AUTHORIZATION pg_database_owner;
    COMMENT ON SCHEMA public IS 'standard public schema';
    GRANT USAGE ON SCHEMA public TO PUBLIC;
END
$autonomy_restore$;
"#
    )
}

/// Runs last, just before the COMMIT: the lease must still name this node and epoch, and the
/// share lock makes any takeover wait for the COMMIT. A node that lost the lease during a long
/// restore (paused, cut off, shut down) rolls the whole restore back. In the same transaction
/// the backup's inventory row records this restore as committed, so after a crash at any
/// point the row says whether the restore committed. Every value is an identifier (A-Z a-z 0-9
/// . _ -) or a number, so none can break out of its quotes.
fn fence_before_commit_sql(fence: WriteFence, node_id: &NodeId, epoch: i64, mark: &RestoreMark) -> String {
    let RestoreMark { backup_id, restore_id } = mark;
    let check = fence.plpgsql_check(node_id, epoch);
    format!(
        r#"
DO $autonomy_fence$
BEGIN
    {check}
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node {node_id} lost the leader lease (epoch {epoch}) during the restore; rolled back';
    END IF;
    UPDATE autonomy_ha.backup_inventory
       SET last_restored_at = clock_timestamp(), last_restore_outcome = 'committed_unproven',
           last_restore_id = '{restore_id}', last_restore_node = '{node_id}'
     WHERE backup_id = '{backup_id}';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'backup {backup_id} has no inventory row to record its restore in; rolled back';
    END IF;
END
$autonomy_fence$;
COMMIT;
"#
    )
}

/// Which restore this is, recorded in the inventory by the restore's own transaction.
#[derive(Debug, Clone)]
pub struct RestoreMark {
    pub backup_id: BackupId,
    /// Checked where it is quoted into the restore's SQL (`rs-<UTC time>-<hex>`).
    pub restore_id: String,
}

/// How many trailing bytes of the archive's script are held back: its COMMIT and what follows.
const HELD_BACK: usize = 4096;

/// Replays `archive` (the very file whose checksum was verified, read from its start) all or
/// nothing. Blocking: call it from a blocking thread. Returns the elapsed milliseconds.
pub fn replay_archive(
    tools: &PgTools,
    archive: &StagedArchive,
    fence: WriteFence,
    node_id: &NodeId,
    epoch: i64,
    mark: &RestoreMark,
) -> Result<u64, BackupError> {
    crate::ident::validate("restore id", &mark.restore_id)?;
    let started = Instant::now();
    let mut restore = spawn_pg_restore(tools, archive)?;
    let mut script = restore.stdout.take().expect("stdout was piped");
    let mut psql = match spawn_psql(tools, &clear_database_sql(fence, node_id, epoch)) {
        Ok(child) => child,
        Err(error) => {
            let _ = restore.kill();
            let _ = restore.wait();
            return Err(error);
        }
    };

    let restore_stderr = drain(restore.stderr.take().expect("stderr was piped"));
    let psql_stderr = drain(psql.stderr.take().expect("stderr was piped"));
    let mut to_psql = psql.stdin.take().expect("stdin was piped");
    let (relayed, tail) = relay_holding_back(&mut script, &mut to_psql);
    if !relayed {
        let _ = restore.kill();
    }
    drop(script);
    let restore_status = restore.wait().map_err(BackupError::spawn("pg_restore"))?;
    let finish = if relayed && restore_status.success() {
        with_fence_before_commit(&tail, &fence_before_commit_sql(fence, node_id, epoch, mark))
    } else {
        None
    };
    let committing = finish.is_some();
    if let Some(finish) = finish {
        let _ = to_psql.write_all(finish.as_bytes());
    }
    // End of input without a COMMIT: psql exits and PostgreSQL rolls the transaction back.
    drop(to_psql);
    let psql_status = psql.wait().map_err(BackupError::spawn("psql"))?;
    replay_result(
        (psql_status, &psql_stderr.join().unwrap_or_default()),
        (restore_status, &restore_stderr.join().unwrap_or_default()),
        committing,
    )?;
    Ok(started.elapsed().as_millis() as u64)
}

/// pg_restore writing the archive's script to its stdout. It reads the archive from its stdin:
/// the file already opened and hashed, so nothing swapped in at the path afterwards can be
/// restored instead.
fn spawn_pg_restore(tools: &PgTools, archive: &StagedArchive) -> Result<Child, BackupError> {
    tools
        .command("pg_restore")
        .args(["--single-transaction", "--exit-on-error", "--file=-"])
        .stdin(Stdio::from(
            archive.file.try_clone().map_err(BackupError::io(&archive.path))?,
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(BackupError::spawn("pg_restore"))
}

/// psql running `first` and then the script on its stdin, stopping at the first error.
fn spawn_psql(tools: &PgTools, first: &str) -> Result<Child, BackupError> {
    tools
        .command("psql")
        .args(["--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1"])
        .arg(format!("--command={first}"))
        .arg("--file=-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(BackupError::spawn("psql"))
}

/// Relays the script, holding back its tail (the archive's COMMIT); returns whether all of it
/// was read and sent but the tail, and the tail. A write error means psql stopped on an error;
/// the caller then ends pg_restore, and psql's message is the one reported.
fn relay_holding_back(script: &mut impl Read, to_psql: &mut impl Write) -> (bool, Vec<u8>) {
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let relayed = loop {
        match script.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > HELD_BACK {
                    let send = tail.len() - HELD_BACK;
                    if to_psql.write_all(&tail[..send]).is_err() {
                        break false;
                    }
                    tail.drain(..send);
                }
            }
            Err(_) => break false,
        }
    };
    (relayed, tail)
}

/// The held-back tail with `fence` just before its COMMIT; None when it has no COMMIT. The
/// script ends `COMMIT;`, then comments and (in recent minor versions) `\unrestrict <key>`:
/// the rest follows the fence's own COMMIT.
fn with_fence_before_commit(tail: &[u8], fence: &str) -> Option<String> {
    const COMMIT: &str = "\nCOMMIT;\n";
    let text = String::from_utf8_lossy(tail);
    let at = text.rfind(COMMIT)?;
    Some(format!("{}{fence}{}", &text[..=at], &text[at + COMMIT.len()..]))
}

/// The replay's result from how psql and pg_restore ended (status and stderr each), and
/// whether the COMMIT was sent.
fn replay_result(
    (psql_status, psql_stderr): (ExitStatus, &[u8]),
    (restore_status, restore_stderr): (ExitStatus, &[u8]),
    committing: bool,
) -> Result<(), BackupError> {
    // psql first: when it stops on an error, pg_restore dies of the closed pipe, and the
    // useful message is psql's.
    if !psql_status.success() {
        return Err(BackupError::Tool {
            tool: "psql (restore transaction rolled back)",
            status: psql_status.to_string(),
            stderr: stderr_tail(psql_stderr, 2000),
        });
    }
    if !restore_status.success() {
        return Err(BackupError::Tool {
            tool: "pg_restore (restore transaction rolled back)",
            status: restore_status.to_string(),
            stderr: stderr_tail(restore_stderr, 2000),
        });
    }
    if !committing {
        return Err(BackupError::Tool {
            tool: "pg_restore (restore transaction rolled back)",
            status: restore_status.to_string(),
            stderr: "the archive's script did not end with its COMMIT; nothing was committed".into(),
        });
    }
    Ok(())
}
