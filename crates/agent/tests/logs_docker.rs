//! awslogs shipping with real containers (the `flotilla-test` image) on the
//! real Docker Engine, into the in-memory CloudWatch Logs: an agent
//! restart in the middle of a send, a container that exits right after
//! writing, multiline events and lines Docker logs in pieces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_agent::engine::{Engine, EngineConfig, StateChanges};
use flotilla_agent::logs::memory::Fault;
use flotilla_agent::logs::{LogShipping, MemoryLogSink};
use flotilla_agent::spec::LABEL_INSTANCE;
use flotilla_agent::testing::{ensure_test_image, ContainerGuard, TEST_IMAGE};
use flotilla_agent::{DockerRuntime, MetadataIndex};
use flotilla_model::agent::DesiredTask;
use serde_json::{json, Value};

struct Harness {
    docker: DockerRuntime,
    instance: String,
    sink: MemoryLogSink,
    dir: tempfile::TempDir,
    _guard: ContainerGuard,
}

async fn harness(test: &str) -> Harness {
    let docker = DockerRuntime::connect().await.expect("docker");
    ensure_test_image(docker.client())
        .await
        .expect("test image");
    let instance = format!(
        "arn:aws:ecs:us-east-1:1:container-instance/test/{test}-{}",
        std::process::id()
    );
    let guard = ContainerGuard::new(docker.client(), LABEL_INSTANCE, &instance).await;
    let sink = MemoryLogSink::new();
    sink.create_group("/ecs/test");
    Harness {
        docker,
        instance,
        sink,
        dir: tempfile::tempdir().unwrap(),
        _guard: guard,
    }
}

impl Harness {
    /// An engine (a running agent) on the harness's state folder.
    fn start(&self) -> (Engine, StateChanges) {
        let mut config = EngineConfig::new("test", &self.instance);
        config.cleanup_delay = Duration::from_secs(1);
        config.logs = Some(LogShipping {
            sink: Arc::new(self.sink.clone()),
            state_dir: self.dir.path().join("logs"),
        });
        Engine::start(Arc::new(self.docker.clone()), config, MetadataIndex::new())
    }

    fn messages(&self, stream: &str) -> Vec<String> {
        self.sink
            .events("/ecs/test", stream)
            .into_iter()
            .map(|e| e.message)
            .collect()
    }
}

fn task(id: &str, command: &[&str], options: Value) -> DesiredTask {
    let mut all =
        json!({"awslogs-group": "/ecs/test", "awslogs-stream-prefix": "p", "mode": "blocking"});
    all.as_object_mut()
        .unwrap()
        .extend(options.as_object().unwrap().clone());
    DesiredTask {
        task: serde_json::from_value(json!({
            "taskArn": format!("arn:aws:ecs:us-east-1:1:task/test/{id}{}", std::process::id()),
            "desiredStatus": "RUNNING",
        }))
        .unwrap(),
        definition: serde_json::from_value(json!({
            "family": "logs", "revision": 1, "networkMode": "bridge",
            "containerDefinitions": [{"name": "app", "image": TEST_IMAGE, "command": command,
                "memory": 64, "logConfiguration": {"logDriver": "awslogs", "options": all}}],
        }))
        .unwrap(),
    }
}

fn stream_of(t: &DesiredTask) -> String {
    let arn = t.task.task_arn.clone().unwrap();
    format!("p/app/{}", arn.rsplit('/').next().unwrap())
}

/// Polls `f` every 20 ms for up to `limit`.
async fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stopped(changes: &mut StateChanges) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Some(c)) if c.status() == "STOPPED" => return,
            Ok(Some(_)) => {}
            other => panic!("no STOPPED report: {other:?}"),
        }
    }
}

/// `lines N` prints `out I` and `err I`: each exactly once, in order.
fn assert_exactly_once(got: &[String], n: usize) {
    for prefix in ["out", "err"] {
        let lines: Vec<&String> = got.iter().filter(|m| m.starts_with(prefix)).collect();
        let want: Vec<String> = (1..=n).map(|i| format!("{prefix} {i}")).collect();
        assert_eq!(
            lines,
            want.iter().collect::<Vec<_>>(),
            "{prefix}: every line once, in order"
        );
    }
    assert_eq!(got.len(), 2 * n, "nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_in_the_middle_of_a_send_neither_loses_nor_repeats_a_line() {
    const N: usize = 300;
    let h = harness("logs-restart").await;
    let t = task("restart", &["lines", "300", "10"], json!({}));
    let stream = stream_of(&t);
    let (engine, _changes) = h.start();
    engine.set_desired(1, vec![t.clone()]).await.unwrap();
    until("some lines shipped", Duration::from_secs(60), || {
        (h.messages(&stream).len() >= 40).then_some(())
    })
    .await;
    // The next batch is stored, but its answer never comes: the agent dies
    // between the control plane's acceptance and its own record of it.
    h.sink.inject(Fault::Hang);
    until("the hanging send", Duration::from_secs(30), || {
        (h.sink.pending_faults() == 0).then_some(())
    })
    .await;
    drop(engine);
    // The container keeps writing while no agent runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (engine, mut changes) = h.start();
    engine.set_desired(2, vec![t]).await.unwrap();
    stopped(&mut changes).await;
    let got = until("every line", Duration::from_secs(60), || {
        let m = h.messages(&stream);
        (m.len() >= 2 * N).then_some(m)
    })
    .await;
    assert_exactly_once(&got, N);
    assert_eq!(
        h.sink.counts().already_accepted,
        1,
        "the batch resent after the restart was recognised, not stored again"
    );
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_exits_right_after_writing_is_shipped_to_the_end() {
    const N: usize = 500;
    let h = harness("logs-exit").await;
    let t = task("exit", &["lines", "500"], json!({}));
    let stream = stream_of(&t);
    let (engine, mut changes) = h.start();
    engine.set_desired(1, vec![t]).await.unwrap();
    stopped(&mut changes).await;
    let got = until("every line", Duration::from_secs(60), || {
        let m = h.messages(&stream);
        (m.len() >= 2 * N).then_some(m)
    })
    .await;
    assert_exactly_once(&got, N);
    // Removed after the cleanup delay, once drained; the checkpoint goes too.
    let dir = h.dir.path().join("logs");
    until("the checkpoint to go", Duration::from_secs(30), || {
        (std::fs::read_dir(&dir).unwrap().count() == 0).then_some(())
    })
    .await;
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_events_join_lines_and_long_lines_come_back_whole() {
    let h = harness("logs-multiline").await;
    let long = "x".repeat(20_000);
    let t = task(
        "multiline",
        &[
            "echo",
            "2024-05-01 boom",
            "  at a",
            "  at b",
            "2024-05-01 next",
            &long,
        ],
        json!({"awslogs-datetime-format": "%Y-%m-%d"}),
    );
    let stream = stream_of(&t);
    let (engine, mut changes) = h.start();
    engine.set_desired(1, vec![t]).await.unwrap();
    stopped(&mut changes).await;
    let got = until("both events", Duration::from_secs(30), || {
        let m = h.messages(&stream);
        (m.len() >= 2).then_some(m)
    })
    .await;
    // Docker logged the 20,000-byte line in two pieces; it is one line again.
    assert_eq!(
        got,
        [
            "2024-05-01 boom\n  at a\n  at b\n".to_string(),
            format!("2024-05-01 next\n{long}\n")
        ]
    );
    drop(engine);
}

/// 200,000 lines as fast as the container can print them: the agent falls
/// behind (blocking mode stops reading at its queue limit), the container
/// exits meanwhile, and Docker ends the follow early; the agent reads the
/// stopped container's log again until nothing new comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_writes_faster_than_the_agent_ships_is_shipped_whole() {
    const N: usize = 100_000;
    let h = harness("logs-many").await;
    let t = task("many", &["lines", "100000"], json!({}));
    let stream = stream_of(&t);
    let (engine, mut changes) = h.start();
    engine.set_desired(1, vec![t]).await.unwrap();
    stopped(&mut changes).await;
    until("every line", Duration::from_secs(120), || {
        (h.sink.event_count("/ecs/test", &stream) >= 2 * N).then_some(())
    })
    .await;
    assert_exactly_once(&h.messages(&stream), N);
    drop(engine);
}
