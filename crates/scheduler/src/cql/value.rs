//! Typed values the query language compares: agent versions and dates.

use std::cmp::Ordering;
use std::fmt;

/// A dotted version compared numerically per component, missing components
/// counting as 0 (`1.10 > 1.9`, `1.2 == 1.2.0`).
///
/// Structural equality (`PartialEq`) is on the components as written, which
/// is what the syntax tree needs; use [`Version::compare`] for ordering.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub(crate) Vec<u64>);

impl Version {
    pub fn components(&self) -> &[u64] {
        &self.0
    }

    pub fn compare(&self, other: &Version) -> Ordering {
        let n = self.0.len().max(other.0.len());
        for i in 0..n {
            let a = self.0.get(i).copied().unwrap_or(0);
            let b = other.0.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => continue,
                ord => return ord,
            }
        }
        Ordering::Equal
    }

    /// Strict form for query arguments: `1.82.1` or `v1.82.1`.
    pub(crate) fn parse_strict(s: &str) -> Option<Version> {
        let body = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let mut parts = Vec::new();
        for part in body.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parts.push(part.parse::<u64>().ok()?);
        }
        Some(Version(parts))
    }

    /// Lenient form for what agents report: leading numeric components, so
    /// `1.82.1-beta+abc` reads as `1.82.1`. `None` if it starts with no digit.
    pub fn parse_lenient(s: &str) -> Option<Version> {
        let body = s.trim();
        let body = body.strip_prefix(['v', 'V']).unwrap_or(body);
        let mut parts = Vec::new();
        for part in body.split('.') {
            let digits: &str = &part[..part.bytes().take_while(u8::is_ascii_digit).count()];
            if digits.is_empty() {
                break;
            }
            match digits.parse::<u64>() {
                Ok(n) => parts.push(n),
                Err(_) => break,
            }
            if digits.len() != part.len() {
                break;
            }
        }
        if parts.is_empty() {
            None
        } else {
            Some(Version(parts))
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// 0001-01-01T00:00:00Z: the earliest date the printer can write back.
pub(crate) const MIN_TIME: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z.
pub(crate) const MAX_TIME: i64 = 253_402_300_799;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm, exact for all years).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// The canonical form the printer uses: `2018-06-18T22:28:28Z`.
pub(crate) fn format_time(t: i64) -> String {
    let t = t.clamp(MIN_TIME, MAX_TIME);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parses a `registeredAt` argument: epoch seconds, or one of the ECS date
/// forms `2018-06-18T22:28:28+00:00`, `2018-06-18T22:28:28Z`,
/// `2018-06-18T22:28:28` (UTC), `2018-06-18` (midnight UTC). Fractional
/// seconds are accepted and dropped.
pub(crate) fn parse_time(s: &str) -> Result<i64, &'static str> {
    const EXPECTED: &str =
        "expected a date such as 2018-06-18, 2018-06-18T22:28:28Z or epoch seconds";
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<i64>() {
            Ok(t) if t <= MAX_TIME => Ok(t),
            _ => Err("date is after 9999-12-31"),
        };
    }
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (Some(y), Some(m), Some(d)) = (num(0, 4), num(5, 2), num(8, 2)) else {
        return Err(EXPECTED);
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(EXPECTED);
    }
    if y < 1 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err("not a valid calendar date");
    }
    let mut t = days_from_civil(y, m, d) * 86_400;
    let mut i = 10;
    if i < b.len() {
        if !matches!(b[i], b'T' | b't') {
            return Err(EXPECTED);
        }
        let (Some(hh), Some(mm), Some(ss)) = (num(11, 2), num(14, 2), num(17, 2)) else {
            return Err(EXPECTED);
        };
        if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
            return Err(EXPECTED);
        }
        if hh > 23 || mm > 59 || ss > 59 {
            return Err("not a valid time of day");
        }
        t += hh * 3600 + mm * 60 + ss;
        i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return Err(EXPECTED);
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') if i + 1 == b.len() => {}
            Some(sign @ (b'+' | b'-')) => {
                let rest = &s[i + 1..];
                let (oh, om) = match rest.len() {
                    5 if rest.as_bytes()[2] == b':' => (num(i + 1, 2), num(i + 4, 2)),
                    4 => (num(i + 1, 2), num(i + 3, 2)),
                    2 => (num(i + 1, 2), Some(0)),
                    _ => (None, None),
                };
                let (Some(oh), Some(om)) = (oh, om) else {
                    return Err("expected a UTC offset such as +00:00");
                };
                if oh > 23 || om > 59 {
                    return Err("expected a UTC offset such as +00:00");
                }
                let offset = oh * 3600 + om * 60;
                // Local time minus its offset is UTC.
                t += if *sign == b'+' { -offset } else { offset };
            }
            Some(_) => return Err(EXPECTED),
        }
    }
    if !(MIN_TIME..=MAX_TIME).contains(&t) {
        return Err("date is outside 0001-01-01 .. 9999-12-31");
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let v = |s| Version::parse_strict(s).unwrap();
        assert_eq!(v("1.10.0").compare(&v("1.9.9")), Ordering::Greater);
        assert_eq!(v("1.2").compare(&v("1.2.0")), Ordering::Equal);
        assert_eq!(v("v2").compare(&v("10")), Ordering::Less);
        assert!(Version::parse_strict("1..2").is_none());
        assert!(Version::parse_strict("1.2-beta").is_none());
        assert!(Version::parse_strict("99999999999999999999999").is_none());
    }

    #[test]
    fn agent_versions_read_leniently() {
        assert_eq!(
            Version::parse_lenient("1.82.1-beta").unwrap().0,
            vec![1, 82, 1]
        );
        assert_eq!(Version::parse_lenient("v1.5").unwrap().0, vec![1, 5]);
        assert_eq!(Version::parse_lenient("1.2x.3").unwrap().0, vec![1, 2]);
        assert!(Version::parse_lenient("beta").is_none());
        assert!(Version::parse_lenient("").is_none());
    }

    #[test]
    fn all_ecs_date_forms_parse_to_the_same_instant() {
        let t = 1_529_360_908; // 2018-06-18T22:28:28Z
        assert_eq!(parse_time("2018-06-18T22:28:28+00:00"), Ok(t));
        assert_eq!(parse_time("2018-06-18T22:28:28Z"), Ok(t));
        assert_eq!(parse_time("2018-06-18T22:28:28"), Ok(t));
        assert_eq!(parse_time("2018-06-18T22:28:28.123Z"), Ok(t));
        assert_eq!(parse_time("2018-06-19T00:28:28+02:00"), Ok(t));
        assert_eq!(parse_time("2018-06-18T20:28:28-0200"), Ok(t));
        assert_eq!(parse_time("1529360908"), Ok(t));
        assert_eq!(parse_time("2018-06-18"), Ok(t - (22 * 3600 + 28 * 60 + 28)));
        assert_eq!(format_time(t), "2018-06-18T22:28:28Z");
    }

    #[test]
    fn bad_dates_are_rejected() {
        for bad in [
            "2018-02-30",
            "2019-02-29",
            "2018-13-01",
            "2018-06-18T24:00:00",
            "2018-06-18T22:28",
            "2018-06-18X",
            "18-06-18",
            "2018-06-18T22:28:28+0",
            "2018-06-18T22:28:28Zjunk",
            "0000-01-01",
            "99999999999999999999",
            "",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            parse_time("2020-02-29").map(format_time).as_deref(),
            Ok("2020-02-29T00:00:00Z")
        );
    }

    #[test]
    fn civil_conversions_round_trip_over_the_whole_range() {
        for t in [MIN_TIME, -1, 0, 1, 951_782_400, MAX_TIME] {
            assert_eq!(parse_time(&format_time(t)), Ok(t), "{t}");
        }
        assert_eq!(format_time(MIN_TIME), "0001-01-01T00:00:00Z");
        assert_eq!(format_time(MAX_TIME), "9999-12-31T23:59:59Z");
    }
}
