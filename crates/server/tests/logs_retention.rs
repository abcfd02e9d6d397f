//! Retention is enforced by the running server: events two days old (still
//! within PutLogEvents' 14 days) are stored while the group keeps
//! everything; once PutRetentionPolicy says one day, reads hide them at
//! once and the log retention controller deletes their segment file, which
//! shows as the group's `storedBytes` dropping to 0.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{eventually, TestServer, ALICE};
use serde_json::{json, Value};

async fn call(server: &TestServer, op: &str, body: Value) -> Value {
    server
        .raw(&ALICE)
        .for_service("logs", "Logs_20140328")
        .call::<Value, Value>(op, &body)
        .await
        .unwrap_or_else(|e| panic!("{op} {body}: {e:?}"))
}

async fn stored_bytes(server: &TestServer, group: &str) -> i64 {
    let v = call(
        server,
        "DescribeLogGroups",
        json!({"logGroupNamePrefix": group}),
    )
    .await;
    v["logGroups"][0]["storedBytes"].as_i64().unwrap()
}

#[tokio::test]
async fn the_retention_controller_deletes_expired_segments() {
    let config = flotilla_server::Config {
        controllers: flotilla_server::controllers::ControllerConfig {
            log_retention_interval: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = TestServer::start_with(config).await;
    let g = "/ecs/retained";
    call(&server, "CreateLogGroup", json!({"logGroupName": g})).await;
    call(
        &server,
        "CreateLogStream",
        json!({"logGroupName": g, "logStreamName": "s"}),
    )
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let two_days_ago = now - 2 * 24 * 3_600_000;
    let out = call(
        &server,
        "PutLogEvents",
        json!({"logGroupName": g, "logStreamName": "s",
            "logEvents": [{"timestamp": two_days_ago, "message": "old but not too old"}]}),
    )
    .await;
    assert!(out.get("rejectedLogEventsInfo").is_none(), "{out}");
    // Give the controller time to run a few passes: nothing expires yet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(stored_bytes(&server, g).await > 0, "kept without a policy");

    call(
        &server,
        "PutRetentionPolicy",
        json!({"logGroupName": g, "retentionInDays": 1}),
    )
    .await;
    let found = call(
        &server,
        "FilterLogEvents",
        json!({"logGroupName": g, "startTime": 0}),
    )
    .await;
    assert_eq!(
        found["events"],
        json!([]),
        "expired events are hidden at once"
    );
    eventually(30, "the expired segment deleted", || async {
        (stored_bytes(&server, g).await == 0).then_some(())
    })
    .await;
    // Newer events are stored and kept.
    call(
        &server,
        "PutLogEvents",
        json!({"logGroupName": g, "logStreamName": "s",
            "logEvents": [{"timestamp": now, "message": "new"}]}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let found = call(
        &server,
        "FilterLogEvents",
        json!({"logGroupName": g, "startTime": 0}),
    )
    .await;
    assert_eq!(found["events"][0]["message"], "new");
    assert!(stored_bytes(&server, g).await > 0);
    server.stop().await;
}
