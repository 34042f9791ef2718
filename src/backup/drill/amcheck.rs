//! amcheck's `bt_index_check(index, heapallindexed => true)` on every btree index of a
//! restored database: an index that disagrees with its table is a difference, named.

use tokio_postgres::Client;

use crate::{backup::proof::Difference, db::DbError};

/// What checking the indexes found.
pub struct IndexCheck {
    pub indexes_checked: usize,
    pub differences: Vec<Difference>,
}

/// Checks every valid btree index outside the system schemas and `excluded_schemas`. The
/// extension is created for the check and dropped after it when the database did not already
/// have it, so a kept database holds exactly what was restored.
pub async fn check_indexes(client: &Client, excluded_schemas: &[String]) -> Result<IndexCheck, DbError> {
    let had_extension = client
        .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'", &[])
        .await
        .map_err(DbError::query("look for amcheck"))?
        .is_some();
    if !had_extension {
        client
            .batch_execute("CREATE EXTENSION amcheck")
            .await
            .map_err(DbError::query(
                "CREATE EXTENSION amcheck (the node's role must be allowed to create it: a superuser, with postgresql-contrib installed)",
            ))?;
    }
    let schema: String = client
        .query_one(
            "SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'amcheck'",
            &[],
        )
        .await
        .map_err(DbError::query("find amcheck's schema"))?
        .get(0);
    let checked = check_each(client, &schema, excluded_schemas).await;
    if !had_extension {
        client
            .batch_execute("DROP EXTENSION amcheck")
            .await
            .map_err(DbError::query("DROP EXTENSION amcheck"))?;
    }
    checked
}

/// Only amcheck's findings are differences (SQLSTATE XX001 data corrupted, XX002 index
/// corrupted); any other error (a lost connection, a timeout, a missing privilege) means the
/// check did not run, and is returned as such.
async fn check_each(client: &Client, schema: &str, excluded_schemas: &[String]) -> Result<IndexCheck, DbError> {
    let indexes = client
        .query(
            "SELECT format('index %I.%I', n.nspname, c.relname), c.oid
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE a.amname = 'btree' AND c.relkind = 'i' AND c.relpersistence <> 't'
                AND i.indisvalid AND i.indisready
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
                AND n.nspname <> ALL($1)
              ORDER BY 1",
            &[&excluded_schemas],
        )
        .await
        .map_err(DbError::query("list the btree indexes"))?;
    let mut differences = Vec::new();
    for index in &indexes {
        let name: String = index.get(0);
        let oid: u32 = index.get(1);
        let checked = client
            .query_one(
                &format!("SELECT {schema}.bt_index_check($1::oid::regclass, true)"),
                &[&oid],
            )
            .await;
        let Err(error) = checked else { continue };
        let corruption = error.code().is_some_and(|code| {
            *code == tokio_postgres::error::SqlState::DATA_CORRUPTED
                || *code == tokio_postgres::error::SqlState::INDEX_CORRUPTED
        });
        if !corruption {
            return Err(DbError::query("amcheck bt_index_check")(error));
        }
        let found = error
            .as_db_error()
            .map_or_else(|| error.to_string(), |db| db.message().to_owned());
        differences.push(Difference {
            object: name,
            expected: "amcheck: consistent with its table".into(),
            found: format!("amcheck: {found}"),
        });
    }
    Ok(IndexCheck {
        indexes_checked: indexes.len(),
        differences,
    })
}
