//! The small shared vocabulary: timestamps, dimensions, units, and the enums
//! of the CloudWatch model (`StandardUnit`, `Statistic`, `StateValue`,
//! `ComparisonOperator`, …), each with the exact wire spelling in `as_str`
//! and a `FromStr` that names the field in its error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::MetricsError;

/// Milliseconds since the Unix epoch, UTC: CloudWatch's own precision
/// (`MetricDatum.Timestamp` is "the number of milliseconds since Jan 1,
/// 1970"). Wire timestamps (epoch seconds with fractions, ISO 8601) are
/// converted at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// Timestamps the store accepts: years 1970 to 9999. Anything outside is a
/// bad input, not a reason to overflow.
const MAX_MILLIS: i64 = 253_402_300_799_999;

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn from_secs(s: i64) -> Timestamp {
        Timestamp(s * 1000)
    }

    /// Epoch seconds as the JSON protocols carry them. `None` for NaN,
    /// infinities and dates outside 1970–9999.
    pub fn from_secs_f64(s: f64) -> Option<Timestamp> {
        if !s.is_finite() {
            return None;
        }
        let ms = (s * 1000.0).round();
        if !(0.0..=MAX_MILLIS as f64).contains(&ms) {
            return None;
        }
        Some(Timestamp(ms as i64))
    }

    /// The wall clock. Only binaries and benches call this: everything else
    /// takes `now` as an argument.
    pub fn now() -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    pub fn minus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_sub(secs.saturating_mul(1000)))
    }

    /// Rounded down to a multiple of `secs` seconds since the epoch.
    pub fn floor_to(self, secs: i64) -> Timestamp {
        let step = secs.max(1) * 1000;
        Timestamp(self.0.div_euclid(step) * step)
    }

    /// `2026-06-12T10:01:00.000+0000`, the form of `StateReasonData` and
    /// alarm history JSON.
    pub fn iso_millis(self) -> String {
        let (y, mo, d, h, mi, s, ms) = civil(self);
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}+0000")
    }

    /// `12/06/26 10:01:00` (day/month/year), the form inside state reasons.
    pub fn reason_date(self) -> String {
        let (y, mo, d, h, mi, s, _) = civil(self);
        format!("{d:02}/{mo:02}/{:02} {h:02}:{mi:02}:{s:02}", y % 100)
    }
}

/// (year, month, day, hour, minute, second, millisecond), UTC.
fn civil(t: Timestamp) -> (i64, i64, i64, i64, i64, i64, i64) {
    let ms = t.0.rem_euclid(1000);
    let secs = t.0.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let date = i32::try_from(days)
        .ok()
        .and_then(|d| d.checked_add(2_440_588))
        .and_then(|jd| time::Date::from_julian_day(jd).ok())
        .unwrap_or(time::Date::MIN);
    (
        i64::from(date.year()),
        i64::from(u8::from(date.month())),
        i64::from(date.day()),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms,
    )
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.iso_millis())
    }
}

/// One dimension of a metric (`Dimension`: `Name`, `Value`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

impl Dimension {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Dimension {
        Dimension {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A resource tag (`Tag`: `Key`, `Value`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Declares a wire enum: variants, their exact wire strings, `as_str`,
/// `Display`, serde as the wire string, and a parser that names the field.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            /// Parses the wire spelling; the error names `field` and lists
            /// the allowed values.
            pub fn parse(value: &str, field: &str) -> Result<$name, MetricsError> {
                match value {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(MetricsError::InvalidParameterValue(format!(
                        "The value {value} for parameter {field} is invalid. Valid values are: {}.",
                        [$($wire),+].join(", ")
                    ))),
                }
            }
        }

        impl FromStr for $name {
            type Err = MetricsError;
            fn from_str(s: &str) -> Result<$name, MetricsError> {
                $name::parse(s, stringify!($name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s, stringify!($name)).map_err(serde::de::Error::custom)
            }
        }
    };
}

wire_enum! {
    /// `StandardUnit`. Data with different units is aggregated separately;
    /// CloudWatch never converts between units.
    StandardUnit {
        Seconds = "Seconds",
        Microseconds = "Microseconds",
        Milliseconds = "Milliseconds",
        Bytes = "Bytes",
        Kilobytes = "Kilobytes",
        Megabytes = "Megabytes",
        Gigabytes = "Gigabytes",
        Terabytes = "Terabytes",
        Bits = "Bits",
        Kilobits = "Kilobits",
        Megabits = "Megabits",
        Gigabits = "Gigabits",
        Terabits = "Terabits",
        Percent = "Percent",
        Count = "Count",
        BytesPerSecond = "Bytes/Second",
        KilobytesPerSecond = "Kilobytes/Second",
        MegabytesPerSecond = "Megabytes/Second",
        GigabytesPerSecond = "Gigabytes/Second",
        TerabytesPerSecond = "Terabytes/Second",
        BitsPerSecond = "Bits/Second",
        KilobitsPerSecond = "Kilobits/Second",
        MegabitsPerSecond = "Megabits/Second",
        GigabitsPerSecond = "Gigabits/Second",
        TerabitsPerSecond = "Terabits/Second",
        CountPerSecond = "Count/Second",
        None = "None",
    }
}

impl StandardUnit {
    /// The stable number stored with each row (the index in the model's
    /// enum order, which never changes for existing members).
    pub(crate) fn code(self) -> i64 {
        StandardUnit::ALL
            .iter()
            .position(|u| *u == self)
            .unwrap_or(26) as i64
    }

    pub(crate) fn from_code(code: i64) -> StandardUnit {
        usize::try_from(code)
            .ok()
            .and_then(|i| StandardUnit::ALL.get(i).copied())
            .unwrap_or(StandardUnit::None)
    }
}

wire_enum! {
    /// `Statistic`: the five basic statistics.
    Statistic {
        SampleCount = "SampleCount",
        Average = "Average",
        Sum = "Sum",
        Minimum = "Minimum",
        Maximum = "Maximum",
    }
}

wire_enum! {
    /// `StateValue` of an alarm.
    StateValue {
        Ok = "OK",
        Alarm = "ALARM",
        InsufficientData = "INSUFFICIENT_DATA",
    }
}

wire_enum! {
    /// `ComparisonOperator`. The three band operators belong to anomaly
    /// detection alarms (`ThresholdMetricId`), which Flotilla refuses.
    ComparisonOperator {
        GreaterThanOrEqualToThreshold = "GreaterThanOrEqualToThreshold",
        GreaterThanThreshold = "GreaterThanThreshold",
        LessThanThreshold = "LessThanThreshold",
        LessThanOrEqualToThreshold = "LessThanOrEqualToThreshold",
        LessThanLowerOrGreaterThanUpperThreshold = "LessThanLowerOrGreaterThanUpperThreshold",
        LessThanLowerThreshold = "LessThanLowerThreshold",
        GreaterThanUpperThreshold = "GreaterThanUpperThreshold",
    }
}

impl ComparisonOperator {
    /// Whether `value` breaches `threshold` under this operator. The band
    /// operators never breach a static threshold (they are refused earlier).
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            ComparisonOperator::GreaterThanOrEqualToThreshold => value >= threshold,
            ComparisonOperator::GreaterThanThreshold => value > threshold,
            ComparisonOperator::LessThanThreshold => value < threshold,
            ComparisonOperator::LessThanOrEqualToThreshold => value <= threshold,
            ComparisonOperator::LessThanLowerOrGreaterThanUpperThreshold
            | ComparisonOperator::LessThanLowerThreshold
            | ComparisonOperator::GreaterThanUpperThreshold => false,
        }
    }

    /// How state reasons say it: "greater than or equal to".
    pub fn phrase(self) -> &'static str {
        match self {
            ComparisonOperator::GreaterThanOrEqualToThreshold => "greater than or equal to",
            ComparisonOperator::GreaterThanThreshold => "greater than",
            ComparisonOperator::LessThanThreshold => "less than",
            ComparisonOperator::LessThanOrEqualToThreshold => "less than or equal to",
            ComparisonOperator::LessThanLowerOrGreaterThanUpperThreshold => {
                "less than the lower thresholds or greater than the upper thresholds"
            }
            ComparisonOperator::LessThanLowerThreshold => "less than the lower thresholds",
            ComparisonOperator::GreaterThanUpperThreshold => "greater than the upper thresholds",
        }
    }

    pub fn is_static(self) -> bool {
        matches!(
            self,
            ComparisonOperator::GreaterThanOrEqualToThreshold
                | ComparisonOperator::GreaterThanThreshold
                | ComparisonOperator::LessThanThreshold
                | ComparisonOperator::LessThanOrEqualToThreshold
        )
    }
}

wire_enum! {
    /// `TreatMissingData` (a free string in the model; these four are the
    /// documented values). The default is `missing`.
    TreatMissingData {
        Missing = "missing",
        Ignore = "ignore",
        Breaching = "breaching",
        NotBreaching = "notBreaching",
    }
}

wire_enum! {
    /// `EvaluateLowSampleCountPercentile` (a free string in the model).
    LowSampleCountPercentile {
        Evaluate = "evaluate",
        Ignore = "ignore",
    }
}

wire_enum! {
    /// `ScanBy`. The default is `TimestampDescending`.
    ScanBy {
        TimestampDescending = "TimestampDescending",
        TimestampAscending = "TimestampAscending",
    }
}

wire_enum! {
    /// `HistoryItemType`. Flotilla writes the first three; the contributor
    /// types belong to multi-time-series alarms it does not have.
    HistoryItemType {
        ConfigurationUpdate = "ConfigurationUpdate",
        StateUpdate = "StateUpdate",
        Action = "Action",
        AlarmContributorStateUpdate = "AlarmContributorStateUpdate",
        AlarmContributorAction = "AlarmContributorAction",
    }
}

impl HistoryItemType {
    pub(crate) fn code(self) -> i64 {
        HistoryItemType::ALL
            .iter()
            .position(|t| *t == self)
            .unwrap_or(0) as i64
    }

    pub(crate) fn from_code(code: i64) -> HistoryItemType {
        usize::try_from(code)
            .ok()
            .and_then(|i| HistoryItemType::ALL.get(i).copied())
            .unwrap_or(HistoryItemType::ConfigurationUpdate)
    }
}

wire_enum! {
    /// `AlarmType`. Only metric alarms exist in Flotilla; asking for the
    /// others returns empty lists, as it would in an account without them.
    AlarmType {
        CompositeAlarm = "CompositeAlarm",
        MetricAlarm = "MetricAlarm",
        LogAlarm = "LogAlarm",
    }
}

wire_enum! {
    /// `RecentlyActive` of ListMetrics.
    RecentlyActive {
        Pt3h = "PT3H",
    }
}

/// Formats a double the way CloudWatch's state reasons do (Java's
/// `Double.toString`): `85.0`, `0.25`, `1.0E7`, `1.0E-5`.
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let abs = v.abs();
    if (1e-3..1e7).contains(&abs) {
        let s = format!("{v}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // Rust: "1e7", "1.5e-5" → Java: "1.0E7", "1.5E-5".
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exp}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_cloudwatch_writes_them() {
        // 2026-06-12T10:01:00Z
        let t = Timestamp::from_secs(1_781_258_460);
        assert_eq!(t.iso_millis(), "2026-06-12T10:01:00.000+0000");
        assert_eq!(t.reason_date(), "12/06/26 10:01:00");
        assert_eq!(
            Timestamp(1_500).iso_millis(),
            "1970-01-01T00:00:01.500+0000"
        );
    }

    #[test]
    fn wire_seconds_convert_and_reject_nonsense() {
        assert_eq!(Timestamp::from_secs_f64(1.5), Some(Timestamp(1500)));
        assert_eq!(Timestamp::from_secs_f64(f64::NAN), None);
        assert_eq!(Timestamp::from_secs_f64(-1.0), None);
        assert_eq!(Timestamp::from_secs_f64(1e300), None);
    }

    #[test]
    fn floor_to_rounds_down() {
        assert_eq!(Timestamp(61_500).floor_to(60), Timestamp(60_000));
        assert_eq!(Timestamp(59_999).floor_to(10), Timestamp(50_000));
    }

    #[test]
    fn enums_round_trip_their_wire_spelling_and_name_the_field() {
        for unit in StandardUnit::ALL {
            assert_eq!(StandardUnit::parse(unit.as_str(), "Unit").unwrap(), *unit);
            assert_eq!(StandardUnit::from_code(unit.code()), *unit);
        }
        let err = TreatMissingData::parse("sometimes", "TreatMissingData").unwrap_err();
        assert_eq!(err.code(), "InvalidParameterValue");
        assert!(err.to_string().contains("TreatMissingData"), "{err}");
        assert!(err.to_string().contains("notBreaching"), "{err}");
    }

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(java_double(85.0), "85.0");
        assert_eq!(java_double(0.25), "0.25");
        assert_eq!(java_double(8.891518474692088), "8.891518474692088");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.5e-5), "1.5E-5");
        assert_eq!(java_double(-3.0), "-3.0");
        assert_eq!(java_double(0.0), "0.0");
    }

    #[test]
    fn operators_compare_as_named() {
        use ComparisonOperator::*;
        assert!(GreaterThanOrEqualToThreshold.breaches(80.0, 80.0));
        assert!(!GreaterThanThreshold.breaches(80.0, 80.0));
        assert!(GreaterThanThreshold.breaches(80.5, 80.0));
        assert!(LessThanThreshold.breaches(79.0, 80.0));
        assert!(!LessThanThreshold.breaches(80.0, 80.0));
        assert!(LessThanOrEqualToThreshold.breaches(80.0, 80.0));
        assert!(!LessThanOrEqualToThreshold.breaches(80.1, 80.0));
    }
}
