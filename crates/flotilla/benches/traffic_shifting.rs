//! Traffic-shifting deployments on the real Docker Engine, through a real
//! load-balancer node (`flotilla_lb`, on 127.0.12.1) with a loader sending
//! requests through its listener the whole time (one agent on 127.0.12.2;
//! the control plane in-process):
//!
//! - a BLUE_GREEN deployment with `bakeTimeInMinutes` 0 of a 10-task
//!   service: from UpdateService to the first request answered by the new
//!   revision (through the load balancer), to all traffic on it, and to
//!   the deployment SUCCESSFUL (DescribeServiceDeployments, polled every
//!   50 ms);
//! - next to it, in the same run, a ROLLING update of a 10-task service
//!   behind the same kind of target group (ECS defaults: min 100 / max
//!   200), from UpdateService to the deployment SUCCESSFUL;
//! - an alarm rollback: a blue/green held by a PAUSE hook at
//!   POST_PRODUCTION_TRAFFIC_SHIFT (all traffic on the new revision), then
//!   `aws cloudwatch set-alarm-state … ALARM`: the time until the last
//!   request answered by the new revision (traffic fully back on the
//!   original one, as the loader sees it), and until ROLLBACK_SUCCESSFUL.
//!
//! Target groups check health every 5 s (2 passes to turn healthy) and
//! drain for 5 s, as the end-to-end tests' do. Nothing is asserted on
//! time; the figures are printed.
//!
//! `cargo bench -p flotilla --bench traffic_shifting` (`BENCH_RUNS=N`,
//! default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lb::{
    aws, failures, healthy, http_target_group, load, serving, LbNode, Outcome, ShiftingLb,
};
use common::{wait_for, Env};
use serde_json::{json, Value};

const DESIRED: u32 = 10;
const POLL: Duration = Duration::from_millis(50);
const LB_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 12, 1);
const AGENT_ADDRESS: &str = "127.0.12.2";
const ALARM: &str = "bench-shift-errors";

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(runs));
}

/// Named figures of one run, in seconds.
type Phases = Vec<(&'static str, f64)>;

async fn bench(runs: usize) {
    let env = Env::start("bench-shift").await;
    let agent = env.agent("a", AGENT_ADDRESS).await;
    env.wait_connected(&agent.arn, true).await;
    let node = LbNode::start(&env, "bench-shift-node", &[IpAddr::V4(LB_ADDRESS)]);
    let lb = ShiftingLb::create(&env, "shift", false).await;
    let rolling_group = http_target_group(&env, "rolling").await;
    aws(
        &env,
        "elbv2",
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb.arn,
            "--protocol",
            "HTTP",
            "--port",
            "81",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={rolling_group}"),
        ],
    )
    .await;
    aws(
        &env,
        "cloudwatch",
        &[
            "put-metric-alarm",
            "--alarm-name",
            ALARM,
            "--namespace",
            "Bench/Web",
            "--metric-name",
            "Errors",
            "--statistic",
            "Maximum",
            "--period",
            "60",
            "--evaluation-periods",
            "1",
            "--threshold",
            "1",
            "--comparison-operator",
            "GreaterThanOrEqualToThreshold",
            "--treat-missing-data",
            "notBreaching",
        ],
    )
    .await;

    let mut rev = 0;
    let mut next = |family: &'static str| {
        rev += 1;
        let body = format!("r{rev}");
        let env = &env;
        async move {
            (
                env.register_task_definition(family, serving(&body)).await,
                body,
            )
        }
    };
    let (bg_first, mut bg_body) = next("bench-bg").await;
    let (roll_first, _) = next("bench-roll").await;
    let bg_config = json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0,
        "alarms": {"alarmNames": [ALARM], "enable": true, "rollback": true}});
    create_service(
        &env,
        "bg",
        &bg_first,
        &lb.service_load_balancers(),
        &bg_config,
    )
    .await;
    let roll_lbs =
        json!([{"targetGroupArn": rolling_group, "containerName": "app", "containerPort": 8080}])
            .to_string();
    create_service(&env, "roll", &roll_first, &roll_lbs, &json!({})).await;
    for (service, group) in [("bg", &lb.blue), ("roll", &rolling_group)] {
        wait_for("10 healthy targets", Duration::from_secs(180), || async {
            (healthy(&env, group).await == DESIRED as usize).then_some(())
        })
        .await;
        until_latest(&env, service, Duration::from_secs(120), |d| {
            d["status"] == "SUCCESSFUL"
        })
        .await;
    }

    // Warm-up: one of each, not measured.
    let (to, body) = next("bench-bg").await;
    blue_green(&env, &lb, &to, &bg_body, &body).await;
    bg_body = body;
    let (to, _) = next("bench-roll").await;
    rolling(&env, &to).await;

    let (mut bg, mut roll) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (to, body) = next("bench-bg").await;
        bg.push(blue_green(&env, &lb, &to, &bg_body, &body).await);
        bg_body = body;
        let (to, _) = next("bench-roll").await;
        roll.push(rolling(&env, &to).await);
    }

    // Alarm rollbacks: a PAUSE hook holds each with all traffic on the new
    // revision; the alarm rolls it back.
    let held = json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0,
        "alarms": {"alarmNames": [ALARM], "enable": true, "rollback": true},
        "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_PRODUCTION_TRAFFIC_SHIFT"]}]});
    env.call(
        "UpdateService",
        json!({"cluster": env.cluster, "service": "bg", "deploymentConfiguration": held}),
    )
    .await;
    until_latest(&env, "bg", Duration::from_secs(120), |d| {
        d["status"] == "SUCCESSFUL"
    })
    .await;
    let mut back = Vec::new();
    for _ in 0..runs {
        let (to, body) = next("bench-bg").await;
        back.push(alarm_rollback(&env, &lb, &to, &bg_body, &body).await);
    }

    println!(
        "traffic-shifting deployments of a {DESIRED}-task service, one agent on one Docker Engine, a real lb node; median of {runs} runs (min..max)"
    );
    report(
        &format!("BLUE_GREEN, bakeTimeInMinutes 0 ({DESIRED} tasks), from UpdateService"),
        &bg,
    );
    report(
        &format!("ROLLING, min 100 / max 200 ({DESIRED} tasks, same run), from UpdateService"),
        &roll,
    );
    report(
        "alarm rollback of a blue/green with all traffic on the new revision",
        &back,
    );

    for service in ["bg", "roll"] {
        env.call(
            "DeleteService",
            json!({"cluster": env.cluster, "service": service, "force": true}),
        )
        .await;
    }
    wait_for("the tasks stopped", Duration::from_secs(120), || async {
        let l = env.call("ListTasks", json!({"cluster": env.cluster})).await;
        l["taskArns"]
            .as_array()
            .is_none_or(|a| a.is_empty())
            .then_some(())
    })
    .await;
    node.stop().await;
    agent.stop().await;
    env.stop().await;
}

async fn create_service(env: &Env, name: &str, td: &str, lbs: &str, dc: &Value) {
    aws(
        env,
        "ecs",
        &[
            "create-service",
            "--cluster",
            &env.cluster,
            "--service-name",
            name,
            "--task-definition",
            td,
            "--desired-count",
            &DESIRED.to_string(),
            "--load-balancers",
            lbs,
            "--deployment-configuration",
            &dc.to_string(),
        ],
    )
    .await;
}

/// Polls the newest service deployment of `service` until `done`; it then.
async fn until_latest(
    env: &Env,
    service: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let list = env
            .call(
                "ListServiceDeployments",
                json!({"cluster": env.cluster, "service": service}),
            )
            .await;
        if let Some(arn) = list["serviceDeployments"][0]["serviceDeploymentArn"].as_str() {
            let d = describe(env, arn).await;
            if done(&d) {
                return d;
            }
        }
        assert!(Instant::now() < deadline, "{service}: never done");
        tokio::time::sleep(POLL).await;
    }
}

async fn describe(env: &Env, arn: &str) -> Value {
    env.call(
        "DescribeServiceDeployments",
        json!({"serviceDeploymentArns": [arn]}),
    )
    .await["serviceDeployments"][0]
        .clone()
}

/// UpdateService of `service` to `to`: the new service deployment's ARN.
async fn update(env: &Env, service: &str, to: &str) -> String {
    env.call(
        "UpdateService",
        json!({"cluster": env.cluster, "service": service, "taskDefinition": to}),
    )
    .await;
    let list = env
        .call(
            "ListServiceDeployments",
            json!({"cluster": env.cluster, "service": service}),
        )
        .await;
    list["serviceDeployments"][0]["serviceDeploymentArn"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn until(env: &Env, arn: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let d = describe(env, arn).await;
        if done(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "never done: {d:#}");
        tokio::time::sleep(POLL).await;
    }
}

/// A loader through the blue/green listener: 2 connections, 5 ms apart.
fn loader(lb: &ShiftingLb, stop: &Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Outcome>> {
    tokio::spawn(load(
        lb.addr.clone(),
        lb.dns.clone(),
        "/",
        2,
        Duration::from_millis(5),
        stop.clone(),
        Duration::from_secs(300),
        500_000,
    ))
}

/// The first and the last outcome answered `body`, in seconds on the
/// loader's clock.
fn first_last(outcomes: &[Outcome], body: &str) -> (f64, f64) {
    let mut of = outcomes
        .iter()
        .filter(|(_, r)| matches!(r, Ok((_, b)) if b == body))
        .map(|(at, _)| *at);
    let first = of.next().unwrap_or(f64::NAN);
    let last = of.next_back().unwrap_or(first);
    (first, last)
}

async fn blue_green(env: &Env, lb: &ShiftingLb, to: &str, from_body: &str, body: &str) -> Phases {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let load = loader(lb, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = started.elapsed().as_secs_f64();
    let arn = update(env, "bg", to).await;
    let shifted = until(env, &arn, Duration::from_secs(180), |d| {
        d["targetServiceRevision"]["requestedProductionTrafficWeight"] == 100.0
    })
    .await;
    let shifted_at = started.elapsed().as_secs_f64() - t0;
    let _ = shifted;
    until(env, &arn, Duration::from_secs(180), |d| {
        d["status"] == "SUCCESSFUL"
    })
    .await;
    let done = started.elapsed().as_secs_f64() - t0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    let (first_new, _) = first_last(&outcomes, body);
    let (_, last_old) = first_last(&outcomes, from_body);
    vec![
        ("first request answered by the new revision", first_new - t0),
        (
            "production weight 100 % (DescribeServiceDeployments)",
            shifted_at,
        ),
        ("last request answered by the old revision", last_old - t0),
        ("deployment SUCCESSFUL", done),
        ("requests", outcomes.len() as f64),
        ("requests failed", failures(&outcomes).len() as f64),
    ]
}

async fn rolling(env: &Env, to: &str) -> Phases {
    let start = Instant::now();
    let arn = update(env, "roll", to).await;
    until(env, &arn, Duration::from_secs(180), |d| {
        d["status"] == "SUCCESSFUL"
    })
    .await;
    vec![("deployment SUCCESSFUL", start.elapsed().as_secs_f64())]
}

async fn alarm_rollback(
    env: &Env,
    lb: &ShiftingLb,
    to: &str,
    from_body: &str,
    body: &str,
) -> Phases {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let load = loader(lb, &stop);
    let arn = update(env, "bg", to).await;
    until(env, &arn, Duration::from_secs(180), |d| {
        d["lifecycleStage"] == "POST_PRODUCTION_TRAFFIC_SHIFT"
            && d["lifecycleHookDetails"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|h| h["status"] == "AWAITING_ACTION")
    })
    .await;
    // All traffic on the new revision for a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t0 = started.elapsed().as_secs_f64();
    aws(
        env,
        "cloudwatch",
        &[
            "set-alarm-state",
            "--alarm-name",
            ALARM,
            "--state-value",
            "ALARM",
            "--state-reason",
            "bench",
        ],
    )
    .await;
    let cli = started.elapsed().as_secs_f64() - t0;
    until(env, &arn, Duration::from_secs(60), |d| {
        d["status"] == "ROLLBACK_IN_PROGRESS" || d["status"] == "ROLLBACK_SUCCESSFUL"
    })
    .await;
    let rolling_back = started.elapsed().as_secs_f64() - t0;
    until(env, &arn, Duration::from_secs(120), |d| {
        d["status"] == "ROLLBACK_SUCCESSFUL"
    })
    .await;
    let done = started.elapsed().as_secs_f64() - t0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    aws(
        env,
        "cloudwatch",
        &[
            "set-alarm-state",
            "--alarm-name",
            ALARM,
            "--state-value",
            "OK",
            "--state-reason",
            "bench",
        ],
    )
    .await;
    let (_, last_new) = first_last(&outcomes, body);
    let (first_back, _) = {
        let after: Vec<Outcome> = outcomes
            .iter()
            .filter(|(at, _)| *at > t0)
            .cloned()
            .collect();
        first_last(&after, from_body)
    };
    vec![
        ("set-alarm-state call returned (AWS CLI)", cli),
        ("deployment ROLLBACK_IN_PROGRESS", rolling_back),
        (
            "first request answered by the original revision",
            first_back - t0,
        ),
        (
            "last request answered by the new revision (all back)",
            last_new - t0,
        ),
        ("ROLLBACK_SUCCESSFUL (new tasks gone)", done),
        ("requests", outcomes.len() as f64),
        ("requests failed", failures(&outcomes).len() as f64),
    ]
}

fn report(what: &str, runs: &[Phases]) {
    println!("{what}");
    for (i, (name, _)) in runs[0].iter().enumerate() {
        let mut v: Vec<f64> = runs.iter().map(|r| r[i].1).collect();
        v.sort_by(f64::total_cmp);
        let unit = if name.starts_with("requests") {
            "  "
        } else {
            " s"
        };
        println!(
            "  {name:<56} {:>8.3}{unit}  ({:.3}..{:.3})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
}
