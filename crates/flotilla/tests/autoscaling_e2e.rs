//! End to end: target tracking on real containers. A service whose tasks
//! burn CPU, with a target tracking policy at 50 % on the high-resolution
//! CPU metric, scales out; once the load stops it scales in after the
//! cooldown, never below its minimum. Needs the alarm controller and the
//! `AWS/ECS` metrics from the agents' stats, which land with the CloudWatch
//! work: ignored until then.

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
#[ignore = "needs the alarm controller and AWS/ECS metrics (cwapi branch)"]
async fn target_tracking_scales_out_under_load_and_back_in() {
    let env = Env::start("e2e-scale").await;
    let agent = env.agent("a", "127.0.0.1").await;
    env.wait_connected(&agent.arn, true).await;
    // One spinning thread against 1,024 reserved CPU units: 100 % each.
    let mut burn = container("app", &["burn", "1"]);
    burn["cpu"] = json!(1024);
    let busy = env
        .register_task_definition("e2e-burn", json!([burn]))
        .await;
    let idle = env
        .register_task_definition("e2e-idle", json!([container("app", &["sleep"])]))
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

    // Out: the average is twice the target, so at least two tasks RUNNING.
    wait_for(
        "the service to scale out",
        Duration::from_secs(300),
        || async {
            let s = service(&env).await;
            (s["runningCount"].as_i64() >= Some(2)).then_some(())
        },
    )
    .await;
    eprintln!(
        "target tracking (high resolution): load start to a second task RUNNING in {:.1} s \
         (AWS's defaults imply 3 one-minute datapoints, then a task start: over 3 minutes)",
        load_start.elapsed().as_secs_f64()
    );

    // The load stops: the tasks now idle. After the low alarm's datapoints
    // and the cooldowns, back to the minimum, and never below it.
    env.call(
        "UpdateService",
        json!({"cluster": env.cluster, "service": "web", "taskDefinition": idle}),
    )
    .await;
    wait_for(
        "the service to scale in to 1",
        Duration::from_secs(900),
        || async {
            let s = service(&env).await;
            assert!(s["desiredCount"].as_i64() >= Some(1), "below min: {s}");
            (s["desiredCount"] == 1 && s["runningCount"] == 1).then_some(())
        },
    )
    .await;
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
