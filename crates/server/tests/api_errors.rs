//! The wire protocol's failure paths, with raw signed (and unsigned)
//! requests: AWS JSON 1.1 error bodies (`__type`, `message`) and the
//! `X-Amzn-ErrorType` header, 400 for client errors, never a 500 for bad
//! input, `x-amzn-RequestId` on every answer, each authentication failure,
//! the batch limits, and no change to the state after any rejected write.

mod common;
mod support;

use std::time::{Duration, SystemTime};

use axum::http::Request;
use common::{TestServer, ALICE, BOB, REGION};
use flotilla_client::Client;
use serde_json::{json, Value};
use support::{assert_error, assert_request_id, ok, send, send_json, snapshot, target};

/// A request as an SDK builds it, not yet signed.
fn request(endpoint: &str, target: Option<&str>, body: &[u8]) -> Request<Vec<u8>> {
    let mut b = Request::builder()
        .method("POST")
        .uri(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.1");
    if let Some(t) = target {
        b = b.header("x-amz-target", t);
    }
    b.body(body.to_vec()).unwrap()
}

/// A cluster with a container instance, a task definition and tags, so that
/// rejected writes have something to damage.
async fn populate(c: &Client) {
    ok(
        c,
        "CreateCluster",
        &json!({"clusterName": "prod", "tags": [{"key": "team", "value": "edge"}]}),
    )
    .await;
    ok(
        c,
        "RegisterTaskDefinition",
        &json!({"family": "web", "containerDefinitions": [{"name": "app", "image": "nginx", "memory": 64}]}),
    )
    .await;
    ok(
        c,
        "RegisterContainerInstance",
        &json!({
            "cluster": "prod",
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}
            ]
        }),
    )
    .await;
}

#[tokio::test]
async fn success_carries_a_request_id_and_the_json_content_type() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    let r = send(&c, "ListClusters", b"{}".to_vec()).await;
    assert_eq!(r.status, 200);
    assert_request_id(&r);
    assert_eq!(r.error_type, None);
    assert_eq!(r.json(), json!({"clusterArns": []}));
    // Two answers, two ids.
    let r2 = send(&c, "ListClusters", b"{}".to_vec()).await;
    assert_ne!(r.request_id, r2.request_id);
}

#[tokio::test]
async fn an_empty_body_means_an_empty_object() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    for body in [&b""[..], b"   \n", b"{}"] {
        let r = send(&c, "ListClusters", body.to_vec()).await;
        assert_eq!(
            r.status,
            200,
            "{:?}: {}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["clusterArns"], json!([]));
    }
    // CreateCluster with no name creates `default`, as in ECS.
    let r = send(&c, "CreateCluster", Vec::new()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["cluster"]["clusterName"], "default");
}

#[tokio::test]
async fn malformed_json_is_a_serialization_exception() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    populate(&c).await;
    let before = snapshot(&c).await;
    let mut wrong = Vec::new();
    for body in [
        &b"{"[..],
        b"{\"clusterName\": ",
        b"not json",
        b"null",
        b"42",
        b"\"a string\"",
        b"{\"clusterName\": \"x\",}",
        b"\xff\xfe\x00",
        b"{\"clusterName\": \"\xff\"}",
    ] {
        let r = send(&c, "CreateCluster", body.to_vec()).await;
        assert_ne!(r.status, 500);
        if r.status != 400 || r.json()["__type"] != "SerializationException" {
            wrong.push(format!(
                "{:?} -> {} {}",
                String::from_utf8_lossy(body),
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
            continue;
        }
        let message = assert_error(&r, 400, "SerializationException");
        assert!(message.contains("Could not read"), "{message}");
    }
    assert!(
        wrong.is_empty(),
        "bodies that are not a JSON object were served:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        snapshot(&c).await,
        before,
        "a malformed request changed the state"
    );
}

/// A body must be exactly one JSON object. serde would accept a struct
/// written as a JSON array (`[]` as an empty CreateCluster) and stop reading
/// after the first value; both once created a cluster.
#[tokio::test]
async fn a_body_that_is_not_exactly_one_json_object_is_rejected() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    let before = snapshot(&c).await;
    for body in [
        &b"[]"[..],
        b"[\"x\"]",
        b"{\"clusterName\": \"x\"} trailing",
        b"{\"clusterName\": \"y\"} {}",
    ] {
        let r = send(&c, "CreateCluster", body.to_vec()).await;
        assert_error(&r, 400, "SerializationException");
    }
    assert_eq!(snapshot(&c).await, before);
}

#[tokio::test]
async fn wrong_types_are_serialization_exceptions_naming_the_field() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    populate(&c).await;
    let before = snapshot(&c).await;
    let cases: &[(&str, Value, &str)] = &[
        (
            "RunTask",
            json!({"taskDefinition": "web", "cluster": "prod", "count": "x"}),
            "count",
        ),
        (
            "RunTask",
            json!({"taskDefinition": "web", "cluster": "prod", "count": 1.5}),
            "count",
        ),
        (
            "RunTask",
            json!({"taskDefinition": "web", "cluster": "prod", "count": 4294967297u64}),
            "count",
        ),
        ("ListClusters", json!({"maxResults": "10"}), "maxResults"),
        ("CreateCluster", json!({"clusterName": 7}), "clusterName"),
        (
            "CreateCluster",
            json!({"clusterName": "x", "tags": {"team": "edge"}}),
            "tags",
        ),
        (
            "CreateCluster",
            json!({"clusterName": "x", "tags": [{"key": 1, "value": "v"}]}),
            "tags[0].key",
        ),
        ("DescribeClusters", json!({"clusters": "prod"}), "clusters"),
        (
            "DescribeClusters",
            json!({"clusters": ["prod"], "include": ["NOPE"]}),
            "include[0]",
        ),
        (
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": [{"name": "a", "image": "i", "memory": "64"}]}),
            "containerDefinitions[0].memory",
        ),
        (
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "essential": "yes"}]}),
            "containerDefinitions[0].essential",
        ),
        (
            "RegisterTaskDefinition",
            json!({"family": "web", "networkMode": "overlay", "containerDefinitions": []}),
            "networkMode",
        ),
        (
            "TagResource",
            json!({"resourceArn": ["x"], "tags": []}),
            "resourceArn",
        ),
        (
            "ListTasks",
            json!({"cluster": "prod", "desiredStatus": "SLEEPING"}),
            "desiredStatus",
        ),
    ];
    for (op, body, field) in cases {
        let r = send_json(&c, op, body).await;
        let message = assert_error(&r, 400, "SerializationException");
        assert!(
            message.contains(field),
            "{op} {body}: message should name {field}: {message}"
        );
    }
    assert_eq!(
        snapshot(&c).await,
        before,
        "a request of the wrong shape changed the state"
    );
}

#[tokio::test]
async fn unknown_operations() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    for t in [
        target("NoSuchOperation"),
        "AmazonEC2ContainerServiceV20141113".to_string(),
        "AmazonEC2ContainerServiceV20141113.".to_string(),
        "DynamoDB_20120810.ListTables".to_string(),
        "listclusters".to_string(),
        target("listClusters"),
    ] {
        let r = c.raw(&t, b"{}".to_vec()).await.unwrap();
        let message = assert_error(&r, 400, "UnknownOperationException");
        assert!(message.contains(&t), "{t}: {message}");
    }
    // An operation of the ECS model that Flotilla does not serve.
    let r = send(&c, "CreateCapacityProvider", b"{}".to_vec()).await;
    let message = assert_error(&r, 400, "UnknownOperationException");
    assert!(message.contains("CreateCapacityProvider"), "{message}");
}

#[tokio::test]
async fn a_missing_target_is_an_unknown_operation() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    let mut req = request(&server.endpoint, None, b"{}");
    c.sign(&mut req, SystemTime::now()).unwrap();
    let r = c.send(req).await.unwrap();
    assert_error(&r, 400, "UnknownOperationException");
}

#[tokio::test]
async fn only_post_is_an_api_call() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    let mut req = request(&server.endpoint, Some(&target("ListClusters")), b"");
    *req.method_mut() = axum::http::Method::GET;
    c.sign(&mut req, SystemTime::now()).unwrap();
    let r = c.send(req).await.unwrap();
    assert_error(&r, 400, "UnknownOperationException");
}

#[tokio::test]
async fn oversized_bodies_are_rejected_without_reading_them_as_json() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    populate(&c).await;
    let before = snapshot(&c).await;
    const MIB: usize = 1024 * 1024;
    // A valid JSON request just over the limit: a RegisterTaskDefinition whose
    // environment pads it out.
    let padded = |size: usize| {
        let mut body = json!({
            "family": "huge",
            "containerDefinitions": [{"name": "a", "image": "i", "memory": 64,
                "environment": [{"name": "PAD", "value": ""}]}]
        });
        let base = serde_json::to_vec(&body).unwrap().len();
        body["containerDefinitions"][0]["environment"][0]["value"] = json!("x".repeat(size - base));
        let bytes = serde_json::to_vec(&body).unwrap();
        assert_eq!(bytes.len(), size);
        bytes
    };
    for size in [MIB + 1] {
        let r = send(&c, "RegisterTaskDefinition", padded(size)).await;
        let body = String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).to_string();
        assert_eq!(r.status, 413, "{size} bytes: {body}");
        // The answer is in the AWS shape, whatever layer refused it.
        let v: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| panic!("{size} bytes: error body is not JSON: {body}"));
        assert_eq!(v["__type"], "ClientException", "{size} bytes: {body}");
        assert_eq!(
            r.error_type.as_deref(),
            Some("ClientException"),
            "{size} bytes"
        );
        assert_request_id(&r);
    }
    // Exactly at the limit is served (and here registers a definition).
    let r = send(&c, "RegisterTaskDefinition", padded(MIB)).await;
    assert_eq!(
        r.status,
        200,
        "{}",
        String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
    );
    ok(
        &c,
        "DeregisterTaskDefinition",
        &json!({"taskDefinition": "huge:1"}),
    )
    .await;
    ok(
        &c,
        "DeleteTaskDefinitions",
        &json!({"taskDefinitions": ["huge:1"]}),
    )
    .await;
    let after = snapshot(&c).await;
    assert_eq!(after["clusters"], before["clusters"]);
    assert_eq!(
        after["taskdefs ACTIVE"], before["taskdefs ACTIVE"],
        "oversized requests registered nothing"
    );
}

/// Bodies well over the limit are refused in the AWS shape too, not with a
/// framework's plain-text 413 (as axum's `DefaultBodyLimit` once answered).
#[tokio::test]
async fn far_oversized_bodies_are_rejected_in_the_aws_shape() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    for size in [1024 * 1024 + 2, 1024 * 1024 + 4096, 4 * 1024 * 1024] {
        let r = send(&c, "ListClusters", vec![b' '; size]).await;
        assert_eq!(r.status, 413, "{size}");
        let m = assert_error_any_status(&r, "ClientException");
        assert!(m.contains("larger than"), "{m}");
    }
}

fn assert_error_any_status(r: &flotilla_client::RawResponse, code: &str) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| {
        panic!(
            "error body is not JSON: {}",
            String::from_utf8_lossy(&r.body)
        )
    });
    assert_eq!(v["__type"], code);
    assert_eq!(r.error_type.as_deref(), Some(code));
    assert_request_id(r);
    v["message"].as_str().unwrap_or_default().to_string()
}

/// Each way a request can fail authentication, in ECS's words and codes
/// (all HTTP 400, as AWS JSON services answer them).
#[tokio::test]
async fn authentication_failures() {
    let server = TestServer::start().await;
    let alice = server.raw(&ALICE);
    populate(&alice).await;
    let before = snapshot(&alice).await;
    let create = target("CreateCluster");
    let body = br#"{"clusterName": "intruder"}"#;

    // No Authorization header and no presigned query.
    let r = alice
        .send(request(&server.endpoint, Some(&create), body))
        .await
        .unwrap();
    let m = assert_error(&r, 400, "MissingAuthenticationTokenException");
    assert_eq!(m, "Missing Authentication Token");

    // A key nobody issued.
    let stranger = Client::ecs(
        &server.endpoint,
        "AKIANOBODY0000000000",
        "whatever-secret",
        REGION,
    );
    let r = stranger.raw(&create, body.to_vec()).await.unwrap();
    assert_error(&r, 400, "UnrecognizedClientException");

    // Alice's key with the wrong secret; Bob's secret with Alice's key.
    for secret in ["not-alices-secret", BOB.secret] {
        let forger = Client::ecs(&server.endpoint, ALICE.access_key_id, secret, REGION);
        let r = forger.raw(&create, body.to_vec()).await.unwrap();
        let m = assert_error(&r, 400, "InvalidSignatureException");
        assert!(m.contains("signature"), "{m}");
    }

    // A correctly signed request changed after signing.
    let mut req = request(&server.endpoint, Some(&create), body);
    alice.sign(&mut req, SystemTime::now()).unwrap();
    *req.body_mut() = br#"{"clusterName": "tampered"}"#.to_vec();
    let r = alice.send(req).await.unwrap();
    assert_error(&r, 400, "InvalidSignatureException");
    let mut req = request(&server.endpoint, Some(&create), body);
    alice.sign(&mut req, SystemTime::now()).unwrap();
    req.headers_mut()
        .insert("x-amz-target", target("DeleteCluster").parse().unwrap());
    let r = alice.send(req).await.unwrap();
    assert_error(&r, 400, "InvalidSignatureException");

    // A garbled Authorization header.
    for auth in [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001",
        "AWS4-HMAC-SHA256 Credential=/, SignedHeaders=, Signature=",
        "Basic dXNlcjpwYXNz",
        "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=zz",
    ] {
        let mut req = request(&server.endpoint, Some(&create), body);
        alice.sign(&mut req, SystemTime::now()).unwrap();
        req.headers_mut().insert("authorization", auth.parse().unwrap());
        let r = alice.send(req).await.unwrap();
        let v = r.json();
        assert_ne!(r.status, 500, "{auth}: {v}");
        assert_eq!(r.status, 400, "{auth}: {v}");
        let code = v["__type"].as_str().unwrap_or_default();
        assert!(
            matches!(
                code,
                "IncompleteSignatureException"
                    | "InvalidSignatureException"
                    | "MissingAuthenticationTokenException"
                    | "UnrecognizedClientException"
            ),
            "{auth}: {v}"
        );
        assert_eq!(r.error_type.as_deref(), Some(code));
    }

    // Clock skew beyond 15 minutes, either way.
    for (offset, words) in [
        (-20i64, "Signature expired"),
        (20, "Signature not yet current"),
    ] {
        let at = if offset < 0 {
            SystemTime::now() - Duration::from_secs(60 * offset.unsigned_abs())
        } else {
            SystemTime::now() + Duration::from_secs(60 * offset as u64)
        };
        let mut req = request(&server.endpoint, Some(&create), body);
        alice.sign(&mut req, at).unwrap();
        let r = alice.send(req).await.unwrap();
        let m = assert_error(&r, 400, "InvalidSignatureException");
        assert!(m.starts_with(words), "{offset} min: {m}");
    }
    // Within the window is fine: 10 minutes off is accepted (and changes
    // nothing here, since ListClusters only reads).
    let mut req = request(&server.endpoint, Some(&target("ListClusters")), b"{}");
    alice
        .sign(&mut req, SystemTime::now() - Duration::from_secs(600))
        .unwrap();
    assert_eq!(alice.send(req).await.unwrap().status, 200);

    assert_eq!(
        snapshot(&alice).await,
        before,
        "an unauthenticated request changed the state"
    );
    // And nothing reached Bob's account either.
    assert_eq!(
        ok(&server.raw(&BOB), "ListClusters", &json!({})).await["clusterArns"],
        json!([])
    );
}

#[tokio::test]
async fn run_task_count_limits() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    populate(&c).await;
    let before = snapshot(&c).await;
    for count in [0, 11, -1, 1000] {
        let r = send_json(
            &c,
            "RunTask",
            &json!({"cluster": "prod", "taskDefinition": "web", "count": count}),
        )
        .await;
        let m = assert_error(&r, 400, "InvalidParameterException");
        assert!(m.contains("count"), "{m}");
    }
    assert_eq!(snapshot(&c).await, before);
}

/// Each batch and page limit: one over is a clear InvalidParameterException
/// (or the model's dedicated code) naming the member, and changes nothing.
#[tokio::test]
async fn batch_limits() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    populate(&c).await;
    let instance = ok(&c, "ListContainerInstances", &json!({"cluster": "prod"})).await
        ["containerInstanceArns"][0]
        .as_str()
        .unwrap()
        .to_string();
    let before = snapshot(&c).await;

    let names = |n: usize, prefix: &str| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let tags = |n: usize| {
        (0..n)
            .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
            .collect::<Vec<_>>()
    };
    let attrs = |n: usize| {
        (0..n)
            .map(|i| json!({"name": format!("a{i}"), "value": "v", "targetId": instance}))
            .collect::<Vec<_>>()
    };
    let cluster_arn = format!("arn:aws:ecs:{REGION}:{}:cluster/prod", ALICE.account);

    // (operation, request at the limit (must be accepted), request over it, code, word in the message)
    let cases: Vec<(&str, Value, Value, &str, &str)> = vec![
        (
            "DescribeClusters",
            json!({"clusters": names(100, "c")}),
            json!({"clusters": names(101, "c")}),
            "InvalidParameterException",
            "clusters",
        ),
        (
            "DescribeTasks",
            json!({"cluster": "prod", "tasks": names(100, "t")}),
            json!({"cluster": "prod", "tasks": names(101, "t")}),
            "InvalidParameterException",
            "tasks",
        ),
        (
            "DescribeContainerInstances",
            json!({"cluster": "prod", "containerInstances": names(100, "i")}),
            json!({"cluster": "prod", "containerInstances": names(101, "i")}),
            "InvalidParameterException",
            "containerInstances",
        ),
        (
            "DescribeServices",
            json!({"cluster": "prod", "services": names(10, "s")}),
            json!({"cluster": "prod", "services": names(11, "s")}),
            "InvalidParameterException",
            "services",
        ),
        (
            "UpdateContainerInstancesState",
            json!({"cluster": "prod", "containerInstances": [instance], "status": "ACTIVE"}),
            json!({"cluster": "prod", "containerInstances": vec![instance.clone(); 11], "status": "DRAINING"}),
            "InvalidParameterException",
            "containerInstances",
        ),
        (
            "PutAttributes",
            json!({"cluster": "prod", "attributes": attrs(10)}),
            json!({"cluster": "prod", "attributes": attrs(11)}),
            "AttributeLimitExceededException",
            "10",
        ),
        (
            "TagResource",
            json!({"resourceArn": cluster_arn, "tags": tags(49)}),
            json!({"resourceArn": cluster_arn, "tags": tags(51)}),
            "InvalidParameterException",
            "tags",
        ),
        (
            "CreateCluster",
            json!({"clusterName": "prod", "tags": tags(1)}),
            json!({"clusterName": "other", "tags": tags(51)}),
            "InvalidParameterException",
            "tags",
        ),
        (
            "RunTask",
            json!({"cluster": "nope", "taskDefinition": "web"}),
            json!({"cluster": "prod", "taskDefinition": "web", "tags": tags(51)}),
            "InvalidParameterException",
            "tags",
        ),
        (
            "ListClusters",
            json!({"maxResults": 100}),
            json!({"maxResults": 101}),
            "InvalidParameterException",
            "maxResults",
        ),
        (
            "ListClusters",
            json!({"maxResults": 1}),
            json!({"maxResults": 0}),
            "InvalidParameterException",
            "maxResults",
        ),
        (
            "ListTasks",
            json!({"cluster": "prod", "maxResults": 100}),
            json!({"cluster": "prod", "maxResults": 101}),
            "InvalidParameterException",
            "maxResults",
        ),
        (
            "ListContainerInstances",
            json!({"cluster": "prod", "maxResults": 100}),
            json!({"cluster": "prod", "maxResults": 101}),
            "InvalidParameterException",
            "maxResults",
        ),
        (
            "ListTaskDefinitions",
            json!({"maxResults": 100}),
            json!({"maxResults": 101}),
            "InvalidParameterException",
            "maxResults",
        ),
    ];
    // Over the limit first, so the snapshot still matches after the rejections.
    for (op, _, over, code, word) in &cases {
        let r = send_json(&c, op, over).await;
        let m = assert_error(&r, 400, code);
        assert!(
            m.contains(word),
            "{op}: the message should name {word}: {m}"
        );
    }
    assert_eq!(
        snapshot(&c).await,
        before,
        "a request over a limit changed the state"
    );
    for (op, at, _, _, _) in &cases {
        let r = send_json(&c, op, at).await;
        // At the limit the call is served: 200, or an error that is not about the limit.
        if r.status != 200 {
            let v = r.json();
            assert_ne!(r.status, 500, "{op}: {v}");
            assert!(
                !v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("at most"),
                "{op} at the limit was refused for the limit: {v}"
            );
        }
    }
}

/// Requests that are well formed but wrong: not found, invalid names, bad
/// references. Each is a 400 with the right code, and changes nothing.
#[tokio::test]
async fn rejected_writes_change_nothing() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    populate(&c).await;
    let before = snapshot(&c).await;
    let alice_cluster = format!("arn:aws:ecs:{REGION}:{}:cluster/prod", ALICE.account);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "CreateCluster",
            json!({"clusterName": "has space"}),
            "InvalidParameterException",
        ),
        (
            "CreateCluster",
            json!({"clusterName": "x".repeat(256)}),
            "InvalidParameterException",
        ),
        (
            "CreateCluster",
            json!({"clusterName": "ok", "tags": [{"key": "aws:x", "value": "v"}]}),
            "InvalidParameterException",
        ),
        (
            "CreateCluster",
            json!({"clusterName": "ok", "tags": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}),
            "InvalidParameterException",
        ),
        (
            "DeleteCluster",
            json!({"cluster": "nope"}),
            "ClusterNotFoundException",
        ),
        (
            "DeleteCluster",
            json!({"cluster": "prod"}),
            "ClusterContainsContainerInstancesException",
        ),
        ("DeleteCluster", json!({}), "InvalidParameterException"),
        (
            "UpdateClusterSettings",
            json!({"cluster": "prod", "settings": [{"name": "containerInsights", "value": "maybe"}]}),
            "InvalidParameterException",
        ),
        (
            "RegisterTaskDefinition",
            json!({"family": "web"}),
            "InvalidParameterException",
        ),
        (
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": []}),
            "ClientException",
        ),
        (
            "RegisterTaskDefinition",
            json!({"family": "bad family", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64}]}),
            "ClientException",
        ),
        (
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": [{"name": "a", "image": "i"}]}),
            "ClientException",
        ),
        (
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "web:9"}),
            "ClientException",
        ),
        (
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "web:0"}),
            "ClientException",
        ),
        (
            "DeleteTaskDefinitions",
            json!({"taskDefinitions": []}),
            "InvalidParameterException",
        ),
        (
            "RunTask",
            json!({"cluster": "prod"}),
            "InvalidParameterException",
        ),
        (
            "RunTask",
            json!({"cluster": "prod", "taskDefinition": "nope"}),
            "ClientException",
        ),
        (
            "RunTask",
            json!({"cluster": "nope", "taskDefinition": "web"}),
            "ClusterNotFoundException",
        ),
        (
            "RunTask",
            json!({"cluster": "prod", "taskDefinition": "web", "launchType": "FARGATE"}),
            "InvalidParameterException",
        ),
        (
            "RunTask",
            json!({"cluster": "prod", "taskDefinition": "web", "startedBy": "x".repeat(129)}),
            "InvalidParameterException",
        ),
        (
            "StopTask",
            json!({"cluster": "prod", "task": "nope"}),
            "InvalidParameterException",
        ),
        (
            "TagResource",
            json!({"resourceArn": "not-an-arn", "tags": [{"key": "a", "value": "b"}]}),
            "InvalidParameterException",
        ),
        (
            "TagResource",
            json!({"resourceArn": format!("arn:aws:ecs:{REGION}:{}:cluster/nope", ALICE.account), "tags": [{"key": "a", "value": "b"}]}),
            "ResourceNotFoundException",
        ),
        (
            "TagResource",
            json!({"resourceArn": alice_cluster, "tags": [{"key": "", "value": "b"}]}),
            "InvalidParameterException",
        ),
        (
            "UntagResource",
            json!({"resourceArn": format!("arn:aws:ecs:{REGION}:{}:cluster/nope", ALICE.account), "tagKeys": ["a"]}),
            "ResourceNotFoundException",
        ),
        (
            "PutAttributes",
            json!({"cluster": "prod", "attributes": [{"name": "a", "value": "b", "targetId": "nope"}]}),
            "TargetNotFoundException",
        ),
        (
            "PutAccountSetting",
            json!({"name": "containerInsights", "value": "maybe"}),
            "InvalidParameterException",
        ),
        (
            "PutAccountSettingDefault",
            json!({"name": "containerInsights"}),
            "InvalidParameterException",
        ),
        (
            "RegisterContainerInstance",
            json!({"cluster": "nope"}),
            "ClusterNotFoundException",
        ),
        (
            "DeregisterContainerInstance",
            json!({"cluster": "prod", "containerInstance": "nope"}),
            "InvalidParameterException",
        ),
        (
            "CreateService",
            json!({"cluster": "prod", "serviceName": "s", "taskDefinition": "nope", "desiredCount": 1}),
            "ClientException",
        ),
        (
            "CreateService",
            json!({"cluster": "prod", "serviceName": "s", "taskDefinition": "web", "desiredCount": -1}),
            "InvalidParameterException",
        ),
        (
            "UpdateService",
            json!({"cluster": "prod", "service": "nope", "desiredCount": 1}),
            "ServiceNotFoundException",
        ),
        (
            "DeleteService",
            json!({"cluster": "prod", "service": "nope"}),
            "ServiceNotFoundException",
        ),
    ];
    let mut wrong = Vec::new();
    for (op, body, code) in &cases {
        let r = send_json(&c, op, body).await;
        assert_ne!(
            r.status,
            500,
            "{op} {body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        if r.status != 400 || v["__type"] != *code || r.error_type.as_deref() != Some(code) {
            wrong.push(format!(
                "{op} {body}: expected 400 {code}, got {} {v} (X-Amzn-ErrorType {:?})",
                r.status, r.error_type
            ));
            continue;
        }
        assert_error(&r, 400, code);
    }
    assert!(
        wrong.is_empty(),
        "{} requests answered wrongly:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        snapshot(&c).await,
        before,
        "a rejected request changed the state"
    );
}

/// Bob cannot reach Alice's objects even by their ARNs; his failures say
/// "not found", never "forbidden" (which would confirm they exist).
#[tokio::test]
async fn another_account_cannot_touch_alices_objects() {
    let server = TestServer::start().await;
    let alice = server.raw(&ALICE);
    let bob = server.raw(&BOB);
    populate(&alice).await;
    let before = snapshot(&alice).await;
    let cluster = format!("arn:aws:ecs:{REGION}:{}:cluster/prod", ALICE.account);
    let td = format!(
        "arn:aws:ecs:{REGION}:{}:task-definition/web:1",
        ALICE.account
    );
    let instance = before["instances ".to_string() + &cluster]["containerInstances"][0]
        ["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let writes: Vec<(&str, Value)> = vec![
        ("DeleteCluster", json!({"cluster": cluster})),
        (
            "TagResource",
            json!({"resourceArn": cluster, "tags": [{"key": "owned", "value": "bob"}]}),
        ),
        (
            "UntagResource",
            json!({"resourceArn": cluster, "tagKeys": ["team"]}),
        ),
        (
            "TagResource",
            json!({"resourceArn": td, "tags": [{"key": "owned", "value": "bob"}]}),
        ),
        ("DeregisterTaskDefinition", json!({"taskDefinition": td})),
        ("RunTask", json!({"cluster": cluster, "taskDefinition": td})),
        (
            "PutAttributes",
            json!({"cluster": cluster, "attributes": [{"name": "x", "value": "y", "targetId": instance}]}),
        ),
        (
            "DeregisterContainerInstance",
            json!({"cluster": cluster, "containerInstance": instance, "force": true}),
        ),
        (
            "UpdateContainerInstancesState",
            json!({"cluster": cluster, "containerInstances": [instance], "status": "DRAINING"}),
        ),
        (
            "UpdateClusterSettings",
            json!({"cluster": cluster, "settings": [{"name": "containerInsights", "value": "enabled"}]}),
        ),
    ];
    for (op, body) in &writes {
        let r = send_json(&bob, op, body).await;
        let v = r.json();
        assert_eq!(r.status, 400, "Bob's {op} {body} was served: {v}");
        let code = v["__type"].as_str().unwrap_or_default();
        assert!(!code.contains("AccessDenied"), "{op}: {v}");
    }
    let reads: Vec<(&str, Value)> = vec![
        ("DescribeTaskDefinition", json!({"taskDefinition": td})),
        ("ListTagsForResource", json!({"resourceArn": cluster})),
        ("ListContainerInstances", json!({"cluster": cluster})),
        ("ListTasks", json!({"cluster": cluster})),
    ];
    for (op, body) in &reads {
        let r = send_json(&bob, op, body).await;
        assert_eq!(
            r.status,
            400,
            "Bob's {op} {body} was served: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let d = ok(&bob, "DescribeClusters", &json!({"clusters": [cluster]})).await;
    assert_eq!(d["clusters"], json!([]));
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    assert_eq!(snapshot(&alice).await, before, "Bob changed Alice's state");
}

/// The AWS SDK for Rust reads the code and message of these errors.
#[tokio::test]
async fn the_sdk_sees_the_codes() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    let e = ecs
        .delete_cluster()
        .cluster("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_cluster_not_found_exception(), "{e:?}");
    assert_eq!(e.meta().message(), Some("Cluster not found."));
    let e = ecs
        .run_task()
        .task_definition("web")
        .count(11)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_exception(), "{e:?}");
    let bad = aws_sdk_ecs::Client::from_conf(
        aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .endpoint_url(&server.endpoint)
            .region(aws_sdk_ecs::config::Region::new(REGION))
            .credentials_provider(aws_sdk_ecs::config::Credentials::new(
                ALICE.access_key_id,
                "wrong",
                None,
                None,
                "test",
            ))
            .build(),
    );
    let e = bad
        .list_clusters()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.meta().code(), Some("InvalidSignatureException"));
}

/// An ARN names an account: Bob passing Alice's cluster ARN must not act on
/// Bob's own cluster of the same name (the server once took the name from
/// the ARN and ignored its account and region).
#[tokio::test]
async fn an_arn_of_another_account_never_reaches_the_callers_namesake() {
    let server = TestServer::start().await;
    let alice = server.raw(&ALICE);
    let bob = server.raw(&BOB);
    populate(&alice).await;
    ok(&bob, "CreateCluster", &json!({"clusterName": "prod"})).await;
    ok(&bob, "RegisterTaskDefinition", &json!({"family": "web", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64}]})).await;
    let alice_before = snapshot(&alice).await;
    let bob_before = snapshot(&bob).await;
    let alice_cluster = format!("arn:aws:ecs:{REGION}:{}:cluster/prod", ALICE.account);
    let other_region = format!("arn:aws:ecs:eu-west-1:{}:cluster/prod", BOB.account);
    let mut wrong = Vec::new();
    for cluster in [&alice_cluster, &other_region] {
        let d = ok(&bob, "DescribeClusters", &json!({"clusters": [cluster]})).await;
        if d["clusters"] != json!([]) {
            wrong.push(format!(
                "DescribeClusters {cluster} described {}",
                d["clusters"][0]["clusterArn"]
            ));
        }
        for (op, body) in [
            ("ListTasks", json!({"cluster": cluster})),
            ("ListContainerInstances", json!({"cluster": cluster})),
            ("ListServices", json!({"cluster": cluster})),
            (
                "RunTask",
                json!({"cluster": cluster, "taskDefinition": "web"}),
            ),
            (
                "UpdateClusterSettings",
                json!({"cluster": cluster, "settings": [{"name": "containerInsights", "value": "enabled"}]}),
            ),
            ("DeleteCluster", json!({"cluster": cluster})),
        ] {
            let r = send_json(&bob, op, &body).await;
            if r.status == 200 || r.json()["__type"] != "ClusterNotFoundException" {
                wrong.push(format!(
                    "{op} {cluster}: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
        }
    }
    assert_eq!(snapshot(&alice).await, alice_before);
    let bob_after = snapshot(&bob).await;
    if bob_after != bob_before {
        wrong.push("Bob's own cluster changed".into());
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
