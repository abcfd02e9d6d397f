//! The control plane killed with SIGKILL during log ingestion: a container
//! on a real agent and the real Docker Engine writes numbered lines with
//! the awslogs driver while the `flotilla server` process it ships to is
//! killed four times (kill -9) and started again on the same data directory and
//! address. Every line must be in the stream exactly once, in order: the
//! lines the killed server had acknowledged are durable, and the batch the
//! agent had in flight is resent with its sequence token and stored once
//! (DataAlreadyAcceptedException when the dead server had committed it).
//! The agent side (an agent killed with SIGKILL) is in `logs_e2e.rs`.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{container, wait_for, KEY, REGION, SECRET};
use flotilla_agent::config::AgentConfig;
use flotilla_agent::spec::LABEL_CLUSTER;
use flotilla_agent::testing::{ensure_test_image, ContainerGuard};
use flotilla_agent::HostAgent;
use flotilla_client::Client;
use serde_json::{json, Value};

/// Lines the container writes to each of stdout and stderr, about 2 ms
/// apart (some 17 s of output).
const LINES: usize = 8000;
const GROUP: &str = "/ecs/logs-crash";
/// This test's addresses (its own loopback addresses, apart from other tests').
const SERVER_IP: &str = "127.0.6.31";
const AGENT_IP: &str = "127.0.6.32";

/// A `flotilla server` child process on a fixed address and data directory.
struct Server {
    child: Child,
}

impl Server {
    fn start(listen: &str, data_dir: &Path, credentials: &Path) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .arg("--credentials")
            .arg(credentials)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn flotilla server");
        Server { child }
    }

    /// SIGKILL, then reap.
    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on `ip` (bound and released; the server binds it next).
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .expect("bind a loopback address of this test")
        .local_addr()
        .unwrap()
        .port()
}

async fn serving(ecs: &Client) {
    wait_for("the server to serve", Duration::from_secs(60), || async {
        ecs.call::<Value, Value>("ListClusters", &json!({}))
            .await
            .ok()
            .map(|_| ())
    })
    .await
}

/// Every event of the stream, from its head, through GetLogEvents' forward
/// tokens; None while the server does not answer.
async fn stream_messages(logs: &Client, stream: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req =
            json!({"logGroupName": GROUP, "logStreamName": stream, "startFromHead": true});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let v: Value = logs.call("GetLogEvents", &req).await.ok()?;
        let events = v["events"].as_array()?;
        let next = v["nextForwardToken"].as_str()?.to_string();
        if events.is_empty() || token.as_deref() == Some(next.as_str()) {
            return Some(out);
        }
        out.extend(
            events
                .iter()
                .map(|e| e["message"].as_str().unwrap_or_default().to_string()),
        );
        token = Some(next);
    }
}

async fn wait_lines(logs: &Client, stream: &str, at_least: usize, limit: Duration) -> Vec<String> {
    wait_for(&format!("{at_least} lines in {stream}"), limit, || async {
        let got = stream_messages(logs, stream).await?;
        (got.len() >= at_least).then_some(got)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_killed_during_ingestion_loses_and_repeats_no_line() {
    let docker = bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    ensure_test_image(&docker).await.expect("test image");
    let cluster = format!("logs-crash-{}", std::process::id());
    let _guard = ContainerGuard::new(&docker, LABEL_CLUSTER, &cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("server");
    let credentials = dir.path().join("credentials.toml");
    std::fs::write(
        &credentials,
        format!("[[principal]]\nname = \"e2e\"\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\naccount_id = \"123456789012\"\n"),
    )
    .unwrap();
    let listen = format!("{SERVER_IP}:{}", free_port(SERVER_IP));
    let endpoint = format!("http://{listen}");
    let ecs = Client::ecs(&endpoint, KEY, SECRET, REGION);
    let logs = ecs.for_service("logs", "Logs_20140328");

    let mut server = Server::start(&listen, &data, &credentials);
    serving(&ecs).await;
    ecs.call::<Value, Value>("CreateCluster", &json!({"clusterName": cluster}))
        .await
        .unwrap();

    // The agent in this process: it outlives the servers and reconnects.
    let config = AgentConfig {
        cluster: cluster.clone(),
        host_ip: AGENT_IP.to_string(),
        metadata_port: Some(0),
        stop_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let host = HostAgent::register(
        ecs.clone(),
        config,
        &dir.path().join("agent"),
        std::future::pending(),
    )
    .await
    .expect("register");
    let instance = host.instance_arn().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        host.run(async {
            let _ = stop_rx.await;
        })
        .await
    });

    wait_for("the agent to connect", Duration::from_secs(30), || async {
        let v: Value = ecs
            .call(
                "DescribeContainerInstances",
                &json!({"cluster": cluster, "containerInstances": [instance]}),
            )
            .await
            .ok()?;
        (v["containerInstances"][0]["agentConnected"] == true).then_some(())
    })
    .await;
    let mut app = container("app", &["lines", &LINES.to_string(), "2"]);
    app["logConfiguration"] = json!({"logDriver": "awslogs", "options": {
        "awslogs-group": GROUP, "awslogs-region": REGION, "awslogs-stream-prefix": "crash",
        "awslogs-create-group": "true", "mode": "blocking"}});
    let td: Value = ecs
        .call(
            "RegisterTaskDefinition",
            &json!({"family": "logs-crash", "containerDefinitions": [app]}),
        )
        .await
        .unwrap();
    let run: Value = ecs
        .call(
            "RunTask",
            &json!({"cluster": cluster, "count": 1,
                "taskDefinition": td["taskDefinition"]["taskDefinitionArn"]}),
        )
        .await
        .unwrap();
    let task = run["tasks"][0]["taskArn"]
        .as_str()
        .unwrap_or_else(|| panic!("RunTask: {run}"))
        .to_string();
    let stream = format!("crash/app/{}", task.rsplit('/').next().unwrap());

    // Four kills, each while the container is writing and the agent
    // shipping. A kill between a batch's commit and its answer is what makes
    // the agent's resend a duplicate unless the token is honoured: a store
    // that stored resends again failed this test in one run of two with two
    // kills, in two runs of three with four.
    let mut acknowledged: Vec<String> = Vec::new();
    for (round, at) in [(1, 2_000), (2, 5_000), (3, 8_000), (4, 11_000)] {
        let seen = wait_lines(&logs, &stream, at, Duration::from_secs(90)).await;
        assert!(
            seen.len() < 2 * LINES,
            "round {round}: the container finished before the kill ({} lines); nothing was in flight",
            seen.len()
        );
        server.kill9();
        println!(
            "round {round}: control plane killed with SIGKILL after {} lines were readable",
            seen.len()
        );
        acknowledged = seen;
        // Down long enough for the agent's batches to fail and queue up.
        tokio::time::sleep(Duration::from_millis(700)).await;
        server = Server::start(&listen, &data, &credentials);
        serving(&ecs).await;
        let after = stream_messages(&logs, &stream).await.unwrap_or_default();
        let kept: HashSet<&String> = after.iter().collect();
        let lost: Vec<&String> = acknowledged.iter().filter(|m| !kept.contains(m)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: lines readable before the kill are gone after the restart: {lost:?}"
        );
    }

    wait_for("the task to stop", Duration::from_secs(90), || async {
        let v: Value = ecs
            .call(
                "DescribeTasks",
                &json!({"cluster": cluster, "tasks": [task]}),
            )
            .await
            .ok()?;
        (v["tasks"][0]["lastStatus"] == "STOPPED").then_some(())
    })
    .await;
    let all = wait_lines(&logs, &stream, 2 * LINES, Duration::from_secs(90)).await;
    // A moment more: a duplicate would arrive after the last line.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = stream_messages(&logs, &stream).await.unwrap_or(all);
    for prefix in ["out", "err"] {
        let lines: Vec<&String> = all.iter().filter(|m| m.starts_with(prefix)).collect();
        let want: Vec<String> = (1..=LINES).map(|i| format!("{prefix} {i}")).collect();
        let want: Vec<&String> = want.iter().collect();
        if lines != want {
            let mut seen = HashSet::new();
            let twice: Vec<&&String> = lines.iter().filter(|m| !seen.insert(**m)).take(5).collect();
            panic!(
                "{prefix}: {} lines for {LINES}, first repeated {twice:?}; every line once, in order",
                lines.len()
            );
        }
    }
    assert_eq!(all.len(), 2 * LINES, "nothing else in the stream");
    assert!(acknowledged.len() >= 11_000);

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    drop(server);
}
