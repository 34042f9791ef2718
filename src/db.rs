//! Connections to the application database and the `autonomy_ha` schema with its migrations.

use thiserror::Error;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::ident::NodeId;

/// The schema autonomy owns; never dumped, never restored.
pub const SCHEMA: &str = "autonomy_ha";

/// Prefix of every autonomy session's application_name, so a restore can spare them.
pub const APPLICATION_NAME_PREFIX: &str = "autonomy-ha:";

/// Advisory-lock key that serialises migrations between nodes starting at once.
pub(crate) const MIGRATION_LOCK_KEY: i64 = 0x6175_746f_6d69; // "automi"

#[derive(Debug, Error)]
pub enum DbError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("database error during {what}: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A row holds what its table's constraints allow but this version does not know.
    #[error("the database holds {value:?} in {what}, which this version does not know; upgrade the node")]
    Unknown { what: &'static str, value: String },
}

impl DbError {
    pub fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        move |source| DbError::Query { what, source }
    }

    /// Whether the server ended the session (terminated by an administrator, shut down, or
    /// crashed) rather than refusing one statement: the caller's session is gone either way,
    /// and the lease row no longer names a live backend.
    pub fn session_ended(&self) -> bool {
        let source = match self {
            DbError::Connect(source) | DbError::Query { source, .. } => source,
            DbError::Unknown { .. } => return false,
        };
        let ended_by_server = source.code().is_some_and(|code| {
            *code == tokio_postgres::error::SqlState::ADMIN_SHUTDOWN
                || *code == tokio_postgres::error::SqlState::CRASH_SHUTDOWN
        });
        ended_by_server || source.is_closed()
    }
}

/// Opens one connection; its driver task ends when the client is dropped.
pub async fn connect(database_url: &str, node_id: &str, purpose: &str) -> Result<Client, DbError> {
    connect_with_events(database_url, node_id, purpose)
        .await
        .map(|(client, _events)| client)
}

/// Opens one connection and reports what happens to it: each NOTIFY it receives (the channel
/// name) arrives on the receiver, and the receiver ends the moment the connection does. The
/// lease loop uses both to react at once instead of at its next round.
pub async fn connect_with_events(
    database_url: &str,
    node_id: &str,
    purpose: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<String>), DbError> {
    let config: tokio_postgres::Config = database_url.parse().map_err(DbError::Connect)?;
    connect_config_with_events(config, node_id, purpose).await
}

/// [`connect`] from a parsed configuration (another database on the same server, a drill's
/// target).
pub async fn connect_config(config: tokio_postgres::Config, node_id: &str, purpose: &str) -> Result<Client, DbError> {
    connect_config_with_events(config, node_id, purpose)
        .await
        .map(|(client, _events)| client)
}

async fn connect_config_with_events(
    mut config: tokio_postgres::Config,
    node_id: &str,
    purpose: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<String>), DbError> {
    config.application_name(format!("{APPLICATION_NAME_PREFIX}{node_id}:{purpose}"));
    config.connect_timeout(std::time::Duration::from_secs(5));
    // A peer that vanished without closing (a cut network) is noticed in ~25 s, not hours.
    config.keepalives_idle(std::time::Duration::from_secs(10));
    config.keepalives_interval(std::time::Duration::from_secs(5));
    config.keepalives_retries(3);
    let (client, mut connection) = config.connect(NoTls).await.map_err(DbError::Connect)?;
    let (events, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    let _ = events.send(notification.channel().to_owned());
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!(%error, "database connection closed");
                    break;
                }
                None => break,
            }
        }
    });
    Ok((client, receiver))
}

/// The schema, written so that running it again changes nothing and re-creates whatever was
/// dropped (a missing inventory table comes back empty and is refilled from the manifests).
/// Later changes append idempotent statements (`ADD COLUMN IF NOT EXISTS`, ...).
const SCHEMA_SQL: &str = "
    CREATE SCHEMA IF NOT EXISTS autonomy_ha;
    CREATE TABLE IF NOT EXISTS autonomy_ha.leader_lease (
        singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        holder_id   text,
        epoch       bigint NOT NULL DEFAULT 0,
        acquired_at timestamptz,
        expires_at  timestamptz NOT NULL DEFAULT '-infinity'
    );
    -- The backend pid of the holder's lease session: gone means the holder is gone.
    ALTER TABLE autonomy_ha.leader_lease ADD COLUMN IF NOT EXISTS holder_pid integer;
    -- With the pid, the session's start time: a recycled pid is not the holder's session.
    ALTER TABLE autonomy_ha.leader_lease ADD COLUMN IF NOT EXISTS holder_backend_start timestamptz;
    -- Where the holder's API listens, for the leader hint in a follower's 503.
    ALTER TABLE autonomy_ha.leader_lease ADD COLUMN IF NOT EXISTS holder_address text;
    INSERT INTO autonomy_ha.leader_lease DEFAULT VALUES ON CONFLICT DO NOTHING;
    -- One row per epoch, written in the transaction that acquired it: who led at which epoch.
    CREATE TABLE IF NOT EXISTS autonomy_ha.lease_history (
        epoch          bigint PRIMARY KEY,
        holder_id      text NOT NULL,
        holder_address text,
        acquired_at    timestamptz NOT NULL
    );
    CREATE TABLE IF NOT EXISTS autonomy_ha.backup_inventory (
        backup_id      text PRIMARY KEY,
        status         text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
        created_at     timestamptz NOT NULL,
        completed_at   timestamptz,
        database       text NOT NULL,
        server_version text,
        size_bytes     bigint,
        sha256         text,
        duration_ms    bigint,
        node_id        text NOT NULL,
        epoch          bigint NOT NULL,
        error          text
    );
    -- The last restore drill (`ha backup verify`) of each backup and what it found.
    ALTER TABLE autonomy_ha.backup_inventory ADD COLUMN IF NOT EXISTS last_verified_at timestamptz;
    ALTER TABLE autonomy_ha.backup_inventory ADD COLUMN IF NOT EXISTS last_verify_outcome text;
    -- The manifest format the backup was written with: a manifest file claiming an older one
    -- than its row is a downgrade, refused by restore.
    ALTER TABLE autonomy_ha.backup_inventory ADD COLUMN IF NOT EXISTS manifest_version integer;
    -- The last restore of each backup, set inside the restore's own transaction (so it exists
    -- exactly when the restore committed), then given the proof's outcome.
    ALTER TABLE autonomy_ha.backup_inventory ADD COLUMN IF NOT EXISTS last_restored_at timestamptz;
    ALTER TABLE autonomy_ha.backup_inventory ADD COLUMN IF NOT EXISTS last_restore_outcome text;
    ALTER TABLE autonomy_ha.backup_inventory ADD COLUMN IF NOT EXISTS last_restore_id text;
    ALTER TABLE autonomy_ha.backup_inventory ADD COLUMN IF NOT EXISTS last_restore_node text;
    -- Every node's audit events, copied from each node's local file (which stays the record)
    -- and deduplicated by id: the trail any node's API answers with (audit::ship, audit::shared).
    CREATE TABLE IF NOT EXISTS autonomy_ha.audit_events (
        id      text PRIMARY KEY,
        time    timestamptz NOT NULL,
        type    text NOT NULL,
        node_id text NOT NULL,
        details jsonb NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_events_by_time ON autonomy_ha.audit_events (time);
    -- One row per slot of a backup or verify schedule, inserted under the lease's fence: the
    -- primary key is what makes a slot run at most once across nodes and failovers.
    CREATE TABLE IF NOT EXISTS autonomy_ha.schedule_slots (
        kind        text NOT NULL CHECK (kind IN ('backup', 'verify')),
        slot_at     timestamptz NOT NULL,
        state       text NOT NULL
                    CHECK (state IN ('running', 'succeeded', 'failed', 'skipped', 'missed', 'interrupted')),
        expression  text NOT NULL,
        attempt     integer NOT NULL,
        node_id     text NOT NULL,
        epoch       bigint NOT NULL,
        claimed_at  timestamptz NOT NULL,
        finished_at timestamptz,
        backup_id   text,
        detail      text,
        PRIMARY KEY (kind, slot_at)
    );
    -- The fence of a lease held outside the database (etcd): each new leader raises it to its
    -- epoch before its first protected write, and every protected write checks it under a share
    -- lock in its own transaction (ha::fence). database_token names this database in the etcd
    -- prefix its nodes use, so nodes of another database are refused there.
    CREATE TABLE IF NOT EXISTS autonomy_ha.write_fence (
        singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        epoch          bigint NOT NULL DEFAULT 0,
        holder_id      text,
        released       boolean NOT NULL DEFAULT true,
        raised_at      timestamptz,
        database_token text NOT NULL DEFAULT gen_random_uuid()::text
    );
    INSERT INTO autonomy_ha.write_fence DEFAULT VALUES ON CONFLICT DO NOTHING;
    -- The highest epoch any node saw in etcd's leader key without an acquisition having granted
    -- it (a key rewritten by hand): the next term starts above it too.
    ALTER TABLE autonomy_ha.write_fence ADD COLUMN IF NOT EXISTS epoch_seen bigint NOT NULL DEFAULT 0;
";

/// Creates or repairs the `autonomy_ha` schema. Safe when several nodes start at once: it
/// runs in one transaction under a transaction-scoped advisory lock.
pub async fn migrate(client: &mut Client) -> Result<(), DbError> {
    let tx = client.transaction().await.map_err(DbError::query("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(DbError::query("take the migration lock"))?;
    tx.batch_execute(SCHEMA_SQL)
        .await
        .map_err(DbError::query("create the autonomy_ha schema"))?;
    tx.commit().await.map_err(DbError::query("commit migration"))
}

/// One lazily (re)connected session shared by the API handlers. Requests take turns on it:
/// the control plane issues a handful of short statements per request.
pub struct SharedClient {
    database_url: String,
    node_id: NodeId,
    /// Shown in application_name, so each session's job is visible in pg_stat_activity.
    purpose: &'static str,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl SharedClient {
    pub fn new(database_url: String, node_id: NodeId, purpose: &'static str) -> Self {
        Self {
            database_url,
            node_id,
            purpose,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// A session of its own on the same database, for work that must hold a transaction open
    /// without blocking this shared one (a backup's baseline snapshot).
    pub async fn open_another(&self, purpose: &str) -> Result<Client, DbError> {
        connect(&self.database_url, self.node_id.as_str(), purpose).await
    }

    /// The node's connection settings with another database named: a drill's scratch
    /// database lives beside the application's on the same server.
    pub fn config_for_database(&self, database: &str) -> Result<tokio_postgres::Config, DbError> {
        let mut config: tokio_postgres::Config = self.database_url.parse().map_err(DbError::Connect)?;
        config.dbname(database);
        Ok(config)
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The session, reconnecting first if it was lost.
    pub async fn get(&self) -> Result<tokio::sync::MappedMutexGuard<'_, Client>, DbError> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(connect(&self.database_url, self.node_id.as_str(), self.purpose).await?);
        }
        Ok(tokio::sync::MutexGuard::map(slot, |slot| {
            slot.as_mut().expect("connected above")
        }))
    }
}
