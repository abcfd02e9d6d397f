//! CloudWatch Logs end to end: the control plane in-process, two agents
//! on the real Docker Engine, and tasks of the `flotilla-test` image whose
//! task definition says `awslogs` with no endpoint of its own, so the
//! agents ship to the control plane's Logs API. Every line arrives once,
//! in order, in the stream `PREFIX/CONTAINER/TASK-ID`, and is read back
//! with the real AWS CLI: `filter-log-events` (v1) shows both tasks'
//! lines, `get-log-events` pages forward and back in order, and
//! `aws logs tail` (v2) shows them too; `aws logs tail --follow` on a
//! running service; an agent killed with SIGKILL while shipping.

mod common;

use std::time::Duration;

use common::{container, wait_for, Env, KEY, REGION, SECRET};
use serde_json::{json, Value};

const GROUP: &str = "/ecs/e2e-logsapi";
const LINES: usize = 150;

/// Runs `aws logs ARGS… --output json` (v1, `$FLOTILLA_TEST_AWS_CLI`).
async fn aws_logs(env: &Env, args: &[&str]) -> Value {
    let exe = std::env::var("FLOTILLA_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into());
    let out = cli(&exe, env, args)
        .args(["--output", "json"])
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("the AWS CLI ({exe}) must be installed: run scripts/test ({e})")
        });
    assert!(
        out.status.success(),
        "aws logs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the AWS CLI")
}

fn cli(exe: &str, env: &Env, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(exe);
    c.arg("logs")
        .args(args)
        .args(["--endpoint-url", &env.endpoint, "--region", REGION])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .kill_on_drop(true);
    c
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {v}"))
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// What `lines N` prints on one of its outputs: `out 1` … `out N`.
fn expected(prefix: &str) -> Vec<String> {
    (1..=LINES).map(|i| format!("{prefix} {i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awslogs_lines_reach_the_logs_api_and_read_back_with_the_cli() {
    let env = Env::start("e2e-logsapi").await;
    let a = env.agent("a", "127.0.0.2").await;
    let b = env.agent("b", "127.0.0.3").await;
    env.wait_connected(&a.arn, true).await;
    env.wait_connected(&b.arn, true).await;

    let mut app = container("app", &["lines", &LINES.to_string(), "5"]);
    app["logConfiguration"] = json!({"logDriver": "awslogs", "options": {
        "awslogs-group": GROUP, "awslogs-region": REGION, "awslogs-stream-prefix": "web",
        "awslogs-create-group": "true", "mode": "blocking"}});
    let td = env
        .register_task_definition("e2e-logsapi", json!([app]))
        .await;
    let v = env
        .call(
            "RunTask",
            json!({"cluster": env.cluster, "taskDefinition": td, "count": 2,
                "placementConstraints": [{"type": "distinctInstance"}]}),
        )
        .await;
    assert_eq!(v["failures"], json!([]), "{v}");
    let tasks: Vec<String> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tasks.len(), 2);
    let streams: Vec<String> = tasks
        .iter()
        .map(|t| format!("web/app/{}", t.rsplit('/').next().unwrap()))
        .collect();
    for t in &tasks {
        env.wait_task(t, "STOPPED").await;
    }

    // Every line of both tasks, shipped by both agents (lines of a
    // container that exited are shipped after it stops).
    let all = wait_for(
        "every line in the Logs API",
        Duration::from_secs(90),
        || async {
            let v = aws_logs(&env, &["filter-log-events", "--log-group-name", GROUP]).await;
            (messages(&v).len() >= 4 * LINES).then_some(v)
        },
    )
    .await;
    assert_eq!(messages(&all).len(), 4 * LINES, "no line twice");
    for stream in &streams {
        let of_stream: Vec<String> = all["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["logStreamName"] == stream.as_str())
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect();
        for prefix in ["out", "err"] {
            let lines: Vec<String> = of_stream
                .iter()
                .filter(|m| m.starts_with(prefix))
                .cloned()
                .collect();
            assert_eq!(
                lines,
                expected(prefix),
                "{stream}: every {prefix} line once, in order"
            );
        }
    }
    // Write-to-searchable: an event's `timestamp` is when the container
    // wrote the line (Docker's), its `ingestionTime` when the store took it
    // (durable and searchable a commit later). Printed, not asserted: the
    // machine is shared.
    let mut lag: Vec<i64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ingestionTime"].as_i64().unwrap() - e["timestamp"].as_i64().unwrap())
        .collect();
    lag.sort_unstable();
    let pct = |p: f64| lag[((lag.len() - 1) as f64 * p).round() as usize];
    println!(
        "write-to-searchable over {} lines: p50 {} ms, p99 {} ms, max {} ms",
        lag.len(),
        pct(0.5),
        pct(0.99),
        lag[lag.len() - 1]
    );
    assert!(lag[0] >= 0, "ingested before written? {lag:?}");
    // Interleaved in timestamp order across both streams.
    let stamps: Vec<i64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "time order");
    let described = aws_logs(&env, &["describe-log-streams", "--log-group-name", GROUP]).await;
    let mut names: Vec<String> = described["logStreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["logStreamName"].as_str().unwrap().to_string())
        .collect();
    let mut want = streams.clone();
    want.sort();
    names.sort();
    assert_eq!(
        names, want,
        "one stream per task, named PREFIX/CONTAINER/TASK-ID"
    );

    // A filter pattern over both tasks: `out 7` of each, and nothing else.
    let seven = aws_logs(
        &env,
        &[
            "filter-log-events",
            "--log-group-name",
            GROUP,
            "--filter-pattern",
            "\"out 7\"",
        ],
    )
    .await;
    let mut found = messages(&seven);
    found.sort();
    found.dedup();
    assert!(found.iter().all(|m| m.starts_with("out 7")), "{found:?}");
    assert_eq!(messages(&seven).iter().filter(|m| *m == "out 7").count(), 2);

    // get-log-events pages forward from the head, 50 at a time, in order,
    // then back again with the backward tokens.
    let stream = &streams[0];
    let page = |token: Option<String>| {
        let stream = stream.clone();
        let env = &env;
        async move {
            let mut args = vec![
                "get-log-events".to_string(),
                "--no-paginate".into(),
                "--log-group-name".into(),
                GROUP.into(),
                "--log-stream-name".into(),
                stream,
                "--limit".into(),
                "50".into(),
            ];
            match token {
                Some(t) => args.extend(["--next-token".into(), t]),
                None => args.push("--start-from-head".into()),
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            aws_logs(env, &args).await
        }
    };
    let mut forward: Vec<String> = Vec::new();
    let mut backward_tokens = Vec::new();
    let mut token = None;
    for _ in 0..20 {
        let v = page(token.clone()).await;
        let got = messages(&v);
        let next = v["nextForwardToken"].as_str().unwrap().to_string();
        if got.is_empty() {
            assert_eq!(Some(next), token, "the end: the same token back");
            break;
        }
        assert!(got.len() <= 50);
        backward_tokens.push(v["nextBackwardToken"].as_str().unwrap().to_string());
        forward.extend(got);
        token = Some(next);
    }
    assert_eq!(forward.len(), 2 * LINES);
    let in_stream: Vec<String> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["logStreamName"] == stream.as_str())
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        forward, in_stream,
        "get-log-events agrees with filter-log-events"
    );
    // The last page's backward token gives the page before it.
    let last_back = backward_tokens.last().unwrap().clone();
    let before = messages(&page(Some(last_back)).await);
    let n = backward_tokens.len();
    assert_eq!(before, forward[(n - 2) * 50..(n - 1) * 50], "a page back");

    // aws logs tail (v2): both tasks' lines.
    let v2 = std::env::var("FLOTILLA_TEST_AWS_CLI_V2").unwrap_or_else(|_| "/usr/bin/aws".into());
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        cli(
            &v2,
            &env,
            &[
                "tail", GROUP, "--since", "1h", "--format", "short", "--color", "off",
            ],
        )
        .output(),
    )
    .await
    .expect("aws logs tail finished")
    .unwrap_or_else(|e| {
        panic!("`aws logs tail` needs the AWS CLI v2 at {v2} (run scripts/test): {e}")
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 4 * LINES, "{text}");
    assert_eq!(text.lines().filter(|l| l.ends_with(" out 1")).count(), 2);

    a.stop().await;
    b.stop().await;
    env.stop().await;
}

/// A service of two tasks on two agents, running: `aws logs tail --follow`
/// (v2) prints both tasks' lines as they are written, none twice, and
/// `filter-log-events` by stream prefix finds both streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follow_shows_both_tasks_of_a_service() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let env = Env::start("e2e-logstail").await;
    let a = env.agent("a", "127.0.0.2").await;
    let b = env.agent("b", "127.0.0.3").await;
    env.wait_connected(&a.arn, true).await;
    env.wait_connected(&b.arn, true).await;
    let group = "/ecs/e2e-logstail";
    // 20 lines a second on each output for over an hour: running throughout.
    let mut app = container("app", &["lines", "100000", "50"]);
    app["logConfiguration"] = json!({"logDriver": "awslogs", "options": {
        "awslogs-group": group, "awslogs-region": REGION, "awslogs-stream-prefix": "svc",
        "awslogs-create-group": "true", "mode": "non-blocking"}});
    let td = env
        .register_task_definition("e2e-logstail", json!([app]))
        .await;
    env.call(
        "CreateService",
        json!({"cluster": env.cluster, "serviceName": "web", "taskDefinition": td,
            "desiredCount": 2, "placementConstraints": [{"type": "distinctInstance"}]}),
    )
    .await;
    let tasks: Vec<String> = wait_for("two RUNNING tasks", Duration::from_secs(90), || async {
        let v = env
            .call(
                "ListTasks",
                json!({"cluster": env.cluster, "serviceName": "web", "desiredStatus": "RUNNING"}),
            )
            .await;
        let arns: Vec<String> = v["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        if arns.len() != 2 {
            return None;
        }
        for arn in &arns {
            if env.task(arn).await["lastStatus"] != "RUNNING" {
                return None;
            }
        }
        Some(arns)
    })
    .await;
    let streams: Vec<String> = tasks
        .iter()
        .map(|t| format!("svc/app/{}", t.rsplit('/').next().unwrap()))
        .collect();

    let v2 = std::env::var("FLOTILLA_TEST_AWS_CLI_V2").unwrap_or_else(|_| "/usr/bin/aws".into());
    let mut child = cli(
        &v2,
        &env,
        &[
            "tail", group, "--follow", "--since", "10m", "--color", "off",
        ],
    )
    .env("PYTHONUNBUFFERED", "1")
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap_or_else(|e| panic!("`aws logs tail` needs the AWS CLI v2 at {v2}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut seen: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    while streams.iter().any(|s| seen.get(s).map_or(0, Vec::len) < 40) {
        let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => {
                panic!("aws logs tail --follow stopped or timed out ({other:?}); seen {seen:?}")
            }
        };
        // detailed format: TIMESTAMP STREAM MESSAGE
        let mut parts = line.splitn(3, ' ');
        let (_ts, stream, message) = (parts.next(), parts.next(), parts.next());
        let (Some(stream), Some(message)) = (stream, message) else {
            panic!("unexpected tail line {line:?}");
        };
        seen.entry(stream.to_string())
            .or_default()
            .push(message.to_string());
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let mut printed: Vec<&String> = seen.keys().collect();
    printed.sort();
    let mut want: Vec<&String> = streams.iter().collect();
    want.sort();
    assert_eq!(printed, want, "both tasks' streams, nothing else");
    for (stream, messages) in &seen {
        let mut unique = messages.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            messages.len(),
            "{stream}: a line printed twice"
        );
        assert!(messages
            .iter()
            .all(|m| m.starts_with("out ") || m.starts_with("err ")));
    }
    let found = aws_logs(
        &env,
        &[
            "filter-log-events",
            "--log-group-name",
            group,
            "--log-stream-name-prefix",
            "svc/app/",
            "--filter-pattern",
            "\"out 1\"",
            "--max-items",
            "1000",
        ],
    )
    .await;
    let mut streams_found: Vec<String> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["logStreamName"].as_str().unwrap().to_string())
        .collect();
    streams_found.sort();
    streams_found.dedup();
    assert_eq!(streams_found.len(), 2, "{found}");

    env.call(
        "DeleteService",
        json!({"cluster": env.cluster, "service": "web", "force": true}),
    )
    .await;
    a.stop().await;
    b.stop().await;
    env.stop().await;
}

/// A `flotilla agent` process killed with SIGKILL while it ships to the
/// control plane's Logs API, then started again: every line is there
/// exactly once (the resent batch is recognised by its sequence token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_loses_and_repeats_no_line() {
    use common::data_dir;
    use flotilla_agent::host::SavedInstance;

    const N: usize = 400;
    let env = Env::start("e2e-logskill").await;
    let group = "/ecs/e2e-logskill";
    let dir = data_dir(&env, "agent");
    let mut agent = env.agent_process(&dir, "127.0.0.1");
    let arn = wait_for("the agent to register", Duration::from_secs(30), || async {
        SavedInstance::load(&dir).map(|s| s.container_instance_arn)
    })
    .await;
    env.wait_connected(&arn, true).await;
    let mut app = container("app", &["lines", &N.to_string(), "10"]);
    app["logConfiguration"] = json!({"logDriver": "awslogs", "options": {
        "awslogs-group": group, "awslogs-region": REGION, "awslogs-stream-prefix": "k",
        "awslogs-create-group": "true", "mode": "blocking"}});
    let td = env
        .register_task_definition("e2e-logskill", json!([app]))
        .await;
    let task = env.run_task(&td, 1).await.remove(0);
    let stream = format!("k/app/{}", task.rsplit('/').next().unwrap());
    let count = |v: &Value| messages(v).len();
    wait_for(
        "some lines in the Logs API",
        Duration::from_secs(60),
        || async {
            let got = aws_logs(
                &env,
                &["describe-log-groups", "--log-group-name-prefix", group],
            )
            .await;
            if got["logGroups"].as_array().is_none_or(Vec::is_empty) {
                return None;
            }
            (count(&stream_events(&env, group, &stream).await) >= 100).then_some(())
        },
    )
    .await;
    agent.kill9();
    env.wait_connected(&arn, false).await;
    let _agent = env.agent_process(&dir, "127.0.0.1");
    env.wait_task(&task, "STOPPED").await;
    let all = wait_for("every line", Duration::from_secs(90), || async {
        let v = stream_events(&env, group, &stream).await;
        (count(&v) >= 2 * N).then_some(v)
    })
    .await;
    let got = messages(&all);
    for prefix in ["out", "err"] {
        let lines: Vec<String> = got
            .iter()
            .filter(|m| m.starts_with(prefix))
            .cloned()
            .collect();
        let want: Vec<String> = (1..=N).map(|i| format!("{prefix} {i}")).collect();
        assert_eq!(lines, want, "{prefix}: every line once, in order");
    }
    assert_eq!(got.len(), 2 * N);
    env.stop().await;
}

/// Every event of one stream, through `aws logs filter-log-events`.
async fn stream_events(env: &Env, group: &str, stream: &str) -> Value {
    aws_logs(
        env,
        &[
            "filter-log-events",
            "--log-group-name",
            group,
            "--log-stream-names",
            stream,
        ],
    )
    .await
}
