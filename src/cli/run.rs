//! Runs a parsed command: `ha serve` in-process, everything else through the node's API.

use thiserror::Error;

use crate::{
    audit::{self, AuditQuery},
    backup::{
        drill::{DrillOutcome, VerifyReport},
        manifest::RestoreReport,
        BackupRecord,
    },
    cli::{
        args::*,
        cluster::{ClusterNode, ClusterView},
        lab, render,
    },
    client::{ClientError, NodeClient},
    config::{ConfigError, ServeConfig, ServeInputs},
    exit::Exit,
    ha::{
        rollouts::{self, NewRollout, Rollout},
        StatusReport,
    },
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
    #[error(transparent)]
    Evidence(#[from] crate::evidence::val26::Val26Error),
    /// Some of the work was done: `output` is printed, then the error, then the exit code.
    #[error("{reason}")]
    Incomplete { output: String, reason: String, exit: Exit },
}

impl CliError {
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Client(error) => error.exit(),
            CliError::Config(_) | CliError::Usage(_) => Exit::Usage,
            CliError::Serve(_) | CliError::Audit(_) => Exit::Internal,
            CliError::Evidence(error) => lab::exit(error),
            CliError::Incomplete { exit, .. } => *exit,
        }
    }

    /// What to print on stdout before the error, if anything.
    pub fn output(&self) -> Option<&str> {
        match self {
            CliError::Incomplete { output, .. } => Some(output),
            _ => None,
        }
    }
}

/// Runs the command and returns what to print on stdout.
pub fn run(cli: Cli) -> Result<String, CliError> {
    let format = cli.output;
    match cli.command {
        Command::Ha(HaCommand::Serve(args)) => serve(args).map(|()| String::new()),
        Command::Ha(HaCommand::Status) => status(&cli.server, cli.token, format),
        Command::Ha(HaCommand::Backup(command)) => backup(one_server(&cli.server)?, cli.token, command, format),
        Command::Ha(HaCommand::LagThresholds { from }) => lag_thresholds(&from, format),
        Command::Lab(command) => super::lab::run(command, format),
        Command::Rollout(command) => rollout(one_server(&cli.server)?, cli.token, command, format),
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

/// Reads a VAL14 report and derives the thresholds; any problem with the file is bad input.
fn lag_thresholds(from: &std::path::Path, format: OutputFormat) -> Result<String, CliError> {
    let text = std::fs::read_to_string(from)
        .map_err(|e| CliError::Usage(format!("cannot read --from {}: {e}", from.display())))?;
    let report: crate::evidence::Report = serde_json::from_str(&text).map_err(|e| {
        CliError::Usage(format!(
            "--from {} is not a validation report ({e}); pass the val14-report.json of an evidence bundle",
            from.display()
        ))
    })?;
    let derived = crate::evidence::lag::from_report(&report)
        .map_err(|e| CliError::Usage(format!("--from {}: {e}", from.display())))?;
    Ok(render::lag_thresholds(&derived, &report, format))
}

/// Every command but `ha status` talks to exactly one node.
fn one_server(servers: &[String]) -> Result<&str, CliError> {
    match servers {
        [server] => Ok(server),
        _ => Err(CliError::Usage(format!(
            "--server was given {} times ({}); only `ha status` accepts several. Name one node",
            servers.len(),
            servers.join(", ")
        ))),
    }
}

/// One node's status, or with several servers each node's and whether they agree.
fn status(servers: &[String], token: Option<String>, format: OutputFormat) -> Result<String, CliError> {
    if let [server] = servers {
        let report: StatusReport = client(server, token)?.get("/v1/ha/status")?;
        return Ok(render::status(&report, format));
    }
    let mut nodes = Vec::new();
    for server in servers {
        client(server, token.clone())?; // validates the URL
                                        // A paused node accepts connections but never answers: bound the wait.
        let answer = NodeClient::with_timeout(server, token.clone(), Some(std::time::Duration::from_secs(5)))
            .get::<StatusReport>("/v1/ha/status");
        nodes.push(ClusterNode {
            server: server.clone(),
            error: answer.as_ref().err().map(ToString::to_string),
            status: answer.ok(),
        });
    }
    let view = ClusterView::new(nodes);
    let output = render::cluster(&view, format);
    let unreachable: Vec<&str> = view
        .nodes
        .iter()
        .filter(|n| n.status.is_none())
        .map(|n| n.server.as_str())
        .collect();
    if unreachable.is_empty() {
        Ok(output)
    } else {
        Err(CliError::Incomplete {
            output,
            reason: format!("no status from {}", unreachable.join(", ")),
            exit: Exit::Unreachable,
        })
    }
}

fn rollout(
    server: &str,
    token: Option<String>,
    command: RolloutCommand,
    format: OutputFormat,
) -> Result<String, CliError> {
    match command {
        RolloutCommand::Create { name, spec } => {
            let spec: serde_json::Value = serde_json::from_str(&spec).map_err(|e| {
                CliError::Usage(format!(
                    "--spec is not JSON ({e}); pass an object, e.g. '{{\"image\": \"web:2\"}}'"
                ))
            })?;
            let new = NewRollout { name, spec };
            rollouts::validate(&new).map_err(|e| CliError::Usage(e.to_string()))?;
            let first = client(server, token.clone())?.post::<_, Rollout>("/v1/rollouts", &new);
            let rollout = match first {
                // A follower names the leader: send the write there, once.
                Err(ClientError::Api {
                    leader_address: Some(leader),
                    ..
                }) if leader.trim_end_matches('/') != server.trim_end_matches('/') => {
                    client(&leader, token)?.post("/v1/rollouts", &new)?
                }
                other => other?,
            };
            Ok(render::rollout(&rollout, format))
        }
        RolloutCommand::List => {
            let rollouts: Vec<Rollout> = client(server, token)?.get("/v1/rollouts")?;
            Ok(render::rollouts(&rollouts, format))
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
        BackupCommand::Verify {
            backup_id,
            latest: _,
            target_url,
            keep,
            proof_only,
        } => verify(server, token, backup_id, target_url, keep, proof_only, format),
    }
}

/// Runs a drill and maps its outcome to seed 002's exit codes; anything that stops the drill
/// from running, bad input included, is 2.
fn verify(
    server: &str,
    token: Option<String>,
    backup_id: Option<String>,
    target_url: Option<String>,
    keep: bool,
    proof_only: bool,
    format: OutputFormat,
) -> Result<String, CliError> {
    let not_run = |reason: String| CliError::Incomplete {
        output: String::new(),
        reason,
        exit: Exit::DRILL_NOT_RUN,
    };
    let which = backup_id.unwrap_or_else(|| "latest".to_owned());
    if which != "latest" {
        ident::validate("backup id", &which).map_err(|e| not_run(e.to_string()))?;
    }
    let report: VerifyReport = client(server, token)
        .map_err(|e| not_run(e.to_string()))?
        .post(
            &format!("/v1/ha/backups/{which}/verify"),
            &serde_json::json!({ "target_url": target_url, "keep": keep, "proof_only": proof_only }),
        )
        .map_err(|e| not_run(e.to_string()))?;
    let output = render::verify(&report, format);
    match report.outcome {
        DrillOutcome::Proven => Ok(output),
        DrillOutcome::Differences => Err(CliError::Incomplete {
            output,
            reason: format!(
                "backup `{}` does not restore to what it recorded: {} difference(s), listed above",
                report.backup_id,
                report.differences.len()
            ),
            exit: Exit::DIFFERENCES_FOUND,
        }),
        DrillOutcome::NotRun => Err(CliError::Incomplete {
            output,
            reason: format!(
                "the drill of backup `{}` could not run: {}",
                report.backup_id,
                report.error.as_deref().unwrap_or("no reason given")
            ),
            exit: Exit::DRILL_NOT_RUN,
        }),
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
        renew_interval_ms: args.renew_interval_ms,
        poll_interval_ms: args.poll_interval_ms,
        advertise_url: args.advertise_url,
        pg_bin_dir: args.pg_bin_dir,
        skip_fencing: args.unsafe_skip_fencing,
        lag_healthy_ms: args.lag_healthy_ms,
        lag_degraded_ms: args.lag_degraded_ms,
        replication_poll_interval_ms: args.replication_poll_interval_ms,
    })?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| CliError::Serve(e.into()))?;
    runtime.block_on(crate::server::serve(config)).map_err(CliError::Serve)
}
