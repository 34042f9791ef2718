//! Where a drill restores: a scratch database it creates (on the node's server, or on the
//! server `--target-url` names) and drops afterwards; or, with `--proof-only`, a database that
//! already holds a restore, which is only read. Never a database an autonomy node runs on.

use tokio_postgres::{config::Host, Client, Config};

use crate::db::DbError;

/// How the drill came by its target, which decides what it may do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Created by the drill; dropped unless `--keep`.
    Scratch,
    /// `--proof-only`: already holds the restore; read, never changed but for amcheck's
    /// extension (created and dropped again when it was not there).
    Existing,
}

/// A drill's target.
pub struct Target {
    pub kind: TargetKind,
    /// Where the drill connects to restore and prove (password included: never print it).
    pub config: Config,
    /// Where it connects to create and drop a scratch database: the server's database the
    /// node or `--target-url` named.
    pub maintenance: Config,
    pub database: String,
    /// `postgresql://user@host:port/database`, without credentials, for reports and logs.
    pub described: String,
}

impl Target {
    /// A scratch database named `database` on the server `maintenance` reaches.
    pub fn scratch(maintenance: Config, database: String) -> Self {
        let mut config = maintenance.clone();
        config.dbname(&database);
        Self::new(TargetKind::Scratch, config, maintenance)
    }

    /// The database `config` names, already restored.
    pub fn existing(config: Config) -> Self {
        Self::new(TargetKind::Existing, config.clone(), config)
    }

    fn new(kind: TargetKind, config: Config, maintenance: Config) -> Self {
        let database = config.get_dbname().unwrap_or_default().to_owned();
        let described = describe(&config);
        Self {
            kind,
            config,
            maintenance,
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

/// Why a `--target-url` cannot be used, if it cannot: pg_restore gets one host, port, user and
/// password from it, so anything that would make libpq and the node reach different servers
/// is refused.
pub fn unsupported_target(config: &Config) -> Option<&'static str> {
    if config.get_hosts().len() > 1 || config.get_ports().len() > 1 {
        return Some("--target-url names several hosts; name one");
    }
    if !config.get_hostaddrs().is_empty() {
        return Some("--target-url sets hostaddr; name the server by host instead");
    }
    None
}

/// A database name no application would use, unique per drill, within PostgreSQL's 63 bytes,
/// of lowercase letters, digits and `_` only (so it needs no quoting rules beyond `"…"`).
pub fn scratch_name(backup_id: &str) -> String {
    let id: String = backup_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(36)
        .collect();
    format!("{SCRATCH_PREFIX}{id}_{}", hex::encode(rand::random::<[u8; 3]>()))
}

const SCRATCH_PREFIX: &str = "autonomy_verify_";
/// The comment a scratch database carries while its drill runs: one still carrying it when
/// no drill runs was left by a drill that died (a killed node), and the next drill drops it.
const IN_PROGRESS: &str = "autonomy drill in progress";
const KEPT: &str = "autonomy drill kept";

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Creates `name` from template0 (nothing local to template1 leaks into the drill) with the
/// source database's encoding, collation and locale provider, so text sorts and converts alike,
/// and marks it as a drill in progress.
pub async fn create_scratch(server: &Client, name: &str, like: &Client) -> Result<(), DbError> {
    let row = like
        .query_one(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype, datlocprovider::text, daticulocale
               FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(DbError::query("read the application database's encoding"))?;
    let (encoding, collate, ctype, provider): (String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let icu = match (provider.as_str(), row.get::<_, Option<String>>(4)) {
        ("i", Some(locale)) => format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", literal(&locale)),
        _ => String::new(),
    };
    server
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}{icu}",
            literal(&encoding),
            literal(&collate),
            literal(&ctype)
        ))
        .await
        .map_err(DbError::query(
            "CREATE DATABASE for the drill (the role needs CREATEDB on the drill's server)",
        ))?;
    mark(server, name, IN_PROGRESS).await
}

/// Marks a scratch database as kept on purpose: no later drill drops it.
pub async fn mark_kept(server: &Client, name: &str) -> Result<(), DbError> {
    mark(server, name, KEPT).await
}

async fn mark(server: &Client, name: &str, what: &str) -> Result<(), DbError> {
    server
        .batch_execute(&format!("COMMENT ON DATABASE \"{name}\" IS {}", literal(what)))
        .await
        .map_err(DbError::query("mark the drill's scratch database"))
}

/// Drops the scratch database, ending any session still in it.
pub async fn drop_scratch(server: &Client, name: &str) -> Result<(), DbError> {
    server
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .map_err(DbError::query("DROP DATABASE of the drill's scratch database"))
}

/// Drops the scratch databases earlier drills left in progress (their node died mid-drill).
/// Runs only while this node holds the one drill slot, so none of them is still in use.
/// Returns their names.
pub async fn drop_abandoned(server: &Client) -> Result<Vec<String>, DbError> {
    let rows = server
        .query(
            "SELECT d.datname FROM pg_database d
               JOIN pg_shdescription s ON s.objoid = d.oid AND s.classoid = 'pg_database'::regclass
              WHERE d.datname LIKE $1 AND s.description = $2",
            &[&format!("{}%", SCRATCH_PREFIX.replace('_', "\\_")), &IN_PROGRESS],
        )
        .await
        .map_err(DbError::query("look for abandoned drill databases"))?;
    let names: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    for name in &names {
        if name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            drop_scratch(server, name).await?;
        }
    }
    Ok(names)
}

/// Why `client`'s database may not be a drill's target: it is one an autonomy node runs on
/// (it holds autonomy_ha), or a template.
pub async fn refuse_managed(client: &Client) -> Result<Option<String>, DbError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'autonomy_ha'),
                    (SELECT datistemplate FROM pg_database WHERE datname = current_database()),
                    current_database()",
            &[],
        )
        .await
        .map_err(DbError::query("check the drill's target"))?;
    let (managed, template, name): (bool, bool, String) = (row.get(0), row.get(1), row.get(2));
    Ok(if managed {
        Some(format!(
            "the database `{name}` holds the autonomy_ha schema: it is a database an autonomy node runs on, \
             and a drill never uses one as its target; nothing was changed"
        ))
    } else if template {
        Some(format!(
            "the database `{name}` is a template; a drill never uses one as its target"
        ))
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_name_is_a_plain_identifier_within_63_bytes() {
        let name = scratch_name("bk-20261129T232703Z-abcdef");
        assert!(
            name.starts_with("autonomy_verify_bk_20261129t232703z_abcdef_"),
            "{name}"
        );
        assert!(name.len() <= 63, "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_ne!(name, scratch_name("bk-20261129T232703Z-abcdef"));
    }

    #[test]
    fn a_description_never_shows_the_password() {
        let config: Config = "postgresql://app:s3cret@db.internal:6543/scratch".parse().unwrap();
        assert_eq!(describe(&config), "postgresql://app@db.internal:6543/scratch");
    }

    #[test]
    fn several_hosts_or_a_hostaddr_are_refused() {
        let parse = |url: &str| url.parse::<Config>().unwrap();
        assert!(unsupported_target(&parse("postgresql://u@a,b/db")).is_some());
        assert!(unsupported_target(&parse("host=a hostaddr=127.0.0.1 dbname=db")).is_some());
        assert!(unsupported_target(&parse("postgresql://u@a:5432/db")).is_none());
    }
}
