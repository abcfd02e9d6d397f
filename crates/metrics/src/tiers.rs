//! Resolution tiers, their time partitions, and CloudWatch's retention rules.
//!
//! | tier  | resolution | partition | kept (then rolled into the next tier) |
//! |-------|-----------:|----------:|---------------------------------------|
//! | `raw` | as written | 10 min    | 3 hours                               |
//! | `m1`  | 60 s       | 1 day     | 15 days                               |
//! | `m5`  | 300 s      | 7 days    | 63 days                               |
//! | `h1`  | 3600 s     | 35 days   | 455 days, then deleted                |
//!
//! `raw` holds data as written (high-resolution data at its second,
//! standard data at its minute), appended: one row per series, timestamp,
//! unit and write batch, so a busy series costs an insert per batch instead
//! of rewriting a growing row; the coarser tiers hold one merged row per
//! series, timestamp and unit.
//!
//! Each partition is its own SQLite table (`m1_20615`: the 20,615th day since
//! the epoch), so retention drops whole tables instead of deleting rows.
//! Each tier has a *floor*, aligned to its partitions: data at or after the
//! floor is written to that tier, older data to the next tier down. Raising a
//! floor (maintenance) closes the partitions below it; their rows are then
//! moved, aggregated, into the next tier and the emptied table is dropped.
//! Every row lives in exactly one table at every commit, so readers simply
//! read every partition that overlaps their time range.

use crate::types::Timestamp;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Tier {
    Raw,
    M1,
    M5,
    H1,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Raw, Tier::M1, Tier::M5, Tier::H1];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Tier::Raw => "raw",
            Tier::M1 => "m1",
            Tier::M5 => "m5",
            Tier::H1 => "h1",
        }
    }

    /// Timestamps in this tier are multiples of this many milliseconds.
    pub fn resolution_ms(self) -> i64 {
        match self {
            Tier::Raw => SECOND,
            Tier::M1 => MINUTE,
            Tier::M5 => 5 * MINUTE,
            Tier::H1 => HOUR,
        }
    }

    /// `raw` partitions are short: rows are ordered by series, so a batch
    /// that touches many series dirties a page per series of the current
    /// partition, and a small partition has few pages.
    pub fn partition_ms(self) -> i64 {
        match self {
            Tier::Raw => 10 * MINUTE,
            Tier::M1 => DAY,
            Tier::M5 => 7 * DAY,
            Tier::H1 => 35 * DAY,
        }
    }

    /// How long data stays at this tier's resolution.
    pub fn retention_ms(self) -> i64 {
        match self {
            Tier::Raw => 3 * HOUR,
            Tier::M1 => 15 * DAY,
            Tier::M5 => 63 * DAY,
            Tier::H1 => 455 * DAY,
        }
    }

    /// Where this tier's closed partitions go; `None`: they are deleted.
    pub fn next(self) -> Option<Tier> {
        match self {
            Tier::Raw => Some(Tier::M1),
            Tier::M1 => Some(Tier::M5),
            Tier::M5 => Some(Tier::H1),
            Tier::H1 => None,
        }
    }

    pub fn partition_of(self, ts: i64) -> i64 {
        ts.div_euclid(self.partition_ms())
    }

    pub fn partition_start(self, partition: i64) -> i64 {
        partition.saturating_mul(self.partition_ms())
    }

    pub fn table(self, partition: i64) -> String {
        format!("{}_{partition}", self.prefix())
    }

    /// `m1_20615` → (M1, 20615).
    pub fn parse_table(name: &str) -> Option<(Tier, i64)> {
        let (prefix, number) = name.split_once('_')?;
        let tier = Tier::ALL.into_iter().find(|t| t.prefix() == prefix)?;
        Some((tier, number.parse().ok()?))
    }

    /// The floor this tier should have at `now`: the start of the oldest
    /// partition that still holds data younger than the retention.
    pub fn floor_at(self, now: Timestamp) -> i64 {
        let oldest_kept = now.millis().saturating_sub(self.retention_ms());
        self.partition_start(self.partition_of(oldest_kept))
    }

    /// Aligns a timestamp to this tier's resolution.
    pub fn align(self, ts: i64) -> i64 {
        ts.div_euclid(self.resolution_ms()) * self.resolution_ms()
    }
}

/// The floor of every tier, in milliseconds.
pub(crate) type Floors = [i64; 4];

/// The tier a sample at `ts` is written to: the first whose floor it is not
/// older than. `None`: older than everything retained.
pub(crate) fn route(ts: i64, floors: &Floors) -> Option<Tier> {
    Tier::ALL.into_iter().find(|t| ts >= floors[t.index()])
}

/// CloudWatch's rule for which periods return data of a given age: any
/// period within 3 hours, a multiple of 60 s up to 15 days, of 300 s up to
/// 63 days, of 3600 s beyond. A bucket of another period returns nothing.
pub(crate) fn period_serves(period_secs: i64, bucket_start: Timestamp, now: Timestamp) -> bool {
    let age = now.millis().saturating_sub(bucket_start.millis());
    let step = if age <= 3 * HOUR {
        1
    } else if age <= 15 * DAY {
        60
    } else if age <= 63 * DAY {
        300
    } else {
        3600
    };
    period_secs % step == 0
}

/// How CloudWatch rounds a query's `StartTime`: to the period for periods
/// under a minute; otherwise to the minute (start less than 15 days ago),
/// five minutes (up to 63 days) or hour (older).
pub(crate) fn round_start(start: Timestamp, period_secs: i64, now: Timestamp) -> Timestamp {
    if period_secs < 60 {
        return start.floor_to(period_secs);
    }
    let age = now.millis().saturating_sub(start.millis());
    if age < 15 * DAY {
        start.floor_to(60)
    } else if age < 63 * DAY {
        start.floor_to(300)
    } else {
        start.floor_to(3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_name_their_partition() {
        assert_eq!(Tier::M1.table(20615), "m1_20615");
        assert_eq!(Tier::parse_table("m1_20615"), Some((Tier::M1, 20615)));
        assert_eq!(Tier::parse_table("raw_5"), Some((Tier::Raw, 5)));
        assert_eq!(Tier::parse_table("series"), None);
        assert_eq!(Tier::parse_table("h2_1"), None);
    }

    #[test]
    fn partitions_nest() {
        for pair in Tier::ALL.windows(2) {
            assert_eq!(pair[1].partition_ms() % pair[0].partition_ms(), 0);
            assert_eq!(pair[1].resolution_ms() % pair[0].resolution_ms(), 0);
        }
    }

    #[test]
    fn floors_keep_each_tier_for_its_retention() {
        let now = Timestamp(100 * DAY + 5 * HOUR + 30 * MINUTE);
        // Raw keeps 3 h: the oldest kept sample is at 2:30, in the partition
        // of 2:30 to 2:40.
        assert_eq!(Tier::Raw.floor_at(now), 100 * DAY + 2 * HOUR + 30 * MINUTE);
        assert_eq!(Tier::M1.floor_at(now), 85 * DAY);
        // 7-day partitions: day 37 lies in the partition starting at day 35.
        assert_eq!(Tier::M5.floor_at(now), 35 * DAY);
    }

    #[test]
    fn samples_route_by_age() {
        let floors: Floors = [3 * DAY, 2 * DAY, DAY, 0];
        assert_eq!(route(4 * DAY, &floors), Some(Tier::Raw));
        assert_eq!(route(5 * DAY / 2, &floors), Some(Tier::M1));
        assert_eq!(route(3 * DAY / 2, &floors), Some(Tier::M5));
        assert_eq!(route(DAY / 2, &floors), Some(Tier::H1));
        let none: Floors = [i64::MAX; 4];
        assert_eq!(route(0, &none), None);
    }

    #[test]
    fn old_data_needs_coarser_periods() {
        let now = Timestamp(400 * DAY);
        assert!(period_serves(10, now.minus_secs(60), now));
        assert!(!period_serves(10, now.minus_secs(4 * 3600), now));
        assert!(period_serves(60, now.minus_secs(4 * 3600), now));
        assert!(!period_serves(60, now.minus_secs(20 * 86_400), now));
        assert!(period_serves(300, now.minus_secs(20 * 86_400), now));
        assert!(!period_serves(300, now.minus_secs(70 * 86_400), now));
        assert!(period_serves(3600, now.minus_secs(70 * 86_400), now));
    }

    #[test]
    fn start_times_round_as_documented() {
        let now = Timestamp(400 * DAY);
        let t = Timestamp(now.millis() - HOUR - 34 * SECOND); // ..:59:26
        assert_eq!(
            round_start(t, 10, now),
            Timestamp(now.millis() - HOUR - 40 * SECOND)
        );
        assert_eq!(round_start(t, 60, now).millis() % MINUTE, 0);
        let old = Timestamp(now.millis() - 20 * DAY - 7 * MINUTE);
        assert_eq!(round_start(old, 60, now).millis() % (5 * MINUTE), 0);
        let older = Timestamp(now.millis() - 70 * DAY - 7 * MINUTE);
        assert_eq!(round_start(older, 60, now).millis() % HOUR, 0);
    }
}
