//! Wall time of deployments on the real Docker Engine, and where it goes:
//!
//! - a rolling update of a 10-task service of healthy tasks (ECS defaults:
//!   minimumHealthyPercent 100, maximumPercent 200), from UpdateService to
//!   the service stable on the new revision (one deployment, 10 RUNNING);
//! - the same with minimumHealthyPercent 50 / maximumPercent 100 (old tasks
//!   stop first, in two rounds);
//! - an automatic rollback: UpdateService to a revision whose container
//!   exits at once, circuit breaker with rollback, until the service is
//!   stable again on the old revision;
//! - the floor: 10 containers of the same image created and started at once
//!   straight through the Docker API.
//!
//! The control plane runs in-process (SQLite, controllers resyncing every
//! 200 ms) with two in-process agents; "stable" is polled with
//! DescribeServices every 20 ms. The phases come from the tasks' own
//! timestamps (createdAt, startedAt, stoppingAt, stoppedAt) and the
//! service's events, relative to the UpdateService call.
//!
//! `cargo bench -p flotilla --bench deployments` (`BENCH_RUNS=N`, default 5).

#[path = "../tests/deploy_harness/mod.rs"]
mod deploy_harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use deploy_harness::{container, epoch, Env};
use flotilla_agent::testing::{ContainerGuard, TEST_IMAGE, TEST_LABEL};
use serde_json::{json, Value};

const DESIRED: u32 = 10;
const POLL: Duration = Duration::from_millis(20);

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(runs));
}

/// Named phases of one run, in seconds since UpdateService.
type Phases = Vec<(&'static str, f64)>;

async fn bench(runs: usize) {
    let env = Env::start("bench-deploy", 2).await;
    let mut rev = 0;
    let mut next_revision = |env: &Env, command: Vec<&'static str>| {
        rev += 1;
        let mut app = container("app", &command);
        app["environment"] = json!([{"name": "BENCH_REVISION", "value": rev.to_string()}]);
        let env_client = env.api.clone();
        async move {
            let v = env_client
                .call(
                    "RegisterTaskDefinition",
                    json!({"family": "bench", "containerDefinitions": [app]}),
                )
                .await;
            v["taskDefinition"]["taskDefinitionArn"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let first = next_revision(&env, vec!["sleep"]).await;
    let config = json!({"deploymentCircuitBreaker": {"enable": true, "rollback": true}, "minimumHealthyPercent": 100, "maximumPercent": 200});
    env.create_service("web", &first, DESIRED, config.clone())
        .await;
    env.wait_stable_on("web", &first, Duration::from_secs(120), POLL)
        .await;
    // Warm-up: one rollout not measured.
    let mut current = next_revision(&env, vec!["sleep"]).await;
    rolling(&env, &current).await;

    let mut roll = Vec::new();
    for _ in 0..runs {
        current = next_revision(&env, vec!["sleep"]).await;
        roll.push(rolling(&env, &current).await);
    }

    let mut back = Vec::new();
    for _ in 0..runs {
        let bad = next_revision(&env, vec!["exit", "1"]).await;
        back.push(rollback(&env, &current, &bad).await);
    }

    let tight = json!({"deploymentCircuitBreaker": {"enable": true, "rollback": true}, "minimumHealthyPercent": 50, "maximumPercent": 100});
    env.call(
        "UpdateService",
        json!({"cluster": env.cluster, "service": "web", "deploymentConfiguration": tight}),
    )
    .await;
    let mut roll_tight = Vec::new();
    for _ in 0..runs {
        current = next_revision(&env, vec!["sleep"]).await;
        roll_tight.push(rolling(&env, &current).await);
    }

    let floor = docker_floor(&env, runs).await;

    println!("deployments of a {DESIRED}-task service, 2 agents on one Docker Engine, median of {runs} runs (min..max)");
    report(
        &format!("rolling update, healthy tasks, min 100 / max 200 ({DESIRED} tasks)"),
        &roll,
    );
    report(
        &format!("rolling update, healthy tasks, min 50 / max 100 ({DESIRED} tasks)"),
        &roll_tight,
    );
    report(
        "automatic rollback (new revision exits at once, breaker threshold 10)",
        &back,
    );
    println!("floor: {DESIRED} containers created and started at once through the Docker API");
    let mut floor = floor;
    floor.sort_by(f64::total_cmp);
    println!(
        "  {:<52} {:>8.3} s  ({:.3}..{:.3})",
        "all started",
        floor[floor.len() / 2],
        floor[0],
        floor[floor.len() - 1]
    );
    env.stop().await;
}

/// Tasks of the service that a deployment started (`startedBy`).
fn of_deployment<'a>(tasks: &'a [Value], id: &str) -> Vec<&'a Value> {
    tasks.iter().filter(|t| t["startedBy"] == id).collect()
}

fn times(tasks: &[&Value], field: &str, t0: f64) -> Vec<f64> {
    let mut v: Vec<f64> = tasks
        .iter()
        .filter_map(|t| t[field].as_f64())
        .map(|t| t - t0)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn event_at(s: &Value, needle: &str, t0: f64) -> Option<f64> {
    s["events"]
        .as_array()?
        .iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains(needle)))
        .filter_map(|e| e["createdAt"].as_f64())
        .map(|t| t - t0)
        .filter(|t| *t >= 0.0)
        .reduce(f64::min)
}

/// UpdateService to `to`; waits until stable on it. The phases.
async fn rolling(env: &Env, to: &str) -> Phases {
    let before = env.service("web").await;
    let old_id = before["deployments"][0]["id"].as_str().unwrap().to_string();
    let t0 = epoch();
    let start = Instant::now();
    let updated = env.update_service("web", to).await;
    let new_id = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = env
        .wait_stable_on("web", to, Duration::from_secs(120), POLL)
        .await;
    let stable = start.elapsed().as_secs_f64();
    let tasks = env.tasks("web").await;
    let new = of_deployment(&tasks, &new_id);
    let old = of_deployment(&tasks, &old_id);
    let new_running = times(&new, "startedAt", t0);
    let old_stopping = times(&old, "stoppingAt", t0);
    let old_stopped = times(&old, "stoppedAt", t0);
    let mut place_to_run: Vec<f64> = new
        .iter()
        .filter_map(|t| Some(t["startedAt"].as_f64()? - t["createdAt"].as_f64()?))
        .collect();
    place_to_run.sort_by(f64::total_cmp);
    let new_placed = times(&new, "createdAt", t0);
    vec![
        ("last new task placed", *new_placed.last().unwrap()),
        ("first new task RUNNING", new_running[0]),
        ("all new tasks RUNNING", *new_running.last().unwrap()),
        (
            "new task placed -> RUNNING (median per task)",
            place_to_run[place_to_run.len() / 2],
        ),
        ("first old task asked to stop", old_stopping[0]),
        ("all old tasks STOPPED", *old_stopped.last().unwrap()),
        (
            "deployment COMPLETED (event)",
            event_at(
                &s,
                &format!("(deployment {new_id}) deployment completed"),
                t0,
            )
            .unwrap_or(f64::NAN),
        ),
        ("stable (DescribeServices)", stable),
    ]
}

/// UpdateService to `bad` (exits at once); waits until stable on `good`
/// again. The phases.
async fn rollback(env: &Env, good: &str, bad: &str) -> Phases {
    let before = env.service("web").await;
    let old_id = before["deployments"][0]["id"].as_str().unwrap().to_string();
    let t0 = epoch();
    let start = Instant::now();
    let updated = env.update_service("web", bad).await;
    let bad_id = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = env
        .wait_stable_on("web", good, Duration::from_secs(180), POLL)
        .await;
    let stable = start.elapsed().as_secs_f64();
    let back_id = s["deployments"][0]["id"].as_str().unwrap().to_string();
    let tasks = env.tasks("web").await;
    let failed = of_deployment(&tasks, &bad_id);
    let failed_stopped = times(&failed, "stoppedAt", t0);
    let back = of_deployment(&tasks, &back_id);
    let back_running = times(&back, "startedAt", t0);
    let old = of_deployment(&tasks, &old_id);
    let old_stopped = times(&old, "stoppedAt", t0);
    let tripped =
        event_at(&s, &format!("(deployment {bad_id}) deployment failed"), t0).unwrap_or(f64::NAN);
    let back_placed = times(&back, "createdAt", t0);
    let exited = failed
        .iter()
        .filter(|t| t["stopCode"] == "EssentialContainerExited")
        .count();
    let early = old
        .iter()
        .filter(|t| t["stoppingAt"].as_f64().is_some_and(|at| at - t0 < tripped))
        .count();
    vec![
        ("first failed task STOPPED", failed_stopped[0]),
        ("breaker tripped: deployment FAILED (event)", tripped),
        (
            "rollback deployment created",
            s["deployments"][0]["createdAt"].as_f64().unwrap() - t0,
        ),
        (
            "tasks started by the failed deployment",
            failed.len() as f64,
        ),
        ("tasks of it that exited (failures)", exited as f64),
        (
            "tasks of the old deployment stopped before the trip",
            early as f64,
        ),
        ("first rollback task placed", back_placed[0]),
        ("last rollback task placed", *back_placed.last().unwrap()),
        (
            "last task of the failed deployment STOPPED",
            *failed_stopped.last().unwrap(),
        ),
        (
            "all rollback tasks RUNNING",
            back_running.last().copied().unwrap_or(f64::NAN),
        ),
        (
            "all original tasks STOPPED",
            old_stopped.last().copied().unwrap_or(f64::NAN),
        ),
        ("stable on the old revision (DescribeServices)", stable),
    ]
}

/// DESIRED containers of the test image created and started concurrently
/// with bollard; seconds until all have started.
async fn docker_floor(env: &Env, runs: usize) -> Vec<f64> {
    let value = format!("bench-deploy-{}", std::process::id());
    let _guard = ContainerGuard::new(&env.docker, TEST_LABEL, &value).await;
    let mut out = Vec::new();
    for run in 0..runs {
        let start = Instant::now();
        let starts = (0..DESIRED).map(|i| {
            let docker = env.docker.clone();
            let value = value.clone();
            async move {
                let body = ContainerCreateBody {
                    image: Some(TEST_IMAGE.to_string()),
                    cmd: Some(vec!["sleep".to_string()]),
                    labels: Some(HashMap::from([(TEST_LABEL.to_string(), value)])),
                    ..Default::default()
                };
                let name = format!("bench-floor-{}-{run}-{i}", std::process::id());
                let c = docker
                    .create_container(
                        Some(CreateContainerOptions {
                            name: Some(name),
                            ..Default::default()
                        }),
                        body,
                    )
                    .await
                    .unwrap();
                docker
                    .start_container(&c.id, None::<StartContainerOptions>)
                    .await
                    .unwrap();
            }
        });
        futures_join_all(starts).await;
        out.push(start.elapsed().as_secs_f64());
        flotilla_agent::testing::remove_labelled(&env.docker, TEST_LABEL, &value).await;
    }
    out
}

/// Runs the futures concurrently (no futures crate in this package).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    fs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}

fn report(what: &str, runs: &[Phases]) {
    println!("{what}");
    for (i, (name, _)) in runs[0].iter().enumerate() {
        let mut v: Vec<f64> = runs.iter().map(|r| r[i].1).collect();
        v.sort_by(f64::total_cmp);
        let unit = if name.starts_with("tasks ") {
            "  "
        } else {
            " s"
        };
        println!(
            "  {name:<52} {:>8.3}{unit}  ({:.3}..{:.3})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
}
