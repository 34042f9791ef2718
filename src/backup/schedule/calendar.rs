//! A schedule's calendar: a cron expression read in a named time zone, and the slots it names.

use croner::{
    parser::{CronParser, Seconds, Year},
    Cron,
};
use jiff::{tz::TimeZone, Timestamp, Zoned};
use thiserror::Error;
use time::OffsetDateTime;

/// Why an expression or a zone cannot make a calendar; the message says what to write instead.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("`{expression}` is not a cron expression ({reason}); use five fields (minute hour day-of-month month day-of-week, e.g. `0 2 * * *` for 02:00 daily) or six with seconds first (`*/30 * * * * *`)")]
    Expression { expression: String, reason: String },
    #[error("`{expression}` names no time that ever comes (e.g. 30 February); use an expression with at least one future slot")]
    NeverFires { expression: String },
    #[error("`{zone}` is not a time zone this machine knows ({reason}); use an IANA name such as UTC or Europe/Paris")]
    Zone { zone: String, reason: String },
}

/// A cron expression in a time zone; slots are whole seconds on the absolute time line.
#[derive(Debug, Clone)]
pub struct Calendar {
    expression: String,
    cron: Cron,
    zone: TimeZone,
}

/// The time zone `name` names (IANA), from the system's database or the one built in.
pub fn zone_named(name: &str) -> Result<TimeZone, CalendarError> {
    TimeZone::get(name).map_err(|e| CalendarError::Zone {
        zone: name.to_owned(),
        reason: e.to_string(),
    })
}

impl Calendar {
    /// Five fields (minutes first) or six (seconds first), in `zone`: POSIX cron, as crontab reads it.
    pub fn parse(expression: &str, zone: TimeZone) -> Result<Self, CalendarError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expression.trim()).map_err(|e| CalendarError::Expression {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
        let calendar = Self {
            expression: expression.trim().to_owned(),
            cron,
            zone,
        };
        if calendar.next_after(OffsetDateTime::now_utc()).is_none() {
            return Err(CalendarError::NeverFires {
                expression: expression.to_owned(),
            });
        }
        Ok(calendar)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first slot strictly after `at`.
    pub fn next_after(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        self.find(at, Direction::Forward, false)
    }

    /// The last slot at or before `at`.
    pub fn at_or_before(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        self.find(at, Direction::Backward, true)
    }

    /// The last slot strictly before `at`.
    pub fn before(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        self.find(at, Direction::Backward, false)
    }

    fn find(&self, at: OffsetDateTime, direction: Direction, inclusive: bool) -> Option<OffsetDateTime> {
        let from = self.zoned(at)?;
        let found = match direction {
            Direction::Forward => self.cron.find_next_occurrence(&from, inclusive),
            Direction::Backward => self.cron.find_previous_occurrence(&from, inclusive),
        };
        found.ok().map(|zoned| from_zoned(&zoned))
    }

    /// The next `count` slots after `at`.
    pub fn upcoming(&self, at: OffsetDateTime, count: usize) -> Vec<OffsetDateTime> {
        let mut slots = Vec::with_capacity(count);
        let mut from = at;
        while slots.len() < count {
            match self.next_after(from) {
                Some(slot) => {
                    slots.push(slot);
                    from = slot;
                }
                None => break,
            }
        }
        slots
    }

    /// `at` in the calendar's zone, truncated to the second (slots are whole seconds: the last
    /// slot at or before 10.5 s is the one at 10 s).
    fn zoned(&self, at: OffsetDateTime) -> Option<Zoned> {
        Timestamp::from_second(at.unix_timestamp())
            .ok()
            .map(|ts| ts.to_zoned(self.zone.clone()))
    }
}

enum Direction {
    Forward,
    Backward,
}

fn from_zoned(zoned: &Zoned) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(zoned.timestamp().as_second()).expect("a cron slot is within time's range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn daily_at_two(zone: &str) -> Calendar {
        Calendar::parse("0 2 * * *", zone_named(zone).unwrap()).unwrap()
    }

    #[test]
    fn a_daily_slot_is_read_in_its_time_zone() {
        let utc = daily_at_two("UTC");
        let paris = daily_at_two("Europe/Paris");
        let at = datetime!(2026-12-06 12:00 UTC);
        assert_eq!(utc.next_after(at), Some(datetime!(2026-12-07 02:00 UTC)));
        // 02:00 in Paris in winter is 01:00 UTC.
        assert_eq!(paris.next_after(at), Some(datetime!(2026-12-07 01:00 UTC)));
        assert_eq!(utc.at_or_before(at), Some(datetime!(2026-12-06 02:00 UTC)));
    }

    #[test]
    fn a_slot_is_at_or_before_itself_but_not_after_itself() {
        let every_two_seconds = Calendar::parse("*/2 * * * * *", TimeZone::UTC).unwrap();
        let slot = datetime!(2026-12-06 12:00:04 UTC);
        assert_eq!(every_two_seconds.at_or_before(slot), Some(slot));
        assert_eq!(every_two_seconds.before(slot), Some(datetime!(2026-12-06 12:00:02 UTC)));
        assert_eq!(
            every_two_seconds.next_after(slot),
            Some(datetime!(2026-12-06 12:00:06 UTC))
        );
        // A fraction of a second past a slot is still that slot's second.
        assert_eq!(
            every_two_seconds.at_or_before(slot + time::Duration::milliseconds(500)),
            Some(slot)
        );
        assert_eq!(
            every_two_seconds.upcoming(slot, 3),
            vec![
                datetime!(2026-12-06 12:00:06 UTC),
                datetime!(2026-12-06 12:00:08 UTC),
                datetime!(2026-12-06 12:00:10 UTC)
            ]
        );
    }

    #[test]
    fn a_slot_skipped_by_a_clock_change_does_not_fire_twice_or_at_a_wrong_hour() {
        // Europe/Paris springs forward on 2027-03-28: 02:00-03:00 does not exist that night.
        let paris = daily_at_two("Europe/Paris");
        let slots = paris.upcoming(datetime!(2027-03-26 12:00 UTC), 4);
        for pair in slots.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= time::Duration::hours(23), "{slots:?}");
        }
    }

    #[test]
    fn nicknames_and_extensions_are_read_as_crontab_reads_them() {
        let at = datetime!(2026-12-06 12:00 UTC);
        let daily = Calendar::parse("@daily", TimeZone::UTC).unwrap();
        assert_eq!(daily.next_after(at), Some(datetime!(2026-12-07 00:00 UTC)));
        let last_day = Calendar::parse("0 3 L * *", TimeZone::UTC).unwrap();
        assert_eq!(last_day.next_after(at), Some(datetime!(2026-12-31 03:00 UTC)));
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        for bad in ["", "every day", "61 * * * *", "* * * * * * *", "0 2 * * * 2027"] {
            let error = Calendar::parse(bad, TimeZone::UTC).unwrap_err();
            assert!(matches!(error, CalendarError::Expression { .. }), "{bad}: {error}");
        }
        let never = Calendar::parse("0 0 30 2 *", TimeZone::UTC).unwrap_err();
        assert!(matches!(never, CalendarError::NeverFires { .. }), "{never}");
        let zone = zone_named("Mars/Olympus_Mons").unwrap_err();
        assert!(zone.to_string().contains("Mars/Olympus_Mons"), "{zone}");
    }
}
