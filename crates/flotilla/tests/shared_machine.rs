//! Several `flotilla agent` processes on one machine and one Docker Engine,
//! told only their `--host-ip`: each is its own container instance, with
//! its own state folder and metadata endpoint; a second agent on a folder
//! already in use is refused.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{container, wait_for, AgentProcess, Env, KEY, REGION, SECRET};
use flotilla_agent::host::SavedInstance;
use serde_json::json;

/// `flotilla agent --host-ip IP --availability-zone ZONE` with nothing else
/// about where its state goes, its state root redirected (as systemd's
/// StateDirectory= does) into the test's folder.
fn agent(env: &Env, root: &Path, host_ip: &str, zone: &str, stderr: Stdio) -> AgentProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "agent",
            "--endpoint",
            &env.endpoint,
            "--cluster",
            &env.cluster,
        ])
        .args(["--host-ip", host_ip, "--availability-zone", zone])
        .env("STATE_DIRECTORY", root)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("ECS_CONTAINER_STOP_TIMEOUT", "3s")
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn flotilla agent");
    AgentProcess { child }
}

async fn registered(dir: &Path) -> SavedInstance {
    wait_for(
        &format!("an agent to register in {}", dir.display()),
        Duration::from_secs(30),
        || async { SavedInstance::load(dir) },
    )
    .await
}

fn attribute(instance: &serde_json::Value, name: &str) -> Option<String> {
    instance["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)?["value"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_given_only_a_host_ip_are_separate_hosts() {
    let env = Env::start("shared-machine").await;
    let root = env.dir.path().join("state");
    let mut a = agent(&env, &root, "127.0.0.2", "zone-a", Stdio::null());
    let _b = agent(&env, &root, "127.0.0.3", "zone-b", Stdio::null());
    let saved_a = registered(&root.join("127.0.0.2")).await;
    let saved_b = registered(&root.join("127.0.0.3")).await;
    assert_ne!(
        saved_a.container_instance_arn,
        saved_b.container_instance_arn
    );
    let (port_a, port_b) = (
        saved_a.metadata_port.unwrap(),
        saved_b.metadata_port.unwrap(),
    );
    assert_ne!(
        port_a, port_b,
        "the two metadata endpoints share the bridge address, not the port"
    );
    env.wait_connected(&saved_a.container_instance_arn, true)
        .await;
    env.wait_connected(&saved_b.container_instance_arn, true)
        .await;

    let listed = env
        .call("ListContainerInstances", json!({"cluster": env.cluster}))
        .await;
    assert_eq!(
        listed["containerInstanceArns"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    for (saved, zone) in [(&saved_a, "zone-a"), (&saved_b, "zone-b")] {
        let instance = env.instance(&saved.container_instance_arn).await;
        assert_eq!(
            attribute(&instance, "ecs.availability-zone").as_deref(),
            Some(zone),
            "{instance}"
        );
    }

    // Each agent's containers reach their own agent's metadata endpoint.
    let fetch = container(
        "probe",
        &[
            "fetch-env",
            "ECS_CONTAINER_METADATA_URI_V4",
            "/task",
            "TaskARN",
        ],
    );
    let td = env
        .register_task_definition("shared-probe", json!([fetch]))
        .await;
    for saved in [&saved_a, &saved_b] {
        let v = env
            .call(
                "StartTask",
                json!({"cluster": env.cluster, "taskDefinition": td, "containerInstances": [saved.container_instance_arn]}),
            )
            .await;
        let task = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
        let t = env.wait_task(&task, "STOPPED").await;
        assert_eq!(
            t["containerInstanceArn"],
            saved.container_instance_arn.as_str()
        );
        assert_eq!(
            t["containers"][0]["exitCode"], 0,
            "the probe could not read its metadata: {t}"
        );
    }

    // A second agent for 127.0.0.2 is refused: the folder is taken.
    let mut dup = agent(&env, &root, "127.0.0.2", "zone-c", Stdio::piped());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = dup.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the second agent did not give up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut dup.child.stderr.take().unwrap(), &mut stderr).unwrap();
    let folder = root.join("127.0.0.2");
    assert!(
        stderr.contains("is in use by another flotilla agent"),
        "{stderr}"
    );
    assert!(stderr.contains(&folder.display().to_string()), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", a.child.id())),
        "{stderr}"
    );
    // It changed nothing: same identity, zone and port on disk and in the cluster.
    assert_eq!(SavedInstance::load(&folder).unwrap(), saved_a);
    let instance = env.instance(&saved_a.container_instance_arn).await;
    assert_eq!(
        attribute(&instance, "ecs.availability-zone").as_deref(),
        Some("zone-a"),
        "{instance}"
    );

    // Killed and started again, the agent is the same host on the same port.
    a.kill9();
    env.wait_connected(&saved_a.container_instance_arn, false)
        .await;
    let _a = agent(&env, &root, "127.0.0.2", "zone-a", Stdio::null());
    env.wait_connected(&saved_a.container_instance_arn, true)
        .await;
    let again = SavedInstance::load(&folder).unwrap();
    assert_eq!(again.container_instance_arn, saved_a.container_instance_arn);
    assert_eq!(again.metadata_port, Some(port_a));
    env.stop().await;
}
