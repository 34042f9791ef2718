//! Where a drill restores: a scratch database it creates beside the application's and drops
//! afterwards, an empty database the operator names (emptied again afterwards), or with
//! `--proof-only` a database that already holds a restore (only read). Never the live one.

use tokio_postgres::{config::Host, Client, Config};

use crate::db::DbError;

/// How the drill came by its target, which decides what it may do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Created by the drill on the node's server; dropped unless `--keep`.
    Scratch,
    /// Named by `--target-url`; must be empty; emptied again unless `--keep`.
    Given,
    /// `--proof-only`: already holds the restore; read, never changed but for amcheck's
    /// extension (created and dropped again when it was not there).
    Existing,
}

/// The target's connection settings (password included: never print them) and its
/// description (without credentials) for reports, logs and the audit.
pub struct Target {
    pub kind: TargetKind,
    pub config: Config,
    pub database: String,
    pub described: String,
}

impl Target {
    pub fn new(kind: TargetKind, config: Config) -> Self {
        let database = config.get_dbname().unwrap_or_default().to_owned();
        let described = describe(&config);
        Self {
            kind,
            config,
            database,
            described,
        }
    }
}

/// `postgresql://user@host:port/database`, without the password.
pub fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().map(|user| format!("{user}@")).unwrap_or_default();
    format!(
        "postgresql://{user}{host}:{port}/{}",
        config.get_dbname().unwrap_or_default()
    )
}

/// A database name no application would use, unique per drill, within PostgreSQL's 63 bytes,
/// of lowercase letters, digits and `_` only (so it needs no quoting rules beyond `"…"`).
pub fn scratch_name(backup_id: &str) -> String {
    let id: String = backup_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(36)
        .collect();
    format!("autonomy_verify_{id}_{}", hex::encode(rand::random::<[u8; 3]>()))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Creates `name` from template0 (nothing local to template1 leaks into the drill) with the
/// application database's encoding and collation, so text sorts and converts alike.
pub async fn create_scratch(live: &Client, name: &str) -> Result<(), DbError> {
    let row = live
        .query_one(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(DbError::query("read the application database's encoding"))?;
    let (encoding, collate, ctype): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    live.batch_execute(&format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        literal(&encoding),
        literal(&collate),
        literal(&ctype)
    ))
    .await
    .map_err(DbError::query(
        "CREATE DATABASE for the drill (the node's role needs CREATEDB, or pass --target-url)",
    ))
}

/// Drops the scratch database, ending any session still in it.
pub async fn drop_scratch(live: &Client, name: &str) -> Result<(), DbError> {
    live.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .map_err(DbError::query("DROP DATABASE of the drill's scratch database"))
}

/// Why a given target cannot take a drill: it is an autonomy-managed (live) database, or it
/// already holds something a restore would collide with or the proof would count.
pub async fn refuse_unless_empty(client: &Client) -> Result<Option<String>, DbError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'autonomy_ha'),
                    (SELECT count(*) FROM pg_namespace n
                      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
                        AND n.nspname NOT LIKE 'pg\\_%'),
                    (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'public'),
                    (SELECT count(*) FROM pg_largeobject_metadata),
                    current_database()",
            &[],
        )
        .await
        .map_err(DbError::query("check that the target is empty"))?;
    let (managed, schemas, relations, large_objects, name): (bool, i64, i64, i64, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if managed {
        return Ok(Some(format!(
            "the target database `{name}` holds the autonomy_ha schema: it is a database an autonomy node runs on, \
             and a drill never restores into one. Name an empty scratch database"
        )));
    }
    if schemas + relations + large_objects > 0 {
        return Ok(Some(format!(
            "the target database `{name}` is not empty ({schemas} schemas besides public, {relations} relations in \
             public, {large_objects} large objects); nothing was changed. Name an empty database, or omit \
             --target-url for a scratch database"
        )));
    }
    Ok(None)
}

/// Returns a given target to empty after the drill: what the restore created is dropped.
pub async fn empty_target(client: &Client) -> Result<(), DbError> {
    client
        .batch_execute(
            r#"
DO $autonomy_drill$
DECLARE
    schema_name name;
BEGIN
    FOR schema_name IN
        SELECT nspname FROM pg_namespace
         WHERE nspname NOT IN ('autonomy_ha', 'information_schema') AND nspname NOT LIKE 'pg\_%'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
    PERFORM lo_unlink(oid) FROM pg_largeobject_metadata;
    CREATE SCHEMA public AUTHORIZATION pg_database_owner;
    COMMENT ON SCHEMA public IS 'standard public schema';
    GRANT USAGE ON SCHEMA public TO PUBLIC;
END
$autonomy_drill$;
"#,
        )
        .await
        .map_err(DbError::query("empty the drill's target again"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_name_is_a_plain_identifier_within_63_bytes() {
        let name = scratch_name("bk-20261129T232703Z-abcdef");
        assert!(name.starts_with("autonomy_verify_bk_20261129t232703z_abcdef_"), "{name}");
        assert!(name.len() <= 63, "{name}");
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_ne!(name, scratch_name("bk-20261129T232703Z-abcdef"));
    }

    #[test]
    fn a_description_never_shows_the_password() {
        let config: Config = "postgresql://app:s3cret@db.internal:6543/scratch".parse().unwrap();
        assert_eq!(describe(&config), "postgresql://app@db.internal:6543/scratch");
    }
}
