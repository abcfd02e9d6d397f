//! Test harness: a real server on a loopback port, over a real SQLite store
//! in a temporary directory, with two accounts; clients for the official AWS
//! SDK for Rust, for raw signed requests, and for the AWS CLI.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_ecs::config::{BehaviorVersion, Credentials as SdkCredentials, Region};
use flotilla_auth::Credentials;
use flotilla_store::sqlite::SqliteStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Principal {
    pub access_key_id: &'static str,
    pub secret: &'static str,
    pub account: &'static str,
}

pub const ALICE: Principal = Principal {
    access_key_id: "AKIAALICE00000000001",
    secret: "alice-secret-key-0000000000000000000000",
    account: "111111111111",
};
pub const BOB: Principal = Principal {
    access_key_id: "AKIABOB0000000000001",
    secret: "bob-secret-key-00000000000000000000000",
    account: "222222222222",
};

pub const REGION: &str = "us-east-1";

fn credentials() -> Credentials {
    let toml = [("alice", &ALICE), ("bob", &BOB)]
        .iter()
        .map(|(name, p)| {
            format!(
                "[[principal]]\nname = \"{name}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\naccount_id = \"{}\"\n",
                p.access_key_id, p.secret, p.account
            )
        })
        .collect::<String>();
    Credentials::from_toml(&toml).expect("test credentials")
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub endpoint: String,
    pub data_dir: PathBuf,
    /// What the server's requests and controllers share: its state, log
    /// and metric stores, and the alarm actions channel.
    pub env: Arc<flotilla_server::api::Env>,
    _dir: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A server on 127.0.0.1:0 over a fresh store.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let mut s = Self::start_in(path).await;
        s._dir = Some(dir);
        s
    }

    /// A server with explicit settings (e.g. short controller timers).
    pub async fn start_with(config: flotilla_server::Config) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let mut s = Self::start_in_with(path, config).await;
        s._dir = Some(dir);
        s
    }

    /// A server over the store in `data_dir` (which may hold earlier state).
    pub async fn start_in(data_dir: PathBuf) -> TestServer {
        Self::start_in_with(data_dir, flotilla_server::Config::default()).await
    }

    pub async fn start_in_with(data_dir: PathBuf, config: flotilla_server::Config) -> TestServer {
        let store = SqliteStore::open(&data_dir.join("flotilla.db")).expect("open store");
        let stores =
            flotilla_server::Stores::with_state(&data_dir, Arc::new(store)).expect("stores");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        // As `run_with`, with the env kept for the test.
        let env = flotilla_server::open_env(stores).expect("env");
        let served = env.clone();
        let handle = tokio::spawn(async move {
            let result =
                flotilla_server::serve(listener, served.clone(), credentials(), config, async {
                    let _ = rx.await;
                })
                .await;
            served.logs.close();
            served.metrics.close();
            result.expect("server");
        });
        TestServer {
            addr,
            endpoint: format!("http://{addr}"),
            data_dir,
            env,
            _dir: None,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server and waits until it has let go of the store.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        self._dir.take()
    }

    /// The official AWS SDK for Rust, pointed at this server.
    pub fn sdk(&self, who: &Principal) -> aws_sdk_ecs::Client {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(SdkCredentials::new(
                who.access_key_id,
                who.secret,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    }

    /// A raw signed client, for requests an SDK would refuse to build.
    pub fn raw(&self, who: &Principal) -> flotilla_client::Client {
        flotilla_client::Client::ecs(&self.endpoint, who.access_key_id, who.secret, REGION)
    }

    /// Runs the real AWS CLI (`aws ecs ARGS… --output json`) against this
    /// server as `who`; returns (exit ok, stdout JSON or text, stderr).
    pub async fn cli(&self, who: &Principal, args: &[&str]) -> (bool, serde_json::Value, String) {
        self.aws(who, "ecs", args).await
    }

    /// Runs `aws SERVICE ARGS… --output json` against this server as
    /// `who`, with no profile, config file or pager of the machine's.
    pub async fn aws(
        &self,
        who: &Principal,
        service: &str,
        args: &[&str],
    ) -> (bool, serde_json::Value, String) {
        self.aws_env(who, service, args, &[]).await
    }

    /// [`TestServer::aws`] with extra environment variables (e.g.
    /// `AWS_MAX_ATTEMPTS=1`, so an error is seen at once, not retried).
    pub async fn aws_env(
        &self,
        who: &Principal,
        service: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (bool, serde_json::Value, String) {
        let aws = std::env::var("FLOTILLA_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into());
        let out = tokio::process::Command::new(&aws)
            .arg(service)
            .args(args)
            .args([
                "--output",
                "json",
                "--endpoint-url",
                &self.endpoint,
                "--region",
                REGION,
            ])
            .env("AWS_ACCESS_KEY_ID", who.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", who.secret)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_PAGER", "")
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the AWS CLI ({aws}) must be installed: run the tests with scripts/test ({e})"
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::String(stdout));
        (
            out.status.success(),
            json,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The directory of real-world task definitions (`shared/` beside the repo).
pub fn taskdefs_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/taskdefs");
    assert!(
        dir.is_dir(),
        "{} not found: shared/ must sit beside the repository",
        dir.display()
    );
    dir
}

/// Polls `check` every 50 ms until it returns Some, or fails after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
