//! End to end: target tracking on real containers. A service whose tasks
//! burn CPU, with a target tracking policy at 50 % on the high-resolution
//! CPU metric, scales out; once the load stops it scales in after the
//! cooldown, never below its minimum. The whole chain is real: the agent's
//! Docker stats, the usage controller's `AWS/ECS` datapoints, the alarm
//! controller's evaluations, the autoscaling controller, the service
//! controller and the AWS CLI v1.
//!
//! Sizes: the host has as many CPU units as the machine has cores (2,048 on
//! two), so each task reserves 256 units: three burning tasks and three
//! idle ones (a rolling replacement runs both) fit together. One spinning
//! thread is up to 400 % of 256 units; the service scales out to its
//! maximum (each task brings its own load, so no count gets the average
//! under the target) and never above it.
//!
//! Run time (about 7 minutes) is set by the alarms' shapes, not by the
//! waits: three breaching 20-second periods to scale out, fifteen low ones
//! (five minutes) to scale in, as the high-resolution target tracking
//! alarms are shaped; scale-in then removes one task per activity (at most
//! a tenth of the capacity, at least one), the next on the low alarm's
//! one-minute repeat once the 30 s cooldown is over.

mod common;

use std::time::{Duration, Instant};

use common::{container, wait_for, Env, KEY, REGION, SECRET};
use serde_json::{json, Value};

/// `aws application-autoscaling ARGS… --output json`; panics on failure.
async fn aas(env: &Env, args: &[&str]) -> Value {
    let aws = std::env::var("FLOTILLA_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into());
    let out = tokio::process::Command::new(aws)
        .arg("application-autoscaling")
        .args(args)
        .args([
            "--output",
            "json",
            "--endpoint-url",
            &env.endpoint,
            "--region",
            REGION,
        ])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .await
        .expect("the AWS CLI must be installed: run the tests with scripts/test");
    assert!(
        out.status.success(),
        "aws application-autoscaling {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

async fn service(env: &Env) -> Value {
    let d = env
        .call(
            "DescribeServices",
            json!({"cluster": env.cluster, "services": ["web"]}),
        )
        .await;
    d["services"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_tracking_scales_out_under_load_and_back_in() {
    let env = Env::start("e2e-scale").await;
    let agent = env.agent("a", "127.0.0.1").await;
    env.wait_connected(&agent.arn, true).await;
    // One spinning thread against 256 reserved CPU units; the idle tasks
    // reserve as much (a sleeping process's few units are then noise).
    let mut burn = container("app", &["burn", "1"]);
    burn["cpu"] = json!(256);
    let busy = env
        .register_task_definition("e2e-burn", json!([burn]))
        .await;
    let mut sleep = container("app", &["sleep"]);
    sleep["cpu"] = json!(256);
    let idle = env
        .register_task_definition("e2e-idle", json!([sleep]))
        .await;
    env.call(
        "CreateService",
        json!({"cluster": env.cluster, "serviceName": "web", "taskDefinition": busy, "desiredCount": 1}),
    )
    .await;
    let resource = format!("service/{}/web", env.cluster);
    let load_start = Instant::now();
    aas(
        &env,
        &[
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            &resource,
            "--min-capacity",
            "1",
            "--max-capacity",
            "3",
        ],
    )
    .await;
    aas(
        &env,
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
            r#"{"TargetValue":50,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageCPUUtilizationHighResolution"},"ScaleOutCooldown":30,"ScaleInCooldown":30}"#,
        ],
    )
    .await;

    // Out: the average is well over the target, so proportionally (and at
    // most) three tasks, all RUNNING.
    let desired = wait_for(
        "the service to scale out",
        Duration::from_secs(300),
        || async {
            let s = service(&env).await;
            assert!(s["desiredCount"].as_i64() <= Some(3), "above max: {s}");
            (s["runningCount"].as_i64() >= Some(2))
                .then(|| s["desiredCount"].as_i64().unwrap_or(-1))
        },
    )
    .await;
    let out_after = load_start.elapsed();
    eprintln!(
        "target tracking (high resolution): load start to a second task RUNNING in {:.1} s, \
         desired count 1 -> {desired} (AWS's defaults imply 3 one-minute datapoints, then a \
         task start: over 3 minutes)",
        out_after.as_secs_f64()
    );
    wait_for(
        "the scaled-out tasks to run",
        Duration::from_secs(120),
        || async {
            let s = service(&env).await;
            assert!(s["desiredCount"].as_i64() <= Some(3), "above max: {s}");
            (s["runningCount"] == s["desiredCount"]).then_some(())
        },
    )
    .await;
    eprintln!(
        "  all {desired} tasks RUNNING {:.1} s after load start",
        load_start.elapsed().as_secs_f64()
    );

    // The load stops: the tasks now idle. After the low alarm's datapoints
    // and the cooldowns, back to the minimum, and never below it.
    env.call(
        "UpdateService",
        json!({"cluster": env.cluster, "service": "web", "taskDefinition": idle}),
    )
    .await;
    let load_stop = Instant::now();
    let counts = std::cell::RefCell::new(Vec::new());
    wait_for(
        "the service to scale in to 1",
        Duration::from_secs(600),
        || async {
            let s = service(&env).await;
            assert!(s["desiredCount"].as_i64() >= Some(1), "below min: {s}");
            let d = s["desiredCount"].as_i64().unwrap_or(-1);
            let mut counts = counts.borrow_mut();
            if counts.last() != Some(&d) {
                counts.push(d);
                eprintln!(
                    "  desired count {d} at {:.1} s after the load stopped",
                    load_stop.elapsed().as_secs_f64()
                );
            }
            (s["desiredCount"] == 1 && s["runningCount"] == 1).then_some(())
        },
    )
    .await;
    eprintln!(
        "target tracking (high resolution): load stop to 1 task in {:.1} s \
         (15 low 20-second periods, then the scale-in; total run {:.1} s)",
        load_stop.elapsed().as_secs_f64(),
        load_start.elapsed().as_secs_f64()
    );
    let acts = aas(
        &env,
        &[
            "describe-scaling-activities",
            "--service-namespace",
            "ecs",
            "--resource-id",
            &resource,
        ],
    )
    .await;
    let descriptions: Vec<&str> = acts["ScalingActivities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["Description"].as_str())
        .collect();
    assert!(
        descriptions.contains(&"Setting desired count to 1."),
        "{descriptions:?}"
    );
    agent.stop().await;
    env.stop().await;
}
