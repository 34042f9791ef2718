//! Which backups retention keeps, and why: grandfather-father-son (the newest backup of each of
//! the last N days, ISO weeks and months that have one, in UTC, as restic and Borg count them)
//! and a minimum count of the newest, under protections no rule overrides. Pure: a plan is
//! computed from the inventory, shown (a dry run) or applied by the backup service.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ident::BackupId;

/// How many of each period's newest backups to keep (seed 001's defaults: 7 daily, 4 weekly,
/// 6 monthly), and how many of the newest to keep whatever their period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub minimum: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            daily: 7,
            weekly: 4,
            monthly: 6,
            minimum: 1,
        }
    }
}

/// A completed backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub backup_id: BackupId,
    pub created_at: OffsetDateTime,
    /// Its latest drill proved it restores.
    pub proven: bool,
    /// What is using it now (a drill, a restore), if anything.
    pub in_use: Option<String>,
}

/// Why a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// The newest of its UTC day, one of the last `daily` days with a backup.
    Daily {
        period: String,
    },
    Weekly {
        period: String,
    },
    Monthly {
        period: String,
    },
    /// One of the `minimum` newest.
    Minimum {
        rank: u32,
    },
    /// The newest completed backup: never deleted.
    NewestCompleted,
    /// The newest backup whose latest drill proved it; `only_this` when no rule kept it, so it
    /// stays, lest no proven restore remain.
    NewestProven {
        only_this: bool,
    },
    /// In use (a drill or a restore of it is running).
    InUse {
        by: String,
    },
}

impl Reason {
    /// The reason as the dry run prints it.
    pub fn describe(&self) -> String {
        match self {
            Reason::Daily { period } => format!("daily {period}"),
            Reason::Weekly { period } => format!("weekly {period}"),
            Reason::Monthly { period } => format!("monthly {period}"),
            Reason::Minimum { rank } => format!("minimum (newest #{rank})"),
            Reason::NewestCompleted => "newest completed backup".into(),
            Reason::NewestProven { only_this: false } => "newest proven backup".into(),
            Reason::NewestProven { only_this: true } => {
                "newest proven backup: no rule keeps it, but it is the newest one a drill proved restores, so it stays"
                    .into()
            }
            Reason::InUse { by } => format!("in use by a {by}"),
        }
    }
}

/// One backup's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub backup_id: BackupId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Empty: delete.
    pub kept_by: Vec<Reason>,
}

impl PlanEntry {
    pub fn deletes(&self) -> bool {
        self.kept_by.is_empty()
    }
}

/// Every candidate, newest first, with what keeps it.
pub fn plan(policy: &RetentionPolicy, candidates: &[Candidate]) -> Vec<PlanEntry> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.backup_id.cmp(&a.backup_id))
    });
    let mut entries: Vec<PlanEntry> = sorted
        .iter()
        .map(|c| PlanEntry {
            backup_id: c.backup_id.clone(),
            created_at: c.created_at,
            kept_by: Vec::new(),
        })
        .collect();
    keep_newest_per_period(
        &mut entries,
        policy.daily,
        |t| t.date().to_string(),
        |period| Reason::Daily { period },
    );
    keep_newest_per_period(
        &mut entries,
        policy.weekly,
        |t| {
            let (year, week, _) = t.to_iso_week_date();
            format!("{year}-W{week:02}")
        },
        |period| Reason::Weekly { period },
    );
    keep_newest_per_period(
        &mut entries,
        policy.monthly,
        |t| format!("{}-{:02}", t.year(), u8::from(t.month())),
        |period| Reason::Monthly { period },
    );
    for (rank, entry) in entries.iter_mut().take(policy.minimum as usize).enumerate() {
        entry.kept_by.push(Reason::Minimum { rank: rank as u32 + 1 });
    }
    if let Some(newest) = entries.first_mut() {
        newest.kept_by.push(Reason::NewestCompleted);
    }
    if let Some(index) = sorted.iter().position(|c| c.proven) {
        let only_this = entries[index].kept_by.is_empty();
        entries[index].kept_by.push(Reason::NewestProven { only_this });
    }
    for (entry, candidate) in entries.iter_mut().zip(&sorted) {
        if let Some(by) = &candidate.in_use {
            entry.kept_by.push(Reason::InUse { by: by.clone() });
        }
    }
    entries
}

/// Marks the newest entry of each of the first `count` distinct periods (entries are newest
/// first, so the first entry met in a period is its newest).
fn keep_newest_per_period(
    entries: &mut [PlanEntry],
    count: u32,
    period_of: impl Fn(OffsetDateTime) -> String,
    reason: impl Fn(String) -> Reason,
) {
    let mut seen = BTreeSet::new();
    for entry in entries.iter_mut() {
        if seen.len() == count as usize {
            break;
        }
        let period = period_of(entry.created_at.to_offset(time::UtcOffset::UTC));
        if seen.insert(period.clone()) {
            entry.kept_by.push(reason(period));
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    fn candidate(id: &str, created_at: OffsetDateTime, proven: bool) -> Candidate {
        Candidate {
            backup_id: BackupId::parse(id).unwrap(),
            created_at,
            proven,
            in_use: None,
        }
    }

    fn policy(daily: u32, weekly: u32, monthly: u32) -> RetentionPolicy {
        RetentionPolicy {
            daily,
            weekly,
            monthly,
            minimum: 1,
        }
    }

    fn deleted(plan: &[PlanEntry]) -> Vec<&str> {
        plan.iter()
            .filter(|e| e.deletes())
            .map(|e| e.backup_id.as_str())
            .collect()
    }

    #[test]
    fn each_period_keeps_its_newest_backup() {
        let policy = policy(2, 2, 3);
        let candidates = [
            candidate("d1-late", datetime!(2026-12-01 20:00 UTC), false),
            candidate("d1-early", datetime!(2026-12-01 02:00 UTC), false),
            candidate("d0", datetime!(2026-11-30 02:00 UTC), false),
            // Monday 2026-11-23 opens the previous ISO week.
            candidate("w-prev", datetime!(2026-11-24 02:00 UTC), false),
            candidate("w-older", datetime!(2026-11-17 02:00 UTC), false),
            candidate("oct", datetime!(2026-10-15 02:00 UTC), false),
        ];
        let plan = plan(&policy, &candidates);
        let kept = |id: &str| plan.iter().find(|e| e.backup_id == id).unwrap().kept_by.clone();
        assert!(kept("d1-late").contains(&Reason::Daily {
            period: "2026-12-01".into()
        }));
        assert!(kept("d0").contains(&Reason::Daily {
            period: "2026-11-30".into()
        }));
        // d0 (Monday 30 Nov) opens week 49; w-prev is week 48's newest.
        assert!(kept("w-prev").contains(&Reason::Weekly {
            period: "2026-W48".into()
        }));
        assert!(kept("oct").contains(&Reason::Monthly {
            period: "2026-10".into()
        }));
        assert_eq!(deleted(&plan), vec!["d1-early", "w-older"]);
    }

    #[test]
    fn the_only_proven_backup_stays_though_it_is_the_oldest_and_no_rule_keeps_it() {
        let new = candidate("new", datetime!(2026-12-01 20:00 UTC), false);
        let mid = candidate("mid", datetime!(2026-12-01 10:00 UTC), false);
        let old = candidate("old", datetime!(2026-11-01 10:00 UTC), true);
        let plan = plan(&policy(1, 0, 0), &[new, mid, old]);
        assert_eq!(deleted(&plan), vec!["mid"]);
        let old = plan.iter().find(|e| e.backup_id == "old").unwrap();
        assert_eq!(old.kept_by, vec![Reason::NewestProven { only_this: true }]);
    }

    #[test]
    fn a_backup_in_use_is_kept_whatever_the_rules_say() {
        let policy = policy(0, 0, 0);
        let mut drilled = candidate("drilled", datetime!(2026-11-01 10:00 UTC), false);
        drilled.in_use = Some("drill".into());
        let plan = plan(
            &policy,
            &[candidate("new", datetime!(2026-12-01 20:00 UTC), false), drilled],
        );
        assert_eq!(deleted(&plan), Vec::<&str>::new());
        assert_eq!(plan[1].kept_by, vec![Reason::InUse { by: "drill".into() }]);
    }

    proptest! {
        #[test]
        fn no_policy_deletes_the_newest_the_newest_proven_one_in_use_or_below_the_minimum(
            ages in proptest::collection::vec((0i64..400 * 24, any::<bool>(), any::<bool>()), 1..40),
            daily in 0u32..10, weekly in 0u32..6, monthly in 0u32..8, minimum in 1u32..5,
        ) {
            let now = datetime!(2026-12-01 00:00 UTC);
            let candidates: Vec<Candidate> = ages
                .iter()
                .enumerate()
                .map(|(i, (hours, proven, in_use))| Candidate {
                    backup_id: BackupId::parse(&format!("bk-{i}")).unwrap(),
                    created_at: now - time::Duration::hours(*hours),
                    proven: *proven,
                    in_use: in_use.then(|| "drill".to_owned()),
                })
                .collect();
            let policy = RetentionPolicy { daily, weekly, monthly, minimum };
            let plan = plan(&policy, &candidates);
            prop_assert_eq!(plan.len(), candidates.len());
            prop_assert!(!plan[0].deletes(), "the newest was deleted");
            let kept = plan.iter().filter(|e| !e.deletes()).count();
            prop_assert!(kept >= (minimum as usize).min(candidates.len()));
            let newest_proven = plan.iter().find(|e| candidates.iter().any(|c| c.backup_id == e.backup_id && c.proven));
            if let Some(entry) = newest_proven {
                prop_assert!(!entry.deletes(), "the newest proven backup was deleted");
            }
            for entry in &plan {
                let candidate = candidates.iter().find(|c| c.backup_id == entry.backup_id).unwrap();
                prop_assert!(candidate.in_use.is_none() || !entry.deletes(), "a backup in use was deleted");
            }
        }
    }
}
