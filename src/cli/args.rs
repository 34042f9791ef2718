//! The clap definition of every command, flag and environment variable.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "autonomy",
    version,
    about = "PostgreSQL high availability with proven backups and restores"
)]
pub struct Cli {
    /// Base URL of the node the CLI talks to. `ha status` accepts several (repeat the flag or
    /// separate with commas) and shows the cluster; every other command takes one.
    #[arg(
        long,
        global = true,
        env = "AUTONOMY_SERVER_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7432"
    )]
    pub server: Vec<String>,
    /// API token (sent as a Bearer token; required by every route but /healthz).
    #[arg(long, global = true, env = "AUTONOMY_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Seconds to wait for the node's answer before giving up with exit 3
    /// [default: 5 for `ha status`, 3600 for `ha backup create|restore|verify`, 30 otherwise].
    /// An operation the node had started still runs to its end there.
    #[arg(long, global = true, env = "AUTONOMY_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub timeout: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// High availability: run a node, read its status, manage backups.
    #[command(subcommand)]
    Ha(HaCommand),
    /// Protected writes: rollouts, committed by the leader under the lease.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Query the audit store.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Evidence of the validation lab: the VAL26 proof report and its integrity. Offline:
    /// reads and writes files only.
    #[command(subcommand)]
    Lab(LabCommand),
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Assess the VAL13–VAL17 reports of an evidence directory (docs/VALIDATION.md): writes
    /// val26/val26-report.{txt,json,html} into it and prints the text report. Exit 0 when the
    /// verdict is HA DESIGN PARTNER READY, 9 when NOT READY.
    Report {
        /// An evidence run directory (holding val13/ … val17/).
        #[arg(default_value = "evidence/latest")]
        evidence_dir: PathBuf,
        /// Replace an existing VAL26 report even though its evidence changed since (without
        /// it, that is refused with exit 7, so regenerating never launders changed evidence).
        #[arg(long)]
        force: bool,
    },
    /// Recompute the SHA-256 of every file val26-report.json lists (the five slice bundles, the
    /// text and HTML reports) and the verdict from the slice reports; name anything that
    /// changed, went missing or was added since. Exit 0 when all match, 7 when not.
    VerifyEvidence {
        /// The evidence run directory the report was made from.
        evidence_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Store a rollout (on a follower, the request is sent once more to the leader it names).
    Create {
        /// Unique name (letters, digits, `.`, `_`, `-`).
        #[arg(long)]
        name: String,
        /// The rollout's spec: a JSON object.
        #[arg(long, default_value = "{}")]
        spec: String,
    },
    /// List every rollout, oldest first.
    List,
}

// Parsed once per process: the size of the serve variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// Run one HA node (API server and leader lease).
    Serve(ServeArgs),
    /// Show the node's role, lease holder, epoch and write state (with several --server: each
    /// node and whether they agree).
    Status,
    /// Create, list and restore backups (the leader does the work).
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Derive lag alert thresholds from a VAL14 report (the formulas in docs/VALIDATION.md) and print them
    /// as the node's flags. Offline: reads the file only.
    LagThresholds {
        /// A val14-report.json, e.g. evidence/latest/val14/val14-report.json.
        #[arg(long)]
        from: PathBuf,
    },
}

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
    /// Directory of the backup repository (archives and their manifests).
    #[arg(long, env = "AUTONOMY_BACKUP_DIR")]
    pub backup_dir: PathBuf,
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
    /// block a takeover. A dead leader is replaced without waiting for it.
    #[arg(long, env = "AUTONOMY_LEASE_TTL_MS", default_value_t = 5_000)]
    pub lease_ttl_ms: u64,
    /// How often the leader renews the lease, in milliseconds [default: a third of the TTL].
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
    /// Directory of pg_dump, pg_restore and psql (default: PATH). Match the server's major version.
    #[arg(long, env = "AUTONOMY_PG_BIN_DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// Test sabotage only: protected writes skip the leader and lease checks, so the test
    /// suite can show its checks catch unfenced writes. Never use it in production. Only the
    /// flag sets it, never the environment: an inherited variable must not disable fencing.
    #[arg(long, hide = true)]
    pub unsafe_skip_fencing: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a pg_dump archive of the application database.
    Create,
    /// List the backups in the inventory.
    List,
    /// Replace the database's contents with a backup (node must be in maintenance mode).
    Restore {
        /// The backup id (from `ha backup list`).
        backup_id: String,
        /// Confirm that the database's current contents are to be replaced.
        #[arg(long)]
        confirm: bool,
        /// Accept a manifest older than the sealed format (version 1 or 2, written before
        /// manifests were sealed): nothing proves such a manifest unchanged. It must still
        /// agree with the inventory's record of the backup.
        #[arg(long)]
        allow_unsealed_manifest: bool,
    },
    /// Prove a backup restores: a drill into a scratch database (never the live one), its
    /// content and objects compared with the backup's baseline, amcheck on every btree index,
    /// each phase timed. Exit 0 proven, 1 differences found, 2 the drill could not run.
    Verify {
        /// The backup id (from `ha backup list`).
        #[arg(required_unless_present = "latest", conflicts_with = "latest")]
        backup_id: Option<String>,
        /// Verify the newest backup in the repository.
        #[arg(long)]
        latest: bool,
        /// Create the scratch database on this server instead of the node's
        /// (postgresql://user:password@host:port/database: the database is only connected to;
        /// the password is never printed or logged). Prefer the environment variable: a
        /// command line is visible to other users in `ps`.
        #[arg(long, env = "AUTONOMY_VERIFY_TARGET_URL", hide_env_values = true)]
        target_url: Option<String>,
        /// Leave the restored database in place (its name is printed) instead of removing it.
        #[arg(long)]
        keep: bool,
        /// Restore nothing: prove the database --target-url names, which already holds this
        /// backup's restore (one kept by --keep, or restored by other means). Never the
        /// database a node runs on.
        #[arg(long, requires = "target_url")]
        proof_only: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print events from every node's audit file, oldest first.
    Query {
        /// Only events of this type (e.g. ha.backup.created).
        #[arg(long)]
        event_type: Option<String>,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// The audit store to read.
        #[arg(long, env = "AUTONOMY_AUDIT_DIR", default_value = "autonomy-audit")]
        audit_dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, HaCommand};

    #[test]
    fn the_fencing_sabotage_is_set_by_its_flag_only_never_by_the_environment() {
        // The variable the flag once also read: a production node that inherits it must still fence.
        std::env::set_var("AUTONOMY_UNSAFE_SKIP_FENCING", "true");
        let parse = |extra: &[&str]| {
            let base = [
                "autonomy",
                "ha",
                "serve",
                "--node-id",
                "n1",
                "--database-url",
                "postgres://x",
                "--backup-dir",
                "b",
            ];
            let cli = Cli::try_parse_from(base.iter().chain(extra)).expect("parse serve");
            match cli.command {
                Command::Ha(HaCommand::Serve(args)) => args.unsafe_skip_fencing,
                other => panic!("parsed as {other:?}"),
            }
        };
        assert!(!parse(&[]), "the environment disabled fencing");
        assert!(parse(&["--unsafe-skip-fencing"]), "the flag no longer disables fencing");
        std::env::remove_var("AUTONOMY_UNSAFE_SKIP_FENCING");
    }
}
