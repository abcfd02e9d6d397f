//! Choosing among weighted target groups and among targets: pure pieces,
//! tested without sockets.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

// A plain mutex is enough: each critical section is a few additions.
use std::sync::Mutex;

/// Smooth weighted round robin (as nginx's upstream balancer): over any run
/// of `sum(weights)` picks, entry `i` is picked exactly `weights[i]` times,
/// and picks of one entry are spread out rather than bunched. A weighted
/// forward's split is therefore exact, not merely right on average.
#[derive(Debug)]
pub struct SmoothWeighted {
    weights: Vec<i64>,
    total: i64,
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    pub fn new(weights: &[u32]) -> SmoothWeighted {
        let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
        let total = weights.iter().sum();
        SmoothWeighted {
            current: Mutex::new(vec![0; weights.len()]),
            weights,
            total,
        }
    }

    /// The next entry; `None` when every weight is 0.
    pub fn next(&self) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut best = 0;
        for i in 0..self.weights.len() {
            current[i] += self.weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= self.total;
        Some(best)
    }
}

/// A TCP flow's 5-tuple hashed to an index in `0..n` (NLB): the same flow
/// always lands on the same index while `n` holds. `n` must not be 0.
pub fn flow_index(client: SocketAddr, listener: SocketAddr, n: usize) -> usize {
    // SipHash with fixed keys: stable across the process, enough spread.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    6u8.hash(&mut h); // protocol number of TCP
    client.hash(&mut h);
    listener.hash(&mut h);
    (h.finish() % n as u64) as usize
}

/// The share of its normal traffic a target in slow start gets: a linear
/// ramp from 10 % at the moment it turned healthy to 100 % at the end of
/// the slow-start period (ELBv2 ramps linearly; starting above zero keeps a
/// fresh target from being skipped entirely on a quiet load balancer).
pub fn slow_start_share(since_healthy: Duration, period: Duration) -> f64 {
    if period.is_zero() || since_healthy >= period {
        return 1.0;
    }
    let f = since_healthy.as_secs_f64() / period.as_secs_f64();
    0.1 + 0.9 * f
}

/// Health-check matcher codes: `200`, `200,202`, `200-299`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeMatcher(Vec<(u16, u16)>);

impl CodeMatcher {
    /// `None` if any part is not a code or a range of codes.
    pub fn parse(s: &str) -> Option<CodeMatcher> {
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let c = part.parse().ok()?;
                    (c, c)
                }
            };
            if lo > hi {
                return None;
            }
            ranges.push((lo, hi));
        }
        Some(CodeMatcher(ranges))
    }

    pub fn matches(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= code && code <= hi)
    }
}

impl Default for CodeMatcher {
    /// ELBv2's default matcher: 200.
    fn default() -> Self {
        CodeMatcher(vec![(200, 200)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_weighted_is_exact_and_spread() {
        let s = SmoothWeighted::new(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| s.next().unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 5);
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 1);
        // nginx's classic example: a a b a c a a → spread, not a a a a a b c.
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        let s = SmoothWeighted::new(&[80, 20]);
        let mut counts = [0; 2];
        for _ in 0..1000 {
            counts[s.next().unwrap()] += 1;
        }
        assert_eq!(counts, [800, 200]);
    }

    #[test]
    fn zero_weights() {
        let s = SmoothWeighted::new(&[0, 3]);
        assert!((0..10).all(|_| s.next() == Some(1)));
        assert_eq!(SmoothWeighted::new(&[0, 0]).next(), None);
        assert_eq!(SmoothWeighted::new(&[]).next(), None);
    }

    #[test]
    fn flows_are_stable_and_spread() {
        let l: SocketAddr = "127.0.0.20:80".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(flow_index(c, l, 3), flow_index(c, l, 3));
        let mut seen = [0; 3];
        for port in 40000..40300u16 {
            seen[flow_index(SocketAddr::new(c.ip(), port), l, 3)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn slow_start_ramps() {
        let p = Duration::from_secs(30);
        assert!((slow_start_share(Duration::ZERO, p) - 0.1).abs() < 1e-9);
        assert!((slow_start_share(Duration::from_secs(15), p) - 0.55).abs() < 1e-9);
        assert_eq!(slow_start_share(Duration::from_secs(31), p), 1.0);
        assert_eq!(slow_start_share(Duration::ZERO, Duration::ZERO), 1.0);
    }

    #[test]
    fn matcher_codes() {
        let m = CodeMatcher::parse("200").unwrap();
        assert!(m.matches(200) && !m.matches(201));
        let m = CodeMatcher::parse("200,202").unwrap();
        assert!(m.matches(202) && !m.matches(201));
        let m = CodeMatcher::parse("200-299").unwrap();
        assert!(m.matches(250) && !m.matches(300) && !m.matches(199));
        let m = CodeMatcher::parse("200-204, 301").unwrap();
        assert!(m.matches(301));
        assert!(CodeMatcher::parse("abc").is_none());
        assert!(CodeMatcher::parse("299-200").is_none());
        assert!(CodeMatcher::parse("").is_none());
    }
}
