//! The clap definition of every command, flag and environment variable.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use crate::config::ServeArgs;

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

// Parsed once per process: the size of the serve variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
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
    /// Show the backup and verify schedules: the next slots, each one's last run and the
    /// slots that did not run, with why (any node answers; the leader runs the slots).
    Schedule,
    /// Derive lag alert thresholds from a VAL14 report (the formulas in docs/VALIDATION.md) and print them
    /// as the node's flags. Offline: reads the file only.
    LagThresholds {
        /// A val14-report.json, e.g. evidence/latest/val14/val14-report.json.
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a pg_dump archive of the application database.
    Create,
    /// List the backups in the inventory.
    List,
    /// Apply retention (--retain-* on the leader): delete the completed backups no rule keeps,
    /// never the newest, the newest proven or one in use. Leader only.
    Prune {
        /// Print the plan (each backup, the rule that keeps it or `delete`) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rebuild the inventory from the store's manifests (the leader adds the rows it lacks) and
    /// name what the store holds that is not a backup's.
    Reindex,
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
    /// Print every node's audit events, oldest first: from the node --server names (its
    /// shared trail, on any machine), or with --audit-dir from the files in that directory.
    Query {
        /// Only events of this type (e.g. ha.backup.created).
        #[arg(long)]
        event_type: Option<String>,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Read this local audit directory instead of asking a node (offline; it shows only
        /// the nodes whose files are there).
        #[arg(long)]
        audit_dir: Option<PathBuf>,
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
