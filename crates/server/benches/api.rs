//! API throughput and latency, end to end over HTTP with SigV4, against an
//! in-process server on a SQLite store in a temporary directory. Prints
//! figures; asserts nothing. Run in release:
//!
//! ```text
//! cargo bench -p flotilla-server --bench api
//! ```
//!
//! Phases:
//! 1. RegisterTaskDefinition, durable writes from many concurrent clients.
//! 2. RunTask (count 10) from concurrent clients until the target number of
//!    tasks is stored, onto container instances held connected by minimal
//!    fake agents on the gateway WebSocket (heartbeats only).
//! 3. With those tasks stored: DescribeTasks (100 ARNs) and ListTasks
//!    (maxResults 100, with and without filters), paced at a fixed total
//!    rate; latency is measured from each request's scheduled send time, so
//!    a stall shows up as latency instead of silently lowering the rate.
//!    The client (in this process, on the same cores) checks each answer is
//!    JSON without building it into values.
//!
//! Knobs (environment): FLOTILLA_BENCH_TASKS (100000), FLOTILLA_BENCH_INSTANCES
//! (100), FLOTILLA_BENCH_WRITERS (48), FLOTILLA_BENCH_REGISTERS (5000),
//! FLOTILLA_BENCH_READ_RATE (1000/s), FLOTILLA_BENCH_READ_SECS (10),
//! FLOTILLA_BENCH_RUN_SECS (600: RunTask phase time cap).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_auth::Credentials;
use flotilla_client::Client;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The allocator the `flotilla` binary uses, so the server measured here is
/// the one users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "AKIABENCH00000000001";
const SECRET: &str = "bench-secret-key-000000000000000000000000";
const REGION: &str = "us-east-1";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latency samples in microseconds.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn pct(&mut self, p: f64) -> f64 {
        self.0.sort_unstable();
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i] as f64 / 1000.0
    }

    fn report(mut self, what: &str, elapsed: Duration, ops: usize) {
        let n = self.0.len();
        let (p50, p99, p999) = (self.pct(0.50), self.pct(0.99), self.pct(0.999));
        let max = self.0.last().copied().unwrap_or_default() as f64 / 1000.0;
        println!(
            "{what:<48} {n:>7} req in {:>6.2} s = {:>8.0} req/s ({:>8.0} obj/s)  p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  p99.9 {p999:>7.2} ms  max {max:>7.2} ms",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            ops as f64 / elapsed.as_secs_f64(),
        );
    }
}

async fn call(c: &Client, op: &str, body: &Value) -> Value {
    match c.call::<Value, Value>(op, body).await {
        Ok(v) => v,
        Err(e) => panic!("{op}: {e}"),
    }
}

/// A container instance held connected by the least an agent must do:
/// heartbeats every 5 s; everything the server pushes is read and dropped.
async fn fake_agent(client: Client, cluster: String, instance_arn: String) {
    let arn: String = instance_arn
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    // delta=1: the gateway sends only what changed, as the real agent asks.
    let path = format!("/v1/agent/connect?cluster={cluster}&containerInstance={arn}&delta=1");
    let url = client
        .presign_get(&path, Duration::from_secs(3600))
        .unwrap()
        .replacen("http://", "ws://", 1);
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("gateway connect");
    let (mut tx, mut rx) = ws.split();
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(Duration::from_secs(5));
        loop {
            beat.tick().await;
            if tx
                .send(Message::Text(r#"{"type":"heartbeat"}"#.into()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let tasks_target = env("FLOTILLA_BENCH_TASKS", 100_000);
    let instances = env("FLOTILLA_BENCH_INSTANCES", 100);
    let writers = env("FLOTILLA_BENCH_WRITERS", 48);
    let registers = env("FLOTILLA_BENCH_REGISTERS", 5000);
    let read_rate = env("FLOTILLA_BENCH_READ_RATE", 1000);
    let read_secs = env("FLOTILLA_BENCH_READ_SECS", 10);
    let run_cap = Duration::from_secs(env("FLOTILLA_BENCH_RUN_SECS", 600) as u64);

    let dir = tempfile::tempdir().unwrap();
    let store = flotilla_server::open_store(&dir.path().join("flotilla.db")).unwrap();
    let stores = flotilla_server::Stores::with_state(dir.path(), Arc::new(store)).expect("stores");
    let creds = Credentials::from_toml(&format!(
        "[[principal]]\nname = \"bench\"\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\naccount_id = \"123456789012\"\n"
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        flotilla_server::run(listener, stores, creds, async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });
    let client = Client::ecs(&endpoint, KEY, SECRET, REGION);
    println!(
        "flotilla-server API bench: {} cores, SQLite in {}, {writers} writers",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        dir.path().display()
    );

    // 1. RegisterTaskDefinition.
    {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let c = client.clone();
                let next = next.clone();
                tokio::spawn(async move {
                    let mut s = Samples::default();
                    while next.fetch_add(1, Ordering::Relaxed) < registers {
                        let body = json!({
                            "family": format!("fam{}", w % 16),
                            "containerDefinitions": [{
                                "name": "app", "image": "registry.local/app:1", "memory": 128, "cpu": 64,
                                "portMappings": [{"containerPort": 8080, "hostPort": 0}],
                                "environment": [{"name": "WRITER", "value": w.to_string()}]
                            }]
                        });
                        let t = Instant::now();
                        call(&c, "RegisterTaskDefinition", &body).await;
                        s.0.push(t.elapsed().as_micros() as u64);
                    }
                    s
                })
            })
            .collect();
        let mut all = Samples::default();
        for h in handles {
            all.0.extend(h.await.unwrap().0);
        }
        let n = all.0.len();
        all.report(
            &format!("RegisterTaskDefinition ({writers} clients)"),
            start.elapsed(),
            n,
        );
    }

    // 2. RunTask onto connected instances.
    call(&client, "CreateCluster", &json!({"clusterName": "bench"})).await;
    call(
        &client,
        "RegisterTaskDefinition",
        &json!({"family": "run", "containerDefinitions": [{"name": "app", "image": "registry.local/app:1", "memory": 6, "cpu": 1}]}),
    )
    .await;
    let t0 = Instant::now();
    let mut instance_arns = Vec::new();
    for i in 0..instances {
        let body = json!({
            "cluster": "bench",
            "instanceIdentityDocument": json!({"instanceId": format!("i-bench{i:08}"), "availabilityZone": format!("us-east-1{}", ["a", "b", "c"][i % 3]), "instanceType": "bench.huge", "region": REGION}).to_string(),
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 100_000_000},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 1_000_000_000}
            ]
        });
        let out = call(&client, "RegisterContainerInstance", &body).await;
        let arn = out["containerInstance"]["containerInstanceArn"]
            .as_str()
            .unwrap()
            .to_string();
        fake_agent(client.clone(), "bench".into(), arn.clone()).await;
        instance_arns.push(arn);
    }
    // Wait until the gateway has recorded every instance as connected.
    loop {
        let mut connected = 0;
        for chunk in instance_arns.chunks(100) {
            let d = call(
                &client,
                "DescribeContainerInstances",
                &json!({"cluster": "bench", "containerInstances": chunk}),
            )
            .await;
            connected += d["containerInstances"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["agentConnected"] == true)
                .count();
        }
        if connected == instances {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{instances} container instances registered and connected in {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    let placed = Arc::new(AtomicUsize::new(0));
    let task_arns = Arc::new(std::sync::Mutex::new(Vec::with_capacity(tasks_target)));
    let start = Instant::now();
    let progress = {
        let placed = placed.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0);
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let n = placed.load(Ordering::Relaxed);
                let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
                eprintln!(
                    "  … {n} tasks stored after {:.0} s ({rate:.0} tasks/s over the last 10 s)",
                    start.elapsed().as_secs_f64()
                );
                last = (Instant::now(), n);
            }
        })
    };
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let c = client.clone();
            let placed = placed.clone();
            let task_arns = task_arns.clone();
            tokio::spawn(async move {
                let mut s = Samples::default();
                while placed.load(Ordering::Relaxed) < tasks_target && start.elapsed() < run_cap {
                    let body = json!({"cluster": "bench", "taskDefinition": "run", "count": 10, "startedBy": format!("w{w}")});
                    let t = Instant::now();
                    let out = call(&c, "RunTask", &body).await;
                    s.0.push(t.elapsed().as_micros() as u64);
                    let arns: Vec<String> =
                        out["tasks"].as_array().unwrap().iter().map(|t| t["taskArn"].as_str().unwrap().to_string()).collect();
                    assert!(!arns.is_empty(), "RunTask placed nothing: {}", out["failures"]);
                    placed.fetch_add(arns.len(), Ordering::Relaxed);
                    task_arns.lock().unwrap().extend(arns);
                }
                s
            })
        })
        .collect();
    let mut all = Samples::default();
    for h in handles {
        all.0.extend(h.await.unwrap().0);
    }
    progress.abort();
    let stored = placed.load(Ordering::Relaxed);
    all.report(
        &format!("RunTask count=10 ({writers} clients, {instances} agents)"),
        start.elapsed(),
        stored,
    );
    println!("{stored} tasks stored");

    // 3. Reads with the tasks stored, agents still connected.
    let arns = Arc::new(std::mem::take(&mut *task_arns.lock().unwrap()));
    let read_clients = 4;
    let per_client = Duration::from_secs_f64(read_clients as f64 / read_rate as f64);
    type MakeBody = fn(&[String], usize) -> (&'static str, Value);
    let cases: Vec<(&str, MakeBody)> = vec![
        ("DescribeTasks (100 ARNs)", |arns, i| {
            let start = (i * 7919) % arns.len().saturating_sub(100).max(1);
            (
                "DescribeTasks",
                json!({"cluster": "bench", "tasks": &arns[start..(start + 100).min(arns.len())]}),
            )
        }),
        ("ListTasks maxResults=100", |_, _| {
            ("ListTasks", json!({"cluster": "bench", "maxResults": 100}))
        }),
        ("ListTasks maxResults=100 family=run", |_, _| {
            (
                "ListTasks",
                json!({"cluster": "bench", "maxResults": 100, "family": "run"}),
            )
        }),
        ("ListTasks maxResults=100 startedBy=w7", |_, _| {
            (
                "ListTasks",
                json!({"cluster": "bench", "maxResults": 100, "startedBy": "w7"}),
            )
        }),
        (
            "ListTasks maxResults=100 startedBy=nobody (matches none)",
            |_, _| {
                (
                    "ListTasks",
                    json!({"cluster": "bench", "maxResults": 100, "startedBy": "nobody"}),
                )
            },
        ),
    ];
    for (name, make) in cases {
        let start = Instant::now();
        let total = read_rate * read_secs / read_clients;
        let handles: Vec<_> = (0..read_clients)
            .map(|r| {
                let c = client.clone();
                let arns = arns.clone();
                tokio::spawn(async move {
                    let mut s = Samples::default();
                    // Clients are offset so the sends interleave evenly.
                    let first = start + per_client.mul_f64(r as f64 / read_clients as f64);
                    for i in 0..total {
                        let due = first + per_client * i as u32;
                        tokio::time::sleep_until(due.into()).await;
                        let (op, body) = make(&arns, i * read_clients + r);
                        // The answer is checked as JSON but not built into
                        // values: a DescribeTasks of 100 tasks is ~150 KB,
                        // and building it would cost this shared machine
                        // more than the server spends answering.
                        if let Err(e) = c.call::<Value, serde::de::IgnoredAny>(op, &body).await {
                            panic!("{op}: {e}");
                        }
                        s.0.push(due.elapsed().as_micros() as u64);
                    }
                    s
                })
            })
            .collect();
        let mut all = Samples::default();
        for h in handles {
            all.0.extend(h.await.unwrap().0);
        }
        let n = all.0.len();
        all.report(&format!("{name} @ {read_rate}/s"), start.elapsed(), n);
    }

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
