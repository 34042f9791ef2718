//! Rollouts: the orchestrator's resource, committed only under the leader's fencing check.
//!
//! They live in the application database (schema `autonomy_app`), so backups carry them and
//! a restore brings them back as they were. The schema is created with the first write, and
//! again after a restore of an archive that predates it.

pub use crate::api::{NewRollout, Rollout};

use thiserror::Error;
use tokio_postgres::{error::SqlState, Client, Row};

use crate::{
    db::DbError,
    ha::store::WriteFence,
    ident::{self, InvalidIdent, NodeId},
};

/// How a protected write is fenced.
#[derive(Debug, Clone, Copy)]
pub enum Fencing {
    /// The lease must still name this node at `epoch`, checked in the write's transaction.
    Checked { epoch: i64, fence: WriteFence },
    /// No check (test sabotage only, `--unsafe-skip-fencing`): the row records `epoch`.
    Skipped { epoch: i64 },
}

#[derive(Debug, Error)]
pub enum RolloutError {
    #[error(transparent)]
    InvalidName(#[from] InvalidIdent),
    #[error("the rollout spec must be a JSON object, not {0}; send {{\"name\": \"...\", \"spec\": {{...}}}}")]
    InvalidSpec(&'static str),
    #[error("the rollout spec {0}; nothing was stored")]
    SpecTooLarge(String),
    #[error("a rollout named `{0}` already exists; names are unique (a retried request whose first attempt committed lands here)")]
    Exists(String),
    #[error("this node lost the leader lease (epoch {0}) before the write could commit; nothing was written. Retry on the current leader")]
    Fenced(i64),
    #[error("the commit of rollout `{name}` did not complete ({source}); it may or may not be stored. Retry with the same name: `already exists` means it was")]
    CommitUnknown {
        name: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

const APP_SCHEMA_SQL: &str = "
    CREATE SCHEMA IF NOT EXISTS autonomy_app;
    CREATE TABLE IF NOT EXISTS autonomy_app.rollouts (
        id         bigserial PRIMARY KEY,
        name       text NOT NULL UNIQUE,
        spec       jsonb NOT NULL,
        epoch      bigint NOT NULL,
        leader_id  text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
";

/// How deeply a spec may nest. Reading a stored spec back (serde_json) stops at 128 levels; a
/// spec the writer accepts must always be readable, by every client, with room to spare.
pub const MAX_SPEC_DEPTH: usize = 32;
/// The largest spec stored, serialised.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

/// Checks a request before anything touches the database.
pub fn validate(new: &NewRollout) -> Result<(), RolloutError> {
    ident::validate("rollout name", &new.name)?;
    let depth = depth_of(&new.spec);
    if depth > MAX_SPEC_DEPTH {
        return Err(RolloutError::SpecTooLarge(format!(
            "nests {depth} levels deep; the limit is {MAX_SPEC_DEPTH}"
        )));
    }
    let bytes = serde_json::to_vec(&new.spec).map_or(usize::MAX, |body| body.len());
    if bytes > MAX_SPEC_BYTES {
        return Err(RolloutError::SpecTooLarge(format!(
            "is {bytes} bytes as JSON; the limit is {MAX_SPEC_BYTES}"
        )));
    }
    let kind = match &new.spec {
        // PostgreSQL's jsonb cannot store a NUL character.
        serde_json::Value::Object(_) if contains_nul(&new.spec) => "an object with a NUL (\\u0000) character",
        serde_json::Value::Object(_) => return Ok(()),
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
    };
    Err(RolloutError::InvalidSpec(kind))
}

/// Levels of objects and arrays: `{}` is 1, `{"a": [1]}` is 2.
fn depth_of(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        serde_json::Value::Object(fields) => 1 + fields.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || contains_nul(value)),
        _ => false,
    }
}

/// Commits one rollout under `fencing`; the row is returned only after the commit.
pub async fn create(
    client: &mut Client,
    node_id: &NodeId,
    fencing: Fencing,
    new: &NewRollout,
) -> Result<Rollout, RolloutError> {
    validate(new)?;
    match insert(client, node_id, fencing, new).await {
        Err(RolloutError::Db(DbError::Query { source, .. })) if is_missing_schema(&source) => {
            ensure_schema(client).await?;
            insert(client, node_id, fencing, new).await
        }
        other => other,
    }
}

async fn insert(
    client: &mut Client,
    node_id: &NodeId,
    fencing: Fencing,
    new: &NewRollout,
) -> Result<Rollout, RolloutError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("begin the rollout write"))?;
    // A write must not queue for long behind a lock. And from its fencing check to its COMMIT
    // it holds the lease row FOR SHARE, blocking takeovers: if this process is paused or cut
    // off in between, PostgreSQL ends the session after 1 s idle, so a successor waits at most
    // that long (or the lease expiry) instead of indefinitely.
    tx.batch_execute(
        "SET LOCAL lock_timeout = '5s';
         SET LOCAL statement_timeout = '10s';
         SET LOCAL idle_in_transaction_session_timeout = '1s'",
    )
    .await
    .map_err(DbError::query("bound the rollout write's waits"))?;
    let epoch = match fencing {
        Fencing::Checked { epoch, .. } | Fencing::Skipped { epoch } => epoch,
    };
    // Refused before the INSERT so a duplicate does not even consume a sequence value; the
    // unique index still decides between two writers racing for one name.
    let taken = tx
        .query_opt("SELECT 1 FROM autonomy_app.rollouts WHERE name = $1", &[&new.name])
        .await
        .map_err(DbError::query("look for the rollout name"))?;
    if taken.is_some() {
        return Err(RolloutError::Exists(new.name.clone()));
    }
    let row = tx
        .query_one(
            "INSERT INTO autonomy_app.rollouts (name, spec, epoch, leader_id)
             VALUES ($1, $2, $3, $4)
             RETURNING id, name, spec, epoch, leader_id, created_at",
            &[&new.name, &new.spec, &epoch, &node_id.as_str()],
        )
        .await
        .map_err(|source| match source.code() {
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => RolloutError::Exists(new.name.clone()),
            // Data PostgreSQL refuses (e.g. a \u0000 in a jsonb string): the request's fault.
            Some(code) if code.code().starts_with("22") => RolloutError::InvalidSpec("a value PostgreSQL refuses"),
            _ => DbError::Query {
                what: "insert the rollout",
                source,
            }
            .into(),
        })?;
    // The fencing check comes last, just before the COMMIT, so the share lock on the lease row
    // is held only for the commit and never delays a renew. The id was taken before it: a
    // write fenced here rolls back, so committed rows still have ids in epoch order.
    if let Fencing::Checked { epoch, fence } = fencing {
        if !fence.holds(&tx, node_id, epoch).await? {
            return Err(RolloutError::Fenced(epoch));
        }
    }
    let rollout = from_row(&row);
    tx.commit().await.map_err(|source| RolloutError::CommitUnknown {
        name: new.name.clone(),
        source,
    })?;
    Ok(rollout)
}

/// Every rollout, oldest first; none before the first write (or after restoring an archive
/// that predates it).
pub async fn list(client: &Client) -> Result<Vec<Rollout>, RolloutError> {
    match client
        .query(
            "SELECT id, name, spec, epoch, leader_id, created_at FROM autonomy_app.rollouts ORDER BY id",
            &[],
        )
        .await
    {
        Ok(rows) => Ok(rows.iter().map(from_row).collect()),
        Err(source) if is_missing_schema(&source) => Ok(Vec::new()),
        Err(source) => Err(DbError::Query {
            what: "list the rollouts",
            source,
        }
        .into()),
    }
}

/// Creates the schema under the migration lock, so nodes writing their first rollouts at
/// the same moment do not collide.
async fn ensure_schema(client: &mut Client) -> Result<(), DbError> {
    let tx = client.transaction().await.map_err(DbError::query("begin"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&crate::db::MIGRATION_LOCK_KEY])
        .await
        .map_err(DbError::query("take the migration lock"))?;
    tx.batch_execute(APP_SCHEMA_SQL)
        .await
        .map_err(DbError::query("create the autonomy_app schema"))?;
    tx.commit()
        .await
        .map_err(DbError::query("commit the autonomy_app schema"))
}

fn is_missing_schema(error: &tokio_postgres::Error) -> bool {
    matches!(error.code(), Some(code) if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME)
}

fn from_row(row: &Row) -> Rollout {
    Rollout {
        id: row.get(0),
        name: row.get(1),
        spec: row.get(2),
        epoch: row.get(3),
        leader_id: row.get(4),
        created_at: row.get(5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_must_be_an_object_and_a_name_an_identifier() {
        let ok = NewRollout {
            name: "web-v2".into(),
            spec: serde_json::json!({ "image": "web:2" }),
        };
        assert!(validate(&ok).is_ok());
        let array = NewRollout {
            spec: serde_json::json!([1]),
            ..ok.clone()
        };
        assert!(matches!(validate(&array), Err(RolloutError::InvalidSpec("an array"))));
        let nul = NewRollout {
            spec: serde_json::json!({ "note": "a\u{0}b" }),
            ..ok.clone()
        };
        assert!(matches!(validate(&nul), Err(RolloutError::InvalidSpec(_))));
        let bad_name = NewRollout {
            name: "../x".into(),
            ..ok
        };
        assert!(matches!(validate(&bad_name), Err(RolloutError::InvalidName(_))));
    }

    fn nested(levels: usize) -> serde_json::Value {
        let mut spec = serde_json::json!({});
        for _ in 1..levels {
            spec = serde_json::json!({ "a": spec });
        }
        spec
    }

    #[test]
    fn a_spec_is_stored_only_if_it_can_be_read_back() {
        let at_limit = NewRollout {
            name: "deep".into(),
            spec: nested(MAX_SPEC_DEPTH),
        };
        assert!(validate(&at_limit).is_ok());
        // What is accepted must survive the reader's own limit.
        let text = serde_json::to_string(&at_limit.spec).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        let deeper = NewRollout {
            spec: nested(MAX_SPEC_DEPTH + 1),
            ..at_limit.clone()
        };
        assert!(matches!(validate(&deeper), Err(RolloutError::SpecTooLarge(_))));
        let big = NewRollout {
            spec: serde_json::json!({ "blob": "x".repeat(MAX_SPEC_BYTES) }),
            ..at_limit
        };
        assert!(matches!(validate(&big), Err(RolloutError::SpecTooLarge(_))));
    }
}
