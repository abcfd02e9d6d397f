//! Helpers shared by the wire-level tests (api_errors, api_corpus, api_cli):
//! AWS error-shape assertions and a snapshot of everything an account can see,
//! to prove that a rejected request changed nothing.
#![allow(dead_code)]

use flotilla_client::{Client, RawResponse};
use serde_json::{json, Value};

pub const TARGET: &str = "AmazonEC2ContainerServiceV20141113";

pub fn target(op: &str) -> String {
    format!("{TARGET}.{op}")
}

/// Sends `body` to `op`, signed, and returns the raw answer.
pub async fn send(c: &Client, op: &str, body: impl Into<Vec<u8>>) -> RawResponse {
    c.raw(&target(op), body.into()).await.expect("transport")
}

/// Sends a JSON value to `op`.
pub async fn send_json(c: &Client, op: &str, body: &Value) -> RawResponse {
    send(c, op, serde_json::to_vec(body).unwrap()).await
}

/// Calls `op` and expects HTTP 200; returns the JSON answer.
pub async fn ok(c: &Client, op: &str, body: &Value) -> Value {
    let r = send_json(c, op, body).await;
    assert_eq!(
        r.status,
        200,
        "{op} {body}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_request_id(&r);
    r.json()
}

pub fn assert_request_id(r: &RawResponse) {
    let id = r.request_id.as_deref().unwrap_or_default();
    assert!(
        !id.is_empty(),
        "x-amzn-RequestId missing (status {})",
        r.status
    );
}

/// Asserts the AWS JSON 1.1 error shape: `status`, `__type` and
/// `X-Amzn-ErrorType` equal to `code`, a non-empty `message`, a request id,
/// and never a 500. Returns the message.
pub fn assert_error(r: &RawResponse, status: u16, code: &str) -> String {
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_ne!(r.status, 500, "the server answered 500: {body}");
    assert_eq!(r.status, status, "status; body {body}");
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"));
    assert_eq!(v["__type"].as_str(), Some(code), "__type; body {body}");
    assert_eq!(
        r.error_type.as_deref(),
        Some(code),
        "X-Amzn-ErrorType; body {body}"
    );
    let message = v["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "empty message: {body}");
    assert_request_id(r);
    message
}

/// Everything `c`'s account can see through the List/Describe calls, in one
/// JSON value, so two snapshots compare equal iff nothing visible changed.
pub async fn snapshot(c: &Client) -> Value {
    let mut out = serde_json::Map::new();
    let clusters = list_all(c, "ListClusters", json!({}), "clusterArns").await;
    out.insert("clusters".into(), json!(clusters));
    for arn in clusters
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_string())
    {
        let arn = &arn;
        let d = ok(
            c,
            "DescribeClusters",
            &json!({"clusters": [arn], "include": ["TAGS", "SETTINGS", "STATISTICS"]}),
        )
        .await;
        out.insert(format!("cluster {arn}"), d);
        let instances = list_all(
            c,
            "ListContainerInstances",
            json!({"cluster": arn}),
            "containerInstanceArns",
        )
        .await;
        if !instances.is_empty() {
            let mut d = ok(
                c,
                "DescribeContainerInstances",
                &json!({"cluster": arn, "containerInstances": instances, "include": ["TAGS"]}),
            )
            .await;
            // agentConnected and the like are not what a rejected write could change,
            // but they are stable in these tests; keep the whole object.
            if let Some(list) = d["containerInstances"].as_array_mut() {
                list.sort_by_key(|i| {
                    i["containerInstanceArn"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                });
            }
            out.insert(format!("instances {arn}"), d);
        }
        for status in ["RUNNING", "STOPPED"] {
            let tasks = list_all(
                c,
                "ListTasks",
                json!({"cluster": arn, "desiredStatus": status}),
                "taskArns",
            )
            .await;
            out.insert(format!("tasks {status} {arn}"), json!(tasks));
            if !tasks.is_empty() {
                for chunk in tasks.chunks(100) {
                    let d = ok(
                        c,
                        "DescribeTasks",
                        &json!({"cluster": arn, "tasks": chunk, "include": ["TAGS"]}),
                    )
                    .await;
                    out.insert(format!("describe tasks {status} {arn} {}", chunk[0]), d);
                }
            }
        }
        let services = list_all(c, "ListServices", json!({"cluster": arn}), "serviceArns").await;
        out.insert(format!("services {arn}"), json!(services));
        let attrs = list_all(
            c,
            "ListAttributes",
            json!({"cluster": arn, "targetType": "container-instance"}),
            "attributes",
        )
        .await;
        out.insert(format!("attributes {arn}"), json!(attrs));
    }
    for status in ["ACTIVE", "INACTIVE"] {
        let tds = list_all(
            c,
            "ListTaskDefinitions",
            json!({"status": status}),
            "taskDefinitionArns",
        )
        .await;
        for arn in tds.iter().map(|a| a.as_str().unwrap_or_default()) {
            let d = ok(
                c,
                "DescribeTaskDefinition",
                &json!({"taskDefinition": arn, "include": ["TAGS"]}),
            )
            .await;
            out.insert(format!("taskdef {arn}"), d);
        }
        out.insert(format!("taskdefs {status}"), json!(tds));
    }
    let fams = list_all(
        c,
        "ListTaskDefinitionFamilies",
        json!({"status": "ALL"}),
        "families",
    )
    .await;
    out.insert("families".into(), json!(fams));
    let settings = ok(
        c,
        "ListAccountSettings",
        &json!({"effectiveSettings": true}),
    )
    .await;
    out.insert("settings".into(), settings);
    Value::Object(out)
}

/// Walks every page of a List call and returns the items under `key`.
pub async fn list_all(c: &Client, op: &str, mut body: Value, key: &str) -> Vec<Value> {
    let mut items = Vec::new();
    loop {
        let page = ok(c, op, &body).await;
        items.extend(page[key].as_array().cloned().unwrap_or_default());
        match page["nextToken"].as_str() {
            Some(t) => body["nextToken"] = json!(t),
            None => return items,
        }
    }
}

/// Deep comparison for round trips: every non-null member of `given` is in
/// `got` and equal (numbers by value); `got` may have more (defaults the
/// server fills in). Arrays must match element by element. Returns the first
/// difference.
pub fn subset_diff(given: &Value, got: &Value, path: &str) -> Option<String> {
    match (given, got) {
        (Value::Null, _) => None,
        (Value::Object(g), Value::Object(o)) => g.iter().find_map(|(k, v)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match (v, o.get(k)) {
                (Value::Null, _) => None,
                (_, None) => Some(format!("{here}: given {v}, missing from the answer")),
                (_, Some(ov)) => subset_diff(v, ov, &here),
            }
        }),
        (Value::Array(g), Value::Array(o)) if g.len() == o.len() => g
            .iter()
            .zip(o)
            .enumerate()
            .find_map(|(i, (a, b))| subset_diff(a, b, &format!("{path}[{i}]"))),
        _ if given == got => None,
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        _ => Some(format!("{path}: given {given}, got {got}")),
    }
}

/// What one AWS CLI run produced.
pub struct CliRun {
    pub code: i32,
    pub stdout: Value,
    pub stderr: String,
}

/// Runs the real AWS CLI (`aws ecs ARGS… --output json`) against `endpoint`
/// with the given key, returning the exit code too (the harness's `cli`
/// returns only success). `$FLOTILLA_TEST_AWS_CLI` names the executable.
pub async fn aws(endpoint: &str, key: &str, secret: &str, args: &[&str]) -> CliRun {
    let exe = std::env::var("FLOTILLA_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into());
    let out = tokio::process::Command::new(&exe)
        .arg("ecs")
        .args(args)
        .args([
            "--output",
            "json",
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
        ])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
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
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}
