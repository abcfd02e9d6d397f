//! ELBv2 driven by the real AWS CLI (`aws elbv2 …`) against an in-process
//! server, with a test load-balancer node speaking `flotilla_model::lb`
//! over a real WebSocket: it applies every configuration it is sent and
//! reports targets' health as the test tells it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, TestServer, ALICE, BOB};
use flotilla_model::lb::{
    ControlMessage, NodeConfig, NodeMessage, ObservedHealth, TargetHealthReport,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Runs `aws elbv2 ARGS… --output json` as `who`: (ok, stdout JSON, stderr).
async fn elb(server: &TestServer, who: &common::Principal, args: &[&str]) -> (bool, Value, String) {
    server.aws(who, "elbv2", args).await
}

/// Runs a command that must succeed.
async fn ok(server: &TestServer, args: &[&str]) -> Value {
    let (success, out, err) = elb(server, &ALICE, args).await;
    assert!(success, "aws elbv2 {args:?} failed: {err}");
    out
}

/// Runs a command that must fail with `code`.
async fn fails(server: &TestServer, args: &[&str], code: &str) -> String {
    let (success, out, err) = elb(server, &ALICE, args).await;
    assert!(
        !success,
        "aws elbv2 {args:?} should have failed with {code}: {out}"
    );
    assert!(
        err.contains(&format!("({code})")),
        "aws elbv2 {args:?}: expected {code}, got: {err}"
    );
    err
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A load-balancer node for tests.
struct TestNode {
    configs: Arc<Mutex<Vec<(u64, NodeConfig)>>>,
    out: mpsc::UnboundedSender<NodeMessage>,
    task: tokio::task::JoinHandle<()>,
}

impl TestNode {
    async fn connect(server: &TestServer, name: &str, addresses: &str) -> TestNode {
        let client = server.raw(&ALICE).for_service("elasticloadbalancing", "");
        let url = client
            .presign_get(
                &format!("/v1/lb/connect?node={name}&addresses={addresses}"),
                Duration::from_secs(300),
            )
            .expect("presign")
            .replacen("http://", "ws://", 1);
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("the gateway takes the node");
        let configs: Arc<Mutex<Vec<(u64, NodeConfig)>>> = Arc::default();
        let (out, mut rx) = mpsc::unbounded_channel::<NodeMessage>();
        let seen = configs.clone();
        let task = tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let mut beat = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    msg = stream.next() => {
                        let Some(Ok(Message::Text(text))) = msg else { return };
                        let msg: ControlMessage = serde_json::from_str(text.as_str()).expect("a ControlMessage");
                        if let ControlMessage::Config { version, config } = msg {
                            seen.lock().unwrap().push((version, config));
                            let applied = serde_json::to_string(&NodeMessage::Applied { version }).unwrap();
                            if sink.send(Message::Text(applied.into())).await.is_err() { return }
                        }
                    }
                    m = rx.recv() => {
                        let Some(m) = m else { return };
                        let text = serde_json::to_string(&m).unwrap();
                        if sink.send(Message::Text(text.into())).await.is_err() { return }
                    }
                    _ = beat.tick() => {
                        let text = serde_json::to_string(&NodeMessage::Heartbeat).unwrap();
                        if sink.send(Message::Text(text.into())).await.is_err() { return }
                    }
                }
            }
        });
        TestNode { configs, out, task }
    }

    fn latest(&self) -> Option<(u64, NodeConfig)> {
        self.configs.lock().unwrap().last().cloned()
    }

    fn report(&self, tg: &str, id: &str, port: u16, health: ObservedHealth, reason: Option<&str>) {
        let _ = self.out.send(NodeMessage::Health {
            reports: vec![TargetHealthReport {
                target_group_arn: tg.to_string(),
                target_id: id.to_string(),
                port,
                health,
                reason: reason.map(str::to_string),
                description: reason
                    .map(|_| "Health checks failed with these codes: [500]".to_string()),
            }],
        });
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn health_of(server: &TestServer, tg: &str) -> Value {
    ok(
        server,
        &["describe-target-health", "--target-group-arn", tg],
    )
    .await["TargetHealthDescriptions"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_lifecycle_through_the_cli() {
    let server = TestServer::start().await;
    let node = TestNode::connect(&server, "node-1", "127.0.0.51,127.0.0.52").await;

    let lb = ok(
        &server,
        &[
            "create-load-balancer",
            "--name",
            "web",
            "--subnets",
            "subnet-1",
            "subnet-2",
            "--security-groups",
            "sg-1",
            "--tags",
            "Key=team,Value=blue",
        ],
    )
    .await["LoadBalancers"][0]
        .clone();
    let lb_arn = s(&lb["LoadBalancerArn"]);
    assert!(
        lb_arn.starts_with(
            "arn:aws:elasticloadbalancing:us-east-1:111111111111:loadbalancer/app/web/"
        ),
        "{lb_arn}"
    );
    assert_eq!(lb["Type"], "application");
    assert_eq!(lb["Scheme"], "internet-facing");
    assert_eq!(lb["IpAddressType"], "ipv4");
    assert_eq!(lb["DNSName"], "127.0.0.51");
    assert_eq!(lb["SecurityGroups"][0], "sg-1");
    // The same name and settings is the same load balancer.
    let again = ok(&server, &["create-load-balancer", "--name", "web"]).await;
    assert_eq!(s(&again["LoadBalancers"][0]["LoadBalancerArn"]), lb_arn);

    // Active once the node applied a configuration holding it.
    ok(
        &server,
        &[
            "wait",
            "load-balancer-available",
            "--load-balancer-arns",
            &lb_arn,
        ],
    )
    .await;
    let described = ok(&server, &["describe-load-balancers", "--names", "web"]).await;
    assert_eq!(described["LoadBalancers"][0]["State"]["Code"], "active");

    // A second load balancer gets the node's other address.
    let nlb = ok(
        &server,
        &["create-load-balancer", "--name", "tcp", "--type", "network"],
    )
    .await["LoadBalancers"][0]
        .clone();
    assert_eq!(nlb["DNSName"], "127.0.0.52");
    assert!(s(&nlb["LoadBalancerArn"]).contains(":loadbalancer/net/tcp/"));

    // Attributes.
    let attrs = ok(
        &server,
        &[
            "describe-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
        ],
    )
    .await;
    let value = |attrs: &Value, key: &str| {
        attrs["Attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["Key"] == key)
            .map(|a| s(&a["Value"]))
    };
    assert_eq!(
        value(&attrs, "idle_timeout.timeout_seconds").as_deref(),
        Some("60")
    );
    assert_eq!(
        value(&attrs, "deletion_protection.enabled").as_deref(),
        Some("false")
    );
    let attrs = ok(
        &server,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
            "Key=idle_timeout.timeout_seconds,Value=120",
            "Key=routing.http2.enabled,Value=false",
        ],
    )
    .await;
    assert_eq!(
        value(&attrs, "idle_timeout.timeout_seconds").as_deref(),
        Some("120")
    );

    // A target group with ELBv2's health-check defaults.
    let tg = ok(
        &server,
        &[
            "create-target-group",
            "--name",
            "web-tg",
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
        ],
    )
    .await["TargetGroups"][0]
        .clone();
    let tg_arn = s(&tg["TargetGroupArn"]);
    assert!(tg_arn.contains(":targetgroup/web-tg/"), "{tg_arn}");
    assert_eq!(tg["HealthCheckProtocol"], "HTTP");
    assert_eq!(tg["HealthCheckPort"], "traffic-port");
    assert_eq!(tg["HealthCheckPath"], "/");
    assert_eq!(tg["HealthCheckIntervalSeconds"], 30);
    assert_eq!(tg["HealthCheckTimeoutSeconds"], 5);
    assert_eq!(tg["HealthyThresholdCount"], 5);
    assert_eq!(tg["UnhealthyThresholdCount"], 2);
    assert_eq!(tg["Matcher"]["HttpCode"], "200");
    let tcp_tg = ok(
        &server,
        &[
            "create-target-group",
            "--name",
            "tcp-tg",
            "--protocol",
            "TCP",
            "--port",
            "9000",
            "--target-type",
            "ip",
        ],
    )
    .await["TargetGroups"][0]
        .clone();
    assert_eq!(tcp_tg["HealthCheckProtocol"], "TCP");
    assert_eq!(tcp_tg["HealthCheckTimeoutSeconds"], 10);
    let tg_attrs = ok(
        &server,
        &[
            "describe-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
        ],
    )
    .await;
    assert_eq!(
        value(&tg_attrs, "deregistration_delay.timeout_seconds").as_deref(),
        Some("300")
    );
    assert_eq!(
        value(&tg_attrs, "stickiness.type").as_deref(),
        Some("lb_cookie")
    );
    ok(
        &server,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=2",
            "Key=stickiness.enabled,Value=true",
            "Key=stickiness.lb_cookie.duration_seconds,Value=60",
        ],
    )
    .await;
    let modified = ok(
        &server,
        &[
            "modify-target-group",
            "--target-group-arn",
            &tg_arn,
            "--health-check-path",
            "/health",
            "--matcher",
            "HttpCode=200-299",
        ],
    )
    .await;
    assert_eq!(modified["TargetGroups"][0]["HealthCheckPath"], "/health");

    // Targets of an unused group are `unused`.
    ok(
        &server,
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.1,Port=8081",
            "Id=127.0.0.1,Port=8082",
        ],
    )
    .await;
    let h = health_of(&server, &tg_arn).await;
    assert_eq!(h.as_array().unwrap().len(), 2);
    assert_eq!(h[0]["TargetHealth"]["State"], "unused");
    assert_eq!(h[0]["TargetHealth"]["Reason"], "Target.NotInUse");

    // A listener forwarding to it.
    let listener = ok(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    )
    .await["Listeners"][0]
        .clone();
    let listener_arn = s(&listener["ListenerArn"]);
    assert!(
        listener_arn.contains(":listener/app/web/"),
        "{listener_arn}"
    );
    let h = health_of(&server, &tg_arn).await;
    assert_eq!(h[0]["TargetHealth"]["State"], "initial");
    assert_eq!(h[0]["TargetHealth"]["Reason"], "Elb.RegistrationInProgress");
    let tg_now = ok(
        &server,
        &["describe-target-groups", "--target-group-arns", &tg_arn],
    )
    .await;
    assert_eq!(
        tg_now["TargetGroups"][0]["LoadBalancerArns"][0],
        lb_arn.as_str()
    );

    // The node is sent a configuration with the listener on its address.
    let (_, config) = eventually(30, "a config with the listener", || {
        let latest = node.latest();
        async move { latest.filter(|(_, c)| c.listeners.iter().any(|l| l.port == 80)) }
    })
    .await;
    let l = config.listeners.iter().find(|l| l.port == 80).unwrap();
    assert_eq!(l.address.to_string(), "127.0.0.51");
    assert_eq!(l.idle_timeout_secs, 120);
    let group = &config.target_groups[&tg_arn];
    assert_eq!(group.targets.len(), 2);
    assert_eq!(group.deregistration_delay_secs, 2);
    assert_eq!(group.stickiness_secs, Some(60));
    assert_eq!(group.health_check.path, "/health");
    assert_eq!(group.health_check.matcher, "200-299");

    // Health as the node reports it.
    node.report(&tg_arn, "127.0.0.1", 8081, ObservedHealth::Healthy, None);
    node.report(
        &tg_arn,
        "127.0.0.1",
        8082,
        ObservedHealth::Unhealthy,
        Some("Target.ResponseCodeMismatch"),
    );
    eventually(30, "the node's health reports", || async {
        let h = health_of(&server, &tg_arn).await;
        (h[0]["TargetHealth"]["State"] == "healthy" && h[1]["TargetHealth"]["State"] == "unhealthy")
            .then_some(())
    })
    .await;
    let h = health_of(&server, &tg_arn).await;
    assert_eq!(
        h[1]["TargetHealth"]["Reason"],
        "Target.ResponseCodeMismatch"
    );
    ok(
        &server,
        &[
            "wait",
            "target-in-service",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.1,Port=8081",
        ],
    )
    .await;

    // Rules: path and host conditions, fixed-response and redirect actions.
    let rule = ok(
        &server,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "10",
            "--conditions",
            "Field=path-pattern,Values=/api/*",
            "--actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    )
    .await["Rules"][0]
        .clone();
    let rule_arn = s(&rule["RuleArn"]);
    assert!(rule_arn.contains(":listener-rule/app/web/"), "{rule_arn}");
    assert_eq!(rule["Priority"], "10");
    let fixed = ok(
        &server,
        &[
            "create-rule", "--listener-arn", &listener_arn, "--priority", "20",
            "--conditions", r#"[{"Field":"host-header","HostHeaderConfig":{"Values":["static.example.com"]}}]"#,
            "--actions", r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"404","ContentType":"text/plain","MessageBody":"nothing here"}}]"#,
        ],
    )
    .await["Rules"][0]
        .clone();
    let redirect = ok(
        &server,
        &[
            "create-rule", "--listener-arn", &listener_arn, "--priority", "30",
            "--conditions", r#"[{"Field":"http-request-method","HttpRequestMethodConfig":{"Values":["GET"]}},{"Field":"source-ip","SourceIpConfig":{"Values":["10.0.0.0/8"]}}]"#,
            "--actions", r#"[{"Type":"redirect","RedirectConfig":{"Protocol":"HTTPS","Port":"443","StatusCode":"HTTP_301"}}]"#,
        ],
    )
    .await["Rules"][0]
        .clone();
    assert_eq!(redirect["Actions"][0]["RedirectConfig"]["Host"], "#{host}");
    fails(
        &server,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "10",
            "--conditions",
            "Field=path-pattern,Values=/other",
            "--actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
        "PriorityInUse",
    )
    .await;
    ok(
        &server,
        &[
            "set-rule-priorities",
            "--rule-priorities",
            &format!("RuleArn={rule_arn},Priority=20"),
            &format!("RuleArn={},Priority=10", s(&fixed["RuleArn"])),
        ],
    )
    .await;
    let rules = ok(
        &server,
        &["describe-rules", "--listener-arn", &listener_arn],
    )
    .await["Rules"]
        .clone();
    let rules = rules.as_array().unwrap();
    assert_eq!(rules.len(), 4);
    assert_eq!(s(&rules[0]["RuleArn"]), s(&fixed["RuleArn"]));
    assert_eq!(s(&rules[1]["RuleArn"]), rule_arn);
    assert_eq!(rules[3]["Priority"], "default");
    assert_eq!(rules[3]["IsDefault"], true);
    ok(
        &server,
        &[
            "modify-rule",
            "--rule-arn",
            &rule_arn,
            "--conditions",
            "Field=path-pattern,Values=/v2/*",
        ],
    )
    .await;
    let (_, config) = eventually(30, "a config with the three rules", || {
        let latest = node.latest();
        async move {
            latest.filter(|(_, c)| {
                c.listeners.iter().any(|l| {
                    l.rules.len() == 3
                        && l.rules[1].conditions
                            == vec![flotilla_model::lb::Condition::PathPattern {
                                values: vec!["/v2/*".into()],
                            }]
                })
            })
        }
    })
    .await;
    let rules = &config.listeners[0].rules;
    assert_eq!(
        rules.iter().map(|r| r.priority).collect::<Vec<_>>(),
        vec![10, 20, 30]
    );
    assert!(matches!(
        rules[0].actions[0],
        flotilla_model::lb::Action::FixedResponse {
            status_code: 404,
            ..
        }
    ));
    assert!(matches!(
        rules[2].actions[0],
        flotilla_model::lb::Action::Redirect {
            status_code: 301,
            ..
        }
    ));

    // Weighted forward between two groups, with stickiness.
    let tg2 = ok(
        &server,
        &[
            "create-target-group",
            "--name",
            "web-tg-2",
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--target-type",
            "ip",
        ],
    )
    .await["TargetGroups"][0]["TargetGroupArn"]
        .clone();
    let tg2 = s(&tg2);
    ok(
        &server,
        &[
            "modify-listener", "--listener-arn", &listener_arn, "--default-actions",
            &format!(r#"[{{"Type":"forward","ForwardConfig":{{"TargetGroups":[{{"TargetGroupArn":"{tg_arn}","Weight":80}},{{"TargetGroupArn":"{tg2}","Weight":20}}],"TargetGroupStickinessConfig":{{"Enabled":true,"DurationSeconds":300}}}}}}]"#),
        ],
    )
    .await;
    let listeners = ok(
        &server,
        &["describe-listeners", "--load-balancer-arn", &lb_arn],
    )
    .await;
    let fc = &listeners["Listeners"][0]["DefaultActions"][0]["ForwardConfig"];
    assert_eq!(fc["TargetGroups"][1]["Weight"], 20);
    assert_eq!(fc["TargetGroupStickinessConfig"]["DurationSeconds"], 300);

    // Tags on every kind of resource.
    ok(
        &server,
        &[
            "add-tags",
            "--resource-arns",
            &lb_arn,
            &tg_arn,
            &listener_arn,
            &rule_arn,
            "--tags",
            "Key=env,Value=test",
        ],
    )
    .await;
    let tags = ok(
        &server,
        &["describe-tags", "--resource-arns", &lb_arn, &rule_arn],
    )
    .await;
    assert_eq!(
        tags["TagDescriptions"][0]["Tags"].as_array().unwrap().len(),
        2
    );
    assert_eq!(tags["TagDescriptions"][1]["Tags"][0]["Key"], "env");
    ok(
        &server,
        &[
            "remove-tags",
            "--resource-arns",
            &lb_arn,
            "--tag-keys",
            "team",
        ],
    )
    .await;
    let tags = ok(&server, &["describe-tags", "--resource-arns", &lb_arn]).await;
    assert_eq!(
        tags["TagDescriptions"][0]["Tags"].as_array().unwrap().len(),
        1
    );

    // Deregistration: draining for the delay, then gone.
    ok(
        &server,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.1,Port=8081",
        ],
    )
    .await;
    let h = ok(
        &server,
        &[
            "describe-target-health",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.1,Port=8081",
        ],
    )
    .await;
    assert_eq!(
        h["TargetHealthDescriptions"][0]["TargetHealth"]["State"],
        "draining"
    );
    assert_eq!(
        h["TargetHealthDescriptions"][0]["TargetHealth"]["Reason"],
        "Target.DeregistrationInProgress"
    );
    let (_, config) = node.latest().unwrap();
    assert!(config.target_groups[&tg_arn]
        .targets
        .iter()
        .any(|t| t.port == 8081
            && matches!(t.state, flotilla_model::lb::TargetState::Draining { .. })));
    ok(
        &server,
        &[
            "wait",
            "target-deregistered",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.1,Port=8081",
        ],
    )
    .await;
    let h = ok(
        &server,
        &[
            "describe-target-health",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.1,Port=8081",
        ],
    )
    .await;
    assert_eq!(
        h["TargetHealthDescriptions"][0]["TargetHealth"]["Reason"],
        "Target.NotRegistered"
    );

    // Another account sees none of it.
    let (success, out, _) = elb(&server, &BOB, &["describe-load-balancers"]).await;
    assert!(success);
    assert_eq!(out["LoadBalancers"].as_array().unwrap().len(), 0);

    // Deleting: a group in use cannot go; the load balancer takes its
    // listeners and rules with it.
    fails(
        &server,
        &["delete-target-group", "--target-group-arn", &tg_arn],
        "ResourceInUse",
    )
    .await;
    ok(&server, &["delete-rule", "--rule-arn", &rule_arn]).await;
    ok(
        &server,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
    )
    .await;
    fails(
        &server,
        &["describe-listeners", "--listener-arns", &listener_arn],
        "ListenerNotFound",
    )
    .await;
    ok(
        &server,
        &["delete-target-group", "--target-group-arn", &tg_arn],
    )
    .await;
    let left = ok(&server, &["describe-target-groups"]).await;
    assert_eq!(left["TargetGroups"].as_array().unwrap().len(), 2);
    eventually(
        30,
        "the node's config without the deleted load balancer",
        || {
            let latest = node.latest();
            async move { latest.filter(|(_, c)| c.listeners.is_empty()).map(|_| ()) }
        },
    )
    .await;
    // Versions only rise.
    let versions: Vec<u64> = node
        .configs
        .lock()
        .unwrap()
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_elbv2_errors_and_changes_nothing() {
    let server = TestServer::start().await;
    let lb_arn = s(
        &ok(&server, &["create-load-balancer", "--name", "errs"]).await["LoadBalancers"][0]
            ["LoadBalancerArn"],
    );
    let tg_arn = s(&ok(
        &server,
        &[
            "create-target-group",
            "--name",
            "errs-tg",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--target-type",
            "ip",
        ],
    )
    .await["TargetGroups"][0]["TargetGroupArn"]);

    fails(
        &server,
        &[
            "create-load-balancer",
            "--name",
            "errs",
            "--scheme",
            "internal",
        ],
        "DuplicateLoadBalancerName",
    )
    .await;
    fails(
        &server,
        &["create-load-balancer", "--name", "bad-"],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        &["create-load-balancer", "--name", &"x".repeat(33)],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        &["create-load-balancer", "--name", "a_b"],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        &[
            "create-target-group",
            "--name",
            "errs-tg",
            "--protocol",
            "HTTP",
            "--port",
            "81",
            "--target-type",
            "ip",
        ],
        "DuplicateTargetGroupName",
    )
    .await;
    for bad in [
        vec![
            "--health-check-interval-seconds",
            "10",
            "--health-check-timeout-seconds",
            "10",
        ],
        vec!["--matcher", "HttpCode=600"],
        vec!["--health-check-path", "no-slash"],
    ] {
        let mut args = vec![
            "create-target-group",
            "--name",
            "hc",
            "--protocol",
            "HTTP",
            "--port",
            "80",
        ];
        args.extend(bad);
        fails(&server, &args, "ValidationError").await;
    }
    fails(
        &server,
        &["create-target-group", "--name", "hc", "--port", "80"],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        &[
            "create-target-group",
            "--name",
            "hc",
            "--protocol",
            "HTTPS",
            "--port",
            "443",
        ],
        "UnsupportedProtocol",
    )
    .await;
    let missing_tg = tg_arn.replace("errs-tg", "nope");
    let missing_lb = lb_arn.replace("/errs/", "/nope/");
    fails(
        &server,
        &["describe-target-groups", "--target-group-arns", &missing_tg],
        "TargetGroupNotFound",
    )
    .await;
    fails(
        &server,
        &["describe-target-groups", "--names", "nope"],
        "TargetGroupNotFound",
    )
    .await;
    fails(
        &server,
        &[
            "describe-load-balancers",
            "--load-balancer-arns",
            &missing_lb,
        ],
        "LoadBalancerNotFound",
    )
    .await;
    fails(
        &server,
        &["describe-load-balancers", "--names", "nope"],
        "LoadBalancerNotFound",
    )
    .await;
    fails(
        &server,
        &["delete-load-balancer", "--load-balancer-arn", &missing_lb],
        "LoadBalancerNotFound",
    )
    .await;
    fails(
        &server,
        &["describe-target-health", "--target-group-arn", &missing_tg],
        "TargetGroupNotFound",
    )
    .await;
    fails(
        &server,
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=not-an-ip",
        ],
        "InvalidTarget",
    )
    .await;
    fails(
        &server,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=10.0.0.1",
        ],
        "InvalidTarget",
    )
    .await;
    fails(
        &server,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
            "Key=idle_timeout.timeout_seconds,Value=0",
        ],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
            "Key=no.such.key,Value=1",
        ],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=3601",
        ],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=slow_start.duration_seconds,Value=10",
        ],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &missing_lb,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
        "LoadBalancerNotFound",
    )
    .await;
    fails(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={missing_tg}"),
        ],
        "TargetGroupNotFound",
    )
    .await;
    fails(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "TCP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
        "UnsupportedProtocol",
    )
    .await;
    let listener_arn = s(&ok(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    )
    .await["Listeners"][0]["ListenerArn"]);
    fails(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"200"}}]"#,
        ],
        "DuplicateListener",
    )
    .await;
    fails(
        &server,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "1",
            "--conditions",
            "Field=nope,Values=x",
            "--actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "1",
            "--conditions",
            "Field=path-pattern,Values=/a,/b,/c,/d,/e,/f",
            "--actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
        "ValidationError",
    )
    .await;
    let default_rule = s(&ok(
        &server,
        &["describe-rules", "--listener-arn", &listener_arn],
    )
    .await["Rules"][0]["RuleArn"]);
    fails(
        &server,
        &["delete-rule", "--rule-arn", &default_rule],
        "OperationNotPermitted",
    )
    .await;
    fails(
        &server,
        &["delete-rule", "--rule-arn", &format!("{default_rule}0")],
        "RuleNotFound",
    )
    .await;
    fails(
        &server,
        &[
            "delete-listener",
            "--listener-arn",
            &format!("{listener_arn}0"),
        ],
        "ListenerNotFound",
    )
    .await;
    fails(
        &server,
        &["delete-target-group", "--target-group-arn", &tg_arn],
        "ResourceInUse",
    )
    .await;
    fails(
        &server,
        &[
            "add-tags",
            "--resource-arns",
            &lb_arn,
            "--tags",
            "Key=a,Value=1",
            "Key=a,Value=2",
        ],
        "DuplicateTagKeys",
    )
    .await;
    let many: Vec<String> = (0..51).map(|i| format!("Key=k{i},Value=v")).collect();
    let mut args = vec!["add-tags", "--resource-arns", &lb_arn, "--tags"];
    args.extend(many.iter().map(String::as_str));
    fails(&server, &args, "TooManyTags").await;

    // Deletion protection.
    ok(
        &server,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
            "Key=deletion_protection.enabled,Value=true",
        ],
    )
    .await;
    fails(
        &server,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
        "OperationNotPermitted",
    )
    .await;

    // Nothing above changed anything.
    let lbs = ok(&server, &["describe-load-balancers"]).await;
    assert_eq!(lbs["LoadBalancers"].as_array().unwrap().len(), 1);
    let tgs = ok(&server, &["describe-target-groups"]).await;
    assert_eq!(tgs["TargetGroups"].as_array().unwrap().len(), 1);
    let tags = ok(&server, &["describe-tags", "--resource-arns", &lb_arn]).await;
    assert_eq!(
        tags["TagDescriptions"][0]["Tags"].as_array().unwrap().len(),
        0
    );
    let h = health_of(&server, &tg_arn).await;
    assert_eq!(h.as_array().unwrap().len(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_survive_a_restart() {
    let server = TestServer::start().await;
    let node = TestNode::connect(&server, "node-1", "127.0.0.61").await;
    let lb_arn = s(
        &ok(&server, &["create-load-balancer", "--name", "durable"]).await["LoadBalancers"][0]
            ["LoadBalancerArn"],
    );
    let tg_arn = s(&ok(
        &server,
        &[
            "create-target-group",
            "--name",
            "durable-tg",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--target-type",
            "ip",
        ],
    )
    .await["TargetGroups"][0]["TargetGroupArn"]);
    ok(
        &server,
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.1,Port=8000",
        ],
    )
    .await;
    let listener_arn = s(&ok(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    )
    .await["Listeners"][0]["ListenerArn"]);
    ok(
        &server,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "5",
            "--conditions",
            "Field=path-pattern,Values=/x",
            "--actions",
            r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"503"}}]"#,
        ],
    )
    .await;
    ok(
        &server,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=7",
        ],
    )
    .await;
    ok(
        &server,
        &[
            "wait",
            "load-balancer-available",
            "--load-balancer-arns",
            &lb_arn,
        ],
    )
    .await;
    let before = (
        ok(&server, &["describe-load-balancers"]).await,
        ok(&server, &["describe-target-groups"]).await,
        ok(
            &server,
            &["describe-rules", "--listener-arn", &listener_arn],
        )
        .await,
        ok(
            &server,
            &[
                "describe-target-group-attributes",
                "--target-group-arn",
                &tg_arn,
            ],
        )
        .await,
    );
    let version_before = node.latest().unwrap().0;
    drop(node);

    let dir = server.stop().await.expect("the data directory");
    let server = TestServer::start_in(dir.path().to_path_buf()).await;
    let after = (
        ok(&server, &["describe-load-balancers"]).await,
        ok(&server, &["describe-target-groups"]).await,
        ok(
            &server,
            &["describe-rules", "--listener-arn", &listener_arn],
        )
        .await,
        ok(
            &server,
            &[
                "describe-target-group-attributes",
                "--target-group-arn",
                &tg_arn,
            ],
        )
        .await,
    );
    assert_eq!(before, after);
    let h = health_of(&server, &tg_arn).await;
    assert_eq!(h[0]["Target"]["Id"], "127.0.0.1");
    // The node comes back to the same address and a higher version.
    let node = TestNode::connect(&server, "node-1", "127.0.0.61").await;
    let (version, config) = eventually(30, "the config after the restart", || {
        let latest = node.latest();
        async move { latest }
    })
    .await;
    assert!(
        version >= version_before,
        "{version} after {version_before}"
    );
    assert_eq!(config.listeners[0].address.to_string(), "127.0.0.61");
    assert_eq!(config.listeners[0].rules.len(), 1);
    drop(node);
    drop(dir);
}

/// An ECS service behind a target group, on simulated hosts that report
/// dynamic host ports: its RUNNING tasks are registered (instance id and
/// host port), a task the load balancer finds unhealthy is replaced, and
/// scaling in deregisters and drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_service_tasks_are_registered_replaced_and_drained() {
    use aws_sdk_ecs::types::{ContainerDefinition, LoadBalancer, PortMapping};
    use flotilla_sim::{Behaviour, HostSpec, SimAgent};

    let server = TestServer::start().await;
    let node = TestNode::connect(&server, "node-1", "127.0.0.71").await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let client = server.raw(&ALICE);
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let spec = HostSpec::new("default", 2048, 4096);
        hosts.push(
            SimAgent::start(&client, spec, Behaviour::default())
                .await
                .unwrap(),
        );
    }
    let instance_ids: Vec<String> = hosts
        .iter()
        .map(|h| h.instance_arn.rsplit('/').next().unwrap().to_string())
        .collect();
    let td = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("flotilla-test:latest")
                .memory(128)
                .port_mappings(
                    PortMapping::builder()
                        .container_port(80)
                        .host_port(0)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap()
        .task_definition_arn
        .unwrap();
    let lb_arn = s(
        &ok(&server, &["create-load-balancer", "--name", "svc"]).await["LoadBalancers"][0]
            ["LoadBalancerArn"],
    );
    let tg_arn = s(&ok(
        &server,
        &[
            "create-target-group",
            "--name",
            "svc-tg",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--target-type",
            "instance",
        ],
    )
    .await["TargetGroups"][0]["TargetGroupArn"]);
    ok(
        &server,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=1",
        ],
    )
    .await;

    let create = |container: &str, port: i32, name: &str| {
        ecs.create_service()
            .service_name(name)
            .task_definition(&td)
            .desired_count(2)
            .health_check_grace_period_seconds(0)
            .load_balancers(
                LoadBalancer::builder()
                    .target_group_arn(&tg_arn)
                    .container_name(container)
                    .container_port(port)
                    .build(),
            )
            .send()
    };
    let message = |e: aws_sdk_ecs::error::SdkError<
        aws_sdk_ecs::operation::create_service::CreateServiceError,
    >| {
        let e = e.into_service_error();
        assert!(e.is_invalid_parameter_exception(), "{e:?}");
        e.meta().message().unwrap_or_default().to_string()
    };
    // No load balancer forwards to the group yet.
    let m = message(create("app", 80, "web").await.unwrap_err());
    assert!(
        m.contains("does not have an associated load balancer"),
        "{m}"
    );
    ok(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    )
    .await;
    let m = message(create("nope", 80, "web").await.unwrap_err());
    assert!(
        m.contains("The container nope does not exist in the task definition"),
        "{m}"
    );
    let m = message(create("app", 81, "web").await.unwrap_err());
    assert!(m.contains("did not have a container port 81"), "{m}");

    create("app", 80, "web").await.expect("the service");
    let targets = eventually(60, "two targets registered", || async {
        let h = health_of(&server, &tg_arn).await;
        let targets: Vec<(String, u16)> = h
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["TargetHealth"]["State"] != "draining")
            .map(|d| {
                (
                    s(&d["Target"]["Id"]),
                    d["Target"]["Port"].as_u64().unwrap() as u16,
                )
            })
            .collect();
        (targets.len() == 2).then_some(targets)
    })
    .await;
    for (id, port) in &targets {
        assert!(
            instance_ids.contains(id),
            "{id} is not a container instance id"
        );
        assert!(*port >= 32768, "{port} is not the dynamic host port");
    }
    let events = |svc: &aws_sdk_ecs::types::Service| -> Vec<String> {
        svc.events()
            .iter()
            .filter_map(|e| e.message().map(str::to_string))
            .collect()
    };
    let svc = ecs
        .describe_services()
        .services("web")
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone();
    assert!(
        events(&svc)
            .iter()
            .any(|e| e.starts_with("(service web) registered")
                && e.contains(&format!("(target-group {tg_arn})"))),
        "{:?}",
        events(&svc)
    );
    // The node is sent the targets.
    eventually(30, "the targets in the node's config", || {
        let latest = node.latest();
        let tg_arn = tg_arn.clone();
        async move {
            latest
                .filter(|(_, c)| {
                    c.target_groups
                        .get(&tg_arn)
                        .is_some_and(|g| g.targets.len() == 2)
                })
                .map(|_| ())
        }
    })
    .await;

    // Behind a load balancer a task is healthy only once its targets are:
    // nothing has been reported yet, so the rollout is not complete.
    let rollout = |svc: &aws_sdk_ecs::types::Service| {
        svc.deployments()[0]
            .rollout_state()
            .map(|r| r.as_str().to_string())
    };
    let svc = ecs
        .describe_services()
        .services("web")
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone();
    assert_eq!(rollout(&svc).as_deref(), Some("IN_PROGRESS"));

    // One target fails its health checks: its task is replaced.
    let (bad_id, bad_port) = targets[0].clone();
    node.report(
        &tg_arn,
        &bad_id,
        bad_port,
        ObservedHealth::Unhealthy,
        Some("Target.ResponseCodeMismatch"),
    );
    node.report(
        &tg_arn,
        &targets[1].0,
        targets[1].1,
        ObservedHealth::Healthy,
        None,
    );
    let stopped = eventually(60, "the unhealthy task stopped", || async {
        let list = ecs
            .list_tasks()
            .service_name("web")
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
            .send()
            .await
            .unwrap();
        if list.task_arns().is_empty() {
            return None;
        }
        let d = ecs
            .describe_tasks()
            .set_tasks(Some(list.task_arns().to_vec()))
            .send()
            .await
            .unwrap();
        d.tasks().first().cloned()
    })
    .await;
    assert_eq!(
        stopped.stopped_reason(),
        Some(format!("Task failed ELB health checks in (target-group {tg_arn})").as_str())
    );
    eventually(
        60,
        "the replacement registered and the old target drained",
        || async {
            let h = health_of(&server, &tg_arn).await;
            let live: Vec<(String, u16)> = h
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["TargetHealth"]["State"] != "draining")
                .map(|d| {
                    (
                        s(&d["Target"]["Id"]),
                        d["Target"]["Port"].as_u64().unwrap() as u16,
                    )
                })
                .collect();
            (live.len() == 2 && !live.contains(&(bad_id.clone(), bad_port))).then_some(())
        },
    )
    .await;

    // Once every target is healthy, the deployment completes.
    let h = health_of(&server, &tg_arn).await;
    for d in h.as_array().unwrap() {
        if d["TargetHealth"]["State"] != "draining" {
            let port = d["Target"]["Port"].as_u64().unwrap() as u16;
            node.report(
                &tg_arn,
                &s(&d["Target"]["Id"]),
                port,
                ObservedHealth::Healthy,
                None,
            );
        }
    }
    eventually(60, "the deployment COMPLETED", || async {
        let svc = ecs
            .describe_services()
            .services("web")
            .send()
            .await
            .unwrap()
            .services()[0]
            .clone();
        (rollout(&svc).as_deref() == Some("COMPLETED")).then_some(())
    })
    .await;

    // The group is in use by the service (and its listener).
    fails(
        &server,
        &["delete-target-group", "--target-group-arn", &tg_arn],
        "ResourceInUse",
    )
    .await;

    // Scaling in deregisters; the targets drain while their tasks keep
    // running (ECS's order: deregister, drain, then stop), then are gone.
    ok(
        &server,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=8",
        ],
    )
    .await;
    ecs.update_service()
        .service("web")
        .desired_count(0)
        .send()
        .await
        .unwrap();
    // The tasks of the service that are asked to stop (not the one replaced
    // for failing its health checks), and how many targets are draining.
    let stopping_and_draining = || async {
        let list = ecs
            .list_tasks()
            .service_name("web")
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
            .send()
            .await
            .unwrap();
        let arns = list.task_arns().to_vec();
        let tasks: Vec<aws_sdk_ecs::types::Task> = if arns.is_empty() {
            Vec::new()
        } else {
            ecs.describe_tasks()
                .set_tasks(Some(arns))
                .send()
                .await
                .unwrap()
                .tasks()
                .to_vec()
        };
        let tasks: Vec<_> = tasks
            .into_iter()
            .filter(|t| {
                !t.stopped_reason()
                    .unwrap_or_default()
                    .starts_with("Task failed ELB")
            })
            .collect();
        // Read after the tasks: if they still drain, the tasks were read
        // while they drained.
        let h = health_of(&server, &tg_arn).await;
        let draining = h
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["TargetHealth"]["State"] == "draining")
            .count();
        (tasks, draining)
    };
    eventually(60, "both targets draining", || async {
        (stopping_and_draining().await.1 == 2).then_some(())
    })
    .await;
    // Long enough for an agent told to stop to have stopped; well within
    // the 8 s of draining.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (tasks, draining) = stopping_and_draining().await;
    if draining == 2 {
        assert_eq!(tasks.len(), 2);
        for t in &tasks {
            assert_eq!(t.desired_status(), Some("STOPPED"));
            assert_eq!(
                t.last_status(),
                Some("RUNNING"),
                "a task stopped before its target drained"
            );
        }
    }
    eventually(60, "every target drained away", || async {
        health_of(&server, &tg_arn)
            .await
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let svc = ecs
        .describe_services()
        .services("web")
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone();
    assert!(
        events(&svc)
            .iter()
            .any(|e| e.starts_with("(service web) deregistered")),
        "{:?}",
        events(&svc)
    );
    drop(hosts);
    server.stop().await;
}

/// A network load balancer: TCP listeners forwarding to TCP groups, sent to
/// its node as such; what ALBs alone have is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_load_balancers_forward_tcp() {
    let server = TestServer::start().await;
    let node = TestNode::connect(&server, "node-1", "127.0.0.81").await;
    let lb_arn = s(&ok(
        &server,
        &["create-load-balancer", "--name", "nlb", "--type", "network"],
    )
    .await["LoadBalancers"][0]["LoadBalancerArn"]);
    let tg_arn = s(&ok(
        &server,
        &[
            "create-target-group",
            "--name",
            "nlb-tg",
            "--protocol",
            "TCP",
            "--port",
            "5432",
            "--target-type",
            "ip",
        ],
    )
    .await["TargetGroups"][0]["TargetGroupArn"]);
    let http_tg = s(&ok(
        &server,
        &[
            "create-target-group",
            "--name",
            "nlb-http",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--target-type",
            "ip",
        ],
    )
    .await["TargetGroups"][0]["TargetGroupArn"]);
    fails(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={http_tg}"),
        ],
        "UnsupportedProtocol",
    )
    .await;
    fails(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "TCP",
            "--port",
            "5432",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={http_tg}"),
        ],
        "IncompatibleProtocols",
    )
    .await;
    fails(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "TCP",
            "--port",
            "5432",
            "--default-actions",
            r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"200"}}]"#,
        ],
        "InvalidLoadBalancerAction",
    )
    .await;
    let listener_arn = s(&ok(
        &server,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "TCP",
            "--port",
            "5432",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    )
    .await["Listeners"][0]["ListenerArn"]);
    assert!(
        listener_arn.contains(":listener/net/nlb/"),
        "{listener_arn}"
    );
    fails(
        &server,
        &[
            "create-rule",
            "--listener-arn",
            &listener_arn,
            "--priority",
            "1",
            "--conditions",
            "Field=path-pattern,Values=/a",
            "--actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
        "ValidationError",
    )
    .await;
    ok(
        &server,
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.1",
        ],
    )
    .await;
    ok(
        &server,
        &[
            "wait",
            "load-balancer-available",
            "--load-balancer-arns",
            &lb_arn,
        ],
    )
    .await;
    let (_, config) = eventually(30, "the NLB's config", || {
        let latest = node.latest();
        async move { latest.filter(|(_, c)| !c.listeners.is_empty()) }
    })
    .await;
    let l = &config.listeners[0];
    assert_eq!(l.kind, flotilla_model::lb::LoadBalancerKind::Network);
    assert_eq!(l.protocol, flotilla_model::lb::Protocol::Tcp);
    assert_eq!(
        (l.address.to_string().as_str(), l.port),
        ("127.0.0.81", 5432)
    );
    let group = &config.target_groups[&tg_arn];
    assert_eq!(
        group.health_check.protocol,
        flotilla_model::lb::Protocol::Tcp
    );
    assert_eq!(group.targets[0].port, 5432);
    let attrs = ok(
        &server,
        &[
            "describe-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
        ],
    )
    .await;
    assert!(attrs["Attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["Key"] == "stickiness.type" && a["Value"] == "source_ip"));
    server.stop().await;
}
