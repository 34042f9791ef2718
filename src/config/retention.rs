//! The retention flags (`ha backup prune`), validated into a policy.

use clap::Args;

use super::ConfigError;
use crate::backup::retention::RetentionPolicy;

/// Grandfather-father-son counts and the minimum, seed 001's defaults.
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Retention (`ha backup prune`): keep the newest backup of each of the last N UTC days
    /// that have one (0..=3660).
    #[arg(long, env = "AUTONOMY_RETAIN_DAILY", default_value_t = 7)]
    pub retain_daily: u32,
    /// ... of each of the last N ISO weeks that have one (0..=520).
    #[arg(long, env = "AUTONOMY_RETAIN_WEEKLY", default_value_t = 4)]
    pub retain_weekly: u32,
    /// ... of each of the last N months that have one (0..=1200).
    #[arg(long, env = "AUTONOMY_RETAIN_MONTHLY", default_value_t = 6)]
    pub retain_monthly: u32,
    /// ... and the N newest backups whatever their dates (1..=1000).
    #[arg(long, env = "AUTONOMY_RETAIN_MIN", default_value_t = 1)]
    pub retain_min: u32,
}

impl RetentionArgs {
    /// The policy, each count in its range.
    pub fn validate(&self) -> Result<RetentionPolicy, ConfigError> {
        let checks = [
            ("--retain-daily", self.retain_daily, 0..=3660, "0..=3660 (default 7)"),
            ("--retain-weekly", self.retain_weekly, 0..=520, "0..=520 (default 4)"),
            (
                "--retain-monthly",
                self.retain_monthly,
                0..=1200,
                "0..=1200 (default 6)",
            ),
            ("--retain-min", self.retain_min, 1..=1000, "1..=1000 (default 1)"),
        ];
        for (flag, value, allowed, range) in checks {
            if !allowed.contains(&value) {
                return Err(ConfigError::Retention { flag, value, range });
            }
        }
        Ok(RetentionPolicy {
            daily: self.retain_daily,
            weekly: self.retain_weekly,
            monthly: self.retain_monthly,
            minimum: self.retain_min,
        })
    }
}
