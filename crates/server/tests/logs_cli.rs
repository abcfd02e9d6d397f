//! The CloudWatch Logs API through the real AWS CLI v1 (`aws logs …`):
//! every operation Flotilla serves, the errors a client can provoke (the
//! model's codes, AWS's messages), and persistence across a restart.
//! Errors that carry members beyond `message` (`expectedSequenceToken`)
//! are checked on the raw JSON answer too.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Principal, TestServer, ALICE, BOB, REGION};
use serde_json::{json, Value};

/// What one `aws logs` run produced.
struct Run {
    ok: bool,
    out: Value,
    err: String,
}

impl Run {
    /// Panics unless the command succeeded.
    fn ok(self) -> Value {
        assert!(self.ok, "aws logs failed: {}", self.err);
        self.out
    }

    /// Panics unless the command failed with `code`; returns the message.
    fn error(self, code: &str) -> String {
        assert!(!self.ok, "expected {code}, got success: {}", self.out);
        let needle = format!("({code})");
        assert!(
            self.err.contains(&needle),
            "expected {code}, got: {}",
            self.err
        );
        self.err
    }
}

/// Runs `aws logs ARGS… --output json` against `server` as `who`.
async fn logs(server: &TestServer, who: &Principal, args: &[&str]) -> Run {
    let exe = std::env::var("FLOTILLA_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into());
    let out = tokio::process::Command::new(&exe)
        .arg("logs")
        .args(args)
        .args(["--output", "json", "--endpoint-url", &server.endpoint])
        .args(["--region", REGION])
        .env("AWS_ACCESS_KEY_ID", who.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", who.secret)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        // No retries: an error must show on the first answer.
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("the AWS CLI ({exe}) must be installed: run the tests with scripts/test ({e})")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    Run {
        ok: out.status.success(),
        out: serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)),
        err: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn events_json(events: &[(i64, &str)]) -> String {
    let events: Vec<Value> = events
        .iter()
        .map(|(t, m)| json!({"timestamp": t, "message": m}))
        .collect();
    Value::from(events).to_string()
}

fn names(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {v}"))
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect()
}

fn messages(v: &Value) -> Vec<String> {
    names(v, "events", "message")
}

#[tokio::test]
async fn log_groups_retention_and_tags() {
    let server = TestServer::start().await;
    let s = &server;
    for name in ["/ecs/app", "/ecs/web", "/other/x"] {
        logs(s, &ALICE, &["create-log-group", "--log-group-name", name])
            .await
            .ok();
    }
    logs(
        s,
        &ALICE,
        &["create-log-group", "--log-group-name", "/ecs/app"],
    )
    .await
    .error("ResourceAlreadyExistsException");
    // The same name in another account is another group.
    logs(
        s,
        &BOB,
        &["create-log-group", "--log-group-name", "/ecs/app"],
    )
    .await
    .ok();

    // Names: the model's alphabet, and the aws/ prefix reserved.
    let e = logs(
        s,
        &ALICE,
        &["create-log-group", "--log-group-name", "bad name!"],
    )
    .await
    .error("InvalidParameterException");
    assert!(
        e.contains("logGroupName") && e.contains("regular expression"),
        "{e}"
    );
    let e = logs(
        s,
        &ALICE,
        &["create-log-group", "--log-group-name", "aws/mine"],
    )
    .await
    .error("InvalidParameterException");
    assert!(e.contains("aws/"), "{e}");
    let long = "g".repeat(513);
    let e = logs(s, &ALICE, &["create-log-group", "--log-group-name", &long])
        .await
        .error("InvalidParameterException");
    assert!(e.contains("logGroupName"), "{e}");

    // Describe: all, by prefix, by pattern (substring), paged.
    let all = logs(s, &ALICE, &["describe-log-groups"]).await.ok();
    assert_eq!(
        names(&all, "logGroups", "logGroupName"),
        ["/ecs/app", "/ecs/web", "/other/x"]
    );
    let g = &all["logGroups"][0];
    assert_eq!(
        g["arn"],
        format!(
            "arn:aws:logs:{REGION}:{}:log-group:/ecs/app:*",
            ALICE.account
        )
    );
    assert_eq!(
        g["logGroupArn"],
        format!("arn:aws:logs:{REGION}:{}:log-group:/ecs/app", ALICE.account)
    );
    assert!(g["creationTime"].as_i64().unwrap() > 0);
    assert_eq!(g["storedBytes"], 0);
    assert_eq!(g["logGroupClass"], "STANDARD");
    let by_prefix = logs(
        s,
        &ALICE,
        &["describe-log-groups", "--log-group-name-prefix", "/ecs/"],
    )
    .await
    .ok();
    assert_eq!(
        names(&by_prefix, "logGroups", "logGroupName"),
        ["/ecs/app", "/ecs/web"]
    );
    let by_pattern = logs(
        s,
        &ALICE,
        &["describe-log-groups", "--log-group-name-pattern", "we"],
    )
    .await
    .ok();
    assert_eq!(
        names(&by_pattern, "logGroups", "logGroupName"),
        ["/ecs/web"]
    );
    let e = logs(
        s,
        &ALICE,
        &[
            "describe-log-groups",
            "--log-group-name-prefix",
            "/ecs",
            "--log-group-name-pattern",
            "x",
        ],
    )
    .await
    .error("InvalidParameterException");
    assert!(e.contains("mutually exclusive"), "{e}");
    // One group per page: the CLI's paginator follows our nextToken.
    let page = logs(s, &ALICE, &["describe-log-groups", "--max-items", "2"])
        .await
        .ok();
    assert_eq!(
        names(&page, "logGroups", "logGroupName"),
        ["/ecs/app", "/ecs/web"]
    );
    let token = page["NextToken"].as_str().expect("a next page").to_string();
    let rest = logs(
        s,
        &ALICE,
        &["describe-log-groups", "--starting-token", &token],
    )
    .await
    .ok();
    assert_eq!(names(&rest, "logGroups", "logGroupName"), ["/other/x"]);
    let paged = logs(s, &ALICE, &["describe-log-groups", "--page-size", "1"])
        .await
        .ok();
    assert_eq!(names(&paged, "logGroups", "logGroupName").len(), 3);
    let e = logs(
        s,
        &ALICE,
        &[
            "describe-log-groups",
            "--no-paginate",
            "--next-token",
            "garbage",
        ],
    )
    .await
    .error("InvalidParameterException");
    assert!(e.contains("nextToken"), "{e}");

    // Retention: only the model's values.
    logs(
        s,
        &ALICE,
        &[
            "put-retention-policy",
            "--log-group-name",
            "/ecs/app",
            "--retention-in-days",
            "7",
        ],
    )
    .await
    .ok();
    let e = logs(
        s,
        &ALICE,
        &[
            "put-retention-policy",
            "--log-group-name",
            "/ecs/app",
            "--retention-in-days",
            "8",
        ],
    )
    .await
    .error("InvalidParameterException");
    assert!(e.contains("retentionInDays"), "{e}");
    logs(
        s,
        &ALICE,
        &[
            "put-retention-policy",
            "--log-group-name",
            "/nope",
            "--retention-in-days",
            "7",
        ],
    )
    .await
    .error("ResourceNotFoundException");
    let g = logs(
        s,
        &ALICE,
        &["describe-log-groups", "--log-group-name-prefix", "/ecs/app"],
    )
    .await
    .ok();
    assert_eq!(g["logGroups"][0]["retentionInDays"], 7);
    logs(
        s,
        &ALICE,
        &["delete-retention-policy", "--log-group-name", "/ecs/app"],
    )
    .await
    .ok();
    let g = logs(
        s,
        &ALICE,
        &["describe-log-groups", "--log-group-name-prefix", "/ecs/app"],
    )
    .await
    .ok();
    assert!(g["logGroups"][0].get("retentionInDays").is_none(), "{g}");

    // Tags, by name (deprecated API) and by ARN.
    logs(
        s,
        &ALICE,
        &[
            "tag-log-group",
            "--log-group-name",
            "/ecs/app",
            "--tags",
            "team=core,env=dev",
        ],
    )
    .await
    .ok();
    let t = logs(
        s,
        &ALICE,
        &["list-tags-log-group", "--log-group-name", "/ecs/app"],
    )
    .await
    .ok();
    assert_eq!(t["tags"], json!({"team": "core", "env": "dev"}));
    logs(
        s,
        &ALICE,
        &[
            "untag-log-group",
            "--log-group-name",
            "/ecs/app",
            "--tags",
            "env",
        ],
    )
    .await
    .ok();
    let arn = format!("arn:aws:logs:{REGION}:{}:log-group:/ecs/app", ALICE.account);
    let t = logs(
        s,
        &ALICE,
        &["list-tags-for-resource", "--resource-arn", &arn],
    )
    .await
    .ok();
    assert_eq!(t["tags"], json!({"team": "core"}));
    logs(
        s,
        &ALICE,
        &["tag-resource", "--resource-arn", &arn, "--tags", "a=1"],
    )
    .await
    .ok();
    logs(
        s,
        &ALICE,
        &[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "team",
        ],
    )
    .await
    .ok();
    let t = logs(
        s,
        &ALICE,
        &["list-tags-for-resource", "--resource-arn", &arn],
    )
    .await
    .ok();
    assert_eq!(t["tags"], json!({"a": "1"}));
    // Another account's ARN names nothing of ours; 51 tags are too many.
    let bobs = format!("arn:aws:logs:{REGION}:{}:log-group:/ecs/app", BOB.account);
    logs(
        s,
        &ALICE,
        &["list-tags-for-resource", "--resource-arn", &bobs],
    )
    .await
    .error("ResourceNotFoundException");
    let many: Vec<String> = (0..51).map(|i| format!("k{i}=v")).collect();
    let e = logs(
        s,
        &ALICE,
        &[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            &many.join(","),
        ],
    )
    .await;
    assert!(
        e.err.contains("TooManyTagsException") || e.err.contains("InvalidParameterException"),
        "{}",
        e.err
    );
    // Tags at creation.
    logs(
        s,
        &ALICE,
        &[
            "create-log-group",
            "--log-group-name",
            "/tagged",
            "--tags",
            "x=y",
        ],
    )
    .await
    .ok();
    let t = logs(
        s,
        &ALICE,
        &["list-tags-log-group", "--log-group-name", "/tagged"],
    )
    .await
    .ok();
    assert_eq!(t["tags"], json!({"x": "y"}));

    // Delete: gone, and a second delete is ResourceNotFoundException.
    logs(
        s,
        &ALICE,
        &["delete-log-group", "--log-group-name", "/other/x"],
    )
    .await
    .ok();
    logs(
        s,
        &ALICE,
        &["delete-log-group", "--log-group-name", "/other/x"],
    )
    .await
    .error("ResourceNotFoundException");
    let all = logs(s, &ALICE, &["describe-log-groups"]).await.ok();
    assert_eq!(
        names(&all, "logGroups", "logGroupName"),
        ["/ecs/app", "/ecs/web", "/tagged"]
    );
    // Bob still has only his own.
    let bob = logs(s, &BOB, &["describe-log-groups"]).await.ok();
    assert_eq!(names(&bob, "logGroups", "logGroupName"), ["/ecs/app"]);
}

#[tokio::test]
async fn log_streams_ordered_by_name_or_last_event() {
    let server = TestServer::start().await;
    let s = &server;
    let g = "/ecs/streams";
    logs(s, &ALICE, &["create-log-group", "--log-group-name", g])
        .await
        .ok();
    for stream in ["a/1", "a/2", "b/1"] {
        logs(
            s,
            &ALICE,
            &[
                "create-log-stream",
                "--log-group-name",
                g,
                "--log-stream-name",
                stream,
            ],
        )
        .await
        .ok();
    }
    logs(
        s,
        &ALICE,
        &[
            "create-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "a/1",
        ],
    )
    .await
    .error("ResourceAlreadyExistsException");
    logs(
        s,
        &ALICE,
        &[
            "create-log-stream",
            "--log-group-name",
            "/missing",
            "--log-stream-name",
            "x",
        ],
    )
    .await
    .error("ResourceNotFoundException");
    let e = logs(
        s,
        &ALICE,
        &[
            "create-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "bad:name",
        ],
    )
    .await
    .error("InvalidParameterException");
    assert!(e.contains("logStreamName"), "{e}");

    // Events land in b/1 first, then a/1: last-event order differs from names.
    let t = now_ms();
    for (stream, ts) in [("b/1", t - 2000), ("a/1", t - 1000)] {
        logs(
            s,
            &ALICE,
            &[
                "put-log-events",
                "--log-group-name",
                g,
                "--log-stream-name",
                stream,
                "--log-events",
                &events_json(&[(ts, "hello")]),
            ],
        )
        .await
        .ok();
    }

    let by_name = logs(s, &ALICE, &["describe-log-streams", "--log-group-name", g])
        .await
        .ok();
    assert_eq!(
        names(&by_name, "logStreams", "logStreamName"),
        ["a/1", "a/2", "b/1"]
    );
    let a1 = &by_name["logStreams"][0];
    assert_eq!(a1["firstEventTimestamp"], t - 1000);
    assert_eq!(a1["lastEventTimestamp"], t - 1000);
    assert!(a1["lastIngestionTime"].as_i64().is_some());
    assert!(a1["uploadSequenceToken"].as_str().is_some());
    assert_eq!(
        a1["arn"],
        format!(
            "arn:aws:logs:{REGION}:{}:log-group:{g}:log-stream:a/1",
            ALICE.account
        )
    );
    let desc = logs(
        s,
        &ALICE,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--descending",
        ],
    )
    .await
    .ok();
    assert_eq!(
        names(&desc, "logStreams", "logStreamName"),
        ["b/1", "a/2", "a/1"]
    );
    let prefix = logs(
        s,
        &ALICE,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--log-stream-name-prefix",
            "a/",
        ],
    )
    .await
    .ok();
    assert_eq!(
        names(&prefix, "logStreams", "logStreamName"),
        ["a/1", "a/2"]
    );
    let last = logs(
        s,
        &ALICE,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--order-by",
            "LastEventTime",
            "--descending",
        ],
    )
    .await
    .ok();
    let order = names(&last, "logStreams", "logStreamName");
    assert_eq!(&order[..2], ["a/1", "b/1"], "{order:?}");
    let e = logs(
        s,
        &ALICE,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--order-by",
            "LastEventTime",
            "--log-stream-name-prefix",
            "a",
        ],
    )
    .await
    .error("InvalidParameterException");
    assert!(e.contains("orderBy") || e.contains("LastEventTime"), "{e}");
    let e = logs(
        s,
        &ALICE,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--order-by",
            "Size",
        ],
    )
    .await
    .error("InvalidParameterException");
    assert!(e.contains("orderBy") && e.contains("LastEventTime"), "{e}");
    // Paged one at a time by the CLI's paginator.
    let paged = logs(
        s,
        &ALICE,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--page-size",
            "1",
        ],
    )
    .await
    .ok();
    assert_eq!(
        names(&paged, "logStreams", "logStreamName"),
        ["a/1", "a/2", "b/1"]
    );
    let page = logs(
        s,
        &ALICE,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--max-items",
            "1",
        ],
    )
    .await
    .ok();
    assert!(page["NextToken"].is_string(), "{page}");
    logs(
        s,
        &ALICE,
        &["describe-log-streams", "--log-group-name", "/missing"],
    )
    .await
    .error("ResourceNotFoundException");

    // Delete.
    logs(
        s,
        &ALICE,
        &[
            "delete-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "a/1",
        ],
    )
    .await
    .ok();
    logs(
        s,
        &ALICE,
        &[
            "delete-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "a/1",
        ],
    )
    .await
    .error("ResourceNotFoundException");
    let left = logs(s, &ALICE, &["describe-log-streams", "--log-group-name", g])
        .await
        .ok();
    assert_eq!(names(&left, "logStreams", "logStreamName"), ["a/2", "b/1"]);
    // Its events are gone from searches.
    let found = logs(s, &ALICE, &["filter-log-events", "--log-group-name", g])
        .await
        .ok();
    assert_eq!(names(&found, "events", "logStreamName"), ["b/1"]);
}

async fn put(s: &TestServer, g: &str, stream: &str, events: &[(i64, &str)]) -> Run {
    logs(
        s,
        &ALICE,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            stream,
            "--log-events",
            &events_json(events),
        ],
    )
    .await
}

#[tokio::test]
async fn put_log_events_batch_rules_and_sequence_tokens() {
    let server = TestServer::start().await;
    let s = &server;
    let g = "/ecs/put";
    logs(s, &ALICE, &["create-log-group", "--log-group-name", g])
        .await
        .ok();
    logs(
        s,
        &ALICE,
        &[
            "create-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
        ],
    )
    .await
    .ok();
    let t = now_ms();

    // Missing group or stream.
    put(s, "/nope", "s", &[(t, "x")])
        .await
        .error("ResourceNotFoundException");
    let e = put(s, g, "nope", &[(t, "x")])
        .await
        .error("ResourceNotFoundException");
    assert!(e.contains("log stream"), "{e}");

    // Chronological order, 24-hour span.
    let e = put(s, g, "s", &[(t, "b"), (t - 1, "a")])
        .await
        .error("InvalidParameterException");
    assert!(e.contains("chronological"), "{e}");
    let e = put(s, g, "s", &[(t - 25 * 3_600_000, "a"), (t, "b")])
        .await
        .error("InvalidParameterException");
    assert!(e.contains("24 hours"), "{e}");
    // An empty message breaks the model's rule (the CLI checks it before
    // sending; a raw request reaches the server).
    let raw = server.raw(&ALICE).for_service("logs", "Logs_20140328");
    let err = raw
        .call::<Value, Value>(
            "PutLogEvents",
            &json!({"logGroupName": g, "logStreamName": "s",
                "logEvents": [{"timestamp": t, "message": ""}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"), "{err:?}");
    // Nothing of the refused batches was stored.
    let none = logs(s, &ALICE, &["filter-log-events", "--log-group-name", g])
        .await
        .ok();
    assert_eq!(messages(&none), Vec::<String>::new());

    // Too old (> 14 days) and too new (> 2 hours ahead) are reported, the
    // rest stored.
    let out = put(
        s,
        g,
        "s",
        &[
            (t - 15 * 24 * 3_600_000, "old"),
            (t - 10, "kept 1"),
            (t, "kept 2"),
            (t + 3 * 3_600_000, "new"),
        ],
    )
    .await;
    // The 24-hour span counts only the events kept.
    let out = out.ok();
    assert_eq!(
        out["rejectedLogEventsInfo"],
        json!({"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 3})
    );
    let token1 = out["nextSequenceToken"].as_str().unwrap().to_string();
    let got = logs(s, &ALICE, &["filter-log-events", "--log-group-name", g])
        .await
        .ok();
    assert_eq!(messages(&got), ["kept 1", "kept 2"]);

    // Tokens: the current one is accepted; a wrong one names the expected.
    let batch = events_json(&[(t + 1, "with token")]);
    let out = logs(
        s,
        &ALICE,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
            "--log-events",
            &batch,
            "--sequence-token",
            &token1,
        ],
    )
    .await
    .ok();
    let token2 = out["nextSequenceToken"].as_str().unwrap().to_string();
    assert_ne!(token1, token2);
    // The same batch again with the same token: already accepted.
    let e = logs(
        s,
        &ALICE,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
            "--log-events",
            &batch,
            "--sequence-token",
            &token1,
        ],
    )
    .await
    .error("DataAlreadyAcceptedException");
    assert!(e.contains(&token2), "{e}");
    let e = logs(
        s,
        &ALICE,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
            "--log-events",
            &events_json(&[(t + 2, "other")]),
            "--sequence-token",
            "12345",
        ],
    )
    .await
    .error("InvalidSequenceTokenException");
    assert!(e.contains(&token2), "{e}");

    // The raw answer carries expectedSequenceToken as its own member.
    let err = raw
        .call::<Value, Value>(
            "PutLogEvents",
            &json!({"logGroupName": g, "logStreamName": "s", "sequenceToken": "12345",
                "logEvents": [{"timestamp": t, "message": "x"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSequenceTokenException"));
    match err {
        flotilla_client::ClientError::Api { status, body, .. } => {
            assert_eq!(status, 400);
            assert_eq!(body["expectedSequenceToken"], token2.as_str(), "{body}");
            assert_eq!(body["__type"], "InvalidSequenceTokenException");
        }
        other => panic!("{other:?}"),
    }

    // Batch limits: 10,001 events; more than 1 MiB.
    let many: Vec<(i64, &str)> = (0..10_001).map(|_| (t, "x")).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.json");
    std::fs::write(&file, events_json(&many)).unwrap();
    let arg = format!("file://{}", file.display());
    let e = logs(
        s,
        &ALICE,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
            "--log-events",
            &arg,
        ],
    )
    .await;
    // The CLI v1 does not check the list's length; the server does.
    let e = e.error("InvalidParameterException");
    assert!(e.contains("logEvents"), "{e}");
    let big = "y".repeat(200_000);
    let large: Vec<(i64, &str)> = (0..6).map(|_| (t, big.as_str())).collect();
    std::fs::write(&file, events_json(&large)).unwrap();
    let e = logs(
        s,
        &ALICE,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
            "--log-events",
            &arg,
        ],
    )
    .await
    .error("InvalidParameterException");
    assert!(e.contains("1048576") || e.contains("size"), "{e}");
}

#[tokio::test]
async fn get_and_filter_log_events() {
    let server = TestServer::start().await;
    let s = &server;
    let g = "/ecs/read";
    logs(s, &ALICE, &["create-log-group", "--log-group-name", g])
        .await
        .ok();
    for stream in ["web/1", "web/2", "db/1"] {
        logs(
            s,
            &ALICE,
            &[
                "create-log-stream",
                "--log-group-name",
                g,
                "--log-stream-name",
                stream,
            ],
        )
        .await
        .ok();
    }
    let t = now_ms() - 60_000;
    put(
        s,
        g,
        "web/1",
        &[
            (t, "GET /a 200"),
            (t + 2, "GET /b 500 ERROR"),
            (t + 4, r#"{"level":"error","latency":250}"#),
        ],
    )
    .await
    .ok();
    put(
        s,
        g,
        "web/2",
        &[(t + 1, "POST /c 201"), (t + 3, "WARN slow request")],
    )
    .await
    .ok();
    put(s, g, "db/1", &[(t + 5, r#"{"level":"info","latency":5}"#)])
        .await
        .ok();

    // GetLogEvents from the head, two at a time, forward then back.
    let get = |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "get-log-events",
            "--no-paginate",
            "--log-group-name",
            g,
            "--log-stream-name",
            "web/1",
            "--limit",
            "2",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        args.extend(extra);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            logs(s, &ALICE, &args).await.ok()
        }
    };
    let p1 = get(vec!["--start-from-head".into()]).await;
    assert_eq!(messages(&p1), ["GET /a 200", "GET /b 500 ERROR"]);
    assert!(p1["events"][0]["ingestionTime"].as_i64().unwrap() >= t);
    let fwd = p1["nextForwardToken"].as_str().unwrap().to_string();
    assert!(fwd.starts_with("f/"), "{fwd}");
    assert!(p1["nextBackwardToken"].as_str().unwrap().starts_with("b/"));
    let p2 = get(vec!["--next-token".into(), fwd.clone()]).await;
    assert_eq!(messages(&p2), [r#"{"level":"error","latency":250}"#]);
    let end = p2["nextForwardToken"].as_str().unwrap().to_string();
    // At the end, the same token comes back with no events.
    let p3 = get(vec!["--next-token".into(), end.clone()]).await;
    assert_eq!(messages(&p3), Vec::<String>::new());
    assert_eq!(p3["nextForwardToken"], end.as_str());
    // Backward from the second page: the first page again.
    let back = p2["nextBackwardToken"].as_str().unwrap().to_string();
    let p0 = get(vec!["--next-token".into(), back]).await;
    assert_eq!(messages(&p0), ["GET /a 200", "GET /b 500 ERROR"]);
    // Without startFromHead: the latest events.
    let tail = get(vec![]).await;
    assert_eq!(
        messages(&tail),
        ["GET /b 500 ERROR", r#"{"level":"error","latency":250}"#]
    );
    // The CLI's own paginator (GetLogEvents stops when the token repeats).
    let all = logs(
        s,
        &ALICE,
        &[
            "get-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "web/1",
            "--start-from-head",
        ],
    )
    .await
    .ok();
    assert_eq!(messages(&all).len(), 3);
    // Time range: [start, end).
    let ranged = logs(
        s,
        &ALICE,
        &[
            "get-log-events",
            "--no-paginate",
            "--log-group-name",
            g,
            "--log-stream-name",
            "web/1",
            "--start-from-head",
            "--start-time",
            &(t + 1).to_string(),
            "--end-time",
            &(t + 4).to_string(),
        ],
    )
    .await
    .ok();
    assert_eq!(messages(&ranged), ["GET /b 500 ERROR"]);
    let e = logs(
        s,
        &ALICE,
        &[
            "get-log-events",
            "--no-paginate",
            "--log-group-name",
            g,
            "--log-stream-name",
            "nope",
        ],
    )
    .await
    .error("ResourceNotFoundException");
    assert!(e.contains("log stream"), "{e}");
    logs(
        s,
        &ALICE,
        &[
            "get-log-events",
            "--no-paginate",
            "--log-group-name",
            g,
            "--log-stream-name",
            "web/1",
            "--next-token",
            "f/garbage",
        ],
    )
    .await
    .error("InvalidParameterException");

    // FilterLogEvents: interleaved across streams in time order.
    let filter = |extra: &[&str]| {
        let mut args = vec!["filter-log-events", "--log-group-name", g, "--interleaved"];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|x| x.to_string()).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            logs(s, &ALICE, &args).await
        }
    };
    let all = filter(&[]).await.ok();
    assert_eq!(
        names(&all, "events", "logStreamName"),
        ["web/1", "web/2", "web/1", "web/2", "web/1", "db/1"]
    );
    let ev = &all["events"][0];
    assert_eq!(ev["eventId"].as_str().unwrap().len(), 56, "{ev}");
    assert!(ev["ingestionTime"].is_i64() && ev["timestamp"] == t);
    assert_eq!(all["searchedLogStreams"], json!([]));
    // Terms, phrases, alternatives, exclusions, JSON selectors.
    let m = |v: Value| messages(&v);
    assert_eq!(
        m(filter(&["--filter-pattern", "ERROR"]).await.ok()),
        ["GET /b 500 ERROR"]
    );
    assert_eq!(
        m(filter(&["--filter-pattern", "\"slow request\""]).await.ok()),
        ["WARN slow request"]
    );
    assert_eq!(
        m(filter(&["--filter-pattern", "?ERROR ?WARN"]).await.ok()),
        ["GET /b 500 ERROR", "WARN slow request"]
    );
    assert_eq!(
        m(filter(&["--filter-pattern", "GET -ERROR"]).await.ok()),
        ["GET /a 200"]
    );
    assert_eq!(
        m(filter(&["--filter-pattern", "{ $.latency > 100 }"])
            .await
            .ok()),
        [r#"{"level":"error","latency":250}"#]
    );
    assert_eq!(
        m(filter(&["--filter-pattern", "{ $.level = \"info\" }"])
            .await
            .ok()),
        [r#"{"level":"info","latency":5}"#]
    );
    let e = filter(&["--filter-pattern", "{ $.latency > }"])
        .await
        .error("InvalidParameterException");
    assert!(e.to_lowercase().contains("filter"), "{e}");
    // Streams by name or prefix; time range (both ends inclusive).
    assert_eq!(
        names(
            &filter(&["--log-stream-names", "web/2", "db/1"]).await.ok(),
            "events",
            "logStreamName"
        ),
        ["web/2", "web/2", "db/1"]
    );
    assert_eq!(
        names(
            &filter(&["--log-stream-name-prefix", "db"]).await.ok(),
            "events",
            "logStreamName"
        ),
        ["db/1"]
    );
    filter(&[
        "--log-stream-names",
        "web/1",
        "--log-stream-name-prefix",
        "web",
    ])
    .await
    .error("InvalidParameterException");
    let ranged = filter(&[
        "--start-time",
        &(t + 1).to_string(),
        "--end-time",
        &(t + 3).to_string(),
    ])
    .await
    .ok();
    assert_eq!(
        messages(&ranged),
        ["POST /c 201", "GET /b 500 ERROR", "WARN slow request"]
    );
    // Paged by the CLI (two per request), and by hand with nextToken.
    let paged = filter(&["--page-size", "2"]).await.ok();
    assert_eq!(messages(&paged).len(), 6);
    let one = filter(&["--no-paginate", "--limit", "4"]).await.ok();
    assert_eq!(messages(&one).len(), 4);
    let token = one["nextToken"].as_str().expect("a next page").to_string();
    let two = filter(&["--no-paginate", "--next-token", &token])
        .await
        .ok();
    assert_eq!(
        messages(&two),
        [
            r#"{"level":"error","latency":250}"#,
            r#"{"level":"info","latency":5}"#
        ]
    );
    logs(
        s,
        &ALICE,
        &["filter-log-events", "--log-group-name", "/missing"],
    )
    .await
    .error("ResourceNotFoundException");
}

/// Groups, streams, tokens and events survive a restart of the server.
#[tokio::test]
async fn logs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path().to_path_buf()).await;
    let g = "/ecs/durable";
    logs(
        &server,
        &ALICE,
        &["create-log-group", "--log-group-name", g],
    )
    .await
    .ok();
    logs(
        &server,
        &ALICE,
        &[
            "put-retention-policy",
            "--log-group-name",
            g,
            "--retention-in-days",
            "30",
        ],
    )
    .await
    .ok();
    logs(
        &server,
        &ALICE,
        &[
            "create-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
        ],
    )
    .await
    .ok();
    let t = now_ms();
    let out = put(&server, g, "s", &[(t, "before restart")]).await.ok();
    let token = out["nextSequenceToken"].as_str().unwrap().to_string();
    server.stop().await;

    let server = TestServer::start_in(dir.path().to_path_buf()).await;
    let groups = logs(&server, &ALICE, &["describe-log-groups"]).await.ok();
    assert_eq!(groups["logGroups"][0]["logGroupName"], g);
    assert_eq!(groups["logGroups"][0]["retentionInDays"], 30);
    assert!(groups["logGroups"][0]["storedBytes"].as_i64().unwrap() > 0);
    let streams = logs(
        &server,
        &ALICE,
        &["describe-log-streams", "--log-group-name", g],
    )
    .await
    .ok();
    assert_eq!(
        streams["logStreams"][0]["uploadSequenceToken"],
        token.as_str()
    );
    // The token carries on where it was.
    logs(
        &server,
        &ALICE,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
            "--log-events",
            &events_json(&[(t + 1, "after restart")]),
            "--sequence-token",
            &token,
        ],
    )
    .await
    .ok();
    let got = logs(
        &server,
        &ALICE,
        &[
            "get-log-events",
            "--no-paginate",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
            "--start-from-head",
        ],
    )
    .await
    .ok();
    assert_eq!(messages(&got), ["before restart", "after restart"]);
    server.stop().await;
}
