//! Runs a parsed command: `ha serve` in-process, everything else through the node's API.

use thiserror::Error;

use crate::{
    audit::{self, AuditQuery},
    backup::{
        drill::{DrillOutcome, VerifyReport, WhichBackup},
        manifest::{RestoreReport, RestoreRequest, RestoreStatus},
        BackupRecord,
    },
    cli::{
        args::*,
        cluster::{ClusterNode, ClusterView},
        lab, render,
    },
    client::{ClientError, NodeClient},
    config::{ConfigError, ServeConfig},
    exit::Exit,
    ha::{
        rollouts::{self, NewRollout, Rollout},
        StatusReport,
    },
    ident::BackupId,
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
            CliError::Audit(audit::AuditError::NoStore(_)) => Exit::Usage,
            // A setting found unusable only once the node reached out (etcd's checks at start).
            CliError::Serve(error) if error.downcast_ref::<ConfigError>().is_some() => Exit::Usage,
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
    let timeout = Timeout(cli.timeout.map(std::time::Duration::from_secs));
    match cli.command {
        Command::Ha(HaCommand::Serve(args)) => serve(args).map(|()| String::new()),
        Command::Ha(HaCommand::Status) => status(&cli.server, cli.token, timeout.or(STATUS_TIMEOUT), format),
        Command::Ha(HaCommand::Backup(command)) => {
            let wait = match command {
                BackupCommand::List => timeout.or(LIST_TIMEOUT),
                _ => timeout.or(OPERATION_TIMEOUT),
            };
            backup(&Node::new(one_server(&cli.server)?, cli.token, wait)?, command, format)
        }
        Command::Ha(HaCommand::Schedule) => {
            let node = Node::new(one_server(&cli.server)?, cli.token, timeout.or(CALL_TIMEOUT))?;
            let report: crate::api::ScheduleReport = node.client().get("/v1/ha/schedule")?;
            Ok(super::schedule::render(&report, format))
        }
        Command::Ha(HaCommand::LagThresholds { from }) => lag_thresholds(&from, format),
        Command::Lab(command) => super::lab::run(command, format),
        Command::Rollout(command) => rollout(
            &Node::new(one_server(&cli.server)?, cli.token, timeout.or(CALL_TIMEOUT))?,
            command,
            format,
        ),
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
            let events = match audit_dir {
                Some(dir) => audit::query(&dir, &AuditQuery { event_type, since })?,
                None => {
                    let node = Node::new(one_server(&cli.server)?, cli.token, timeout.or(CALL_TIMEOUT))?;
                    let since = since.map(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .expect("a parsed time formats")
                    });
                    node.client().get_query(
                        "/v1/audit/events",
                        &[("event_type", event_type.as_deref()), ("since", since.as_deref())],
                    )?
                }
            };
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

/// `--timeout`, if given.
#[derive(Debug, Clone, Copy)]
struct Timeout(Option<std::time::Duration>);

impl Timeout {
    fn or(self, default: std::time::Duration) -> std::time::Duration {
        self.0.unwrap_or(default)
    }
}

/// A status is answered from memory: a node that takes longer is frozen or overloaded.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Listings and rollout writes (which the node bounds at 15 s itself).
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// A leader's backup listing indexes new manifests and stats every backup's files first.
const LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Backups, restores and drills of large databases take long.
const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// One node's API, with the answer deadline of the command.
struct Node {
    server: String,
    token: Option<String>,
    timeout: std::time::Duration,
}

impl Node {
    fn new(server: &str, token: Option<String>, timeout: std::time::Duration) -> Result<Self, CliError> {
        check_server_url(server)?;
        Ok(Self {
            server: server.to_owned(),
            token,
            timeout,
        })
    }

    fn client(&self) -> NodeClient {
        self.client_of(&self.server)
    }

    /// The same token and deadline towards another node (the leader a follower named).
    fn client_of(&self, server: &str) -> NodeClient {
        NodeClient::with_timeout(server, self.token.clone(), Some(self.timeout))
    }
}

/// One node's status, or with several servers each node's and whether they agree.
fn status(
    servers: &[String],
    token: Option<String>,
    timeout: std::time::Duration,
    format: OutputFormat,
) -> Result<String, CliError> {
    if let [server] = servers {
        let report: StatusReport = Node::new(server, token, timeout)?.client().get("/v1/ha/status")?;
        return Ok(render::status(&report, format));
    }
    let mut nodes = Vec::new();
    for server in servers {
        // A paused node accepts connections but never answers: each wait is bounded.
        let answer = Node::new(server, token.clone(), timeout)?
            .client()
            .get::<StatusReport>("/v1/ha/status");
        nodes.push(ClusterNode {
            server: crate::client::redact_userinfo(server),
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

fn rollout(node: &Node, command: RolloutCommand, format: OutputFormat) -> Result<String, CliError> {
    match command {
        RolloutCommand::Create { name, spec } => {
            let spec: serde_json::Value = serde_json::from_str(&spec).map_err(|e| {
                CliError::Usage(format!(
                    "--spec is not JSON ({e}); pass an object, e.g. '{{\"image\": \"web:2\"}}'"
                ))
            })?;
            let new = NewRollout { name, spec };
            rollouts::validate(&new).map_err(|e| CliError::Usage(e.to_string()))?;
            let first = node.client().post::<_, Rollout>("/v1/rollouts", &new);
            let rollout = match first {
                // A follower names the leader: send the write there, once.
                Err(ClientError::Api {
                    leader_address: Some(leader),
                    ..
                }) if leader.trim_end_matches('/') != node.server.trim_end_matches('/') => {
                    check_server_url(&leader)?;
                    node.client_of(&leader).post("/v1/rollouts", &new)?
                }
                other => other?,
            };
            Ok(render::rollout(&rollout, format))
        }
        RolloutCommand::List => {
            let rollouts: Vec<Rollout> = node.client().get("/v1/rollouts")?;
            Ok(render::rollouts(&rollouts, format))
        }
    }
}

fn check_server_url(server: &str) -> Result<(), CliError> {
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(CliError::Usage(format!(
            "--server `{}` is not an http:// URL; use e.g. http://127.0.0.1:7432",
            crate::client::redact_userinfo(server)
        )));
    }
    Ok(())
}

fn backup(node: &Node, command: BackupCommand, format: OutputFormat) -> Result<String, CliError> {
    match command {
        BackupCommand::Create => {
            let record: BackupRecord = node.client().post("/v1/ha/backups", &serde_json::json!({}))?;
            Ok(render::backup(&record, format))
        }
        BackupCommand::List => {
            let records: Vec<BackupRecord> = node.client().get("/v1/ha/backups")?;
            Ok(render::backups(&records, format))
        }
        BackupCommand::Prune { dry_run } => {
            let report: crate::backup::prune::PruneReport = node
                .client()
                .post("/v1/ha/backups/prune", &serde_json::json!({ "dry_run": dry_run }))?;
            Ok(render::prune(&report, format))
        }
        BackupCommand::Reindex => {
            let report: crate::api::ReindexReport =
                node.client().post("/v1/ha/backups/reindex", &serde_json::json!({}))?;
            Ok(render::reindex(&report, format))
        }
        BackupCommand::Restore {
            backup_id,
            confirm,
            allow_unsealed_manifest,
        } => {
            let backup_id = BackupId::parse(&backup_id).map_err(|e| CliError::Usage(e.to_string()))?;
            if !confirm {
                return Err(CliError::Usage(format!(
                    "restoring backup `{backup_id}` replaces every object in the database with the archive's contents; \
                     nothing was sent. Re-run with --confirm to proceed"
                )));
            }
            let report: RestoreReport = node.client().post(
                &format!("/v1/ha/backups/{backup_id}/restore"),
                &RestoreRequest {
                    confirm: true,
                    allow_unsealed_manifest,
                },
            )?;
            finished(render::restore(&report, format), restore_shortfall(&report, &backup_id))
        }
        BackupCommand::Verify {
            backup_id,
            latest: _,
            target_url,
            keep,
            proof_only,
        } => verify(node, backup_id, target_url, keep, proof_only, format),
    }
}

/// Runs a drill and maps its outcome to the drill's exit codes (README); anything that stops the drill
/// from running, bad input included, is 2.
fn verify(
    node: &Node,
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
    let which = match backup_id {
        None => WhichBackup::Latest,
        Some(which) => WhichBackup::parse(&which).map_err(|e| not_run(e.to_string()))?,
    };
    let report: VerifyReport = node
        .client()
        .post(
            &format!("/v1/ha/backups/{which}/verify"),
            &serde_json::json!({ "target_url": target_url, "keep": keep, "proof_only": proof_only }),
        )
        .map_err(|e| not_run(e.to_string()))?;
    finished(render::verify(&report, format), drill_shortfall(&report))
}

/// The command's output, or its output with the exit code and the reason it fell short.
fn finished(output: String, shortfall: Option<(String, Exit)>) -> Result<String, CliError> {
    match shortfall {
        None => Ok(output),
        Some((reason, exit)) => Err(CliError::Incomplete { output, reason, exit }),
    }
}

/// Why a committed restore is not shown to be the backup, and its exit code; None when proven.
fn restore_shortfall(report: &RestoreReport, backup_id: &BackupId) -> Option<(String, Exit)> {
    let reason = match report.status {
        RestoreStatus::Restored => return None,
        RestoreStatus::RestoredWithDifferences => format!(
            "the restore of backup `{backup_id}` COMMITTED, but the database does not match the backup's \
             baseline: {} difference(s), listed above. Restore again, or another backup",
            report.proof.as_ref().map_or(0, |p| p.differences.len())
        ),
        RestoreStatus::RestoredUnproven => format!(
            "the restore of backup `{backup_id}` COMMITTED, but its proof could not run ({}): nothing \
             shows the database is what was backed up. Run `autonomy ha backup verify {backup_id}`",
            report
                .proof
                .as_ref()
                .and_then(|p| p.error.as_deref())
                .unwrap_or("no reason given")
        ),
    };
    Some((reason, Exit::RestoreUnproven))
}

/// Why a drill did not prove its backup, and the drill's exit code; None when proven.
fn drill_shortfall(report: &VerifyReport) -> Option<(String, Exit)> {
    match report.outcome {
        DrillOutcome::Proven => None,
        DrillOutcome::Differences => Some((
            format!(
                "backup `{}` does not restore to what it recorded: {} difference(s), listed above",
                report.backup_id,
                report.differences.len()
            ),
            Exit::DIFFERENCES_FOUND,
        )),
        DrillOutcome::NotRun => Some((
            format!(
                "the drill of backup `{}` could not run: {}",
                report.backup_id,
                report.error.as_deref().unwrap_or("no reason given")
            ),
            Exit::DRILL_NOT_RUN,
        )),
    }
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    let config = ServeConfig::validate(args)?;
    crate::config::check_directories(&config)?;
    crate::config::check_reachable(&config.backup_store, &config.backup_dir)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| CliError::Serve(e.into()))?;
    runtime.block_on(crate::server::serve(config)).map_err(CliError::Serve)
}
