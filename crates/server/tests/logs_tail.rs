//! `aws logs tail` (AWS CLI v2 only) against the CloudWatch Logs API:
//! `--since` and `--filter-pattern` over FilterLogEvents, and `--follow`,
//! which polls FilterLogEvents every 5 s from the newest timestamp it has
//! seen and skips events by `eventId` (so ids must be stable).
//!
//! The v2 CLI is `$FLOTILLA_TEST_AWS_CLI_V2` (scripts/test installs
//! Debian's `awscli` and sets it), else `/usr/bin/aws`; a test fails with
//! a clear message when neither is v2.

mod common;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestServer, ALICE, REGION};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The AWS CLI v2 executable, checked to be v2.
async fn cli_v2() -> String {
    let exe = std::env::var("FLOTILLA_TEST_AWS_CLI_V2").unwrap_or_else(|_| "/usr/bin/aws".into());
    let version = tokio::process::Command::new(&exe)
        .arg("--version")
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "`aws logs tail` needs the AWS CLI v2 at {exe} (set FLOTILLA_TEST_AWS_CLI_V2, or run scripts/test, which installs Debian's awscli): {e}"
            )
        });
    let text = String::from_utf8_lossy(&version.stdout).to_string()
        + &String::from_utf8_lossy(&version.stderr);
    assert!(
        text.starts_with("aws-cli/2"),
        "`aws logs tail` needs the AWS CLI v2, but {exe} is {text:?} (set FLOTILLA_TEST_AWS_CLI_V2, or run scripts/test)"
    );
    exe
}

fn command(exe: &str, server: &TestServer, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(exe);
    c.arg("logs")
        .args(args)
        .args(["--endpoint-url", &server.endpoint, "--region", REGION])
        .args(["--color", "off"])
        .env("AWS_ACCESS_KEY_ID", ALICE.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", ALICE.secret)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        // Each line as it is printed, not when a pipe buffer fills.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn call(server: &TestServer, op: &str, body: Value) -> Value {
    server
        .raw(&ALICE)
        .for_service("logs", "Logs_20140328")
        .call::<Value, Value>(op, &body)
        .await
        .unwrap_or_else(|e| panic!("{op} {body}: {e:?}"))
}

async fn put(server: &TestServer, group: &str, stream: &str, events: &[(i64, &str)]) {
    let events: Vec<Value> = events
        .iter()
        .map(|(t, m)| json!({"timestamp": t, "message": m}))
        .collect();
    call(
        server,
        "PutLogEvents",
        json!({"logGroupName": group, "logStreamName": stream, "logEvents": events}),
    )
    .await;
}

async fn setup(server: &TestServer, group: &str) {
    call(server, "CreateLogGroup", json!({"logGroupName": group})).await;
    for stream in ["app/web/1", "app/web/2"] {
        call(
            server,
            "CreateLogStream",
            json!({"logGroupName": group, "logStreamName": stream}),
        )
        .await;
    }
}

/// The next line `aws logs tail --follow` prints, within the deadline.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    deadline: tokio::time::Instant,
) -> String {
    match tokio::time::timeout_at(deadline, lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        other => panic!("aws logs tail --follow: no more lines ({other:?})"),
    }
}

/// Without `--follow`: what matches since 10 minutes ago, interleaved
/// across streams, each line `TIMESTAMP STREAM MESSAGE`, and then exit.
#[tokio::test]
async fn tail_since_with_a_filter_pattern() {
    let exe = cli_v2().await;
    let server = TestServer::start().await;
    let group = "/ecs/tail";
    setup(&server, group).await;
    let t = now_ms();
    put(
        &server,
        group,
        "app/web/1",
        &[
            (t - 20 * 60_000, "ERROR too old for --since 10m"),
            (t - 3000, "ERROR first"),
            (t - 1000, "INFO not matching"),
        ],
    )
    .await;
    put(&server, group, "app/web/2", &[(t - 2000, "ERROR second")]).await;

    let out = tokio::time::timeout(
        Duration::from_secs(120),
        command(
            &exe,
            &server,
            &["tail", group, "--since", "10m", "--filter-pattern", "ERROR"],
        )
        .output(),
    )
    .await
    .expect("aws logs tail finished")
    .expect("aws logs tail ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].ends_with(" app/web/1 ERROR first"), "{}", lines[0]);
    assert!(
        lines[1].ends_with(" app/web/2 ERROR second"),
        "{}",
        lines[1]
    );
    server.stop().await;
}

/// `--follow`: lines already there are printed once, lines written later
/// appear as they arrive (the CLI polls every 5 s), non-matching ones never.
#[tokio::test]
async fn tail_follow_prints_new_matching_lines_once() {
    let exe = cli_v2().await;
    let server = TestServer::start().await;
    let group = "/ecs/follow";
    setup(&server, group).await;
    let t = now_ms();
    put(
        &server,
        group,
        "app/web/1",
        &[(t - 2000, "ERROR before 1"), (t - 1500, "INFO before")],
    )
    .await;
    put(&server, group, "app/web/2", &[(t - 1000, "ERROR before 2")]).await;

    let mut child = command(
        &exe,
        &server,
        &[
            "tail",
            group,
            "--follow",
            "--since",
            "10m",
            "--filter-pattern",
            "ERROR",
            "--format",
            "short",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("aws logs tail --follow");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for _ in 0..2 {
        seen.push(next_line(&mut lines, deadline).await);
    }
    // New events: the same timestamp as one already printed (the CLI must
    // tell them apart by eventId), later ones, and ones that do not match.
    let t2 = now_ms();
    put(
        &server,
        group,
        "app/web/2",
        &[(t - 1000, "ERROR same timestamp as before 2")],
    )
    .await;
    put(
        &server,
        group,
        "app/web/1",
        &[(t2, "INFO after"), (t2 + 1, "ERROR after 1")],
    )
    .await;
    put(&server, group, "app/web/2", &[(t2 + 2, "ERROR after 2")]).await;
    for _ in 0..3 {
        seen.push(next_line(&mut lines, deadline).await);
    }
    child.start_kill().expect("kill aws logs tail");
    let _ = child.wait().await;
    let messages: Vec<&str> = seen
        .iter()
        .map(|l| l.split_once(' ').map_or(l.as_str(), |(_, m)| m))
        .collect();
    assert_eq!(
        messages,
        [
            "ERROR before 1",
            "ERROR before 2",
            "ERROR same timestamp as before 2",
            "ERROR after 1",
            "ERROR after 2"
        ],
        "{seen:?}"
    );
    server.stop().await;
}
