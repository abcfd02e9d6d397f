//! ListTasks filters end to end, on simulated agents: every filter (and
//! every combination the server serves from an index) must return exactly
//! the tasks a plain filter over DescribeTasks would, in the same order
//! (task id), page by page.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, DesiredStatus, Task};
use common::{TestServer, ALICE};
use flotilla_sim::{Behaviour, HostSpec, SimAgent};

/// Every page of ListTasks as built by `list`, walked with a small page size.
async fn walk(
    list: impl Fn() -> aws_sdk_ecs::operation::list_tasks::builders::ListTasksFluentBuilder,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = list()
            .max_results(3)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        out.extend(page.task_arns().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

fn id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

/// The ARNs of `tasks` that satisfy `keep`, in task id order.
fn expected(tasks: &[Task], keep: impl Fn(&Task) -> bool) -> Vec<String> {
    let mut out: Vec<String> = tasks
        .iter()
        .filter(|t| keep(t))
        .map(|t| t.task_arn().unwrap().to_string())
        .collect();
    out.sort_by(|a, b| id(a).cmp(id(b)));
    out
}

#[tokio::test]
async fn every_filter_matches_a_scan_page_by_page() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let client = server.raw(&ALICE);
    let mut hosts = Vec::new();
    for _ in 0..2 {
        hosts.push(
            SimAgent::start(
                &client,
                HostSpec::new("default", 4096, 8192),
                Behaviour::default(),
            )
            .await
            .unwrap(),
        );
    }
    for family in ["web", "worker"] {
        let app = ContainerDefinition::builder()
            .name("app")
            .image("flotilla-test:latest")
            .memory(16)
            .build();
        ecs.register_task_definition()
            .family(family)
            .container_definitions(app)
            .send()
            .await
            .unwrap();
    }
    // 2 families x 3 starters x 2-3 tasks, spread over both hosts.
    for (family, starter, count) in [
        ("web", "a", 3),
        ("web", "b", 2),
        ("worker", "a", 2),
        ("worker", "c", 3),
        ("web", "c", 2),
        ("worker", "b", 2),
    ] {
        let run = ecs
            .run_task()
            .task_definition(family)
            .started_by(starter)
            .count(count)
            .send()
            .await
            .unwrap();
        assert_eq!(run.tasks().len(), count as usize, "{:?}", run.failures());
    }
    let all_arns = walk(|| ecs.list_tasks()).await;
    assert_eq!(all_arns.len(), 14);
    let describe = ecs
        .describe_tasks()
        .set_tasks(Some(all_arns.clone()))
        .send()
        .await
        .unwrap();
    let mut tasks = describe.tasks().to_vec();
    // Stop two of starter "a"'s: they leave the default (RUNNING) listings.
    let stopped: BTreeSet<String> = tasks
        .iter()
        .filter(|t| t.started_by() == Some("a"))
        .take(2)
        .map(|t| t.task_arn().unwrap().to_string())
        .collect();
    for arn in &stopped {
        ecs.stop_task().task(arn).send().await.unwrap();
    }
    for t in &mut tasks {
        if stopped.contains(t.task_arn().unwrap()) {
            *t = ecs
                .describe_tasks()
                .tasks(t.task_arn().unwrap())
                .send()
                .await
                .unwrap()
                .tasks()[0]
                .clone();
        }
    }
    let running = |t: &Task| t.desired_status() == Some("RUNNING");
    let family = |t: &Task, f: &str| {
        t.task_definition_arn()
            .unwrap()
            .contains(&format!("task-definition/{f}:"))
    };
    let host0 = hosts[0].instance_arn.clone();

    assert_eq!(walk(|| ecs.list_tasks()).await, expected(&tasks, running));
    assert_eq!(
        walk(|| ecs.list_tasks().started_by("a")).await,
        expected(&tasks, |t| running(t) && t.started_by() == Some("a"))
    );
    assert_eq!(
        walk(|| ecs.list_tasks().started_by("c")).await,
        expected(&tasks, |t| running(t) && t.started_by() == Some("c"))
    );
    assert_eq!(
        walk(|| ecs.list_tasks().started_by("nobody")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        walk(|| ecs.list_tasks().family("web")).await,
        expected(&tasks, |t| running(t) && family(t, "web"))
    );
    assert_eq!(
        walk(|| ecs.list_tasks().family("we")).await,
        Vec::<String>::new(),
        "a family is matched whole, not by prefix"
    );
    assert_eq!(
        walk(|| ecs.list_tasks().family("worker").started_by("b")).await,
        expected(&tasks, |t| running(t)
            && family(t, "worker")
            && t.started_by() == Some("b"))
    );
    assert_eq!(
        walk(|| ecs.list_tasks().container_instance(&host0)).await,
        expected(&tasks, |t| running(t)
            && t.container_instance_arn() == Some(host0.as_str()))
    );
    assert_eq!(
        walk(|| ecs.list_tasks().container_instance(&host0).family("web")).await,
        expected(&tasks, |t| running(t)
            && family(t, "web")
            && t.container_instance_arn() == Some(host0.as_str()))
    );
    let stopped_a = walk(|| {
        ecs.list_tasks()
            .started_by("a")
            .desired_status(DesiredStatus::Stopped)
    })
    .await;
    assert_eq!(
        stopped_a,
        expected(&tasks, |t| t.desired_status() == Some("STOPPED"))
    );
    assert_eq!(stopped_a.len(), 2);
}

/// Tasks forgotten after the retention leave every index.
#[tokio::test]
async fn forgotten_tasks_leave_the_indexes() {
    let mut config = flotilla_server::Config::default();
    config.controllers.stopped_task_retention = Duration::from_millis(200);
    let server = TestServer::start_with(config).await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().send().await.unwrap();
    let _host = SimAgent::start(
        &server.raw(&ALICE),
        HostSpec::new("default", 4096, 8192),
        Behaviour::default(),
    )
    .await
    .unwrap();
    let app = ContainerDefinition::builder()
        .name("app")
        .image("flotilla-test:latest")
        .memory(16)
        .build();
    ecs.register_task_definition()
        .family("job")
        .container_definitions(app)
        .send()
        .await
        .unwrap();
    let run = ecs
        .run_task()
        .task_definition("job")
        .started_by("ci")
        .count(2)
        .send()
        .await
        .unwrap();
    let arns: Vec<String> = run
        .tasks()
        .iter()
        .map(|t| t.task_arn().unwrap().to_string())
        .collect();
    for arn in &arns {
        ecs.stop_task().task(arn).send().await.unwrap();
    }
    let listed = || async {
        let by = ecs
            .list_tasks()
            .started_by("ci")
            .desired_status(DesiredStatus::Stopped)
            .send()
            .await
            .unwrap();
        let fam = ecs
            .list_tasks()
            .family("job")
            .desired_status(DesiredStatus::Stopped)
            .send()
            .await
            .unwrap();
        (by.task_arns().len(), fam.task_arns().len())
    };
    assert_eq!(listed().await, (2, 2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listed().await != (0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stopped tasks were never forgotten: {:?}",
            listed().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = ecs
        .describe_tasks()
        .set_tasks(Some(arns))
        .send()
        .await
        .unwrap();
    assert_eq!(d.failures().len(), 2);
}
