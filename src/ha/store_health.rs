//! The lease store as the status shows it: which store, and for etcd each endpoint's health,
//! probed in the background so a status request never waits on etcd.

use std::{sync::Mutex, time::Duration};

use tokio::sync::watch;

use crate::{api::LeaseStoreStatus, ha::etcd::EtcdSettings};

/// How often the etcd endpoints are probed.
const PROBE_EVERY: Duration = Duration::from_secs(2);

pub struct LeaseStoreHealth {
    view: Mutex<LeaseStoreStatus>,
}

impl LeaseStoreHealth {
    pub fn new(kind: &str, prefix: Option<String>) -> Self {
        Self {
            view: Mutex::new(LeaseStoreStatus {
                kind: kind.to_owned(),
                prefix,
                ..LeaseStoreStatus::default()
            }),
        }
    }

    pub fn view(&self) -> LeaseStoreStatus {
        self.view
            .lock()
            .expect("the lease store view is never poisoned")
            .clone()
    }

    /// Probes every etcd endpoint until `shutdown`, publishing each round.
    pub async fn probe_etcd(&self, settings: EtcdSettings, mut shutdown: watch::Receiver<bool>) {
        loop {
            let endpoints = crate::ha::etcd::endpoint_health(&settings).await;
            {
                let mut view = self.view.lock().expect("the lease store view is never poisoned");
                view.endpoints = endpoints;
                view.checked_at = Some(time::OffsetDateTime::now_utc());
            }
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
