//! Self-healing, end to end: the control plane in-process with the
//! settings `flotilla server` runs (controllers resyncing every 1 s), two
//! in-process agents on the real Docker Engine (host IPs 127.0.0.2 and
//! 127.0.0.3, zones a and b), a 4-task REPLICA service created with
//! CreateService, everything observed through the ECS API and Docker.
//!
//! One task's container is killed behind Flotilla's back (`docker kill`,
//! through the Docker API). ECS reports such a task STOPPED with stop code
//! `EssentialContainerExited`, reason "Essential container in task exited"
//! and the container's exit code 137; the service scheduler replaces it on
//! the instance the default spread (zone, then instance) leaves short, and
//! the service is back at 4 RUNNING, with 4 containers really running.

#[path = "deploy_harness/mod.rs"]
mod deploy_harness;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
};
use deploy_harness::{container, epoch, stable, wait_for, Env};
use flotilla_agent::spec::LABEL_TASK_ARN;
use futures_util::StreamExt;
use serde_json::{json, Value};

const DESIRED: usize = 4;

/// The task's ARN → its tasks' `containerInstanceArn`, for the RUNNING ones.
fn running_by_task(tasks: &[Value]) -> BTreeMap<String, String> {
    tasks
        .iter()
        .filter(|t| t["lastStatus"] == "RUNNING" && t["desiredStatus"] == "RUNNING")
        .map(|t| {
            (
                t["taskArn"].as_str().unwrap().to_string(),
                t["containerInstanceArn"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn per_instance(running: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for instance in running.values() {
        *out.entry(instance.clone()).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_container_is_replaced_and_the_service_recovers() {
    let started = Instant::now();
    let env = Env::start_with("heal", 2, flotilla_server::Config::default()).await;
    let agents: BTreeSet<String> = env.agents.iter().map(|a| a.arn.clone()).collect();
    assert_eq!(agents.len(), 2);

    let td = env
        .register("heal", json!([container("app", &["sleep"])]))
        .await;
    let config = json!({"minimumHealthyPercent": 100, "maximumPercent": 200});
    let created = env.create_service("web", &td, DESIRED as u32, config).await;
    assert_eq!(
        created["service"]["schedulingStrategy"], "REPLICA",
        "{created:#}"
    );
    let (s, _) = env
        .wait_stable_on(
            "web",
            &td,
            Duration::from_secs(60),
            Duration::from_millis(50),
        )
        .await;
    assert_eq!(s["runningCount"], DESIRED);
    let deployment = s["deployments"][0]["id"].as_str().unwrap().to_string();

    // 4 RUNNING, spread 2/2 over the two instances (zones a and b).
    let before = running_by_task(&env.tasks("web").await);
    assert_eq!(before.len(), DESIRED, "{before:#?}");
    let spread = per_instance(&before);
    assert_eq!(
        spread.keys().cloned().collect::<BTreeSet<_>>(),
        agents,
        "every instance holds a task: {spread:?}"
    );
    assert!(
        spread.values().all(|&n| n == DESIRED / 2),
        "default spread places 2/2: {spread:?}"
    );
    let docker_before: BTreeSet<String> = env
        .running_containers()
        .await
        .into_iter()
        .map(|(arn, _)| arn)
        .collect();
    assert_eq!(
        docker_before,
        before.keys().cloned().collect::<BTreeSet<_>>(),
        "Docker runs exactly the RUNNING tasks"
    );

    // Kill one task's container behind the agent's back.
    let (victim, victim_instance) = before
        .iter()
        .next()
        .map(|(t, i)| (t.clone(), i.clone()))
        .unwrap();
    let victim_container = container_of(&env, &victim).await;
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["die".to_string()]),
        ("container".to_string(), vec![victim_container.clone()]),
    ]);
    // Docker's event stream only subscribes when first polled: ask for the
    // events since just before the kill instead.
    let since = format!("{:.6}", epoch());
    let killed_at = Instant::now();
    env.docker
        .kill_container(
            &victim_container,
            Some(KillContainerOptions {
                signal: "SIGKILL".into(),
            }),
        )
        .await
        .expect("docker kill");
    let mut die = env.docker.events(Some(EventsOptions {
        since: Some(since),
        filters: Some(filters),
        ..Default::default()
    }));
    let ev = tokio::time::timeout(Duration::from_secs(10), die.next())
        .await
        .expect("Docker reports the die event")
        .expect("event stream")
        .expect("event");
    assert_eq!(ev.action.as_deref(), Some("die"));
    assert_eq!(
        ev.actor
            .and_then(|a| a.attributes)
            .and_then(|a| a.get("exitCode").cloned())
            .as_deref(),
        Some("137")
    );

    // The killed task is STOPPED, as ECS reports an essential container exit.
    let stopped = wait_for(
        "the killed task STOPPED",
        Duration::from_secs(30),
        || async {
            let v = env
                .call(
                    "DescribeTasks",
                    json!({"cluster": env.cluster, "tasks": [victim]}),
                )
                .await;
            let t = v["tasks"][0].clone();
            (t["lastStatus"] == "STOPPED").then_some(t)
        },
    )
    .await;
    let seen_stopped = killed_at.elapsed();
    assert_eq!(stopped["desiredStatus"], "STOPPED", "{stopped:#}");
    assert_eq!(
        stopped["stopCode"], "EssentialContainerExited",
        "{stopped:#}"
    );
    assert_eq!(
        stopped["stoppedReason"], "Essential container in task exited",
        "{stopped:#}"
    );
    assert_eq!(
        stopped["containers"][0]["lastStatus"], "STOPPED",
        "{stopped:#}"
    );
    assert_eq!(stopped["containers"][0]["exitCode"], 137, "{stopped:#}");
    assert!(
        stopped["stoppedAt"].as_f64().is_some() && stopped["executionStoppedAt"].as_f64().is_some(),
        "{stopped:#}"
    );

    // A replacement, RUNNING, from the same deployment, on the instance that
    // lost a task (the spread puts it where the group is short).
    let (replacement, t) = wait_for(
        "a replacement task RUNNING",
        Duration::from_secs(30),
        || async {
            let tasks = env.tasks("web").await;
            tasks
                .into_iter()
                .filter(|t| t["lastStatus"] == "RUNNING" && t["desiredStatus"] == "RUNNING")
                .find(|t| !before.contains_key(t["taskArn"].as_str().unwrap()))
                .map(|t| (t["taskArn"].as_str().unwrap().to_string(), t))
        },
    )
    .await;
    let seen_replaced = killed_at.elapsed();
    assert_eq!(t["startedBy"], deployment.as_str(), "{t:#}");
    assert_eq!(t["group"], "service:web", "{t:#}");
    assert_eq!(
        t["containerInstanceArn"],
        victim_instance.as_str(),
        "replaced where the spread is short: {t:#}"
    );
    assert!(
        t["createdAt"].as_f64().unwrap() >= stopped["stoppedAt"].as_f64().unwrap(),
        "placed after the stop was recorded"
    );

    // The service is back at 4, and says so.
    let (s, _) = env
        .wait_stable_on(
            "web",
            &td,
            Duration::from_secs(30),
            Duration::from_millis(50),
        )
        .await;
    assert_eq!(s["runningCount"], DESIRED, "{s:#}");
    assert_eq!(
        s["deployments"][0]["id"],
        deployment.as_str(),
        "no new deployment: {s:#}"
    );
    let short = replacement.rsplit('/').next().unwrap();
    assert!(
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"] == format!("(service web) has started 1 tasks: (task {short}).")),
        "a service event names the replacement: {:#}",
        s["events"]
    );
    let after = running_by_task(&env.tasks("web").await);
    let mut expected: BTreeSet<String> = before.keys().filter(|t| **t != victim).cloned().collect();
    expected.insert(replacement.clone());
    assert_eq!(
        after.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "3 original tasks + the replacement"
    );
    assert!(
        per_instance(&after).values().all(|&n| n == DESIRED / 2),
        "2/2 again: {after:#?}"
    );

    // Docker really runs 4 containers of the service: those tasks, and the
    // killed one's container is exited with 137, not restarted.
    let docker_after: Vec<String> = env
        .running_containers()
        .await
        .into_iter()
        .map(|(arn, _)| arn)
        .collect();
    assert_eq!(docker_after.len(), DESIRED, "{docker_after:#?}");
    assert_eq!(docker_after.into_iter().collect::<BTreeSet<_>>(), expected);
    let info = env
        .docker
        .inspect_container(&victim_container, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let state = info.state.unwrap();
    assert_eq!((state.running, state.exit_code), (Some(false), Some(137)));

    eprintln!(
        "kill -> STOPPED seen {seen_stopped:?}, -> replacement RUNNING seen {seen_replaced:?}; test took {:?}",
        started.elapsed()
    );
    assert!(stable(&s));
    env.stop().await;
}

/// The Docker container id of a one-container task.
async fn container_of(env: &Env, task_arn: &str) -> String {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_TASK_ARN}={task_arn}")],
    )]);
    let list = env
        .docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(list.len(), 1, "one container for {task_arn}: {list:#?}");
    list[0].id.clone().unwrap()
}
