//! `flotilla sim` end to end, no Docker: the real `flotilla server` binary
//! on a loopback port with a credentials file, and `flotilla sim` as a child
//! process. The simulated hosts must register ACTIVE and connected, spread
//! over the zones asked for, with the resources and attributes asked for;
//! tasks placed on them must report RUNNING (or fail to start, for a
//! `--fail-family`); SIGTERM must stop the sim with status 0 and leave every
//! host disconnected.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::wait_for;
use flotilla_client::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const KEY: &str = "AKIASIMCLI0000000001";
const SECRET: &str = "sim-cli-secret-0000000000000000000000000";
/// Not the default region, so the test sees that the sim reads AWS_REGION.
const REGION: &str = "eu-west-1";
const CLUSTER: &str = "sim";
const HOSTS: usize = 25;
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// A child process, killed when dropped, whose stderr lines arrive on a
/// channel (and are echoed to the test's stderr).
struct Process {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flotilla");
        let (tx, lines) = mpsc::unbounded_channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{name}] {line}");
                let _ = tx.send(line);
            }
        });
        Process { child, lines }
    }

    /// The first stderr line containing `needle`; panics after `limit` or if
    /// the process closes stderr first. Returns the lines read up to it too.
    async fn wait_line(&mut self, needle: &str, limit: Duration) -> (String, Vec<String>) {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return (line, seen),
                Ok(Some(line)) => seen.push(line),
                Ok(None) => panic!(
                    "process exited ({:?}) before printing {needle:?}; it printed {seen:?}",
                    self.child.try_wait()
                ),
                Err(_) => panic!("no {needle:?} within {limit:?}; printed {seen:?}"),
            }
        }
    }

    /// SIGTERM, then the exit status (panics if it takes longer than `limit`).
    async fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "could not signal {}", self.child.id());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "still running {limit:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn call(c: &Client, op: &str, req: Value) -> Value {
    c.call::<Value, Value>(op, &req)
        .await
        .unwrap_or_else(|e| panic!("{op} {req}: {e}"))
}

/// Every container instance of the cluster, described.
async fn instances(c: &Client) -> Vec<Value> {
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({"cluster": CLUSTER});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let page = call(c, "ListContainerInstances", req).await;
        arns.extend(
            page["containerInstanceArns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string()),
        );
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut described = Vec::new();
    for chunk in arns.chunks(100) {
        let d = call(
            c,
            "DescribeContainerInstances",
            json!({"cluster": CLUSTER, "containerInstances": chunk}),
        )
        .await;
        assert_eq!(d["failures"], json!([]), "{d}");
        described.extend(d["containerInstances"].as_array().unwrap().iter().cloned());
    }
    described
}

fn attribute<'a>(instance: &'a Value, name: &str) -> Option<&'a str> {
    instance["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)?["value"]
        .as_str()
}

fn resource(instance: &Value, name: &str) -> Option<i64> {
    instance["registeredResources"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)?["integerValue"]
        .as_i64()
}

async fn run_task(c: &Client, family: &str, count: u32, extra: Value) -> Vec<String> {
    let mut req = json!({"cluster": CLUSTER, "taskDefinition": family, "count": count});
    req.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let v = call(c, "RunTask", req).await;
    assert_eq!(v["failures"], json!([]), "RunTask: {v}");
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until every task's lastStatus is `status`; returns them described.
async fn wait_tasks(c: &Client, arns: &[String], status: &str) -> Vec<Value> {
    wait_for(
        &format!("{} tasks {status}", arns.len()),
        Duration::from_secs(30),
        || async {
            let d = call(
                c,
                "DescribeTasks",
                json!({"cluster": CLUSTER, "tasks": arns}),
            )
            .await;
            let tasks = d["tasks"].as_array().unwrap().clone();
            (tasks.len() == arns.len() && tasks.iter().all(|t| t["lastStatus"] == status))
                .then_some(tasks)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_hosts_register_spread_run_tasks_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.toml");
    std::fs::write(
        &credentials,
        format!("[[principal]]\nname = \"sim-cli\"\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\naccount_id = \"123456789012\"\n"),
    )
    .unwrap();

    let mut server = Process::spawn(
        "server",
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--credentials")
            .arg(&credentials),
    );
    let (line, _) = server
        .wait_line("listening on http://", Duration::from_secs(30))
        .await;
    let endpoint = line.rsplit(' ').next().unwrap().to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{line}");
    let client = Client::ecs(&endpoint, KEY, SECRET, REGION);
    call(&client, "CreateCluster", json!({"clusterName": CLUSTER})).await;

    let mut sim = Process::spawn(
        "sim",
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args([
                "sim",
                "--endpoint",
                &endpoint,
                "--cluster",
                CLUSTER,
                "--hosts",
                &HOSTS.to_string(),
            ])
            .args([
                "--cpu",
                "2048",
                "--memory",
                "4096",
                "--zones",
                &ZONES.join(","),
            ])
            .args([
                "--attribute",
                "rack=r1",
                "--attribute",
                "tier=sim",
                "--fail-family",
                "broken",
            ])
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", REGION)
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_ENDPOINT_URL"),
    );
    let (_, before) = sim
        .wait_line(
            &format!("all {HOSTS} simulated hosts connected"),
            Duration::from_secs(60),
        )
        .await;
    assert!(
        before
            .iter()
            .any(|l| l == &format!("registered {HOSTS}/{HOSTS} hosts")),
        "no final progress line in {before:?}"
    );

    // All registered, ACTIVE and connected as soon as the sim says so, with
    // the resources and attributes asked for, round robin over the zones.
    let found = instances(&client).await;
    assert_eq!(found.len(), HOSTS, "{found:?}");
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for i in &found {
        assert_eq!(i["status"], "ACTIVE", "{i}");
        assert_eq!(i["agentConnected"], true, "{i}");
        assert_eq!(resource(i, "CPU"), Some(2048), "{i}");
        assert_eq!(resource(i, "MEMORY"), Some(4096), "{i}");
        assert_eq!(attribute(i, "rack"), Some("r1"), "{i}");
        assert_eq!(attribute(i, "tier"), Some("sim"), "{i}");
        *per_zone
            .entry(
                attribute(i, "ecs.availability-zone")
                    .unwrap_or("none")
                    .to_string(),
            )
            .or_default() += 1;
    }
    let want: BTreeMap<String, usize> = [("zone-a", 9), ("zone-b", 8), ("zone-c", 8)]
        .map(|(z, n)| (z.to_string(), n))
        .into();
    assert_eq!(per_zone, want);
    let zone_of: BTreeMap<String, String> = found
        .iter()
        .map(|i| {
            (
                i["containerInstanceArn"].as_str().unwrap().to_string(),
                attribute(i, "ecs.availability-zone").unwrap().to_string(),
            )
        })
        .collect();

    // Tasks placed on the simulated hosts report RUNNING; spread by zone,
    // six tasks land two in each zone.
    for family in ["web", "broken"] {
        call(
            &client,
            "RegisterTaskDefinition",
            json!({"family": family, "containerDefinitions": [{"name": "app", "image": "example/app:1", "cpu": 256, "memory": 128}]}),
        )
        .await;
    }
    let spread = json!({"placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}]});
    let web = run_task(&client, "web", 6, spread).await;
    let running = wait_tasks(&client, &web, "RUNNING").await;
    let mut tasks_per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for t in &running {
        assert_eq!(t["containers"][0]["lastStatus"], "RUNNING", "{t}");
        *tasks_per_zone
            .entry(zone_of[t["containerInstanceArn"].as_str().unwrap()].clone())
            .or_default() += 1;
    }
    assert_eq!(
        tasks_per_zone,
        ZONES.map(|z| (z.to_string(), 2)).into(),
        "{running:?}"
    );

    // --fail-family: that family's tasks fail to start.
    let broken = run_task(&client, "broken", 1, json!({})).await;
    let stopped = wait_tasks(&client, &broken, "STOPPED").await;
    assert_eq!(
        stopped[0]["stopCode"], "TaskFailedToStart",
        "{}",
        stopped[0]
    );

    // SIGTERM: exit 0, every host disconnected.
    let status = sim.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "flotilla sim exited with {status}");
    wait_for(
        "every simulated host disconnected",
        Duration::from_secs(30),
        || async {
            instances(&client)
                .await
                .iter()
                .all(|i| i["agentConnected"] == false)
                .then_some(())
        },
    )
    .await;

    let status = server.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "flotilla server exited with {status}");
}
