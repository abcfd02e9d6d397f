//! Request counters per load balancer and per (load balancer, target group),
//! taken and reset once per report interval (10 s by default) and sent as
//! [`NodeMessage::Metrics`](flotilla_model::lb::NodeMessage::Metrics).
//!
//! Counters are atomics handed to the routing table when it is compiled,
//! so counting a request takes no lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flotilla_model::lb::LbMetrics;

/// Counters of one load balancer or one target group behind it.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    target_2xx: AtomicU64,
    target_3xx: AtomicU64,
    target_4xx: AtomicU64,
    target_5xx: AtomicU64,
    elb_5xx: AtomicU64,
    /// Microseconds.
    response_time_sum: AtomicU64,
    responses: AtomicU64,
}

impl Counters {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A response from a target, `elapsed` after the request was sent.
    pub fn target_response(&self, status: u16, elapsed: std::time::Duration) {
        let c = match status {
            200..=299 => &self.target_2xx,
            300..=399 => &self.target_3xx,
            400..=499 => &self.target_4xx,
            _ => &self.target_5xx,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.response_time_sum.fetch_add(
            elapsed.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        self.responses.fetch_add(1, Ordering::Relaxed);
    }

    /// A 5xx the load balancer made itself.
    pub fn elb_5xx(&self) {
        self.elb_5xx.fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self, sample: &mut LbMetrics) {
        sample.request_count = self.requests.swap(0, Ordering::Relaxed);
        sample.target_2xx = self.target_2xx.swap(0, Ordering::Relaxed);
        sample.target_3xx = self.target_3xx.swap(0, Ordering::Relaxed);
        sample.target_4xx = self.target_4xx.swap(0, Ordering::Relaxed);
        sample.target_5xx = self.target_5xx.swap(0, Ordering::Relaxed);
        sample.elb_5xx = self.elb_5xx.swap(0, Ordering::Relaxed);
        sample.target_response_time_sum =
            self.response_time_sum.swap(0, Ordering::Relaxed) as f64 / 1e6;
        sample.target_response_count = self.responses.swap(0, Ordering::Relaxed);
    }
}

/// (load balancer ARN, target group ARN or `None` for the load balancer).
type Key = (String, Option<String>);

/// Every counter the node has handed out.
#[derive(Debug, Default)]
pub struct Registry {
    counters: Mutex<HashMap<Key, Arc<Counters>>>,
    /// The load balancers' counters summed since the node started, as of
    /// the last [`Registry::take`] (for `/metrics`).
    totals: Totals,
}

/// Since the node started, over all its load balancers.
#[derive(Debug, Default)]
pub struct Totals {
    pub requests: AtomicU64,
    pub target_2xx: AtomicU64,
    pub target_3xx: AtomicU64,
    pub target_4xx: AtomicU64,
    pub target_5xx: AtomicU64,
    pub elb_5xx: AtomicU64,
}

impl Totals {
    fn add(&self, s: &LbMetrics) {
        for (total, n) in [
            (&self.requests, s.request_count),
            (&self.target_2xx, s.target_2xx),
            (&self.target_3xx, s.target_3xx),
            (&self.target_4xx, s.target_4xx),
            (&self.target_5xx, s.target_5xx),
            (&self.elb_5xx, s.elb_5xx),
        ] {
            total.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl Registry {
    pub fn counters(&self, lb: &str, group: Option<&str>) -> Arc<Counters> {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((lb.to_string(), group.map(str::to_string)))
            .or_default()
            .clone()
    }

    /// The sums since the node started, as of the last take.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Forgets counters no longer in use (only the registry holds them).
    pub fn prune(&self) {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| Arc::strong_count(c) > 1);
    }

    /// Takes every counter over `[start, end)`. `hosts` gives a target
    /// group's (healthy, unhealthy) target counts.
    pub fn take(&self, start: f64, end: f64, hosts: impl Fn(&str) -> (u32, u32)) -> Vec<LbMetrics> {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<LbMetrics> = map
            .iter()
            .map(|((lb, group), c)| {
                let (healthy, unhealthy) = group.as_deref().map(&hosts).unwrap_or((0, 0));
                let mut s = LbMetrics {
                    load_balancer_arn: lb.clone(),
                    target_group_arn: group.clone(),
                    start,
                    end,
                    request_count: 0,
                    target_2xx: 0,
                    target_3xx: 0,
                    target_4xx: 0,
                    target_5xx: 0,
                    elb_5xx: 0,
                    target_response_time_sum: 0.0,
                    target_response_count: 0,
                    healthy_hosts: healthy,
                    unhealthy_hosts: unhealthy,
                };
                c.take(&mut s);
                if group.is_none() {
                    self.totals.add(&s);
                }
                s
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.load_balancer_arn, &a.target_group_arn)
                .cmp(&(&b.load_balancer_arn, &b.target_group_arn))
        });
        out
    }
}
