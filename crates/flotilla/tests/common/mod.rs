//! End-to-end harness: a real control plane over SQLite in a temporary
//! directory (in-process on 127.0.0.1:0, or the built `flotilla server` as a
//! child process that can be SIGKILLed and restarted on the same address and
//! data dir), agents on the real Docker Engine (in process through the agent
//! library, or as the built `flotilla` binary), and a signed ECS client.
#![allow(dead_code)]

pub mod lb;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use flotilla_agent::config::AgentConfig;
use flotilla_agent::spec::LABEL_CLUSTER;
use flotilla_agent::testing::{ensure_test_image, ContainerGuard, TEST_IMAGE};
use flotilla_agent::HostAgent;
use flotilla_auth::Credentials;
use flotilla_client::Client;
use flotilla_store::sqlite::SqliteStore;
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const KEY: &str = "AKIAE2E0000000000001";
pub const SECRET: &str = "e2e-secret-key-000000000000000000000000";
pub const REGION: &str = "us-east-1";

fn credentials_toml() -> String {
    format!(
        "[[principal]]\nname = \"e2e\"\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\naccount_id = \"123456789012\"\n"
    )
}

fn credentials() -> Credentials {
    Credentials::from_toml(&credentials_toml()).expect("test credentials")
}

/// A control plane, a cluster on it, and clean-up of every container the
/// cluster's agents create (by the cluster label; every test uses its own
/// cluster name).
pub struct Env {
    pub endpoint: String,
    pub cluster: String,
    pub client: Client,
    pub docker: Docker,
    pub dir: tempfile::TempDir,
    server: Server,
    _guard: ContainerGuard,
}

/// How the control plane of an [`Env`] runs.
enum Server {
    InProcess {
        stop: Option<oneshot::Sender<()>>,
        task: Option<tokio::task::JoinHandle<()>>,
    },
    /// `flotilla server --listen ADDR --data-dir DIR --credentials FILE`;
    /// `None` while killed.
    Process {
        child: Option<Child>,
        listen: SocketAddr,
    },
}

impl Env {
    pub async fn start(cluster: &str) -> Env {
        Env::start_with(cluster, flotilla_server::Config::default()).await
    }

    /// [`Env::start`] with the control plane's settings (e.g. a short
    /// lost-host grace).
    pub async fn start_with(cluster: &str, config: flotilla_server::Config) -> Env {
        let (docker, cluster, guard) = docker_and_cluster(cluster).await;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("flotilla.db")).unwrap();
        let stores =
            flotilla_server::Stores::with_state(dir.path(), Arc::new(store)).expect("stores");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            flotilla_server::run_with(listener, stores, credentials(), config, async {
                let _ = rx.await;
            })
            .await
            .expect("server");
        });
        let server = Server::InProcess {
            stop: Some(tx),
            task: Some(server),
        };
        Env::ready(endpoint, cluster, docker, dir, server, guard).await
    }

    /// A control plane that is the `flotilla server` binary, as a child
    /// process on a free port of `ip`, its data in `DIR/server`: it can be
    /// SIGKILLed ([`Env::kill9_server`]) and restarted on the same address
    /// and data ([`Env::restart_server`]).
    pub async fn start_process(cluster: &str, ip: IpAddr) -> Env {
        let (docker, cluster, guard) = docker_and_cluster(cluster).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("credentials.toml"), credentials_toml()).unwrap();
        let listen = std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap();
        let endpoint = format!("http://{listen}");
        let server = Server::Process {
            child: Some(spawn_server(dir.path(), listen)),
            listen,
        };
        Env::ready(endpoint, cluster, docker, dir, server, guard).await
    }

    async fn ready(
        endpoint: String,
        cluster: String,
        docker: Docker,
        dir: tempfile::TempDir,
        server: Server,
        guard: ContainerGuard,
    ) -> Env {
        let client = Client::ecs(&endpoint, KEY, SECRET, REGION);
        let env = Env {
            endpoint,
            cluster,
            client,
            docker,
            dir,
            server,
            _guard: guard,
        };
        env.wait_serving().await;
        env.call("CreateCluster", json!({"clusterName": env.cluster}))
            .await;
        env
    }

    /// Waits until the control plane answers.
    pub async fn wait_serving(&self) {
        wait_for(
            "the control plane to serve",
            Duration::from_secs(30),
            || async {
                self.client
                    .call::<Value, Value>("ListClusters", &json!({}))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await
    }

    /// SIGKILLs the control plane started by [`Env::start_process`].
    pub fn kill9_server(&mut self) {
        let Server::Process { child, .. } = &mut self.server else {
            panic!("kill9_server: the control plane is not a process");
        };
        let mut c = child.take().expect("the control plane is running");
        c.kill().expect("SIGKILL");
        c.wait().expect("reap");
    }

    /// Starts the killed control plane again on the same address and data
    /// dir; returns once it answers.
    pub async fn restart_server(&mut self) {
        let Server::Process { child, listen } = &mut self.server else {
            panic!("restart_server: the control plane is not a process");
        };
        assert!(child.is_none(), "the control plane is still running");
        *child = Some(spawn_server(self.dir.path(), *listen));
        self.wait_serving().await;
    }

    /// Calls an ECS operation; panics on an error answer.
    pub async fn call(&self, op: &str, req: Value) -> Value {
        self.client
            .call::<Value, Value>(op, &req)
            .await
            .unwrap_or_else(|e| panic!("{op} {req}: {e}"))
    }

    /// An in-process agent binding host ports on `host_ip`.
    pub async fn agent(&self, name: &str, host_ip: &str) -> TestAgent {
        let mut config = AgentConfig {
            cluster: self.cluster.clone(),
            host_ip: host_ip.to_string(),
            metadata_port: Some(0),
            stop_timeout: Duration::from_secs(3),
            ..Default::default()
        };
        config.attributes.insert("e2e.agent".into(), name.into());
        let data_dir = self.dir.path().join(format!("agent-{name}"));
        let host = HostAgent::register(
            self.client.clone(),
            config,
            &data_dir,
            std::future::pending(),
        )
        .await
        .expect("register");
        let arn = host.instance_arn().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            host.run(async {
                let _ = rx.await;
            })
            .await
            .expect("agent");
        });
        TestAgent {
            arn,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// `flotilla agent` as a child process.
    pub fn agent_process(&self, data_dir: &Path, host_ip: &str) -> AgentProcess {
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
            .args(["--metadata-port", "0", "--data-dir"])
            .arg(data_dir)
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

    pub async fn instance(&self, arn: &str) -> Value {
        let v = self
            .call(
                "DescribeContainerInstances",
                json!({"cluster": self.cluster, "containerInstances": [arn]}),
            )
            .await;
        v["containerInstances"][0].clone()
    }

    /// Waits until the instance's `agentConnected` is `connected`.
    pub async fn wait_connected(&self, arn: &str, connected: bool) {
        wait_for(
            &format!("agentConnected={connected} for {arn}"),
            Duration::from_secs(30),
            || async {
                let i = self.instance(arn).await;
                (i["agentConnected"].as_bool() == Some(connected)).then_some(())
            },
        )
        .await
    }

    pub async fn register_task_definition(&self, family: &str, containers: Value) -> String {
        let v = self
            .call(
                "RegisterTaskDefinition",
                json!({"family": family, "containerDefinitions": containers}),
            )
            .await;
        v["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// RunTask; returns the task ARNs.
    pub async fn run_task(&self, task_definition: &str, count: u32) -> Vec<String> {
        let v = self
            .call(
                "RunTask",
                json!({"cluster": self.cluster, "taskDefinition": task_definition, "count": count}),
            )
            .await;
        assert_eq!(
            v["failures"].as_array().map(Vec::len).unwrap_or(0),
            0,
            "RunTask failures: {v}"
        );
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["taskArn"].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn task(&self, arn: &str) -> Value {
        let v = self
            .call(
                "DescribeTasks",
                json!({"cluster": self.cluster, "tasks": [arn]}),
            )
            .await;
        v["tasks"][0].clone()
    }

    /// Waits until the task's lastStatus is `status`; returns the task.
    pub async fn wait_task(&self, arn: &str, status: &str) -> Value {
        wait_for(
            &format!("task {arn} {status}"),
            Duration::from_secs(60),
            || async {
                let t = self.task(arn).await;
                (t["lastStatus"].as_str() == Some(status)).then_some(t)
            },
        )
        .await
    }

    /// The Docker containers of a task: (id, name label, labels, started at).
    pub async fn containers_of(&self, task_arn: &str) -> Vec<bollard::models::ContainerSummary> {
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!(
                "{}={task_arn}",
                flotilla_agent::spec::LABEL_TASK_ARN
            )],
        )]);
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .unwrap()
    }

    /// The cluster's containers Docker has running.
    pub async fn running_containers(&self) -> Vec<bollard::models::ContainerSummary> {
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_CLUSTER}={}", self.cluster)],
        )]);
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: false,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .unwrap()
    }

    /// The instance ARN of the agent whose data dir is `data_dir` (written
    /// there once it registered), once it is connected.
    pub async fn registered(&self, data_dir: &Path) -> String {
        let arn = wait_for(
            &format!("the agent of {} to register", data_dir.display()),
            Duration::from_secs(30),
            || async {
                flotilla_agent::host::SavedInstance::load(data_dir)
                    .map(|s| s.container_instance_arn)
            },
        )
        .await;
        self.wait_connected(&arn, true).await;
        arn
    }

    pub async fn stop(mut self) {
        match &mut self.server {
            Server::InProcess { stop, task } => {
                if let Some(tx) = stop.take() {
                    let _ = tx.send(());
                }
                if let Some(h) = task.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
                }
            }
            Server::Process { child, .. } => {
                // Nothing to keep: SIGKILL bounds the wait.
                if let Some(mut c) = child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Process { child: Some(c), .. } = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The Docker client (the test image present), the cluster's name (unique
/// per process too, so two runs at once do not share labels) and the guard
/// removing its containers.
async fn docker_and_cluster(cluster: &str) -> (Docker, String, ContainerGuard) {
    init_tracing();
    let docker = Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    ensure_test_image(&docker).await.expect("test image");
    let cluster = format!("{cluster}-{}", std::process::id());
    let guard = ContainerGuard::new(&docker, LABEL_CLUSTER, &cluster).await;
    (docker, cluster, guard)
}

/// `flotilla server` on `listen`, its data in `dir/server`.
fn spawn_server(dir: &Path, listen: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["server", "--listen", &listen.to_string(), "--data-dir"])
        .arg(dir.join("server"))
        .arg("--credentials")
        .arg(dir.join("credentials.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn flotilla server")
}

/// Polls `f` every 50 ms until it yields a value; panics after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
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

pub struct TestAgent {
    pub arn: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestAgent {
    /// Stops the agent (its containers keep running).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("agent task");
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A `flotilla agent` child process; killed when dropped.
pub struct AgentProcess {
    pub child: Child,
}

impl AgentProcess {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// A task definition of one container of the test image running `command`.
pub fn container(name: &str, command: &[&str]) -> Value {
    json!({"name": name, "image": TEST_IMAGE, "command": command, "memory": 32, "cpu": 16, "essential": true})
}

pub fn data_dir(env: &Env, name: &str) -> PathBuf {
    env.dir.path().join(name)
}

fn init_tracing() {
    let _ = tracing_subscriber_init();
}

fn tracing_subscriber_init() -> Option<()> {
    // Quiet unless FLOTILLA_LOG asks (e.g. FLOTILLA_LOG=flotilla_agent=debug).
    let filter = std::env::var("FLOTILLA_LOG").ok()?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init()
        .ok()
}
