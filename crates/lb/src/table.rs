//! The routing table: an immutable snapshot compiled from one
//! [`NodeConfig`] version, swapped atomically as a whole. A request reads the
//! snapshot once and keeps it to the end, so a config change never mixes
//! two versions in one request.
//!
//! What must outlive a version lives beside the table and is shared by
//! reference: each target's health and draining state ([`Target`]), each
//! group's round-robin position, the counters. A new version reuses them
//! for the targets and groups it still names.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_model::lb::{Action, ListenerConfig, ObservedHealth, Protocol, TargetGroupConfig};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::balance::{slow_start_share, SmoothWeighted};
use crate::matching::{Matcher, RequestFacts};
use crate::metrics::{Counters, Registry};

/// A target's identity: one registration in one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub group: String,
    pub id: String,
    pub address: IpAddr,
    pub port: u16,
}

/// One target's live state, shared by every snapshot that names it.
#[derive(Debug)]
pub struct Target {
    pub key: TargetKey,
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once rather than per request.
    pub authority: http::uri::Authority,
    /// The value of the stickiness cookie that names this target.
    pub cookie: String,
    health: AtomicU8,
    /// When it last turned healthy (slow start counts from there).
    healthy_since: Mutex<Option<Instant>>,
    /// `true` once its deregistration delay is over (or it is gone): open
    /// connections and requests in flight to it are cut.
    closed: watch::Sender<bool>,
}

impl Target {
    pub fn new(key: TargetKey) -> Target {
        let addr = SocketAddr::new(key.address, key.port);
        let cookie = cookie_value(&format!("{}|{}|{}", key.group, key.id, addr));
        let authority = addr
            .to_string()
            .parse()
            .unwrap_or_else(|_| http::uri::Authority::from_static("invalid"));
        Target {
            key,
            addr,
            authority,
            cookie,
            health: AtomicU8::new(encode(ObservedHealth::Initial)),
            healthy_since: Mutex::new(None),
            closed: watch::Sender::new(false),
        }
    }

    pub fn health(&self) -> ObservedHealth {
        decode(self.health.load(Ordering::Relaxed))
    }

    pub fn set_health(&self, h: ObservedHealth) {
        let old = decode(self.health.swap(encode(h), Ordering::Relaxed));
        let mut since = self.healthy_since.lock().unwrap_or_else(|e| e.into_inner());
        if h == ObservedHealth::Healthy && old != ObservedHealth::Healthy {
            *since = Some(Instant::now());
        } else if h != ObservedHealth::Healthy {
            *since = None;
        }
    }

    /// Takes the target out of slow start: targets already healthy when a
    /// group turns slow start on do not enter it (ELBv2).
    pub fn skip_slow_start(&self) {
        *self.healthy_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn slow_start_share(&self, period: Duration) -> f64 {
        if period.is_zero() {
            return 1.0;
        }
        match *self.healthy_since.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(t) => slow_start_share(t.elapsed(), period),
            None => 1.0,
        }
    }

    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    pub fn reopen(&self) {
        self.closed.send_replace(false);
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves when the target is closed (at once if it already is).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

fn encode(h: ObservedHealth) -> u8 {
    match h {
        ObservedHealth::Initial => 0,
        ObservedHealth::Healthy => 1,
        ObservedHealth::Unhealthy => 2,
    }
}

fn decode(v: u8) -> ObservedHealth {
    match v {
        1 => ObservedHealth::Healthy,
        2 => ObservedHealth::Unhealthy,
        _ => ObservedHealth::Initial,
    }
}

/// An opaque cookie value naming a target or group: a hex hash (ALB's are
/// encrypted; what matters is that clients cannot read addresses from it
/// and that it stays the same across config versions).
pub fn cookie_value(s: &str) -> String {
    use std::hash::{Hash, Hasher};
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x666c_6f74, 0x696c_6c61);
    s.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A target group as one version sees it.
#[derive(Debug)]
pub struct Group {
    pub config: TargetGroupConfig,
    /// Registered targets that take new requests.
    pub active: Vec<Arc<Target>>,
    /// Deregistered targets finishing their open connections.
    pub draining: Vec<Arc<Target>>,
    /// Round-robin position, shared across versions.
    pub next: Arc<AtomicUsize>,
    pub cookie: String,
}

/// Why no target was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoTarget {
    /// No registered target takes new requests (ALB: 503).
    Empty,
}

impl Group {
    /// Targets that may take a new request: the healthy active ones, or
    /// every active one when none is healthy (ELBv2 fails open).
    pub fn candidates(&self) -> Vec<&Arc<Target>> {
        if !self.config.health_check.enabled {
            return self.active.iter().collect();
        }
        let healthy: Vec<&Arc<Target>> = self
            .active
            .iter()
            .filter(|t| t.health() == ObservedHealth::Healthy)
            .collect();
        if healthy.is_empty() {
            self.active.iter().collect()
        } else {
            healthy
        }
    }

    /// The target for a new request: the sticky one if it may still take
    /// requests, else round robin with slow start.
    pub fn pick(&self, sticky: Option<&str>) -> Result<Arc<Target>, NoTarget> {
        if self.config.slow_start_secs > 0 {
            return self.pick_slow_start(sticky);
        }
        // The common case without a list: this runs for every request.
        let healthy_only = self.config.health_check.enabled
            && self
                .active
                .iter()
                .any(|t| t.health() == ObservedHealth::Healthy);
        let is_candidate =
            |t: &&Arc<Target>| !healthy_only || t.health() == ObservedHealth::Healthy;
        if let Some(cookie) = sticky {
            if let Some(t) = self
                .active
                .iter()
                .filter(is_candidate)
                .find(|t| t.cookie == cookie)
            {
                return Ok(Arc::clone(t));
            }
        }
        let n = self.active.iter().filter(is_candidate).count();
        if n == 0 {
            return Err(NoTarget::Empty);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Health may change between the two passes: then any candidate.
        self.active
            .iter()
            .filter(is_candidate)
            .nth(start % n)
            .or_else(|| self.active.first())
            .map(Arc::clone)
            .ok_or(NoTarget::Empty)
    }

    /// [`Group::pick`] with slow start: a target in slow start takes its
    /// turn with probability equal to its share; the others fill the rest.
    fn pick_slow_start(&self, sticky: Option<&str>) -> Result<Arc<Target>, NoTarget> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return Err(NoTarget::Empty);
        }
        if let Some(cookie) = sticky {
            if let Some(t) = candidates.iter().find(|t| t.cookie == cookie) {
                return Ok(Arc::clone(t));
            }
        }
        let n = candidates.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let period = Duration::from_secs(u64::from(self.config.slow_start_secs));
        for i in 0..n {
            let t = candidates[(start + i) % n];
            let share = t.slow_start_share(period);
            if share >= 1.0 || rand::random::<f64>() < share {
                return Ok(Arc::clone(t));
            }
        }
        Ok(Arc::clone(candidates[start % n]))
    }

    /// A flow's target (NLB): by hash over the candidates.
    pub fn pick_flow(
        &self,
        client: SocketAddr,
        listener: SocketAddr,
    ) -> Result<Arc<Target>, NoTarget> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return Err(NoTarget::Empty);
        }
        let i = crate::balance::flow_index(client, listener, candidates.len());
        Ok(Arc::clone(candidates[i]))
    }

    pub fn host_counts(&self) -> (u32, u32) {
        let healthy = self
            .active
            .iter()
            .filter(|t| t.health() == ObservedHealth::Healthy)
            .count();
        let unhealthy = self
            .active
            .iter()
            .filter(|t| t.health() == ObservedHealth::Unhealthy)
            .count();
        (healthy as u32, unhealthy as u32)
    }
}

/// One forward destination within an action.
#[derive(Debug)]
pub struct Destination {
    pub group: Arc<Group>,
    pub counters: Arc<Counters>,
}

/// A terminal action, compiled.
#[derive(Debug)]
pub enum Route {
    Forward {
        /// Groups named by the action that this version knows.
        destinations: Vec<Destination>,
        weights: SmoothWeighted,
        /// Target-group stickiness (cookie `AWSALBTG`) for weighted forwards.
        stickiness_secs: Option<u32>,
    },
    Fixed {
        status: u16,
        content_type: Option<String>,
        body: String,
    },
    Redirect {
        protocol: String,
        host: String,
        port: String,
        path: String,
        query: String,
        status: u16,
    },
    /// No usable action (an empty or unknown list): 503.
    Unavailable,
}

impl Route {
    fn compile(
        actions: &[Action],
        groups: &HashMap<String, Arc<Group>>,
        lb: &str,
        metrics: &Registry,
    ) -> Route {
        match actions.last() {
            Some(Action::Forward {
                target_groups,
                stickiness_secs,
            }) => {
                let mut destinations = Vec::new();
                let mut weights = Vec::new();
                for wg in target_groups {
                    if let Some(g) = groups.get(&wg.target_group_arn) {
                        destinations.push(Destination {
                            group: Arc::clone(g),
                            counters: metrics.counters(lb, Some(&wg.target_group_arn)),
                        });
                        // A lone group's weight does not matter (ELBv2 allows 0).
                        weights.push(if target_groups.len() == 1 {
                            1
                        } else {
                            wg.weight
                        });
                    }
                }
                if destinations.is_empty() {
                    return Route::Unavailable;
                }
                Route::Forward {
                    weights: SmoothWeighted::new(&weights),
                    destinations,
                    stickiness_secs: *stickiness_secs,
                }
            }
            Some(Action::FixedResponse {
                status_code,
                content_type,
                body,
            }) => Route::Fixed {
                status: *status_code,
                content_type: content_type.clone(),
                body: body.clone().unwrap_or_default(),
            },
            Some(Action::Redirect {
                protocol,
                host,
                port,
                path,
                query,
                status_code,
            }) => Route::Redirect {
                protocol: protocol.clone(),
                host: host.clone(),
                port: port.clone(),
                path: path.clone(),
                query: query.clone(),
                status: *status_code,
            },
            None => Route::Unavailable,
        }
    }

    /// The destination for a new request or flow: the sticky group when the
    /// `AWSALBTG` cookie names one with weight, else the next by weight.
    pub fn destination(&self, sticky_group: Option<&str>) -> Option<&Destination> {
        let Route::Forward {
            destinations,
            weights,
            stickiness_secs,
        } = self
        else {
            return None;
        };
        if let (Some(cookie), Some(_)) = (sticky_group, stickiness_secs) {
            if let Some(d) = destinations.iter().find(|d| d.group.cookie == cookie) {
                return Some(d);
            }
        }
        // A lone group needs no turn taking (and no lock).
        if let [only] = destinations.as_slice() {
            return Some(only);
        }
        weights.next().map(|i| &destinations[i])
    }
}

#[derive(Debug)]
pub struct Rule {
    pub priority: u32,
    matchers: Vec<Matcher>,
    pub route: Route,
}

/// One listener's compiled rules.
#[derive(Debug)]
pub struct Listener {
    pub config: ListenerConfig,
    pub rules: Vec<Rule>,
    pub default: Route,
    pub counters: Arc<Counters>,
}

impl Listener {
    /// ALB's evaluation: rules by ascending priority, the first whose
    /// conditions all hold; else the default action.
    pub fn route(&self, req: &RequestFacts<'_>) -> &Route {
        self.rules
            .iter()
            .find(|r| r.matchers.iter().all(|m| m.matches(req)))
            .map(|r| &r.route)
            .unwrap_or(&self.default)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.config.address, self.config.port)
    }

    pub fn is_http(&self) -> bool {
        self.config.protocol == Protocol::Http
    }
}

/// Everything the node serves at one version.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: u64,
    pub listeners: HashMap<SocketAddr, Arc<Listener>>,
    pub groups: HashMap<String, Arc<Group>>,
}

impl Snapshot {
    /// Compiles `listeners` over already built `groups`.
    pub fn compile(
        version: u64,
        listeners: &[ListenerConfig],
        groups: HashMap<String, Arc<Group>>,
        metrics: &Registry,
    ) -> Snapshot {
        let mut out = HashMap::new();
        for l in listeners {
            let lb = l.load_balancer_arn.as_str();
            let mut rules: Vec<Rule> = l
                .rules
                .iter()
                .map(|r| Rule {
                    priority: r.priority,
                    matchers: r.conditions.iter().map(Matcher::compile).collect(),
                    route: Route::compile(&r.actions, &groups, lb, metrics),
                })
                .collect();
            // The control plane sends them in order; sorting again costs
            // nothing and makes the order a property of this table.
            rules.sort_by_key(|r| r.priority);
            let listener = Listener {
                rules,
                default: Route::compile(&l.default_actions, &groups, lb, metrics),
                counters: metrics.counters(lb, None),
                config: ListenerConfig {
                    rules: Vec::new(),
                    ..l.clone()
                },
            };
            out.insert(listener.addr(), Arc::new(listener));
        }
        Snapshot {
            version,
            listeners: out,
            groups,
        }
    }
}
