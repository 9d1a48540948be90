//! Update windows (`spec.schedule`): when an automation may push. Pure:
//! every function takes the time it decides for.
//!
//! A window opens at each time its `cron` matches, in its `timeZone`'s
//! wall-clock time, and stays open for `duration`. Cron has five fields
//! (minute, hour, day of month, month, day of week; lists, ranges, steps,
//! `jan`…`dec`, `sun`…`sat`, 7 for Sunday) or a name (`@hourly`, `@daily`,
//! `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`); when both
//! day fields are restricted, either matching is enough, as in cron.
//! `@every 30m` opens a window every 30 minutes from the Unix epoch.
//! Across a DST change, wall-clock times that do not exist never match (a
//! `30 2 * * *` window does not open on the spring-forward day; cronie
//! would run such a job right after the jump) and times that happen twice
//! match twice.
//!
//! Why not a cron crate: the ones on crates.io (cron, croner, saffron)
//! each bring chrono as a second time library beside jiff, and
//! none lets the DST rule above be chosen: they either skip or shift
//! nonexistent times the way their authors picked. Parsing five fields
//! into bit sets is a page of code with table tests; the time-zone
//! arithmetic, the hard part, is jiff's. The same reasoning keeps git and
//! semver in house where the crates did not fit.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::api::{GoDuration, UpdateWindow};

/// A cron expression, as sets of allowed values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday 0.
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Opens {
    At(Cron),
    Every(Duration),
}

/// One parsed window.
#[derive(Clone, Debug)]
pub struct Window {
    opens: Opens,
    duration: Duration,
    zone: TimeZone,
}

/// A field of `spec.schedule[i]` that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// `cron`, `duration` or `timeZone`.
    pub field: &'static str,
    pub message: String,
}

/// Why a cron expression does not parse; `what` names the field (minute,
/// hour, day of month, month, day of week).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "{text:?} has {count} fields; give five (minute hour day-of-month month day-of-week) or a name such as @daily"
    )]
    Fields { text: String, count: usize },
    #[error("{what} {value:?} is not a number{}", if *.named { " or a name" } else { "" })]
    NotANumber {
        what: &'static str,
        value: String,
        named: bool,
    },
    #[error("{what} {value} is outside {min}-{max}")]
    OutOfRange {
        what: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("{what} step {step:?} is not a number from 1 to {max}")]
    Step {
        what: &'static str,
        step: String,
        max: u32,
    },
    #[error("{what} range {range:?} runs backwards")]
    Backwards { what: &'static str, range: String },
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The values one field allows, as a bit set, and whether it is `*`.
fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    what: &'static str,
) -> Result<(u64, bool), CronError> {
    let value = |v: &str| -> Result<u32, CronError> {
        let lower = v.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names count from 1, weekday names from 0 (Sunday).
            return Ok(i as u32 + min);
        }
        let n: u32 = v.parse().map_err(|_| CronError::NotANumber {
            what,
            value: v.to_string(),
            named: !names.is_empty(),
        })?;
        if n < min || n > max {
            return Err(CronError::OutOfRange {
                what,
                value: n,
                min,
                max,
            });
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0 && *s <= max)
                    .ok_or_else(|| CronError::Step {
                        what,
                        step: s.to_string(),
                        max,
                    })?,
            ),
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/15` means from 5 to the end, every 15.
                None if part.contains('/') => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(CronError::Backwards {
                what,
                range: range.to_string(),
            });
        }
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            v += step;
        }
    }
    // Day of week 7 is Sunday too.
    if what == "day of week" && bits & (1 << 7) != 0 {
        bits = (bits & !(1 << 7)) | 1;
    }
    // As in Vixie cron, a field that starts with `*` (`*/2` too) does not
    // restrict the day for the either-day rule.
    Ok((bits, text.starts_with('*')))
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields.as_slice() else {
            return Err(CronError::Fields {
                text: text.to_string(),
                count: fields.len(),
            });
        };
        let (minutes, _) = field(minute, 0, 59, &[], "minute")?;
        let (hours, _) = field(hour, 0, 23, &[], "hour")?;
        let (days, days_star) = field(day, 1, 31, &[], "day of month")?;
        let (months, _) = field(month, 1, 12, &MONTHS, "month")?;
        let (weekdays, weekdays_star) = field(weekday, 0, 7, &WEEKDAYS, "day of week")?;
        Ok(Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_restricted: !days_star,
            weekdays_restricted: !weekdays_star,
        })
    }

    /// Whether the wall-clock minute `time` matches.
    fn matches(&self, time: &jiff::civil::DateTime) -> bool {
        let bit = |set: u64, v: i8| v >= 0 && set & (1 << v) != 0;
        bit(self.minutes, time.minute())
            && bit(self.hours as u64, time.hour())
            && self.matches_day(time.date())
    }

    /// Whether the day `date` has matching minutes.
    fn matches_day(&self, date: jiff::civil::Date) -> bool {
        let bit = |set: u64, v: i8| v >= 0 && set & (1 << v) != 0;
        if !bit(self.months as u64, date.month()) {
            return false;
        }
        let day = bit(self.days as u64, date.day());
        let weekday = bit(self.weekdays as u64, date.weekday().to_sunday_zero_offset());
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            _ => day && weekday,
        }
    }

    /// Whether any day matches: over 28 years the calendar repeats, leap
    /// days and weekdays included.
    fn ever_matches(&self) -> bool {
        let start = jiff::civil::date(2000, 1, 1);
        (0..28 * 366).any(|n| {
            start
                .checked_add(jiff::Span::new().days(n))
                .is_ok_and(|d| self.matches_day(d))
        })
    }
}

impl Window {
    /// Parses `spec.schedule[i]`.
    pub fn parse(window: &UpdateWindow) -> Result<Window, ScheduleError> {
        let error = |field, message: String| ScheduleError { field, message };
        let opens = match window.cron.trim().strip_prefix("@every") {
            Some(every) => {
                let every = GoDuration::new(every.trim())
                    .parse()
                    .map_err(|e| error("cron", format!("@every: {e}")))?;
                if every < Duration::from_secs(60)
                    || every.as_secs() % 60 != 0
                    || every.subsec_nanos() != 0
                {
                    return Err(error(
                        "cron",
                        "@every must be whole minutes, at least 1m".into(),
                    ));
                }
                Opens::Every(every)
            }
            None => {
                let cron = Cron::parse(&window.cron).map_err(|e| error("cron", e.to_string()))?;
                if !cron.ever_matches() {
                    return Err(error(
                        "cron",
                        format!("{:?} names a day that never comes", window.cron),
                    ));
                }
                Opens::At(cron)
            }
        };
        let duration = window
            .duration
            .parse()
            .map_err(|e| error("duration", e.to_string()))?;
        // Windows open on whole minutes: a shorter one could never be seen.
        if duration < Duration::from_secs(60) {
            return Err(error("duration", "must be at least 1m".into()));
        }
        if duration > Duration::from_secs(31 * 24 * 3600) {
            return Err(error("duration", "must be at most 31 days (744h)".into()));
        }
        let zone = match window.time_zone.as_deref() {
            None | Some("") | Some("UTC") => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                error(
                    "timeZone",
                    format!("{name:?} is not an IANA time zone such as Europe/Berlin"),
                )
            })?,
        };
        Ok(Window {
            opens,
            duration,
            zone,
        })
    }

    fn opens_at(&self, minute: Timestamp) -> bool {
        match &self.opens {
            Opens::At(cron) => cron.matches(&minute.to_zoned(self.zone.clone()).datetime()),
            Opens::Every(every) => minute.as_second() % every.as_secs() as i64 == 0,
        }
    }

    /// Whether the window is open at `now`: it opened less than
    /// `duration` ago.
    pub fn contains(&self, now: Timestamp) -> bool {
        let mut minute = floor_minute(now);
        let span = self.duration.as_secs() as i64;
        while now.as_second() - minute.as_second() < span {
            if self.opens_at(minute) {
                return true;
            }
            minute = match minute.checked_sub(jiff::SignedDuration::from_secs(60)) {
                Ok(m) => m,
                Err(_) => return false,
            };
        }
        false
    }

    /// When the window next opens after `now`, within a year and a day.
    pub fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        let mut minute = floor_minute(now);
        for _ in 0..(366 * 24 * 60 + 1) {
            minute = minute
                .checked_add(jiff::SignedDuration::from_secs(60))
                .ok()?;
            if self.opens_at(minute) {
                return Some(minute);
            }
        }
        None
    }
}

fn floor_minute(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second().div_euclid(60) * 60).unwrap_or(t)
}

/// Whether an automation may push at `now`, and if not, when it may.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    Open,
    Closed { next: Option<Timestamp> },
}

/// No windows: always open. Otherwise open inside any window.
pub fn gate(windows: &[Window], now: Timestamp) -> Gate {
    if windows.is_empty() || windows.iter().any(|w| w.contains(now)) {
        return Gate::Open;
    }
    Gate::Closed {
        next: windows.iter().filter_map(|w| w.next_open(now)).min(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(cron: &str, duration: &str, zone: Option<&str>) -> Window {
        Window::parse(&UpdateWindow {
            cron: cron.into(),
            duration: GoDuration::new(duration),
            time_zone: zone.map(str::to_string),
        })
        .unwrap_or_else(|e| panic!("{cron}: {e}"))
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn weekday_evenings_in_berlin_across_midnight() {
        // 22:00 to 02:00 Berlin time, Monday to Friday evenings.
        let w = window("0 22 * * 1-5", "4h", Some("Europe/Berlin"));
        let cases = [
            // Friday 2026-11-27, CET (UTC+1): 22:00 local is 21:00Z.
            ("2026-11-27T20:59:59Z", false),
            ("2026-11-27T21:00:00Z", true),
            // After midnight, into Saturday: still the Friday window.
            ("2026-11-28T00:30:00Z", true),
            ("2026-11-28T00:59:59Z", true),
            ("2026-11-28T01:00:00Z", false),
            // Saturday evening: no window.
            ("2026-11-28T21:30:00Z", false),
        ];
        for (now, open) in cases {
            assert_eq!(w.contains(at(now)), open, "{now}");
        }
        assert_eq!(
            gate(std::slice::from_ref(&w), at("2026-11-28T21:30:00Z")),
            Gate::Closed {
                next: Some(at("2026-11-30T21:00:00Z"))
            },
            "the next window is Monday's"
        );
    }

    #[test]
    fn daylight_saving_changes_follow_the_wall_clock() {
        // 02:30 local does not exist on 2026-03-29 in Berlin (clocks jump
        // from 02:00 to 03:00): that day has no window.
        let w = window("30 2 * * *", "1h", Some("Europe/Berlin"));
        assert!(
            w.contains(at("2026-03-28T01:45:00Z")),
            "the day before, CET"
        );
        assert!(!w.contains(at("2026-03-29T00:45:00Z")));
        assert!(!w.contains(at("2026-03-29T01:45:00Z")));
        assert_eq!(
            w.next_open(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-30T00:30:00Z"))
        );
        // 02:30 happens twice on 2026-10-25 (03:00 CEST back to 02:00 CET):
        // two openings, an hour apart in UTC.
        assert_eq!(
            w.next_open(at("2026-10-24T23:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            w.next_open(at("2026-10-25T00:30:00Z")),
            Some(at("2026-10-25T01:30:00Z"))
        );
        // 09:00 local is 07:00Z in summer and 08:00Z in winter.
        let morning = window("0 9 * * *", "30m", Some("Europe/Berlin"));
        assert!(morning.contains(at("2026-07-01T07:10:00Z")));
        assert!(!morning.contains(at("2026-07-01T08:10:00Z")));
        assert!(morning.contains(at("2026-12-01T08:10:00Z")));
    }

    #[test]
    fn names_steps_lists_and_every() {
        let w = window("*/15 9-17 * jan,jul mon-fri", "5m", None);
        assert!(w.contains(at("2026-01-05T09:47:00Z")), "Monday 09:45 + 2m");
        assert!(!w.contains(at("2026-01-05T09:51:00Z")));
        assert!(!w.contains(at("2026-02-02T09:45:00Z")), "February");
        assert!(!w.contains(at("2026-01-04T09:45:00Z")), "Sunday");
        // Both day fields restricted: either one is enough.
        let either = window("0 0 1 * sun", "1m", None);
        assert!(
            either.contains(at("2026-04-01T00:00:30Z")),
            "the 1st, a Wednesday"
        );
        assert!(either.contains(at("2026-04-05T00:00:30Z")), "a Sunday");
        assert!(!either.contains(at("2026-04-06T00:00:30Z")));
        // 7 is Sunday, in ranges too; `*/2` days do not restrict.
        let weekend = window("0 10 * * 5-7", "1h", None);
        assert!(weekend.contains(at("2026-04-05T10:30:00Z")), "Sunday");
        assert!(weekend.contains(at("2026-04-03T10:30:00Z")), "Friday");
        assert!(!weekend.contains(at("2026-04-06T10:30:00Z")), "Monday");
        let odd_days_on_mondays = window("0 0 */2 * mon", "1m", None);
        assert!(
            !odd_days_on_mondays.contains(at("2026-04-01T00:00:30Z")),
            "a Wednesday"
        );
        assert!(
            odd_days_on_mondays.contains(at("2026-04-13T00:00:30Z")),
            "Monday the 13th"
        );
        let daily = window("@daily", "1h", None);
        assert!(daily.contains(at("2026-04-06T00:59:00Z")));
        let every = window("@every 30m", "5m", None);
        assert!(every.contains(at("2026-04-06T10:33:00Z")));
        assert!(!every.contains(at("2026-04-06T10:36:00Z")));
        assert_eq!(gate(&[], at("2026-04-06T10:36:00Z")), Gate::Open);
    }

    #[test]
    fn bad_fields_are_named() {
        let error = |cron: &str, duration: &str, zone: Option<&str>| {
            Window::parse(&UpdateWindow {
                cron: cron.into(),
                duration: GoDuration::new(duration),
                time_zone: zone.map(str::to_string),
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert_eq!(
            error("0 22 * *", "2h", None),
            "cron: \"0 22 * *\" has 4 fields; give five (minute hour day-of-month month day-of-week) or a name such as @daily"
        );
        assert_eq!(
            error("0 25 * * *", "2h", None),
            "cron: hour 25 is outside 0-23"
        );
        assert_eq!(
            error("0 22 * * fry", "2h", None),
            "cron: day of week \"fry\" is not a number or a name"
        );
        assert_eq!(
            error("*/0 * * * *", "2h", None),
            "cron: minute step \"0\" is not a number from 1 to 59"
        );
        assert_eq!(
            error("0 22 * * *", "2 hours", None),
            "duration: \"2 hours\" is not a duration; expected a number with a unit (ms, s, m, h) such as 30s, 5m or 1h30m"
        );
        assert_eq!(
            error("0 22 * * *", "2h", Some("Mars/Olympus")),
            "timeZone: \"Mars/Olympus\" is not an IANA time zone such as Europe/Berlin"
        );
        assert_eq!(
            error("@every 10s", "2h", None),
            "cron: @every must be whole minutes, at least 1m"
        );
        assert_eq!(
            error("@every 90s", "2h", None),
            "cron: @every must be whole minutes, at least 1m"
        );
        assert_eq!(
            error("0 22 * * *", "500ms", None),
            "duration: must be at least 1m"
        );
        assert_eq!(
            error("0 0 30 2 *", "1h", None),
            "cron: \"0 0 30 2 *\" names a day that never comes"
        );
        // February 29th does come.
        assert_eq!(error("0 0 29 2 *", "1h", None), "");
        assert_eq!(
            error("1/99 * * * *", "2h", None),
            "cron: minute step \"99\" is not a number from 1 to 59"
        );
    }
}
