//! End to end: the control plane in-process, agents on the real Docker
//! Engine with the `flotilla-test` image, everything through the ECS API.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{container, data_dir, wait_for, Env};
use flotilla_agent::spec::{
    LABEL_CLUSTER, LABEL_CONTAINER_NAME, LABEL_FAMILY, LABEL_INSTANCE, LABEL_TASK_ARN,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_stop_a_task() {
    let env = Env::start("e2e-run").await;
    let agent = env.agent("a", "127.0.0.1").await;
    env.wait_connected(&agent.arn, true).await;
    let instance = env.instance(&agent.arn).await;
    assert_eq!(instance["status"], "ACTIVE");
    assert!(
        instance["versionInfo"]["agentVersion"].is_string(),
        "{instance}"
    );
    assert!(
        instance["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "e2e.agent" && a["value"] == "a"),
        "{instance}"
    );

    let td = env
        .register_task_definition("e2e-sleep", json!([container("app", &["sleep"])]))
        .await;
    let task = env.run_task(&td, 1).await.remove(0);
    let t = env.wait_task(&task, "RUNNING").await;
    assert_eq!(t["containerInstanceArn"], agent.arn.as_str());
    assert_eq!(t["containers"][0]["lastStatus"], "RUNNING");

    let containers = env.containers_of(&task).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    let labels = containers[0].labels.clone().unwrap();
    assert_eq!(labels[LABEL_CLUSTER], env.cluster);
    assert_eq!(labels[LABEL_TASK_ARN], task);
    assert_eq!(labels[LABEL_CONTAINER_NAME], "app");
    assert_eq!(labels[LABEL_FAMILY], "e2e-sleep");
    assert_eq!(labels[LABEL_INSTANCE], agent.arn);
    assert_eq!(
        containers[0].state,
        Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
    );

    env.call(
        "StopTask",
        json!({"cluster": env.cluster, "task": task, "reason": "e2e"}),
    )
    .await;
    let t = env.wait_task(&task, "STOPPED").await;
    assert_eq!(t["stopCode"], "UserInitiated", "{t}");
    assert_eq!(t["stoppedReason"], "e2e", "{t}");
    // The test program exits 0 on SIGTERM.
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t}");
    agent.stop().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_essential_container_exiting_stops_the_task() {
    let env = Env::start("e2e-essential").await;
    let agent = env.agent("a", "127.0.0.1").await;
    env.wait_connected(&agent.arn, true).await;
    let mut side = container("side", &["sleep"]);
    side["essential"] = json!(false);
    let td = env
        .register_task_definition(
            "e2e-essential",
            json!([container("main", &["exit", "3", "1000"]), side]),
        )
        .await;
    let task = env.run_task(&td, 1).await.remove(0);
    let t = env.wait_task(&task, "STOPPED").await;
    assert_eq!(t["stopCode"], "EssentialContainerExited", "{t}");
    let by_name = |n: &str| {
        t["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("main")["exitCode"], 3, "{t}");
    assert_eq!(by_name("side")["lastStatus"], "STOPPED", "{t}");
    agent.stop().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_comes_back_as_the_same_instance_and_adopts_its_containers() {
    let env = Env::start("e2e-restart").await;
    let dir = data_dir(&env, "agent-proc");
    let mut proc = env.agent_process(&dir, "127.0.0.1");
    // The registration is written to the data dir once it is done.
    let arn = wait_for("the agent to register", Duration::from_secs(30), || async {
        flotilla_agent::host::SavedInstance::load(&dir).map(|s| s.container_instance_arn)
    })
    .await;
    env.wait_connected(&arn, true).await;
    let td = env
        .register_task_definition("e2e-restart", json!([container("app", &["sleep"])]))
        .await;
    let task = env.run_task(&td, 1).await.remove(0);
    env.wait_task(&task, "RUNNING").await;
    let before = env.containers_of(&task).await;
    assert_eq!(before.len(), 1);

    proc.kill9();
    // The kernel closes the socket of a killed process, so the gateway
    // notices at once (not only after the heartbeat timeout).
    env.wait_connected(&arn, false).await;
    let mut proc = env.agent_process(&dir, "127.0.0.1");
    env.wait_connected(&arn, true).await;
    let instances = env
        .call("ListContainerInstances", json!({"cluster": env.cluster}))
        .await;
    assert_eq!(
        instances["containerInstanceArns"],
        json!([arn]),
        "re-registered as the same instance"
    );

    // Still running, in the very same container, and the agent reports it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = env.containers_of(&task).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, before[0].id);
    assert_eq!(
        after[0].state,
        Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
    );
    assert_eq!(env.task(&task).await["lastStatus"], "RUNNING");

    // And it still manages it.
    env.call("StopTask", json!({"cluster": env.cluster, "task": task}))
        .await;
    let t = env.wait_task(&task, "STOPPED").await;
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t}");

    // SIGTERM ends the agent cleanly.
    let status = proc.terminate();
    assert!(status.success(), "{status:?}");
    env.stop().await;
}

/// GET / over HTTP/1.0 from `addr`; the body.
fn http_get(addr: &str) -> Option<String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_on_one_machine_each_bind_the_same_static_port() {
    const PORT: u16 = 38211;
    let env = Env::start("e2e-two").await;
    let a = env.agent("a", "127.0.0.2").await;
    let b = env.agent("b", "127.0.0.3").await;
    env.wait_connected(&a.arn, true).await;
    env.wait_connected(&b.arn, true).await;
    let mut web = container("web", &["serve", "8080", "hello"]);
    web["portMappings"] = json!([{"containerPort": 8080, "hostPort": PORT}]);
    let td = env.register_task_definition("e2e-web", json!([web])).await;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        tasks.extend(env.run_task(&td, 1).await);
    }
    let mut placed = Vec::new();
    for task in &tasks {
        let t = env.wait_task(task, "RUNNING").await;
        placed.push(t["containerInstanceArn"].as_str().unwrap().to_string());
        let binding = &t["containers"][0]["networkBindings"][0];
        assert_eq!(binding["hostPort"], PORT, "{t}");
    }
    placed.sort();
    let mut want = vec![a.arn.clone(), b.arn.clone()];
    want.sort();
    assert_eq!(
        placed, want,
        "one task per instance: the port is taken on the first"
    );
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let addr = format!("{ip}:{PORT}");
        let body = wait_for(
            &format!("HTTP on {addr}"),
            Duration::from_secs(10),
            || async {
                let addr = addr.clone();
                tokio::task::spawn_blocking(move || http_get(&addr))
                    .await
                    .unwrap()
            },
        )
        .await;
        assert_eq!(body.trim(), "hello");
    }
    // A third task has nowhere to go.
    let v = env
        .call(
            "RunTask",
            json!({"cluster": env.cluster, "taskDefinition": td}),
        )
        .await;
    assert_eq!(v["tasks"], json!([]), "{v}");
    assert!(
        v["failures"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("PORTS"),
        "{v}"
    );

    for task in &tasks {
        env.call("StopTask", json!({"cluster": env.cluster, "task": task}))
            .await;
    }
    for task in &tasks {
        env.wait_task(task, "STOPPED").await;
    }
    a.stop().await;
    b.stop().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_a_control_plane_and_one_connected_agent() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--metadata-port",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed on drop, should the test fail.
    let mut child = common::AgentProcess { child };
    let stdout = child.child.stdout.take().unwrap();
    let vars: std::collections::HashMap<String, String> = std::io::BufReader::new(stdout)
        .lines()
        .take(4)
        .map(|l| {
            let l = l.unwrap();
            let (k, v) = l.strip_prefix("export ").unwrap().split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let client = flotilla_client::Client::ecs(
        &vars["AWS_ENDPOINT_URL"],
        &vars["AWS_ACCESS_KEY_ID"],
        &vars["AWS_SECRET_ACCESS_KEY"],
        &vars["AWS_DEFAULT_REGION"],
    );
    assert!(vars["AWS_ENDPOINT_URL"].starts_with("http://127.0.0.1:"));
    wait_for(
        "the dev agent to connect",
        Duration::from_secs(30),
        || async {
            let list: serde_json::Value = client
                .call("ListContainerInstances", &json!({"cluster": "default"}))
                .await
                .ok()?;
            let arn = list["containerInstanceArns"][0].as_str()?.to_string();
            let d: serde_json::Value = client
                .call(
                    "DescribeContainerInstances",
                    &json!({"cluster": "default", "containerInstances": [arn]}),
                )
                .await
                .ok()?;
            (d["containerInstances"][0]["agentConnected"] == true).then_some(())
        },
    )
    .await;
    let status = child.terminate();
    assert!(status.success(), "{status:?}");
}
