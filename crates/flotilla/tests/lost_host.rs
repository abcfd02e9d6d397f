//! Lost hosts, end to end: the control plane in-process (controllers
//! resyncing every 200 ms, a 2 s lost-host grace), real `flotilla agent`
//! child processes on the real Docker Engine, everything through the ECS API.
//!
//! An agent that is SIGKILLed is only cut off: its containers keep running.
//! After the grace its tasks are reported STOPPED ("Host lost ...") with
//! their resources released, and the service replaces them elsewhere. When
//! the agent comes back (same data dir, so the same instance) the desired
//! set it gets no longer holds the lost task, so it stops and removes that
//! container: the task never runs twice for long.
//!
//! Self-contained on purpose (the harness in `common/` starts the server
//! with the default controller timings); the small helpers are copied from
//! there.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use flotilla_agent::spec::{LABEL_CLUSTER, LABEL_TASK_ARN};
use flotilla_agent::testing::{ensure_test_image, ContainerGuard, TEST_IMAGE};
use flotilla_auth::Credentials;
use flotilla_client::Client;
use flotilla_server::controllers::ControllerConfig;
use flotilla_store::sqlite::SqliteStore;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const KEY: &str = "AKIALOSTHOST00000001";
const SECRET: &str = "lost-host-secret-key-00000000000000000000";
const REGION: &str = "us-east-1";

/// How long an agent may stay disconnected before its tasks are lost.
const GRACE: Duration = Duration::from_secs(2);

fn credentials() -> Credentials {
    Credentials::from_toml(&format!(
        "[[principal]]\nname = \"lost\"\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\naccount_id = \"123456789012\"\n"
    ))
    .expect("test credentials")
}

/// A control plane with short controller timings, a cluster on it, and
/// clean-up of every container the cluster's agents create (by the cluster
/// label, unique per test and process), even when the test panics.
struct Env {
    endpoint: String,
    cluster: String,
    client: Client,
    docker: Docker,
    dir: tempfile::TempDir,
    server_stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Declared last: dropped after the agents a test holds are killed.
    _guard: ContainerGuard,
}

impl Env {
    async fn start(cluster: &str) -> Env {
        let docker = Docker::connect_with_local_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .unwrap();
        ensure_test_image(&docker).await.expect("test image");
        let cluster = format!("{cluster}-{}", std::process::id());
        let guard = ContainerGuard::new(&docker, LABEL_CLUSTER, &cluster).await;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("flotilla.db")).unwrap();
        let stores =
            flotilla_server::Stores::with_state(dir.path(), Arc::new(store)).expect("stores");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let config = flotilla_server::Config {
            controllers: ControllerConfig {
                lost_host_grace: GRACE,
                ..Default::default()
            },
            ..Default::default()
        };
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            flotilla_server::run_with(listener, stores, credentials(), config, async {
                let _ = rx.await;
            })
            .await
            .expect("server");
        });
        let client = Client::ecs(&endpoint, KEY, SECRET, REGION);
        let env = Env {
            endpoint,
            cluster,
            client,
            docker,
            dir,
            server_stop: Some(tx),
            server: Some(server),
            _guard: guard,
        };
        env.call("CreateCluster", json!({"clusterName": env.cluster}))
            .await;
        env
    }

    /// Calls an ECS operation; panics on an error answer.
    async fn call(&self, op: &str, req: Value) -> Value {
        self.client
            .call::<Value, Value>(op, &req)
            .await
            .unwrap_or_else(|e| panic!("{op} {req}: {e}"))
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("agent-{name}"))
    }

    /// `flotilla agent` as a child process, host ports on `host_ip`, its
    /// own data dir and its own (ephemeral) metadata port.
    fn agent_process(&self, name: &str, host_ip: &str) -> AgentProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args([
                "agent",
                "--endpoint",
                &self.endpoint,
                "--cluster",
                &self.cluster,
                "--host-ip",
                host_ip,
            ])
            .args([
                "--metadata-port",
                "0",
                "--attribute",
                &format!("lost.agent={name}"),
                "--data-dir",
            ])
            .arg(self.data_dir(name))
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("ECS_CONTAINER_STOP_TIMEOUT", "3s")
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn flotilla agent");
        AgentProcess { child }
    }

    /// The instance ARN the agent `name` registered as (written to its data
    /// dir once registration is done), once it is connected.
    async fn registered(&self, name: &str) -> String {
        let dir = self.data_dir(name);
        let arn = wait_for(
            &format!("agent {name} to register"),
            Duration::from_secs(30),
            || async {
                flotilla_agent::host::SavedInstance::load(&dir).map(|s| s.container_instance_arn)
            },
        )
        .await;
        self.wait_connected(&arn, true).await;
        arn
    }

    async fn instance(&self, arn: &str) -> Value {
        let v = self
            .call(
                "DescribeContainerInstances",
                json!({"cluster": self.cluster, "containerInstances": [arn]}),
            )
            .await;
        v["containerInstances"][0].clone()
    }

    async fn wait_connected(&self, arn: &str, connected: bool) {
        wait_for(
            &format!("agentConnected={connected} for {arn}"),
            Duration::from_secs(30),
            || async {
                (self.instance(arn).await["agentConnected"].as_bool() == Some(connected))
                    .then_some(())
            },
        )
        .await
    }

    async fn task(&self, arn: &str) -> Value {
        self.call(
            "DescribeTasks",
            json!({"cluster": self.cluster, "tasks": [arn]}),
        )
        .await["tasks"][0]
            .clone()
    }

    /// The service's tasks with desiredStatus RUNNING, described.
    async fn service_tasks(&self, service: &str) -> Vec<Value> {
        let list = self
            .call("ListTasks", json!({"cluster": self.cluster, "serviceName": service, "desiredStatus": "RUNNING"}))
            .await;
        let arns = list["taskArns"].as_array().cloned().unwrap_or_default();
        if arns.is_empty() {
            return Vec::new();
        }
        let v = self
            .call(
                "DescribeTasks",
                json!({"cluster": self.cluster, "tasks": arns}),
            )
            .await;
        v["tasks"].as_array().cloned().unwrap_or_default()
    }

    async fn service(&self, service: &str) -> Value {
        let v = self
            .call(
                "DescribeServices",
                json!({"cluster": self.cluster, "services": [service]}),
            )
            .await;
        v["services"][0].clone()
    }

    /// Docker containers (running or not) carrying `label=value`.
    async fn containers(&self, label: &str, value: &str) -> Vec<ContainerSummary> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .unwrap()
    }

    /// Task ARNs of the cluster's containers that Docker has running.
    async fn running_container_tasks(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .containers(LABEL_CLUSTER, &self.cluster)
            .await
            .into_iter()
            .filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
            .filter_map(|c| c.labels.and_then(|l| l.get(LABEL_TASK_ARN).cloned()))
            .collect();
        out.sort();
        out
    }

    async fn stop(mut self) {
        if let Some(tx) = self.server_stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        // Dropping `self` drops the guard: every container of the cluster goes.
    }
}

/// Polls `f` every 50 ms until it yields a value; panics after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `flotilla agent` child process; SIGKILLed when dropped.
struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    /// SIGKILL (what `Child::kill` sends), then reap.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn resource(instance: &Value, field: &str, name: &str) -> i64 {
    instance[field]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .and_then(|r| r["integerValue"].as_i64())
        .unwrap_or_else(|| panic!("no {name} in {field}: {instance}"))
}

/// Why three agents: the service uses `distinctInstance`, so a lost task's
/// replacement may go neither to the lost instance (its agent is
/// disconnected) nor to B (it already runs one of the service's tasks). With
/// only A and B it could not be placed until A came back, which would not
/// show that the control plane replaces lost tasks while the host is gone.
/// A spare agent C, started after the two tasks landed on A and B, is the
/// only instance that qualifies: the replacement landing there proves the
/// lost task was released and its host excluded, with the constraint kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hosts_task_is_replaced_and_its_container_stopped_when_the_agent_returns() {
    let t0 = Instant::now();
    let env = Env::start("lost-host").await;
    let mut agent_a = env.agent_process("a", "127.0.0.2");
    let _agent_b = env.agent_process("b", "127.0.0.3");
    let a = env.registered("a").await;
    let b = env.registered("b").await;
    assert_ne!(a, b);

    let td = env
        .call(
            "RegisterTaskDefinition",
            json!({"family": "lost-sleep", "containerDefinitions": [
                {"name": "app", "image": TEST_IMAGE, "command": ["sleep"], "memory": 32, "cpu": 16, "essential": true}
            ]}),
        )
        .await["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_string();
    env.call(
        "CreateService",
        json!({
            "cluster": env.cluster,
            "serviceName": "web",
            "taskDefinition": td,
            "desiredCount": 2,
            "placementConstraints": [{"type": "distinctInstance"}],
        }),
    )
    .await;

    // One task per agent, both RUNNING.
    let tasks = wait_for(
        "2 RUNNING service tasks",
        Duration::from_secs(30),
        || async {
            let ts = env.service_tasks("web").await;
            (ts.len() == 2 && ts.iter().all(|t| t["lastStatus"] == "RUNNING")).then_some(ts)
        },
    )
    .await;
    let on: BTreeSet<String> = tasks
        .iter()
        .map(|t| str_of(&t["containerInstanceArn"]))
        .collect();
    assert_eq!(
        on,
        BTreeSet::from([a.clone(), b.clone()]),
        "distinctInstance: one task per agent"
    );
    let lost_task = str_of(
        &tasks
            .iter()
            .find(|t| t["containerInstanceArn"] == a.as_str())
            .unwrap()["taskArn"],
    );
    let b_task = str_of(
        &tasks
            .iter()
            .find(|t| t["containerInstanceArn"] == b.as_str())
            .unwrap()["taskArn"],
    );
    let lost_containers = env.containers(LABEL_TASK_ARN, &lost_task).await;
    assert_eq!(lost_containers.len(), 1, "{lost_containers:?}");
    let lost_container = lost_containers[0].id.clone().unwrap();

    // The spare, once the two tasks are placed.
    let _agent_c = env.agent_process("c", "127.0.0.4");
    let c = env.registered("c").await;
    let a_registered = env.instance(&a).await;
    eprintln!("setup done after {:?}", t0.elapsed());

    // A is cut off: SIGKILL. The kernel closes its socket, so the gateway
    // notices at once; the grace starts from there.
    let killed = Instant::now();
    agent_a.kill9();
    env.wait_connected(&a, false).await;
    eprintln!("A disconnected {:?} after the kill", killed.elapsed());
    // Within the grace nothing is given up yet (checked only if the answer
    // came back within the grace, so a slow machine cannot fail it).
    let t = env.task(&lost_task).await;
    if killed.elapsed() < GRACE {
        assert_eq!(
            t["lastStatus"], "RUNNING",
            "stopped before the grace ran out: {t}"
        );
        assert_eq!(t["desiredStatus"], "RUNNING", "{t}");
    }

    // After the grace: STOPPED, saying why.
    let t = wait_for(
        "the lost task to be STOPPED",
        GRACE + Duration::from_secs(5),
        || async {
            let t = env.task(&lost_task).await;
            (t["lastStatus"] == "STOPPED").then_some(t)
        },
    )
    .await;
    let stopped_after = killed.elapsed();
    eprintln!("A's task STOPPED {stopped_after:?} after the kill");
    assert!(
        stopped_after >= GRACE,
        "STOPPED after {stopped_after:?}, before the {GRACE:?} grace"
    );
    assert_eq!(t["desiredStatus"], "STOPPED", "{t}");
    let reason = str_of(&t["stoppedReason"]);
    assert!(reason.starts_with("Host lost"), "stoppedReason: {t}");
    let a_id = a.rsplit('/').next().unwrap();
    assert!(reason.contains(a_id), "the reason names the instance: {t}");
    assert_eq!(t["stopCode"], "TerminationNotice", "{t}");
    assert!(t["stoppedAt"].is_number(), "{t}");
    assert_eq!(t["containers"][0]["lastStatus"], "STOPPED", "{t}");

    // Its resources are released: A is disconnected but ACTIVE, holds no
    // task and has all it registered left.
    let i = env.instance(&a).await;
    assert_eq!(i["status"], "ACTIVE", "{i}");
    assert_eq!(i["agentConnected"], false, "{i}");
    assert_eq!(i["runningTasksCount"], 0, "{i}");
    assert_eq!(i["pendingTasksCount"], 0, "{i}");
    for r in ["CPU", "MEMORY"] {
        assert_eq!(
            resource(&i, "remainingResources", r),
            resource(&a_registered, "registeredResources", r),
            "{r}: {i}"
        );
    }

    // The service replaces it, on C: not on A (disconnected), not on B
    // (distinctInstance).
    let replacement = wait_for(
        "the replacement to be RUNNING",
        Duration::from_secs(20),
        || async {
            let ts = env.service_tasks("web").await;
            let new: Vec<&Value> = ts
                .iter()
                .filter(|t| t["taskArn"] != b_task.as_str())
                .collect();
            (ts.len() == 2 && new.len() == 1 && new[0]["lastStatus"] == "RUNNING")
                .then(|| new[0].clone())
        },
    )
    .await;
    eprintln!("replacement RUNNING {:?} after the kill", killed.elapsed());
    let replacement_task = str_of(&replacement["taskArn"]);
    assert_ne!(replacement_task, lost_task);
    assert_eq!(
        replacement["containerInstanceArn"],
        c.as_str(),
        "{replacement}"
    );
    assert_eq!(
        env.task(&b_task).await["lastStatus"],
        "RUNNING",
        "B's task is untouched"
    );

    // The host was only cut off: A's container still runs, nobody stopped it.
    let still = env.containers(LABEL_TASK_ARN, &lost_task).await;
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!(still[0].id.as_deref(), Some(lost_container.as_str()));
    assert_eq!(
        still[0].state,
        Some(ContainerSummaryStateEnum::RUNNING),
        "{still:?}"
    );

    // A comes back (same data dir): the same instance, whose desired set no
    // longer holds the lost task, so it stops and removes the container.
    let returned = Instant::now();
    let _agent_a = env.agent_process("a", "127.0.0.2");
    env.wait_connected(&a, true).await;
    let instances = env
        .call("ListContainerInstances", json!({"cluster": env.cluster}))
        .await;
    let listed: BTreeSet<String> = instances["containerInstanceArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([a.clone(), b.clone(), c.clone()]),
        "re-registered as the same instance"
    );
    assert_eq!(
        flotilla_agent::host::SavedInstance::load(Path::new(&env.data_dir("a")))
            .unwrap()
            .container_instance_arn,
        a
    );
    wait_for(
        "A's old container to be gone",
        Duration::from_secs(10),
        || async {
            env.containers(LABEL_TASK_ARN, &lost_task)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "A's old container gone {:?} after the restart",
        returned.elapsed()
    );

    // Exactly two tasks run, in the API and in Docker, and it stays so (A
    // gets nothing new: the service is at its count).
    let want = {
        let mut w = vec![b_task.clone(), replacement_task.clone()];
        w.sort();
        w
    };
    let settled = Instant::now();
    while settled.elapsed() < Duration::from_secs(1) {
        let ts = env.service_tasks("web").await;
        let mut running: Vec<String> = ts
            .iter()
            .filter(|t| t["lastStatus"] == "RUNNING")
            .map(|t| str_of(&t["taskArn"]))
            .collect();
        running.sort();
        assert_eq!(ts.len(), 2, "{ts:?}");
        assert_eq!(running, want, "{ts:?}");
        assert_eq!(
            env.running_container_tasks().await,
            want,
            "Docker runs each task once"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = env.service("web").await;
    assert_eq!(s["runningCount"], 2, "{s}");
    assert_eq!(s["pendingCount"], 0, "{s}");
    let i = env.instance(&a).await;
    assert_eq!(i["agentConnected"], true, "{i}");
    assert_eq!(i["runningTasksCount"], 0, "{i}");
    assert_eq!(i["pendingTasksCount"], 0, "{i}");
    // The returning agent did not rewrite the lost task's story.
    let t = env.task(&lost_task).await;
    assert_eq!(t["lastStatus"], "STOPPED", "{t}");
    assert_eq!(str_of(&t["stoppedReason"]), reason, "{t}");
    assert_eq!(t["stopCode"], "TerminationNotice", "{t}");

    // Agents are SIGKILLed when dropped (before `env`: declared after it),
    // the server stops, and the guard removes every container of the cluster.
    drop((_agent_a, _agent_b, _agent_c));
    env.stop().await;
    eprintln!("total {:?}", t0.elapsed());
}
