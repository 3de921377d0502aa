//! Cron schedules: parsing an expression and a time zone, and finding the next tick.
//!
//! The macro uses [`Schedule::parse`] to turn a bad expression or an unknown zone into a compile error; the host
//! uses the same code to run the schedule, so both agree on what an expression means.
//!
//! Expressions have 5 fields (minute precision) or 6 (a leading seconds field), or are one of the aliases
//! `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly` (parsing by the `croner`
//! crate). Times are in an IANA time zone (`chrono-tz`), UTC by default. Daylight-saving rules:
//!
//! - a local time that does not exist (skipped when clocks go forward) does not run that day;
//! - a local time that happens twice (clocks go back) runs once, at its first occurrence, when the job names a
//!   fixed second, minute and hour (`0 30 1 * * *`). Interval jobs (`*/15 * * * *`, `@hourly`) keep their pace in
//!   real time and run in both passes of the repeated hour, as Vixie cron and the Open Cron Pattern spec do.

use chrono::{DateTime, LocalResult, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed, valid schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    timezone: Tz,
    fixed_time: bool,
}

impl Schedule {
    /// Parses `expression` in `timezone`. The error says which of the two is wrong, and why.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, String> {
        let timezone: Tz = timezone.parse().map_err(|_| {
            format!(
                "unknown time zone `{timezone}`: use an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York`"
            )
        })?;
        let trimmed = expression.trim();
        // croner knows every alias but `@midnight`, which Vixie cron and systemd accept as `@daily`.
        let pattern = if trimmed.eq_ignore_ascii_case("@midnight") { "@daily" } else { trimmed };
        let fields = pattern.split_whitespace().count();
        if !pattern.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "invalid cron expression `{expression}`: it has {fields} fields; expected 5 (`min hour day month \
                 weekday`) or 6 (a leading seconds field), or an alias such as `@hourly`"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| format!("invalid cron expression `{expression}`: {e}"))?;
        let fixed_time = cron.determine_job_type() == croner::JobType::FixedTime;
        Ok(Self { cron, timezone, fixed_time })
    }

    /// The first tick strictly after `after`, or `None` if the expression never fires again (e.g. Feb 30).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = after.with_timezone(&self.timezone);
        // Each step moves strictly forward; a schedule that matches nothing for years is not a real schedule.
        for _ in 0..10_000 {
            let next = self.cron.find_next_occurrence(&cursor, false).ok()?;
            cursor = next;
            // croner moves a fixed-time job whose local time falls in a DST gap to the first instant after the gap;
            // the local time it lands on does not match the pattern. Such a time does not exist that day: skip it.
            if !self.cron.is_time_matching(&next).unwrap_or(false) {
                continue;
            }
            if self.fixed_time && self.is_second_pass(&next) {
                continue;
            }
            return Some(next.with_timezone(&Utc));
        }
        None
    }

    /// Every tick in `(after, until]`, oldest first, at most `limit` of them (the latest ones when there are more).
    pub fn ticks_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut ticks = std::collections::VecDeque::new();
        let mut cursor = after;
        while let Some(next) = self.next_after(cursor) {
            if next > until || limit == 0 {
                break;
            }
            if ticks.len() == limit {
                ticks.pop_front();
            }
            ticks.push_back(next);
            cursor = next;
        }
        ticks.into()
    }

    /// Whether `time` is the second occurrence of a local time that happens twice (DST ending).
    fn is_second_pass(&self, time: &DateTime<Tz>) -> bool {
        matches!(self.timezone.from_local_datetime(&time.naive_local()), LocalResult::Ambiguous(first, _) if first != *time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        let tz: Tz = tz.parse().unwrap();
        tz.with_ymd_and_hms(y, mo, d, h, mi, s).earliest().unwrap().with_timezone(&Utc)
    }

    fn local(schedule: &Schedule, time: DateTime<Utc>) -> String {
        time.with_timezone(&schedule.timezone).format("%Y-%m-%d %H:%M:%S %Z").to_string()
    }

    #[test]
    fn seconds_field_five_fields_and_aliases() {
        let every_ten = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        let start = at("UTC", 2026, 1, 1, 0, 0, 3);
        assert_eq!(every_ten.next_after(start), Some(at("UTC", 2026, 1, 1, 0, 0, 10)));
        let five = Schedule::parse("30 9 * * *", "UTC").unwrap();
        assert_eq!(five.next_after(start), Some(at("UTC", 2026, 1, 1, 9, 30, 0)));
        let hourly = Schedule::parse("@hourly", "UTC").unwrap();
        assert_eq!(hourly.next_after(start), Some(at("UTC", 2026, 1, 1, 1, 0, 0)));
        let midnight = Schedule::parse("@midnight", "UTC").unwrap();
        assert_eq!(midnight.next_after(start), Some(at("UTC", 2026, 1, 2, 0, 0, 0)));
    }

    #[test]
    fn weekdays_in_a_time_zone() {
        let report = Schedule::parse("0 30 9 * * Mon-Fri", "Europe/Berlin").unwrap();
        // Saturday 2026-11-21 noon UTC: the next run is Monday 09:30 Berlin (CET, UTC+1).
        let next = report.next_after(at("UTC", 2026, 11, 21, 12, 0, 0)).unwrap();
        assert_eq!(next, at("UTC", 2026, 11, 23, 8, 30, 0));
        assert_eq!(local(&report, next), "2026-11-23 09:30:00 CET");
    }

    #[test]
    fn a_skipped_local_time_does_not_run() {
        // Berlin springs forward on 2026-03-29 from 02:00 to 03:00: 02:30 does not exist that day.
        let job = Schedule::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let ticks: Vec<String> = job
            .ticks_between(at("Europe/Berlin", 2026, 3, 27, 12, 0, 0), at("Europe/Berlin", 2026, 3, 31, 12, 0, 0), 10)
            .into_iter()
            .map(|t| local(&job, t))
            .collect();
        assert_eq!(ticks, ["2026-03-28 02:30:00 CET", "2026-03-30 02:30:00 CEST", "2026-03-31 02:30:00 CEST"]);
    }

    #[test]
    fn a_repeated_local_time_runs_once() {
        // Berlin falls back on 2026-10-25 from 03:00 CEST to 02:00 CET: 02:30 happens twice.
        let job = Schedule::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let ticks: Vec<String> = job
            .ticks_between(at("UTC", 2026, 10, 24, 12, 0, 0), at("UTC", 2026, 10, 26, 12, 0, 0), 10)
            .into_iter()
            .map(|t| local(&job, t))
            .collect();
        assert_eq!(ticks, ["2026-10-25 02:30:00 CEST", "2026-10-26 02:30:00 CET"]);
    }

    #[test]
    fn interval_jobs_keep_real_time_across_the_repeated_hour() {
        let job = Schedule::parse("@hourly", "Europe/Berlin").unwrap();
        let ticks = job.ticks_between(at("UTC", 2026, 10, 24, 23, 30, 0), at("UTC", 2026, 10, 25, 3, 30, 0), 10);
        // Four real hours, four runs, 02:00 twice.
        let ticks: Vec<String> = ticks.into_iter().map(|t| local(&job, t)).collect();
        assert_eq!(
            ticks,
            [
                "2026-10-25 02:00:00 CEST",
                "2026-10-25 02:00:00 CET",
                "2026-10-25 03:00:00 CET",
                "2026-10-25 04:00:00 CET"
            ]
        );
    }

    #[test]
    fn ticks_between_keeps_the_latest_when_limited() {
        let job = Schedule::parse("* * * * * *", "UTC").unwrap();
        let start = at("UTC", 2026, 1, 1, 0, 0, 0);
        let ticks = job.ticks_between(start, at("UTC", 2026, 1, 1, 0, 0, 10), 3);
        assert_eq!(
            ticks,
            vec![at("UTC", 2026, 1, 1, 0, 0, 8), at("UTC", 2026, 1, 1, 0, 0, 9), at("UTC", 2026, 1, 1, 0, 0, 10)]
        );
        assert!(job.ticks_between(start, at("UTC", 2026, 1, 1, 0, 0, 10), 0).is_empty());
    }

    #[test]
    fn bad_input_names_the_problem() {
        assert!(Schedule::parse("* * * *", "UTC").unwrap_err().contains("has 4 fields"));
        assert!(Schedule::parse("61 * * * *", "UTC").unwrap_err().contains("invalid cron expression `61 * * * *`"));
        assert!(Schedule::parse("@often", "UTC").unwrap_err().contains("@often"));
        assert!(Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err().contains("unknown time zone `Mars/Olympus`"));
    }
}
