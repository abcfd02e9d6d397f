//! Log shipping through the task engine, against the in-memory container
//! runtime (the test writes the containers' output) and the in-memory
//! CloudWatch Logs: stream names, multiline events, exactly-once across an
//! agent restart in the middle of a send, back-pressure and drops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_agent::engine::{Engine, EngineConfig, StateChanges};
use flotilla_agent::fake::FakeRuntime;
use flotilla_agent::logs::memory::Fault;
use flotilla_agent::logs::{LogShipping, MemoryLogSink};
use flotilla_agent::runtime::OutputStream;
use flotilla_agent::MetadataIndex;
use flotilla_model::agent::DesiredTask;
use serde_json::{json, Value};

const INSTANCE: &str = "arn:aws:ecs:us-east-1:1:container-instance/default/i-logs";
const TASK_ID: &str = "0123456789abcdef0123456789abcdef";

fn task(options: Value) -> DesiredTask {
    DesiredTask {
        task: serde_json::from_value(json!({
            "taskArn": format!("arn:aws:ecs:us-east-1:1:task/default/{TASK_ID}"),
            "desiredStatus": "RUNNING",
        }))
        .unwrap(),
        definition: serde_json::from_value(json!({
            "family": "fam", "revision": 1,
            "containerDefinitions": [{"name": "app", "image": "img",
                "logConfiguration": {"logDriver": "awslogs", "options": options}}],
        }))
        .unwrap(),
    }
}

fn start(
    fake: &FakeRuntime,
    sink: &MemoryLogSink,
    dir: &std::path::Path,
) -> (Engine, StateChanges) {
    let mut config = EngineConfig::new("default", INSTANCE);
    config.cleanup_delay = Duration::from_millis(100);
    config.logs = Some(LogShipping {
        sink: Arc::new(sink.clone()),
        state_dir: dir.to_path_buf(),
    });
    Engine::start(Arc::new(fake.clone()), config, MetadataIndex::new())
}

/// Polls `f` every 10 ms for up to 30 s.
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn messages(sink: &MemoryLogSink, group: &str, stream: &str) -> Vec<String> {
    sink.events(group, stream)
        .into_iter()
        .map(|e| e.message)
        .collect()
}

/// The app container's id, once it runs.
async fn container_id(fake: &FakeRuntime) -> String {
    until("the container to start", || {
        fake.by_name("app")
            .filter(|c| c.state == flotilla_agent::runtime::RunState::Running)
            .map(|c| c.id)
    })
    .await
}

#[tokio::test]
async fn ships_each_line_once_to_the_ecs_named_stream() {
    let (fake, sink, dir) = (
        FakeRuntime::new(),
        MemoryLogSink::new(),
        tempfile::tempdir().unwrap(),
    );
    fake.add_image("img");
    let (engine, _changes) = start(&fake, &sink, dir.path());
    engine
        .set_desired(
            1,
            vec![task(
                json!({"awslogs-group": "/ecs/web", "awslogs-stream-prefix": "web",
            "awslogs-create-group": "true", "mode": "blocking"}),
            )],
        )
        .await
        .unwrap();
    let id = container_id(&fake).await;
    let stream = format!("web/app/{TASK_ID}");
    // The stream exists before the container writes anything.
    assert_eq!(sink.streams("/ecs/web"), std::slice::from_ref(&stream));
    fake.write_log(&id, OutputStream::Stdout, b"hello\n");
    fake.write_log(&id, OutputStream::Stderr, b"oops\n");
    fake.write_log(&id, OutputStream::Stdout, b"\n");
    fake.write_log(&id, OutputStream::Stdout, b"world\n");
    until("4 lines", || {
        (messages(&sink, "/ecs/web", &stream).len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        messages(&sink, "/ecs/web", &stream),
        ["hello", "oops", "world"]
    );
    let events = sink.events("/ecs/web", &stream);
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    drop(engine);
}

#[tokio::test]
async fn a_group_that_does_not_exist_fails_the_container_unless_it_may_be_created() {
    let (fake, sink, dir) = (
        FakeRuntime::new(),
        MemoryLogSink::new(),
        tempfile::tempdir().unwrap(),
    );
    fake.add_image("img");
    let (engine, mut changes) = start(&fake, &sink, dir.path());
    engine
        .set_desired(1, vec![task(json!({"awslogs-group": "missing"}))])
        .await
        .unwrap();
    let stopped = loop {
        let c = tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .unwrap()
            .unwrap();
        if c.status() == "STOPPED" {
            break c;
        }
    };
    let reason = stopped
        .container("app")
        .unwrap()
        .reason
        .clone()
        .unwrap_or_default();
    assert!(
        reason.contains("failed to initialize logging driver"),
        "{reason}"
    );
    assert!(reason.contains("log group does not exist"), "{reason}");
    // Bad options name the option.
    let (fake2, dir2) = (FakeRuntime::new(), tempfile::tempdir().unwrap());
    fake2.add_image("img");
    let (engine2, mut changes2) = start(&fake2, &sink, dir2.path());
    engine2
        .set_desired(1, vec![task(json!({"awslogs-group": "g", "mode": "fast"}))])
        .await
        .unwrap();
    let stopped = loop {
        let c = tokio::time::timeout(Duration::from_secs(5), changes2.recv())
            .await
            .unwrap()
            .unwrap();
        if c.status() == "STOPPED" {
            break c;
        }
    };
    let reason = stopped
        .container("app")
        .unwrap()
        .reason
        .clone()
        .unwrap_or_default();
    assert!(
        reason.contains("mode must be blocking or non-blocking"),
        "{reason}"
    );
    drop((engine, engine2));
}

#[tokio::test]
async fn multiline_events_and_long_lines_in_pieces() {
    let (fake, sink, dir) = (
        FakeRuntime::new(),
        MemoryLogSink::new(),
        tempfile::tempdir().unwrap(),
    );
    fake.add_image("img");
    sink.create_group("g");
    let (engine, _changes) = start(&fake, &sink, dir.path());
    engine
        .set_desired(
            1,
            vec![task(
                json!({"awslogs-group": "g", "awslogs-datetime-format": "%Y-%m-%d",
            "awslogs-force-flush-interval-seconds": "1"}),
            )],
        )
        .await
        .unwrap();
    let id = container_id(&fake).await;
    for line in [
        "2024-05-01 boom\n",
        "  at a\n",
        "  at b\n",
        "2024-05-01 next\n",
    ] {
        fake.write_log(&id, OutputStream::Stdout, line.as_bytes());
    }
    // A line Docker logged in two pieces.
    fake.write_log(&id, OutputStream::Stderr, b"2024-05-02 long ");
    fake.write_log(&id, OutputStream::Stderr, b"line\n");
    // Without a stream prefix the stream is the container id. The last
    // event of each output waits for the flush interval (1 s).
    let got = until("4 events", || {
        let m = messages(&sink, "g", &id);
        (m.len() == 3).then_some(m)
    })
    .await;
    let mut got = got;
    got.sort();
    assert_eq!(
        got,
        [
            "2024-05-01 boom\n  at a\n  at b\n",
            "2024-05-01 next\n",
            "2024-05-02 long line\n"
        ]
    );
    drop(engine);
}

/// The agent dies while a batch it sent is stored but unanswered; the next
/// agent on the same state folder resends it and the sink recognises it.
#[tokio::test]
async fn a_restart_in_the_middle_of_a_send_neither_loses_nor_repeats() {
    let (fake, sink, dir) = (
        FakeRuntime::new(),
        MemoryLogSink::new(),
        tempfile::tempdir().unwrap(),
    );
    fake.add_image("img");
    sink.create_group("g");
    let options = json!({"awslogs-group": "g", "awslogs-stream-prefix": "p", "mode": "blocking"});
    let stream = format!("p/app/{TASK_ID}");
    let (engine, _changes) = start(&fake, &sink, dir.path());
    engine
        .set_desired(1, vec![task(options.clone())])
        .await
        .unwrap();
    let id = container_id(&fake).await;
    for i in 1..=5 {
        fake.write_log(&id, OutputStream::Stdout, format!("out {i}\n").as_bytes());
    }
    until("5 lines", || {
        (messages(&sink, "g", &stream).len() == 5).then_some(())
    })
    .await;
    // The next batch is stored, and its answer never comes.
    sink.inject(Fault::Hang);
    for i in 6..=8 {
        fake.write_log(&id, OutputStream::Stdout, format!("out {i}\n").as_bytes());
        fake.write_log(&id, OutputStream::Stderr, format!("err {i}\n").as_bytes());
    }
    until("the hanging send", || {
        (sink.pending_faults() == 0).then_some(())
    })
    .await;
    let stored = messages(&sink, "g", &stream).len();
    assert!(stored > 5, "the hanging batch was stored");
    // Killed: the engine and its followers are gone, the container lives on.
    drop(engine);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 9..=10 {
        fake.write_log(&id, OutputStream::Stdout, format!("out {i}\n").as_bytes());
    }
    let (engine, mut changes) = start(&fake, &sink, dir.path());
    engine.set_desired(2, vec![task(options)]).await.unwrap();
    fake.write_log(&id, OutputStream::Stderr, b"err 11\n");
    fake.exit(&id, 0);
    loop {
        let c = tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .unwrap()
            .unwrap();
        if c.status() == "STOPPED" {
            break;
        }
    }
    let want_len = 5 + 3 * 2 + 2 + 1;
    let got = until("every line", || {
        let m = messages(&sink, "g", &stream);
        (m.len() >= want_len).then_some(m)
    })
    .await;
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "no line twice: {got:?}");
    assert_eq!(got.len(), want_len, "{got:?}");
    let outs: Vec<&String> = got.iter().filter(|m| m.starts_with("out")).collect();
    let want: Vec<String> = (1..=10).map(|i| format!("out {i}")).collect();
    assert_eq!(outs, want.iter().collect::<Vec<_>>(), "stdout in order");
    assert_eq!(
        sink.counts().already_accepted,
        1,
        "the resent batch was recognised"
    );
    // Shipped to the end, the container is removed after the cleanup delay,
    // and its checkpoint with it.
    until("cleanup", || {
        (fake.containers().iter().all(|c| c.removed)
            && std::fs::read_dir(dir.path()).unwrap().count() == 0)
            .then_some(())
    })
    .await;
    drop(engine);
}

#[tokio::test]
async fn blocking_mode_waits_for_the_sink_and_non_blocking_drops_the_oldest() {
    for (mode, buffer) in [("blocking", "1k"), ("non-blocking", "1k")] {
        let (fake, sink, dir) = (
            FakeRuntime::new(),
            MemoryLogSink::new(),
            tempfile::tempdir().unwrap(),
        );
        fake.add_image("img");
        sink.create_group("g");
        let (engine, _changes) = start(&fake, &sink, dir.path());
        engine
            .set_desired(
                1,
                vec![task(
                    json!({"awslogs-group": "g", "awslogs-stream": "s", "mode": mode,
                "max-buffer-size": buffer}),
                )],
            )
            .await
            .unwrap();
        let id = container_id(&fake).await;
        // The sink is away for a while (about 1.5 s of retries).
        for _ in 0..4 {
            sink.inject(Fault::Unavailable);
        }
        for i in 0..200 {
            fake.write_log(
                &id,
                OutputStream::Stdout,
                format!("line {i:03} {}\n", "x".repeat(40)).as_bytes(),
            );
        }
        fake.exit(&id, 0);
        let got = until("the last line", || {
            let m = messages(&sink, "g", "s");
            m.last()
                .is_some_and(|l| l.starts_with("line 199"))
                .then_some(m)
        })
        .await;
        eprintln!("{mode}: {} of 200 lines shipped", got.len());
        if mode == "blocking" {
            assert_eq!(got.len(), 200, "blocking mode loses nothing");
        } else {
            // 1 KiB holds about 14 of these 74-byte events; the first batch
            // went out before the buffer overflowed.
            assert!(got.len() < 60, "non-blocking mode drops: {}", got.len());
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(sorted, got, "what is kept is in order");
        }
        drop(engine);
    }
}

/// The control plane stores a batch and dies before it answers: the agent
/// sends it again with the same token, and it is recognised.
#[tokio::test]
async fn a_lost_answer_is_resent_and_recognised() {
    let (fake, sink, dir) = (
        FakeRuntime::new(),
        MemoryLogSink::new(),
        tempfile::tempdir().unwrap(),
    );
    fake.add_image("img");
    sink.create_group("g");
    let (engine, _changes) = start(&fake, &sink, dir.path());
    engine
        .set_desired(
            1,
            vec![task(json!({"awslogs-group": "g", "awslogs-stream": "s"}))],
        )
        .await
        .unwrap();
    let id = container_id(&fake).await;
    sink.inject(Fault::LoseAnswer);
    fake.write_log(&id, OutputStream::Stdout, b"one\n");
    until("the resend", || {
        (sink.counts().already_accepted == 1).then_some(())
    })
    .await;
    fake.write_log(&id, OutputStream::Stdout, b"two\n");
    until("two lines", || {
        (messages(&sink, "g", "s").len() == 2).then_some(())
    })
    .await;
    assert_eq!(messages(&sink, "g", "s"), ["one", "two"]);
    drop(engine);
}

/// Blocking mode: while the sink is away the agent stops reading (the rest
/// waits in the container's log), then ships everything.
#[tokio::test]
async fn blocking_mode_stops_reading_while_the_sink_is_away() {
    const LINES: u64 = 40_000;
    let (fake, sink, dir) = (
        FakeRuntime::new(),
        MemoryLogSink::new(),
        tempfile::tempdir().unwrap(),
    );
    fake.add_image("img");
    sink.create_group("g");
    let (engine, _changes) = start(&fake, &sink, dir.path());
    engine
        .set_desired(
            1,
            vec![task(
                json!({"awslogs-group": "g", "awslogs-stream": "s", "mode": "blocking"}),
            )],
        )
        .await
        .unwrap();
    let id = container_id(&fake).await;
    sink.pause();
    let line = "y".repeat(100);
    for i in 0..LINES {
        fake.write_log(
            &id,
            OutputStream::Stdout,
            format!("{i:06} {line}\n").as_bytes(),
        );
    }
    // 127 bytes an event: the queue (2 MiB) holds about 16,500 besides the
    // one batch in flight; the reader stops there.
    until("the reader to fill its queue", || {
        (fake.log_records_read() > 15_000).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read = fake.log_records_read();
    assert!(read < 20_000, "the reader kept reading: {read} records");
    sink.resume();
    let got = until("every line", || {
        let m = messages(&sink, "g", "s");
        (m.len() as u64 >= LINES).then_some(m)
    })
    .await;
    assert_eq!(got.len() as u64, LINES);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    drop(engine);
}

/// A task stopped while its output was not all shipped, then the agent
/// restarted: the control plane no longer lists the task, and the agent
/// ships the rest before it removes the containers.
#[tokio::test]
async fn containers_of_a_forgotten_task_are_drained_before_removal() {
    let (fake, sink, dir) = (
        FakeRuntime::new(),
        MemoryLogSink::new(),
        tempfile::tempdir().unwrap(),
    );
    fake.add_image("img");
    sink.create_group("g");
    let (engine, mut changes) = start(&fake, &sink, dir.path());
    engine
        .set_desired(
            1,
            vec![task(json!({"awslogs-group": "g", "awslogs-stream": "s"}))],
        )
        .await
        .unwrap();
    let id = container_id(&fake).await;
    sink.pause();
    for i in 0..5 {
        fake.write_log(
            &id,
            OutputStream::Stderr,
            format!("last words {i}\n").as_bytes(),
        );
    }
    fake.exit(&id, 1);
    loop {
        let c = tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .unwrap()
            .unwrap();
        if c.status() == "STOPPED" {
            break;
        }
    }
    drop(engine);
    sink.resume();
    // The control plane has the STOPPED report: its desired set is empty.
    let (engine, _changes) = start(&fake, &sink, dir.path());
    engine.set_desired(2, vec![]).await.unwrap();
    until("removal", || {
        fake.containers().iter().all(|c| c.removed).then_some(())
    })
    .await;
    let want: Vec<String> = (0..5).map(|i| format!("last words {i}")).collect();
    assert_eq!(
        messages(&sink, "g", "s"),
        want,
        "shipped before the container went"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "checkpoint removed"
    );
    drop(engine);
}

/// 100,000 events go out in batches of at most 10,000 (the sink refuses
/// bigger ones), all of them, in order.
#[tokio::test]
async fn many_short_lines_go_out_in_batches_within_the_limits() {
    const LINES: usize = 100_000;
    let (fake, sink, dir) = (
        FakeRuntime::new(),
        MemoryLogSink::new(),
        tempfile::tempdir().unwrap(),
    );
    fake.add_image("img");
    sink.create_group("g");
    let (engine, _changes) = start(&fake, &sink, dir.path());
    engine
        .set_desired(
            1,
            vec![task(
                json!({"awslogs-group": "g", "awslogs-stream": "s", "mode": "blocking"}),
            )],
        )
        .await
        .unwrap();
    let id = container_id(&fake).await;
    for i in 0..LINES {
        fake.write_log(&id, OutputStream::Stdout, format!("{i:06}\n").as_bytes());
    }
    until("every line", || {
        (sink.event_count("g", "s") >= LINES).then_some(())
    })
    .await;
    let got = messages(&sink, "g", "s");
    assert_eq!(got.len(), LINES);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    assert!(sink.counts().accepted >= 10, "{:?}", sink.counts());
    drop(engine);
}
