//! Self-healing latency on the real Docker Engine: a task's container is
//! killed behind Flotilla's back (`docker kill` through the Docker API) and
//! the clock runs until the service's replacement task is RUNNING.
//!
//! Setup: the control plane in-process with the settings `flotilla server`
//! runs (controllers resyncing every 1 s; `BENCH_RESYNC_MS` overrides), two
//! in-process agents (127.0.0.2 and 127.0.0.3, zones a and b), a 4-task
//! REPLICA service of the test image's `sleep`.
//!
//! Each run kills the container of the service's oldest RUNNING task (never
//! the previous run's replacement: killing that one too would count as two
//! consecutive failures, which the restart backoff throttles).
//!
//! Then two containers are killed at once, one on each instance and both on
//! one instance, to show what the restart backoff
//! (`flotilla_reconcile::backoff_until`) does to simultaneous failures.
//!
//! The headline figure, kill → replacement RUNNING, is *observed through the
//! ECS API*: ListTasks + DescribeTasks polled every 10 ms, so it includes up
//! to one poll interval plus the two calls. Alongside, the phases in between
//! come from timestamps that need no polling:
//! - Docker's own event times (`timeNano` of `die`, `create`, `start`, read
//!   from one event subscription held for the whole benchmark);
//! - the task's own timestamps: `executionStoppedAt` (the agent's clock when
//!   it saw the container gone), `stoppedAt` (control plane recorded STOPPED),
//!   the replacement's `createdAt` (placed by the service controller) and
//!   `startedAt` (control plane recorded RUNNING). These are milliseconds,
//!   as AWS reports them, from the same host clock as the kill.
//!
//! `cargo bench -p flotilla --bench self_healing` (`BENCH_RUNS=N`, default
//! 10; `BENCH_PAIR_RUNS=N` runs of each two-container scenario, default 3,
//! 0 to skip).

#[path = "../tests/deploy_harness/mod.rs"]
mod deploy_harness;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bollard::models::EventMessage;
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
};
use deploy_harness::{container, epoch, Api, Env};
use flotilla_agent::spec::{LABEL_CLUSTER, LABEL_TASK_ARN};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const DESIRED: u32 = 4;
const POLL: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(60);

fn main() {
    let runs: usize = knob("BENCH_RUNS", 10);
    let pair_runs: usize = knob("BENCH_PAIR_RUNS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(runs, pair_runs));
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One Docker event as the bench saw it: Docker's time, the action, the
/// container id and the task ARN label.
#[derive(Debug, Clone)]
struct Event {
    /// Docker's time (`timeNano`).
    at: f64,
    /// When this process received it.
    received: f64,
    /// For `die`: when an inspect issued on receipt returned (what an agent
    /// reacting to the event learns at the earliest).
    inspected: Option<f64>,
    action: String,
    id: String,
    task: String,
}

/// Every container event of the cluster, from one subscription.
struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
    seen: Vec<Event>,
}

impl Events {
    fn subscribe(api: &Api) -> Events {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{LABEL_CLUSTER}={}", api.cluster)],
            ),
        ]);
        // The stream only subscribes when first polled: `since` makes Docker
        // replay whatever happens before that.
        let since = Some(format!("{:.6}", epoch()));
        let mut stream = api.docker.events(Some(EventsOptions {
            since,
            filters: Some(filters),
            ..Default::default()
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let docker = api.docker.clone();
        tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let mut e = event(ev);
                if e.action == "die" {
                    let _ = docker
                        .inspect_container(&e.id, None::<InspectContainerOptions>)
                        .await;
                    e.inspected = Some(epoch());
                }
                if tx.send(e).is_err() {
                    break;
                }
            }
        });
        Events {
            rx,
            seen: Vec::new(),
        }
    }

    /// Takes in what has arrived so far.
    fn drain(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
    }

    /// Waits until an event matches `f` (drained or new).
    async fn wait(&mut self, what: &str, f: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + LIMIT;
        loop {
            self.drain();
            if let Some(e) = self.seen.iter().find(|e| f(e)) {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(e)) => self.seen.push(e),
                _ => panic!("no Docker event {what} within {LIMIT:?}"),
            }
        }
    }
}

fn event(ev: EventMessage) -> Event {
    let actor = ev.actor.unwrap_or_default();
    let attrs = actor.attributes.unwrap_or_default();
    Event {
        at: ev.time_nano.map(|n| n as f64 / 1e9).unwrap_or_default(),
        received: epoch(),
        inspected: None,
        action: ev.action.unwrap_or_default(),
        id: actor.id.unwrap_or_default(),
        task: attrs.get(LABEL_TASK_ARN).cloned().unwrap_or_default(),
    }
}

/// Milliseconds since the kill of each phase of one run, in order.
type Phases = Vec<(&'static str, f64)>;

async fn bench(runs: usize, pair_runs: usize) {
    let config = flotilla_server::Config::default();
    let env = Env::start_with("bench-heal", 2, config).await;
    // Subscribed before the first container exists.
    let mut events = Events::subscribe(&env.api);
    let td = env
        .register("bench-heal", json!([container("app", &["sleep"])]))
        .await;
    env.create_service(
        "web",
        &td,
        DESIRED,
        json!({"minimumHealthyPercent": 100, "maximumPercent": 200}),
    )
    .await;
    env.wait_stable_on("web", &td, LIMIT, POLL).await;
    events
        .wait("start of the first task", |e| e.action == "start")
        .await;

    // Warm-up: one kill not measured.
    kill_and_heal(&env, &td, &mut events).await;
    let mut single = Vec::new();
    for _ in 0..runs {
        single.push(kill_and_heal(&env, &td, &mut events).await);
    }
    let mut pairs = [Vec::new(), Vec::new()];
    for _ in 0..pair_runs {
        pairs[0].push(kill_two_and_heal(&env, &td, false).await);
        pairs[1].push(kill_two_and_heal(&env, &td, true).await);
    }

    println!(
        "self-healing of a {DESIRED}-task service, 2 agents on one Docker Engine, {runs} runs"
    );
    println!("one container killed -> its replacement RUNNING (ms since the kill)");
    report(&single);
    for (runs, where_) in pairs
        .iter()
        .zip(["one on each instance", "both on one instance"])
    {
        if !runs.is_empty() {
            println!("two containers killed at once, {where_} -> both replacements RUNNING, {pair_runs} runs (ms since the kill)");
            report(runs);
        }
    }
    env.stop().await;
}

/// The service's RUNNING tasks (desired RUNNING too), described.
async fn running(env: &Env) -> Vec<Value> {
    env.tasks("web")
        .await
        .into_iter()
        .filter(|t| t["lastStatus"] == "RUNNING" && t["desiredStatus"] == "RUNNING")
        .collect()
}

/// The service's RUNNING tasks once stable, and the oldest of them.
async fn oldest(env: &Env, td: &str) -> (BTreeSet<String>, String) {
    env.wait_stable_on("web", td, LIMIT, POLL).await;
    let mut tasks = running(env).await;
    assert_eq!(tasks.len(), DESIRED as usize, "{tasks:#?}");
    tasks.sort_by(|a, b| at(a, "startedAt").total_cmp(&at(b, "startedAt")));
    let all = tasks
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    (all, tasks[0]["taskArn"].as_str().unwrap().to_string())
}

async fn container_of(env: &Env, task_arn: &str) -> String {
    let filters = HashMap::from([
        (
            "label".to_string(),
            vec![format!("{LABEL_TASK_ARN}={task_arn}")],
        ),
        ("status".to_string(), vec!["running".to_string()]),
    ]);
    let list = env
        .docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(list.len(), 1, "one running container for {task_arn}");
    list[0].id.clone().unwrap()
}

async fn kill(env: &Env, id: &str) {
    env.docker
        .kill_container(
            id,
            Some(KillContainerOptions {
                signal: "SIGKILL".into(),
            }),
        )
        .await
        .expect("docker kill");
}

async fn describe(env: &Env, arns: &[String]) -> Vec<Value> {
    let v = env
        .call(
            "DescribeTasks",
            json!({"cluster": env.cluster, "tasks": arns}),
        )
        .await;
    v["tasks"].as_array().unwrap().clone()
}

/// Polls ListTasks (desired RUNNING) + DescribeTasks every [`POLL`] until
/// `n` tasks not in `before` are RUNNING; the epoch when seen, and when the
/// `victims` were first seen STOPPED.
async fn poll_replacements(
    env: &Env,
    before: &BTreeSet<String>,
    victims: &[String],
    n: usize,
) -> (f64, f64, Vec<String>) {
    let start = Instant::now();
    let mut stopped_seen = None;
    loop {
        let v = env
            .call(
                "ListTasks",
                json!({"cluster": env.cluster, "serviceName": "web", "desiredStatus": "RUNNING"}),
            )
            .await;
        let mut arns: Vec<String> = v["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .filter(|a| !before.contains(a))
            .collect();
        if stopped_seen.is_none() {
            arns.extend(victims.iter().cloned());
        }
        let tasks = describe(env, &arns).await;
        let now = epoch();
        if stopped_seen.is_none()
            && tasks
                .iter()
                .filter(|t| victims.iter().any(|v| t["taskArn"] == v.as_str()))
                .all(|t| t["lastStatus"] == "STOPPED")
        {
            stopped_seen = Some(now);
        }
        let up: Vec<String> = tasks
            .iter()
            .filter(|t| !victims.iter().any(|v| t["taskArn"] == v.as_str()))
            .filter(|t| t["lastStatus"] == "RUNNING")
            .map(|t| t["taskArn"].as_str().unwrap().to_string())
            .collect();
        if let (true, Some(stopped)) = (up.len() >= n, stopped_seen) {
            return (now, stopped, up);
        }
        assert!(
            start.elapsed() < LIMIT,
            "no {n} replacement(s) RUNNING within {LIMIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn at(t: &Value, field: &str) -> f64 {
    t[field]
        .as_f64()
        .unwrap_or_else(|| panic!("task without {field}: {t:#}"))
}

async fn kill_and_heal(env: &Env, td: &str, events: &mut Events) -> Phases {
    let (before, victim) = oldest(env, td).await;
    let victims = [victim.clone()];
    let id = container_of(env, &victim).await;
    // Baseline for the inspect after `die` below: one of a running container.
    let i0 = epoch();
    env.docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let inspect_running = (epoch() - i0) * 1000.0;
    events.drain();
    events.seen.clear();
    let t0 = epoch();
    kill(env, &id).await;
    let (seen_running, seen_stopped, up) = poll_replacements(env, &before, &victims, 1).await;
    let (_, seen_steady) = env.wait_stable_on("web", td, LIMIT, POLL).await;
    let steady = epoch() - seen_steady.elapsed().as_secs_f64();
    let replacement = up[0].clone();
    let die = events
        .wait("die of the victim", |e| e.action == "die" && e.id == id)
        .await;
    let created = events
        .wait("create of the replacement", |e| {
            e.action == "create" && e.task == replacement
        })
        .await
        .at;
    let started = events
        .wait("start of the replacement", |e| {
            e.action == "start" && e.task == replacement
        })
        .await
        .at;
    let tasks = describe(env, &[victim.clone(), replacement.clone()]).await;
    let (v, r) = (&tasks[0], &tasks[1]);
    assert_eq!(v["stopCode"], "EssentialContainerExited", "{v:#}");
    let ms = |t: f64| (t - t0) * 1000.0;
    vec![
        ("Docker: die event (timeNano)", ms(die.at)),
        (
            "Docker: die event received (a subscriber)",
            ms(die.received),
        ),
        (
            "Docker: inspect issued on receipt returned",
            ms(die.inspected.unwrap()),
        ),
        (
            "agent: task stopped (executionStoppedAt)",
            ms(at(v, "executionStoppedAt")),
        ),
        (
            "control plane: STOPPED recorded (stoppedAt)",
            ms(at(v, "stoppedAt")),
        ),
        ("API: STOPPED seen (10 ms poll)", ms(seen_stopped)),
        (
            "controller: replacement placed (createdAt)",
            ms(at(r, "createdAt")),
        ),
        ("Docker: replacement created (create event)", ms(created)),
        ("Docker: replacement started (start event)", ms(started)),
        (
            "control plane: RUNNING recorded (startedAt)",
            ms(at(r, "startedAt")),
        ),
        (
            "API: replacement RUNNING seen (10 ms poll)",
            ms(seen_running),
        ),
        ("API: service stable, runningCount 4 seen", ms(steady)),
        ("(before the kill: an inspect of it took)", inspect_running),
    ]
}

/// Kills two tasks' containers at once, both on the instance of the oldest
/// task (`same_instance`) or the oldest task of each instance; until both
/// replacements are RUNNING.
async fn kill_two_and_heal(env: &Env, td: &str, same_instance: bool) -> Phases {
    env.wait_stable_on("web", td, LIMIT, POLL).await;
    let mut tasks = running(env).await;
    assert_eq!(tasks.len(), DESIRED as usize, "{tasks:#?}");
    tasks.sort_by(|a, b| at(a, "startedAt").total_cmp(&at(b, "startedAt")));
    let before: BTreeSet<String> = tasks
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    let first = &tasks[0];
    let second = tasks[1..]
        .iter()
        .find(|t| (t["containerInstanceArn"] == first["containerInstanceArn"]) == same_instance)
        .expect("a second victim");
    let victims = [first, second]
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .to_vec();
    let ids = [
        container_of(env, &victims[0]).await,
        container_of(env, &victims[1]).await,
    ];
    let t0 = epoch();
    tokio::join!(kill(env, &ids[0]), kill(env, &ids[1]));
    let (seen_both, _, up) = poll_replacements(env, &before, &victims, 2).await;
    let mut replacements = describe(env, &up).await;
    replacements.sort_by(|a, b| at(a, "createdAt").total_cmp(&at(b, "createdAt")));
    let stopped = describe(env, &victims).await;
    let mut stopped_at: Vec<f64> = stopped.iter().map(|t| at(t, "stoppedAt")).collect();
    stopped_at.sort_by(f64::total_cmp);
    let s = env.service("web").await;
    let throttled = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("unable to consistently start tasks"))
        })
        .filter_map(|e| e["createdAt"].as_f64())
        .any(|t| t >= t0);
    let ms = |t: f64| (t - t0) * 1000.0;
    vec![
        (
            "first victim STOPPED recorded (stoppedAt)",
            ms(stopped_at[0]),
        ),
        (
            "second victim STOPPED recorded (stoppedAt)",
            ms(stopped_at[1]),
        ),
        (
            "first replacement placed (createdAt)",
            ms(at(&replacements[0], "createdAt")),
        ),
        (
            "first replacement RUNNING (startedAt)",
            ms(at(&replacements[0], "startedAt")),
        ),
        (
            "second replacement placed (createdAt)",
            ms(at(&replacements[1], "createdAt")),
        ),
        (
            "second replacement RUNNING (startedAt)",
            ms(at(&replacements[1], "startedAt")),
        ),
        ("API: both replacements RUNNING seen", ms(seen_both)),
        (
            "runs with a restart-backoff event (count)",
            if throttled { 1.0 } else { 0.0 },
        ),
    ]
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[f64], p: usize) -> f64 {
    let rank = (v.len() * p).div_ceil(100).max(1);
    v[rank - 1]
}

fn report(runs: &[Phases]) {
    let counts = |name: &str| name.starts_with("runs ");
    println!(
        "  {:<48} {:>9} {:>9} {:>9} {:>9}",
        "", "median", "p90", "min", "max"
    );
    for (i, (name, _)) in runs[0].iter().enumerate() {
        let mut v: Vec<f64> = runs.iter().map(|r| r[i].1).collect();
        v.sort_by(f64::total_cmp);
        if counts(name) {
            println!("  {name:<48} {:>9}", v.iter().sum::<f64>());
            continue;
        }
        println!(
            "  {name:<48} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            pct(&v, 50),
            pct(&v, 90),
            v[0],
            v[v.len() - 1]
        );
    }
}
