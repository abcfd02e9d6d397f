//! Service deployment history and deployment failure detection, driven by
//! the real AWS CLI (`aws ecs list-service-deployments`,
//! `describe-service-deployments`, `describe-service-revisions`,
//! `stop-service-deployment`, `aws cloudwatch set-alarm-state`) against an
//! in-process server with simulated hosts.

mod common;

use std::time::Duration;

use common::{eventually, TestServer, ALICE};
use flotilla_sim::{Behaviour, HostSpec, SimAgent};
use serde_json::{json, Value};

fn fast() -> flotilla_server::Config {
    let mut c = flotilla_server::Config::default();
    c.controllers.lost_host_grace = Duration::from_millis(500);
    c
}

/// Runs `aws SERVICE ARGS… --output json` as Alice: (ok, stdout JSON, stderr).
async fn aws(server: &TestServer, service: &str, args: &[&str]) -> (bool, Value, String) {
    server.aws(&ALICE, service, args).await
}

async fn ecs(server: &TestServer, args: &[&str]) -> Value {
    let (ok, out, err) = aws(server, "ecs", args).await;
    assert!(ok, "aws ecs {args:?} failed: {err}");
    out
}

async fn ecs_fails(server: &TestServer, args: &[&str], code: &str) -> String {
    let (ok, out, err) = aws(server, "ecs", args).await;
    assert!(
        !ok,
        "aws ecs {args:?} should have failed with {code}: {out}"
    );
    assert!(
        err.contains(&format!("({code})")),
        "aws ecs {args:?}: expected {code}, got: {err}"
    );
    err
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

async fn hosts(server: &TestServer, n: usize, behaviour: Behaviour) -> Vec<SimAgent> {
    let client = server.raw(&ALICE);
    let mut out = Vec::new();
    for _ in 0..n {
        let spec = HostSpec::new("default", 4096, 8192);
        out.push(
            SimAgent::start(&client, spec, behaviour.clone())
                .await
                .unwrap(),
        );
    }
    out
}

async fn register(server: &TestServer, family: &str, image: &str) -> String {
    let containers = json!([{"name": "app", "image": image, "memory": 64}]).to_string();
    let out = ecs(
        server,
        &[
            "register-task-definition",
            "--family",
            family,
            "--container-definitions",
            &containers,
        ],
    )
    .await;
    s(&out["taskDefinition"]["taskDefinitionArn"])
}

/// The service's deployments, newest first.
async fn list(server: &TestServer, service: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["list-service-deployments", "--service", service];
    args.extend_from_slice(extra);
    let out = ecs(server, &args).await;
    out["serviceDeployments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn describe(server: &TestServer, arn: &str) -> Value {
    let out = ecs(
        server,
        &[
            "describe-service-deployments",
            "--service-deployment-arns",
            arn,
        ],
    )
    .await;
    out["serviceDeployments"][0].clone()
}

/// Waits until the service deployment `arn` has `status`.
async fn until_status(server: &TestServer, arn: &str, status: &str, secs: u64) -> Value {
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        last = describe(server, arn).await;
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("service deployment {arn} never reached {status}: {last:#}");
}

async fn service(server: &TestServer, name: &str) -> Value {
    ecs(server, &["describe-services", "--services", name]).await["services"][0].clone()
}

#[tokio::test]
async fn every_deployment_is_in_the_history_and_can_be_rolled_back() {
    let server = TestServer::start_with(fast()).await;
    ecs(&server, &["create-cluster"]).await;
    let _hosts = hosts(
        &server,
        2,
        Behaviour {
            fail_families: vec!["broken".into()],
            ..Default::default()
        },
    )
    .await;
    let v1 = register(&server, "web", "web:1").await;
    let v2 = register(&server, "web", "web:2").await;
    let broken = register(&server, "broken", "web:3").await;

    ecs(
        &server,
        &[
            "create-service",
            "--service-name",
            "web",
            "--task-definition",
            &v1,
            "--desired-count",
            "2",
        ],
    )
    .await;
    let first = list(&server, "web", &[]).await;
    assert_eq!(first.len(), 1, "{first:#?}");
    let first_arn = s(&first[0]["serviceDeploymentArn"]);
    assert!(
        first_arn.starts_with("arn:aws:ecs:us-east-1:111111111111:service-deployment/default/web/"),
        "{first_arn}"
    );
    let d = until_status(&server, &first_arn, "SUCCESSFUL", 20).await;
    assert_eq!(d["sourceServiceRevisions"], json!([]), "{d:#}");
    assert_eq!(d["deploymentCircuitBreaker"]["status"], "DISABLED", "{d:#}");
    assert_eq!(d["alarms"]["status"], "DISABLED", "{d:#}");
    assert_eq!(d["targetServiceRevision"]["runningTaskCount"], 2, "{d:#}");
    assert!(
        d["finishedAt"].is_number() || d["finishedAt"].is_string(),
        "{d:#}"
    );
    let rev1 = s(&d["targetServiceRevision"]["arn"]);
    assert!(rev1.contains(":service-revision/default/web/"), "{rev1}");
    let revs = ecs(
        &server,
        &[
            "describe-service-revisions",
            "--service-revision-arns",
            &rev1,
        ],
    )
    .await;
    let r = &revs["serviceRevisions"][0];
    assert_eq!(s(&r["taskDefinition"]), v1, "{revs:#}");
    assert_eq!(r["containerImages"][0]["image"], "web:1", "{revs:#}");

    // A rolling update: a second deployment from revision 1 to a new one.
    let before_second = ecs(&server, &["list-service-deployments", "--service", "web"]).await;
    assert!(before_second["nextToken"].is_null());
    ecs(
        &server,
        &[
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &v2,
        ],
    )
    .await;
    let two = list(&server, "web", &[]).await;
    assert_eq!(two.len(), 2);
    let second_arn = s(&two[0]["serviceDeploymentArn"]);
    assert_ne!(second_arn, first_arn, "newest first");
    let d2 = until_status(&server, &second_arn, "SUCCESSFUL", 20).await;
    assert_eq!(s(&d2["sourceServiceRevisions"][0]["arn"]), rev1, "{d2:#}");
    // Frozen as the deployment ended: the old revision has no task left.
    assert_eq!(
        d2["sourceServiceRevisions"][0]["runningTaskCount"], 0,
        "{d2:#}"
    );
    assert_eq!(d2["targetServiceRevision"]["runningTaskCount"], 2, "{d2:#}");
    let rev2 = s(&d2["targetServiceRevision"]["arn"]);

    // Filters and pages.
    assert_eq!(
        list(&server, "web", &["--status", "IN_PROGRESS"])
            .await
            .len(),
        0
    );
    assert_eq!(
        list(&server, "web", &["--status", "SUCCESSFUL"])
            .await
            .len(),
        2
    );
    let created2 = d2["createdAt"].as_f64().unwrap_or_default();
    if created2 > 0.0 {
        let after = format!("after={}", created2 - 0.0005);
        let recent = list(&server, "web", &["--created-at", &after]).await;
        assert_eq!(recent.len(), 1, "{recent:#?}");
    }
    let page = ecs(
        &server,
        &[
            "list-service-deployments",
            "--service",
            "web",
            "--max-results",
            "1",
        ],
    )
    .await;
    assert_eq!(page["serviceDeployments"].as_array().unwrap().len(), 1);
    let token = s(&page["nextToken"]);
    assert!(!token.is_empty(), "{page:#}");
    let page2 = ecs(
        &server,
        &[
            "list-service-deployments",
            "--service",
            "web",
            "--max-results",
            "1",
            "--next-token",
            &token,
        ],
    )
    .await;
    assert_eq!(
        page2["serviceDeployments"][0]["serviceDeploymentArn"],
        first_arn.as_str()
    );

    // A finished deployment cannot be stopped; ABORT is refused.
    ecs_fails(
        &server,
        &[
            "stop-service-deployment",
            "--service-deployment-arn",
            &second_arn,
        ],
        "ConflictException",
    )
    .await;
    ecs_fails(
        &server,
        &[
            "stop-service-deployment",
            "--service-deployment-arn",
            &second_arn,
            "--stop-type",
            "ABORT",
        ],
        "InvalidParameterException",
    )
    .await;
    ecs_fails(
        &server,
        &[
            "stop-service-deployment",
            "--service-deployment-arn",
            "arn:aws:ecs:us-east-1:111111111111:service-deployment/default/web/123",
        ],
        "ServiceDeploymentNotFoundException",
    )
    .await;
    let missing = ecs(
        &server,
        &[
            "describe-service-deployments",
            "--service-deployment-arns",
            "arn:aws:ecs:us-east-1:111111111111:service-deployment/default/web/42",
        ],
    )
    .await;
    assert_eq!(missing["failures"][0]["reason"], "MISSING", "{missing:#}");

    // A deployment whose tasks never start (no circuit breaker): stopped
    // with ROLLBACK, it goes back to revision 2.
    ecs(
        &server,
        &[
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &broken,
        ],
    )
    .await;
    let third_arn = s(&list(&server, "web", &[]).await[0]["serviceDeploymentArn"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d3 = describe(&server, &third_arn).await;
    assert_eq!(d3["status"], "IN_PROGRESS", "{d3:#}");
    ecs(
        &server,
        &[
            "stop-service-deployment",
            "--service-deployment-arn",
            &third_arn,
            "--stop-type",
            "ROLLBACK",
        ],
    )
    .await;
    let d3 = until_status(&server, &third_arn, "ROLLBACK_SUCCESSFUL", 30).await;
    assert_eq!(s(&d3["rollback"]["serviceRevisionArn"]), rev2, "{d3:#}");
    let svc = service(&server, "web").await;
    assert_eq!(s(&svc["taskDefinition"]), v2, "{svc:#}");
    assert_eq!(svc["runningCount"], 2, "{svc:#}");
    // The rollback is no new service deployment.
    assert_eq!(list(&server, "web", &[]).await.len(), 3);

    // The circuit breaker's rollback shows as ROLLBACK_*.
    let breaker =
        json!({"deploymentCircuitBreaker": {"enable": true, "rollback": true}}).to_string();
    ecs(
        &server,
        &[
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &broken,
            "--deployment-configuration",
            &breaker,
        ],
    )
    .await;
    let fourth_arn = s(&list(&server, "web", &[]).await[0]["serviceDeploymentArn"]);
    let d4 = until_status(&server, &fourth_arn, "ROLLBACK_SUCCESSFUL", 60).await;
    assert_eq!(
        d4["deploymentCircuitBreaker"]["status"], "TRIGGERED",
        "{d4:#}"
    );
    assert!(
        d4["deploymentCircuitBreaker"]["failureCount"]
            .as_i64()
            .unwrap_or(0)
            >= 10,
        "{d4:#}"
    );
    assert!(
        s(&d4["rollback"]["reason"]).contains("circuit breaker"),
        "{d4:#}"
    );
    assert_eq!(s(&service(&server, "web").await["taskDefinition"]), v2);
    server.stop().await;
}

#[tokio::test]
async fn an_alarm_rolls_a_rolling_deployment_back() {
    let server = TestServer::start_with(fast()).await;
    ecs(&server, &["create-cluster"]).await;
    let _hosts = hosts(&server, 2, Behaviour::default()).await;
    let v1 = register(&server, "api", "api:1").await;
    let v2 = register(&server, "api", "api:2").await;
    let (ok, _, err) = aws(
        &server,
        "cloudwatch",
        &[
            "put-metric-alarm",
            "--alarm-name",
            "api-errors",
            "--namespace",
            "App",
            "--metric-name",
            "Errors",
            "--statistic",
            "Sum",
            "--period",
            "60",
            "--evaluation-periods",
            "1",
            "--threshold",
            "1",
            "--comparison-operator",
            "GreaterThanOrEqualToThreshold",
        ],
    )
    .await;
    assert!(ok, "{err}");

    // Alarms enabled without a name: refused, naming the field.
    let bad = json!({"alarms": {"alarmNames": [], "enable": true, "rollback": true}}).to_string();
    let err = ecs_fails(
        &server,
        &[
            "create-service",
            "--service-name",
            "api",
            "--task-definition",
            &v1,
            "--desired-count",
            "2",
            "--deployment-configuration",
            &bad,
        ],
        "InvalidParameterException",
    )
    .await;
    assert!(err.contains("alarmNames"), "{err}");

    // Watched with a 1-minute bake: the deployment stays IN_PROGRESS
    // (BAKE_TIME) after its tasks are replaced.
    let dc = json!({"alarms": {"alarmNames": ["api-errors"], "enable": true, "rollback": true}, "bakeTimeInMinutes": 1}).to_string();
    ecs(
        &server,
        &[
            "create-service",
            "--service-name",
            "api",
            "--task-definition",
            &v1,
            "--desired-count",
            "2",
            "--deployment-configuration",
            &dc,
        ],
    )
    .await;
    let first = s(&list(&server, "api", &[]).await[0]["serviceDeploymentArn"]);
    // The first deployment has nothing to roll back to; let it bake out of
    // the way by starting the next one once it runs.
    eventually(20, "the first deployment's tasks running", || async {
        (service(&server, "api").await["runningCount"] == 2).then_some(())
    })
    .await;
    ecs(
        &server,
        &[
            "update-service",
            "--service",
            "api",
            "--task-definition",
            &v2,
        ],
    )
    .await;
    assert_eq!(describe(&server, &first).await["status"], "STOPPED");
    let second = s(&list(&server, "api", &[]).await[0]["serviceDeploymentArn"]);
    let baking = eventually(30, "the second deployment baking", || async {
        let d = describe(&server, &second).await;
        (d["lifecycleStage"] == "BAKE_TIME").then_some(d)
    })
    .await;
    assert_eq!(baking["status"], "IN_PROGRESS", "{baking:#}");
    assert_eq!(baking["alarms"]["status"], "MONITORING", "{baking:#}");

    let started = std::time::Instant::now();
    let (ok, _, err) = aws(
        &server,
        "cloudwatch",
        &[
            "set-alarm-state",
            "--alarm-name",
            "api-errors",
            "--state-value",
            "ALARM",
            "--state-reason",
            "test",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let rolling_back = eventually(10, "the rollback to start", || async {
        let d = describe(&server, &second).await;
        (d["status"] != "IN_PROGRESS").then_some(d)
    })
    .await;
    let to_rollback = started.elapsed();
    assert!(
        matches!(
            rolling_back["status"].as_str(),
            Some("ROLLBACK_IN_PROGRESS" | "ROLLBACK_SUCCESSFUL")
        ),
        "{rolling_back:#}"
    );
    assert_eq!(
        rolling_back["alarms"]["status"], "TRIGGERED",
        "{rolling_back:#}"
    );
    assert_eq!(
        rolling_back["alarms"]["triggeredAlarmNames"],
        json!(["api-errors"]),
        "{rolling_back:#}"
    );
    let done = until_status(&server, &second, "ROLLBACK_SUCCESSFUL", 30).await;
    assert!(
        s(&done["rollback"]["reason"]).contains("api-errors"),
        "{done:#}"
    );
    let svc = eventually(20, "the service back on revision 1", || async {
        let svc = service(&server, "api").await;
        (svc["deployments"].as_array().map(Vec::len) == Some(1) && svc["runningCount"] == 2)
            .then_some(svc)
    })
    .await;
    assert_eq!(s(&svc["taskDefinition"]), v1, "{svc:#}");
    eprintln!("alarm to rollback started: {to_rollback:?}");
    server.stop().await;
}

async fn elb(server: &TestServer, args: &[&str]) -> Value {
    let (ok, out, err) = aws(server, "elbv2", args).await;
    assert!(ok, "aws elbv2 {args:?} failed: {err}");
    out
}

/// The production (or test) rule's forward weights: (blue, green).
async fn weights(server: &TestServer, rule: &str, blue: &str, green: &str) -> (i64, i64) {
    let out = elb(server, &["describe-rules", "--rule-arns", rule]).await;
    let groups = out["Rules"][0]["Actions"][0]["ForwardConfig"]["TargetGroups"].clone();
    let weight = |tg: &str| {
        groups
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["TargetGroupArn"] == tg)
            .and_then(|g| g["Weight"].as_i64())
            .unwrap_or(-1)
    };
    (weight(blue), weight(green))
}

async fn targets(server: &TestServer, tg: &str) -> usize {
    let out = elb(
        server,
        &["describe-target-health", "--target-group-arn", tg],
    )
    .await;
    out["TargetHealthDescriptions"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|d| d["TargetHealth"]["State"] != "draining")
                .count()
        })
        .unwrap_or(0)
}

/// Waits until deployment `arn` is held at `stage` by a PAUSE hook; returns its hookId.
async fn held_at(server: &TestServer, arn: &str, stage: &str, stages: &mut Vec<String>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = describe(server, arn).await;
        let now = s(&d["lifecycleStage"]);
        if stages.last() != Some(&now) && !now.is_empty() {
            stages.push(now.clone());
        }
        let awaiting = d["lifecycleHookDetails"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["status"] == "AWAITING_ACTION")
            .map(|h| s(&h["hookId"]));
        if let (true, Some(id)) = (now == stage, awaiting) {
            return id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never held at {stage}: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn blue_green_shifts_listener_weights_stage_by_stage_and_rolls_back_on_an_alarm() {
    let server = TestServer::start_with(fast()).await;
    ecs(&server, &["create-cluster"]).await;
    let _hosts = hosts(&server, 2, Behaviour::default()).await;
    let td = |image: &str| {
        json!([{"name": "app", "image": image, "memory": 64, "portMappings": [{"containerPort": 80}]}]).to_string()
    };
    let v1 = s(&ecs(
        &server,
        &[
            "register-task-definition",
            "--family",
            "web",
            "--container-definitions",
            &td("web:1"),
        ],
    )
    .await["taskDefinition"]["taskDefinitionArn"]);
    let v2 = s(&ecs(
        &server,
        &[
            "register-task-definition",
            "--family",
            "web",
            "--container-definitions",
            &td("web:2"),
        ],
    )
    .await["taskDefinition"]["taskDefinitionArn"]);

    let lb = s(
        &elb(&server, &["create-load-balancer", "--name", "web"]).await["LoadBalancers"][0]
            ["LoadBalancerArn"],
    );
    let tg = |name: &'static str| {
        let server = &server;
        async move {
            let arn = s(&elb(
                server,
                &[
                    "create-target-group",
                    "--name",
                    name,
                    "--protocol",
                    "HTTP",
                    "--port",
                    "80",
                    "--target-type",
                    "ip",
                    "--no-health-check-enabled",
                ],
            )
            .await["TargetGroups"][0]["TargetGroupArn"]);
            elb(
                server,
                &[
                    "modify-target-group-attributes",
                    "--target-group-arn",
                    &arn,
                    "--attributes",
                    "Key=deregistration_delay.timeout_seconds,Value=0",
                ],
            )
            .await;
            arn
        }
    };
    let (blue, green, other) = (tg("blue").await, tg("green").await, tg("other").await);
    let both = json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": blue, "Weight": 100}, {"TargetGroupArn": green, "Weight": 0}]}}]).to_string();
    let listener = |port: &'static str| {
        let (server, lb, blue) = (&server, lb.clone(), blue.clone());
        async move {
            s(&elb(
                server,
                &[
                    "create-listener",
                    "--load-balancer-arn",
                    &lb,
                    "--protocol",
                    "HTTP",
                    "--port",
                    port,
                    "--default-actions",
                    &format!("Type=forward,TargetGroupArn={blue}"),
                ],
            )
            .await["Listeners"][0]["ListenerArn"])
        }
    };
    let (prod_listener, test_listener) = (listener("80").await, listener("8080").await);
    let rule = |listener: String, priority: &'static str, actions: String| {
        let server = &server;
        async move {
            s(&elb(
                server,
                &[
                    "create-rule",
                    "--listener-arn",
                    &listener,
                    "--priority",
                    priority,
                    "--conditions",
                    "Field=path-pattern,Values=/*",
                    "--actions",
                    &actions,
                ],
            )
            .await["Rules"][0]["RuleArn"])
        }
    };
    let prod = rule(prod_listener.clone(), "10", both.clone()).await;
    let test = rule(test_listener, "10", both.clone()).await;
    let only_blue = rule(
        prod_listener,
        "20",
        json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": blue, "Weight": 1}, {"TargetGroupArn": other, "Weight": 1}]}}]).to_string(),
    )
    .await;

    let lbs = |alt: &str, prod: &str| {
        json!([{"targetGroupArn": blue, "containerName": "app", "containerPort": 80, "advancedConfiguration": {
            "alternateTargetGroupArn": alt, "productionListenerRule": prod, "testListenerRule": test,
            "roleArn": "arn:aws:iam::111111111111:role/ecs-blue-green"}}])
        .to_string()
    };
    let create = |lbs: String, dc: Value| {
        let server = &server;
        let v1 = v1.clone();
        async move {
            aws(
                server,
                "ecs",
                &[
                    "create-service",
                    "--service-name",
                    "web",
                    "--task-definition",
                    &v1,
                    "--desired-count",
                    "2",
                    "--load-balancers",
                    &lbs,
                    "--deployment-configuration",
                    &dc.to_string(),
                ],
            )
            .await
        }
    };
    let bg = json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0});
    // Bad input, each refused with the field and the rule.
    for (lbs, dc, says) in [
        (
            lbs(&green, &only_blue),
            bg.clone(),
            "must forward to both target groups",
        ),
        (lbs(&blue, &prod), bg.clone(), "must differ"),
        (
            lbs(&green, &prod),
            json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 150.0}}),
            "canaryPercent",
        ),
        (
            lbs(&green, &prod),
            json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 1.0}}),
            "stepPercent",
        ),
        (
            lbs(&green, &prod),
            json!({"strategy": "BLUE_GREEN", "lifecycleHooks": [{"hookTargetArn": "arn:aws:lambda:us-east-1:111111111111:function:f", "lifecycleStages": ["POST_SCALE_UP"]}]}),
            "AWS_LAMBDA",
        ),
        ("[]".to_string(), bg.clone(), "advancedConfiguration"),
    ] {
        let (ok, out, err) = create(lbs, dc).await;
        assert!(!ok, "should have failed ({says}): {out}");
        assert!(
            err.contains("InvalidParameterException") && err.contains(says),
            "expected {says}: {err}"
        );
    }

    // The first deployment has nothing to shift from: it rolls out into blue.
    let hooks = json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0, "lifecycleHooks": [
        {"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP", "POST_PRODUCTION_TRAFFIC_SHIFT"]}]});
    let (ok, _, err) = create(lbs(&green, &prod), hooks).await;
    assert!(ok, "{err}");
    let first = s(&list(&server, "web", &[]).await[0]["serviceDeploymentArn"]);
    until_status(&server, &first, "SUCCESSFUL", 30).await;
    eventually(20, "2 targets in blue", || async {
        (targets(&server, &blue).await == 2).then_some(())
    })
    .await;

    // Blue/green to v2: held after the scale-up with green registered and
    // no traffic on it, then after the production shift with all of it.
    ecs(
        &server,
        &[
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &v2,
        ],
    )
    .await;
    let second = s(&list(&server, "web", &[]).await[0]["serviceDeploymentArn"]);
    let mut stages = Vec::new();
    let hook = held_at(&server, &second, "POST_SCALE_UP", &mut stages).await;
    assert_eq!(
        targets(&server, &green).await,
        2,
        "green scaled up in the alternate group"
    );
    assert_eq!(targets(&server, &blue).await, 2, "blue untouched");
    assert_eq!(weights(&server, &prod, &blue, &green).await, (100, 0));
    let svc = service(&server, "web").await;
    assert_eq!(svc["deployments"].as_array().unwrap().len(), 2, "{svc:#}");
    assert_eq!(svc["runningCount"], 4, "both revisions run: {svc:#}");
    ecs_fails(
        &server,
        &[
            "continue-service-deployment",
            "--service-deployment-arn",
            &second,
            "--hook-id",
            "nope",
        ],
        "InvalidParameterException",
    )
    .await;
    ecs(
        &server,
        &[
            "continue-service-deployment",
            "--service-deployment-arn",
            &second,
            "--hook-id",
            &hook,
            "--action",
            "CONTINUE",
        ],
    )
    .await;
    let hook = held_at(
        &server,
        &second,
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        &mut stages,
    )
    .await;
    assert_eq!(
        weights(&server, &prod, &blue, &green).await,
        (0, 1),
        "production all on green"
    );
    assert_eq!(
        weights(&server, &test, &blue, &green).await,
        (0, 1),
        "test all on green"
    );
    let d = describe(&server, &second).await;
    assert_eq!(
        d["targetServiceRevision"]["requestedProductionTrafficWeight"], 100.0,
        "{d:#}"
    );
    assert_eq!(
        d["sourceServiceRevisions"][0]["requestedProductionTrafficWeight"], 0.0,
        "{d:#}"
    );
    assert_eq!(
        targets(&server, &blue).await,
        2,
        "blue still runs until the clean-up"
    );
    ecs(
        &server,
        &[
            "continue-service-deployment",
            "--service-deployment-arn",
            &second,
            "--hook-id",
            &hook,
        ],
    )
    .await;
    let done = until_status(&server, &second, "SUCCESSFUL", 30).await;
    stages.push(s(&done["lifecycleStage"]));
    let order = [
        "RECONCILE_SERVICE",
        "PRE_SCALE_UP",
        "SCALE_UP",
        "POST_SCALE_UP",
        "TEST_TRAFFIC_SHIFT",
        "POST_TEST_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
        "CLEAN_UP",
    ];
    let at: Vec<usize> = stages
        .iter()
        .map(|st| order.iter().position(|o| o == st).expect("an ECS stage"))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] <= w[1]),
        "stages out of ECS's order: {stages:?}"
    );
    let svc = eventually(20, "blue scaled down", || async {
        let svc = service(&server, "web").await;
        (svc["deployments"].as_array().map(Vec::len) == Some(1) && svc["runningCount"] == 2)
            .then_some(svc)
    })
    .await;
    // The groups swapped roles.
    assert_eq!(
        s(&svc["loadBalancers"][0]["targetGroupArn"]),
        green,
        "{svc:#}"
    );
    assert_eq!(
        s(&svc["loadBalancers"][0]["advancedConfiguration"]["alternateTargetGroupArn"]),
        blue,
        "{svc:#}"
    );
    eventually(20, "blue drained", || async {
        (targets(&server, &blue).await == 0).then_some(())
    })
    .await;

    // Back to v1 watched by an alarm, held after the production shift:
    // the alarm sends production traffic back to green (now the primary
    // group) before the new tasks go.
    let (ok, _, err) = aws(
        &server,
        "cloudwatch",
        &[
            "put-metric-alarm",
            "--alarm-name",
            "web-errors",
            "--namespace",
            "App",
            "--metric-name",
            "Errors",
            "--statistic",
            "Sum",
            "--period",
            "60",
            "--evaluation-periods",
            "1",
            "--threshold",
            "1",
            "--comparison-operator",
            "GreaterThanOrEqualToThreshold",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let watched = json!({"alarms": {"alarmNames": ["web-errors"], "enable": true, "rollback": true},
        "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_PRODUCTION_TRAFFIC_SHIFT"]}]}).to_string();
    ecs(
        &server,
        &[
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &v1,
            "--deployment-configuration",
            &watched,
        ],
    )
    .await;
    let third = s(&list(&server, "web", &[]).await[0]["serviceDeploymentArn"]);
    held_at(
        &server,
        &third,
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        &mut Vec::new(),
    )
    .await;
    assert_eq!(
        weights(&server, &prod, &green, &blue).await,
        (0, 1),
        "production on the new revision (in blue)"
    );
    let alarm_set = std::time::Instant::now();
    let (ok, _, err) = aws(
        &server,
        "cloudwatch",
        &[
            "set-alarm-state",
            "--alarm-name",
            "web-errors",
            "--state-value",
            "ALARM",
            "--state-reason",
            "test",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let rolling_back = eventually(10, "the rollback", || async {
        let d = describe(&server, &third).await;
        (d["status"] != "IN_PROGRESS").then_some(d)
    })
    .await;
    assert_eq!(
        weights(&server, &prod, &green, &blue).await,
        (1, 0),
        "production back on the original group first"
    );
    // Includes the CLI's own start-up (about 0.5 s a call on this machine).
    eprintln!(
        "blue/green: set-alarm-state to production back on the original group: {:?}",
        alarm_set.elapsed()
    );
    assert_eq!(
        rolling_back["alarms"]["triggeredAlarmNames"],
        json!(["web-errors"]),
        "{rolling_back:#}"
    );
    until_status(&server, &third, "ROLLBACK_SUCCESSFUL", 30).await;
    let svc = eventually(20, "the new revision scaled down", || async {
        let svc = service(&server, "web").await;
        (svc["deployments"].as_array().map(Vec::len) == Some(1) && svc["runningCount"] == 2)
            .then_some(svc)
    })
    .await;
    assert_eq!(s(&svc["taskDefinition"]), v2, "{svc:#}");
    assert_eq!(
        s(&svc["loadBalancers"][0]["targetGroupArn"]),
        green,
        "no swap after a rollback: {svc:#}"
    );

    // Deleted while a blue/green is held by its hook: the deployment ends
    // with the service instead of staying IN_PROGRESS.
    let (ok, _, err) = aws(
        &server,
        "cloudwatch",
        &[
            "set-alarm-state",
            "--alarm-name",
            "web-errors",
            "--state-value",
            "OK",
            "--state-reason",
            "test",
        ],
    )
    .await;
    assert!(ok, "{err}");
    ecs(
        &server,
        &[
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &v1,
        ],
    )
    .await;
    let fourth = s(&list(&server, "web", &[]).await[0]["serviceDeploymentArn"]);
    held_at(
        &server,
        &fourth,
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        &mut Vec::new(),
    )
    .await;
    ecs(&server, &["delete-service", "--service", "web", "--force"]).await;
    let d = describe(&server, &fourth).await;
    assert_eq!(d["status"], "STOPPED", "{d:#}");
    assert!(
        s(&d["statusReason"]).contains("deleted") && d["stoppedAt"].is_number(),
        "{d:#}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_history_survives_a_restart() {
    let server = TestServer::start_with(fast()).await;
    ecs(&server, &["create-cluster"]).await;
    let hosts_now = hosts(&server, 1, Behaviour::default()).await;
    let v1 = register(&server, "keep", "keep:1").await;
    let v2 = register(&server, "keep", "keep:2").await;
    ecs(
        &server,
        &[
            "create-service",
            "--service-name",
            "keep",
            "--task-definition",
            &v1,
            "--desired-count",
            "1",
        ],
    )
    .await;
    ecs(
        &server,
        &[
            "update-service",
            "--service",
            "keep",
            "--task-definition",
            &v2,
        ],
    )
    .await;
    let before = list(&server, "keep", &[]).await;
    assert_eq!(before.len(), 2);
    let arn = s(&before[0]["serviceDeploymentArn"]);
    let done = until_status(&server, &arn, "SUCCESSFUL", 20).await;
    for h in hosts_now {
        h.kill();
    }
    let dir = server.stop().await.expect("the test's directory");
    let server = TestServer::start_in(dir.path().to_path_buf()).await;
    let after = list(&server, "keep", &[]).await;
    assert_eq!(after.len(), 2, "{after:#?}");
    assert_eq!(s(&after[0]["serviceDeploymentArn"]), arn);
    assert_eq!(after[0]["status"], "SUCCESSFUL");
    assert_eq!(
        after[1]["serviceDeploymentArn"],
        before[1]["serviceDeploymentArn"]
    );
    assert_eq!(
        describe(&server, &arn).await,
        done,
        "described the same after a restart"
    );
    let rev = s(&done["targetServiceRevision"]["arn"]);
    let revs = ecs(
        &server,
        &[
            "describe-service-revisions",
            "--service-revision-arns",
            &rev,
        ],
    )
    .await;
    assert_eq!(s(&revs["serviceRevisions"][0]["taskDefinition"]), v2);
    server.stop().await;
}
