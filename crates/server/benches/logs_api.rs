//! CloudWatch Logs API throughput and latency, end to end over HTTP with
//! SigV4 against an in-process server (log store in a temporary
//! directory). Prints figures; asserts nothing. Run in release:
//!
//! ```text
//! cargo bench -p flotilla-server --bench logs_api
//! ```
//!
//! Phases:
//! 1. PutLogEvents from concurrent writers, one stream each, batches of
//!    `FLOTILLA_BENCH_BATCH` lines of about 100 bytes, flat out for
//!    `FLOTILLA_BENCH_SECS`: events/s, MB/s of messages, call latency.
//! 2. With those events stored: FilterLogEvents latency over the group's
//!    last minute (what `aws logs tail` asks), with a selective pattern
//!    over everything, and GetLogEvents (100 from a stream's head), one
//!    call at a time.
//!
//! Knobs (environment): FLOTILLA_BENCH_WRITERS (8), FLOTILLA_BENCH_BATCH
//! (1000), FLOTILLA_BENCH_SECS (10), FLOTILLA_BENCH_READS (200),
//! FLOTILLA_BENCH_SEARCHES (20: the whole-group searches, which look at
//! every event stored up to the store's scan budget per page).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flotilla_auth::Credentials;
use flotilla_client::Client;
use serde_json::{json, Value};

/// The allocator the `flotilla` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "AKIABENCH00000000001";
const SECRET: &str = "bench-secret-key-000000000000000000000000";
const REGION: &str = "us-east-1";
const GROUP: &str = "/bench/logs";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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

    fn report(mut self, what: &str) {
        let n = self.0.len();
        let (p50, p99) = (self.pct(0.50), self.pct(0.99));
        let max = self.0.last().copied().unwrap_or_default() as f64 / 1000.0;
        println!(
            "{what:<44} {n:>6} calls  p50 {p50:>8.2} ms  p99 {p99:>8.2} ms  max {max:>8.2} ms"
        );
    }
}

async fn call(c: &Client, op: &str, body: &Value) -> Value {
    match c.call::<Value, Value>(op, body).await {
        Ok(v) => v,
        Err(e) => panic!("{op}: {e:?}"),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let writers = env("FLOTILLA_BENCH_WRITERS", 8);
    let batch = env("FLOTILLA_BENCH_BATCH", 1000).clamp(1, 10_000);
    let secs = env("FLOTILLA_BENCH_SECS", 10) as u64;
    let reads = env("FLOTILLA_BENCH_READS", 200);
    let searches = env("FLOTILLA_BENCH_SEARCHES", 20);

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
        .expect("server");
    });
    let client = Client::ecs(&endpoint, KEY, SECRET, REGION).for_service("logs", "Logs_20140328");

    call(&client, "CreateLogGroup", &json!({"logGroupName": GROUP})).await;
    for w in 0..writers {
        call(
            &client,
            "CreateLogStream",
            &json!({"logGroupName": GROUP, "logStreamName": format!("app/c/{w}")}),
        )
        .await;
    }

    // Phase 1: ingestion.
    println!(
        "PutLogEvents: {writers} writers, {batch} lines of ~100 bytes per call, {secs} s, durable answers"
    );
    let events = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..writers {
        let client = client.clone();
        let (events, bytes) = (events.clone(), bytes.clone());
        handles.push(tokio::spawn(async move {
            let stream = format!("app/c/{w}");
            let mut samples = Samples::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = now_ms();
                let mut size = 0;
                let batch: Vec<Value> = (0..batch)
                    .map(|i| {
                        n += 1;
                        let message = format!(
                            "{t} INFO writer={w} line={n} GET /api/v1/items/{i} status=200 latency_ms={} user=bench",
                            n % 997
                        );
                        size += message.len();
                        json!({"timestamp": t, "message": message})
                    })
                    .collect();
                let count = batch.len();
                let body = json!({"logGroupName": GROUP, "logStreamName": stream, "logEvents": batch});
                let sent = Instant::now();
                let out = call(&client, "PutLogEvents", &body).await;
                samples.0.push(sent.elapsed().as_micros() as u64);
                assert!(out.get("rejectedLogEventsInfo").is_none(), "{out}");
                events.fetch_add(count, Ordering::Relaxed);
                bytes.fetch_add(size, Ordering::Relaxed);
            }
            samples
        }));
    }
    let mut puts = Samples::default();
    for h in handles {
        puts.0.extend(h.await.unwrap().0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (n, b) = (
        events.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
    );
    println!(
        "ingested {n} events, {:.1} MB of messages in {elapsed:.2} s = {:.0} events/s, {:.2} MB/s",
        b as f64 / 1e6,
        n as f64 / elapsed,
        b as f64 / 1e6 / elapsed
    );
    puts.report("PutLogEvents");

    // Phase 2: reads over what was stored.
    let mut tail = Samples::default();
    let mut pattern = Samples::default();
    let mut get = Samples::default();
    let mut found = 0;
    for i in 0..reads {
        let since = now_ms() - 60_000;
        let sent = Instant::now();
        let v = call(
            &client,
            "FilterLogEvents",
            &json!({"logGroupName": GROUP, "startTime": since, "limit": 100, "interleaved": true}),
        )
        .await;
        tail.0.push(sent.elapsed().as_micros() as u64);
        assert!(!v["events"].as_array().unwrap().is_empty());

        if i < searches {
            let sent = Instant::now();
            let v = call(
                &client,
                "FilterLogEvents",
                &json!({"logGroupName": GROUP, "startTime": 0, "limit": 100,
                    "filterPattern": format!("\"line={} \"", 1 + i * 37)}),
            )
            .await;
            pattern.0.push(sent.elapsed().as_micros() as u64);
            found += v["events"].as_array().map_or(0, Vec::len);
        }

        let sent = Instant::now();
        let v = call(
            &client,
            "GetLogEvents",
            &json!({"logGroupName": GROUP, "logStreamName": format!("app/c/{}", i % writers),
                "startFromHead": true, "limit": 100}),
        )
        .await;
        get.0.push(sent.elapsed().as_micros() as u64);
        assert_eq!(v["events"].as_array().unwrap().len(), 100.min(n / writers));
    }
    tail.report("FilterLogEvents, last minute, 100 events");
    pattern.report("FilterLogEvents, one line's phrase, whole group");
    get.report("GetLogEvents, 100 from a stream's head");
    println!("(the phrase searches found {found} events, one per writer per search at most)");

    let _ = stop_tx.send(());
    let _ = server.await;
}
