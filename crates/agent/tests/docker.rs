//! The engine against the real Docker Engine, with the `flotilla-test`
//! image. Each test runs as its own container instance (a unique instance
//! ARN), so tests never see each other's containers, and removes everything
//! carrying that label when it ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_agent::engine::{Engine, EngineConfig, StateChanges, TaskStateChange};
use flotilla_agent::spec::{
    LABEL_CLUSTER, LABEL_CONTAINER_NAME, LABEL_FAMILY, LABEL_INSTANCE, LABEL_REVISION,
    LABEL_TASK_ARN,
};
use flotilla_agent::testing::{ensure_test_image, ContainerGuard, TEST_IMAGE};
use flotilla_agent::{DockerRuntime, MetadataIndex};
use flotilla_model::agent::DesiredTask;
use flotilla_model::ecs;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Harness {
    docker: DockerRuntime,
    instance: String,
    _guard: ContainerGuard,
}

async fn harness(test: &str) -> Harness {
    let docker = DockerRuntime::connect().await.expect("docker");
    ensure_test_image(docker.client())
        .await
        .expect("test image");
    let instance = format!(
        "arn:aws:ecs:us-east-1:1:container-instance/test/{test}-{}",
        std::process::id()
    );
    let guard = ContainerGuard::new(docker.client(), LABEL_INSTANCE, &instance).await;
    Harness {
        docker,
        instance,
        _guard: guard,
    }
}

impl Harness {
    fn config(&self) -> EngineConfig {
        let mut c = EngineConfig::new("test", &self.instance);
        c.host_ip = "127.0.0.1".into();
        c.cleanup_delay = Duration::from_secs(60);
        c
    }

    fn start(&self) -> (Engine, StateChanges) {
        Engine::start(
            Arc::new(self.docker.clone()),
            self.config(),
            MetadataIndex::new(),
        )
    }
}

fn task(id: &str, containers: serde_json::Value) -> DesiredTask {
    task_with(id, containers, json!({}))
}

fn task_with(id: &str, containers: serde_json::Value, extra: serde_json::Value) -> DesiredTask {
    let mut def = json!({"family": "dt", "revision": 4, "networkMode": "bridge", "containerDefinitions": containers});
    if let (Some(d), Some(e)) = (def.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    DesiredTask {
        task: serde_json::from_value(json!({
            "taskArn": format!("arn:aws:ecs:us-east-1:1:task/test/{id}{}", std::process::id()),
            "desiredStatus": "RUNNING",
        }))
        .unwrap(),
        definition: serde_json::from_value(def).unwrap(),
    }
}

fn container(name: &str, command: &[&str], extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"name": name, "image": TEST_IMAGE, "command": command, "memory": 64});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    c
}

async fn wait_for(
    changes: &mut StateChanges,
    what: &str,
    pred: impl Fn(&TaskStateChange) -> bool,
) -> TaskStateChange {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Some(c)) if pred(&c) => return c,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("engine stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn cstatus(c: &TaskStateChange, name: &str) -> String {
    c.container(name)
        .and_then(|c| c.status.clone())
        .unwrap_or_default()
}

fn stop(mut t: DesiredTask) -> DesiredTask {
    t.task.desired_status = Some(flotilla_model::ecs::DesiredStatus::Stopped);
    t
}

#[tokio::test]
async fn runs_containers_with_labels_and_reports_exits() {
    let h = harness("labels").await;
    let (engine, mut changes) = h.start();
    let t = task(
        "labels",
        json!([
            container(
                "app",
                &["sleep"],
                json!({"dockerLabels": {"team": "blue"}, "environment": [{"name": "GREETING", "value": "hi"}]})
            ),
            container("side", &["exit", "3", "300"], json!({"essential": false})),
        ]),
    );
    let arn = t.task.task_arn.clone().unwrap();
    engine.set_desired(1, vec![t.clone()]).await.unwrap();
    let running = wait_for(&mut changes, "RUNNING", |c| c.status() == "RUNNING").await;
    let app_id = running
        .container("app")
        .unwrap()
        .runtime_id
        .clone()
        .unwrap();

    let info = h
        .docker
        .client()
        .inspect_container(
            &app_id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    assert_eq!(
        info.state.as_ref().unwrap().running,
        Some(true),
        "docker runs it"
    );
    let config = info.config.unwrap();
    let labels = config.labels.unwrap();
    assert_eq!(labels[LABEL_CLUSTER], "test");
    assert_eq!(labels[LABEL_TASK_ARN], arn);
    assert_eq!(labels[LABEL_CONTAINER_NAME], "app");
    assert_eq!(labels[LABEL_FAMILY], "dt");
    assert_eq!(labels[LABEL_REVISION], "4");
    assert_eq!(labels[LABEL_INSTANCE], h.instance);
    assert_eq!(labels["team"], "blue");
    let env = config.env.unwrap();
    assert!(env.contains(&"GREETING=hi".to_string()));
    assert!(env.contains(&"AWS_REGION=us-east-1".to_string()));
    let host = info.host_config.unwrap();
    assert_eq!(host.memory, Some(64 * 1024 * 1024));

    // The non-essential container exits with 3; the task keeps running.
    let c = wait_for(&mut changes, "side STOPPED", |c| {
        cstatus(c, "side") == "STOPPED"
    })
    .await;
    assert_eq!(c.container("side").unwrap().exit_code, Some(3));
    assert_eq!(c.status(), "RUNNING");

    // Stop on request: SIGTERM, the program exits 0.
    engine.set_desired(2, vec![stop(t)]).await.unwrap();
    let c = wait_for(&mut changes, "STOPPED", |c| c.status() == "STOPPED").await;
    assert_eq!(c.container("app").unwrap().exit_code, Some(0));
    assert_eq!(c.stop_code, None);
}

#[tokio::test]
async fn essential_exit_stops_the_task_within_a_second() {
    let h = harness("essential").await;
    let (engine, mut changes) = h.start();
    let t = task(
        "essential",
        json!([
            container("main", &["exit", "5", "500"], json!({})),
            container("helper", &["sleep"], json!({"essential": false})),
        ]),
    );
    engine.set_desired(1, vec![t]).await.unwrap();
    wait_for(&mut changes, "RUNNING", |c| c.status() == "RUNNING").await;
    let c = wait_for(&mut changes, "main STOPPED", |c| {
        cstatus(c, "main") == "STOPPED"
    })
    .await;
    let exited = Instant::now();
    assert_eq!(c.container("main").unwrap().exit_code, Some(5));
    let c = wait_for(&mut changes, "STOPPED", |c| c.status() == "STOPPED").await;
    assert!(exited.elapsed() < Duration::from_secs(5));
    assert_eq!(
        c.stop_code,
        Some(ecs::TaskStopCode::EssentialContainerExited)
    );
    assert_eq!(
        c.submit.reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert_eq!(cstatus(&c, "helper"), "STOPPED");
}

#[tokio::test]
async fn depends_on_starts_in_order() {
    let h = harness("order").await;
    let (engine, mut changes) = h.start();
    let t = task(
        "order",
        json!([
            container(
                "web",
                &["sleep"],
                json!({"dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]})
            ),
            container("init", &["exit", "0", "400"], json!({"essential": false})),
        ]),
    );
    engine.set_desired(1, vec![t]).await.unwrap();
    let c = wait_for(&mut changes, "RUNNING", |c| c.status() == "RUNNING").await;
    let inspect = |id: String| {
        let d = h.docker.client().clone();
        async move {
            d.inspect_container(
                &id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .unwrap()
            .state
            .unwrap()
        }
    };
    let web = inspect(c.container("web").unwrap().runtime_id.clone().unwrap()).await;
    let init = inspect(c.container("init").unwrap().runtime_id.clone().unwrap()).await;
    assert_eq!(init.exit_code, Some(0));
    // RFC 3339 timestamps in the same zone compare as strings.
    assert!(
        web.started_at.unwrap() > init.finished_at.unwrap(),
        "web started after init succeeded"
    );
}

#[tokio::test]
async fn health_checks_report_healthy_and_unhealthy() {
    let h = harness("health").await;
    let (engine, mut changes) = h.start();
    let hc = |cmd: &str| json!({"healthCheck": {"command": ["CMD", "/testprog", cmd], "interval": 1, "timeout": 1, "retries": 1}});
    let t = task(
        "health",
        json!([
            container("good", &["sleep"], hc("health-ok")),
            container("bad", &["sleep"], {
                let mut v = hc("health-fail");
                v["essential"] = json!(false);
                v
            }),
        ]),
    );
    engine.set_desired(1, vec![t]).await.unwrap();
    let c = wait_for(&mut changes, "good HEALTHY", |c| {
        c.container_health.get("good") == Some(&ecs::HealthStatus::Healthy)
    })
    .await;
    assert_eq!(
        c.health_status,
        Some(ecs::HealthStatus::Healthy),
        "only essential containers count"
    );
    let c = wait_for(&mut changes, "bad UNHEALTHY", |c| {
        c.container_health.get("bad") == Some(&ecs::HealthStatus::Unhealthy)
    })
    .await;
    assert_eq!(c.status(), "RUNNING");
}

#[tokio::test]
async fn stop_timeout_kills_a_program_that_ignores_sigterm() {
    let h = harness("stoptimeout").await;
    let (engine, mut changes) = h.start();
    let t = task(
        "stoptimeout",
        json!([container(
            "stubborn",
            &["ignore-term"],
            json!({"stopTimeout": 2})
        )]),
    );
    engine.set_desired(1, vec![t.clone()]).await.unwrap();
    wait_for(&mut changes, "RUNNING", |c| c.status() == "RUNNING").await;
    let asked = Instant::now();
    engine.set_desired(2, vec![stop(t)]).await.unwrap();
    let c = wait_for(&mut changes, "STOPPED", |c| c.status() == "STOPPED").await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "waited for stopTimeout, took {took:?}"
    );
    assert!(took < Duration::from_secs(8), "then killed, took {took:?}");
    assert_eq!(
        c.container("stubborn").unwrap().exit_code,
        Some(137),
        "SIGKILL"
    );
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn dynamic_host_port_is_reported_and_reachable() {
    let h = harness("ports").await;
    let (engine, mut changes) = h.start();
    let t = task(
        "ports",
        json!([container(
            "web",
            &["serve", "8080", "hello-from-flotilla"],
            json!({"portMappings": [{"containerPort": 8080}]})
        )]),
    );
    engine.set_desired(1, vec![t]).await.unwrap();
    let c = wait_for(&mut changes, "RUNNING", |c| c.status() == "RUNNING").await;
    let b = &c
        .container("web")
        .unwrap()
        .network_bindings
        .as_ref()
        .expect("bindings")[0];
    assert_eq!(b.bind_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(b.container_port, Some(8080));
    assert_eq!(b.protocol, Some(ecs::TransportProtocol::Tcp));
    let port = b.host_port.unwrap();
    assert!(port > 0);
    // The server may need a moment to listen.
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(("127.0.0.1", port as u16)),
        )
        .await
        {
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            let _ = s.read_to_string(&mut body).await;
            if body.contains("hello-from-flotilla") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains("hello-from-flotilla"), "got {body:?}");
}

#[tokio::test]
async fn metadata_endpoint_answers_from_inside_a_container() {
    let h = harness("metadata").await;
    let (listener, base) = flotilla_agent::control::bind_metadata(&h.docker, 0)
        .await
        .expect("bind metadata");
    let addr = listener.local_addr().unwrap().to_string();
    let index = MetadataIndex::new();
    let rt = Arc::new(h.docker.clone());
    tokio::spawn(flotilla_agent::metadata::serve(
        listener,
        index.clone(),
        rt.clone(),
        std::future::pending(),
    ));
    let mut config = h.config();
    config.metadata_base = Some(base);
    let (engine, mut changes) = Engine::start(rt, config, index);
    let t = task(
        "metadata",
        json!([
            container("app", &["sleep"], json!({})),
            container(
                "probe-task",
                &[
                    "fetch-env",
                    "ECS_CONTAINER_METADATA_URI_V4",
                    "/task",
                    "\"Family\":\"dt\""
                ],
                json!({"essential": false})
            ),
            container(
                "probe-self",
                &[
                    "fetch-env",
                    "ECS_CONTAINER_METADATA_URI_V4",
                    "",
                    "\"Name\":\"probe-self\""
                ],
                json!({"essential": false})
            ),
        ]),
    );
    let arn = t.task.task_arn.clone().unwrap();
    engine.set_desired(1, vec![t]).await.unwrap();
    let c = wait_for(&mut changes, "probes done", |c| {
        cstatus(c, "probe-task") == "STOPPED" && cstatus(c, "probe-self") == "STOPPED"
    })
    .await;
    assert_eq!(
        c.container("probe-task").unwrap().exit_code,
        Some(0),
        "container read /task"
    );
    assert_eq!(
        c.container("probe-self").unwrap().exit_code,
        Some(0),
        "container read its own metadata"
    );

    // And the shape, read from the host.
    let app_id = c.container("app").unwrap().runtime_id.clone().unwrap();
    let info = h
        .docker
        .client()
        .inspect_container(
            &app_id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let uri = info
        .config
        .unwrap()
        .env
        .unwrap()
        .into_iter()
        .find_map(|e| {
            e.strip_prefix("ECS_CONTAINER_METADATA_URI_V4=")
                .map(str::to_string)
        })
        .unwrap();
    let path = uri.split_once(&addr).unwrap().1.to_string();
    let resp = http_get(&addr, &format!("{path}/task")).await;
    let body: serde_json::Value =
        serde_json::from_str(resp.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["TaskARN"], json!(arn));
    assert_eq!(body["Revision"], json!("4"));
    assert_eq!(body["LaunchType"], json!("EC2"));
    let app = body["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Name"] == json!("app"))
        .unwrap();
    assert_eq!(app["DockerId"], json!(app_id));
    assert_eq!(app["KnownStatus"], json!("RUNNING"));
    assert_eq!(app["Limits"]["Memory"], json!(64));
    assert!(app["Networks"][0]["IPv4Addresses"][0]
        .as_str()
        .unwrap()
        .starts_with("172."));
    let resp = http_get(&addr, &format!("{path}/stats")).await;
    assert!(resp.contains("memory_stats"), "docker stats JSON: {resp}");
    let resp = http_get(&addr, "/v4/not-a-token/task").await;
    assert!(
        resp.lines().next().unwrap_or("").contains(" 404 "),
        "{resp}"
    );
    // The agent's Prometheus figures on the same address: one task, its
    // `app` container running (the probes have exited).
    let resp = http_get(&addr, "/metrics").await;
    assert!(resp.contains("\nflotilla_agent_tasks 1\n"), "{resp}");
    assert!(
        resp.contains("\nflotilla_agent_running_containers 1\n"),
        "{resp}"
    );
    assert!(
        resp.contains("# TYPE flotilla_agent_log_events_shipped_total counter"),
        "{resp}"
    );
}

#[tokio::test]
async fn a_restarted_engine_adopts_running_containers() {
    let h = harness("adopt").await;
    let t = task("adopt", json!([container("app", &["sleep"], json!({}))]));
    let first_id = {
        let (engine, mut changes) = h.start();
        engine.set_desired(1, vec![t.clone()]).await.unwrap();
        let c = wait_for(&mut changes, "RUNNING", |c| c.status() == "RUNNING").await;
        c.container("app").unwrap().runtime_id.clone().unwrap()
    }; // the engine is dropped, as if the agent were killed
    let started = |id: String| {
        let d = h.docker.client().clone();
        async move {
            d.inspect_container(
                &id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .unwrap()
            .state
            .unwrap()
            .started_at
        }
    };
    let started_before = started(first_id.clone()).await;

    let (engine, mut changes) = h.start();
    engine.set_desired(7, vec![t.clone()]).await.unwrap();
    let c = wait_for(&mut changes, "RUNNING again", |c| c.status() == "RUNNING").await;
    assert_eq!(
        c.container("app").unwrap().runtime_id.as_deref(),
        Some(first_id.as_str()),
        "same container"
    );
    assert_eq!(
        started(first_id.clone()).await,
        started_before,
        "not restarted"
    );

    // Still followed: a stop request stops it.
    engine.set_desired(8, vec![stop(t)]).await.unwrap();
    wait_for(&mut changes, "STOPPED", |c| c.status() == "STOPPED").await;
}
