//! Calendar arithmetic for partition periods, all in UTC: where a day, an ISO week (Monday) or a
//! month starts, the next start, the child's name for a start, and retention durations.
//!
//! Pure: no clock, no I/O. Every step is checked, so an absurd `--now` becomes an error instead of
//! a panic.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc};
use serde::Serialize;

/// The length of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    /// ISO 8601 weeks: Monday 00:00 UTC to the next Monday.
    Week,
    Month,
}

impl Interval {
    pub fn parse(text: &str) -> Option<Interval> {
        match text {
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    /// How a period start is shown in messages: `2026-11` for a month, the day otherwise.
    pub fn label_format(self) -> &'static str {
        match self {
            Interval::Month => "%Y-%m",
            Interval::Day | Interval::Week => "%Y-%m-%d",
        }
    }

    /// The start of the period that contains `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let date = t.date_naive();
        let start = match self {
            Interval::Day => date,
            Interval::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
            Interval::Month => date.with_day(1).unwrap_or(date),
        };
        midnight(start)
    }

    /// The start of the period after the one starting at `start`; None past chrono's range.
    pub fn next(self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Interval::Day => start.checked_add_days(Days::new(1)),
            Interval::Week => start.checked_add_days(Days::new(7)),
            Interval::Month => start.checked_add_months(Months::new(1)),
        }
    }

    /// Whether `t` is exactly a period start (UTC midnight, a Monday for weeks, the 1st for months).
    pub fn is_start(self, t: DateTime<Utc>) -> bool {
        self.floor(t) == t
    }

    /// `<table>_YYYY_MM` for months, `<table>_YYYY_MM_DD` for days and weeks (the Monday).
    pub fn child_name(self, table: &str, start: DateTime<Utc>) -> String {
        match self {
            Interval::Month => format!("{table}_{}", start.format("%Y_%m")),
            Interval::Day | Interval::Week => format!("{table}_{}", start.format("%Y_%m_%d")),
        }
    }

    /// How many bytes the name suffix adds to the table's name.
    pub fn suffix_len(self) -> usize {
        match self {
            Interval::Month => "_YYYY_MM".len(),
            Interval::Day | Interval::Week => "_YYYY_MM_DD".len(),
        }
    }
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// How long partitions are kept: a count of calendar units, e.g. "13 months" or "90 days".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub count: u32,
    pub unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Day,
    Week,
    Month,
    Year,
}

/// The longest retention accepted: a typo guard, not a policy (100 years).
const MAX_RETENTION_DAYS: u32 = 36_525;

impl Retention {
    /// Parses "13 months", "90 days", "2 weeks", "1 year" (singular or plural).
    pub fn parse(text: &str) -> Result<Retention, String> {
        let usage =
            "write a count and a unit, e.g. \"13 months\", \"90 days\", \"2 weeks\" or \"1 year\"";
        let mut words = text.split_whitespace();
        let (Some(count), Some(unit), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("`{text}` is not a retention; {usage}"));
        };
        let count: u32 = count
            .parse()
            .map_err(|_| format!("`{text}` is not a retention; {usage}"))?;
        let unit = match unit.to_ascii_lowercase().as_str() {
            "day" | "days" => Unit::Day,
            "week" | "weeks" => Unit::Week,
            "month" | "months" => Unit::Month,
            "year" | "years" => Unit::Year,
            _ => return Err(format!("`{text}` has an unknown unit; {usage}")),
        };
        let retention = Retention { count, unit };
        if count == 0 {
            return Err(format!(
                "`{text}` would prune the current period's predecessor at once; use at least 1 {}",
                retention.unit_name()
            ));
        }
        if retention.count > retention.most() {
            let most = match retention.unit {
                Unit::Year => "100 years".to_string(),
                _ => format!("{} {}s, 100 years", retention.most(), retention.unit_name()),
            };
            return Err(format!(
                "`{text}` is longer than dhctl accepts (at most {most}); check for a typo"
            ));
        }
        Ok(retention)
    }

    /// The largest count of this unit within 100 years, by the calendar: "100 years" and
    /// "1200 months" are accepted, "101 years" is not.
    fn most(&self) -> u32 {
        match self.unit {
            Unit::Day => MAX_RETENTION_DAYS,
            Unit::Week => MAX_RETENTION_DAYS / 7,
            Unit::Month => 1200,
            Unit::Year => 100,
        }
    }

    fn unit_name(&self) -> &'static str {
        match self.unit {
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    /// `now` minus the retention: a partition whose upper bound is at or before it is old enough.
    pub fn cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.unit {
            Unit::Day => now.checked_sub_days(Days::new(u64::from(self.count))),
            Unit::Week => now.checked_sub_days(Days::new(7 * u64::from(self.count))),
            Unit::Month => now.checked_sub_months(Months::new(self.count)),
            Unit::Year => now.checked_sub_months(Months::new(self.count.checked_mul(12)?)),
        }
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.count == 1 { "" } else { "s" };
        write!(f, "{} {}{plural}", self.count, self.unit_name())
    }
}

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A bound as written in DDL: `'2026-12-01 00:00:00+00'`, explicit UTC offset so the session's
/// TimeZone cannot shift it (REFERENCE.md).
pub fn sql_timestamp(t: DateTime<Utc>) -> String {
    use chrono::Datelike;
    if t.year() <= 0 {
        // PostgreSQL writes years before 1 as `4713-01-01 … BC` (year 0 is 1 BC); chrono's
        // ISO year (-4712) is refused as "time zone displacement out of range".
        return format!("{:04}-{} BC", 1 - t.year(), t.format("%m-%d %H:%M:%S+00"));
    }
    t.format("%Y-%m-%d %H:%M:%S+00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn years_before_1_are_written_as_postgresql_reads_them() {
        use chrono::TimeZone;
        let bc = Utc.with_ymd_and_hms(-4712, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(sql_timestamp(bc), "4713-01-01 00:00:00+00 BC");
        let one_bc = Utc.with_ymd_and_hms(0, 12, 1, 0, 0, 0).unwrap();
        assert_eq!(sql_timestamp(one_bc), "0001-12-01 00:00:00+00 BC");
        assert_eq!(
            sql_timestamp(t("2026-11-01T00:00:00Z")),
            "2026-11-01 00:00:00+00"
        );
    }

    #[test]
    fn floors_and_nexts() {
        // (interval, instant, floor, next start)
        let cases = [
            (
                Interval::Month,
                "2026-11-15T10:00:00Z",
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            (
                Interval::Month,
                "2026-12-31T23:59:59Z",
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                Interval::Month,
                "2024-02-29T12:00:00Z",
                "2024-02-01T00:00:00Z",
                "2024-03-01T00:00:00Z",
            ),
            (
                Interval::Month,
                "2024-01-31T00:00:00Z",
                "2024-01-01T00:00:00Z",
                "2024-02-01T00:00:00Z",
            ),
            (
                Interval::Day,
                "2024-02-28T23:00:00Z",
                "2024-02-28T00:00:00Z",
                "2024-02-29T00:00:00Z",
            ),
            (
                Interval::Day,
                "2023-02-28T23:00:00Z",
                "2023-02-28T00:00:00Z",
                "2023-03-01T00:00:00Z",
            ),
            // 2026-11-15 is a Sunday: its ISO week began on Monday the 9th.
            (
                Interval::Week,
                "2026-11-15T23:59:59Z",
                "2026-11-09T00:00:00Z",
                "2026-11-16T00:00:00Z",
            ),
            (
                Interval::Week,
                "2026-11-16T00:00:00Z",
                "2026-11-16T00:00:00Z",
                "2026-11-23T00:00:00Z",
            ),
            // A week across a year end.
            (
                Interval::Week,
                "2027-01-01T08:00:00Z",
                "2026-12-28T00:00:00Z",
                "2027-01-04T00:00:00Z",
            ),
            // An instant given in another zone is still floored in UTC.
            (
                Interval::Month,
                "2026-12-01T01:00:00+05:00",
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
        ];
        for (interval, at, floor, next) in cases {
            let f = interval.floor(t(at));
            assert_eq!(f, t(floor), "{interval:?} floor of {at}");
            assert_eq!(
                interval.next(f),
                Some(t(next)),
                "{interval:?} next of {floor}"
            );
            assert!(interval.is_start(f));
        }
        assert!(!Interval::Week.is_start(t("2026-11-10T00:00:00Z")));
    }

    #[test]
    fn child_names_follow_the_interval() {
        let start = t("2027-02-01T00:00:00Z");
        assert_eq!(
            Interval::Month.child_name("request_logs", start),
            "request_logs_2027_02"
        );
        assert_eq!(Interval::Day.child_name("x", start), "x_2027_02_01");
        assert_eq!(
            Interval::Week.child_name("x", t("2026-11-09T00:00:00Z")),
            "x_2026_11_09"
        );
        assert_eq!(sql_timestamp(start), "2027-02-01 00:00:00+00");
    }

    #[test]
    fn retentions_parse_and_cut() {
        let r = Retention::parse("13 months").unwrap();
        assert_eq!(r.to_string(), "13 months");
        assert_eq!(
            r.cutoff(t("2026-11-15T10:00:00Z")),
            Some(t("2025-10-15T10:00:00Z"))
        );
        // Month arithmetic clamps to the month's last day.
        let one = Retention::parse("1 month").unwrap();
        assert_eq!(
            one.cutoff(t("2024-03-31T00:00:00Z")),
            Some(t("2024-02-29T00:00:00Z"))
        );
        assert_eq!(
            Retention::parse("1 YEAR")
                .unwrap()
                .cutoff(t("2025-01-01T00:00:00Z")),
            Some(t("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            Retention::parse("2 weeks")
                .unwrap()
                .cutoff(t("2026-11-15T00:00:00Z")),
            Some(t("2026-11-01T00:00:00Z"))
        );
        for bad in [
            "",
            "13",
            "months",
            "13 fortnights",
            "-1 days",
            "0 days",
            "1.5 months",
            "13 months ago",
            "200 years",
            "101 years",
            "1201 months",
            "36526 days",
        ] {
            assert!(Retention::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_hundred_years_is_accepted_by_the_calendar_and_the_limit_is_named_plainly() {
        for good in ["100 years", "1200 months", "5217 weeks", "36525 days"] {
            assert!(Retention::parse(good).is_ok(), "{good:?}");
        }
        let e = Retention::parse("101 years").unwrap_err();
        assert!(e.contains("at most 100 years"), "{e}");
        assert!(!e.contains("longer than 100 years"), "{e}");
    }
}
