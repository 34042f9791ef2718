//! `autonomy ha serve`: wire the parts together, run the lease loop and the API until a signal.

use std::sync::Arc;

use anyhow::Context;
use axum::{
    http::StatusCode,
    middleware,
    routing::{get, post},
    Router,
};
use tokio::sync::watch;

use crate::{
    audit::AuditLog,
    backup::{pgtools::PgTools, repository::LocalRepository, store::BackupStore, BackupService},
    config::ServeConfig,
    config::{LeaseStoreChoice, StoreChoice},
    db::{self, SharedClient},
    ha::{
        etcd::EtcdLeaseStore,
        lease::RowLeaseStore,
        node::run_lease_loop,
        replication::{self, ReplicationMonitor},
        store::{LeaseStore, WriteFence},
        NodeState,
    },
    server::{
        auth::{require_token, ApiToken},
        handlers::{self, AppState, ProtectedWrites},
        rollouts,
    },
};

/// The router: /healthz is open (load balancers), everything under /v1 needs the token.
pub fn router(app: AppState, token: ApiToken) -> Router {
    let api = Router::new()
        .route("/v1/ha/status", get(handlers::status))
        .route(
            "/v1/ha/backups",
            get(handlers::list_backups).post(handlers::create_backup),
        )
        .route("/v1/ha/backups/reindex", post(handlers::reindex_backups))
        .route("/v1/ha/backups/prune", post(handlers::prune_backups))
        .route("/v1/ha/backups/{backup_id}", get(handlers::get_backup))
        .route("/v1/ha/backups/{backup_id}/restore", post(handlers::restore_backup))
        .route("/v1/ha/backups/{backup_id}/verify", post(handlers::verify_backup))
        .route("/v1/ha/schedule", get(handlers::schedule))
        .route("/v1/rollouts", get(rollouts::list).post(rollouts::create))
        .route("/v1/audit/events", get(handlers::audit_events))
        .route("/metrics", get(handlers::metrics))
        .route_layer(middleware::from_fn_with_state(token, require_token));
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .merge(api)
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(axum::extract::DefaultBodyLimit::max(crate::server::error::BODY_LIMIT))
        .layer(middleware::from_fn(crate::server::error::errors_as_json))
        .with_state(app)
}

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    tracing::info!(node_id = %config.node_id, listen = %config.listen, maintenance_mode = config.maintenance_mode, "starting node");
    let audit = Arc::new(AuditLog::open(&config.audit_dir, &config.node_id)?);
    let metrics = metrics_of(&audit);
    let backup_store = open_backup_store(&config)?;
    let tools = PgTools::new(&config.database_url, config.pg_bin_dir.clone()).context("parse --database-url")?;
    migrate(&config).await?;

    // Bind first: the lease row carries the address followers hand out as the leader hint.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("bind --listen {}", config.listen))?;
    let bound = listener.local_addr()?;
    let address = config
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let lease_store = open_lease_store(&config, &address).await?;
    let (state, inbox) = NodeState::new(config.node_id.clone(), config.maintenance_mode);
    let timed = metrics.clone();
    state.on_renew(move |took| timed.observe_renew(took.as_secs_f64()));
    let state = Arc::new(state);
    let mut backups = BackupService::new(
        state.clone(),
        backup_store,
        tools,
        session_for(&config, "api"),
        audit.clone(),
        lease_store.write_fence(),
        config.backup_keys.clone(),
    );
    backups.retention = config.retention;
    let backups = Arc::new(backups);
    settle_backups_after_start(&backups).await;
    seed_metrics(&metrics, &backups).await;
    // One session per kind of request, so a long backup step never delays protected writes.
    // (Status requests read memory only; the lease loop has its own session.)
    let writes_db = session_for(&config, "writes");

    if config.skip_fencing {
        announce_unfenced(&config, &audit);
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (audit_done_tx, audit_done_rx) = watch::channel(false);
    let shipper = tokio::spawn(crate::audit::ship::run(
        audit.clone(),
        config.database_url.clone(),
        config.node_id.to_string(),
        audit_done_rx,
    ));
    let lease_loop = match lease_store {
        LeaseStores::Row(store) => tokio::spawn(run_lease_loop(
            store,
            address,
            state.clone(),
            inbox,
            audit,
            config.lease,
        )),
        LeaseStores::Etcd(store) => tokio::spawn(run_lease_loop(
            store,
            address,
            state.clone(),
            inbox,
            audit,
            config.lease,
        )),
    };

    let lease_store_health = start_lease_store_probe(&config, shutdown_rx.clone());
    let app = AppState {
        replication: start_replication_sampler(&config, shutdown_rx.clone()),
        schedule: start_scheduler(&config, &backups, shutdown_rx.clone()),
        node: state,
        backups,
        metrics,
        audit: Arc::new(crate::audit::shared::SharedAudit {
            dir: config.audit_dir.clone(),
            database_url: config.database_url.clone(),
            node_id: config.node_id.to_string(),
        }),
        writes: ProtectedWrites {
            db: writes_db,
            skip_fencing: config.skip_fencing,
        },
        lease_store: lease_store_health,
    };
    // The test fixture and operators read this line to learn the bound port (with --listen :0).
    tracing::info!(addr = %bound, "listening");
    // On a signal the node steps down and releases the lease first, while the API still
    // answers (as a non-leader), so a successor takes over before this process is gone.
    let resigning = app.node.clone();
    let stop = async move {
        shutdown_signal().await;
        // Refuse protected writes from this instant, even if the lease loop is mid-round, and
        // have the loop release the lease.
        resigning.resign();
        let _ = shutdown_tx.send(true);
        let _ = lease_loop.await;
        // The lease loop's last events (the release) shipped too, if the database answers soon.
        let _ = audit_done_tx.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), shipper).await;
    };
    axum::serve(listener, router(app, ApiToken(Arc::new(config.api_token.clone()))))
        .with_graceful_shutdown(stop)
        .await
        .context("serve the API")?;
    tracing::info!("node stopped");
    Ok(())
}

/// The lease store the node was configured with, opened.
enum LeaseStores {
    Row(RowLeaseStore),
    Etcd(EtcdLeaseStore),
}

impl LeaseStores {
    fn write_fence(&self) -> WriteFence {
        match self {
            LeaseStores::Row(store) => store.write_fence(),
            LeaseStores::Etcd(store) => store.write_fence(),
        }
    }
}

/// The row lease, or the etcd lease after the cluster's checks (one cluster, the TTL granted as
/// asked, the prefix this database's): a failed check is a configuration error (exit 2).
async fn open_lease_store(config: &ServeConfig, address: &str) -> anyhow::Result<LeaseStores> {
    let settings = match &config.lease_store {
        LeaseStoreChoice::Row => {
            tracing::info!(
                ttl_ms = config.lease.ttl.as_millis() as u64,
                "the lease is a row in the database"
            );
            return Ok(LeaseStores::Row(RowLeaseStore::new(
                &config.database_url,
                &config.node_id,
                address,
                config.lease.ttl,
            )));
        }
        LeaseStoreChoice::Etcd(settings) => settings,
    };
    let client = db::connect(&config.database_url, config.node_id.as_str(), "etcd-check")
        .await
        .context("connect to the database named by --database-url")?;
    let token = crate::ha::fence::database_token(&client).await?;
    drop(client);
    let facts = crate::ha::etcd::check_cluster(settings, config.lease.ttl, &token)
        .await
        .map_err(crate::config::ConfigError::from)?;
    tracing::info!(
        endpoints = %settings.endpoints.join(","),
        prefix = %settings.prefix,
        cluster_id = %format!("{:x}", facts.cluster_id),
        ttl_ms = config.lease.ttl.as_millis() as u64,
        "the lease is on etcd"
    );
    Ok(LeaseStores::Etcd(EtcdLeaseStore::new(
        settings.clone(),
        facts.cluster_id,
        &config.database_url,
        &config.node_id,
        address,
        config.lease.ttl,
    )))
}

/// Creates or updates the autonomy_ha schema, on a session of its own.
async fn migrate(config: &ServeConfig) -> anyhow::Result<()> {
    let mut client = db::connect(&config.database_url, config.node_id.as_str(), "migrate")
        .await
        .context("connect to the database named by --database-url")?;
    db::migrate(&mut client).await.context("create the autonomy_ha schema")
}

/// `--unsafe-skip-fencing` is loud: an error in the log and an event in the audit.
fn announce_unfenced(config: &ServeConfig, audit: &AuditLog) {
    tracing::error!("--unsafe-skip-fencing is set: protected writes are NOT fenced; this is test sabotage only");
    let _ = audit.record(
        crate::audit::EventType::FencingDisabled,
        serde_json::json!({ "node_id": config.node_id }),
    );
}

/// A shared session of this node for one kind of request.
fn session_for(config: &ServeConfig, purpose: &'static str) -> Arc<SharedClient> {
    Arc::new(SharedClient::new(
        config.database_url.clone(),
        config.node_id.clone(),
        purpose,
    ))
}

/// The node's metrics, counted from `audit`'s events, so metrics and events cannot disagree.
fn metrics_of(audit: &AuditLog) -> Arc<crate::metrics::Metrics> {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let counted = metrics.clone();
    audit.on_record(move |event| counted.observe(event));
    metrics
}

/// The lease store's health for the status; etcd's endpoints probed until `shutdown`.
fn start_lease_store_probe(
    config: &ServeConfig,
    shutdown: watch::Receiver<bool>,
) -> Arc<crate::ha::store_health::LeaseStoreHealth> {
    use crate::ha::store_health::LeaseStoreHealth;
    match &config.lease_store {
        LeaseStoreChoice::Row => Arc::new(LeaseStoreHealth::new("row", None)),
        LeaseStoreChoice::Etcd(settings) => {
            let health = Arc::new(LeaseStoreHealth::new("etcd", Some(settings.prefix.clone())));
            let (probing, settings) = (health.clone(), settings.clone());
            tokio::spawn(async move { probing.probe_etcd(settings, shutdown).await });
            health
        }
    }
}

/// The monitor of the standbys, sampled on a session of its own until `shutdown`.
fn start_replication_sampler(config: &ServeConfig, shutdown: watch::Receiver<bool>) -> Arc<ReplicationMonitor> {
    let replication = Arc::new(ReplicationMonitor::new(config.replication.lag_thresholds));
    tokio::spawn(replication::run_sampler(
        config.database_url.clone(),
        config.node_id.clone(),
        replication.clone(),
        config.replication.poll_interval,
        shutdown,
    ));
    replication
}

/// The schedules' driver, running until `shutdown` when any schedule is set (the API's
/// `GET /v1/ha/schedule` answers either way).
fn start_scheduler(
    config: &ServeConfig,
    backups: &Arc<BackupService>,
    shutdown: watch::Receiver<bool>,
) -> Arc<crate::backup::schedule::Scheduler> {
    let scheduler = Arc::new(crate::backup::schedule::Scheduler::new(
        config.schedules.clone(),
        backups.clone(),
        session_for(config, "schedule"),
    ));
    if config.schedules.is_empty() {
        tracing::info!("no schedule: backups and drills run only when asked for");
    } else {
        let expression = |kind| config.schedules.of(kind).map_or("none", |c| c.expression());
        tracing::info!(
            backup = expression(crate::api::ScheduleKind::Backup),
            verify = expression(crate::api::ScheduleKind::Verify),
            timezone = %config.schedules.timezone,
            grace_s = config.schedules.grace.as_secs(),
            "schedules on (run by the leader)"
        );
        tokio::spawn(scheduler.clone().run(shutdown));
    }
    scheduler
}

/// The configured backup store, opened, and a log line saying whether backups are encrypted.
fn open_backup_store(config: &ServeConfig) -> anyhow::Result<Arc<dyn BackupStore>> {
    let store: Arc<dyn BackupStore> = match &config.backup_store {
        StoreChoice::Local => Arc::new(LocalRepository::open(&config.backup_dir)?),
        StoreChoice::S3(settings) => Arc::new(crate::backup::s3::S3Store::open(settings, &config.backup_dir)?),
    };
    match (&config.backup_keys.recipients, &config.backup_keys.decryption) {
        (Some(recipients), key) => tracing::info!(
            recipients = %recipients.fingerprints().join(","),
            decrypts_with = key.as_ref().map_or("none", |key| key.fingerprint.as_str()),
            "backups are encrypted (OpenPGP)"
        ),
        (None, _) => tracing::info!("backups are not encrypted (no --backup-encrypt-to or --backup-decrypt-key)"),
    }
    Ok(store)
}

/// The last successful backup and the last proven drill, from the inventory: a restarted node's
/// timestamps must not read as "never" (BackupTooOld would fire).
async fn seed_metrics(metrics: &crate::metrics::Metrics, backups: &BackupService) {
    let records = match backups.records().await {
        Ok(records) => records,
        Err(error) => {
            tracing::warn!(%error, "the metrics' last-backup timestamps start empty: the inventory could not be read");
            return;
        }
    };
    let completed = records
        .iter()
        .filter(|r| r.status == crate::backup::BackupStatus::Completed);
    let last_success = completed
        .clone()
        .filter_map(|r| Some((r.completed_at?, r.size_bytes.unwrap_or(0))))
        .max_by_key(|(at, _)| *at);
    let last_proven = completed
        .filter(|r| r.last_verify_outcome.as_deref() == Some("proven"))
        .filter_map(|r| r.last_verified_at)
        .max();
    metrics.seed_timestamps(last_success, last_proven);
}

/// This node has just started: nothing of its own runs, so what it left running died with its
/// previous process. Indexes manifests the inventory lacks, then records what was interrupted.
async fn settle_backups_after_start(backups: &BackupService) {
    match backups.rebuild_inventory().await {
        Ok(0) => {}
        Ok(added) => tracing::info!(added, "rebuilt inventory rows from manifests"),
        Err(error) => tracing::warn!(%error, "could not rebuild the inventory from manifests"),
    }
    backups.reconcile_interrupted(None).await;
    backups.reconcile_restores().await;
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown requested");
}
