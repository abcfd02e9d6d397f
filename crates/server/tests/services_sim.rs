//! Tasks, services, deployments and lost hosts through the whole control
//! plane (API, store, scheduler, controllers, agent gateway), with simulated
//! agents that speak the real gateway protocol but run no containers.

mod common;

use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, DeploymentCircuitBreaker, DeploymentConfiguration};
use common::{eventually, TestServer, ALICE};
use flotilla_sim::{Behaviour, HostSpec, SimAgent};

fn fast() -> flotilla_server::Config {
    let mut c = flotilla_server::Config::default();
    c.controllers.lost_host_grace = Duration::from_millis(500);
    c
}

async fn register(ecs: &aws_sdk_ecs::Client, family: &str) -> String {
    let r = ecs
        .register_task_definition()
        .family(family)
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("flotilla-test:latest")
                .memory(128)
                .build(),
        )
        .send()
        .await
        .unwrap();
    r.task_definition
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string()
}

async fn hosts(server: &TestServer, n: usize, behaviour: Behaviour) -> Vec<SimAgent> {
    let client = server.raw(&ALICE);
    let mut out = Vec::new();
    for i in 0..n {
        let zone = if i % 2 == 0 {
            "us-east-1a"
        } else {
            "us-east-1b"
        };
        let spec = HostSpec::new("default", 2048, 4096).attribute("ecs.availability-zone", zone);
        out.push(
            SimAgent::start(&client, spec, behaviour.clone())
                .await
                .unwrap(),
        );
    }
    out
}

async fn service(ecs: &aws_sdk_ecs::Client, name: &str) -> aws_sdk_ecs::types::Service {
    let d = ecs.describe_services().services(name).send().await.unwrap();
    d.services()[0].clone()
}

fn stable(s: &aws_sdk_ecs::types::Service) -> bool {
    s.deployments().len() == 1 && s.running_count() == s.desired_count() && s.pending_count() == 0
}

#[tokio::test]
async fn run_task_reaches_running_and_stops() {
    let server = TestServer::start_with(fast()).await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let _hosts = hosts(&server, 1, Behaviour::default()).await;
    let td = register(&ecs, "web").await;
    let run = ecs
        .run_task()
        .task_definition(&td)
        .count(2)
        .send()
        .await
        .unwrap();
    assert_eq!(run.tasks().len(), 2, "{:?}", run.failures());
    let arns: Vec<String> = run
        .tasks()
        .iter()
        .map(|t| t.task_arn().unwrap().to_string())
        .collect();
    eventually(5, "tasks RUNNING", || async {
        let d = ecs
            .describe_tasks()
            .set_tasks(Some(arns.clone()))
            .send()
            .await
            .unwrap();
        d.tasks()
            .iter()
            .all(|t| t.last_status() == Some("RUNNING"))
            .then_some(())
    })
    .await;
    ecs.stop_task()
        .task(&arns[0])
        .reason("done")
        .send()
        .await
        .unwrap();
    let t = eventually(5, "task STOPPED", || async {
        let d = ecs.describe_tasks().tasks(&arns[0]).send().await.unwrap();
        let t = d.tasks()[0].clone();
        (t.last_status() == Some("STOPPED")).then_some(t)
    })
    .await;
    assert_eq!(
        t.stop_code(),
        Some(&aws_sdk_ecs::types::TaskStopCode::UserInitiated)
    );
    assert_eq!(t.stopped_reason(), Some("done"));

    // Not enough memory anywhere: a failure with the ECS reason, nothing placed.
    let big = ecs
        .register_task_definition()
        .family("big")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("x")
                .memory(100_000)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let run = ecs
        .run_task()
        .task_definition(big.task_definition.unwrap().task_definition_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert!(run.tasks().is_empty());
    assert_eq!(run.failures()[0].reason(), Some("RESOURCE:MEMORY"));
}

#[tokio::test]
async fn service_converges_rolls_out_and_survives_a_lost_host() {
    let server = TestServer::start_with(fast()).await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let mut agents = hosts(&server, 3, Behaviour::default()).await;
    let v1 = register(&ecs, "web").await;
    ecs.create_service()
        .service_name("web")
        .task_definition(&v1)
        .desired_count(4)
        .send()
        .await
        .unwrap();
    let s = eventually(10, "4 running", || async {
        let s = service(&ecs, "web").await;
        stable(&s).then_some(s)
    })
    .await;
    assert_eq!(s.running_count(), 4);
    assert!(s
        .events()
        .iter()
        .any(|e| e.message().unwrap_or_default().contains("has started")));

    // Rolling update to revision 2.
    let v2 = register(&ecs, "web").await;
    ecs.update_service()
        .service("web")
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    let s = eventually(15, "rollout to v2", || async {
        let s = service(&ecs, "web").await;
        (stable(&s) && s.deployments()[0].task_definition() == Some(v2.as_str())).then_some(s)
    })
    .await;
    assert_eq!(
        s.deployments()[0].rollout_state(),
        Some(&aws_sdk_ecs::types::DeploymentRolloutState::Completed)
    );
    let listed = ecs.list_tasks().service_name("web").send().await.unwrap();
    let d = ecs
        .describe_tasks()
        .set_tasks(Some(listed.task_arns().to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(d.tasks().len(), 4);
    assert!(d
        .tasks()
        .iter()
        .all(|t| t.task_definition_arn() == Some(v2.as_str())));

    // A host vanishes: its tasks are reported STOPPED and replaced elsewhere.
    let lost = agents.remove(0);
    let lost_arn = lost.instance_arn.clone();
    lost.kill();
    eventually(15, "replacement after host loss", || async {
        let s = service(&ecs, "web").await;
        let listed = ecs.list_tasks().service_name("web").send().await.unwrap();
        let d = ecs
            .describe_tasks()
            .set_tasks(Some(listed.task_arns().to_vec()))
            .send()
            .await
            .unwrap();
        let elsewhere = d
            .tasks()
            .iter()
            .all(|t| t.container_instance_arn() != Some(lost_arn.as_str()));
        (stable(&s) && s.running_count() == 4 && elsewhere).then_some(())
    })
    .await;

    // Delete with force: DRAINING, then INACTIVE once its tasks are gone.
    let del = ecs
        .delete_service()
        .service("web")
        .force(true)
        .send()
        .await
        .unwrap();
    assert_eq!(del.service.unwrap().status(), Some("DRAINING"));
    eventually(10, "service INACTIVE", || async {
        (service(&ecs, "web").await.status() == Some("INACTIVE")).then_some(())
    })
    .await;
    // The name can be used again.
    ecs.create_service()
        .service_name("web")
        .task_definition(&v2)
        .desired_count(1)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn failing_rollout_trips_the_breaker_and_rolls_back() {
    let server = TestServer::start_with(fast()).await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let behaviour = Behaviour {
        fail_families: vec!["broken".into()],
        ..Default::default()
    };
    let _agents = hosts(&server, 2, behaviour).await;
    let good = register(&ecs, "web").await;
    ecs.create_service()
        .service_name("web")
        .task_definition(&good)
        .desired_count(2)
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .deployment_circuit_breaker(
                    DeploymentCircuitBreaker::builder()
                        .enable(true)
                        .rollback(true)
                        .build(),
                )
                .maximum_percent(200)
                .minimum_healthy_percent(50)
                .build(),
        )
        .send()
        .await
        .unwrap();
    eventually(10, "stable on v1", || async {
        stable(&service(&ecs, "web").await).then_some(())
    })
    .await;

    // A revision whose tasks never start (the simulated host fails family "broken").
    let bad = ecs
        .register_task_definition()
        .family("broken")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("x")
                .memory(128)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string();
    ecs.update_service()
        .service("web")
        .task_definition(&bad)
        .send()
        .await
        .unwrap();
    let s = eventually(30, "rollback to v1", || async {
        let s = service(&ecs, "web").await;
        (stable(&s) && s.task_definition() == Some(good.as_str())).then_some(s)
    })
    .await;
    assert_eq!(s.running_count(), 2);
    let failed = s.events().iter().any(|e| {
        e.message()
            .unwrap_or_default()
            .contains("deployment failed")
    });
    assert!(
        failed,
        "an event says the deployment failed: {:#?}",
        s.events()
            .iter()
            .map(|e| e.message().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn daemon_follows_instances() {
    let server = TestServer::start_with(fast()).await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let mut agents = hosts(&server, 2, Behaviour::default()).await;
    let td = register(&ecs, "agent").await;
    ecs.create_service()
        .service_name("logs")
        .task_definition(&td)
        .scheduling_strategy(aws_sdk_ecs::types::SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap();
    let on_each = |n: i32| {
        let ecs = ecs.clone();
        move || {
            let ecs = ecs.clone();
            async move {
                let s = service(&ecs, "logs").await;
                (s.desired_count() == n && stable(&s)).then_some(())
            }
        }
    };
    eventually(10, "one task on each of 2 hosts", on_each(2)).await;

    // A new instance gets its daemon task.
    agents.extend(hosts(&server, 1, Behaviour::default()).await);
    eventually(10, "one task on each of 3 hosts", on_each(3)).await;
    let listed = ecs.list_tasks().service_name("logs").send().await.unwrap();
    let d = ecs
        .describe_tasks()
        .set_tasks(Some(listed.task_arns().to_vec()))
        .send()
        .await
        .unwrap();
    let mut instances: Vec<_> = d
        .tasks()
        .iter()
        .map(|t| t.container_instance_arn().unwrap().to_string())
        .collect();
    instances.sort();
    instances.dedup();
    assert_eq!(instances.len(), 3, "one per instance");

    // A draining instance loses it.
    let drained = agents[0].instance_arn.clone();
    ecs.update_container_instances_state()
        .container_instances(&drained)
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    eventually(10, "daemon off the draining host", || async {
        let listed = ecs.list_tasks().service_name("logs").send().await.unwrap();
        let d = ecs
            .describe_tasks()
            .set_tasks(Some(listed.task_arns().to_vec()))
            .send()
            .await
            .unwrap();
        let s = service(&ecs, "logs").await;
        (s.desired_count() == 2
            && stable(&s)
            && d.tasks()
                .iter()
                .all(|t| t.container_instance_arn() != Some(drained.as_str())))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn stopped_tasks_are_forgotten_after_the_retention() {
    let mut config = fast();
    config.controllers.stopped_task_retention = Duration::from_millis(300);
    let server = TestServer::start_with(config).await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let _hosts = hosts(&server, 1, Behaviour::default()).await;
    let td = register(&ecs, "web").await;
    let run = ecs.run_task().task_definition(&td).send().await.unwrap();
    let arn = run.tasks()[0].task_arn().unwrap().to_string();
    ecs.stop_task().task(&arn).send().await.unwrap();
    eventually(5, "STOPPED and listed", || async {
        let l = ecs
            .list_tasks()
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
            .send()
            .await
            .unwrap();
        (l.task_arns() == [arn.clone()]).then_some(())
    })
    .await;
    eventually(5, "forgotten", || async {
        let d = ecs.describe_tasks().tasks(&arn).send().await.unwrap();
        (d.failures().first().and_then(|f| f.reason()) == Some("MISSING")).then_some(())
    })
    .await;
    // Forgotten for good: a restart does not bring it back.
    let dir = server.data_dir.clone();
    let tmp = server.stop().await;
    let server = TestServer::start_in(dir).await;
    let d = server
        .sdk(&ALICE)
        .describe_tasks()
        .tasks(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(d.failures()[0].reason(), Some("MISSING"));
    drop(tmp);
}

/// The ECS API's own agent calls (what a stock ECS agent would use) move a
/// task along its lifecycle like the gateway does, and never backwards.
#[tokio::test]
async fn submit_state_change_calls() {
    let server = TestServer::start_with(fast()).await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let _hosts = hosts(&server, 1, Behaviour::default()).await;
    let td = register(&ecs, "web").await;
    let arn = ecs
        .run_task()
        .task_definition(&td)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();
    eventually(5, "RUNNING", || async {
        let d = ecs.describe_tasks().tasks(&arn).send().await.unwrap();
        (d.tasks()[0].last_status() == Some("RUNNING")).then_some(())
    })
    .await;
    let ack = ecs
        .submit_container_state_change()
        .task(&arn)
        .container_name("app")
        .status("STOPPED")
        .exit_code(7)
        .reason("boom")
        .send()
        .await
        .unwrap();
    assert_eq!(ack.acknowledgment(), Some("ACK"));
    ecs.submit_task_state_change()
        .task(&arn)
        .status("STOPPED")
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();
    // A late RUNNING report cannot revive it.
    ecs.submit_task_state_change()
        .task(&arn)
        .status("RUNNING")
        .send()
        .await
        .unwrap();
    let t = ecs
        .describe_tasks()
        .tasks(&arn)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .clone();
    assert_eq!(t.last_status(), Some("STOPPED"));
    assert_eq!(
        t.stop_code(),
        Some(&aws_sdk_ecs::types::TaskStopCode::EssentialContainerExited)
    );
    assert_eq!(t.containers()[0].exit_code(), Some(7));
    assert_eq!(t.containers()[0].reason(), Some("boom"));
    let bad = ecs
        .submit_task_state_change()
        .task("nope")
        .status("RUNNING")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        bad.into_service_error().meta().code(),
        Some("InvalidParameterException")
    );
}
