//! The schedule flags (`--backup-schedule`, `--verify-schedule`, their zone and grace),
//! validated into the node's schedules.

use std::time::Duration;

use clap::Args;

use super::ConfigError;
use crate::backup::schedule::{calendar, Calendar, Schedules, DEFAULT_GRACE};

#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// Take a backup (then apply retention) at each time this cron expression names, on the
    /// leader: five fields (`0 2 * * *`: 02:00 daily) or six with seconds first.
    #[arg(long, env = "AUTONOMY_BACKUP_SCHEDULE")]
    pub backup_schedule: Option<String>,
    /// Run a restore drill of the newest backup at each time this cron expression names, on
    /// the leader (`0 4 * * *`: 04:00 daily).
    #[arg(long, env = "AUTONOMY_VERIFY_SCHEDULE")]
    pub verify_schedule: Option<String>,
    /// The time zone the schedules are read in (an IANA name) [default: UTC].
    #[arg(long, env = "AUTONOMY_SCHEDULE_TIMEZONE")]
    pub schedule_timezone: Option<String>,
    /// How many seconds after its time a slot that no leader could run still runs once one
    /// can (1..=604800) [default: 3600]. Older missed slots are reported, not run.
    #[arg(long, env = "AUTONOMY_SCHEDULE_GRACE_S", allow_negative_numbers = true)]
    pub schedule_grace_s: Option<i64>,
}

impl ScheduleArgs {
    /// The schedules. `can_decrypt` is false when backups are encrypted but the node holds no
    /// key to open them: every scheduled drill would fail, so such a schedule is refused.
    pub fn validate(&self, can_decrypt: bool) -> Result<Schedules, ConfigError> {
        let timezone = self.schedule_timezone.clone().unwrap_or_else(|| "UTC".into());
        let zone = calendar::zone_named(&timezone).map_err(|reason| ConfigError::Schedule {
            flag: "--schedule-timezone",
            reason,
        })?;
        let grace = match self.schedule_grace_s {
            None => DEFAULT_GRACE,
            Some(seconds @ 1..=604_800) => Duration::from_secs(seconds as u64),
            Some(seconds) => return Err(ConfigError::ScheduleGrace(seconds)),
        };
        let parse = |flag: &'static str, expression: &Option<String>| {
            expression
                .as_deref()
                .map(|expression| {
                    Calendar::parse(expression, zone.clone()).map_err(|reason| ConfigError::Schedule { flag, reason })
                })
                .transpose()
        };
        let schedules = Schedules {
            timezone,
            grace,
            backup: parse("--backup-schedule", &self.backup_schedule)?,
            verify: parse("--verify-schedule", &self.verify_schedule)?,
        };
        if schedules.is_empty() {
            let stray = [
                ("--schedule-timezone", self.schedule_timezone.is_some()),
                ("--schedule-grace-s", self.schedule_grace_s.is_some()),
            ];
            if let Some((flag, _)) = stray.into_iter().find(|(_, set)| *set) {
                return Err(ConfigError::ScheduleWithoutSchedule(flag));
            }
        }
        if schedules.verify.is_some() && !can_decrypt {
            return Err(ConfigError::VerifyScheduleWithoutKey);
        }
        Ok(schedules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(backup: Option<&str>, verify: Option<&str>, zone: Option<&str>, grace: Option<i64>) -> ScheduleArgs {
        ScheduleArgs {
            backup_schedule: backup.map(str::to_owned),
            verify_schedule: verify.map(str::to_owned),
            schedule_timezone: zone.map(str::to_owned),
            schedule_grace_s: grace,
        }
    }

    #[test]
    fn no_flag_means_no_schedule() {
        let schedules = args(None, None, None, None).validate(true).unwrap();
        assert!(schedules.is_empty());
        assert_eq!(schedules.grace, DEFAULT_GRACE);
    }

    #[test]
    fn each_bad_value_is_named_with_its_flag() {
        let cases = [
            (
                args(Some("0 25 * * *"), None, None, None),
                "--backup-schedule",
                "0 25 * * *",
            ),
            (args(None, Some("nightly"), None, None), "--verify-schedule", "nightly"),
            (
                args(Some("0 2 * * *"), None, Some("Europe/Atlantis"), None),
                "--schedule-timezone",
                "Europe/Atlantis",
            ),
            (args(Some("0 2 * * *"), None, None, Some(0)), "--schedule-grace-s", "0"),
            (
                args(Some("0 2 * * *"), None, None, Some(-5)),
                "--schedule-grace-s",
                "-5",
            ),
            (
                args(None, None, Some("UTC"), None),
                "--schedule-timezone",
                "no schedule",
            ),
        ];
        for (given, flag, value) in cases {
            let error = given.validate(true).unwrap_err().to_string();
            assert!(error.contains(flag) && error.contains(value), "{error}");
        }
        let error = args(None, Some("0 4 * * *"), None, None).validate(false).unwrap_err();
        assert!(error.to_string().contains("--backup-decrypt-key"), "{error}");
    }
}
