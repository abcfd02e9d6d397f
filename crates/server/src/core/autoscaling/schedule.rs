//! Schedules of scheduled scaling actions, as Application Auto Scaling
//! writes them: `at(yyyy-mm-ddThh:mm:ss)`, `rate(N unit)` and
//! `cron(Minutes Hours Day-of-month Month Day-of-week Year)`, the last two
//! kinds read in the action's `Timezone` (UTC when absent).
//!
//! The cron dialect is the one Application Auto Scaling shares with
//! EventBridge: six fields; `, - * /` everywhere; names `JAN`–`DEC` and
//! `SUN`–`SAT` (day 1 is Sunday); `?` in exactly one of day-of-month and
//! day-of-week; `L` (last day of the month, or `nL` the last weekday n of
//! the month), `nW` / `LW` (nearest weekday) and `n#k` (the k-th weekday n
//! of the month). Years run 1970–2199.
//!
//! Pure: every function takes the instant it computes from.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Why a schedule or time zone was refused; the handler words it as a
/// `ValidationException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ScheduleError> {
    Err(ScheduleError(msg.into()))
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Once, at this civil time in the action's zone.
    At(DateTime),
    /// Every this many seconds.
    Rate(i64),
    Cron(Cron),
}

/// The first year a cron expression may name, and the last.
const FIRST_YEAR: i16 = 1970;
const LAST_YEAR: i16 = 2199;

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        let inner = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(')'))
                .map(str::trim)
        };
        if let Some(at) = inner("at(") {
            let dt: DateTime = at.parse().map_err(|_| {
                ScheduleError(format!(
                    "Invalid at expression '{text}': the time must be at(yyyy-mm-ddThh:mm:ss)."
                ))
            })?;
            if at.len() != 19 || at.as_bytes()[10] != b'T' {
                return err(format!(
                    "Invalid at expression '{text}': the time must be at(yyyy-mm-ddThh:mm:ss)."
                ));
            }
            return Ok(Schedule::At(dt));
        }
        if let Some(rate) = inner("rate(") {
            return parse_rate(text, rate).map(Schedule::Rate);
        }
        if let Some(cron) = inner("cron(") {
            return Cron::parse(cron)
                .map(Schedule::Cron)
                .map_err(|e| ScheduleError(format!("Invalid cron expression '{text}': {}", e.0)));
        }
        err(format!(
            "Invalid schedule '{text}': use at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(minutes hours day-of-month month day-of-week year)."
        ))
    }
}

fn parse_rate(text: &str, rate: &str) -> Result<i64, ScheduleError> {
    let bad = || {
        ScheduleError(format!(
            "Invalid rate expression '{text}': use rate(value unit), value a positive integer and unit minute, minutes, hour, hours, day or days."
        ))
    };
    let mut parts = rate.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let n: i64 = n.parse().map_err(|_| bad())?;
    if n < 1 {
        return Err(bad());
    }
    let unit = match unit {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(unit)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .ok_or_else(bad)
}

/// The time zone an action names (IANA names), or UTC.
pub fn zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|_| {
            ScheduleError(format!(
                "Invalid Timezone '{name}': it must be the canonical name of an IANA time zone, such as Etc/GMT+9 or Pacific/Tahiti."
            ))
        }),
    }
}

/// Seconds since the epoch of an instant.
fn secs(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn instant(secs: f64) -> Option<Timestamp> {
    Timestamp::from_millisecond((secs * 1000.0).floor() as i64).ok()
}

/// When an action runs next, seconds since the epoch, given when it was
/// created and when it last ran; `None` once it never will again.
///
/// - `at()`: once, at its time, even if that was already past when the
///   action was created (it runs at once then), unless it has run.
/// - `rate()`: every interval from `start` (first run at `start`), or from
///   the action's creation (first run one interval later).
/// - `cron()`: each matching minute after the creation or the last run.
///
/// Runs before `start` are skipped and none come after `end`. A run missed
/// while the server was down comes due at once, once.
pub fn next_run(
    schedule: &Schedule,
    tz: &TimeZone,
    start: Option<f64>,
    end: Option<f64>,
    created: f64,
    last_run: Option<f64>,
) -> Option<f64> {
    let next = match schedule {
        Schedule::At(dt) => {
            if last_run.is_some() {
                return None;
            }
            let at = secs(tz.to_ambiguous_timestamp(*dt).compatible().ok()?);
            if start.is_some_and(|s| at < s) {
                return None;
            }
            at
        }
        Schedule::Rate(every) => {
            let every = *every as f64;
            let (anchor, first) = match start {
                Some(s) => (s, 0.0),
                None => (created, 1.0),
            };
            let after = last_run.unwrap_or(f64::NEG_INFINITY);
            // The smallest k >= first with anchor + k * every > after.
            let k = ((after - anchor) / every).floor() + 1.0;
            anchor + k.max(first) * every
        }
        Schedule::Cron(cron) => {
            let mut after = last_run.unwrap_or(created);
            if let Some(s) = start {
                // A run exactly at the start counts.
                after = after.max(s - 0.001);
            }
            secs(cron.next_after(instant(after)?, tz)?)
        }
    };
    match end {
        Some(e) if next > e => None,
        _ => Some(next),
    }
}

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: DayOfMonth,
    months: u16,
    weekdays: DayOfWeek,
    /// Bit i is the year 1970 + i.
    years: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq)]
enum DayOfMonth {
    /// `?`: the day-of-week field decides.
    Any,
    /// Bit d is day d.
    Days(u32),
    /// `L`: the last day of the month.
    Last,
    /// `nW`: the weekday nearest to day n, within the month.
    NearestWeekday(u8),
    /// `LW`: the last weekday of the month.
    LastWeekday,
}

#[derive(Debug, Clone, PartialEq)]
enum DayOfWeek {
    Any,
    /// Bit d is weekday d (1 Sunday … 7 Saturday).
    Days(u8),
    /// `nL`: the last weekday n of the month.
    Last(u8),
    /// `n#k`: the k-th weekday n of the month.
    Nth(u8, u8),
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, ScheduleError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 6 {
            return err(format!(
                "it has {} fields; it needs six: minutes hours day-of-month month day-of-week year.",
                fields.len()
            ));
        }
        let minutes = bits(fields[0], "minutes", 0, 59, &[])?;
        let hours = bits(fields[1], "hours", 0, 23, &[])? as u32;
        let months = bits(fields[3], "month", 1, 12, &MONTHS)? as u16;
        let years = bits_wide(fields[5], "year", FIRST_YEAR as u32, LAST_YEAR as u32)?;
        let (dom, dow) = (fields[2], fields[4]);
        match (dom == "?", dow == "?") {
            (true, true) => {
                return err("'?' may stand in only one of day-of-month and day-of-week.")
            }
            (false, false) => {
                return err(
                    "give '?' in either day-of-month or day-of-week: both cannot be specified.",
                )
            }
            _ => {}
        }
        let days = if dom == "?" {
            DayOfMonth::Any
        } else if dom == "L" {
            DayOfMonth::Last
        } else if dom == "LW" {
            DayOfMonth::LastWeekday
        } else if let Some(n) = dom.strip_suffix('W') {
            match n.parse::<u8>() {
                Ok(n) if (1..=31).contains(&n) => DayOfMonth::NearestWeekday(n),
                _ => {
                    return err(format!(
                        "day-of-month '{dom}' is not a day 1-31 followed by W."
                    ))
                }
            }
        } else {
            DayOfMonth::Days(bits(dom, "day-of-month", 1, 31, &[])? as u32)
        };
        let weekdays = if dow == "?" {
            DayOfWeek::Any
        } else if dow == "L" {
            DayOfWeek::Days(1 << 7)
        } else if let Some(n) = dow.strip_suffix('L') {
            DayOfWeek::Last(weekday(n, dow)?)
        } else if let Some((n, k)) = dow.split_once('#') {
            let k = match k.parse::<u8>() {
                Ok(k) if (1..=5).contains(&k) => k,
                _ => {
                    return err(format!(
                        "day-of-week '{dow}': the number after # must be 1-5."
                    ))
                }
            };
            DayOfWeek::Nth(weekday(n, dow)?, k)
        } else {
            DayOfWeek::Days(bits(dow, "day-of-week", 1, 7, &WEEKDAYS)? as u8)
        };
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            years,
        })
    }

    /// Whether a day matches the day, month and year fields.
    fn matches_day(&self, d: Date) -> bool {
        let year_ok = (FIRST_YEAR..=LAST_YEAR).contains(&d.year())
            && self.years[(d.year() - FIRST_YEAR) as usize];
        if !year_ok || self.months & (1 << d.month()) == 0 {
            return false;
        }
        let day = d.day() as u8;
        let last = d.days_in_month() as u8;
        let wd = d.weekday().to_sunday_one_offset() as u8;
        let dom = match &self.days {
            DayOfMonth::Any => true,
            DayOfMonth::Days(set) => set & (1 << day) != 0,
            DayOfMonth::Last => day == last,
            DayOfMonth::NearestWeekday(n) => day == nearest_weekday(d, (*n).min(last)),
            DayOfMonth::LastWeekday => day == nearest_weekday(d, last),
        };
        let dow = match &self.weekdays {
            DayOfWeek::Any => true,
            DayOfWeek::Days(set) => set & (1 << wd) != 0,
            DayOfWeek::Last(n) => wd == *n && day + 7 > last,
            DayOfWeek::Nth(n, k) => wd == *n && (day - 1) / 7 + 1 == *k,
        };
        dom && dow
    }

    /// The first matching minute strictly after `after`, read in `tz`.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = after.to_zoned(tz.clone()).datetime();
        let mut day = local.date();
        // Minutes of the day strictly after `local` on its own day.
        let mut from = Some(local.hour() as u32 * 60 + local.minute() as u32 + 1);
        // Bounded: a day at a time, skipping whole months and years that
        // cannot match, up to the last year a cron expression may name.
        for _ in 0..200_000 {
            if day.year() > LAST_YEAR {
                return None;
            }
            let year_ok =
                day.year() >= FIRST_YEAR && self.years[(day.year() - FIRST_YEAR) as usize];
            if !year_ok {
                day = Date::new(day.year() + 1, 1, 1).ok()?;
                from = Some(0);
                continue;
            }
            if self.months & (1 << day.month()) == 0 {
                day = day.last_of_month().tomorrow().ok()?;
                from = Some(0);
                continue;
            }
            if self.matches_day(day) {
                let start = from.unwrap_or(0);
                for m in start..24 * 60 {
                    let (h, min) = (m / 60, m % 60);
                    if self.hours & (1 << h) != 0 && self.minutes & (1 << min) != 0 {
                        let dt = day.at(h as i8, min as i8, 0, 0);
                        let t = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
            from = Some(0);
        }
        None
    }
}

/// The weekday (Monday–Friday) nearest to day `n` of `d`'s month, without
/// leaving the month.
fn nearest_weekday(d: Date, n: u8) -> u8 {
    let Ok(target) = Date::new(d.year(), d.month(), n as i8) else {
        return 0;
    };
    let last = d.days_in_month() as u8;
    match target.weekday().to_sunday_one_offset() {
        // Saturday: Friday before, or Monday after on the 1st.
        7 => {
            if n == 1 {
                3
            } else {
                n - 1
            }
        }
        // Sunday: Monday after, or Friday before at the month's end.
        1 => {
            if n == last {
                n - 2
            } else {
                n + 1
            }
        }
        _ => n,
    }
}

fn weekday(n: &str, field: &str) -> Result<u8, ScheduleError> {
    if let Some(i) = WEEKDAYS.iter().position(|w| w.eq_ignore_ascii_case(n)) {
        return Ok(i as u8 + 1);
    }
    match n.parse::<u8>() {
        Ok(n) if (1..=7).contains(&n) => Ok(n),
        _ => err(format!(
            "day-of-week '{field}' does not name a day 1-7 or SUN-SAT."
        )),
    }
}

/// A field's values as bits (bit v for value v), within `lo..=hi`.
fn bits(field: &str, what: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, ScheduleError> {
    let mut set = 0u64;
    for v in values(field, what, lo, hi, names)? {
        set |= 1 << v;
    }
    Ok(set)
}

/// Years as flags from `lo`.
fn bits_wide(field: &str, what: &str, lo: u32, hi: u32) -> Result<Vec<bool>, ScheduleError> {
    let mut set = vec![false; (hi - lo + 1) as usize];
    for v in values(field, what, lo, hi, &[])? {
        set[(v - lo) as usize] = true;
    }
    Ok(set)
}

/// The values a field lists: `*`, `a`, `a-b`, each optionally `/step`, joined by commas.
fn values(
    field: &str,
    what: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
) -> Result<Vec<u32>, ScheduleError> {
    let value = |s: &str| -> Result<u32, ScheduleError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + lo);
        }
        match s.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => err(format!("{what} '{field}': '{s}' is not a value {lo}-{hi}.")),
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(s) if s >= 1 => (r, s),
                _ => {
                    return err(format!(
                        "{what} '{field}': the step after '/' must be a positive number."
                    ))
                }
            },
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            // `a/step` runs from a to the end of the range.
            (a, if item.contains('/') { hi } else { a })
        };
        if a > b {
            return err(format!(
                "{what} '{field}': the range {a}-{b} runs backwards."
            ));
        }
        out.extend((a..=b).step_by(step as usize));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(expr: &str, after: &str, tz: &str) -> String {
        let Schedule::Cron(c) = Schedule::parse(expr).unwrap() else {
            panic!("not cron")
        };
        let tz = zone(Some(tz)).unwrap();
        c.next_after(ts(after), &tz)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn cron_fields_and_specials() {
        // Every 15 minutes on weekdays.
        assert_eq!(
            next("cron(0/15 * ? * MON-FRI *)", "2026-12-05T10:07:00Z", "UTC"),
            "2026-12-07T00:00:00Z",
            "Saturday skips to Monday"
        );
        assert_eq!(
            next("cron(0/15 * ? * MON-FRI *)", "2026-12-07T10:07:00Z", "UTC"),
            "2026-12-07T10:15:00Z"
        );
        // Strictly after.
        assert_eq!(
            next("cron(30 9 * * ? *)", "2026-12-07T09:30:00Z", "UTC"),
            "2026-12-08T09:30:00Z"
        );
        // Last day of the month, February of a leap year.
        assert_eq!(
            next("cron(0 0 L * ? *)", "2028-02-03T00:00:00Z", "UTC"),
            "2028-02-29T00:00:00Z"
        );
        // Second Tuesday; last Friday; nearest weekday to the 1st (a Saturday).
        assert_eq!(
            next("cron(0 12 ? * 3#2 *)", "2026-12-01T00:00:00Z", "UTC"),
            "2026-12-08T12:00:00Z"
        );
        assert_eq!(
            next("cron(0 12 ? * 6L *)", "2026-12-01T00:00:00Z", "UTC"),
            "2026-12-25T12:00:00Z"
        );
        assert_eq!(
            next("cron(0 8 1W * ? *)", "2026-07-20T00:00:00Z", "UTC"),
            "2026-08-03T08:00:00Z"
        );
        // A year in the future; a year already past never comes.
        assert_eq!(
            next("cron(0 0 1 JAN ? 2030)", "2026-12-01T00:00:00Z", "UTC"),
            "2030-01-01T00:00:00Z"
        );
        assert_eq!(
            next("cron(0 0 1 JAN ? 2020)", "2026-12-01T00:00:00Z", "UTC"),
            ""
        );
        // February 30th never happens.
        assert_eq!(
            next("cron(0 0 30 2 ? *)", "2026-12-01T00:00:00Z", "UTC"),
            ""
        );
    }

    #[test]
    fn cron_in_a_time_zone_follows_its_clock() {
        // 09:00 in New York is 14:00 UTC in winter and 13:00 in summer.
        assert_eq!(
            next(
                "cron(0 9 * * ? *)",
                "2026-12-07T00:00:00Z",
                "America/New_York"
            ),
            "2026-12-07T14:00:00Z"
        );
        assert_eq!(
            next(
                "cron(0 9 * * ? *)",
                "2026-07-07T00:00:00Z",
                "America/New_York"
            ),
            "2026-07-07T13:00:00Z"
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, says) in [
            ("cron(0 9 * * *)", "six"),
            ("cron(0 9 * * * *)", "both"),
            ("cron(0 9 ? * ? *)", "only one"),
            ("cron(61 9 * * ? *)", "minutes"),
            ("cron(0 24 * * ? *)", "hours"),
            ("cron(0 9 * 13 ? *)", "month"),
            ("cron(0 9 ? * 8 *)", "day-of-week"),
            ("cron(0 9 * * ? 1969)", "year"),
            ("cron(0 9-5 * * ? *)", "backwards"),
            ("cron(0/0 9 * * ? *)", "step"),
            ("rate(0 minutes)", "positive"),
            ("rate(5 weeks)", "unit"),
            ("at(2026-13-01T00:00:00)", "yyyy"),
            ("at(2026-12-01 00:00:00)", "yyyy"),
            ("every 5 minutes", "use at("),
        ] {
            let e = Schedule::parse(expr).unwrap_err();
            assert!(e.0.contains(says), "{expr}: {}", e.0);
        }
        assert!(zone(Some("Mars/Olympus")).is_err());
        assert!(zone(Some("Pacific/Tahiti")).is_ok());
    }

    #[test]
    fn next_runs_of_each_kind() {
        let utc = TimeZone::UTC;
        let at = Schedule::parse("at(2026-12-07T10:00:00)").unwrap();
        let t = 1_796_637_600.0; // 2026-12-07T10:00:00Z
        assert_eq!(next_run(&at, &utc, None, None, t - 100.0, None), Some(t));
        assert_eq!(next_run(&at, &utc, None, None, t - 100.0, Some(t)), None);
        assert_eq!(
            next_run(&at, &utc, None, Some(t - 1.0), t - 100.0, None),
            None
        );

        let rate = Schedule::parse("rate(5 minutes)").unwrap();
        assert_eq!(
            next_run(&rate, &utc, None, None, 1000.0, None),
            Some(1300.0)
        );
        assert_eq!(
            next_run(&rate, &utc, None, None, 1000.0, Some(1300.0)),
            Some(1600.0)
        );
        assert_eq!(
            next_run(&rate, &utc, Some(2000.0), None, 1000.0, None),
            Some(2000.0)
        );
        // A run missed while down is due at once, then the cadence resumes.
        assert_eq!(
            next_run(&rate, &utc, None, None, 1000.0, Some(1300.0)),
            Some(1600.0)
        );
        assert_eq!(
            next_run(&rate, &utc, None, None, 1000.0, Some(5000.0)),
            Some(5200.0)
        );

        let cron = Schedule::parse("cron(0 10 * * ? *)").unwrap();
        assert_eq!(next_run(&cron, &utc, None, None, t - 100.0, None), Some(t));
        assert_eq!(
            next_run(&cron, &utc, None, None, t - 100.0, Some(t)),
            Some(t + 86_400.0)
        );
        assert_eq!(
            next_run(&cron, &utc, Some(t), None, t - 100.0, None),
            Some(t)
        );
        assert_eq!(
            next_run(&cron, &utc, None, Some(t + 10.0), t - 100.0, Some(t)),
            None
        );
    }
}
