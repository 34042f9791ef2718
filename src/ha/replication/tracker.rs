//! Turns samples into the reported view: remembers the standbys it has seen, so one that
//! disconnects is reported as such rather than vanishing, and times how long each has been
//! stuck behind at one write position.

use std::{collections::BTreeMap, time::Instant};

use super::{
    sample::{RawStandby, Sample},
    Health, LagColumns, LagThresholds, StandbyPositions, StandbyStatus,
};

/// A standby seen connected since the node started.
#[derive(Debug, Clone)]
struct Known {
    /// Its application_name (the key may add the slot or address).
    name: String,
    slot_name: Option<String>,
    write_lsn: Option<String>,
    /// Since when it has been behind the primary at `write_lsn` (None when caught up).
    behind_since: Option<Instant>,
}

/// The memory between samples; one per node.
#[derive(Debug, Default)]
pub struct Tracker {
    known: BTreeMap<String, Known>,
}

/// The application_name PostgreSQL's walreceiver uses when primary_conninfo names none.
const DEFAULT_APPLICATION_NAME: &str = "walreceiver";

impl Tracker {
    /// The standbys of one sample taken at `now`, judged against `thresholds`, in name order;
    /// and their worst health (None without standbys).
    pub fn observe(
        &mut self,
        sample: &Sample,
        now: Instant,
        thresholds: LagThresholds,
    ) -> (Vec<StandbyStatus>, Option<Health>) {
        let mut report: BTreeMap<String, StandbyStatus> = BTreeMap::new();
        for raw in sample.standbys.iter().filter(|raw| raw.connected) {
            let name = raw
                .application_name
                .clone()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_owned());
            // Two standbys may share a name (both left at `walreceiver`): the slot tells them
            // apart, else their address; each keeps its own entry and stall timer.
            let mut key = raw
                .slot_name
                .clone()
                .map_or_else(|| name.clone(), |slot| format!("{name}/{slot}"));
            if report.contains_key(&key) {
                key = format!("{key}@{}", raw.positions.client_addr.as_deref().unwrap_or("?"));
            }
            let known = self.known.entry(key.clone()).or_insert(Known {
                name: name.clone(),
                slot_name: None,
                write_lsn: None,
                behind_since: None,
            });
            let behind = raw.unwritten_bytes.is_some_and(|bytes| bytes > 0);
            known.behind_since = match known.behind_since {
                Some(since) if behind && known.write_lsn == raw.positions.write_lsn => Some(since),
                _ if behind => Some(now),
                _ => None,
            };
            known.write_lsn = raw.positions.write_lsn.clone();
            if raw.slot_name.is_some() {
                known.slot_name = raw.slot_name.clone();
            }
            let stalled_ms = known
                .behind_since
                .map_or(0.0, |since| now.saturating_duration_since(since).as_secs_f64() * 1000.0);
            report.insert(key, connected(name, raw, stalled_ms, thresholds));
        }
        // A slot nobody streams from: the standby that used it (if seen), else the slot itself.
        for raw in sample.standbys.iter().filter(|raw| !raw.connected) {
            let slot = raw.slot_name.clone().unwrap_or_default();
            let seen = self
                .known
                .iter()
                .find(|(_, known)| known.slot_name.as_deref() == Some(slot.as_str()));
            let (key, name) = seen.map_or_else(
                || (slot.clone(), slot.clone()),
                |(key, known)| (key.clone(), known.name.clone()),
            );
            report
                .entry(key)
                .or_insert_with(|| StandbyStatus::disconnected(name, Some(slot), raw.unreplayed_bytes));
        }
        for (key, known) in &mut self.known {
            if !report.contains_key(key) {
                known.behind_since = None;
                report.insert(
                    key.clone(),
                    StandbyStatus::disconnected(known.name.clone(), known.slot_name.clone(), None),
                );
            }
        }
        let standbys: Vec<StandbyStatus> = report.into_values().collect();
        let worst = standbys.iter().map(|s| s.health).max();
        (standbys, worst)
    }
}

fn connected(name: String, raw: &RawStandby, stalled_ms: f64, thresholds: LagThresholds) -> StandbyStatus {
    let lag = raw.lag.or_zero();
    let write_lag_ms = lag.write_lag_ms;
    let (health, reason) = match &raw.state {
        // Without pg_read_all_stats every column but the pid is NULL: nothing to judge by.
        None => (
            Health::Alert,
            "pg_stat_replication hides this standby from the node's database role; grant it pg_monitor".to_owned(),
        ),
        // Connected but not streaming yet (startup, catchup, backup): its lag columns are NULL
        // or about to jump, so it is not healthy whatever they say.
        Some(state) if state != "streaming" => {
            let lagging = thresholds.classify(write_lag_ms.max(stalled_ms));
            (
                lagging.max(Health::Degraded),
                format!("state {state}, not streaming yet"),
            )
        }
        Some(_) if stalled_ms > write_lag_ms => {
            let health = thresholds.classify(stalled_ms);
            (
                health,
                format!(
                    "stalled {stalled_ms:.1} ms at write position {}",
                    raw.positions.write_lsn.as_deref().unwrap_or("?")
                ),
            )
        }
        Some(_) => {
            let health = thresholds.classify(write_lag_ms);
            let bound = match health {
                Health::Healthy => format!("<= {} ms", thresholds.healthy_ms),
                Health::Degraded => format!("> {} ms, <= {} ms", thresholds.healthy_ms, thresholds.degraded_ms),
                Health::Alert => format!("> {} ms", thresholds.degraded_ms),
            };
            (health, format!("write lag {write_lag_ms:.1} ms {bound}"))
        }
    };
    StandbyStatus {
        application_name: name,
        slot_name: raw.slot_name.clone(),
        state: raw.state.clone().unwrap_or_else(|| "unknown".into()),
        positions: raw.positions.clone(),
        lag,
        byte_lag: raw.unreplayed_bytes,
        stalled_ms,
        health,
        reason,
    }
}

impl StandbyStatus {
    /// A standby no longer in pg_stat_replication (or whose slot nothing streams from): an alert.
    pub fn disconnected(name: String, slot_name: Option<String>, byte_lag: Option<i64>) -> StandbyStatus {
        StandbyStatus {
            application_name: name,
            reason: match &slot_name {
                Some(slot) => format!("disconnected: nothing streams from slot {slot}"),
                None => "disconnected: no longer in pg_stat_replication".into(),
            },
            slot_name,
            state: "disconnected".into(),
            positions: StandbyPositions::default(),
            lag: LagColumns::default(),
            byte_lag,
            stalled_ms: 0.0,
            health: Health::Alert,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn streaming(name: &str, write_lsn: &str, unwritten: i64, write_lag_ms: Option<f64>) -> RawStandby {
        RawStandby {
            application_name: Some(name.into()),
            slot_name: Some(format!("{name}_slot")),
            state: Some("streaming".into()),
            connected: true,
            positions: StandbyPositions {
                client_addr: Some("127.0.0.1".into()),
                sent_lsn: Some(write_lsn.into()),
                write_lsn: Some(write_lsn.into()),
                flush_lsn: Some(write_lsn.into()),
                replay_lsn: Some(write_lsn.into()),
            },
            lag: LagColumns {
                write_lag_ms,
                flush_lag_ms: write_lag_ms,
                replay_lag_ms: write_lag_ms,
            },
            unwritten_bytes: Some(unwritten),
            unreplayed_bytes: Some(unwritten),
        }
    }

    fn idle_slot(slot: &str) -> RawStandby {
        RawStandby {
            application_name: None,
            slot_name: Some(slot.into()),
            state: None,
            connected: false,
            positions: StandbyPositions::default(),
            lag: LagColumns::default(),
            unwritten_bytes: Some(4096),
            unreplayed_bytes: Some(4096),
        }
    }

    fn sample(standbys: Vec<RawStandby>) -> Sample {
        Sample {
            primary_lsn: Some("0/3000000".into()),
            standbys,
        }
    }

    #[test]
    fn a_caught_up_standby_with_null_lag_is_healthy_at_zero() {
        let mut tracker = Tracker::default();
        let (standbys, health) = tracker.observe(
            &sample(vec![streaming("s1", "0/3000000", 0, None)]),
            Instant::now(),
            LagThresholds::default(),
        );
        assert_eq!(health, Some(Health::Healthy));
        assert_eq!(standbys[0].lag.write_lag_ms, 0.0);
        assert_eq!(standbys[0].state, "streaming");
    }

    #[test]
    fn lag_above_the_degraded_bound_is_an_alert() {
        let mut tracker = Tracker::default();
        let (standbys, health) = tracker.observe(
            &sample(vec![streaming("s1", "0/3000000", 0, Some(150.0))]),
            Instant::now(),
            LagThresholds::default(),
        );
        assert_eq!(health, Some(Health::Alert));
        assert!(
            standbys[0].reason.contains("write lag 150.0 ms > 100 ms"),
            "{}",
            standbys[0].reason
        );
    }

    #[test]
    fn a_standby_that_leaves_is_reported_disconnected_under_its_own_name() {
        let mut tracker = Tracker::default();
        let start = Instant::now();
        tracker.observe(
            &sample(vec![streaming("s1", "0/3000000", 0, None)]),
            start,
            LagThresholds::default(),
        );
        // Its slot remains, idle.
        let (standbys, health) = tracker.observe(&sample(vec![idle_slot("s1_slot")]), start, LagThresholds::default());
        assert_eq!(health, Some(Health::Alert));
        assert_eq!(standbys.len(), 1, "{standbys:#?}");
        assert_eq!(standbys[0].application_name, "s1");
        assert_eq!(standbys[0].state, "disconnected");
        assert_eq!(standbys[0].byte_lag, Some(4096));
        // Without a slot it is still remembered.
        let (standbys, _) = tracker.observe(&sample(vec![]), start, LagThresholds::default());
        assert_eq!(standbys[0].state, "disconnected");
        // And healthy again once it is back.
        let (_, health) = tracker.observe(
            &sample(vec![streaming("s1", "0/3000000", 0, None)]),
            start,
            LagThresholds::default(),
        );
        assert_eq!(health, Some(Health::Healthy));
    }

    #[test]
    fn an_idle_slot_never_used_is_reported_by_its_slot_name() {
        let mut tracker = Tracker::default();
        let (standbys, health) = tracker.observe(
            &sample(vec![idle_slot("spare")]),
            Instant::now(),
            LagThresholds::default(),
        );
        assert_eq!(health, Some(Health::Alert));
        assert_eq!(standbys[0].application_name, "spare");
    }

    #[test]
    fn no_standby_means_no_health() {
        let (standbys, health) = Tracker::default().observe(&sample(vec![]), Instant::now(), LagThresholds::default());
        assert!(standbys.is_empty());
        assert_eq!(health, None);
    }

    #[test]
    fn a_standby_stuck_at_one_write_position_is_timed_although_its_lag_column_is_frozen() {
        let mut tracker = Tracker::default();
        let start = Instant::now();
        let stuck = streaming("s1", "0/3000000", 8192, Some(0.3));
        let (standbys, _) = tracker.observe(&sample(vec![stuck.clone()]), start, LagThresholds::default());
        assert_eq!(standbys[0].stalled_ms, 0.0, "first seen behind now");
        let (standbys, health) = tracker.observe(
            &sample(vec![stuck]),
            start + Duration::from_millis(250),
            LagThresholds::default(),
        );
        assert_eq!(standbys[0].stalled_ms, 250.0);
        assert_eq!(health, Some(Health::Alert), "{}", standbys[0].reason);
        // Progress resets it.
        let (standbys, health) = tracker.observe(
            &sample(vec![streaming("s1", "0/3001000", 4096, Some(0.3))]),
            start + Duration::from_millis(300),
            LagThresholds::default(),
        );
        assert_eq!(standbys[0].stalled_ms, 0.0);
        assert_eq!(health, Some(Health::Healthy));
    }

    #[test]
    fn a_hidden_standby_is_an_alert_that_names_the_missing_grant() {
        let mut raw = streaming("s1", "0/3000000", 0, None);
        raw.state = None;
        let (standbys, health) =
            Tracker::default().observe(&sample(vec![raw]), Instant::now(), LagThresholds::default());
        assert_eq!(health, Some(Health::Alert));
        assert!(standbys[0].reason.contains("pg_monitor"));
    }

    #[test]
    fn two_standbys_with_the_default_name_are_two_entries() {
        let mut first = streaming("walreceiver", "0/3000000", 0, None);
        first.slot_name = Some("a".into());
        let mut second = streaming("walreceiver", "0/2000000", 4096, None);
        second.slot_name = Some("b".into());
        let (standbys, _) =
            Tracker::default().observe(&sample(vec![first, second]), Instant::now(), LagThresholds::default());
        assert_eq!(standbys.len(), 2, "{standbys:#?}");
        assert!(standbys.iter().all(|s| s.application_name == "walreceiver"));
    }

    #[test]
    fn a_standby_still_catching_up_is_not_healthy() {
        let mut raw = streaming("s1", "0/3000000", 0, None);
        raw.state = Some("catchup".into());
        let (standbys, health) =
            Tracker::default().observe(&sample(vec![raw]), Instant::now(), LagThresholds::default());
        assert_eq!(health, Some(Health::Degraded), "{}", standbys[0].reason);
        assert!(standbys[0].reason.contains("catchup"));
    }
}
