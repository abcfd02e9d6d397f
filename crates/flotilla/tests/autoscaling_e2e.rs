//! End to end: target tracking settles on the count that brings the
//! average under the target. A service behind a real application load
//! balancer (the `flotilla_lb` node in-process, as `flotilla dev` runs it),
//! with a target tracking policy at 50 % on the high-resolution CPU metric,
//! gets a fixed request rate through the listener; each request burns a
//! fixed amount of CPU in whichever task serves it (`/burn/MS` of the test
//! image), so the load is shared: more tasks, lower average. The whole
//! chain is real: the AWS CLI v1, the agent's Docker stats, the usage
//! controller's `AWS/ECS` datapoints, the alarm controller, the autoscaling
//! controller, the service controller, the target group's registrations and
//! health checks.
//!
//! Sizes: each task reserves [`RESERVED`] CPU units; the loader sends
//! [`RATE`] requests a second of [`BURN_MS`] ms of CPU each, 0.15 vCPU
//! (153.6 units): 120 % of one task's reservation, 60 % of two, 40 % of
//! three. Target tracking's arithmetic, desired = ceil(1 × 120 / 50) = 3,
//! takes the service from 1 task to 3 in one step; at 3 the average (40 %)
//! is under the target and above what 2 tasks would need (33.3 %), so 3 is
//! the least count that keeps it under: the count holds while the load
//! lasts (max is 6, so max is not what stops it). The burn is measured in
//! the thread's own CPU time, so a busy machine makes requests slower, not
//! cheaper; the margins (one task between 100 % and 150 % scales straight
//! to 3, three tasks stay at 3 between 33.3 % and 50 %, and under 45 % the
//! scale-in alarm counts) are ±12 % or more around the design figures, so a
//! noisy machine (others' builds) does not change the outcome.
//!
//! Then the load stops and the service scales in after the cooldown, never
//! below min: once it runs at 3 the scalable target is registered again
//! with min 2 (a floor one step away, so the test stops a minute sooner
//! than going down to 1), the scale-in alarm's first firing with the load
//! gone takes 3 to 2, and its next firing, past the 30 s scale-in cooldown,
//! is recorded as not scaled, `AlreadyAtMinCapacity`.
//!
//! Run time (about 7.3 minutes: 435-440 s in three runs) is set by the
//! alarms' shapes, not by the waits: three 20-second periods over the
//! target to scale out (about 52 s), fifteen under 90 % of it (five
//! minutes, counted from when the three tasks share the load, which is
//! under 45 %) to scale in, then the one-minute repeat of the alarm's
//! actions to show the floor. Every wait is bounded; the loader is bounded by
//! a stop flag, a time limit and a request count.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::lb::{
    aws, forward_listener, http_target_group, load_balancer, target_health, Conn, LbNode,
};
use common::{wait_for, Env};
use serde_json::json;

/// The agent's host address and the load-balancer node's (this test's own).
const AGENT_IP: &str = "127.0.8.1";
const LB_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 8, 2);

/// CPU units each task reserves.
const RESERVED: u32 = 128;
/// Requests per second the loader sends through the listener.
const RATE: u64 = 10;
/// Milliseconds of CPU each request burns in the task.
const BURN_MS: u64 = 15;
/// Keep-alive connections the loader spreads the rate over.
const CONNECTIONS: u64 = 4;
/// The count target tracking should settle on: ceil(1 × 120 % / 50 %).
const SETTLED: i64 = 3;
/// How long the settled count must hold under load.
const HOLD: Duration = Duration::from_secs(240);

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// What the loader did.
#[derive(Debug, Default)]
struct LoadReport {
    sent: usize,
    ok: usize,
    failures: Vec<String>,
    seconds: f64,
}

/// A bounded open-loop loader: [`CONNECTIONS`] keep-alive connections,
/// together [`RATE`] requests a second of `/burn/BURN_MS` on a fixed
/// schedule (a stalled connection catches up, so the CPU it asks for per
/// minute stays the same), until `stop` is set, `limit` passes or
/// `max_requests` are sent.
async fn load(
    addr: String,
    host: String,
    stop: Arc<AtomicBool>,
    limit: Duration,
    max_requests: usize,
) -> LoadReport {
    let start = Instant::now();
    let every = Duration::from_millis(1000 * CONNECTIONS / RATE);
    let path = format!("/burn/{BURN_MS}");
    let mut handles = Vec::new();
    for i in 0..CONNECTIONS {
        let (addr, host, stop, path) = (addr.clone(), host.clone(), stop.clone(), path.clone());
        let offset = every / CONNECTIONS as u32 * i as u32;
        handles.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut conn: Option<Conn> = None;
            let mut report = LoadReport::default();
            let per_conn = max_requests / CONNECTIONS as usize;
            while report.sent < per_conn {
                ticks.tick().await;
                if stop.load(Ordering::Relaxed) || start.elapsed() >= limit {
                    break;
                }
                report.sent += 1;
                let result = tokio::time::timeout(Duration::from_secs(10), async {
                    if conn.is_none() {
                        conn = Some(Conn::open(&addr).await?);
                    }
                    let (status, _) = conn.as_mut().unwrap().get_path(&host, &path).await?;
                    Ok(status)
                })
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("timed out after 10 s")));
                match result {
                    Ok(200) => report.ok += 1,
                    other => {
                        conn = None;
                        report
                            .failures
                            .push(format!("{:.1} s: {other:?}", start.elapsed().as_secs_f64()));
                    }
                }
            }
            report
        }));
    }
    let mut all = LoadReport::default();
    for h in handles {
        let r = h.await.expect("loader");
        all.sent += r.sent;
        all.ok += r.ok;
        all.failures.extend(r.failures);
    }
    all.seconds = start.elapsed().as_secs_f64();
    all
}

/// The service's desired and running counts, polled, with every change
/// kept: (seconds since `start`, desired, running).
struct Watch {
    start: Instant,
    history: Vec<(f64, i64, i64)>,
}

impl Watch {
    async fn poll(&mut self, env: &Env) -> (i64, i64) {
        let d = env
            .call(
                "DescribeServices",
                json!({"cluster": env.cluster, "services": ["web"]}),
            )
            .await;
        let svc = &d["services"][0];
        let desired = svc["desiredCount"].as_i64().unwrap_or(-1);
        let running = svc["runningCount"].as_i64().unwrap_or(-1);
        if self.history.last().map(|h| (h.1, h.2)) != Some((desired, running)) {
            let at = self.start.elapsed().as_secs_f64();
            eprintln!("  {at:6.1} s: desired {desired}, running {running}");
            self.history.push((at, desired, running));
        }
        (desired, running)
    }

    /// Polls every half second until `done` holds of (desired, running);
    /// panics after `limit` or if `bounds` does not hold of desired.
    async fn until(
        &mut self,
        env: &Env,
        what: &str,
        limit: Duration,
        bounds: (i64, i64),
        done: impl Fn(i64, i64) -> bool,
    ) -> f64 {
        let started = Instant::now();
        loop {
            let (desired, running) = self.poll(env).await;
            assert!(
                (bounds.0..=bounds.1).contains(&desired),
                "desired count {desired} outside {bounds:?} while waiting for {what}: {:?}",
                self.history
            );
            if done(desired, running) {
                return self.start.elapsed().as_secs_f64();
            }
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}: {:?}",
                self.history
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The service's `AWS/ECS` `CPUUtilization` datapoints (10-second
/// averages) between two epoch times, as `get-metric-statistics` returns
/// them, oldest first.
async fn cpu_datapoints(env: &Env, from: f64, to: f64) -> Vec<f64> {
    let v = aws(
        env,
        "cloudwatch",
        &[
            "get-metric-statistics",
            "--namespace",
            "AWS/ECS",
            "--metric-name",
            "CPUUtilization",
            "--dimensions",
            &format!("Name=ClusterName,Value={}", env.cluster),
            "Name=ServiceName,Value=web",
            "--start-time",
            &format!("{}", from.ceil() as i64),
            "--end-time",
            &format!("{}", to.floor() as i64),
            "--period",
            "10",
            "--statistics",
            "Average",
        ],
    )
    .await;
    let mut points: Vec<(String, f64)> = v["Datapoints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|d| Some((d["Timestamp"].to_string(), d["Average"].as_f64()?)))
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    points.into_iter().map(|p| p.1).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn range(v: &[f64]) -> (f64, f64) {
    (
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

async fn healthy_targets(env: &Env, tg: &str) -> usize {
    target_health(env, tg)
        .await
        .iter()
        .filter(|d| d["TargetHealth"]["State"] == "healthy")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_tracking_settles_on_the_count_that_brings_the_average_under_the_target() {
    let test_start = Instant::now();
    let env = Env::start("e2e-scale").await;
    // The test program of this checkout, by a tag no other checkout's
    // rebuild of `flotilla-test:latest` can move (it needs `/burn/MS`).
    let image = flotilla_agent::testing::ensure_pinned_test_image(&env.docker)
        .await
        .expect("test image");
    let agent = env.agent("a", AGENT_IP).await;
    env.wait_connected(&agent.arn, true).await;

    // A real load-balancer node, in-process as `flotilla dev` runs one.
    let node = LbNode::start(&env, "e2e-scale-node", &[IpAddr::V4(LB_ADDRESS)]);
    let (lb_arn, dns) = load_balancer(&env, "web", "application").await;
    let tg_arn = http_target_group(&env, "web").await;
    forward_listener(&env, &lb_arn, "HTTP", 80, &tg_arn).await;
    let addr = format!("{dns}:80");

    // One task behind the target group.
    let web = env
        .register_task_definition(
            "e2e-scale-web",
            json!([{
                "name": "app",
                "image": image,
                "command": ["serve", "8080", "ok"],
                "cpu": RESERVED,
                "memory": 32,
                "essential": true,
                "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
            }]),
        )
        .await;
    aws(
        &env,
        "ecs",
        &[
            "create-service",
            "--cluster",
            &env.cluster,
            "--service-name",
            "web",
            "--task-definition",
            &web,
            "--desired-count",
            "1",
            "--load-balancers",
            &format!("targetGroupArn={tg_arn},containerName=app,containerPort=8080"),
        ],
    )
    .await;
    wait_for("one healthy target", Duration::from_secs(90), || async {
        (healthy_targets(&env, &tg_arn).await == 1).then_some(())
    })
    .await;

    // The load starts, then the scaling: min 1, max 6, target 50 %.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(
        addr.clone(),
        dns.clone(),
        stop.clone(),
        Duration::from_secs(600),
        (RATE * 600) as usize,
    ));
    let load_start = Instant::now();
    let load_start_epoch = epoch();
    let resource = format!("service/{}/web", env.cluster);
    let register = |min: &'static str| {
        let resource = resource.clone();
        let env = &env;
        async move {
            aws(
                env,
                "application-autoscaling",
                &[
                    "register-scalable-target",
                    "--service-namespace",
                    "ecs",
                    "--scalable-dimension",
                    "ecs:service:DesiredCount",
                    "--resource-id",
                    &resource,
                    "--min-capacity",
                    min,
                    "--max-capacity",
                    "6",
                ],
            )
            .await
        }
    };
    register("1").await;
    aws(
        &env,
        "application-autoscaling",
        &[
            "put-scaling-policy",
            "--policy-name",
            "cpu50",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            &resource,
            "--policy-type",
            "TargetTrackingScaling",
            "--target-tracking-scaling-policy-configuration",
            r#"{"TargetValue":50,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageCPUUtilizationHighResolution"},"ScaleOutCooldown":120,"ScaleInCooldown":30}"#,
        ],
    )
    .await;
    let mut watch = Watch {
        start: load_start,
        history: Vec::new(),
    };

    // Out: in proportion, and not above the count that brings the average
    // under the target.
    eprintln!("scale e2e: load on ({RATE} requests/s of {BURN_MS} ms CPU, {RESERVED} units reserved per task)");
    let out_at = watch
        .until(
            &env,
            "the service to scale out",
            Duration::from_secs(180),
            (1, SETTLED),
            |desired, _| desired > 1,
        )
        .await;
    let out_epoch = epoch();
    let all_running_at = watch
        .until(
            &env,
            "the scaled-out tasks to run",
            Duration::from_secs(120),
            (1, SETTLED),
            |desired, running| running == desired && desired == SETTLED,
        )
        .await;
    wait_for(
        "every task a healthy target",
        Duration::from_secs(90),
        || async { (healthy_targets(&env, &tg_arn).await == SETTLED as usize).then_some(()) },
    )
    .await;
    let settled_at = load_start.elapsed().as_secs_f64();
    let settled_epoch = epoch();
    // A floor one step under the settled count (see the module docs).
    register("2").await;

    // It holds while the load lasts: no flapping up (or down).
    watch
        .until(
            &env,
            "the hold under load",
            HOLD + Duration::from_secs(10),
            (SETTLED, SETTLED),
            |_, _| load_start.elapsed().as_secs_f64() >= settled_at + HOLD.as_secs_f64(),
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    let load_stop = Instant::now();
    let load_stop_epoch = epoch();
    let report = loader.await.expect("loader");

    // Averages as `get-metric-statistics` gives them: with one task before
    // the scale-out, and at the settled count (from 20 s after every task
    // was a healthy target to the load's end).
    let one = cpu_datapoints(&env, load_start_epoch + 20.0, out_epoch).await;
    let settled = cpu_datapoints(&env, settled_epoch + 20.0, load_stop_epoch).await;
    let (one_avg, settled_avg) = (mean(&one), mean(&settled));
    let (settled_lo, settled_hi) = range(&settled);
    eprintln!(
        "scale e2e: loader sent {} requests in {:.1} s ({:.2}/s), {} answered 200, {} failed {:?}",
        report.sent,
        report.seconds,
        report.sent as f64 / report.seconds,
        report.ok,
        report.failures.len(),
        report.failures.iter().take(5).collect::<Vec<_>>()
    );
    eprintln!(
        "scale e2e: 1 -> {SETTLED} tasks: scaled out {out_at:.1} s after load start, all running at \
         {all_running_at:.1} s, all healthy targets at {settled_at:.1} s; CPUUtilization with 1 task \
         {one_avg:.1} % ({} datapoints), at {SETTLED} tasks {settled_avg:.1} % (10-s datapoints \
         {settled_lo:.1}-{settled_hi:.1} %, {} of them) over a {:.0} s hold",
        one.len(),
        settled.len(),
        HOLD.as_secs_f64()
    );
    assert!(
        report.failures.len() * 50 <= report.sent,
        "over 2 % of the requests failed: {:?}",
        report.failures
    );
    assert!(
        one_avg > 50.0,
        "one task ran at {one_avg:.1} %: no reason to scale out"
    );
    assert!(
        !settled.is_empty() && settled_avg < 50.0,
        "at {SETTLED} tasks the average is {settled_avg:.1} %, not under the 50 % target: {settled:?}"
    );

    // In: the load is gone; after the scale-in alarm's periods, 3 -> 2.
    let in_at = watch
        .until(
            &env,
            "the service to scale in",
            Duration::from_secs(330),
            (2, SETTLED),
            |desired, _| desired < SETTLED,
        )
        .await;
    let in_after = load_stop.elapsed().as_secs_f64();
    // Then the policy fires again past its cooldown and stops at min.
    let activities = |include: bool| {
        let env = &env;
        let resource = resource.clone();
        async move {
            let mut args = vec![
                "describe-scaling-activities",
                "--service-namespace",
                "ecs",
                "--resource-id",
                resource.as_str(),
            ];
            if include {
                args.push("--include-not-scaled-activities");
            }
            aws(env, "application-autoscaling", &args).await["ScalingActivities"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let at_min = Instant::now();
    let floor = loop {
        let (desired, _) = watch.poll(&env).await;
        assert_eq!(desired, 2, "below min or back up: {:?}", watch.history);
        let acts = activities(true).await;
        let floor = acts.iter().find(|a| {
            a["NotScaledReasons"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["Code"] == "AlreadyAtMinCapacity"))
        });
        if let Some(f) = floor {
            break f.clone();
        }
        assert!(
            at_min.elapsed() < Duration::from_secs(150),
            "no AlreadyAtMinCapacity activity 150 s after reaching min: {acts:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let floor_after = load_stop.elapsed().as_secs_f64();
    watch
        .until(
            &env,
            "the scaled-in task to stop",
            Duration::from_secs(60),
            (2, 2),
            |desired, running| desired == 2 && running == 2,
        )
        .await;
    eprintln!(
        "scale e2e: load stopped at {:.1} s; {SETTLED} -> 2 at {in_at:.1} s ({in_after:.1} s after \
         the load stopped), AlreadyAtMinCapacity {floor_after:.1} s after it (\"{}\"); whole test \
         {:.1} s",
        load_stop.duration_since(load_start).as_secs_f64(),
        floor["StatusMessage"].as_str().unwrap_or_default(),
        test_start.elapsed().as_secs_f64()
    );
    for a in activities(true).await.iter().rev() {
        eprintln!(
            "scale e2e: activity {} {}: {} ({})",
            a["StartTime"],
            a["StatusCode"].as_str().unwrap_or_default(),
            a["Description"].as_str().unwrap_or_default(),
            a["Cause"].as_str().unwrap_or_default(),
        );
    }
    let scaled: Vec<String> = activities(false)
        .await
        .iter()
        .rev()
        .filter_map(|a| a["Description"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        scaled,
        [
            format!("Setting desired count to {SETTLED}."),
            "Setting desired count to 2.".to_string()
        ],
        "one scale-out straight to {SETTLED}, one scale-in to min"
    );
    let desired_seen: Vec<i64> = watch.history.iter().map(|h| h.1).collect();
    assert!(desired_seen.iter().all(|d| (1..=SETTLED).contains(d)));

    env.call(
        "DeleteService",
        json!({"cluster": env.cluster, "service": "web", "force": true}),
    )
    .await;
    node.stop().await;
    agent.stop().await;
    env.stop().await;
}
