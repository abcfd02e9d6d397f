//! The awslogs driver end to end: the control plane in-process, a real
//! `flotilla agent` process on the real Docker Engine, and CloudWatch Logs
//! played by the in-memory sink behind the real wire protocol (the
//! control plane has no Logs API yet; the task definition's
//! `awslogs-endpoint` points the agent at it). The agent is killed with
//! SIGKILL while a batch it sent is stored but unanswered, and started
//! again: every line arrives exactly once.

mod common;

use std::time::Duration;

use common::{container, data_dir, wait_for, Env};
use flotilla_agent::host::SavedInstance;
use flotilla_agent::logs::memory::{serve_http, Fault};
use flotilla_agent::logs::MemoryLogSink;
use serde_json::json;

const GROUP: &str = "/ecs/e2e-logs";
const LINES: usize = 400;

fn messages(sink: &MemoryLogSink, stream: &str) -> Vec<String> {
    sink.events(GROUP, stream)
        .into_iter()
        .map(|e| e.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_ships_every_line_exactly_once_after_it_restarts() {
    let env = Env::start("e2e-awslogs").await;
    let sink = MemoryLogSink::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let logs_endpoint = format!("http://{}", listener.local_addr().unwrap());
    let logs_server = tokio::spawn(serve_http(listener, sink.clone(), std::future::pending()));

    let dir = data_dir(&env, "agent");
    let mut agent = env.agent_process(&dir, "127.0.0.1");
    let arn = wait_for("the agent to register", Duration::from_secs(30), || async {
        SavedInstance::load(&dir).map(|s| s.container_instance_arn)
    })
    .await;
    env.wait_connected(&arn, true).await;

    let mut app = container("app", &["lines", &LINES.to_string(), "10"]);
    app["logConfiguration"] = json!({"logDriver": "awslogs", "options": {
        "awslogs-group": GROUP, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "e2e",
        "awslogs-create-group": "true", "mode": "blocking", "awslogs-endpoint": logs_endpoint}});
    let td = env.register_task_definition("e2e-logs", json!([app])).await;
    let task = env.run_task(&td, 1).await.remove(0);
    let stream = format!("e2e/app/{}", task.rsplit('/').next().unwrap());

    wait_for("some lines shipped", Duration::from_secs(60), || async {
        (messages(&sink, &stream).len() >= 60).then_some(())
    })
    .await;
    // The next batch is stored but never answered; the agent is killed
    // while it waits.
    sink.inject(Fault::Hang);
    wait_for("the hanging send", Duration::from_secs(30), || async {
        (sink.pending_faults() == 0).then_some(())
    })
    .await;
    agent.kill9();
    env.wait_connected(&arn, false).await;
    let _agent = env.agent_process(&dir, "127.0.0.1");
    env.wait_task(&task, "STOPPED").await;

    let got = wait_for("every line", Duration::from_secs(60), || async {
        let m = messages(&sink, &stream);
        (m.len() >= 2 * LINES).then_some(m)
    })
    .await;
    for prefix in ["out", "err"] {
        let lines: Vec<&String> = got.iter().filter(|m| m.starts_with(prefix)).collect();
        let want: Vec<String> = (1..=LINES).map(|i| format!("{prefix} {i}")).collect();
        assert_eq!(
            lines,
            want.iter().collect::<Vec<_>>(),
            "{prefix}: every line once, in order"
        );
    }
    assert_eq!(got.len(), 2 * LINES);
    assert_eq!(
        sink.counts().already_accepted,
        1,
        "the resent batch was recognised"
    );
    assert_eq!(
        sink.groups(),
        [GROUP],
        "awslogs-create-group made the group"
    );
    logs_server.abort();
    env.stop().await;
}
