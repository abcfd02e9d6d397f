//! Harness for the deployment and self-healing tests and benchmarks: a
//! control plane in-process on 127.0.0.1:0 (SQLite in a temporary directory,
//! controllers resyncing every 200 ms unless told otherwise), in-process
//! agents on the real Docker Engine, a signed ECS client, a sampler that
//! watches a rollout through the API and through Docker, and the real AWS
//! CLI's `ecs wait services-stable`.
//!
//! Every container the cluster's agents create carries the cluster label
//! (unique per test and process) and is removed when the [`Env`] is dropped,
//! even when a test panics.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
use tokio::sync::{oneshot, watch};

pub const KEY: &str = "AKIADEPLOY0000000001";
pub const SECRET: &str = "deploy-secret-key-0000000000000000000000";
pub const REGION: &str = "us-east-1";

/// The agents' default stopTimeout (the test program exits on SIGTERM at
/// once, so this only bounds a misbehaving container).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);

fn credentials() -> Credentials {
    Credentials::from_toml(&format!(
        "[[principal]]\nname = \"deploy\"\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\naccount_id = \"123456789012\"\n"
    ))
    .expect("test credentials")
}

pub fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One in-process agent.
pub struct Agent {
    pub arn: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What talks to the cluster: the ECS API and the Docker Engine. Cheap to
/// clone (the sampler has its own).
#[derive(Clone)]
pub struct Api {
    pub endpoint: String,
    pub cluster: String,
    pub client: Client,
    pub docker: Docker,
}

/// A control plane, a cluster, its agents, and clean-up of the cluster's
/// containers.
pub struct Env {
    pub api: Api,
    pub dir: tempfile::TempDir,
    pub agents: Vec<Agent>,
    server_stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Last field: dropped after the agents are gone.
    _guard: ContainerGuard,
}

impl Env {
    /// A server and `agents`
    /// connected agents (host IPs 127.0.0.2, .3, …, zones a, b, …) for
    /// cluster `name`-PID.
    pub async fn start(name: &str, agents: usize) -> Env {
        Env::start_with(name, agents, flotilla_server::Config::default()).await
    }

    /// [`Env::start`] with the server's settings given, e.g.
    /// `flotilla_server::Config::default()` for what `flotilla server` runs.
    pub async fn start_with(name: &str, agents: usize, config: flotilla_server::Config) -> Env {
        init_tracing();
        let docker = Docker::connect_with_local_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .unwrap();
        ensure_test_image(&docker).await.expect("test image");
        let cluster = format!("{name}-{}", std::process::id());
        let guard = ContainerGuard::new(&docker, LABEL_CLUSTER, &cluster).await;
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
        let client = Client::ecs(&endpoint, KEY, SECRET, REGION);
        let mut env = Env {
            api: Api {
                endpoint,
                cluster,
                client,
                docker,
            },
            dir,
            agents: Vec::new(),
            server_stop: Some(tx),
            server: Some(server),
            _guard: guard,
        };
        env.call("CreateCluster", json!({"clusterName": env.cluster}))
            .await;
        for i in 0..agents {
            let agent = env.agent(i).await;
            env.agents.push(agent);
        }
        for a in &env.agents {
            env.wait_connected(&a.arn).await;
        }
        env
    }

    async fn agent(&self, i: usize) -> Agent {
        let zone = format!("{REGION}{}", (b'a' + i as u8) as char);
        let mut config = AgentConfig {
            cluster: self.cluster.clone(),
            host_ip: format!("127.0.0.{}", i + 2),
            availability_zone: Some(zone),
            metadata_port: Some(0),
            stop_timeout: STOP_TIMEOUT,
            ..Default::default()
        };
        config
            .attributes
            .insert("deploy.agent".into(), i.to_string());
        let data_dir = self.dir.path().join(format!("agent-{i}"));
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
        Agent {
            arn,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// `aws ecs wait services-stable` with the real AWS CLI. The CLI's own
    /// waiter definition is used with its delay cut from 15 s to 1 s (a copy
    /// of its `waiters-2.json` under AWS_DATA_PATH) so the test is not paced
    /// by the poll interval; the acceptors are the CLI's. Returns (exit ok,
    /// stderr, elapsed).
    pub async fn cli_wait_services_stable(&self, service: &str) -> (bool, String, Duration) {
        let aws = aws_cli();
        let mut cmd = tokio::process::Command::new(&aws);
        cmd.args([
            "ecs",
            "wait",
            "services-stable",
            "--cluster",
            &self.cluster,
            "--services",
            service,
        ])
        .args([
            "--output",
            "json",
            "--endpoint-url",
            &self.endpoint,
            "--region",
            REGION,
        ])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "");
        if let Some(data) = fast_waiters(&aws, &self.dir.path().join("aws-data")) {
            cmd.env("AWS_DATA_PATH", data);
        }
        let start = Instant::now();
        let out = cmd.output().await.unwrap_or_else(|e| {
            panic!("running {aws}: {e}; run scripts/test once (it installs the CLI) or set FLOTILLA_TEST_AWS_CLI")
        });
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
            start.elapsed(),
        )
    }

    /// Stops the agents, then the server. Containers are removed when the
    /// Env is dropped.
    pub async fn stop(mut self) {
        for mut a in std::mem::take(&mut self.agents) {
            if let Some(tx) = a.stop.take() {
                let _ = tx.send(());
            }
            if let Some(t) = a.task.take() {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        }
        if let Some(tx) = self.server_stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
}

impl std::ops::Deref for Env {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    async fn wait_connected(&self, arn: &str) {
        wait_for(
            &format!("agent {arn} connected"),
            Duration::from_secs(30),
            || async {
                let v = self
                    .call(
                        "DescribeContainerInstances",
                        json!({"cluster": self.cluster, "containerInstances": [arn]}),
                    )
                    .await;
                (v["containerInstances"][0]["agentConnected"] == true).then_some(())
            },
        )
        .await
    }

    /// Calls an ECS operation; panics on an error answer.
    pub async fn call(&self, op: &str, req: Value) -> Value {
        self.client
            .call::<Value, Value>(op, &req)
            .await
            .unwrap_or_else(|e| panic!("{op} {req}: {e}"))
    }

    /// RegisterTaskDefinition; the new revision's ARN.
    pub async fn register(&self, family: &str, containers: Value) -> String {
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

    pub async fn create_service(
        &self,
        name: &str,
        task_definition: &str,
        desired: u32,
        deployment_configuration: Value,
    ) -> Value {
        self.call(
            "CreateService",
            json!({
                "cluster": self.cluster,
                "serviceName": name,
                "taskDefinition": task_definition,
                "desiredCount": desired,
                "deploymentConfiguration": deployment_configuration,
            }),
        )
        .await
    }

    pub async fn update_service(&self, name: &str, task_definition: &str) -> Value {
        self.call(
            "UpdateService",
            json!({"cluster": self.cluster, "service": name, "taskDefinition": task_definition}),
        )
        .await
    }

    pub async fn service(&self, name: &str) -> Value {
        let v = self
            .call(
                "DescribeServices",
                json!({"cluster": self.cluster, "services": [name]}),
            )
            .await;
        v["services"][0].clone()
    }

    /// Every task of the service the API still lists (desiredStatus RUNNING
    /// and STOPPED), described.
    pub async fn tasks(&self, service: &str) -> Vec<Value> {
        let mut arns = Vec::new();
        for desired in ["RUNNING", "STOPPED"] {
            let mut token: Option<String> = None;
            loop {
                let mut req = json!({"cluster": self.cluster, "serviceName": service, "desiredStatus": desired, "maxResults": 100});
                if let Some(t) = &token {
                    req["nextToken"] = json!(t);
                }
                let v = self.call("ListTasks", req).await;
                arns.extend(
                    v["taskArns"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_string()),
                );
                match v["nextToken"].as_str() {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
        }
        arns.sort();
        arns.dedup();
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let v = self
                .call(
                    "DescribeTasks",
                    json!({"cluster": self.cluster, "tasks": chunk}),
                )
                .await;
            out.extend(v["tasks"].as_array().unwrap().iter().cloned());
        }
        out
    }

    /// Polls DescribeServices every `poll` until the service is stable (the
    /// `services-stable` criterion: one deployment, runningCount ==
    /// desiredCount) on `task_definition`, with no pending task. Returns the
    /// service and when it was first seen so.
    pub async fn wait_stable_on(
        &self,
        service: &str,
        task_definition: &str,
        limit: Duration,
        poll: Duration,
    ) -> (Value, Instant) {
        let start = Instant::now();
        loop {
            let s = self.service(service).await;
            if stable(&s) && s["deployments"][0]["taskDefinition"] == task_definition {
                return (s, Instant::now());
            }
            assert!(
                start.elapsed() < limit,
                "service {service} not stable on {task_definition} after {limit:?}: {s:#}"
            );
            tokio::time::sleep(poll).await;
        }
    }

    /// Running Docker containers of this cluster: (task ARN, revision label).
    pub async fn running_containers(&self) -> Vec<(String, String)> {
        let filters = HashMap::from([
            (
                "label".to_string(),
                vec![format!("{LABEL_CLUSTER}={}", self.cluster)],
            ),
            ("status".to_string(), vec!["running".to_string()]),
        ]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .unwrap();
        list.into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                (
                    labels
                        .get(flotilla_agent::spec::LABEL_TASK_ARN)
                        .cloned()
                        .unwrap_or_default(),
                    labels
                        .get(flotilla_agent::spec::LABEL_REVISION)
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Agents first (their Drop aborts them), then the server; the guard
        // (the last field) then removes the containers.
        self.agents.clear();
        if let Some(tx) = self.server_stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The `services-stable` waiter's success criterion, plus no pending task.
pub fn stable(s: &Value) -> bool {
    s["deployments"].as_array().map(Vec::len) == Some(1)
        && s["runningCount"] == s["desiredCount"]
        && s["pendingCount"] == 0
        && s["status"] == "ACTIVE"
}

/// The path of the AWS CLI the tests run (scripts/test installs it).
pub fn aws_cli() -> String {
    if let Ok(p) = std::env::var("FLOTILLA_TEST_AWS_CLI") {
        return p;
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/awscli-venv/bin/aws");
    if venv.exists() {
        return venv.to_string_lossy().into_owned();
    }
    "aws".into()
}

/// Writes a copy of the CLI's ECS waiter definitions with the
/// ServicesStable delay at 1 s into `dir` (laid out for AWS_DATA_PATH);
/// None when the CLI's file cannot be found (the CLI then polls every 15 s).
fn fast_waiters(aws: &str, dir: &std::path::Path) -> Option<PathBuf> {
    let aws = std::fs::canonicalize(which(aws)?).ok()?;
    let venv = aws.parent()?.parent()?;
    let mut found = None;
    for lib in std::fs::read_dir(venv.join("lib")).ok()?.flatten() {
        for sub in ["site-packages/awscli/botocore", "site-packages/botocore"] {
            let p = lib
                .path()
                .join(sub)
                .join("data/ecs/2014-11-13/waiters-2.json");
            if p.exists() {
                found = Some(p);
            }
        }
    }
    let mut waiters: Value = serde_json::from_str(&std::fs::read_to_string(found?).ok()?).ok()?;
    let w = waiters["waiters"].get_mut("ServicesStable")?;
    w["delay"] = json!(1);
    w["maxAttempts"] = json!(120);
    let out = dir.join("ecs/2014-11-13");
    std::fs::create_dir_all(&out).ok()?;
    std::fs::write(out.join("waiters-2.json"), waiters.to_string()).ok()?;
    Some(dir.to_path_buf())
}

fn which(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
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

/// One container of the test image running `command`, stopTimeout 2 s.
pub fn container(name: &str, command: &[&str]) -> Value {
    json!({
        "name": name, "image": TEST_IMAGE, "command": command,
        "memory": 32, "cpu": 16, "essential": true, "stopTimeout": STOP_TIMEOUT.as_secs(),
    })
}

/// The number in a task definition ARN's `:N` suffix.
pub fn revision(arn: &str) -> u32 {
    arn.rsplit(':')
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// A task is *healthy* when RUNNING, still wanted, and HEALTHY if its task
/// definition has a health check (`checked` lists those definitions).
pub fn healthy(t: &Value, checked: &BTreeSet<String>) -> bool {
    t["lastStatus"] == "RUNNING"
        && t["desiredStatus"] == "RUNNING"
        && t["healthStatus"] != "UNHEALTHY"
        && (!checked.contains(t["taskDefinitionArn"].as_str().unwrap_or_default())
            || t["healthStatus"] == "HEALTHY")
}

/// What the sampler saw at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    /// Tasks the API shows as not STOPPED (PENDING, RUNNING and stopping).
    pub occupying: usize,
    /// Healthy tasks ([`healthy`]).
    pub healthy: usize,
    /// Not-STOPPED tasks by task definition revision.
    pub by_revision: BTreeMap<u32, usize>,
    /// Running Docker containers of the cluster.
    pub docker_running: usize,
    /// The service's `deployments` as DescribeServices listed them.
    pub deployments: Vec<Value>,
}

/// Samples a service through the API and Docker every `every` until
/// stopped; `stop()` returns the samples.
pub struct Sampler {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(env: Api, service: &str, checked: BTreeSet<String>, every: Duration) -> Sampler {
        let (stop, mut rx) = watch::channel(false);
        let service = service.to_string();
        let handle = tokio::spawn(async move {
            let start = Instant::now();
            let mut out = Vec::new();
            loop {
                let at = start.elapsed();
                let tasks = env.tasks(&service).await;
                let docker_running = env.running_containers().await.len();
                let s = env.service(&service).await;
                let live: Vec<&Value> = tasks
                    .iter()
                    .filter(|t| t["lastStatus"] != "STOPPED")
                    .collect();
                let mut by_revision = BTreeMap::new();
                for t in &live {
                    *by_revision
                        .entry(revision(
                            t["taskDefinitionArn"].as_str().unwrap_or_default(),
                        ))
                        .or_insert(0) += 1;
                }
                let deployments = s["deployments"].as_array().cloned().unwrap_or_default();
                out.push(Sample {
                    at,
                    occupying: live.len(),
                    healthy: tasks.iter().filter(|t| healthy(t, &checked)).count(),
                    by_revision,
                    docker_running,
                    deployments,
                });
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
            out
        });
        Sampler { stop, handle }
    }

    pub async fn stop(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        self.handle.await.expect("sampler")
    }
}

fn init_tracing() {
    // Quiet unless FLOTILLA_LOG asks (e.g. FLOTILLA_LOG=flotilla_server=debug).
    if let Ok(filter) = std::env::var("FLOTILLA_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}
