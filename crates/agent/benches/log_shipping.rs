//! How fast the agent ships a container's output, and how soon a line is
//! in CloudWatch Logs after the container wrote it. A real container (the
//! `flotilla-test` image) on the real Docker Engine; CloudWatch Logs is the
//! in-memory sink, in process and behind its HTTP front.
//!
//! `cargo bench -p flotilla-agent --bench log_shipping`
//! (`FLOTILLA_BENCH_LINES` lines to each of stdout and stderr, 50,000 by
//! default). Prints figures; asserts nothing about time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flotilla_agent::engine::{Engine, EngineConfig, StateChanges};
use flotilla_agent::logs::memory::serve_http;
use flotilla_agent::logs::{HttpLogSink, LogShipping, LogSink, MemoryLogSink};
use flotilla_agent::spec::LABEL_INSTANCE;
use flotilla_agent::testing::{ensure_test_image, ContainerGuard, TEST_IMAGE};
use flotilla_agent::{DockerRuntime, MetadataIndex};
use flotilla_model::agent::DesiredTask;
use serde_json::json;

const GROUP: &str = "bench";

fn task(id: &str, command: &[&str]) -> DesiredTask {
    let options = json!({"awslogs-group": GROUP, "awslogs-stream": id, "mode": "blocking"});
    DesiredTask {
        task: serde_json::from_value(json!({
            "taskArn": format!("arn:aws:ecs:us-east-1:1:task/bench/{id}{}", std::process::id()),
            "desiredStatus": "RUNNING",
        }))
        .unwrap(),
        definition: serde_json::from_value(json!({
            "family": "bench", "revision": 1,
            "containerDefinitions": [{"name": "app", "image": TEST_IMAGE, "command": command,
                "memory": 128, "logConfiguration": {"logDriver": "awslogs", "options": options}}],
        }))
        .unwrap(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn wait_stopped(changes: &mut StateChanges) -> Instant {
    loop {
        let c = tokio::time::timeout(Duration::from_secs(600), changes.recv())
            .await
            .expect("no STOPPED within 10 minutes")
            .expect("engine stopped");
        if c.status() == "STOPPED" {
            return Instant::now();
        }
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Run<'a> {
    docker: &'a DockerRuntime,
    instance: &'a str,
    sink: &'a MemoryLogSink,
}

impl Run<'_> {
    fn engine(&self, sink: Arc<dyn LogSink>, dir: &std::path::Path) -> (Engine, StateChanges) {
        let mut config = EngineConfig::new("bench", self.instance);
        config.cleanup_delay = Duration::from_secs(3600);
        config.logs = Some(LogShipping {
            sink,
            state_dir: dir.to_path_buf(),
        });
        Engine::start(Arc::new(self.docker.clone()), config, MetadataIndex::new())
    }

    /// A container prints `lines` lines to each output as fast as it can.
    async fn throughput(&self, label: &str, sink: Arc<dyn LogSink>, lines: usize) {
        let dir = tempfile::tempdir().unwrap();
        let (engine, mut changes) = self.engine(sink, dir.path());
        let id = format!("throughput-{label}");
        let start = Instant::now();
        engine
            .set_desired(1, vec![task(&id, &["lines", &lines.to_string()])])
            .await
            .unwrap();
        let exited = wait_stopped(&mut changes).await;
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.sink.event_count(GROUP, &id) < 2 * lines {
            assert!(
                Instant::now() < deadline,
                "not all lines shipped within 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let shipped = start.elapsed();
        let counts = self.sink.counts();
        println!(
            "{label:>10}: {} lines shipped in {:.2} s = {:.0} lines/s (container done writing after {:.2} s; {} PutLogEvents so far in this sink)",
            2 * lines,
            shipped.as_secs_f64(),
            (2 * lines) as f64 / shipped.as_secs_f64(),
            (exited - start).as_secs_f64(),
            counts.accepted,
        );
        drop(engine);
    }

    /// A container prints a line to each output every 20 ms; how long until
    /// each is in the sink (its Docker timestamp to the moment it is seen).
    async fn latency(&self, label: &str, sink: Arc<dyn LogSink>) {
        let dir = tempfile::tempdir().unwrap();
        let (engine, mut changes) = self.engine(sink, dir.path());
        let id = format!("latency-{label}");
        engine
            .set_desired(1, vec![task(&id, &["lines", "250", "20"])])
            .await
            .unwrap();
        let mut seen = 0;
        let mut delays = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen < 500 {
            assert!(Instant::now() < deadline, "lines did not arrive");
            if self.sink.event_count(GROUP, &id) > seen {
                let events = self.sink.events(GROUP, &id);
                let now = now_ms();
                for e in &events[seen..] {
                    delays.push(now - e.timestamp);
                }
                seen = events.len();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        wait_stopped(&mut changes).await;
        delays.sort_unstable();
        println!(
            "{label:>10}: write → in the sink, 500 lines at 100/s: p50 {} ms, p99 {} ms, max {} ms",
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays.last().unwrap()
        );
        drop(engine);
    }
}

fn main() {
    let lines: usize = std::env::var("FLOTILLA_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let docker = DockerRuntime::connect().await.expect("docker");
        ensure_test_image(docker.client())
            .await
            .expect("test image");
        let instance = format!(
            "arn:aws:ecs:us-east-1:1:container-instance/bench/logs-{}",
            std::process::id()
        );
        let _guard = ContainerGuard::new(docker.client(), LABEL_INSTANCE, &instance).await;
        let sink = MemoryLogSink::new();
        sink.create_group(GROUP);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(serve_http(listener, sink.clone(), std::future::pending()));
        let http: Arc<dyn LogSink> = Arc::new(HttpLogSink::new(&flotilla_client::Client::ecs(
            &endpoint,
            "AKIDBENCH",
            "secret",
            "us-east-1",
        )));
        let run = Run {
            docker: &docker,
            instance: &instance,
            sink: &sink,
        };
        run.throughput("in-process", Arc::new(sink.clone()), lines)
            .await;
        run.throughput("http", http.clone(), lines).await;
        run.latency("in-process", Arc::new(sink.clone())).await;
        run.latency("http", http).await;
        server.abort();
    });
}
