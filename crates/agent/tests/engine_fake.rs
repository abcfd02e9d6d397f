//! The task engine against the in-memory runtime: lifecycle, ordering,
//! essential semantics, health, pulls, adoption — no Docker needed.

use std::sync::Arc;
use std::time::Duration;

use flotilla_agent::engine::{Engine, EngineConfig, StateChanges, TaskStateChange};
use flotilla_agent::fake::FakeRuntime;
use flotilla_agent::runtime::Health;
use flotilla_agent::MetadataIndex;
use flotilla_model::agent::DesiredTask;
use flotilla_model::ecs;
use serde_json::json;

const INSTANCE: &str = "arn:aws:ecs:us-east-1:1:container-instance/default/i-fake";

fn desired(id: &str, containers: serde_json::Value, status: &str) -> DesiredTask {
    DesiredTask {
        task: serde_json::from_value(json!({
            "taskArn": format!("arn:aws:ecs:us-east-1:1:task/default/{id}"),
            "desiredStatus": status,
        }))
        .unwrap(),
        definition: serde_json::from_value(json!({
            "family": "fam", "revision": 1, "networkMode": "bridge",
            "containerDefinitions": containers,
        }))
        .unwrap(),
    }
}

fn start(fake: &FakeRuntime) -> (Engine, StateChanges) {
    let mut config = EngineConfig::new("default", INSTANCE);
    config.cleanup_delay = Duration::from_millis(50);
    config.host_ip = "127.0.0.1".into();
    Engine::start(Arc::new(fake.clone()), config, MetadataIndex::new())
}

async fn wait_for(
    changes: &mut StateChanges,
    what: &str,
    pred: impl Fn(&TaskStateChange) -> bool,
) -> TaskStateChange {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Some(c)) if pred(&c) => return c,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("engine stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn status(c: &TaskStateChange, name: &str) -> String {
    c.container(name)
        .and_then(|c| c.status.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn runs_a_task_and_reports_essential_exit() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let (engine, mut changes) = start(&fake);
    let task = desired(
        "t1",
        json!([{"name": "app", "image": "img", "portMappings": [{"containerPort": 80}]},
               {"name": "side", "image": "img", "essential": false}]),
        "RUNNING",
    );
    engine.set_desired(1, vec![task]).await.unwrap();
    let running = wait_for(&mut changes, "RUNNING", |c| c.status() == "RUNNING").await;
    let app = running.container("app").unwrap();
    let b = &app.network_bindings.as_ref().unwrap()[0];
    assert_eq!(
        (b.container_port, b.bind_ip.as_deref()),
        (Some(80), Some("127.0.0.1"))
    );
    assert!(b.host_port.unwrap() > 32768, "dynamic host port read back");
    assert!(app.runtime_id.is_some());

    // A non-essential exit leaves the task running.
    let side = fake.by_name("side").unwrap();
    fake.exit(&side.id, 2);
    let c = wait_for(&mut changes, "side stopped", |c| {
        status(c, "side") == "STOPPED"
    })
    .await;
    assert_eq!(c.status(), "RUNNING");
    assert_eq!(c.container("side").unwrap().exit_code, Some(2));

    // An essential exit stops the task.
    let app = fake.by_name("app").unwrap();
    fake.exit(&app.id, 7);
    let c = wait_for(&mut changes, "STOPPED", |c| c.status() == "STOPPED").await;
    assert_eq!(c.container("app").unwrap().exit_code, Some(7));
    assert_eq!(
        c.stop_code,
        Some(ecs::TaskStopCode::EssentialContainerExited)
    );
    assert_eq!(
        c.submit.reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert!(c.submit.execution_stopped_at.is_some());

    // Removed after the cleanup delay, and never restarted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.containers().iter().all(|c| c.removed));
    engine
        .set_desired(
            2,
            vec![desired(
                "t1",
                json!([{"name": "app", "image": "img"}]),
                "RUNNING",
            )],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.containers().len(),
        2,
        "a stopped task is never started again"
    );
}

#[tokio::test]
async fn depends_on_orders_start_and_reverse_stop() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let (engine, mut changes) = start(&fake);
    let task = desired(
        "t2",
        json!([
            {"name": "web", "image": "img", "dependsOn": [
                {"containerName": "db", "condition": "HEALTHY"},
                {"containerName": "init", "condition": "SUCCESS"}]},
            {"name": "db", "image": "img", "healthCheck": {"command": ["CMD", "true"]}},
            {"name": "init", "image": "img", "essential": false}
        ]),
        "RUNNING",
    );
    engine.set_desired(1, vec![task.clone()]).await.unwrap();
    wait_for(&mut changes, "db running", |c| {
        status(c, "db") == "RUNNING" && status(c, "init") == "RUNNING"
    })
    .await;
    assert!(
        fake.by_name("web").is_none(),
        "web waits for its dependencies"
    );

    let init = fake.by_name("init").unwrap();
    fake.exit(&init.id, 0);
    let db = fake.by_name("db").unwrap();
    fake.set_health(&db.id, Health::Healthy);
    let c = wait_for(&mut changes, "task running", |c| c.status() == "RUNNING").await;
    assert_eq!(c.container_health["db"], ecs::HealthStatus::Healthy);
    assert_eq!(c.health_status, Some(ecs::HealthStatus::Healthy));
    let web = fake.by_name("web").unwrap();
    assert!(web.start_seq > db.start_seq);

    // Stop: web (the dependent) goes first, then db.
    let mut stop = task;
    stop.task.desired_status = Some(flotilla_model::ecs::DesiredStatus::Stopped);
    engine.set_desired(2, vec![stop]).await.unwrap();
    let c = wait_for(&mut changes, "stopped", |c| c.status() == "STOPPED").await;
    assert_eq!(
        c.stop_code, None,
        "a requested stop keeps the control plane's stop code"
    );
    let all = fake.containers();
    let seq = |n: &str| {
        all.iter()
            .find(|c| c.spec.name.contains(&format!("-{n}-")))
            .unwrap()
            .stop_seq
            .unwrap()
    };
    assert!(
        seq("web") < seq("db"),
        "reverse dependency order on shutdown"
    );
    let web = all.iter().find(|c| c.spec.name.contains("-web-")).unwrap();
    assert_eq!(web.stop_timeout, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn unhealthy_container_marks_task_unhealthy_and_keeps_it_running() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let (engine, mut changes) = start(&fake);
    let task = desired(
        "t3",
        json!([{"name": "a", "image": "img", "healthCheck": {"command": ["CMD", "x"]}}]),
        "RUNNING",
    );
    engine.set_desired(1, vec![task]).await.unwrap();
    let c = wait_for(&mut changes, "running", |c| c.status() == "RUNNING").await;
    assert_eq!(c.health_status, Some(ecs::HealthStatus::Unknown));
    let a = fake.by_name("a").unwrap();
    fake.set_health(&a.id, Health::Unhealthy);
    let c = wait_for(&mut changes, "unhealthy", |c| {
        c.health_status == Some(ecs::HealthStatus::Unhealthy)
    })
    .await;
    assert_eq!(c.status(), "RUNNING");
}

#[tokio::test]
async fn failed_dependency_fails_the_task_to_start() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let (engine, mut changes) = start(&fake);
    let task = desired(
        "t4",
        json!([
            {"name": "web", "image": "img", "dependsOn": [{"containerName": "migrate", "condition": "SUCCESS"}]},
            {"name": "migrate", "image": "img", "essential": false}
        ]),
        "RUNNING",
    );
    engine.set_desired(1, vec![task]).await.unwrap();
    wait_for(&mut changes, "migrate running", |c| {
        status(c, "migrate") == "RUNNING"
    })
    .await;
    fake.exit(&fake.by_name("migrate").unwrap().id, 1);
    let c = wait_for(&mut changes, "stopped", |c| c.status() == "STOPPED").await;
    assert_eq!(c.stop_code, Some(ecs::TaskStopCode::TaskFailedToStart));
    let web = c.container("web").unwrap();
    assert!(
        web.reason.as_deref().unwrap().contains("SUCCESS"),
        "{:?}",
        web.reason
    );
    assert!(web.runtime_id.is_none(), "web was never created");
}

#[tokio::test]
async fn start_timeout_gives_up_on_a_dependency() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let (engine, mut changes) = start(&fake);
    let task = desired(
        "t5",
        json!([
            {"name": "web", "image": "img", "startTimeout": 1,
             "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
            {"name": "db", "image": "img", "healthCheck": {"command": ["CMD", "x"]}}
        ]),
        "RUNNING",
    );
    engine.set_desired(1, vec![task]).await.unwrap();
    let c = wait_for(&mut changes, "stopped", |c| c.status() == "STOPPED").await;
    assert!(c
        .container("web")
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .contains("startTimeout"));
    assert_eq!(c.stop_code, Some(ecs::TaskStopCode::TaskFailedToStart));
}

#[tokio::test]
async fn pull_failure_reports_cannot_pull() {
    let fake = FakeRuntime::new();
    fake.fail_pull("private/app:1", "unauthorized");
    let (engine, mut changes) = start(&fake);
    engine
        .set_desired(
            1,
            vec![desired(
                "t6",
                json!([{"name": "a", "image": "private/app:1"}]),
                "RUNNING",
            )],
        )
        .await
        .unwrap();
    let c = wait_for(&mut changes, "stopped", |c| c.status() == "STOPPED").await;
    assert!(
        c.submit
            .reason
            .as_deref()
            .unwrap()
            .starts_with("CannotPullContainerError"),
        "{:?}",
        c.submit.reason
    );
    assert!(c
        .container("a")
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .contains("unauthorized"));
    assert!(c.submit.pull_started_at.is_some() && c.submit.pull_stopped_at.is_some());
    assert_eq!(c.stop_code, Some(ecs::TaskStopCode::TaskFailedToStart));
}

#[tokio::test]
async fn a_missing_image_is_pulled_first() {
    let fake = FakeRuntime::new();
    let (engine, mut changes) = start(&fake);
    engine
        .set_desired(
            1,
            vec![desired(
                "t7",
                json!([{"name": "a", "image": "app:2"}]),
                "RUNNING",
            )],
        )
        .await
        .unwrap();
    let c = wait_for(&mut changes, "running", |c| c.status() == "RUNNING").await;
    assert_eq!(fake.pulls().len(), 1);
    assert!(c.submit.pull_stopped_at.is_some());
}

#[tokio::test]
async fn awsvpc_is_rejected_with_a_reason() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let (engine, mut changes) = start(&fake);
    let mut t = desired("t8", json!([{"name": "a", "image": "img"}]), "RUNNING");
    t.definition.network_mode = Some(ecs::NetworkMode::Awsvpc);
    engine.set_desired(1, vec![t]).await.unwrap();
    let c = wait_for(&mut changes, "stopped", |c| c.status() == "STOPPED").await;
    assert!(c.submit.reason.as_deref().unwrap().contains("awsvpc"));
}

#[tokio::test]
async fn a_task_dropped_from_the_desired_set_is_stopped() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let (engine, mut changes) = start(&fake);
    engine
        .set_desired(
            1,
            vec![desired(
                "t9",
                json!([{"name": "a", "image": "img", "stopTimeout": 2}]),
                "RUNNING",
            )],
        )
        .await
        .unwrap();
    wait_for(&mut changes, "running", |c| c.status() == "RUNNING").await;
    engine.set_desired(2, vec![]).await.unwrap();
    wait_for(&mut changes, "stopping", |c| {
        c.status() == "STOPPING" || c.status() == "STOPPED"
    })
    .await;
    wait_for(&mut changes, "stopped", |c| c.status() == "STOPPED").await;
    assert_eq!(
        fake.containers()[0].stop_timeout,
        Some(Duration::from_secs(2))
    );
    // A stale desired set does not resurrect it.
    engine
        .set_desired(
            1,
            vec![desired(
                "t9",
                json!([{"name": "a", "image": "img"}]),
                "RUNNING",
            )],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.containers().len(), 1);
}

#[tokio::test]
async fn desired_stopped_task_never_seen_is_reported_stopped() {
    let fake = FakeRuntime::new();
    let (engine, mut changes) = start(&fake);
    engine
        .set_desired(
            1,
            vec![desired(
                "t10",
                json!([{"name": "a", "image": "img"}]),
                "STOPPED",
            )],
        )
        .await
        .unwrap();
    let c = wait_for(&mut changes, "stopped", |c| c.status() == "STOPPED").await;
    assert_eq!(status(&c, "a"), "STOPPED");
    assert!(fake.containers().is_empty());
}

#[tokio::test]
async fn a_new_engine_adopts_running_containers() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let task = desired("t11", json!([{"name": "a", "image": "img"}]), "RUNNING");
    {
        let (engine, mut changes) = start(&fake);
        engine.set_desired(1, vec![task.clone()]).await.unwrap();
        wait_for(&mut changes, "running", |c| c.status() == "RUNNING").await;
    } // engine dropped: like an agent killed with SIGKILL
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = fake.by_name("a").unwrap().id;

    // A second life adopts it and starts another task, which the control
    // plane then forgets while no agent runs.
    let orphan = desired("t12", json!([{"name": "o", "image": "img"}]), "RUNNING");
    {
        let (engine, mut changes) = start(&fake);
        engine
            .set_desired(1, vec![task.clone(), orphan])
            .await
            .unwrap();
        wait_for(&mut changes, "orphan running", |c| {
            c.task_arn().ends_with("t12") && c.status() == "RUNNING"
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (engine, mut changes) = start(&fake);
    engine.set_desired(5, vec![task]).await.unwrap();
    let c = wait_for(&mut changes, "adopted running", |c| c.status() == "RUNNING").await;
    assert_eq!(
        c.container("a").unwrap().runtime_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        fake.containers()
            .iter()
            .filter(|c| c.spec.name.contains("-a-"))
            .count(),
        1,
        "not recreated"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(fake.by_name("o").is_none(), "the orphan was removed");

    // The adopted task still follows its containers.
    fake.exit(&id, 0);
    let c = wait_for(&mut changes, "stopped", |c| c.status() == "STOPPED").await;
    assert_eq!(
        c.stop_code,
        Some(ecs::TaskStopCode::EssentialContainerExited)
    );
    let all = engine.resync().await.unwrap();
    assert_eq!(all.len(), 1);
}
