//! When each alarm is due.
//!
//! CloudWatch evaluates an alarm with a period of a minute or more every
//! minute, over a sliding window that ends at the evaluation (a 5-minute
//! alarm evaluated at 12:15 looks at 12:00, 12:05 and 12:10; at 12:16 at
//! 12:01, 12:06 and 12:11), and a high-resolution alarm (period 10, 20 or
//! 30 s) every 10 seconds. So an alarm is due at every multiple of its
//! cadence (60 s or 10 s since the epoch) and evaluated *as of* that
//! boundary: the same data gives the same answer however late the
//! evaluation actually runs. The server's controller sleeps until
//! [`Schedule::next_due`] and then evaluates what is due.

use std::collections::{BTreeSet, HashMap};

use flotilla_model::arn::Scope;

use crate::types::Timestamp;

/// An alarm's identity: its scope and name.
pub(crate) type AlarmKey = (Scope, String);

/// Seconds between evaluations of an alarm with this period.
pub fn cadence_secs(period_secs: i64) -> i64 {
    if period_secs < 60 {
        10
    } else {
        60
    }
}

/// The evaluation boundary at or before `now` for this cadence.
pub fn boundary(now: Timestamp, cadence_secs: i64) -> Timestamp {
    now.floor_to(cadence_secs)
}

/// Due times of every alarm.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    queue: BTreeSet<(Timestamp, AlarmKey)>,
    due: HashMap<AlarmKey, Timestamp>,
}

impl Schedule {
    /// Sets (or moves) an alarm's next evaluation.
    pub fn set(&mut self, key: AlarmKey, at: Timestamp) {
        if let Some(previous) = self.due.insert(key.clone(), at) {
            self.queue.remove(&(previous, key.clone()));
        }
        self.queue.insert((at, key));
    }

    pub fn remove(&mut self, key: &AlarmKey) {
        if let Some(previous) = self.due.remove(key) {
            self.queue.remove(&(previous, key.clone()));
        }
    }

    /// The earliest due time, if any alarm exists.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Removes and returns every alarm due at or before `now`, with the
    /// boundary it was due at.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<(AlarmKey, Timestamp)> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            let Some((at, key)) = self.queue.pop_first() else {
                break;
            };
            self.due.remove(&key);
            out.push((key, at));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> AlarmKey {
        (Scope::new("1", "r"), name.to_string())
    }

    #[test]
    fn cadence_follows_the_period() {
        assert_eq!(cadence_secs(10), 10);
        assert_eq!(cadence_secs(30), 10);
        assert_eq!(cadence_secs(60), 60);
        assert_eq!(cadence_secs(3600), 60);
        assert_eq!(
            boundary(Timestamp::from_secs(125), 60),
            Timestamp::from_secs(120)
        );
        assert_eq!(
            boundary(Timestamp::from_secs(125), 10),
            Timestamp::from_secs(120)
        );
    }

    #[test]
    fn due_alarms_come_out_in_time_order() {
        let mut s = Schedule::default();
        s.set(key("b"), Timestamp::from_secs(120));
        s.set(key("a"), Timestamp::from_secs(60));
        s.set(key("c"), Timestamp::from_secs(70));
        assert_eq!(s.next_due(), Some(Timestamp::from_secs(60)));
        // Moving an alarm replaces its old due time.
        s.set(key("c"), Timestamp::from_secs(180));
        let due = s.take_due(Timestamp::from_secs(120));
        let names: Vec<&str> = due.iter().map(|(k, _)| k.1.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.next_due(), Some(Timestamp::from_secs(180)));
        s.remove(&key("c"));
        assert_eq!(s.next_due(), None);
        assert_eq!(s.len(), 0);
    }
}
