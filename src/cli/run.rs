//! Runs a parsed command: `ha serve` in-process, everything else through the node's API.

use thiserror::Error;

use crate::{
    audit::{self, AuditQuery},
    backup::{manifest::RestoreReport, BackupRecord},
    cli::{args::*, render},
    client::{ClientError, NodeClient},
    config::{ConfigError, ServeConfig, ServeInputs},
    exit::Exit,
    ha::StatusReport,
    ident,
};

#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0:#}")]
    Serve(anyhow::Error),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

impl CliError {
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Client(error) => error.exit(),
            CliError::Config(_) | CliError::Usage(_) => Exit::Usage,
            CliError::Serve(_) | CliError::Audit(_) => Exit::Internal,
        }
    }
}

/// Runs the command and returns what to print on stdout.
pub fn run(cli: Cli) -> Result<String, CliError> {
    let format = cli.output;
    match cli.command {
        Command::Ha(HaCommand::Serve(args)) => serve(args).map(|()| String::new()),
        Command::Ha(HaCommand::Status) => {
            let report: StatusReport = client(&cli.server, cli.token)?.get("/v1/ha/status")?;
            Ok(render::status(&report, format))
        }
        Command::Ha(HaCommand::Backup(command)) => backup(&cli.server, cli.token, command, format),
        Command::Audit(AuditCommand::Query {
            event_type,
            since,
            audit_dir,
        }) => {
            let since = since
                .map(|value| {
                    time::OffsetDateTime::parse(&value, &time::format_description::well_known::Rfc3339).map_err(|e| {
                        CliError::Usage(format!(
                            "--since `{value}` is not an RFC 3339 time ({e}); use e.g. 2026-11-21T10:00:00Z"
                        ))
                    })
                })
                .transpose()?;
            let events = audit::query(&audit_dir, &AuditQuery { event_type, since })?;
            Ok(render::events(&events, format))
        }
    }
}

fn client(server: &str, token: Option<String>) -> Result<NodeClient, CliError> {
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(CliError::Usage(format!(
            "--server `{server}` is not an http:// URL; use e.g. http://127.0.0.1:7432"
        )));
    }
    Ok(NodeClient::new(server, token))
}

fn backup(
    server: &str,
    token: Option<String>,
    command: BackupCommand,
    format: OutputFormat,
) -> Result<String, CliError> {
    match command {
        BackupCommand::Create => {
            let record: BackupRecord = client(server, token)?.post("/v1/ha/backups", &serde_json::json!({}))?;
            Ok(render::backup(&record, format))
        }
        BackupCommand::List => {
            let records: Vec<BackupRecord> = client(server, token)?.get("/v1/ha/backups")?;
            Ok(render::backups(&records, format))
        }
        BackupCommand::Restore { backup_id, confirm } => {
            ident::validate("backup id", &backup_id).map_err(|e| CliError::Usage(e.to_string()))?;
            if !confirm {
                return Err(CliError::Usage(format!(
                    "restoring backup `{backup_id}` replaces every object in the database with the archive's contents; \
                     nothing was sent. Re-run with --confirm to proceed"
                )));
            }
            let report: RestoreReport = client(server, token)?.post(
                &format!("/v1/ha/backups/{backup_id}/restore"),
                &serde_json::json!({ "confirm": true }),
            )?;
            Ok(render::restore(&report, format))
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    let config = ServeConfig::validate(ServeInputs {
        node_id: args.node_id,
        listen: args.listen,
        allow_remote: args.allow_remote,
        database_url: args.database_url,
        backup_dir: args.backup_dir,
        audit_dir: args.audit_dir,
        maintenance_mode: args.maintenance_mode,
        api_token: args.api_token,
        lease_ttl_ms: args.lease_ttl_ms,
        pg_bin_dir: args.pg_bin_dir,
    })?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| CliError::Serve(e.into()))?;
    runtime.block_on(crate::server::serve(config)).map_err(CliError::Serve)
}
