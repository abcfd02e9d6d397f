//! The EXTERNAL deployment controller driven by the real AWS CLI (`aws ecs
//! create-task-set` …) against an in-process server with simulated hosts
//! (real gateway protocol, no containers): two task sets scaled, their
//! tasks placed and counted, the primary switched, one deleted (its tasks
//! stop), task-set tags, bad input; a task set behind a target group
//! registers its tasks there, and task sets survive a restart.

mod common;

use std::time::Duration;

use common::{eventually, TestServer, ALICE, REGION};
use flotilla_sim::{Behaviour, HostSpec, SimAgent};
use serde_json::Value;

fn fast() -> flotilla_server::Config {
    let mut c = flotilla_server::Config::default();
    c.controllers.lost_host_grace = Duration::from_secs(2);
    c
}

/// Runs `aws ecs ARGS…`, which must succeed.
async fn ok(server: &TestServer, args: &[&str]) -> Value {
    let (success, out, err) = server.cli(&ALICE, args).await;
    assert!(success, "aws ecs {args:?} failed: {err}");
    out
}

/// Runs `aws ecs ARGS…`, which must fail with `code`; returns stderr.
async fn fails(server: &TestServer, args: &[&str], code: &str) -> String {
    let (success, out, err) = server.cli(&ALICE, args).await;
    assert!(
        !success,
        "aws ecs {args:?} should have failed with {code}: {out}"
    );
    assert!(
        err.contains(&format!("({code})")),
        "aws ecs {args:?}: expected {code}, got: {err}"
    );
    err
}

/// Runs `aws elbv2 ARGS…`, which must succeed.
async fn elb(server: &TestServer, args: &[&str]) -> Value {
    let (ok, out, err) = server.aws(&ALICE, "elbv2", args).await;
    assert!(ok, "aws elbv2 {args:?} failed: {err}");
    out
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

async fn hosts(server: &TestServer, n: usize) -> Vec<SimAgent> {
    let client = server.raw(&ALICE);
    let mut out = Vec::new();
    for _ in 0..n {
        let spec = HostSpec::new("default", 4096, 8192);
        out.push(
            SimAgent::start(&client, spec, Behaviour::default())
                .await
                .unwrap(),
        );
    }
    out
}

/// Registers a revision of `family` with one container `app` mapping port
/// 80 to a dynamic host port.
async fn register(server: &TestServer, family: &str) -> String {
    let containers = r#"[{"name":"app","image":"flotilla-test:latest","memory":64,"portMappings":[{"containerPort":80,"hostPort":0}]}]"#;
    let out = ok(
        server,
        &[
            "register-task-definition",
            "--family",
            family,
            "--container-definitions",
            containers,
        ],
    )
    .await;
    s(&out["taskDefinition"]["taskDefinitionArn"])
}

/// A target group's targets that are not draining: (id, port).
async fn targets(server: &TestServer, tg: &str) -> Vec<(String, u64)> {
    let out = elb(
        server,
        &["describe-target-health", "--target-group-arn", tg],
    )
    .await;
    out["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["TargetHealth"]["State"] != "draining")
        .map(|d| (s(&d["Target"]["Id"]), d["Target"]["Port"].as_u64().unwrap()))
        .collect()
}

async fn task_sets(server: &TestServer, service: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "describe-task-sets",
        "--cluster",
        "default",
        "--service",
        service,
    ];
    args.extend_from_slice(extra);
    ok(server, &args).await
}

async fn task_set(server: &TestServer, service: &str, id: &str) -> Value {
    let out = task_sets(server, service, &["--task-sets", id]).await;
    out["taskSets"][0].clone()
}

/// The ids of the tasks a task set started that are still wanted RUNNING.
/// (Polls go through the SDK, which costs no process start; the
/// operations under test go through the CLI.)
async fn running_tasks(server: &TestServer, started_by: &str) -> Vec<String> {
    let out = server
        .sdk(&ALICE)
        .list_tasks()
        .started_by(started_by)
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
        .send()
        .await
        .expect("ListTasks");
    out.task_arns().to_vec()
}

/// Waits until the task set has `n` RUNNING tasks and is steady; returns
/// it as the CLI shows it.
async fn steady_at(server: &TestServer, service: &str, id: &str, n: i32) -> Value {
    let ecs = server.sdk(&ALICE);
    eventually(60, &format!("task set {id} steady at {n}"), || async {
        let out = ecs
            .describe_task_sets()
            .cluster("default")
            .service(service)
            .task_sets(id)
            .send()
            .await
            .ok()?;
        let t = out.task_sets().first()?;
        (t.running_count() == n
            && t.pending_count() == 0
            && t.computed_desired_count() == n
            && t.stability_status() == Some(&aws_sdk_ecs::types::StabilityStatus::SteadyState))
        .then_some(())
    })
    .await;
    let t = task_set(server, service, id).await;
    assert_eq!(t["runningCount"], n, "{t}");
    assert_eq!(t["stabilityStatus"], "STEADY_STATE", "{t}");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_task_sets_scale_switch_primary_and_delete() {
    let server = TestServer::start_with(fast()).await;
    ok(&server, &["create-cluster"]).await;
    let _hosts = hosts(&server, 2).await;
    let ecs = server.sdk(&ALICE);
    let v1 = register(&server, "web").await;
    let v2 = register(&server, "web").await;

    // Bad input for the service.
    let err = fails(
        &server,
        &[
            "create-service",
            "--service-name",
            "web",
            "--desired-count",
            "4",
            "--task-definition",
            &v1,
            "--deployment-controller",
            "type=EXTERNAL",
        ],
        "InvalidParameterException",
    )
    .await;
    assert!(err.contains("taskDefinition cannot be specified"), "{err}");
    let err = fails(
        &server,
        &[
            "create-service",
            "--service-name",
            "web",
            "--desired-count",
            "4",
            "--task-definition",
            &v1,
            "--deployment-controller",
            "type=CODE_DEPLOY",
        ],
        "InvalidParameterException",
    )
    .await;
    assert!(err.contains("CODE_DEPLOY"), "{err}");

    let svc = ok(
        &server,
        &[
            "create-service",
            "--service-name",
            "web",
            "--desired-count",
            "4",
            "--deployment-controller",
            "type=EXTERNAL",
        ],
    )
    .await["service"]
        .clone();
    assert_eq!(svc["deploymentController"]["type"], "EXTERNAL");
    assert_eq!(svc["taskSets"], serde_json::json!([]));
    assert_eq!(svc["deployments"], serde_json::json!([]));
    assert!(svc.get("taskDefinition").is_none(), "{svc}");
    // A service of the ECS controller has no task sets.
    ok(
        &server,
        &[
            "create-service",
            "--service-name",
            "plain",
            "--desired-count",
            "0",
            "--task-definition",
            &v1,
        ],
    )
    .await;

    // Bad input for task sets.
    let create = |service: &'static str, td: String, scale: &'static str| {
        let server = &server;
        async move {
            server
                .cli(
                    &ALICE,
                    &[
                        "create-task-set",
                        "--cluster",
                        "default",
                        "--service",
                        service,
                        "--task-definition",
                        &td,
                        "--scale",
                        scale,
                    ],
                )
                .await
        }
    };
    let (success, _, err) = create("plain", v1.clone(), "value=100,unit=PERCENT").await;
    assert!(
        !success && err.contains("(InvalidParameterException)"),
        "{err}"
    );
    assert!(err.contains("external deployment controllers"), "{err}");
    let (success, _, err) = create("nope", v1.clone(), "value=100,unit=PERCENT").await;
    assert!(
        !success && err.contains("(ServiceNotFoundException)"),
        "{err}"
    );
    let (success, _, err) = create("web", v1.clone(), "value=150,unit=PERCENT").await;
    assert!(
        !success && err.contains("(InvalidParameterException)"),
        "{err}"
    );
    assert!(
        err.contains("scale.value must be a number between 0 and 100"),
        "{err}"
    );
    let (success, _, err) = create("web", "nosuchfamily".into(), "value=50,unit=PERCENT").await;
    assert!(!success && err.contains("(ClientException)"), "{err}");
    fails(
        &server,
        &[
            "create-task-set",
            "--cluster",
            "nocluster",
            "--service",
            "web",
            "--task-definition",
            &v1,
        ],
        "ClusterNotFoundException",
    )
    .await;
    fails(
        &server,
        &[
            "update-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-set",
            "ecs-svc/0000000000000000001",
            "--scale",
            "value=10,unit=PERCENT",
        ],
        "TaskSetNotFoundException",
    )
    .await;
    let err = fails(
        &server,
        &[
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &v2,
        ],
        "InvalidParameterException",
    )
    .await;
    assert!(err.contains("create a new task set"), "{err}");

    // Two task sets: blue at 100 % of 4, green at 50 %.
    let (success, blue, err) = create("web", v1.clone(), "value=100,unit=PERCENT").await;
    assert!(success, "{err}");
    let blue = blue["taskSet"].clone();
    let blue_id = s(&blue["id"]);
    let blue_arn = s(&blue["taskSetArn"]);
    assert!(
        blue_id.starts_with("ecs-svc/") && blue_id.len() == 27,
        "{blue_id}"
    );
    assert_eq!(
        blue_arn,
        format!(
            "arn:aws:ecs:{REGION}:{}:task-set/default/web/{blue_id}",
            ALICE.account
        )
    );
    assert_eq!(blue["status"], "ACTIVE");
    assert_eq!(blue["computedDesiredCount"], 4);
    assert_eq!(blue["taskDefinition"], v1.as_str());
    assert_eq!(blue["scale"]["unit"], "PERCENT");
    let green = ok(
        &server,
        &[
            "create-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-definition",
            &v2,
            "--scale",
            "value=50,unit=PERCENT",
            "--external-id",
            "green-1",
            "--tags",
            "key=colour,value=green",
        ],
    )
    .await["taskSet"]
        .clone();
    let green_id = s(&green["id"]);
    let green_arn = s(&green["taskSetArn"]);
    assert_eq!(green["computedDesiredCount"], 2);
    assert_eq!(green["externalId"], "green-1");

    // Their tasks are placed, run and are counted; each task carries its
    // task set's id as startedBy, in the service's group.
    steady_at(&server, "web", &blue_id, 4).await;
    steady_at(&server, "web", &green_id, 2).await;
    let blue_tasks = running_tasks(&server, &blue_id).await;
    assert_eq!(blue_tasks.len(), 4);
    assert_eq!(running_tasks(&server, &green_id).await.len(), 2);
    let described = ok(&server, &["describe-tasks", "--tasks", &blue_tasks[0]]).await;
    let t = &described["tasks"][0];
    assert_eq!(t["group"], "service:web");
    assert_eq!(t["startedBy"], blue_id.as_str());
    assert_eq!(t["taskDefinitionArn"], v1.as_str());
    let svc = eventually(30, "the service counts every task", || async {
        let svc =
            ok(&server, &["describe-services", "--services", "web"]).await["services"][0].clone();
        (svc["runningCount"] == 6).then_some(svc)
    })
    .await;
    assert_eq!(svc["taskSets"].as_array().unwrap().len(), 2);
    let events: Vec<String> = svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| s(&e["message"]))
        .collect();
    assert!(
        events.contains(&"(service web) has reached a steady state.".to_string()),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with(&format!(
            "(service web, taskSet {blue_id}) has started 4 tasks: (task "
        ))),
        "{events:?}"
    );
    assert!(svc.get("taskDefinition").is_none(), "no primary yet: {svc}");

    // blue becomes the primary: the service shows its task definition.
    let p = ok(
        &server,
        &[
            "update-service-primary-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--primary-task-set",
            &blue_arn,
        ],
    )
    .await;
    assert_eq!(p["taskSet"]["status"], "PRIMARY");
    let svc = ok(&server, &["describe-services", "--services", "web"]).await["services"][0].clone();
    assert_eq!(svc["taskDefinition"], v1.as_str());
    let status_of = |svc: &Value, id: &str| {
        svc["taskSets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| s(&t["status"]))
            .unwrap()
    };
    assert_eq!(status_of(&svc, &blue_id), "PRIMARY");
    assert_eq!(status_of(&svc, &green_id), "ACTIVE");

    // Scale: green to 100 %, blue to 25 % (of 4: one task).
    let g = ok(
        &server,
        &[
            "update-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-set",
            &green_id,
            "--scale",
            "value=100,unit=PERCENT",
        ],
    )
    .await;
    assert_eq!(g["taskSet"]["computedDesiredCount"], 4);
    assert_eq!(g["taskSet"]["stabilityStatus"], "STABILIZING");
    ok(
        &server,
        &[
            "update-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-set",
            &blue_arn,
            "--scale",
            "value=25,unit=PERCENT",
        ],
    )
    .await;
    steady_at(&server, "web", &green_id, 4).await;
    steady_at(&server, "web", &blue_id, 1).await;
    assert_eq!(running_tasks(&server, &blue_id).await.len(), 1);

    // Switch the primary to green.
    ok(
        &server,
        &[
            "update-service-primary-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--primary-task-set",
            &green_id,
        ],
    )
    .await;
    let svc = ok(&server, &["describe-services", "--services", "web"]).await["services"][0].clone();
    assert_eq!(svc["taskDefinition"], v2.as_str());
    assert_eq!(status_of(&svc, &green_id), "PRIMARY");
    assert_eq!(status_of(&svc, &blue_id), "ACTIVE");

    // The service's desired count rescales every task set.
    ok(
        &server,
        &["update-service", "--service", "web", "--desired-count", "2"],
    )
    .await;
    steady_at(&server, "web", &green_id, 2).await;
    steady_at(&server, "web", &blue_id, 1).await;

    // Task-set tags.
    let tags_of = |arn: String| {
        let server = &server;
        async move {
            let out = ok(server, &["list-tags-for-resource", "--resource-arn", &arn]).await;
            let mut tags: Vec<(String, String)> = out["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (s(&t["key"]), s(&t["value"])))
                .collect();
            tags.sort();
            tags
        }
    };
    assert_eq!(
        tags_of(green_arn.clone()).await,
        [("colour".into(), "green".into())]
    );
    ok(
        &server,
        &[
            "tag-resource",
            "--resource-arn",
            &green_arn,
            "--tags",
            "key=team,value=web",
            "key=colour,value=GREEN",
        ],
    )
    .await;
    assert_eq!(
        tags_of(green_arn.clone()).await,
        [
            ("colour".into(), "GREEN".into()),
            ("team".into(), "web".into())
        ]
    );
    ok(
        &server,
        &[
            "untag-resource",
            "--resource-arn",
            &green_arn,
            "--tag-keys",
            "colour",
        ],
    )
    .await;
    assert_eq!(
        tags_of(green_arn.clone()).await,
        [("team".into(), "web".into())]
    );
    let with = task_sets(
        &server,
        "web",
        &["--task-sets", &green_id, "--include", "TAGS"],
    )
    .await;
    assert_eq!(with["taskSets"][0]["tags"][0]["key"], "team");
    let without = task_set(&server, "web", &green_id).await;
    assert!(without.get("tags").is_none(), "{without}");
    let missing = format!("{green_arn}0");
    fails(
        &server,
        &["list-tags-for-resource", "--resource-arn", &missing],
        "ResourceNotFoundException",
    )
    .await;

    // A clientToken makes CreateTaskSet idempotent.
    let token_args = [
        "create-task-set",
        "--cluster",
        "default",
        "--service",
        "web",
        "--task-definition",
        v2.as_str(),
        "--scale",
        "value=0,unit=PERCENT",
        "--client-token",
        "retry-1",
    ];
    let first = ok(&server, &token_args).await["taskSet"]["id"].clone();
    let again = ok(&server, &token_args).await["taskSet"]["id"].clone();
    assert_eq!(first, again);
    assert_eq!(
        task_sets(&server, "web", &[]).await["taskSets"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // At 0 % and not the primary it may be deleted without force.
    let zero = s(&first);
    let d = ok(
        &server,
        &[
            "delete-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-set",
            &zero,
        ],
    )
    .await;
    assert_eq!(d["taskSet"]["status"], "DRAINING");

    // Deleting: not the primary without force, not above 0 % without force.
    let err = fails(
        &server,
        &[
            "delete-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-set",
            &green_id,
        ],
        "InvalidParameterException",
    )
    .await;
    assert!(err.contains("PRIMARY"), "{err}");
    let err = fails(
        &server,
        &[
            "delete-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-set",
            &blue_id,
        ],
        "InvalidParameterException",
    )
    .await;
    assert!(err.contains("scaled above 0"), "{err}");
    let d = ok(
        &server,
        &[
            "delete-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--task-set",
            &blue_id,
            "--force",
        ],
    )
    .await;
    assert_eq!(d["taskSet"]["status"], "DRAINING");
    assert_eq!(d["taskSet"]["computedDesiredCount"], 0);
    // Its tasks stop, then it is gone; the other keeps running.
    eventually(
        60,
        "the deleted task set's tasks stopped and the set gone",
        || async {
            let left = running_tasks(&server, &blue_id).await;
            let out = ecs
                .describe_task_sets()
                .cluster("default")
                .service("web")
                .task_sets(&blue_id)
                .send()
                .await
                .ok()?;
            (left.is_empty() && out.task_sets().is_empty()).then_some(())
        },
    )
    .await;
    let out = task_sets(&server, "web", &["--task-sets", &blue_id]).await;
    assert_eq!(out["failures"][0]["reason"], "MISSING", "{out}");
    let stopped = ok(&server, &["describe-tasks", "--tasks", &blue_tasks[0]]).await;
    assert_eq!(stopped["tasks"][0]["desiredStatus"], "STOPPED");
    assert_eq!(
        task_sets(&server, "web", &[]).await["taskSets"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only green is left"
    );
    steady_at(&server, "web", &green_id, 2).await;
    let err = fails(
        &server,
        &[
            "update-service-primary-task-set",
            "--cluster",
            "default",
            "--service",
            "web",
            "--primary-task-set",
            &blue_id,
        ],
        "TaskSetNotFoundException",
    )
    .await;
    assert!(err.contains(&blue_id), "{err}");

    // Deleting the service (forced) stops the rest.
    ok(&server, &["delete-service", "--service", "web", "--force"]).await;
    eventually(60, "the service's tasks stopped", || async {
        running_tasks(&server, &green_id)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    server.stop().await;
}

/// A task set's `loadBalancers`: its tasks are registered in its own
/// target group (not another task set's), and deregistered when it is
/// deleted. Task sets are in the store: a restarted server has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_set_registers_its_tasks_in_its_target_group() {
    let server = TestServer::start_with(fast()).await;
    ok(&server, &["create-cluster"]).await;
    let hosts_ = hosts(&server, 2).await;
    let instance_ids: Vec<String> = hosts_
        .iter()
        .map(|h| h.instance_arn.rsplit('/').next().unwrap().to_string())
        .collect();
    let td = register(&server, "api").await;
    let lb_arn = s(
        &elb(&server, &["create-load-balancer", "--name", "api"]).await["LoadBalancers"][0]
            ["LoadBalancerArn"],
    );
    let tg = |name: &'static str| {
        let server = &server;
        async move {
            let out = elb(
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
                    "instance",
                ],
            )
            .await;
            let arn = s(&out["TargetGroups"][0]["TargetGroupArn"]);
            elb(
                server,
                &[
                    "modify-target-group-attributes",
                    "--target-group-arn",
                    &arn,
                    "--attributes",
                    "Key=deregistration_delay.timeout_seconds,Value=1",
                ],
            )
            .await;
            arn
        }
    };
    let blue_tg = tg("blue").await;
    let green_tg = tg("green").await;
    elb(
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
            &format!(
                r#"[{{"Type":"forward","ForwardConfig":{{"TargetGroups":[{{"TargetGroupArn":"{blue_tg}","Weight":1}},{{"TargetGroupArn":"{green_tg}","Weight":0}}]}}}}]"#
            ),
        ],
    )
    .await;
    ok(
        &server,
        &[
            "create-service",
            "--service-name",
            "api",
            "--desired-count",
            "2",
            "--deployment-controller",
            "type=EXTERNAL",
        ],
    )
    .await;
    let lb_entry = |tg: &str| format!("targetGroupArn={tg},containerName=app,containerPort=80");
    // A container port the task definition does not map is refused.
    let err = fails(
        &server,
        &[
            "create-task-set",
            "--cluster",
            "default",
            "--service",
            "api",
            "--task-definition",
            &td,
            "--load-balancers",
            &format!("targetGroupArn={blue_tg},containerName=app,containerPort=81"),
        ],
        "InvalidParameterException",
    )
    .await;
    assert!(err.contains("did not have a container port 81"), "{err}");
    let blue = ok(
        &server,
        &[
            "create-task-set",
            "--cluster",
            "default",
            "--service",
            "api",
            "--task-definition",
            &td,
            "--load-balancers",
            &lb_entry(&blue_tg),
        ],
    )
    .await["taskSet"]["id"]
        .clone();
    let blue = s(&blue);
    let green = ok(
        &server,
        &[
            "create-task-set",
            "--cluster",
            "default",
            "--service",
            "api",
            "--task-definition",
            &td,
            "--load-balancers",
            &lb_entry(&green_tg),
        ],
    )
    .await["taskSet"]["id"]
        .clone();
    let green = s(&green);

    // Each task set's two tasks are in its own group.
    for tg in [&blue_tg, &green_tg] {
        let registered = eventually(60, "two targets in the task set's group", || async {
            let t = targets(&server, tg).await;
            (t.len() == 2).then_some(t)
        })
        .await;
        for (id, port) in &registered {
            assert!(
                instance_ids.contains(id),
                "{id} is not a container instance"
            );
            assert!(*port >= 32768, "{port} is not a dynamic host port");
        }
    }
    let svc = ok(&server, &["describe-services", "--services", "api"]).await["services"][0].clone();
    let events: Vec<String> = svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| s(&e["message"]))
        .collect();
    assert!(
        // (One event, or one per pass if the tasks turned RUNNING apart.)
        events.iter().any(
            |e| e.starts_with(&format!("(service api, taskSet {blue}) registered "))
                && e.ends_with(&format!("targets in (target-group {blue_tg})"))
        ),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with(&format!(
            "(service api, taskSet {green}) has started 2 tasks"
        ))),
        "{events:?}"
    );

    // Restart: the task sets are in the store.
    let dir = server.stop().await;
    drop(hosts_);
    let dir = dir.expect("the data directory");
    let server = TestServer::start_in_with(dir.path().to_path_buf(), fast()).await;
    let _hosts = hosts(&server, 2).await;
    let out = task_sets(&server, "api", &[]).await;
    let mut ids: Vec<String> = out["taskSets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| s(&t["id"]))
        .collect();
    ids.sort();
    let mut want = vec![blue.clone(), green.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Deleting green deregisters its targets; blue's stay.
    ok(
        &server,
        &[
            "delete-task-set",
            "--cluster",
            "default",
            "--service",
            "api",
            "--task-set",
            &green,
            "--force",
        ],
    )
    .await;
    eventually(60, "green's targets deregistered", || async {
        targets(&server, &green_tg).await.is_empty().then_some(())
    })
    .await;
    eventually(60, "blue's two targets (again) registered", || async {
        (targets(&server, &blue_tg).await.len() == 2).then_some(())
    })
    .await;
    server.stop().await;
    drop(dir);
}
