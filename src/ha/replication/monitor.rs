//! The sampler task and the latest view it leaves for status requests to read.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_postgres::Client;

use super::{sample, LagThresholds, ReplicationSample, ReplicationView, Tracker};
use crate::db;
use crate::ident::NodeId;

/// The latest replication view; status requests read it without touching the database.
#[derive(Debug)]
pub struct ReplicationMonitor {
    thresholds: LagThresholds,
    view: Mutex<ReplicationView>,
}

impl ReplicationMonitor {
    pub fn new(thresholds: LagThresholds) -> Self {
        Self {
            thresholds,
            view: Mutex::new(ReplicationView {
                sample: ReplicationSample {
                    thresholds: Some(thresholds),
                    ..ReplicationSample::default()
                },
                ..ReplicationView::default()
            }),
        }
    }

    pub fn view(&self) -> ReplicationView {
        self.view
            .lock()
            .expect("the replication view lock is never poisoned")
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut ReplicationView)) {
        change(&mut self.view.lock().expect("the replication view lock is never poisoned"));
    }
}

/// Samples every `interval` on a session of its own until `shutdown`. A failed sample keeps the
/// last standbys (their `sampled_at` ages) and records the error; the next round reconnects.
pub async fn run_sampler(
    database_url: String,
    node_id: NodeId,
    monitor: std::sync::Arc<ReplicationMonitor>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tracker = Tracker::default();
    let mut session: Option<Client> = None;
    // A sample that does not answer within this is a failure (a cut-off database).
    let timeout = interval.max(Duration::from_millis(500));
    loop {
        let outcome = tokio::time::timeout(timeout, async {
            if session.is_none() {
                session = Some(db::connect(&database_url, node_id.as_str(), "replication").await?);
            }
            let client = session.as_ref().expect("connected just above");
            sample::read(client).await
        })
        .await;
        match outcome {
            Ok(Ok(sample)) => {
                let (standbys, health) = tracker.observe(&sample, Instant::now(), monitor.thresholds);
                monitor.update(|view| {
                    view.sample.sampled_at = Some(OffsetDateTime::now_utc());
                    view.sample.primary_lsn = sample.primary_lsn;
                    view.standbys = standbys;
                    view.health = health;
                    view.sample.error = None;
                });
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "replication sample failed");
                session = None;
                monitor.update(|view| view.unsampled(error.to_string()));
            }
            Err(_) => {
                session = None;
                let error = format!("no replication sample within {} ms", timeout.as_millis());
                monitor.update(|view| view.unsampled(error));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => break,
        }
    }
}
