//! Application Auto Scaling for ECS services, driven by the real AWS CLI
//! (`aws application-autoscaling …`, `aws ecs …`) against an in-process
//! server with simulated hosts. Alarm transitions are driven through the
//! metric store and published on `Env::alarm_actions`, as the alarm
//! controller publishes them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ecs::types::ContainerDefinition;
use common::{eventually, TestServer, ALICE, REGION};
use flotilla_metrics::{
    AlarmTransition, ComparisonOperator, DescribeAlarmsInput, PutMetricAlarmInput,
    SetAlarmStateInput, StateValue, Statistic, Timestamp,
};
use flotilla_model::arn::Scope;
use flotilla_sim::{Behaviour, HostSpec, SimAgent};
use serde_json::Value;

const RESOURCE: &str = "service/default/web";

/// Runs `aws application-autoscaling ARGS… --output json` as Alice.
async fn aas(server: &TestServer, args: &[&str]) -> (bool, Value, String) {
    cli(server, "application-autoscaling", args).await
}

async fn cli(server: &TestServer, service: &str, args: &[&str]) -> (bool, Value, String) {
    cli_as(server, &ALICE, service, args).await
}

async fn cli_as(
    server: &TestServer,
    who: &common::Principal,
    service: &str,
    args: &[&str],
) -> (bool, Value, String) {
    server
        .aws_env(who, service, args, &[("AWS_MAX_ATTEMPTS", "1")])
        .await
}

/// Runs and expects success.
async fn ok(server: &TestServer, args: &[&str]) -> Value {
    let (ok, out, err) = aas(server, args).await;
    assert!(ok, "aws application-autoscaling {args:?} failed: {err}");
    out
}

/// Runs and expects the error `code`; returns the message.
async fn fails(server: &TestServer, args: &[&str], code: &str) -> String {
    let (ok, _, err) = aas(server, args).await;
    assert!(
        !ok,
        "aws application-autoscaling {args:?} should fail with {code}"
    );
    assert!(
        err.contains(&format!("({code})")),
        "expected {code}, got: {err}"
    );
    err
}

fn scope() -> Scope {
    Scope::new(ALICE.account, REGION)
}

/// A cluster, one simulated host with room for 16 tasks, and a service
/// `web` of `desired` tasks. The host must stay alive for the test.
async fn service(server: &TestServer, desired: i32) -> SimAgent {
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let spec =
        HostSpec::new("default", 4096, 8192).attribute("ecs.availability-zone", "us-east-1a");
    let host = SimAgent::start(&server.raw(&ALICE), spec, Behaviour::default())
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("flotilla-test:latest")
                .cpu(256)
                .memory(256)
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(desired)
        .send()
        .await
        .unwrap();
    running(server, desired).await;
    host
}

async fn desired_count(server: &TestServer) -> i32 {
    let d = server
        .sdk(&ALICE)
        .describe_services()
        .services("web")
        .send()
        .await
        .unwrap();
    d.services()[0].desired_count()
}

/// Waits until the service runs exactly `n` tasks with none pending.
async fn running(server: &TestServer, n: i32) {
    let ecs = server.sdk(&ALICE);
    eventually(30, &format!("{n} tasks RUNNING"), || async {
        let d = ecs
            .describe_services()
            .services("web")
            .send()
            .await
            .unwrap();
        let s = &d.services()[0];
        (s.running_count() == n && s.pending_count() == 0 && s.desired_count() == n).then_some(())
    })
    .await;
}

async fn register(server: &TestServer, min: &str, max: &str) -> Value {
    ok(
        server,
        &[
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            RESOURCE,
            "--min-capacity",
            min,
            "--max-capacity",
            max,
        ],
    )
    .await
}

async fn activities(server: &TestServer) -> Vec<Value> {
    let out = ok(
        server,
        &[
            "describe-scaling-activities",
            "--service-namespace",
            "ecs",
            "--resource-id",
            RESOURCE,
        ],
    )
    .await;
    out["ScalingActivities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Publishes an alarm's transition as the alarm controller does.
fn publish(server: &TestServer, t: AlarmTransition) {
    server
        .env
        .alarm_actions
        .send(Arc::new(t))
        .expect("the autoscaling controller subscribes");
}

fn transition(alarm: &str, threshold: f64, datapoints: Vec<f64>, action: &str) -> AlarmTransition {
    AlarmTransition {
        scope: scope(),
        alarm_name: alarm.into(),
        alarm_arn: format!(
            "arn:aws:cloudwatch:{REGION}:{}:alarm:{alarm}",
            ALICE.account
        ),
        old_state: StateValue::Ok,
        new_state: StateValue::Alarm,
        reason: "test".into(),
        reason_data: None,
        threshold,
        recent_datapoints: datapoints,
        actions: vec![action.into()],
        at: Timestamp::now(),
        repeat: false,
    }
}

#[tokio::test]
async fn register_describe_tag_and_deregister() {
    let server = TestServer::start().await;
    let _host = service(&server, 1).await;
    let out = register(&server, "1", "5").await;
    let arn = out["ScalableTargetARN"].as_str().unwrap().to_string();
    assert!(arn.starts_with(&format!(
        "arn:aws:application-autoscaling:{REGION}:{}:scalable-target/",
        ALICE.account
    )));

    let out = ok(
        &server,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    )
    .await;
    let t = &out["ScalableTargets"][0];
    assert_eq!(t["ResourceId"], RESOURCE);
    assert_eq!(t["ScalableDimension"], "ecs:service:DesiredCount");
    assert_eq!(
        (t["MinCapacity"].as_i64(), t["MaxCapacity"].as_i64()),
        (Some(1), Some(5))
    );
    assert_eq!(t["SuspendedState"]["ScheduledScalingSuspended"], false);
    assert_eq!(t["ScalableTargetARN"], arn.as_str());

    // Registering again updates it (and keeps its ARN); a min above the
    // desired count raises it.
    let again = register(&server, "2", "8").await;
    assert_eq!(again["ScalableTargetARN"], arn.as_str());
    running(&server, 2).await;
    let out = ok(
        &server,
        &[
            "describe-scalable-targets",
            "--service-namespace",
            "ecs",
            "--resource-ids",
            RESOURCE,
        ],
    )
    .await;
    assert_eq!(out["ScalableTargets"][0]["MaxCapacity"], 8);
    let acts = activities(&server).await;
    assert_eq!(acts[0]["Description"], "Setting desired count to 2.");
    assert_eq!(acts[0]["StatusCode"], "Successful");

    // Tags, on the target's ARN.
    ok(
        &server,
        &[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "team=web,env=test",
        ],
    )
    .await;
    ok(
        &server,
        &[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "env",
        ],
    )
    .await;
    let tags = ok(&server, &["list-tags-for-resource", "--resource-arn", &arn]).await;
    assert_eq!(tags["Tags"], serde_json::json!({"team": "web"}));
    // Another account sees none of it, and has no such service.
    let (ok_, bobs, err) = cli_as(
        &server,
        &common::BOB,
        "application-autoscaling",
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    )
    .await;
    assert!(ok_, "{err}");
    assert_eq!(bobs["ScalableTargets"], serde_json::json!([]));
    let (ok_, _, err) = cli_as(
        &server,
        &common::BOB,
        "application-autoscaling",
        &[
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            RESOURCE,
            "--min-capacity",
            "1",
            "--max-capacity",
            "2",
        ],
    )
    .await;
    assert!(!ok_ && err.contains("(ValidationException)"), "{err}");
    let other = if arn.ends_with('0') { '1' } else { '0' };
    let unknown = format!("{}{other}", &arn[..arn.len() - 1]);
    fails(
        &server,
        &["list-tags-for-resource", "--resource-arn", &unknown],
        "ResourceNotFoundException",
    )
    .await;

    let dereg = [
        "deregister-scalable-target",
        "--service-namespace",
        "ecs",
        "--scalable-dimension",
        "ecs:service:DesiredCount",
        "--resource-id",
        RESOURCE,
    ];
    ok(&server, &dereg).await;
    let out = ok(
        &server,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    )
    .await;
    assert_eq!(out["ScalableTargets"], serde_json::json!([]));
    fails(&server, &dereg, "ObjectNotFoundException").await;
}

#[tokio::test]
async fn bad_input_gets_the_models_errors_and_changes_nothing() {
    let server = TestServer::start().await;
    let _host = service(&server, 1).await;
    let base = [
        "--service-namespace",
        "ecs",
        "--scalable-dimension",
        "ecs:service:DesiredCount",
    ];
    let reg = |rid: &'static str, min: &'static str, max: &'static str| {
        let mut v = vec!["register-scalable-target"];
        v.extend(base);
        v.extend([
            "--resource-id",
            rid,
            "--min-capacity",
            min,
            "--max-capacity",
            max,
        ]);
        v
    };
    let msg = fails(
        &server,
        &reg("service/default/nope", "1", "2"),
        "ValidationException",
    )
    .await;
    assert!(msg.contains("service/default/nope"), "{msg}");
    let msg = fails(&server, &reg(RESOURCE, "5", "2"), "ValidationException").await;
    assert!(
        msg.contains("Minimum capacity cannot be greater than maximum capacity"),
        "{msg}"
    );
    fails(
        &server,
        &reg("table/orders", "1", "2"),
        "ValidationException",
    )
    .await;
    // A DAEMON service has no desired count to scale.
    server
        .sdk(&ALICE)
        .create_service()
        .service_name("agentd")
        .task_definition("web")
        .scheduling_strategy(aws_sdk_ecs::types::SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap();
    let msg = fails(
        &server,
        &reg("service/default/agentd", "1", "2"),
        "ValidationException",
    )
    .await;
    assert!(msg.contains("DAEMON"), "{msg}");
    let out = ok(
        &server,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    )
    .await;
    assert_eq!(
        out["ScalableTargets"],
        serde_json::json!([]),
        "nothing registered"
    );

    // A policy or action on a target never registered.
    let mut put = vec![
        "put-scaling-policy",
        "--policy-name",
        "cpu",
        "--resource-id",
        RESOURCE,
    ];
    put.extend(base);
    put.extend([
        "--policy-type",
        "TargetTrackingScaling",
        "--target-tracking-scaling-policy-configuration",
        r#"{"TargetValue":50,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageCPUUtilization"}}"#,
    ]);
    fails(&server, &put, "ObjectNotFoundException").await;

    register(&server, "1", "4").await;
    // An unknown predefined metric.
    let mut bad_metric = put.clone();
    let last = bad_metric.len() - 1;
    bad_metric[last] = r#"{"TargetValue":50,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageDiskUtilization"}}"#;
    let msg = fails(&server, &bad_metric, "ValidationException").await;
    assert!(msg.contains("PredefinedMetricType"), "{msg}");
    // A metric of another service.
    bad_metric[last] = r#"{"TargetValue":50,"PredefinedMetricSpecification":{"PredefinedMetricType":"DynamoDBReadCapacityUtilization"}}"#;
    fails(&server, &bad_metric, "ValidationException").await;
    // Step adjustments with a gap.
    let mut step = vec![
        "put-scaling-policy",
        "--policy-name",
        "step",
        "--resource-id",
        RESOURCE,
    ];
    step.extend(base);
    step.extend([
        "--policy-type",
        "StepScaling",
        "--step-scaling-policy-configuration",
        r#"{"AdjustmentType":"ChangeInCapacity","StepAdjustments":[{"MetricIntervalLowerBound":0,"MetricIntervalUpperBound":10,"ScalingAdjustment":1},{"MetricIntervalLowerBound":20,"ScalingAdjustment":2}]}"#,
    ]);
    let msg = fails(&server, &step, "ValidationException").await;
    assert!(msg.contains("gap"), "{msg}");

    // Schedules that do not parse, and an unknown time zone.
    let sched = |schedule: &'static str| {
        let mut v = vec![
            "put-scheduled-action",
            "--scheduled-action-name",
            "night",
            "--resource-id",
            RESOURCE,
        ];
        v.extend(base);
        v.extend([
            "--schedule",
            schedule,
            "--scalable-target-action",
            "MinCapacity=1,MaxCapacity=2",
        ]);
        v
    };
    for bad in [
        "cron(0 9 * * *)",
        "cron(0 25 * * ? *)",
        "cron(0 9 * * MON *)",
        "rate(0 minutes)",
        "at(tomorrow)",
    ] {
        let msg = fails(&server, &sched(bad), "ValidationException").await;
        assert!(msg.contains(bad), "{msg}");
    }
    let mut tz = sched("cron(0 9 * * ? *)");
    tz.extend(["--timezone", "Mars/Olympus_Mons"]);
    fails(&server, &tz, "ValidationException").await;

    let policies = ok(
        &server,
        &["describe-scaling-policies", "--service-namespace", "ecs"],
    )
    .await;
    assert_eq!(policies["ScalingPolicies"], serde_json::json!([]));
    let actions = ok(
        &server,
        &["describe-scheduled-actions", "--service-namespace", "ecs"],
    )
    .await;
    assert_eq!(actions["ScheduledActions"], serde_json::json!([]));
    let alarms = server
        .env
        .metrics
        .describe_alarms(&scope(), &DescribeAlarmsInput::default())
        .unwrap();
    assert!(alarms.metric_alarms.is_empty(), "no alarm left behind");
    assert_eq!(desired_count(&server).await, 1);
}

#[tokio::test]
async fn target_tracking_owns_its_alarms_and_scales_out_in_proportion() {
    let server = TestServer::start().await;
    let _host = service(&server, 1).await;
    register(&server, "1", "6").await;
    let out = ok(
        &server,
        &[
            "put-scaling-policy",
            "--policy-name",
            "cpu50",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            RESOURCE,
            "--policy-type",
            "TargetTrackingScaling",
            "--target-tracking-scaling-policy-configuration",
            r#"{"TargetValue":50,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageCPUUtilizationHighResolution"},"ScaleOutCooldown":60,"ScaleInCooldown":60}"#,
        ],
    )
    .await;
    let policy_arn = out["PolicyARN"].as_str().unwrap().to_string();
    assert!(
        policy_arn.contains(":scalingPolicy:")
            && policy_arn.ends_with(":resource/ecs/service/default/web:policyName/cpu50"),
        "{policy_arn}"
    );
    let names: Vec<String> = out["Alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names[0].starts_with("TargetTracking-service/default/web-AlarmHigh-"),
        "{names:?}"
    );
    assert!(
        names[1].starts_with("TargetTracking-service/default/web-AlarmLow-"),
        "{names:?}"
    );

    let alarms = server
        .env
        .metrics
        .describe_alarms(&scope(), &DescribeAlarmsInput::default())
        .unwrap()
        .metric_alarms;
    assert_eq!(alarms.len(), 2);
    let high = alarms.iter().find(|a| a.alarm_name == names[0]).unwrap();
    assert_eq!(high.namespace.as_deref(), Some("AWS/ECS"));
    assert_eq!(high.metric_name.as_deref(), Some("CPUUtilization"));
    assert_eq!(high.period, Some(20));
    assert_eq!(high.evaluation_periods, 3);
    assert_eq!(high.threshold, 50.0);
    assert_eq!(
        high.comparison_operator,
        ComparisonOperator::GreaterThanThreshold
    );
    assert_eq!(high.alarm_actions, vec![policy_arn.clone()]);
    let dims: Vec<(&str, &str)> = high
        .dimensions
        .iter()
        .map(|d| (d.name.as_str(), d.value.as_str()))
        .collect();
    assert_eq!(dims, [("ClusterName", "default"), ("ServiceName", "web")]);
    let low = alarms.iter().find(|a| a.alarm_name == names[1]).unwrap();
    assert_eq!(low.threshold, 45.0);
    assert_eq!(low.evaluation_periods, 15);

    let described = ok(
        &server,
        &[
            "describe-scaling-policies",
            "--service-namespace",
            "ecs",
            "--resource-id",
            RESOURCE,
        ],
    )
    .await;
    let p = &described["ScalingPolicies"][0];
    assert_eq!(p["PolicyType"], "TargetTrackingScaling");
    assert_eq!(
        p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
        50.0
    );
    assert_eq!(p["Alarms"].as_array().unwrap().len(), 2);

    // The high alarm fires at 160 % for one task: ceil(1 × 160 / 50) = 4.
    publish(
        &server,
        transition(&names[0], 50.0, vec![120.0, 150.0, 160.0], &policy_arn),
    );
    running(&server, 4).await;
    let acts = activities(&server).await;
    assert_eq!(acts[0]["Description"], "Setting desired count to 4.");
    assert_eq!(
        acts[0]["Cause"],
        format!(
            "monitor alarm {} in state ALARM triggered policy cpu50",
            names[0]
        )
        .as_str()
    );
    assert_eq!(acts[0]["StatusCode"], "Successful");
    let events = server
        .sdk(&ALICE)
        .describe_services()
        .services("web")
        .send()
        .await
        .unwrap();
    let messages: Vec<&str> = events.services()[0]
        .events()
        .iter()
        .filter_map(|e| e.message())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("has started 3 tasks")),
        "{messages:?}"
    );

    // Again within the scale-out cooldown, still 160 % (the metric has not
    // seen the new tasks): what was added counts, nothing more starts.
    publish(
        &server,
        transition(&names[0], 50.0, vec![160.0], &policy_arn),
    );
    // The low alarm during the scale-out cooldown does nothing either.
    publish(&server, transition(&names[1], 45.0, vec![5.0], &policy_arn));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(desired_count(&server).await, 4);

    // The alarm's action is in its history.
    let history = server
        .env
        .metrics
        .describe_alarm_history(
            &scope(),
            &flotilla_metrics::DescribeAlarmHistoryInput {
                alarm_name: Some(names[0].clone()),
                history_item_type: Some(flotilla_metrics::HistoryItemType::Action),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(!history.alarm_history_items.is_empty());

    // Deleting the policy deletes its alarms.
    ok(
        &server,
        &[
            "delete-scaling-policy",
            "--policy-name",
            "cpu50",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            RESOURCE,
        ],
    )
    .await;
    let left = server
        .env
        .metrics
        .describe_alarms(&scope(), &DescribeAlarmsInput::default())
        .unwrap();
    assert!(left.metric_alarms.is_empty(), "{:?}", left.metric_alarms);
}

#[tokio::test]
async fn a_step_policy_scales_when_an_alarm_naming_it_fires() {
    let server = TestServer::start().await;
    let _host = service(&server, 1).await;
    register(&server, "1", "5").await;
    let out = ok(
        &server,
        &[
            "put-scaling-policy",
            "--policy-name",
            "queue-depth",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            RESOURCE,
            "--policy-type",
            "StepScaling",
            "--step-scaling-policy-configuration",
            r#"{"AdjustmentType":"ChangeInCapacity","StepAdjustments":[{"MetricIntervalLowerBound":0,"MetricIntervalUpperBound":50,"ScalingAdjustment":1},{"MetricIntervalLowerBound":50,"ScalingAdjustment":2}],"Cooldown":60,"MetricAggregationType":"Maximum"}"#,
        ],
    )
    .await;
    let policy_arn = out["PolicyARN"].as_str().unwrap().to_string();
    assert!(out.get("Alarms").is_none(), "a step policy owns no alarm");

    // A user's alarm on a custom metric names the policy.
    let now = Timestamp::now();
    server
        .env
        .metrics
        .put_metric_alarm(
            &scope(),
            &PutMetricAlarmInput {
                alarm_name: "queue-deep".into(),
                alarm_actions: vec![policy_arn.clone()],
                namespace: Some("MyApp".into()),
                metric_name: Some("QueueDepth".into()),
                statistic: Some(Statistic::Maximum),
                period: Some(60),
                evaluation_periods: Some(1),
                threshold: Some(100.0),
                comparison_operator: Some(ComparisonOperator::GreaterThanOrEqualToThreshold),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
    // Set by hand (no datapoints: the breach is taken as zero, the first step).
    let t = server
        .env
        .metrics
        .set_alarm_state(
            &scope(),
            &SetAlarmStateInput {
                alarm_name: "queue-deep".into(),
                state_value: StateValue::Alarm,
                state_reason: "testing".into(),
                state_reason_data: None,
            },
            Timestamp::now(),
        )
        .await
        .unwrap()
        .expect("a transition");
    assert_eq!(t.actions, vec![policy_arn.clone()]);
    // DescribeScalingPolicies lists the alarm that names the step policy.
    let described = ok(
        &server,
        &[
            "describe-scaling-policies",
            "--service-namespace",
            "ecs",
            "--policy-names",
            "queue-depth",
        ],
    )
    .await;
    assert_eq!(
        described["ScalingPolicies"][0]["Alarms"][0]["AlarmName"],
        "queue-deep"
    );
    publish(&server, t);
    running(&server, 2).await;
    // A custom metric fed by PutMetricData, and a second alarm on it: its
    // first evaluation sees 180 (Maximum), a breach of 80, the second step:
    // +2 on top of what the cooldown's scale-out started from (1), so 3.
    let now = Timestamp::now();
    server
        .env
        .metrics
        .put_metric_data(
            &scope(),
            &flotilla_metrics::PutMetricDataInput {
                namespace: "MyApp".into(),
                metric_data: vec![flotilla_metrics::MetricDatum {
                    metric_name: "QueueDepth".into(),
                    timestamp: Some(now.minus_secs(90)),
                    values: vec![120.0, 180.0],
                    ..Default::default()
                }],
            },
            now,
        )
        .await
        .unwrap();
    let t = server
        .env
        .metrics
        .put_metric_alarm(
            &scope(),
            &PutMetricAlarmInput {
                alarm_name: "queue-deeper".into(),
                alarm_actions: vec![policy_arn.clone()],
                namespace: Some("MyApp".into()),
                metric_name: Some("QueueDepth".into()),
                statistic: Some(Statistic::Maximum),
                period: Some(60),
                evaluation_periods: Some(3),
                datapoints_to_alarm: Some(1),
                threshold: Some(100.0),
                comparison_operator: Some(ComparisonOperator::GreaterThanOrEqualToThreshold),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap()
        .expect("the first evaluation goes to ALARM");
    assert_eq!(t.new_state, StateValue::Alarm, "{t:?}");
    assert!(t.recent_datapoints.contains(&180.0), "{t:?}");
    publish(&server, t);
    running(&server, 3).await;

    let acts = activities(&server).await;
    let descriptions: Vec<&str> = acts
        .iter()
        .filter_map(|a| a["Description"].as_str())
        .collect();
    assert_eq!(
        descriptions,
        ["Setting desired count to 3.", "Setting desired count to 2."]
    );
    assert_eq!(
        acts[0]["Cause"],
        "monitor alarm queue-deeper in state ALARM triggered policy queue-depth"
    );
    assert_eq!(
        acts[1]["Cause"],
        "monitor alarm queue-deep in state ALARM triggered policy queue-depth"
    );

    // At the maximum: a not-scaled activity, shown only on request.
    register(&server, "1", "3").await;
    publish(
        &server,
        transition("queue-deep", 100.0, vec![500.0], &policy_arn),
    );
    let not_scaled = eventually(10, "a not-scaled activity", || async {
        let out = ok(
            &server,
            &[
                "describe-scaling-activities",
                "--service-namespace",
                "ecs",
                "--resource-id",
                RESOURCE,
                "--include-not-scaled-activities",
            ],
        )
        .await;
        out["ScalingActivities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a.get("NotScaledReasons").is_some())
            .cloned()
    })
    .await;
    assert_eq!(
        not_scaled["NotScaledReasons"][0]["Code"],
        "AlreadyAtMaxCapacity"
    );
    assert_eq!(
        activities(&server).await.len(),
        2,
        "hidden without the flag"
    );
}

#[tokio::test]
async fn a_scheduled_action_runs_on_time_and_suspension_is_honoured() {
    let server = TestServer::start().await;
    let _host = service(&server, 1).await;
    register(&server, "1", "10").await;
    let at = |secs: i64| {
        let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
        format!("at({})", t.strftime("%Y-%m-%dT%H:%M:%S"))
    };
    let put = |name: &'static str, schedule: String, action: &'static str| {
        let server = &server;
        async move {
            ok(
                server,
                &[
                    "put-scheduled-action",
                    "--service-namespace",
                    "ecs",
                    "--scalable-dimension",
                    "ecs:service:DesiredCount",
                    "--resource-id",
                    RESOURCE,
                    "--scheduled-action-name",
                    name,
                    "--schedule",
                    &schedule,
                    "--scalable-target-action",
                    action,
                ],
            )
            .await
        }
    };
    let schedule = at(6);
    put("morning", schedule.clone(), "MinCapacity=3,MaxCapacity=10").await;
    let stored_at = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let described = ok(
        &server,
        &["describe-scheduled-actions", "--service-namespace", "ecs"],
    )
    .await;
    assert_eq!(
        described["ScheduledActions"][0]["Schedule"],
        schedule.as_str()
    );
    assert_eq!(
        described["ScheduledActions"][0]["ScalableTargetAction"]["MinCapacity"],
        3
    );
    running(&server, 3).await;
    let target = ok(
        &server,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    )
    .await;
    assert_eq!(target["ScalableTargets"][0]["MinCapacity"], 3);
    let acts = activities(&server).await;
    assert!(
        acts.iter().any(
            |a| a["Cause"] == "scheduled action name morning was triggered"
                && a["Description"] == "Setting min capacity to 3 and max capacity to 10"
        ),
        "{acts:?}"
    );
    let started = acts
        .iter()
        .find(|a| a["Description"] == "Setting desired count to 3.")
        .unwrap();
    let scheduled_for = jiff::civil::DateTime::strptime("at(%Y-%m-%dT%H:%M:%S)", &schedule)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond() as f64
        / 1000.0;
    // Flotilla aims at a second; the bound is generous for a loaded machine.
    // (A CLI so slow that the action was stored after its time runs it at
    // once: nothing to measure then.)
    let late = started["StartTime"].as_f64().unwrap() - scheduled_for;
    eprintln!("the scheduled action ran {late:.3} s after its time");
    assert!(late >= 0.0, "ran {:.3} s before its time", -late);
    if stored_at < scheduled_for {
        assert!(late < 5.0, "ran {late:.3} s after its time");
    }

    // With scheduled scaling suspended, a lower max does nothing.
    ok(
        &server,
        &[
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            RESOURCE,
            "--suspended-state",
            "ScheduledScalingSuspended=true",
        ],
    )
    .await;
    put("evening", at(2), "MinCapacity=1,MaxCapacity=2").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(desired_count(&server).await, 3);
    // Resumed, a new run lowers the count to the new max.
    ok(
        &server,
        &[
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            RESOURCE,
            "--suspended-state",
            "ScheduledScalingSuspended=false",
        ],
    )
    .await;
    put("night", at(2), "MinCapacity=1,MaxCapacity=2").await;
    running(&server, 2).await;
    ok(
        &server,
        &[
            "delete-scheduled-action",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            RESOURCE,
            "--scheduled-action-name",
            "night",
        ],
    )
    .await;
    let left = ok(
        &server,
        &["describe-scheduled-actions", "--service-namespace", "ecs"],
    )
    .await;
    let names: Vec<&str> = left["ScheduledActions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["ScheduledActionName"].as_str())
        .collect();
    assert_eq!(names, ["evening", "morning"]);
}

#[tokio::test]
async fn protected_tasks_survive_scale_in() {
    let server = TestServer::start().await;
    let _host = service(&server, 3).await;
    let ecs = server.sdk(&ALICE);
    let tasks = ecs.list_tasks().service_name("web").send().await.unwrap();
    let arns: Vec<String> = tasks.task_arns().to_vec();
    assert_eq!(arns.len(), 3);
    let (ok_, out, err) = cli(
        &server,
        "ecs",
        &[
            "update-task-protection",
            "--cluster",
            "default",
            "--tasks",
            &arns[0],
            &arns[1],
            "--protection-enabled",
        ],
    )
    .await;
    assert!(ok_, "{err}");
    let protected = out["protectedTasks"].as_array().unwrap();
    assert_eq!(protected.len(), 2);
    assert_eq!(protected[0]["protectionEnabled"], true);
    let expires = protected[0]["expirationDate"].as_f64().unwrap();
    let in_minutes = (expires - jiff::Timestamp::now().as_second() as f64) / 60.0;
    assert!((118.0..=121.0).contains(&in_minutes), "{in_minutes}");

    // Out of range, and a task of no service.
    let (ok_, _, err) = cli(
        &server,
        "ecs",
        &[
            "update-task-protection",
            "--cluster",
            "default",
            "--tasks",
            &arns[2],
            "--protection-enabled",
            "--expires-in-minutes",
            "2881",
        ],
    )
    .await;
    assert!(!ok_ && err.contains("InvalidParameterException"), "{err}");

    // Scale in to 1: only the unprotected task can go; two stay.
    ecs.update_service()
        .service("web")
        .desired_count(1)
        .send()
        .await
        .unwrap();
    eventually(30, "the unprotected task stopped", || async {
        let d = ecs
            .describe_tasks()
            .set_tasks(Some(arns.clone()))
            .send()
            .await
            .unwrap();
        let status = |arn: &str| {
            d.tasks()
                .iter()
                .find(|t| t.task_arn() == Some(arn))
                .and_then(|t| t.last_status().map(String::from))
                .unwrap_or_default()
        };
        (status(&arns[2]) == "STOPPED"
            && status(&arns[0]) == "RUNNING"
            && status(&arns[1]) == "RUNNING")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = ecs
        .describe_services()
        .services("web")
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.services()[0].running_count(),
        2,
        "protected tasks are kept"
    );

    let (_, got, _) = cli(
        &server,
        "ecs",
        &[
            "get-task-protection",
            "--cluster",
            "default",
            "--tasks",
            &arns[0],
            &arns[2],
        ],
    )
    .await;
    assert_eq!(got["protectedTasks"][0]["protectionEnabled"], true);
    assert_eq!(got["protectedTasks"][1]["protectionEnabled"], false);

    // Protection off: the scale-in completes.
    let (ok_, _, err) = cli(
        &server,
        "ecs",
        &[
            "update-task-protection",
            "--cluster",
            "default",
            "--tasks",
            &arns[1],
            "--no-protection-enabled",
        ],
    )
    .await;
    assert!(ok_, "{err}");
    running(&server, 1).await;
    let d = ecs.describe_tasks().tasks(&arns[0]).send().await.unwrap();
    assert_eq!(
        d.tasks()[0].last_status(),
        Some("RUNNING"),
        "the protected one stays"
    );
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let server = TestServer::start().await;
    let host = service(&server, 1).await;
    register(&server, "1", "4").await;
    for (name, kind, cfg) in [(
        "cpu",
        "TargetTrackingScaling",
        r#"{"TargetValue":60,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageMemoryUtilization"},"DisableScaleIn":true}"#,
    )] {
        let flag = "--target-tracking-scaling-policy-configuration";
        ok(
            &server,
            &[
                "put-scaling-policy",
                "--policy-name",
                name,
                "--service-namespace",
                "ecs",
                "--scalable-dimension",
                "ecs:service:DesiredCount",
                "--resource-id",
                RESOURCE,
                "--policy-type",
                kind,
                flag,
                cfg,
            ],
        )
        .await;
    }
    ok(
        &server,
        &[
            "put-scheduled-action",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            RESOURCE,
            "--scheduled-action-name",
            "weekdays",
            "--schedule",
            "cron(0 8 ? * MON-FRI *)",
            "--timezone",
            "Europe/Paris",
            "--scalable-target-action",
            "MinCapacity=2",
        ],
    )
    .await;
    let before = (
        ok(
            &server,
            &["describe-scalable-targets", "--service-namespace", "ecs"],
        )
        .await,
        ok(
            &server,
            &["describe-scaling-policies", "--service-namespace", "ecs"],
        )
        .await,
        ok(
            &server,
            &["describe-scheduled-actions", "--service-namespace", "ecs"],
        )
        .await,
    );
    drop(host);
    let dir = server.stop().await.expect("temp dir");
    let server = TestServer::start_in(dir.path().to_path_buf()).await;
    let after = (
        ok(
            &server,
            &["describe-scalable-targets", "--service-namespace", "ecs"],
        )
        .await,
        ok(
            &server,
            &["describe-scaling-policies", "--service-namespace", "ecs"],
        )
        .await,
        ok(
            &server,
            &["describe-scheduled-actions", "--service-namespace", "ecs"],
        )
        .await,
    );
    assert_eq!(before, after);
    assert_eq!(after.2["ScheduledActions"][0]["Timezone"], "Europe/Paris");
    let alarms = server
        .env
        .metrics
        .describe_alarms(&scope(), &DescribeAlarmsInput::default())
        .unwrap();
    assert_eq!(
        alarms.metric_alarms.len(),
        2,
        "the policy's alarms are in the metric store"
    );
    drop(dir);
}
