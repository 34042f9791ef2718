//! The flags and environment variables of `autonomy ha serve`, as clap parses them.

use std::{net::SocketAddr, path::PathBuf};

use clap::Args;

// Numbers are parsed with hyphens allowed, so `--lease-ttl-ms -5` is refused as a bad value
// of that flag, not as an unknown argument.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct ServeArgs {
    /// This node's id (letters, digits, `.`, `_`, `-`); unique among the nodes.
    #[arg(long, env = "AUTONOMY_NODE_ID")]
    pub node_id: String,
    /// Address the API listens on; loopback unless --allow-remote. Port 0 picks a free port.
    #[arg(long, env = "AUTONOMY_LISTEN", default_value = "127.0.0.1:7432")]
    pub listen: SocketAddr,
    /// Allow --listen on a non-loopback address.
    #[arg(long, env = "AUTONOMY_ALLOW_REMOTE")]
    pub allow_remote: bool,
    /// PostgreSQL URL of the application database (the nodes share it; it holds autonomy_ha).
    #[arg(long, env = "AUTONOMY_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Directory of the backup repository (archives and their manifests); with
    /// --backup-store s3, where restores and drills stage their copy of an archive.
    #[arg(long, env = "AUTONOMY_BACKUP_DIR")]
    pub backup_dir: PathBuf,
    #[command(flatten)]
    pub store: super::StoreArgs,
    #[command(flatten)]
    pub keys: super::KeyArgs,
    /// Directory of the audit store (one JSON-lines file per node).
    #[arg(long, env = "AUTONOMY_AUDIT_DIR", default_value = "autonomy-audit")]
    pub audit_dir: PathBuf,
    /// Allow restores (stop application traffic first).
    #[arg(long, env = "AUTONOMY_MAINTENANCE_MODE")]
    pub maintenance_mode: bool,
    /// API token clients must present (at least 16 characters).
    #[arg(long, env = "AUTONOMY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Leader lease time-to-live in milliseconds: how long a paused or cut-off leader can
    /// block a takeover. With the row lease a dead leader is replaced without waiting for it;
    /// etcd cannot see a dead process, so there it waits for the TTL (whole seconds)
    /// [default: 5000 with the row lease, 3000 on etcd].
    #[arg(long, env = "AUTONOMY_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,
    #[command(flatten)]
    pub lease: super::LeaseStoreArgs,
    /// How often the leader renews the lease, in milliseconds; also how long a lease request
    /// may go unanswered (at least 500) [default: a third of the TTL, a sixth on etcd].
    #[arg(long, env = "AUTONOMY_RENEW_INTERVAL_MS")]
    pub renew_interval_ms: Option<u64>,
    /// How often a follower tries to take the lease, in milliseconds; bounds how long a
    /// killed leader goes unnoticed.
    #[arg(long, env = "AUTONOMY_POLL_INTERVAL_MS", default_value_t = 50)]
    pub poll_interval_ms: u64,
    /// URL clients reach this node's API at, given to them as the leader hint
    /// [default: http://<bound --listen address>].
    #[arg(long, env = "AUTONOMY_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// A standby whose write lag is at most this many milliseconds is `healthy` (derive it
    /// from measurements with `autonomy ha lag-thresholds`).
    #[arg(long, env = "AUTONOMY_LAG_HEALTHY_MS", default_value_t = 10)]
    pub lag_healthy_ms: u64,
    /// A standby whose write lag is above --lag-healthy-ms and at most this is `degraded`;
    /// above it, or disconnected, it is `alert`.
    #[arg(long, env = "AUTONOMY_LAG_DEGRADED_MS", default_value_t = 100)]
    pub lag_degraded_ms: u64,
    /// How often the node samples pg_stat_replication, in milliseconds.
    #[arg(long, env = "AUTONOMY_REPLICATION_POLL_INTERVAL_MS", default_value_t = 1_000)]
    pub replication_poll_interval_ms: u64,
    #[command(flatten)]
    pub retention: super::RetentionArgs,
    #[command(flatten)]
    pub schedule: super::ScheduleArgs,
    /// Directory of pg_dump, pg_restore and psql (default: PATH). Match the server's major version.
    #[arg(long, env = "AUTONOMY_PG_BIN_DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// Test sabotage only: protected writes skip the leader and lease checks, so the test
    /// suite can show its checks catch unfenced writes. Never use it in production. Only the
    /// flag sets it, never the environment: an inherited variable must not disable fencing.
    #[arg(long, hide = true)]
    pub unsafe_skip_fencing: bool,
}
