//! Rolling deployments end to end: the control plane in-process (controllers
//! resyncing every 200 ms), two agents on the real Docker Engine running the
//! `flotilla-test` image, everything through the ECS API and, for
//! `services-stable`, the real AWS CLI.
//!
//! - a 4-task service moves from revision 1 to 2 and `aws ecs wait
//!   services-stable` returns with one deployment, on revision 2;
//! - a revision whose container exits at once trips the circuit breaker and
//!   the service rolls back to revision 1 (rolloutState FAILED seen in
//!   `deployments`, "deployment failed" in `events`);
//!   (and, deterministically, with minimumHealthyPercent 0 / maximumPercent
//!   100, where the old deployment is gone before the breaker trips: the
//!   rollback still goes to the last COMPLETED deployment);
//! - the same for a revision whose health check fails;
//! - with minimumHealthyPercent 50 / maximumPercent 100, sampling the task
//!   counts through the API and Docker during the rollout: never more than 4
//!   tasks not STOPPED (nor running containers), never fewer than 2 healthy.
//!
//! Each test has its own cluster and agents; the cluster's containers are
//! removed at the end, also when a test fails.

mod deploy_harness;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use deploy_harness::{container, healthy, revision, stable, Env, Sample, Sampler};
use serde_json::{json, Value};

/// The breaker, with rollback, and ECS's default percentages.
fn breaker() -> Value {
    json!({"deploymentCircuitBreaker": {"enable": true, "rollback": true}, "minimumHealthyPercent": 100, "maximumPercent": 200})
}

fn events(s: &Value) -> Vec<String> {
    s["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Revision 1 of family `web` (sleeps; healthy as soon as it runs) as a
/// stable 4-task service `web` with `config`.
async fn stable_service_on_revision_1(env: &Env, config: Value) -> String {
    let v1 = env
        .register("web", json!([container("app", &["sleep"])]))
        .await;
    assert_eq!(revision(&v1), 1, "{v1}");
    env.create_service("web", &v1, 4, config).await;
    env.wait_stable_on(
        "web",
        &v1,
        Duration::from_secs(60),
        Duration::from_millis(100),
    )
    .await;
    v1
}

fn deployments_seen(samples: &[Sample]) -> Vec<&Value> {
    samples.iter().flat_map(|s| &s.deployments).collect()
}

fn summary(samples: &[Sample]) -> String {
    samples
        .iter()
        .map(|s| {
            format!(
                "{:>6.2}s occupying {} healthy {} docker {} by revision {:?} deployments {:?}\n",
                s.at.as_secs_f64(),
                s.occupying,
                s.healthy,
                s.docker_running,
                s.by_revision,
                s.deployments
                    .iter()
                    .map(|d| format!(
                        "{}:{}:{}:failed={}",
                        revision(d["taskDefinition"].as_str().unwrap_or_default()),
                        d["status"].as_str().unwrap_or_default(),
                        d["rolloutState"].as_str().unwrap_or_default(),
                        d["failedTasks"]
                    ))
                    .collect::<Vec<_>>()
            )
        })
        .collect()
}

/// One line per task, oldest first: for failure messages.
fn task_table(tasks: &[Value]) -> String {
    let mut tasks: Vec<&Value> = tasks.iter().collect();
    tasks.sort_by(|a, b| {
        a["createdAt"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["createdAt"].as_f64().unwrap_or(0.0))
    });
    let t0 = tasks
        .first()
        .and_then(|t| t["createdAt"].as_f64())
        .unwrap_or(0.0);
    let at = |t: &Value, f: &str| {
        t[f].as_f64()
            .map(|v| format!("{:.2}", v - t0))
            .unwrap_or_else(|| "-".into())
    };
    tasks
        .iter()
        .map(|t| {
            format!(
                "{} rev {} by {} {}/{} health {} created {} started {} stopping {} stopped {} exit {} {} {:?}\n",
                t["taskArn"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default(),
                revision(t["taskDefinitionArn"].as_str().unwrap_or_default()),
                t["startedBy"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default(),
                t["lastStatus"].as_str().unwrap_or_default(),
                t["desiredStatus"].as_str().unwrap_or_default(),
                t["healthStatus"].as_str().unwrap_or("-"),
                at(t, "createdAt"),
                at(t, "startedAt"),
                at(t, "stoppingAt"),
                at(t, "stoppedAt"),
                t["containers"][0]["exitCode"],
                t["stopCode"].as_str().unwrap_or("-"),
                t["stoppedReason"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

/// Asserts the rollout's bounds at every sample: at most `ceiling` tasks
/// not STOPPED and running containers, at least `floor` healthy tasks.
fn assert_bounds(samples: &[Sample], floor: usize, ceiling: usize) {
    for s in samples {
        assert!(
            s.occupying <= ceiling && s.docker_running <= ceiling && s.healthy >= floor,
            "bounds [{floor} healthy, {ceiling} occupying] broken at {:?}:\n{}",
            s.at,
            summary(samples)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_to_revision_2_satisfies_the_aws_cli_waiter() {
    let env = Env::start("deploy-roll", 2).await;
    let v1 = stable_service_on_revision_1(&env, breaker()).await;
    let first: Vec<String> = env
        .tasks("web")
        .await
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first.len(), 4);

    let mut app = container("app", &["sleep"]);
    app["environment"] = json!([{"name": "REVISION", "value": "2"}]);
    let v2 = env.register("web", json!([app])).await;
    assert_eq!(revision(&v2), 2, "{v2}");

    let sampler = Sampler::start(
        env.api.clone(),
        "web",
        BTreeSet::new(),
        Duration::from_millis(50),
    );
    let started = Instant::now();
    let updated = env.update_service("web", &v2).await;
    let deps = updated["service"]["deployments"].as_array().unwrap();
    assert_eq!(deps.len(), 2, "{updated:#}");
    assert_eq!(deps[0]["status"], "PRIMARY");
    assert_eq!(deps[0]["taskDefinition"], v2.as_str());
    assert_eq!(deps[0]["rolloutState"], "IN_PROGRESS");
    assert_eq!(deps[1]["status"], "ACTIVE");

    // The real CLI waiter, started right after the update: it must not
    // succeed before the old deployment has left.
    let (ok, stderr, waited) = env.cli_wait_services_stable("web").await;
    let samples = sampler.stop().await;
    assert!(
        ok,
        "aws ecs wait services-stable failed after {waited:?}: {stderr}"
    );
    eprintln!(
        "rollout 1 -> 2 stable for the CLI waiter after {:?}",
        started.elapsed()
    );

    let s = env.service("web").await;
    assert!(stable(&s), "{s:#}");
    let deps = s["deployments"].as_array().unwrap();
    assert_eq!(deps.len(), 1, "{s:#}");
    assert_eq!(deps[0]["taskDefinition"], v2.as_str(), "{s:#}");
    assert_eq!(deps[0]["status"], "PRIMARY");
    assert_eq!(deps[0]["rolloutState"], "COMPLETED", "{s:#}");
    assert_eq!(deps[0]["runningCount"], 4);
    assert_eq!(s["taskDefinition"], v2.as_str());
    assert_eq!(s["runningCount"], 4);
    let ev = events(&s);
    assert!(
        ev.iter().any(|e| e.contains("deployment completed")),
        "{ev:#?}"
    );
    assert!(ev[0].ends_with("has reached a steady state."), "{ev:#?}");

    let tasks = env.tasks("web").await;
    let live: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["desiredStatus"] == "RUNNING")
        .collect();
    assert_eq!(live.len(), 4, "{tasks:#?}");
    assert!(
        live.iter()
            .all(|t| t["lastStatus"] == "RUNNING" && t["taskDefinitionArn"] == v2.as_str()),
        "{live:#?}"
    );
    for arn in &first {
        let t = tasks
            .iter()
            .find(|t| t["taskArn"] == arn.as_str())
            .expect("old task still listed");
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["stopCode"], "ServiceSchedulerInitiated", "{t:#}");
    }
    let running = env.running_containers().await;
    assert_eq!(running.len(), 4, "{running:?}");
    assert!(running.iter().all(|(_, rev)| rev == "2"), "{running:?}");

    // Defaults 100/200: all 4 old tasks serve until replacements are healthy.
    assert_bounds(&samples, 4, 8);
    assert!(
        samples.iter().any(|s| s.by_revision.len() == 2),
        "the sampler saw the rollout:\n{}",
        summary(&samples)
    );
    let _ = v1;
    env.stop().await;
}

/// The rollout of `bad` fails; the service must come back, stable, on `v1`.
/// Returns the samples and the final service.
async fn rollback(
    env: &Env,
    v1: &str,
    bad: &str,
    checked: BTreeSet<String>,
) -> (Vec<Sample>, Value, String) {
    let sampler = Sampler::start(env.api.clone(), "web", checked, Duration::from_millis(50));
    let started = Instant::now();
    let updated = env.update_service("web", bad).await;
    let bad_id = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Until stable on v1; fails fast when the service can no longer get there.
    let s = loop {
        let s = env.service("web").await;
        if stable(&s) && s["deployments"][0]["taskDefinition"] == v1 {
            break s;
        }
        let stuck = if let Some(e) = events(&s)
            .into_iter()
            .find(|e| e.contains("cannot roll back"))
        {
            Some(format!(
                "the breaker tripped but the service cannot roll back to {v1}: {e:?}"
            ))
        } else if s["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == bad_id.as_str() && d["rolloutState"] == "COMPLETED")
        {
            Some(format!(
                "the deployment of the failing revision {bad} was marked COMPLETED"
            ))
        } else if started.elapsed() > Duration::from_secs(120) {
            Some(format!("not rolled back to {v1} after 120 s"))
        } else {
            None
        };
        if let Some(why) = stuck {
            let samples = sampler.stop().await;
            panic!(
                "{why}\nsamples:\n{}tasks:\n{}service: {s:#}",
                summary(&samples),
                task_table(&env.tasks("web").await)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let samples = sampler.stop().await;
    eprintln!("rollback to {v1} stable after {:?}", started.elapsed());
    eprintln!("tasks:\n{}", task_table(&env.tasks("web").await));
    eprintln!("events:\n{:#?}", events(&s));
    (samples, s, bad_id)
}

/// What every rollback must show: back on v1 and COMPLETED, FAILED recorded
/// for the bad deployment in `deployments` (while listed) and in `events`,
/// no task of the bad revision left, never more than `ceiling` tasks and
/// never fewer than `floor` healthy ones.
#[allow(clippy::too_many_arguments)]
async fn assert_rolled_back(
    env: &Env,
    v1: &str,
    bad: &str,
    bad_id: &str,
    samples: &[Sample],
    s: &Value,
    floor: usize,
    ceiling: usize,
) -> Vec<Value> {
    assert_eq!(s["taskDefinition"], v1, "{s:#}");
    let deps = s["deployments"].as_array().unwrap();
    assert_eq!(deps.len(), 1, "{s:#}");
    assert_eq!(deps[0]["taskDefinition"], v1);
    assert_eq!(deps[0]["rolloutState"], "COMPLETED", "{s:#}");
    assert_eq!(s["runningCount"], 4);

    // FAILED in the events, for good.
    let ev = events(s);
    let failed_event =
        format!("(service web) (deployment {bad_id}) deployment failed: tasks failed to start.");
    assert!(ev.contains(&failed_event), "{ev:#?}");
    // Named by deployment while that deployment is still listed, else by its task definition.
    assert!(
        ev.iter().any(
            |e| e.starts_with("(service web) rolling back to deployment ecs-svc/")
                || e == &format!("(service web) rolling back to task definition {v1}.")
        ),
        "{ev:#?}"
    );
    assert!(ev[0].ends_with("has reached a steady state."), "{ev:#?}");
    // And in `deployments` while the failed one was still listed (until its
    // last task stopped: the sampler sees it unless that took under 50 ms).
    let seen: Vec<&Value> = deployments_seen(samples)
        .into_iter()
        .filter(|d| d["id"] == bad_id)
        .collect();
    assert!(seen.iter().all(|d| d["taskDefinition"] == bad), "{seen:#?}");
    match seen.iter().find(|d| d["rolloutState"] == "FAILED") {
        Some(failed) => {
            assert_eq!(
                failed["status"], "ACTIVE",
                "demoted in the same commit: {failed:#}"
            );
            assert!(
                failed["failedTasks"].as_i64().unwrap() >= 10,
                "threshold min(max(ceil(0.5 × 4), 10), 200) = 10: {failed:#}"
            );
            assert_eq!(
                failed["rolloutStateReason"],
                "ECS deployment circuit breaker: tasks failed to start.",
                "{failed:#}"
            );
        }
        None => eprintln!("note: the FAILED deployment left `deployments` between two samples"),
    }
    // It never looked COMPLETED.
    assert!(
        seen.iter().all(|d| d["rolloutState"] != "COMPLETED"),
        "{}",
        summary(samples)
    );

    let tasks = env.tasks("web").await;
    let live: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["desiredStatus"] == "RUNNING")
        .collect();
    assert_eq!(live.len(), 4, "{live:#?}");
    assert!(
        live.iter()
            .all(|t| t["lastStatus"] == "RUNNING" && t["taskDefinitionArn"] == v1),
        "{live:#?}"
    );
    let running = env.running_containers().await;
    assert_eq!(running.len(), 4, "{running:?}");
    assert!(running.iter().all(|(_, rev)| rev == "1"), "{running:?}");

    let lowest = samples.iter().map(|s| s.healthy).min().unwrap();
    eprintln!("fewest healthy tasks seen during the rollback: {lowest}");
    assert_bounds(samples, floor, ceiling);
    let bad_tasks: Vec<Value> = tasks
        .into_iter()
        .filter(|t| t["taskDefinitionArn"] == bad)
        .collect();
    assert!(
        bad_tasks.len() >= 10,
        "{} tasks of the bad revision",
        bad_tasks.len()
    );
    assert!(
        bad_tasks.iter().all(|t| t["lastStatus"] == "STOPPED"),
        "{bad_tasks:#?}"
    );
    bad_tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_exits_at_once_is_rolled_back() {
    let env = Env::start("deploy-crash", 2).await;
    let v1 = stable_service_on_revision_1(&env, breaker()).await;
    let v2 = env
        .register("web", json!([container("app", &["exit", "1"])]))
        .await;
    let (samples, s, bad_id) = rollback(&env, &v1, &v2, BTreeSet::new()).await;
    // No floor here: a task without a health check counts as healthy the
    // moment it is RUNNING (ECS's rule too), so when a crashing task is
    // reported RUNNING before its exit, an old task is stopped as surplus;
    // the exit then leaves the service below minimumHealthyPercent until the
    // replacements run. The plan never breaks the floor; the world does.
    let bad = assert_rolled_back(&env, &v1, &v2, &bad_id, &samples, &s, 0, 8).await;
    // At least the threshold's worth exited by themselves; the rest were
    // still starting when the rollback stopped them.
    let exited = bad
        .iter()
        .filter(|t| t["stopCode"] == "EssentialContainerExited")
        .count();
    assert!(exited >= 10, "{exited} tasks exited by themselves");
    for t in &bad {
        assert!(
            t["stopCode"] == "EssentialContainerExited"
                || t["stoppedReason"]
                    == "Scaling activity initiated by (deployment of service web)",
            "{t:#}"
        );
        if t["stopCode"] == "EssentialContainerExited" {
            assert_eq!(t["containers"][0]["exitCode"], 1, "{t:#}");
        }
    }
    env.stop().await;
}

/// The rollback target is the last deployment that COMPLETED, also when
/// that deployment has no task left: with minimumHealthyPercent 0 and
/// maximumPercent 100 the old tasks are all stopped before any new one
/// starts, so the old deployment leaves `deployments` before the breaker
/// trips. (The same happens by chance in the test above when enough crashing
/// tasks are seen RUNNING to retire every old task.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollout_rolls_back_after_the_old_tasks_are_gone() {
    let env = Env::start("deploy-crash-empty", 2).await;
    let config = json!({"deploymentCircuitBreaker": {"enable": true, "rollback": true}, "minimumHealthyPercent": 0, "maximumPercent": 100});
    let v1 = stable_service_on_revision_1(&env, config).await;
    let v2 = env
        .register("web", json!([container("app", &["exit", "1"])]))
        .await;
    let (samples, s, bad_id) = rollback(&env, &v1, &v2, BTreeSet::new()).await;
    // Never more than 4 tasks; no floor (minimumHealthyPercent 0).
    let bad = assert_rolled_back(&env, &v1, &v2, &bad_id, &samples, &s, 0, 4).await;
    assert!(
        bad.iter()
            .filter(|t| t["stopCode"] == "EssentialContainerExited")
            .count()
            >= 10
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_whose_health_check_fails_is_rolled_back() {
    let env = Env::start("deploy-health", 2).await;
    let v1 = stable_service_on_revision_1(&env, breaker()).await;
    let mut app = container("app", &["sleep"]);
    // ECS's documented minimums (interval 5 s, timeout 2 s, retries 1).
    app["healthCheck"] = json!({"command": ["CMD", "/testprog", "health-fail"], "interval": 5, "timeout": 2, "retries": 1, "startPeriod": 0});
    let v2 = env.register("web", json!([app])).await;
    let (samples, s, bad_id) = rollback(&env, &v1, &v2, BTreeSet::from([v2.clone()])).await;
    // The new tasks are never healthy (UNKNOWN, then UNHEALTHY), so all 4
    // old ones keep serving until the rollback's replacements run.
    let bad = assert_rolled_back(&env, &v1, &v2, &bad_id, &samples, &s, 4, 8).await;
    // At least the threshold's worth reached RUNNING, were judged UNHEALTHY
    // by Docker's health check and stopped for it by the service scheduler;
    // the rest were stopped by the rollback. The program exits 0 on SIGTERM.
    let unhealthy: Vec<&Value> = bad
        .iter()
        .filter(|t| t["stoppedReason"] == "Task failed container health checks")
        .collect();
    assert!(
        unhealthy.len() >= 10,
        "{} tasks stopped for failed health checks",
        unhealthy.len()
    );
    for t in unhealthy {
        assert!(t["startedAt"].is_number(), "{t:#}");
        assert_eq!(t["healthStatus"], "UNHEALTHY", "{t:#}");
        assert_eq!(t["containers"][0]["healthStatus"], "UNHEALTHY", "{t:#}");
        assert_eq!(t["stopCode"], "ServiceSchedulerInitiated", "{t:#}");
    }
    for t in &bad {
        assert!(
            t["stoppedReason"] == "Task failed container health checks"
                || t["stoppedReason"]
                    == "Scaling activity initiated by (deployment of service web)",
            "{t:#}"
        );
        // Stopped with SIGTERM (the program exits 0), or, when it was stopped
        // while still starting and had no SIGTERM handler yet (PID 1 ignores
        // the signal), killed after stopTimeout (137).
        let code = &t["containers"][0]["exitCode"];
        assert!(code == 0 || code == 137, "{t:#}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_50_max_100_holds_during_the_rollout() {
    let env = Env::start("deploy-bounds", 2).await;
    let config = json!({"deploymentCircuitBreaker": {"enable": true, "rollback": true}, "minimumHealthyPercent": 50, "maximumPercent": 100});
    let _v1 = stable_service_on_revision_1(&env, config).await;
    let mut app = container("app", &["sleep"]);
    app["environment"] = json!([{"name": "REVISION", "value": "2"}]);
    let v2 = env.register("web", json!([app])).await;

    let sampler = Sampler::start(
        env.api.clone(),
        "web",
        BTreeSet::new(),
        Duration::from_millis(20),
    );
    let started = Instant::now();
    env.update_service("web", &v2).await;
    let (s, _) = env
        .wait_stable_on(
            "web",
            &v2,
            Duration::from_secs(60),
            Duration::from_millis(50),
        )
        .await;
    // A few more samples after the end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let samples = sampler.stop().await;
    eprintln!(
        "min 50 / max 100 rollout stable after {:?}, {} samples:\n{}",
        started.elapsed(),
        samples.len(),
        summary(&samples)
    );
    eprintln!("tasks:\n{}", task_table(&env.tasks("web").await));
    assert_eq!(s["deployments"][0]["rolloutState"], "COMPLETED", "{s:#}");

    // RUNNING + PENDING (and stopping) never above 4, in the API and in
    // Docker; healthy RUNNING never below 2.
    assert_bounds(&samples, 2, 4);
    // And the sampler did watch a rollout that used the room it had.
    assert!(samples.len() >= 20, "{}", summary(&samples));
    assert!(
        samples.iter().any(|s| s.by_revision.len() == 2),
        "both revisions at once:\n{}",
        summary(&samples)
    );
    assert!(
        samples.iter().any(|s| s.healthy < 4),
        "old tasks stopped before new ones were up:\n{}",
        summary(&samples)
    );
    let last = samples.last().unwrap();
    assert_eq!(
        (last.occupying, last.healthy, last.docker_running),
        (4, 4, 4),
        "{}",
        summary(&samples)
    );
    let tasks = env.tasks("web").await;
    assert_eq!(
        tasks
            .iter()
            .filter(|t| healthy(t, &BTreeSet::new()) && t["taskDefinitionArn"] == v2.as_str())
            .count(),
        4
    );
    env.stop().await;
}
