//! Which slots are due, decided without I/O: given the newest slot already recorded and the
//! time now, the one slot to run (the newest, if still within the grace) and the ones to report
//! as missed, each with its reason.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::calendar::Calendar;

/// How many missed slots one catch-up lists one by one; beyond that it only counts them.
pub const LISTED_MISSED: usize = 100;
/// How far back one catch-up counts missed slots (an every-second schedule after a week away
/// is 604,800 slots; a count that large says enough).
pub const COUNTED_MISSED: u64 = 100_000;

/// Why a slot did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// No leader could run it until it was older than the grace.
    PastGrace,
    /// A newer slot was due too when a leader could run them; only the newest runs.
    Superseded,
}

impl MissReason {
    pub fn describe(self, grace: Duration) -> String {
        match self {
            MissReason::PastGrace => format!(
                "no leader could run it within the grace ({} s) after its time",
                grace.as_secs()
            ),
            MissReason::Superseded => {
                "a newer slot was also due when a leader could run it; only the newest runs".to_owned()
            }
        }
    }
}

/// What is due now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// The slot to run now.
    pub run: Option<OffsetDateTime>,
    /// Slots that will never run, newest first, at most [`LISTED_MISSED`].
    pub missed: Vec<(OffsetDateTime, MissReason)>,
    /// Further missed slots, older than those listed (counted up to [`COUNTED_MISSED`]).
    pub more_missed: u64,
}

impl Due {
    /// The newest slot this decision handles: the cursor moves here once it is recorded.
    pub fn newest(&self) -> Option<OffsetDateTime> {
        self.run
            .into_iter()
            .chain(self.missed.first().map(|(slot, _)| *slot))
            .max()
    }

    /// Every missed slot, listed or counted.
    pub fn missed_count(&self) -> u64 {
        self.missed.len() as u64 + self.more_missed
    }
}

/// The slots after `after` (the newest one recorded) up to `now`: the newest runs if it is at
/// most `grace` old, every other one is missed. At most one slot ever runs per decision, so a
/// leader that comes back after many slots runs once, not once per slot.
pub fn due(calendar: &Calendar, after: OffsetDateTime, now: OffsetDateTime, grace: Duration) -> Due {
    let mut due = Due::default();
    let Some(newest) = calendar.at_or_before(now).filter(|slot| *slot > after) else {
        return due;
    };
    let within_grace = |slot: OffsetDateTime| now - slot <= grace;
    if within_grace(newest) {
        due.run = Some(newest);
    } else {
        due.missed.push((newest, MissReason::PastGrace));
    }
    let mut cursor = newest;
    let mut counted = 0;
    while let Some(older) = calendar.before(cursor).filter(|slot| *slot > after) {
        if due.missed.len() < LISTED_MISSED {
            let reason = if within_grace(older) {
                MissReason::Superseded
            } else {
                MissReason::PastGrace
            };
            due.missed.push((older, reason));
        } else {
            due.more_missed += 1;
            counted += 1;
            if counted >= COUNTED_MISSED {
                break;
            }
        }
        cursor = older;
    }
    due
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    fn every_ten_seconds() -> Calendar {
        Calendar::parse("*/10 * * * * *", TimeZone::UTC).unwrap()
    }

    const GRACE: Duration = Duration::from_secs(25);
    const T0: OffsetDateTime = datetime!(2026-12-06 12:00:00 UTC);

    fn at(seconds: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(seconds)
    }

    #[test]
    fn nothing_is_due_before_the_next_slot() {
        assert_eq!(due(&every_ten_seconds(), at(0), at(9), GRACE), Due::default());
        assert_eq!(due(&every_ten_seconds(), at(10), at(10), GRACE), Due::default());
    }

    #[test]
    fn the_slot_that_just_came_runs() {
        let found = due(&every_ten_seconds(), at(0), at(10), GRACE);
        assert_eq!(found.run, Some(at(10)));
        assert!(found.missed.is_empty());
        assert_eq!(found.newest(), Some(at(10)));
    }

    #[test]
    fn after_an_outage_the_newest_slot_runs_once_and_the_others_are_missed_with_their_reasons() {
        // Recorded up to 0 s; a leader returns at 65 s: 60 s runs, 50 s and 40 s are within the
        // grace but superseded, 30 s to 10 s are past it.
        let found = due(&every_ten_seconds(), at(0), at(65), GRACE);
        assert_eq!(found.run, Some(at(60)));
        assert_eq!(
            found.missed,
            vec![
                (at(50), MissReason::Superseded),
                (at(40), MissReason::Superseded),
                (at(30), MissReason::PastGrace),
                (at(20), MissReason::PastGrace),
                (at(10), MissReason::PastGrace),
            ]
        );
        assert_eq!(found.newest(), Some(at(60)));
    }

    #[test]
    fn a_slot_older_than_the_grace_is_reported_not_run() {
        let found = due(&every_ten_seconds(), at(0), at(10 + 26), GRACE);
        assert_eq!(found.run, Some(at(30)));
        let found = due(&every_ten_seconds(), at(20), at(10 + 26 + 10), Duration::from_secs(5));
        assert_eq!(found.run, None);
        assert_eq!(
            found.missed,
            vec![(at(40), MissReason::PastGrace), (at(30), MissReason::PastGrace)]
        );
        assert_eq!(found.newest(), Some(at(40)));
    }

    #[test]
    fn a_long_absence_lists_the_newest_missed_slots_and_counts_the_rest() {
        let every_second = Calendar::parse("* * * * * *", TimeZone::UTC).unwrap();
        let found = due(&every_second, at(0), at(1000), GRACE);
        assert_eq!(found.run, Some(at(1000)));
        assert_eq!(found.missed.len(), LISTED_MISSED);
        assert_eq!(found.missed_count(), 999);
        assert_eq!(found.missed.last().map(|(slot, _)| *slot), Some(at(900)));
    }

    proptest! {
        // Whatever the history, every slot in (after, now] is handled exactly once: run, listed
        // or counted; at most one runs, and only one within the grace.
        #[test]
        fn every_slot_is_handled_once(after in 0i64..200, span in 0i64..400, grace_s in 0u64..120) {
            let calendar = every_ten_seconds();
            let (after, now, grace) = (at(after), at(after + span), Duration::from_secs(grace_s));
            let found = due(&calendar, after, now, grace);
            let mut expected = 0u64;
            let mut slot = calendar.next_after(after);
            while let Some(s) = slot.filter(|s| *s <= now) {
                expected += 1;
                slot = calendar.next_after(s);
            }
            prop_assert_eq!(found.missed_count() + u64::from(found.run.is_some()), expected);
            if let Some(run) = found.run {
                prop_assert!(now - run <= grace);
                prop_assert!(found.missed.iter().all(|(slot, _)| *slot < run));
            }
            let mut listed: Vec<_> = found.missed.iter().map(|(slot, _)| *slot).collect();
            listed.dedup();
            prop_assert_eq!(listed.len(), found.missed.len());
            prop_assert!(found.missed.iter().all(|(slot, _)| *slot > after && *slot <= now));
        }
    }
}
