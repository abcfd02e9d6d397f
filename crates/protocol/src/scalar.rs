//! Scalars as text, shared by the Query and XML codecs: timestamps in their
//! three formats, base64, and numbers that read back exactly.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Number, Value};
use time::format_description::well_known::{Iso8601, Rfc2822, Rfc3339};
use time::OffsetDateTime;

/// Standard base64; padding optional on input (some clients strip it),
/// always written.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Seconds since the epoch as the generated types hold them. Whole seconds
/// and nanoseconds are combined in one rounding, so a value written with
/// millisecond precision reads back as the same `f64`.
pub(crate) fn epoch_seconds(secs: i64, nanos: u32) -> f64 {
    secs as f64 + f64::from(nanos) / 1e9
}

/// A timestamp as Query requests carry it: ISO-8601 (`2026-01-01T00:00:00Z`,
/// fractions and offsets allowed) or epoch seconds (`1767225600.5`).
pub(crate) fn parse_timestamp(text: &str) -> Option<f64> {
    let t = text.trim();
    if let Ok(dt) =
        OffsetDateTime::parse(t, &Rfc3339).or_else(|_| OffsetDateTime::parse(t, &Iso8601::DEFAULT))
    {
        return Some(epoch_seconds(dt.unix_timestamp(), dt.nanosecond()));
    }
    if let Ok(dt) = OffsetDateTime::parse(t, &Rfc2822) {
        return Some(epoch_seconds(dt.unix_timestamp(), dt.nanosecond()));
    }
    // Epoch seconds: digits, an optional sign and fraction, nothing else
    // (`f64::from_str` would also take `inf` and `NaN`).
    if !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+')
    {
        return t.parse::<f64>().ok().filter(|v| v.is_finite());
    }
    None
}

/// The date and time of an epoch-seconds value, to the millisecond.
fn datetime_ms(secs: f64) -> Option<(OffsetDateTime, u32)> {
    if !secs.is_finite() {
        return None;
    }
    let ms = (secs * 1000.0).round();
    // Within the years 0000-9999 that ISO-8601 and RFC 822 can spell.
    if !(-62_167_219_200_000.0..=253_402_300_799_999.0).contains(&ms) {
        return None;
    }
    let ms = ms as i64;
    let dt = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    Some((dt, ms.rem_euclid(1000) as u32))
}

/// `2026-01-01T00:00:00.000Z`: what AWS's Query services send.
pub(crate) fn format_iso8601(secs: f64) -> Option<String> {
    let (dt, ms) = datetime_ms(secs)?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        ms
    ))
}

/// `Thu, 01 Jan 2026 00:00:00 GMT` (HTTP dates: whole seconds).
pub(crate) fn format_rfc822(secs: f64) -> Option<String> {
    let (dt, _) = datetime_ms(secs.floor())?;
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    Some(format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[dt.weekday().number_days_from_monday() as usize],
        dt.day(),
        MONTHS[u8::from(dt.month()) as usize - 1],
        dt.year(),
        dt.hour(),
        dt.minute(),
        dt.second()
    ))
}

/// A number as text that parses back to the same value: Rust's shortest
/// round-trip form, in exponent notation when the plain form would be long.
pub(crate) fn format_f64(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-5..1e16).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// A JSON number from a finite float.
pub(crate) fn float_value(v: f64) -> Option<Value> {
    Number::from_f64(v).map(Value::Number)
}

/// The value of a JSON number as an `i64`, if it is a whole number in range.
pub(crate) fn as_whole(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f))
        .then_some(f as i64)
}

/// What a member of an integer kind may hold.
pub(crate) fn in_range(v: i64, long: bool) -> bool {
    long || i32::try_from(v).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_in_every_form_a_client_sends() {
        assert_eq!(
            parse_timestamp("2026-01-01T00:00:00Z"),
            Some(1_767_225_600.0)
        );
        assert_eq!(
            parse_timestamp("2026-01-01T00:00:00.5Z"),
            Some(1_767_225_600.5)
        );
        assert_eq!(
            parse_timestamp("2026-01-01T01:00:00+01:00"),
            Some(1_767_225_600.0)
        );
        assert_eq!(
            parse_timestamp("2026-01-01T00:00:00.123456Z"),
            Some(epoch_seconds(1_767_225_600, 123_456_000))
        );
        assert_eq!(parse_timestamp("1767225600"), Some(1_767_225_600.0));
        assert_eq!(parse_timestamp("1767225600.25"), Some(1_767_225_600.25));
        assert_eq!(
            parse_timestamp("Thu, 01 Jan 2026 00:00:00 GMT"),
            Some(1_767_225_600.0)
        );
        assert_eq!(parse_timestamp("NaN"), None);
        assert_eq!(parse_timestamp("inf"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp(""), None);
    }

    #[test]
    fn timestamps_are_written_to_the_millisecond() {
        assert_eq!(
            format_iso8601(1_767_225_600.0).unwrap(),
            "2026-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_iso8601(1_767_225_600.123_4).unwrap(),
            "2026-01-01T00:00:00.123Z"
        );
        assert_eq!(format_iso8601(-0.5).unwrap(), "1969-12-31T23:59:59.500Z");
        assert_eq!(
            format_rfc822(1_767_225_600.9).unwrap(),
            "Thu, 01 Jan 2026 00:00:00 GMT"
        );
        assert_eq!(format_iso8601(1e15), None, "past the year 9999");
        assert_eq!(format_iso8601(f64::NAN), None);
        for ms in [0i64, 1, 999, 1_767_225_600_123, 4_102_444_799_999] {
            let v = epoch_seconds(
                ms.div_euclid(1000),
                (ms.rem_euclid(1000) * 1_000_000) as u32,
            );
            assert_eq!(
                parse_timestamp(&format_iso8601(v).unwrap()),
                Some(v),
                "{ms} ms"
            );
        }
    }

    #[test]
    fn numbers_read_back_exactly() {
        for v in [
            0.0,
            -0.0,
            1.0,
            0.1,
            -2.5,
            1e300,
            -1e-300,
            123_456_789.123_456_79,
            5e-6,
            1e16,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            assert_eq!(format_f64(v).parse::<f64>().unwrap(), v, "{v}");
        }
        assert_eq!(format_f64(3.0), "3");
        assert_eq!(format_f64(1e300), "1e300");
    }

    #[test]
    fn base64_takes_padding_or_not() {
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert_eq!(base64_decode("a b"), None);
        assert_eq!(base64_encode(b"hi"), "aGk=");
    }
}
