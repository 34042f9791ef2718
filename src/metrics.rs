//! `GET /metrics`: the node's counters and gauges in the OpenMetrics text format, with the
//! `prometheus-client` crate. Counters and histograms follow the audit trail (every backup,
//! drill, restore, acquisition, step-down and quorum loss is an audit event first, so the two
//! can never disagree); gauges are read from the node's state at each scrape, from memory,
//! never waiting on the database.

use std::sync::{atomic::AtomicU64, Mutex};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};
use time::OffsetDateTime;

use crate::{
    api::{Role, StatusReport},
    audit::{AuditEvent, EventType},
    ha::replication::ReplicationView,
};

/// What a labelled counter counts by.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotOutcome {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepDown {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Standby {
    standby: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the node exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    // Backups (counted from ha.backup.created / failed / interrupted).
    backups: Family<Outcome, Counter>,
    backup_seconds: Histogram,
    backup_size_bytes: Gauge,
    last_backup_success: FloatGauge,
    // Drills (ha.backup.verified) and restores (ha.backup.restored).
    drills: Family<Outcome, Counter>,
    drill_rto_seconds: Histogram,
    last_proven_restore: FloatGauge,
    restores: Family<Outcome, Counter>,
    restore_seconds: Histogram,
    // Leadership and quorum: gauges read at each scrape, counters from the election's events.
    leader: Gauge,
    epoch: Gauge,
    acquisitions: Counter,
    step_downs: Family<StepDown, Counter>,
    quorum_losses: Counter,
    database_reachable: Gauge,
    /// Read from the replication monitor's latest sample at each scrape.
    replication_write_lag: Family<Standby, FloatGauge>,
    /// Slots that did not run: missed (ha.schedule.slots_missed counts them) or interrupted.
    missed_slots: Counter,
    /// Slots that ran, by schedule and outcome (ha.schedule.slot_finished).
    slots: Family<SlotOutcome, Counter>,
    /// Observed by the lease loop around each renewal.
    renew_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self {
            registry: Mutex::new(Registry::default()),
            backups: Family::default(),
            backup_seconds: Histogram::new(exponential_buckets(0.5, 2.0, 14)),
            backup_size_bytes: Gauge::default(),
            last_backup_success: FloatGauge::default(),
            drills: Family::default(),
            drill_rto_seconds: Histogram::new(exponential_buckets(0.5, 2.0, 14)),
            last_proven_restore: FloatGauge::default(),
            restores: Family::default(),
            restore_seconds: Histogram::new(exponential_buckets(0.5, 2.0, 14)),
            leader: Gauge::default(),
            epoch: Gauge::default(),
            acquisitions: Counter::default(),
            step_downs: Family::default(),
            quorum_losses: Counter::default(),
            database_reachable: Gauge::default(),
            replication_write_lag: Family::default(),
            missed_slots: Counter::default(),
            slots: Family::default(),
            renew_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
        };
        metrics.register_all();
        // Every outcome exists at 0 from the start: a counter series born at 1 reads to
        // Prometheus's increase() as no increase, and the first failure would go unalerted.
        for outcome in ["success", "failure"] {
            let _ = metrics.backups.get_or_create(&Outcome {
                outcome: outcome.into(),
            });
        }
        for outcome in ["proven", "differences", "not_run"] {
            let _ = metrics.drills.get_or_create(&Outcome {
                outcome: outcome.into(),
            });
        }
        for kind in crate::api::ScheduleKind::ALL {
            for outcome in ["succeeded", "failed", "skipped", "interrupted"] {
                let _ = metrics.slots.get_or_create(&SlotOutcome {
                    kind: kind.as_str().into(),
                    outcome: outcome.into(),
                });
            }
        }
        metrics
    }

    fn register_all(&self) {
        let mut r = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        r.register(
            "autonomy_backups",
            "Backups finished, by outcome (success, failure)",
            self.backups.clone(),
        );
        r.register(
            "autonomy_backup_duration_seconds",
            "How long successful backups took",
            self.backup_seconds.clone(),
        );
        r.register(
            "autonomy_backup_size_bytes",
            "Stored size of the last successful backup",
            self.backup_size_bytes.clone(),
        );
        r.register(
            "autonomy_backup_last_success_timestamp_seconds",
            "When the last backup succeeded (Unix time; 0: none since the inventory was read)",
            self.last_backup_success.clone(),
        );
        r.register(
            "autonomy_drills",
            "Restore drills (ha backup verify), by outcome (proven, differences, not_run)",
            self.drills.clone(),
        );
        r.register(
            "autonomy_drill_rto_seconds",
            "What restoring took in each drill that restored (its RTO)",
            self.drill_rto_seconds.clone(),
        );
        r.register(
            "autonomy_last_proven_restore_timestamp_seconds",
            "When a drill last proved a backup restores (Unix time; 0: never)",
            self.last_proven_restore.clone(),
        );
        r.register(
            "autonomy_restores",
            "Restores committed, by status",
            self.restores.clone(),
        );
        r.register(
            "autonomy_restore_duration_seconds",
            "How long committed restores took",
            self.restore_seconds.clone(),
        );
        r.register(
            "autonomy_leader",
            "1 while this node leads, else 0",
            self.leader.clone(),
        );
        r.register(
            "autonomy_epoch",
            "The lease epoch this node last saw",
            self.epoch.clone(),
        );
        r.register(
            "autonomy_leader_acquisitions",
            "Times this node took the lease",
            self.acquisitions.clone(),
        );
        r.register(
            "autonomy_leader_step_downs",
            "Times this node stopped leading, by reason",
            self.step_downs.clone(),
        );
        r.register(
            "autonomy_quorum_losses",
            "Times this node lost the database",
            self.quorum_losses.clone(),
        );
        r.register(
            "autonomy_database_reachable",
            "1 while the node reaches its database (quorum), else 0",
            self.database_reachable.clone(),
        );
        r.register(
            "autonomy_replication_write_lag_seconds",
            "Each standby's write lag, from the leader's latest sample",
            self.replication_write_lag.clone(),
        );
        r.register(
            "autonomy_schedule_missed_slots",
            "Scheduled slots that did not run: no leader ran them in time, or their leader was lost mid-run too long ago",
            self.missed_slots.clone(),
        );
        r.register(
            "autonomy_schedule_slots",
            "Scheduled slots that ran, by schedule (backup, verify) and outcome (succeeded, failed, skipped, interrupted)",
            self.slots.clone(),
        );
        r.register(
            "autonomy_lease_renew_duration_seconds",
            "How long each lease renewal took",
            self.renew_seconds.clone(),
        );
    }

    /// Counts what an audit event says happened.
    pub fn observe(&self, event: &AuditEvent) {
        let details = &event.details;
        let seconds = |field: &str| details[field].as_f64().map(|ms| ms / 1000.0);
        let outcome = |field: &str| Outcome {
            outcome: details[field].as_str().unwrap_or("unknown").to_owned(),
        };
        let at = event.time.unix_timestamp_nanos() as f64 / 1e9;
        let Some(kind) = EventType::parse(&event.event_type) else {
            return;
        };
        match kind {
            EventType::BackupCreated => {
                self.backups
                    .get_or_create(&Outcome {
                        outcome: "success".into(),
                    })
                    .inc();
                if let Some(s) = seconds("duration_ms") {
                    self.backup_seconds.observe(s);
                }
                self.backup_size_bytes.set(details["size_bytes"].as_i64().unwrap_or(0));
                self.last_backup_success.set(at);
            }
            EventType::BackupFailed | EventType::BackupInterrupted => {
                self.backups
                    .get_or_create(&Outcome {
                        outcome: "failure".into(),
                    })
                    .inc();
            }
            EventType::BackupVerified => {
                let found = outcome("outcome");
                if let Some(s) = seconds("rto_ms") {
                    self.drill_rto_seconds.observe(s);
                }
                if found.outcome == "proven" {
                    self.last_proven_restore.set(at);
                }
                self.drills.get_or_create(&found).inc();
            }
            EventType::Restored => {
                self.restores.get_or_create(&outcome("status")).inc();
                if let Some(s) = seconds("restore_ms") {
                    self.restore_seconds.observe(s);
                }
            }
            EventType::LeaderAcquired => {
                self.acquisitions.inc();
            }
            EventType::LeaderSteppedDown => {
                let reason = details["reason"].as_str().unwrap_or("unknown").to_owned();
                self.step_downs.get_or_create(&StepDown { reason }).inc();
            }
            EventType::QuorumLost => {
                self.quorum_losses.inc();
            }
            EventType::ScheduleSlotsMissed => {
                self.missed_slots.inc_by(details["count"].as_u64().unwrap_or(1));
            }
            EventType::ScheduleSlotFinished => {
                let slot = SlotOutcome {
                    kind: details["kind"].as_str().unwrap_or("unknown").to_owned(),
                    outcome: details["outcome"].as_str().unwrap_or("unknown").to_owned(),
                };
                if slot.outcome == "interrupted" {
                    self.missed_slots.inc();
                }
                self.slots.get_or_create(&slot).inc();
            }
            _ => {}
        }
    }

    /// The last success and the last proven drill as the inventory recorded them, for a node
    /// that just started (its counters start at zero; these timestamps must not).
    pub fn seed_timestamps(&self, last_success: Option<(OffsetDateTime, u64)>, last_proven: Option<OffsetDateTime>) {
        if let Some((at, size)) = last_success {
            self.last_backup_success.set(at.unix_timestamp() as f64);
            self.backup_size_bytes.set(size as i64);
        }
        if let Some(at) = last_proven {
            self.last_proven_restore.set(at.unix_timestamp() as f64);
        }
    }

    /// One lease renewal's round trip.
    pub fn observe_renew(&self, seconds: f64) {
        self.renew_seconds.observe(seconds);
    }

    /// The exposition, with the gauges read from `status` and `replication` now.
    pub fn render(&self, status: &StatusReport, replication: &ReplicationView) -> String {
        self.leader.set(i64::from(status.role == Role::Leader));
        self.epoch.set(status.epoch);
        self.database_reachable.set(i64::from(status.db_reachable));
        self.replication_write_lag.clear();
        for standby in &replication.standbys {
            let label = Standby {
                standby: standby.application_name.clone(),
            };
            self.replication_write_lag
                .get_or_create(&label)
                .set(standby.lag.write_lag_ms / 1000.0);
        }
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String does not fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: EventType, details: serde_json::Value) -> AuditEvent {
        AuditEvent {
            id: "ev-1".into(),
            time: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            event_type: event_type.as_str().into(),
            node_id: "n1".into(),
            details,
        }
    }

    #[test]
    fn events_become_counters_and_timestamps() {
        let metrics = Metrics::new();
        metrics.observe(&event(
            EventType::BackupCreated,
            serde_json::json!({"duration_ms": 1500, "size_bytes": 4096}),
        ));
        metrics.observe(&event(EventType::BackupFailed, serde_json::json!({})));
        metrics.observe(&event(
            EventType::BackupVerified,
            serde_json::json!({"outcome": "proven", "rto_ms": 2000}),
        ));
        metrics.observe(&event(
            EventType::ScheduleSlotsMissed,
            serde_json::json!({"kind": "backup", "count": 3}),
        ));
        metrics.observe(&event(
            EventType::ScheduleSlotFinished,
            serde_json::json!({"kind": "backup", "outcome": "interrupted"}),
        ));
        metrics.observe(&event(
            EventType::ScheduleSlotFinished,
            serde_json::json!({"kind": "verify", "outcome": "succeeded"}),
        ));
        metrics.observe(&event(
            EventType::LeaderSteppedDown,
            serde_json::json!({"reason": "renew refused"}),
        ));
        let (state, _inbox) = crate::ha::NodeState::new(crate::ident::NodeId::parse("n1").unwrap(), false);
        let text = metrics.render(&state.report(false), &ReplicationView::default());
        for line in [
            "autonomy_backups_total{outcome=\"success\"} 1",
            "autonomy_backups_total{outcome=\"failure\"} 1",
            "autonomy_backup_size_bytes 4096",
            "autonomy_backup_last_success_timestamp_seconds 1700000000.0",
            "autonomy_drills_total{outcome=\"proven\"} 1",
            "autonomy_last_proven_restore_timestamp_seconds 1700000000.0",
            "autonomy_leader_step_downs_total{reason=\"renew refused\"} 1",
            "autonomy_leader 0",
            "autonomy_schedule_missed_slots_total 4",
            "autonomy_schedule_slots_total{kind=\"verify\",outcome=\"succeeded\"} 1",
            "autonomy_schedule_slots_total{kind=\"backup\",outcome=\"failed\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(line), "`{line}` is not in:\n{text}");
        }
    }
}
