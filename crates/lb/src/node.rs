//! Applying configuration versions: the listeners' sockets, the targets'
//! live state, the health checkers and the draining timers.
//!
//! A new version never drops an open connection: listeners that stay keep
//! their socket and their connections; the routing table is swapped as a
//! whole (connections read it per request); targets that stay keep their
//! health, and the pooled connections to them stay in the workers' pools.
//! Only what the version removes is closed: a removed listener's socket and
//! connections, a removed target's flows and requests, and a draining
//! target's once its deregistration delay is over.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_model::lb::{
    HealthCheckConfig, NodeConfig, Protocol, TargetHealthReport, TargetState,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::balance::CodeMatcher;
use crate::health::{probe, Tracker, Verdict};
use crate::pool::TargetPool;
use crate::table::{cookie_value, Group, Snapshot, Target, TargetKey};
use crate::workers::Workers;
use crate::Shared;

/// Backlog of a listener's socket.
const BACKLOG: i32 = 1024;

struct RunningListener {
    protocol: Protocol,
    /// The accept loop of each worker; each owns the connections it
    /// accepted, so aborting them closes them all.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RunningListener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Checker {
    settings: HealthCheckConfig,
    task: JoinHandle<()>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct DrainTimer {
    until: f64,
    task: JoinHandle<()>,
}

impl Drop for DrainTimer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The node's mutable side, owned by its run loop.
pub struct Node {
    shared: Arc<Shared>,
    /// The threads that serve the listeners.
    workers: Workers,
    /// The addresses this node may bind.
    addresses: Vec<IpAddr>,
    listeners: HashMap<SocketAddr, RunningListener>,
    targets: HashMap<TargetKey, Arc<Target>>,
    round_robin: HashMap<String, Arc<AtomicUsize>>,
    /// Each group's slow-start period in the version in effect.
    slow_start: HashMap<String, u32>,
    checkers: HashMap<TargetKey, Checker>,
    drains: HashMap<TargetKey, DrainTimer>,
    /// Health changes, for the run loop to send.
    reports: mpsc::UnboundedSender<TargetHealthReport>,
}

impl Node {
    pub fn new(
        shared: Arc<Shared>,
        workers: Workers,
        addresses: Vec<IpAddr>,
        reports: mpsc::UnboundedSender<TargetHealthReport>,
    ) -> Node {
        Node {
            shared,
            workers,
            addresses,
            listeners: HashMap::new(),
            targets: HashMap::new(),
            round_robin: HashMap::new(),
            slow_start: HashMap::new(),
            checkers: HashMap::new(),
            drains: HashMap::new(),
            reports,
        }
    }

    /// Puts `config` into effect. Listeners that cannot be bound are logged
    /// and tried again with the next version.
    pub fn apply(&mut self, version: u64, config: &NodeConfig) {
        let now = epoch_now();
        let mut groups = HashMap::new();
        let mut seen: HashMap<TargetKey, ()> = HashMap::new();
        for (arn, tg) in &config.target_groups {
            let mut active = Vec::new();
            let mut draining = Vec::new();
            for t in &tg.targets {
                let key = TargetKey {
                    group: arn.clone(),
                    id: t.id.clone(),
                    address: t.address,
                    port: t.port,
                };
                seen.insert(key.clone(), ());
                let target = Arc::clone(
                    self.targets
                        .entry(key.clone())
                        .or_insert_with(|| Arc::new(Target::new(key.clone()))),
                );
                match t.state {
                    TargetState::Active => {
                        self.drains.remove(&key);
                        target.reopen();
                        self.ensure_checker(&target, &tg.health_check);
                        active.push(target);
                    }
                    TargetState::Draining { until } => {
                        // Draining targets get no new requests, so their
                        // health no longer matters.
                        self.checkers.remove(&key);
                        if self.drains.get(&key).is_none_or(|d| d.until != until) {
                            let t2 = Arc::clone(&target);
                            let wait = Duration::from_secs_f64((until - now).clamp(0.0, 1e9));
                            let task = tokio::spawn(async move {
                                tokio::time::sleep(wait).await;
                                t2.close();
                            });
                            self.drains.insert(key.clone(), DrainTimer { until, task });
                        }
                        draining.push(target);
                    }
                }
            }
            // Slow start turned on for a group that was serving: its targets
            // already healthy stay at full share.
            let was = self.slow_start.insert(arn.clone(), tg.slow_start_secs);
            if tg.slow_start_secs > 0 && was == Some(0) {
                for t in &active {
                    t.skip_slow_start();
                }
            }
            let next = Arc::clone(self.round_robin.entry(arn.clone()).or_default());
            groups.insert(
                arn.clone(),
                Arc::new(Group {
                    config: tg.clone(),
                    active,
                    draining,
                    next,
                    cookie: cookie_value(arn),
                }),
            );
        }
        // Targets this version no longer names: cut what is still open.
        let gone: Vec<TargetKey> = self
            .targets
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(t) = self.targets.remove(&key) {
                t.close();
            }
            self.checkers.remove(&key);
            self.drains.remove(&key);
            self.shared
                .health_view
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        self.round_robin
            .retain(|arn, _| config.target_groups.contains_key(arn));
        self.slow_start
            .retain(|arn, _| config.target_groups.contains_key(arn));

        let snapshot = Snapshot::compile(version, &config.listeners, groups, &self.shared.metrics);
        self.shared.table.store(Arc::new(snapshot));

        // Sockets after the table, so a new listener's first connection
        // finds its routes.
        let mut wanted: HashMap<SocketAddr, Protocol> = HashMap::new();
        for l in &config.listeners {
            wanted.insert(SocketAddr::new(l.address, l.port), l.protocol);
        }
        self.listeners
            .retain(|addr, running| wanted.get(addr) == Some(&running.protocol));
        for (addr, protocol) in wanted {
            if self.listeners.contains_key(&addr) {
                continue;
            }
            if !self.addresses.contains(&addr.ip()) {
                tracing::error!(%addr, "a listener on an address this node was not given; not binding it");
                continue;
            }
            match self.listen(addr, protocol) {
                Ok(tasks) => {
                    tracing::info!(%addr, ?protocol, workers = tasks.len(), "listening");
                    self.listeners
                        .insert(addr, RunningListener { protocol, tasks });
                }
                Err(e) => tracing::error!(%addr, error = %e, "cannot bind a listener"),
            }
        }
        self.shared.metrics.prune();
    }

    /// Binds `addr` and starts an accept loop on every worker, each on its
    /// own duplicate of the socket.
    fn listen(&self, addr: SocketAddr, protocol: Protocol) -> std::io::Result<Vec<JoinHandle<()>>> {
        let socket = bind(addr)?;
        let n = self.workers.len();
        let mut sockets = Vec::with_capacity(n);
        for _ in 1..n {
            sockets.push(socket.try_clone()?);
        }
        sockets.push(socket);
        let (queues, handed): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        let spread = Arc::new(Spread {
            next: AtomicUsize::new(0),
            queues,
        });
        Ok(self
            .workers
            .iter()
            .zip(sockets.into_iter().zip(handed))
            .enumerate()
            .map(|(me, (worker, (socket, handed)))| {
                let lane = Lane {
                    shared: Arc::clone(&self.shared),
                    pool: Arc::clone(worker.pool()),
                    addr,
                    protocol,
                };
                let spread = Arc::clone(&spread);
                worker.spawn(async move {
                    match TcpListener::from_std(socket) {
                        Ok(listener) => accept_loop(lane, listener, spread, me, handed).await,
                        Err(e) => tracing::error!(%addr, error = %e, "cannot register a listener"),
                    }
                })
            })
            .collect())
    }

    /// Stops the workers and waits until their connections are closed.
    pub async fn shutdown(self) {
        let Node {
            workers, listeners, ..
        } = self;
        drop(listeners);
        workers.shutdown().await;
    }

    /// Starts (or restarts, with new settings) the target's health checks.
    fn ensure_checker(&mut self, target: &Arc<Target>, settings: &HealthCheckConfig) {
        if let Some(c) = self.checkers.get(&target.key) {
            if &c.settings == settings {
                return;
            }
        }
        if !settings.enabled {
            self.checkers.remove(&target.key);
            return;
        }
        let known = self
            .shared
            .health_view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&target.key)
            .cloned();
        let tracker = match known {
            // A settings change keeps what the target has shown so far.
            Some(r) => {
                Tracker::resume(Verdict::known(r.health, r.reason.as_deref(), r.description))
            }
            None => {
                let tracker = Tracker::default();
                publish(&self.shared, &self.reports, target, tracker.verdict());
                tracker
            }
        };
        let task = tokio::spawn(check_loop(
            Arc::clone(&self.shared),
            Arc::clone(target),
            settings.clone(),
            tracker,
            self.reports.clone(),
        ));
        self.checkers.insert(
            target.key.clone(),
            Checker {
                settings: settings.clone(),
                task,
            },
        );
    }
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Binds with `SO_REUSEADDR`, so a restarted node rebinds at once while
/// old connections sit in TIME_WAIT (but not `SO_REUSEPORT`: a second node
/// given the same address fails to bind rather than sharing the port).
/// The socket is returned non-blocking and not registered with any
/// runtime, for each worker to register its own duplicate.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// What one listener's accept loops share: the round robin that gives each
/// accepted connection to a worker in turn (whichever loop accepted it, so
/// the workers hold equal shares of long-lived keep-alive connections), and
/// each worker's queue of connections handed over to it.
struct Spread {
    next: AtomicUsize,
    queues: Vec<mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>>,
}

/// One worker's side of a listener.
struct Lane {
    shared: Arc<Shared>,
    pool: Arc<TargetPool>,
    addr: SocketAddr,
    protocol: Protocol,
}

impl Lane {
    fn serve(&self, connections: &mut JoinSet<()>, stream: TcpStream, peer: SocketAddr) {
        let shared = Arc::clone(&self.shared);
        match self.protocol {
            Protocol::Http => connections.spawn(crate::http::serve_connection(
                shared,
                Arc::clone(&self.pool),
                stream,
                self.addr,
                peer,
            )),
            Protocol::Tcp => {
                connections.spawn(crate::tcp::serve_flow(shared, stream, self.addr, peer))
            }
        };
    }
}

/// Accepts on this worker's duplicate of the listener's socket, serves the
/// connections the round robin gives this worker and hands the others over.
async fn accept_loop(
    lane: Lane,
    listener: TcpListener,
    spread: Arc<Spread>,
    me: usize,
    mut handed: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
) {
    let addr = lane.addr;
    // Owned here so that aborting this task closes every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let to = spread.next.fetch_add(1, Ordering::Relaxed) % spread.queues.len();
                    if to == me {
                        lane.serve(&mut connections, stream, peer);
                    } else {
                        match stream.into_std() {
                            Ok(s) => {
                                let _ = spread.queues[to].send((s, peer));
                            }
                            Err(e) => tracing::debug!(%addr, error = %e, "cannot hand a connection over"),
                        }
                    }
                }
                Err(e) => {
                    // Out of descriptors, mostly: wait instead of spinning.
                    tracing::warn!(%addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some((s, peer)) = handed.recv() => match TcpStream::from_std(s) {
                Ok(stream) => lane.serve(&mut connections, stream, peer),
                Err(e) => tracing::debug!(%addr, error = %e, "cannot take a connection over"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn check_loop(
    shared: Arc<Shared>,
    target: Arc<Target>,
    settings: HealthCheckConfig,
    mut tracker: Tracker,
    reports: mpsc::UnboundedSender<TargetHealthReport>,
) {
    let matcher = CodeMatcher::parse(&settings.matcher).unwrap_or_default();
    let addr = SocketAddr::new(
        target.addr.ip(),
        settings.port.unwrap_or(target.addr.port()),
    );
    let interval = Duration::from_secs(u64::from(settings.interval_secs.max(1)));
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = probe(addr, &settings, &matcher).await;
        tracing::trace!(target = %addr, ?outcome, "health check");
        if let Some(verdict) = tracker.observe(
            outcome,
            settings.healthy_threshold,
            settings.unhealthy_threshold,
        ) {
            target.set_health(verdict.health);
            publish(&shared, &reports, &target, &verdict);
        }
    }
}

/// Records a target's verdict in the node's view and queues it for the
/// control plane.
fn publish(
    shared: &Shared,
    reports: &mpsc::UnboundedSender<TargetHealthReport>,
    target: &Target,
    verdict: &Verdict,
) {
    let report = TargetHealthReport {
        target_group_arn: target.key.group.clone(),
        target_id: target.key.id.clone(),
        port: target.key.port,
        health: verdict.health,
        reason: verdict.reason.map(str::to_string),
        description: verdict.description.clone(),
    };
    tracing::debug!(group = %report.target_group_arn, target = %report.target_id, port = report.port, health = ?report.health, reason = ?report.reason, "target health");
    shared
        .health_view
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(target.key.clone(), report.clone());
    let _ = reports.send(report);
}

/// The node's health view, as sent on every connect.
pub type HealthView = Mutex<BTreeMap<TargetKey, TargetHealthReport>>;
