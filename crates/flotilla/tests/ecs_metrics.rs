//! End to end: `AWS/ECS` utilization of a service whose containers burn CPU
//! and hold memory on the real Docker Engine, as the real AWS CLI reads it
//! with `get-metric-statistics`: above 100 % of the reservation, as ECS
//! reports a task that uses more than it reserves.

mod common;

use std::time::{Duration, SystemTime};

use common::{wait_for, Env, KEY, REGION, SECRET};
use flotilla_agent::testing::TEST_IMAGE;
use serde_json::{json, Value};

/// `aws cloudwatch get-metric-statistics` for `metric` of `service`: the
/// highest `Maximum` over the last 10 minutes, if any.
async fn highest(env: &Env, metric: &str, service: &str) -> Option<f64> {
    let exe = std::env::var("FLOTILLA_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = tokio::process::Command::new(&exe)
        .args(["cloudwatch", "get-metric-statistics"])
        .args(["--namespace", "AWS/ECS", "--metric-name", metric])
        .args([
            "--dimensions",
            &format!("Name=ClusterName,Value={}", env.cluster),
            &format!("Name=ServiceName,Value={service}"),
        ])
        .args(["--start-time", &(now - 600).to_string()])
        .args(["--end-time", &(now + 60).to_string()])
        .args(["--period", "60", "--statistics", "Maximum"])
        .args(["--output", "json", "--endpoint-url", &env.endpoint])
        .args(["--region", REGION])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("the AWS CLI ({exe}) must be installed: run the tests with scripts/test ({e})")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Datapoints"]
        .as_array()?
        .iter()
        .filter_map(|d| d["Maximum"].as_f64())
        .reduce(f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_burning_service_shows_utilization_above_its_reservation() {
    let env = Env::start("cw-usage").await;
    let agent = env.agent("a", "127.0.0.1").await;
    env.wait_connected(&agent.arn, true).await;
    // The task reserves 64 CPU units and 16 + 16 MiB; one container spins a
    // thread (up to 1,024 units), the other holds 64 MiB.
    let containers = json!([
        {"name": "burn", "image": TEST_IMAGE, "command": ["burn", "1"],
         "cpu": 64, "memoryReservation": 16, "essential": true},
        {"name": "hold", "image": TEST_IMAGE, "command": ["hold", "64"],
         "memoryReservation": 16, "essential": true},
    ]);
    env.call(
        "RegisterTaskDefinition",
        json!({"family": "cw-burn", "containerDefinitions": containers}),
    )
    .await;
    env.call(
        "CreateService",
        json!({"cluster": env.cluster, "serviceName": "burner",
               "taskDefinition": "cw-burn", "desiredCount": 1}),
    )
    .await;

    // Agents sample every 5 s; the server writes every 10 s.
    let cpu = wait_for(
        "CPUUtilization above 100 %",
        Duration::from_secs(120),
        || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            highest(&env, "CPUUtilization", "burner")
                .await
                .filter(|v| *v > 100.0)
        },
    )
    .await;
    let memory = wait_for(
        "MemoryUtilization above 100 %",
        Duration::from_secs(60),
        || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            highest(&env, "MemoryUtilization", "burner")
                .await
                .filter(|v| *v > 100.0)
        },
    )
    .await;
    println!("burner: CPUUtilization {cpu:.0} %, MemoryUtilization {memory:.0} %");

    // Stop burning before the harness cleans up.
    env.call(
        "UpdateService",
        json!({"cluster": env.cluster, "service": "burner", "desiredCount": 0}),
    )
    .await;
    agent.stop().await;
    env.stop().await;
}
