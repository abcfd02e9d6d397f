//! Aggregates of samples and the statistics CloudWatch computes from them.
//!
//! An [`Aggregate`] is what the store keeps per series, timestamp and unit:
//! sample count, sum, minimum, maximum and, when CloudWatch could compute
//! percentiles from the data, the distribution of values ([`Dist`]).
//! Aggregates merge associatively, which is what makes roll-up and period
//! bucketing one operation.
//!
//! Percentiles use the nearest-rank definition: `pX` is the smallest value
//! such that at least X % of the samples are at or below it (`p0` is the
//! minimum, `p100` the maximum). Trimmed statistics (`TM`, `WM`, `TC`, `TS`,
//! `IQM`) and `PR` weigh each sample by its count. As CloudWatch documents,
//! none of them is available when a value is negative or when the data came
//! as statistic sets that do not pin the values down.
//!
//! Distributions are exact up to [`MAX_EXACT_VALUES`] distinct values; beyond
//! that the store keeps values quantized to a relative precision of 2^-7
//! (bucket midpoints: a percentile is off by at most ~0.4 %) when the values
//! span up to eight binary orders of magnitude, coarser when they span more.

use std::fmt;

use crate::error::{MetricsError, Result};
use crate::types::Statistic;

/// Distinct values a stored distribution keeps exactly.
pub const MAX_EXACT_VALUES: usize = 1024;

/// The values behind an aggregate, for percentiles.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Percentiles cannot be computed (a statistic set with several distinct
    /// values was merged in).
    Unavailable,
    /// Every sample equals the aggregate's minimum (which equals its maximum).
    Uniform,
    /// Distinct values in ascending order, each with its positive count.
    Values(Vec<(f64, f64)>),
}

/// Samples of one series at one timestamp (or period) and unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub dist: Dist,
}

impl Aggregate {
    /// One sample.
    pub fn single(value: f64) -> Aggregate {
        Aggregate {
            count: 1.0,
            sum: value,
            min: value,
            max: value,
            dist: Dist::Uniform,
        }
    }

    /// A `Values`/`Counts` pair (counts default to 1). Zero counts are
    /// skipped; `None` if nothing is left.
    pub fn from_values(values: &[f64], counts: &[f64]) -> Option<Aggregate> {
        let mut pairs: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (*v, counts.get(i).copied().unwrap_or(1.0)))
            .filter(|(_, c)| *c > 0.0)
            .collect();
        if pairs.is_empty() {
            return None;
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged: Vec<(f64, f64)> = Vec::with_capacity(pairs.len());
        for (v, c) in pairs {
            match merged.last_mut() {
                Some(last) if last.0 == v => last.1 += c,
                _ => merged.push((v, c)),
            }
        }
        let count = merged.iter().map(|p| p.1).sum();
        let sum = merged.iter().map(|p| p.0 * p.1).sum();
        let min = merged[0].0;
        let max = merged[merged.len() - 1].0;
        let dist = if merged.len() == 1 {
            Dist::Uniform
        } else {
            Dist::Values(merged)
        };
        Some(Aggregate {
            count,
            sum,
            min,
            max,
            dist,
        })
    }

    /// A `StatisticSet`. CloudWatch can compute percentiles from one only
    /// when it pins every value down: one sample, or minimum equal to maximum.
    pub fn from_statistic_set(count: f64, sum: f64, min: f64, max: f64) -> Aggregate {
        let dist = if min == max {
            Dist::Uniform
        } else {
            Dist::Unavailable
        };
        Aggregate {
            count,
            sum,
            min,
            max,
            dist,
        }
    }

    /// Adds `other`'s samples to these.
    pub fn merge(&mut self, other: &Aggregate) {
        let dist = match (&self.dist, &other.dist) {
            (Dist::Unavailable, _) | (_, Dist::Unavailable) => Dist::Unavailable,
            (Dist::Uniform, Dist::Uniform) if self.min == other.min => Dist::Uniform,
            _ => Dist::Values(merge_sorted(&self.values(), &other.values())),
        };
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.dist = dist;
    }

    /// The distribution as (value, count) pairs; empty when unavailable.
    fn values(&self) -> Vec<(f64, f64)> {
        match &self.dist {
            Dist::Unavailable => Vec::new(),
            Dist::Uniform => vec![(self.min, self.count)],
            Dist::Values(v) => v.clone(),
        }
    }

    /// Keeps at most [`MAX_EXACT_VALUES`] distinct values: beyond that,
    /// values are quantized to the finest relative precision (2^-7 at best)
    /// that fits, and as a last resort neighbours are merged pairwise.
    pub fn compress(&mut self) {
        let Dist::Values(values) = &mut self.dist else {
            return;
        };
        if values.len() <= MAX_EXACT_VALUES {
            return;
        }
        let mut bits = 7;
        let mut quantized = quantize_all(values, bits);
        while quantized.len() > MAX_EXACT_VALUES && bits > 0 {
            bits -= 1;
            quantized = quantize_all(values, bits);
        }
        while quantized.len() > MAX_EXACT_VALUES {
            quantized = quantized
                .chunks(2)
                .map(|pair| {
                    let count: f64 = pair.iter().map(|p| p.1).sum();
                    let value = pair.iter().map(|p| p.0 * p.1).sum::<f64>() / count;
                    (value, count)
                })
                .collect();
        }
        *values = quantized;
    }

    pub fn average(&self) -> f64 {
        self.sum / self.count
    }

    pub fn basic(&self, statistic: Statistic) -> f64 {
        match statistic {
            Statistic::SampleCount => self.count,
            Statistic::Average => self.average(),
            Statistic::Sum => self.sum,
            Statistic::Minimum => self.min,
            Statistic::Maximum => self.max,
        }
    }

    /// The statistic's value, `None` when it cannot be computed from this
    /// data (percentiles of negative values or of statistic sets, trimmed
    /// means with nothing left between their bounds).
    pub fn stat(&self, stat: &Stat) -> Option<f64> {
        match stat {
            Stat::Basic(s) => Some(self.basic(*s)),
            Stat::Percentile(p) => self.percentile(*p),
            Stat::Trimmed { kind, lower, upper } => self.trimmed(*kind, *lower, *upper),
            Stat::PercentileRank { low, high } => {
                let values = self.distribution()?;
                let inside: f64 = values
                    .iter()
                    .filter(|(v, _)| low.is_none_or(|l| *v > l) && high.is_none_or(|h| *v <= h))
                    .map(|(_, c)| c)
                    .sum();
                Some(100.0 * inside / self.count)
            }
        }
    }

    /// The distribution, if percentiles may be computed from it.
    fn distribution(&self) -> Option<Vec<(f64, f64)>> {
        if matches!(self.dist, Dist::Unavailable) || self.min < 0.0 || self.count <= 0.0 {
            return None;
        }
        Some(self.values())
    }

    /// Nearest rank: the smallest value with at least `p` % of the samples
    /// at or below it.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let values = self.distribution()?;
        if p <= 0.0 {
            return Some(self.min);
        }
        let rank = (p / 100.0 * self.count).ceil().max(1.0);
        let mut seen = 0.0;
        for (v, c) in &values {
            seen += c;
            if seen >= rank - 1e-9 {
                return Some(*v);
            }
        }
        Some(self.max)
    }

    fn trimmed(&self, kind: TrimKind, lower: f64, upper: f64) -> Option<f64> {
        let values = self.distribution()?;
        let total = self.count;
        let (lo, hi) = (lower / 100.0 * total, upper / 100.0 * total);
        if kind == TrimKind::Winsorized {
            // Samples ranked at or below `lo` take the value of the first
            // sample above it; those above `hi` the value of the last kept.
            let mut seen = 0.0;
            let (mut low_value, mut high_value) = (None, None);
            for (v, c) in &values {
                seen += c;
                if low_value.is_none() && seen > lo + 1e-9 {
                    low_value = Some(*v);
                }
                if high_value.is_none() && seen >= hi - 1e-9 {
                    high_value = Some(*v);
                }
            }
            let (low_value, high_value) = (low_value?, high_value?);
            if low_value > high_value {
                return None;
            }
            let sum: f64 = values
                .iter()
                .map(|(v, c)| v.clamp(low_value, high_value) * c)
                .sum();
            return Some(sum / total);
        }
        // Each value occupies ranks [seen, seen + count); keep the part of
        // that interval inside (lo, hi].
        let (mut seen, mut count, mut sum) = (0.0, 0.0, 0.0);
        for (v, c) in &values {
            let start = seen;
            seen += c;
            let overlap = (seen.min(hi) - start.max(lo)).max(0.0);
            count += overlap;
            sum += overlap * v;
        }
        match kind {
            TrimKind::Count => Some(count),
            TrimKind::Sum => Some(sum),
            TrimKind::Mean if count > 0.0 => Some(sum / count),
            _ => None,
        }
    }
}

/// Merges two ascending (value, count) lists.
fn merge_sorted(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                i += 1;
                j += 1;
                (x.0, x.1 + y.1)
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                i += 1;
                *x
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (None, None) => break,
        };
        out.push(next);
    }
    out
}

fn quantize_all(values: &[(f64, f64)], bits: u32) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (v, c) in values {
        let q = quantize(*v, bits);
        match out.last_mut() {
            Some(last) if last.0 == q => last.1 += c,
            _ => out.push((q, *c)),
        }
    }
    out
}

/// The midpoint of the value's bucket when only the top `bits` mantissa
/// bits are kept (relative bucket width 2^-bits).
fn quantize(v: f64, bits: u32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let drop = 52 - bits;
    let raw = v.to_bits();
    let low = f64::from_bits(raw & !((1u64 << drop) - 1));
    let high = f64::from_bits((raw | ((1u64 << drop) - 1)).wrapping_add(1));
    if !high.is_finite() {
        return low;
    }
    (low + high) / 2.0
}

/// Which trimmed statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimKind {
    /// `TM`: mean of the samples between the bounds.
    Mean,
    /// `WM`: mean with samples outside the bounds moved to the bounds.
    Winsorized,
    /// `TC`: how many samples lie between the bounds.
    Count,
    /// `TS`: their sum.
    Sum,
}

/// A statistic as GetMetricData's `Stat`, PutMetricAlarm's `Statistic` or
/// `ExtendedStatistic`, or GetMetricStatistics' `ExtendedStatistics` name it.
#[derive(Debug, Clone, PartialEq)]
pub enum Stat {
    Basic(Statistic),
    /// `pNN.NN`, 0 to 100.
    Percentile(f64),
    /// `TM(a%:b%)`, `tmNN`, `IQM`, and the `WM`/`TC`/`TS` forms; bounds in
    /// percent.
    Trimmed {
        kind: TrimKind,
        lower: f64,
        upper: f64,
    },
    /// `PR(n:m)`: the percentage of samples in (n, m].
    PercentileRank {
        low: Option<f64>,
        high: Option<f64>,
    },
}

impl Stat {
    /// Parses any statistic CloudWatch names (`Average`, `p99`, `tm90`,
    /// `TM(10%:90%)`, `IQM`, `PR(:100)`, …).
    pub fn parse(text: &str, field: &str) -> Result<Stat> {
        if let Ok(s) = Statistic::parse(text, field) {
            return Ok(Stat::Basic(s));
        }
        Stat::parse_extended(text, field)
    }

    /// Parses an extended statistic only (no basic statistic names).
    pub fn parse_extended(text: &str, field: &str) -> Result<Stat> {
        parse_extended(text).ok_or_else(|| {
            MetricsError::invalid(format!(
                "The value {text} for parameter {field} is invalid. Use Average, Sum, SampleCount, Minimum, Maximum, a percentile p0.0 to p100 (up to two decimals), tmNN, wmNN, tcNN, tsNN, IQM, TM(a%:b%), WM(a%:b%), TC(a%:b%), TS(a%:b%) or PR(n:m)."
            ))
        })
    }

    /// Only percentiles (`pNN.NN`), as GetMetricStatistics' ExtendedStatistics
    /// documents them.
    pub fn parse_percentile(text: &str, field: &str) -> Result<Stat> {
        match parse_extended(text) {
            Some(stat @ Stat::Percentile(_)) => Ok(stat),
            _ => Err(MetricsError::invalid(format!(
                "The value {text} for parameter {field} is invalid. Percentiles are p0.0 to p100 with up to two decimals."
            ))),
        }
    }

    pub fn is_percentile(&self) -> bool {
        matches!(self, Stat::Percentile(_))
    }
}

fn parse_extended(text: &str) -> Option<Stat> {
    if text == "IQM" {
        return Some(Stat::Trimmed {
            kind: TrimKind::Mean,
            lower: 25.0,
            upper: 75.0,
        });
    }
    if let Some(rest) = text.strip_prefix('p') {
        return percent(rest).map(Stat::Percentile);
    }
    for (prefix, kind) in [
        ("tm", TrimKind::Mean),
        ("wm", TrimKind::Winsorized),
        ("tc", TrimKind::Count),
        ("ts", TrimKind::Sum),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let upper = percent(rest)?;
            return Some(Stat::Trimmed {
                kind,
                lower: 0.0,
                upper,
            });
        }
    }
    for (prefix, kind) in [
        ("TM(", TrimKind::Mean),
        ("WM(", TrimKind::Winsorized),
        ("TC(", TrimKind::Count),
        ("TS(", TrimKind::Sum),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let (lo, hi) = rest.strip_suffix(')')?.split_once(':')?;
            let lower = if lo.is_empty() {
                0.0
            } else {
                percent(lo.strip_suffix('%')?)?
            };
            let upper = if hi.is_empty() {
                100.0
            } else {
                percent(hi.strip_suffix('%')?)?
            };
            if lower >= upper {
                return None;
            }
            return Some(Stat::Trimmed { kind, lower, upper });
        }
    }
    if let Some(rest) = text.strip_prefix("PR(") {
        let (lo, hi) = rest.strip_suffix(')')?.split_once(':')?;
        let bound = |s: &str| -> Option<Option<f64>> {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some)
            }
        };
        let (low, high) = (bound(lo)?, bound(hi)?);
        if low.is_none() && high.is_none() {
            return None;
        }
        return Some(Stat::PercentileRank { low, high });
    }
    None
}

/// `0` to `100` with at most two decimals.
fn percent(text: &str) -> Option<f64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || int.len() > 3 || frac.len() > 2 {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.ends_with('.') {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    (0.0..=100.0).contains(&v).then_some(v)
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stat::Basic(s) => f.write_str(s.as_str()),
            Stat::Percentile(p) => write!(f, "p{p}"),
            Stat::Trimmed { kind, lower, upper } => {
                let name = match kind {
                    TrimKind::Mean => "TM",
                    TrimKind::Winsorized => "WM",
                    TrimKind::Count => "TC",
                    TrimKind::Sum => "TS",
                };
                write!(f, "{name}({lower}%:{upper}%)")
            }
            Stat::PercentileRank { low, high } => {
                let b = |v: &Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
                write!(f, "PR({}:{})", b(low), b(high))
            }
        }
    }
}

/// Encoding of a [`Dist`] in the store: NULL = unavailable, an empty blob =
/// uniform, else little-endian (value, count) f64 pairs.
pub(crate) fn dist_to_blob(dist: &Dist) -> Option<Vec<u8>> {
    match dist {
        Dist::Unavailable => None,
        Dist::Uniform => Some(Vec::new()),
        Dist::Values(values) => {
            let mut out = Vec::with_capacity(values.len() * 16);
            for (v, c) in values {
                out.extend_from_slice(&v.to_le_bytes());
                out.extend_from_slice(&c.to_le_bytes());
            }
            Some(out)
        }
    }
}

pub(crate) fn dist_from_blob(blob: Option<&[u8]>) -> Dist {
    match blob {
        None => Dist::Unavailable,
        Some([]) => Dist::Uniform,
        Some(bytes) => {
            let values = bytes
                .chunks_exact(16)
                .map(|chunk| {
                    let mut v = [0u8; 8];
                    let mut c = [0u8; 8];
                    v.copy_from_slice(&chunk[..8]);
                    c.copy_from_slice(&chunk[8..]);
                    (f64::from_le_bytes(v), f64::from_le_bytes(c))
                })
                .collect();
            Dist::Values(values)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[f64]) -> Aggregate {
        Aggregate::from_values(values, &[]).unwrap()
    }

    #[test]
    fn basic_statistics() {
        let a = of(&[1.0, 2.0, 3.0, 10.0]);
        assert_eq!(a.basic(Statistic::SampleCount), 4.0);
        assert_eq!(a.basic(Statistic::Sum), 16.0);
        assert_eq!(a.basic(Statistic::Average), 4.0);
        assert_eq!(a.basic(Statistic::Minimum), 1.0);
        assert_eq!(a.basic(Statistic::Maximum), 10.0);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let a = of(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(a.percentile(0.0), Some(1.0));
        assert_eq!(a.percentile(50.0), Some(50.0));
        assert_eq!(a.percentile(90.0), Some(90.0));
        assert_eq!(a.percentile(99.0), Some(99.0));
        assert_eq!(a.percentile(99.5), Some(100.0));
        assert_eq!(a.percentile(100.0), Some(100.0));
        let b = of(&[5.0]);
        assert_eq!(b.percentile(99.0), Some(5.0));
        // Counts weigh values: 9 × 1.0 and 1 × 100.0.
        let c = Aggregate::from_values(&[1.0, 100.0], &[9.0, 1.0]).unwrap();
        assert_eq!(c.percentile(90.0), Some(1.0));
        assert_eq!(c.percentile(90.01), Some(100.0));
    }

    #[test]
    fn percentiles_are_unavailable_for_negative_values_and_loose_statistic_sets() {
        assert_eq!(of(&[-1.0, 2.0]).percentile(50.0), None);
        let set = Aggregate::from_statistic_set(10.0, 55.0, 1.0, 10.0);
        assert_eq!(set.percentile(50.0), None);
        let pinned = Aggregate::from_statistic_set(4.0, 12.0, 3.0, 3.0);
        assert_eq!(pinned.percentile(50.0), Some(3.0));
        let mut merged = of(&[1.0, 2.0]);
        merged.merge(&set);
        assert_eq!(merged.percentile(50.0), None);
        assert_eq!(merged.count, 12.0);
        assert_eq!(merged.basic(Statistic::Maximum), 10.0);
    }

    #[test]
    fn merging_is_the_same_as_aggregating_everything_at_once() {
        let mut a = of(&[1.0, 5.0, 5.0]);
        a.merge(&Aggregate::single(3.0));
        a.merge(&of(&[5.0, 9.0]));
        let all = of(&[1.0, 5.0, 5.0, 3.0, 5.0, 9.0]);
        assert_eq!(a, all);
        let mut u = Aggregate::single(2.0);
        u.merge(&Aggregate::single(2.0));
        assert_eq!(u.dist, Dist::Uniform);
        assert_eq!(u.count, 2.0);
    }

    #[test]
    fn trimmed_statistics() {
        let a = of(&(1..=10).map(f64::from).collect::<Vec<_>>());
        let tm = |lo, hi| {
            a.stat(&Stat::Trimmed {
                kind: TrimKind::Mean,
                lower: lo,
                upper: hi,
            })
        };
        assert_eq!(tm(10.0, 90.0), Some(5.5)); // 2..=9
        assert_eq!(tm(0.0, 50.0), Some(3.0)); // 1..=5
        let tc = a.stat(&Stat::Trimmed {
            kind: TrimKind::Count,
            lower: 10.0,
            upper: 90.0,
        });
        assert_eq!(tc, Some(8.0));
        let ts = a.stat(&Stat::Trimmed {
            kind: TrimKind::Sum,
            lower: 10.0,
            upper: 90.0,
        });
        assert_eq!(ts, Some(44.0));
        // Winsorized: 1 → 2 and 10 → 9: (2+2+3+…+9+9)/10 = 5.5.
        let wm = a.stat(&Stat::Trimmed {
            kind: TrimKind::Winsorized,
            lower: 10.0,
            upper: 90.0,
        });
        assert_eq!(wm, Some(5.5));
        let pr = a.stat(&Stat::PercentileRank {
            low: None,
            high: Some(3.0),
        });
        assert_eq!(pr, Some(30.0));
    }

    #[test]
    fn statistic_names_parse() {
        assert_eq!(
            Stat::parse("Average", "Stat").unwrap(),
            Stat::Basic(Statistic::Average)
        );
        assert_eq!(Stat::parse("p99", "Stat").unwrap(), Stat::Percentile(99.0));
        assert_eq!(
            Stat::parse("p99.99", "Stat").unwrap(),
            Stat::Percentile(99.99)
        );
        assert_eq!(Stat::parse("p0.0", "Stat").unwrap(), Stat::Percentile(0.0));
        assert_eq!(
            Stat::parse("p100", "Stat").unwrap(),
            Stat::Percentile(100.0)
        );
        assert_eq!(
            Stat::parse("tm90", "Stat").unwrap(),
            Stat::Trimmed {
                kind: TrimKind::Mean,
                lower: 0.0,
                upper: 90.0
            }
        );
        assert_eq!(
            Stat::parse("TM(10%:90%)", "Stat").unwrap(),
            Stat::Trimmed {
                kind: TrimKind::Mean,
                lower: 10.0,
                upper: 90.0
            }
        );
        assert_eq!(
            Stat::parse("IQM", "Stat").unwrap(),
            Stat::Trimmed {
                kind: TrimKind::Mean,
                lower: 25.0,
                upper: 75.0
            }
        );
        for bad in [
            "p101",
            "p99.999",
            "p",
            "p-1",
            "average",
            "TM(90%:10%)",
            "p1e2",
            "p99.",
            "PR(:)",
        ] {
            let err = Stat::parse(bad, "MetricStat.Stat").unwrap_err();
            assert!(err.to_string().contains("MetricStat.Stat"), "{bad}: {err}");
        }
        assert!(Stat::parse_percentile("tm90", "ExtendedStatistics.member.1").is_err());
    }

    #[test]
    fn compression_bounds_distinct_values_and_keeps_percentiles_close() {
        let values: Vec<f64> = (0..5000).map(|i| 1000.0 + f64::from(i) * 1.01).collect();
        let mut a = of(&values);
        let exact = a.percentile(99.0).unwrap();
        a.compress();
        let Dist::Values(v) = &a.dist else {
            panic!("{:?}", a.dist)
        };
        assert!(v.len() <= MAX_EXACT_VALUES, "{}", v.len());
        let approx = a.percentile(99.0).unwrap();
        assert!(
            (approx - exact).abs() / exact < 0.005,
            "{approx} vs {exact}"
        );
        assert_eq!(a.count, 5000.0);
        // A range of 600 binary orders of magnitude still fits.
        let wide: Vec<f64> = (0..3000).map(|i| 2f64.powi(i / 5 - 300) * 1.3).collect();
        let mut w = of(&wide);
        w.compress();
        let Dist::Values(v) = &w.dist else { panic!() };
        assert!(v.len() <= MAX_EXACT_VALUES, "{}", v.len());
        assert_eq!(w.count, 3000.0);
    }

    #[test]
    fn blobs_round_trip() {
        for dist in [
            Dist::Unavailable,
            Dist::Uniform,
            Dist::Values(vec![(1.0, 2.0), (3.5, 1.0)]),
        ] {
            let blob = dist_to_blob(&dist);
            assert_eq!(dist_from_blob(blob.as_deref()), dist);
        }
    }
}
