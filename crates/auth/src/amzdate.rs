//! The ISO-8601 "basic format" timestamps SigV4 uses (`20260101T000000Z`).
//!
//! Hand-written rather than pulled from a date crate because SigV4 needs exactly
//! one fixed-width UTC format, and parsing it strictly (no offsets, no leap
//! seconds, no lenient widths) is part of rejecting malformed requests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; signed so that absurd dates from the wire
/// (year 0001) stay representable and comparable without overflow.
pub(crate) type UnixSeconds = i64;

/// Parses `YYYYMMDDTHHMMSSZ` into seconds since the epoch, or `None` if the
/// text is not exactly that shape or names a day/time that does not exist.
pub(crate) fn parse(text: &str) -> Option<UnixSeconds> {
    let b = text.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 4, 2)?;
    let day = digits(b, 6, 2)?;
    let hour = digits(b, 9, 2)?;
    let minute = digits(b, 11, 2)?;
    let second = digits(b, 13, 2)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Whether `text` is exactly eight digits forming a real calendar date
/// (`YYYYMMDD`, the date element of a credential scope).
pub(crate) fn is_valid_date(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 8 {
        return false;
    }
    match (digits(b, 0, 4), digits(b, 4, 2), digits(b, 6, 2)) {
        (Some(y), Some(m), Some(d)) => (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m),
        _ => false,
    }
}

/// Formats seconds since the epoch as `YYYYMMDDTHHMMSSZ`. Years outside
/// 0000–9999 are clamped, since they cannot be written in this format and
/// only ever appear in error messages about nonsense clocks.
pub(crate) fn format(secs: UnixSeconds) -> String {
    const MIN: UnixSeconds = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: UnixSeconds = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = secs.clamp(MIN, MAX);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// `SystemTime` to whole seconds since the epoch (sub-second part dropped,
/// as SigV4 timestamps have one-second resolution).
pub(crate) fn from_system_time(t: SystemTime) -> UnixSeconds {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            // Round towards negative infinity so 0.5 s before the epoch is -1.
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                -whole.saturating_add(1)
            } else {
                -whole
            }
        }
    }
}

/// Seconds since the epoch to `SystemTime`, saturating at the epoch's bounds
/// of what `SystemTime` can hold.
pub(crate) fn to_system_time(secs: UnixSeconds) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    t.unwrap_or(UNIX_EPOCH)
}

fn digits(b: &[u8], start: usize, len: usize) -> Option<i64> {
    let slice = b.get(start..start.checked_add(len)?)?;
    let mut n = 0i64;
    for &c in slice {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Some(n)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days: exact proleptic
// Gregorian conversions without tables or loops.
// http://howardhinnant.github.io/date_algorithms.html
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(parse("19700101T000000Z"), Some(0));
        assert_eq!(parse("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse("20000229T235959Z"), Some(951_868_799));
        assert_eq!(parse("20260101T000000Z"), Some(1_767_225_600));
        assert_eq!(format(1_767_225_600), "20260101T000000Z");
        assert_eq!(format(0), "19700101T000000Z");
        assert_eq!(format(-1), "19691231T235959Z");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "20260101T000000",
            "20260101T000000z",
            "20260101 000000Z",
            "2026-01-01T00:00:00Z",
            "20261301T000000Z",
            "20260230T000000Z",
            "20250229T000000Z",
            "20260100T000000Z",
            "20260101T240000Z",
            "20260101T006000Z",
            "20260101T000060Z",
            "2026010+T000000Z",
            "20260101T00000\u{e9}",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(is_valid_date("20240229"));
        assert!(!is_valid_date("20230229"));
        assert!(!is_valid_date("2024022"));
        assert!(!is_valid_date("2024022x"));
    }

    #[test]
    fn round_trips_every_day_for_centuries() {
        // Every day from 1900 to 2200 at a time that exercises all fields.
        let start = parse("19000101T000000Z").unwrap();
        let end = parse("22000101T000000Z").unwrap();
        let mut t = start + 3_600 * 13 + 60 * 37 + 29;
        while t < end {
            let s = format(t);
            assert_eq!(parse(&s), Some(t), "{s}");
            t += 86_400;
        }
    }

    #[test]
    fn system_time_conversions() {
        let t = UNIX_EPOCH + Duration::from_millis(1_767_225_600_999);
        assert_eq!(from_system_time(t), 1_767_225_600);
        let before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(from_system_time(before), -1);
        assert_eq!(
            to_system_time(1_767_225_600),
            UNIX_EPOCH + Duration::from_secs(1_767_225_600)
        );
        assert_eq!(from_system_time(to_system_time(-5)), -5);
    }
}
