//! Cron schedules as the VectorCollection's `durability.snapshots.schedule` gives them:
//! five fields (minute hour day-of-month month day-of-week), UTC; a sixth leading
//! seconds field is accepted too (the CRD refuses it; tests use it). The operator
//! checks a schedule with [`Schedule::parse`] before any pod gets it, so a pod never
//! crash-loops on one.

use chrono::{DateTime, Utc};

/// A parsed cron schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    expr: String,
    cron: croner::Cron,
}

/// A schedule that does not parse, with the parser's reason.
#[derive(Debug, thiserror::Error)]
#[error("schedule {expr:?} is not a valid cron expression: {reason}")]
pub struct ScheduleError {
    pub expr: String,
    pub reason: String,
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError {
            expr: expr.to_owned(),
            reason,
        };
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(err(format!("{fields} fields, expected 5")));
        }
        let cron = croner::parser::CronParser::builder()
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| err(e.to_string()))?;
        // A pattern that never fires (30 February) parses; refuse it here.
        let s = Schedule {
            expr: expr.to_owned(),
            cron,
        };
        if s.next_after(Utc::now()).is_none() {
            return Err(err("it never fires".into()));
        }
        Ok(s)
    }

    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.expr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_fields_fire_on_the_minute_in_utc() {
        let s = Schedule::parse("0 */6 * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 5, 59, 59).unwrap();
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 6, 0, 0).unwrap())
        );
        // strictly after: a firing instant itself moves on to the next one
        let six = Utc.with_ymd_and_hms(2026, 12, 4, 6, 0, 0).unwrap();
        assert_eq!(
            s.next_after(six),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap())
        );
        let every_2s = Schedule::parse("*/2 * * * * *").unwrap();
        assert_eq!(
            every_2s.next_after(six),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 6, 0, 2).unwrap())
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in [
            "99 * * * *",
            "* * *",
            "hourly",
            "0 0 31 2 *",
            "* * * * * * *",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert_eq!(e.expr, bad);
            assert!(!e.reason.is_empty(), "{bad}");
        }
    }
}
