//! Target tracking's reaction time: from the moment a service's load goes
//! up to its new tasks RUNNING, with a high-resolution CPU policy at 50 %.
//! Prints figures and compares them with what AWS's defaults imply (the
//! standard metric: 3 one-minute datapoints above the target, then a task
//! start); asserts nothing.
//!
//! The server runs in-process over SQLite with simulated hosts. Two stand-ins
//! take the place of parts that land with the CloudWatch work: a feeder
//! writes `AWS/ECS` `CPUUtilization` for the service every second (the load
//! is 150 % of one task, shared by the running tasks), and a loop evaluates
//! the due alarms every second and publishes their transitions on
//! `Env::alarm_actions`, as the alarm controller will.
//!
//! ```text
//! cargo bench -p flotilla-server --bench autoscaling
//! cargo test -p flotilla-server --bench autoscaling   # the same, unoptimised
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_auth::Credentials;
use flotilla_client::Client;
use flotilla_metrics::{Dimension, MetricDatum, PutMetricDataInput, Timestamp};
use flotilla_model::arn::Scope;
use flotilla_sim::{Behaviour, HostSpec, SimAgent};
use serde_json::{json, Value};

const KEY: &str = "AKIABENCH00000000001";
const SECRET: &str = "bench-secret-key-000000000000000000000000";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
/// The load, in percent of one task's reserved CPU.
const LOAD: f64 = 150.0;
const TARGET: f64 = 50.0;

async fn running(ecs: &Client) -> i64 {
    let d: Value = ecs
        .call("DescribeServices", &json!({"services": ["web"]}))
        .await
        .expect("DescribeServices");
    d["services"][0]["runningCount"].as_i64().unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = flotilla_server::Stores::open(dir.path()).expect("stores");
    let env = flotilla_server::open_env(stores).expect("env");
    let credentials = Credentials::from_toml(&format!(
        "[[principal]]\nname = \"bench\"\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\naccount_id = \"{ACCOUNT}\"\n"
    ))
    .expect("credentials");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(flotilla_server::serve(
        listener,
        env.clone(),
        credentials,
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let ecs = Client::ecs(&endpoint, KEY, SECRET, REGION);
    let aas = ecs.for_service("application-autoscaling", "AnyScaleFrontendService");
    let _: Value = ecs.call("CreateCluster", &json!({})).await.unwrap();
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let spec = HostSpec::new("default", 4096, 8192);
        hosts.push(
            SimAgent::start(&ecs, spec, Behaviour::default())
                .await
                .unwrap(),
        );
    }
    let _: Value = ecs
        .call(
            "RegisterTaskDefinition",
            &json!({"family": "web", "containerDefinitions": [{"name": "app", "image": "x", "cpu": 256, "memory": 128}]}),
        )
        .await
        .unwrap();
    let _: Value = ecs
        .call(
            "CreateService",
            &json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": 1}),
        )
        .await
        .unwrap();
    while running(&ecs).await < 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let target = json!({"ServiceNamespace": "ecs", "ScalableDimension": "ecs:service:DesiredCount", "ResourceId": "service/default/web"});
    let mut register = target.clone();
    register["MinCapacity"] = json!(1);
    register["MaxCapacity"] = json!(10);
    let _: Value = aas.call("RegisterScalableTarget", &register).await.unwrap();
    let mut policy = target.clone();
    policy["PolicyName"] = json!("cpu50");
    policy["PolicyType"] = json!("TargetTrackingScaling");
    policy["TargetTrackingScalingPolicyConfiguration"] = json!({
        "TargetValue": TARGET,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilizationHighResolution"},
    });
    let _: Value = aas.call("PutScalingPolicy", &policy).await.unwrap();

    // The load goes up now.
    let start = Instant::now();
    let scope = Scope::new(ACCOUNT, REGION);
    let feeder = {
        let env = env.clone();
        let ecs = ecs.clone();
        let scope = scope.clone();
        tokio::spawn(async move {
            loop {
                let n = running(&ecs).await.max(1) as f64;
                let now = Timestamp::now();
                let input = PutMetricDataInput {
                    namespace: "AWS/ECS".into(),
                    metric_data: vec![MetricDatum {
                        metric_name: "CPUUtilization".into(),
                        dimensions: vec![
                            Dimension::new("ClusterName", "default"),
                            Dimension::new("ServiceName", "web"),
                        ],
                        value: Some(LOAD / n),
                        storage_resolution: Some(1),
                        ..Default::default()
                    }],
                };
                let _ = env
                    .metrics
                    .put_internal_metric_data(&scope, &input, now)
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let alarms = {
        let env = env.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(transitions) = env.metrics.evaluate_due(Timestamp::now()).await {
                    for t in transitions {
                        let _ = env.alarm_actions.send(Arc::new(t));
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let wanted = (LOAD / TARGET).ceil() as i64;
    let mut first = None;
    let deadline = start + Duration::from_secs(600);
    loop {
        let n = running(&ecs).await;
        if n >= 2 && first.is_none() {
            first = Some(start.elapsed());
        }
        if n >= wanted || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = start.elapsed();
    println!("target tracking, ECSServiceAverageCPUUtilizationHighResolution at {TARGET} %, load {LOAD} % of one task:");
    match first {
        Some(f) => println!(
            "  load start to a second task RUNNING: {:.1} s",
            f.as_secs_f64()
        ),
        None => println!("  no second task within {:.0} s", all.as_secs_f64()),
    }
    println!(
        "  load start to {wanted} tasks RUNNING (the average at or under the target): {:.1} s",
        all.as_secs_f64()
    );
    println!(
        "  AWS's defaults (ECSServiceAverageCPUUtilization): 3 one-minute datapoints above the target \
         (at least 180 s, plus CloudWatch's publication delay), then the task start"
    );
    feeder.abort();
    alarms.abort();
    drop(hosts);
    let _ = stop.send(());
    let _ = server.await;
    env.logs.close();
    env.metrics.close();
}
